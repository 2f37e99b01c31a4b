//! Where notifications go: one folder per vendor (its config, pure request builder, sender
//! and tests) behind the [`Sink`] trait. Only the sinks know vendor JSON. A new vendor is its
//! folder plus one line in the `vendors!` list below.

pub mod fit;
pub mod http;
pub mod log;
pub mod ntfy;
pub mod pagerduty;
pub mod retry;
pub mod slack;
pub mod webhook;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::domain::{Notification, Rendered, TargetName};
use crate::validation::{Checker, RawTemplates};

pub use self::http::describe;
pub use retry::{classify, Backoff, Class};

/// The result of one delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    /// Worth retrying (network error, 408, 429, 5xx); `after` when the vendor said when.
    Retry {
        after: Option<Duration>,
        reason: String,
    },
    /// Will never succeed as it is (other 4xx): dead-lettered.
    Permanent {
        reason: String,
    },
}

pub type SendFuture<'a> = Pin<Box<dyn Future<Output = Outcome> + Send + 'a>>;

/// What a target's healthcheck found, without sending anything to a human.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// Reachable, and where the vendor can tell, our credentials are accepted.
    Ok(String),
    /// A page sent now would not arrive (or not at once): why.
    Failed(String),
    /// The vendor offers no check short of sending a notification (`test-notify` does that).
    Unchecked(String),
}

pub type HealthFuture<'a> = Pin<Box<dyn Future<Output = Health> + Send + 'a>>;

pub trait Sink: Send + Sync {
    /// One attempt; never panics, never retries by itself.
    fn send<'a>(&'a self, notification: &'a Notification, text: &'a Rendered) -> SendFuture<'a>;

    /// Checks the target without notifying anyone (at start, and `check-config --probe`).
    fn healthcheck(&self) -> HealthFuture<'_>;
}

/// What one vendor folder provides: its raw config (as written under `targets.<kind>`), the
/// validated config, and the sink built from it.
pub trait Vendor {
    type Raw: for<'de> Deserialize<'de> + std::fmt::Debug;
    type Config: std::fmt::Debug + Clone + PartialEq;

    /// `None` when errors were recorded; `Some(Err(why))` for a target switched off on
    /// purpose (an empty topic or URL from an unset variable).
    fn validate(
        c: &mut Checker<'_>,
        path: &str,
        raw: &Self::Raw,
    ) -> Option<Result<Self::Config, String>>;

    /// The target's own title and body templates, if it can have any.
    fn templates(raw: &Self::Raw) -> Option<&RawTemplates>;

    fn sink(config: &Self::Config, client: &reqwest::Client) -> Arc<dyn Sink>;

    /// One line for `test-notify`, without secrets.
    fn describe(config: &Self::Config) -> String;
}

/// Title and body templates of a target (used unless the policy has its own).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TargetTemplates {
    pub title: Option<String>,
    pub body: Option<String>,
}

/// The `targets:` section validated: enabled targets, switched-off ones (with why), and
/// per-target templates.
#[derive(Debug, Default)]
pub struct Targets {
    pub enabled: BTreeMap<TargetName, TargetConfig>,
    pub disabled: BTreeMap<TargetName, String>,
    pub templates: BTreeMap<TargetName, TargetTemplates>,
}

impl Targets {
    fn add<V: Vendor>(
        &mut self,
        c: &mut Checker<'_>,
        kind: &str,
        name: &str,
        raw: &V::Raw,
        wrap: fn(V::Config) -> TargetConfig,
    ) {
        let path = format!("targets.{kind}.{name}");
        let target = TargetName(format!("{kind}.{name}"));
        if let Some(templates) = V::templates(raw) {
            for (field, text) in [("title", &templates.title), ("body", &templates.body)] {
                if let Some(text) = text {
                    c.template(&format!("{path}.templates.{field}"), text);
                }
            }
            if templates.title.is_some() || templates.body.is_some() {
                self.templates.insert(
                    target.clone(),
                    TargetTemplates {
                        title: templates.title.clone(),
                        body: templates.body.clone(),
                    },
                );
            }
        }
        match V::validate(c, &path, raw) {
            Some(Ok(config)) => {
                self.enabled.insert(target, wrap(config));
            }
            Some(Err(why)) => {
                self.disabled.insert(target, why);
            }
            None => {}
        }
    }
}

/// The list of vendors: generates the raw `targets:` section, [`TargetConfig`] and the
/// dispatch to each vendor's validation and sink.
macro_rules! vendors {
    ($($kind:ident => $variant:ident($vendor:ty)),+ $(,)?) => {
        /// The `targets:` section as written, one map per vendor.
        #[derive(Debug, Default, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct RawTargets {
            $(#[serde(default)] pub $kind: BTreeMap<String, <$vendor as Vendor>::Raw>,)+
        }

        /// One enabled target's validated config.
        #[derive(Debug, Clone, PartialEq)]
        pub enum TargetConfig {
            $($variant(<$vendor as Vendor>::Config),)+
        }

        impl TargetConfig {
            pub fn sink(&self, client: &reqwest::Client) -> Arc<dyn Sink> {
                match self {
                    $(Self::$variant(c) => <$vendor as Vendor>::sink(c, client),)+
                }
            }

            pub fn describe(&self) -> String {
                match self {
                    $(Self::$variant(c) => <$vendor as Vendor>::describe(c),)+
                }
            }
        }

        /// Validates every target of every vendor.
        pub fn validate_targets(c: &mut Checker<'_>, raw: &RawTargets) -> Targets {
            let mut targets = Targets::default();
            $(for (name, one) in &raw.$kind {
                targets.add::<$vendor>(c, stringify!($kind), name, one, TargetConfig::$variant);
            })+
            targets
        }
    };
}

vendors! {
    ntfy => Ntfy(ntfy::Ntfy),
    slack => Slack(slack::Slack),
    pagerduty => PagerDuty(pagerduty::PagerDuty),
    webhook => Webhook(webhook::Webhook),
    log => Log(log::Log),
}

/// Builds a sink for every enabled target.
pub fn build(
    targets: &BTreeMap<TargetName, TargetConfig>,
    client: &reqwest::Client,
) -> BTreeMap<TargetName, Arc<dyn Sink>> {
    targets
        .iter()
        .map(|(name, target)| (name.clone(), target.sink(client)))
        .collect()
}

/// Every sink's healthcheck at the same time, each cut after `limit` (a hanging server is
/// reported as failed; it never holds up the others). Results in target order.
pub async fn check_all(
    sinks: &BTreeMap<TargetName, Arc<dyn Sink>>,
    limit: Duration,
) -> Vec<(TargetName, Health)> {
    let checks = sinks.iter().map(|(target, sink)| async move {
        let health = match tokio::time::timeout(limit, sink.healthcheck()).await {
            Ok(health) => health,
            Err(_) => Health::Failed(format!(
                "no answer within {}",
                humantime::format_duration(limit)
            )),
        };
        (target.clone(), health)
    });
    futures_util::future::join_all(checks).await
}
