//! The policy file as written: serde structs with `deny_unknown_fields`, nothing checked yet.
//! Each vendor's `targets.<kind>` section is its own (`sinks/*/config.rs`).

use serde::Deserialize;

pub use crate::sinks::RawTargets;
pub use crate::validation::{EnvString, RawTemplates};

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
    /// Where browsers reach Grafana: silence links then open its alerting UI, which manages
    /// the Alertmanager's silences (for an Alertmanager that is not published).
    pub grafana_url: Option<EnvString>,
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
    /// An acknowledgement holds this long while the alerts still fire; then the chain pages
    /// again from the first step.
    pub ack_timeout: Option<String>,
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
