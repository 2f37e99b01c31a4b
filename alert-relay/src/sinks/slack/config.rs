//! The `targets.slack.<name>` section: an incoming webhook, whose URL is its credential.

use serde::Deserialize;
use url::Url;

use crate::validation::{Checker, EnvString, RawTemplates, Secret};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSlack {
    /// The incoming-webhook URL (a secret: it is the credential).
    pub webhook_url: Option<EnvString>,
    pub webhook_url_file: Option<EnvString>,
    #[serde(default)]
    pub templates: RawTemplates,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SlackConfig {
    pub webhook_url: Secret,
}

pub fn validate(
    c: &mut Checker<'_>,
    path: &str,
    raw: &RawSlack,
) -> Option<Result<SlackConfig, String>> {
    let path = format!("{path}.webhook_url");
    let Some(url) = c.secret(
        &path,
        raw.webhook_url.as_ref(),
        raw.webhook_url_file.as_ref(),
    ) else {
        if raw.webhook_url.is_none() && raw.webhook_url_file.is_none() {
            c.error(
                path,
                "missing: set webhook_url (e.g. ${SLACK_WEBHOOK_URL}) or webhook_url_file",
            );
        }
        return None;
    };
    if url.0.is_empty() {
        return Some(Err(
            "its webhook_url is empty (set the environment variable to enable it)".into(),
        ));
    }
    // Checked without echoing the URL: it is the credential.
    match Url::parse(&url.0) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => {
            Some(Ok(SlackConfig { webhook_url: url }))
        }
        _ => {
            c.error(
                path,
                "not an http(s) URL; copy the incoming-webhook URL from Slack's app settings",
            );
            None
        }
    }
}
