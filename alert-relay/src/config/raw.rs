//! The policy file as written: serde structs with `deny_unknown_fields`, nothing checked yet.

use std::collections::BTreeMap;

use serde::Deserialize;

/// A string that may hold `${VAR}` / `${VAR:-default}`; expanded during validation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct EnvString(pub String);

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub server: RawServer,
    #[serde(default)]
    pub delivery: RawDelivery,
    #[serde(default)]
    pub targets: RawTargets,
    #[serde(default)]
    pub policies: Vec<RawPolicy>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub public_url: Option<EnvString>,
    #[serde(default)]
    pub webhook_auth: Option<RawAuth>,
    pub ack_secret: Option<EnvString>,
    pub ack_secret_file: Option<EnvString>,
    pub ack_link_ttl: Option<String>,
    pub alertmanager_url: Option<EnvString>,
    pub max_body_bytes: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    pub bearer_token: Option<EnvString>,
    pub bearer_token_file: Option<EnvString>,
    pub basic: Option<RawBasic>,
    /// Explicitly accept unauthenticated webhooks (loopback demos only).
    #[serde(default)]
    pub none: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBasic {
    pub username: EnvString,
    pub password: Option<EnvString>,
    pub password_file: Option<EnvString>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDelivery {
    pub timeout: Option<String>,
    pub initial_backoff: Option<String>,
    pub max_backoff: Option<String>,
    pub give_up_after: Option<String>,
    pub healthcheck_interval: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTargets {
    #[serde(default)]
    pub ntfy: BTreeMap<String, RawNtfy>,
    #[serde(default)]
    pub slack: BTreeMap<String, RawSlack>,
    #[serde(default)]
    pub pagerduty: BTreeMap<String, RawPagerDuty>,
    #[serde(default)]
    pub log: BTreeMap<String, RawLog>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSlack {
    /// The incoming-webhook URL (a secret: it is the credential).
    pub webhook_url: Option<EnvString>,
    pub webhook_url_file: Option<EnvString>,
    #[serde(default)]
    pub templates: RawTemplates,
}

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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    /// File to append JSON lines to; `-` is stdout.
    pub path: EnvString,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    pub name: String,
    #[serde(default)]
    pub matchers: Vec<String>,
    #[serde(default)]
    pub steps: Vec<RawStep>,
    pub repeat: Option<RawRepeat>,
    #[serde(default = "yes")]
    pub send_resolved: bool,
    #[serde(default)]
    pub templates: RawTemplates,
    pub heartbeat: Option<RawHeartbeat>,
}

/// A policy whose webhooks are heartbeats (Alertmanager's Watchdog): their absence pages.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHeartbeat {
    pub missing_after: String,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStep {
    pub after: String,
    #[serde(default)]
    pub notify: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRepeat {
    pub every: String,
    pub times: Option<u32>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTemplates {
    pub title: Option<String>,
    pub body: Option<String>,
}
