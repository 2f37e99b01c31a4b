//! The escalation-policy file: parsed into raw structs ([`raw`]), then validated in one pass
//! that expands `${ENV}` and `*_file` secrets and reports every problem with its path, line
//! and fix ([`validate`]).

mod matcher;
pub mod raw;
mod validate;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use url::Url;

use crate::domain::{Labels, PolicyName, TargetName};
use crate::engine::Plan;
pub use crate::sinks::log::LogConfig;
pub use crate::sinks::ntfy::{NtfyAuth, NtfyConfig};
pub use crate::sinks::pagerduty::PagerDutyConfig;
pub use crate::sinks::slack::SlackConfig;
pub use crate::sinks::{TargetConfig, TargetTemplates};
pub use crate::validation::{read_secret_file, ConfigError, ConfigErrors, Secret};
pub use matcher::Matcher;
pub use validate::{person_target, validate, Person};

impl Config {
    /// The person `who` names: their name, or their e-mail address (case-insensitive).
    pub fn person_named(&self, who: &str) -> Option<&str> {
        let who = who.trim();
        if let Some((name, _)) = self.people.get_key_value(who) {
            return Some(name);
        }
        self.people
            .iter()
            .find(|(_, p)| {
                p.email
                    .as_deref()
                    .is_some_and(|e| e.eq_ignore_ascii_case(who))
            })
            .map(|(name, _)| name.as_str())
    }
}

/// The validated configuration the relay runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub delivery: DeliveryConfig,
    /// Enabled targets by name (`ntfy.primary`, `log.audit`).
    pub targets: BTreeMap<TargetName, TargetConfig>,
    /// Targets defined but switched off (an ntfy target whose topic is empty), with why.
    pub disabled_targets: BTreeMap<TargetName, String>,
    /// Per-target template overrides.
    pub target_templates: BTreeMap<TargetName, TargetTemplates>,
    /// People who can be on call (each reached through the target `person.<name>`).
    pub people: BTreeMap<String, Person>,
    /// Who is on call, by schedule name (steps notify `schedule.<name>`).
    pub schedules: BTreeMap<String, crate::engine::oncall::Schedule>,
    pub policies: Vec<Policy>,
    /// Incidents closed longer ago than this are deleted, with their timelines.
    pub retention: Duration,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Base URL the relay is reachable at from phones (for acknowledge links).
    pub public_url: Option<Url>,
    pub webhook_auth: WebhookAuth,
    /// Key of acknowledge links; `None` = generated once and kept in the data directory.
    pub ack_secret: Option<Secret>,
    pub ack_link_ttl: Duration,
    /// Alertmanager's external URL (silence links, silence checks).
    pub alertmanager_url: Option<Url>,
    /// Grafana's URL: silence links go through its alerting UI when set.
    pub grafana_url: Option<Url>,
    pub max_body_bytes: usize,
    /// The on-call console; `None`: switched off (`server.console: false`).
    pub console: Option<ConsoleConfig>,
}

/// How the console lets people in.
#[derive(Debug, Clone, PartialEq)]
pub struct ConsoleConfig {
    pub sign_in_by_push: bool,
    pub link_ttl: Duration,
    pub session_ttl: Duration,
    pub proxy: Option<ProxyAuth>,
}

/// A trusted authenticating proxy: the header that names the person, and where it may come
/// from.
#[derive(Debug, Clone, PartialEq)]
pub struct ProxyAuth {
    pub header: http::HeaderName,
    pub trusted: Vec<ipnet::IpNet>,
}

impl ProxyAuth {
    pub fn trusts(&self, from: std::net::IpAddr) -> bool {
        let from = match from {
            std::net::IpAddr::V6(v6) => v6
                .to_ipv4_mapped()
                .map_or(std::net::IpAddr::V6(v6), std::net::IpAddr::V4),
            v4 => v4,
        };
        self.trusted.iter().any(|net| net.contains(&from))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookAuth {
    Bearer(Secret),
    Basic { username: String, password: Secret },
    None,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryConfig {
    pub timeout: Duration,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// A notification not delivered this long after it was queued is dead-lettered.
    pub give_up_after: Duration,
    /// How often targets are checked without notifying anyone; `None`: only at start and
    /// after reloads.
    pub healthcheck_interval: Option<Duration>,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            give_up_after: Duration::from_secs(6 * 3600),
            healthcheck_interval: Some(Duration::from_secs(300)),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Policy {
    pub name: PolicyName,
    pub matchers: Vec<Matcher>,
    pub plan: Plan,
    pub title_template: Option<String>,
    pub body_template: Option<String>,
    /// Webhooks of this policy are heartbeats: none for this long raises a
    /// `HeartbeatMissing` alert (see `heartbeat`).
    pub heartbeat_missing_after: Option<std::time::Duration>,
}

impl Policy {
    pub fn matches(&self, labels: &Labels) -> bool {
        self.matchers.iter().all(|m| m.matches(labels))
    }
}

impl Config {
    /// The first policy whose matchers all match `labels`.
    pub fn policy_for(&self, labels: &Labels) -> Option<&Policy> {
        self.policies.iter().find(|p| p.matches(labels))
    }

    pub fn policy_named(&self, name: &str) -> Option<&Policy> {
        self.policies.iter().find(|p| p.name.as_str() == name)
    }

    /// Reads, parses and validates `path` with the process environment.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors::single(
                path,
                ConfigError::new("", format!("cannot read the file: {e}")),
            )
        })?;
        Self::parse(&text, path, &|name| std::env::var(name).ok())
    }

    /// Parses and validates `text`; `env` looks variables up (tests pass their own).
    pub fn parse(
        text: &str,
        path: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigErrors> {
        let raw: raw::RawConfig = serde_yaml::from_str(text).map_err(|e| {
            let mut error = ConfigError::new("", e.to_string());
            error.line = e.location().map(|l| l.line());
            ConfigErrors::single(path, error)
        })?;
        validate(raw, env).map_err(|mut errors| {
            for error in &mut errors {
                if error.line.is_none() && !error.path.is_empty() {
                    error.line = crate::validation::locate::line_of(text, &error.path);
                }
            }
            ConfigErrors {
                file: path.display().to_string(),
                errors,
            }
        })
    }
}

#[cfg(test)]
mod tests;
