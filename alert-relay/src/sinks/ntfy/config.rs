//! The `targets.ntfy.<name>` section: as written, validated, and what the sink runs with.

use std::collections::BTreeMap;

use serde::Deserialize;
use url::Url;

use crate::validation::{Checker, EnvString, RawTemplates, Secret};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNtfy {
    pub url: Option<EnvString>,
    pub topic: EnvString,
    pub token: Option<EnvString>,
    pub token_file: Option<EnvString>,
    pub username: Option<EnvString>,
    pub password: Option<EnvString>,
    /// Priority per severity, overriding critical 5, warning 4, info 3.
    #[serde(default)]
    pub priorities: BTreeMap<String, u8>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub templates: RawTemplates,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NtfyConfig {
    pub server: Url,
    pub topic: String,
    pub auth: NtfyAuth,
    /// Priority for critical, warning and other severities.
    pub priorities: [u8; 3],
    pub tags: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum NtfyAuth {
    None,
    Token(Secret),
    Basic { username: String, password: Secret },
}

/// `None` on errors (recorded), `Some(Err(why))` for a target switched off by an empty topic.
pub fn validate(
    c: &mut Checker<'_>,
    path: &str,
    raw: &RawNtfy,
) -> Option<Result<NtfyConfig, String>> {
    let topic = c.expand(&format!("{path}.topic"), &raw.topic)?;
    let server = match &raw.url {
        Some(url) => c.expand(&format!("{path}.url"), url)?,
        None => "https://ntfy.sh".to_owned(),
    };
    let server = c.url(&format!("{path}.url"), &server)?;
    if topic.is_empty() {
        return Some(Err(
            "its topic is empty (set the topic's environment variable to enable it)".into(),
        ));
    }
    if !topic
        .chars()
        .all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == '-')
        || topic.len() > 64
    {
        c.error(
            format!("{path}.topic"),
            "ntfy topics are 1-64 letters, digits, `_` or `-`",
        );
    }
    let token = c
        .secret(
            &format!("{path}.token"),
            raw.token.as_ref(),
            raw.token_file.as_ref(),
        )
        .filter(|t| !t.0.is_empty());
    let username = raw
        .username
        .as_ref()
        .and_then(|u| c.expand(&format!("{path}.username"), u))
        .filter(|u| !u.is_empty());
    let password = raw
        .password
        .as_ref()
        .and_then(|p| c.expand(&format!("{path}.password"), p))
        .map(Secret);
    let auth = match (token, username, password) {
        (Some(_), Some(_), _) => {
            c.error(path, "set either token or username/password, not both");
            NtfyAuth::None
        }
        (Some(token), None, _) => NtfyAuth::Token(token),
        (None, Some(username), Some(password)) => NtfyAuth::Basic { username, password },
        (None, Some(_), None) => {
            c.error(
                format!("{path}.password"),
                "username is set but password is missing",
            );
            NtfyAuth::None
        }
        (None, None, _) => NtfyAuth::None,
    };
    let mut priorities = [5, 4, 3];
    for (severity, priority) in &raw.priorities {
        let slot = match severity.as_str() {
            "critical" => 0,
            "warning" => 1,
            "info" => 2,
            other => {
                c.error(
                    format!("{path}.priorities.{other}"),
                    "severities are critical, warning and info",
                );
                continue;
            }
        };
        if !(1..=5).contains(priority) {
            c.error(
                format!("{path}.priorities.{severity}"),
                "ntfy priorities go from 1 (min) to 5 (max)",
            );
        }
        priorities[slot] = *priority;
    }
    Some(Ok(NtfyConfig {
        server,
        topic,
        auth,
        priorities,
        tags: raw.tags.clone(),
    }))
}
