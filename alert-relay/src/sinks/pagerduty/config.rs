//! The `targets.pagerduty.<name>` section: an Events API v2 integration (routing) key.

use serde::Deserialize;
use url::Url;

use crate::validation::{Checker, EnvString, RawTemplates, Secret};

/// PagerDuty's US endpoint; the EU one is `https://events.eu.pagerduty.com/v2/enqueue`.
const DEFAULT_URL: &str = "https://events.pagerduty.com/v2/enqueue";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPagerDuty {
    /// The service's Events API v2 integration key (32 characters).
    pub routing_key: Option<EnvString>,
    pub routing_key_file: Option<EnvString>,
    /// Events API endpoint; default <https://events.pagerduty.com/v2/enqueue>
    /// (EU: <https://events.eu.pagerduty.com/v2/enqueue>).
    pub url: Option<EnvString>,
    /// `payload.source` when the alert has no `instance` label.
    pub source: Option<String>,
    #[serde(default)]
    pub templates: RawTemplates,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PagerDutyConfig {
    pub routing_key: Secret,
    pub url: Url,
    pub source: Option<String>,
}

pub fn validate(
    c: &mut Checker<'_>,
    path: &str,
    raw: &RawPagerDuty,
) -> Option<Result<PagerDutyConfig, String>> {
    let key_path = format!("{path}.routing_key");
    let Some(key) = c.secret(
        &key_path,
        raw.routing_key.as_ref(),
        raw.routing_key_file.as_ref(),
    ) else {
        if raw.routing_key.is_none() && raw.routing_key_file.is_none() {
            c.error(
                key_path,
                "missing: set routing_key (e.g. ${PAGERDUTY_ROUTING_KEY}) or routing_key_file",
            );
        }
        return None;
    };
    if key.0.is_empty() {
        return Some(Err(
            "its routing_key is empty (set the environment variable to enable it)".into(),
        ));
    }
    if key.0.len() != 32 || !key.0.chars().all(|ch| ch.is_ascii_alphanumeric()) {
        c.error(
            key_path,
            "a PagerDuty integration key is 32 letters and digits (Events API v2 integration)",
        );
        return None;
    }
    let url_path = format!("{path}.url");
    let url = match &raw.url {
        Some(u) => c.expand(&url_path, u)?,
        None => DEFAULT_URL.to_owned(),
    };
    let url = c.url(&url_path, &url)?;
    Some(Ok(PagerDutyConfig {
        routing_key: key,
        url,
        source: raw.source.clone(),
    }))
}
