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
    pub people: std::collections::BTreeMap<String, RawPerson>,
    #[serde(default)]
    pub schedules: std::collections::BTreeMap<String, RawSchedule>,
    #[serde(default)]
    pub policies: Vec<RawPolicy>,
    /// How long closed incidents and their timelines are kept (default 90d).
    pub retention: Option<String>,
}

/// A person who can be on call, and how to reach them.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPerson {
    /// For showing their shifts in their own time (`alert-relay oncall`).
    pub time_zone: Option<String>,
    /// Their phone: an ntfy topic (server and token default to ntfy.sh and none).
    pub ntfy: Option<crate::sinks::ntfy::RawNtfy>,
    /// Or a file their pages and sign-in links are written to (a demo, a test): no account.
    pub log: Option<crate::sinks::log::RawLog>,
    /// Their Slack member id (`U024BE7LH`): Slack messages of a step that pages them
    /// mention them, so Slack notifies them too.
    pub slack_member_id: Option<EnvString>,
    /// Their e-mail address: the console's authenticating proxy may name them by it.
    pub email: Option<EnvString>,
}

/// Who is on call, by rotation, in one time zone.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSchedule {
    pub time_zone: String,
    /// Push a notice to the incoming person at each handoff.
    #[serde(default = "yes")]
    pub handoff_notices: bool,
    #[serde(default)]
    pub rotations: Vec<RawRotation>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRotation {
    pub people: Vec<String>,
    /// `1w`, `2d`, `12h`.
    pub shift: String,
    pub handoff: RawHandoff,
    /// The date of the first shift (`2027-03-01`); with a weekday handoff, the first such day
    /// on or after it.
    pub start: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHandoff {
    /// `monday`… for weekly shifts.
    pub weekday: Option<String>,
    /// Local time of day, `09:00`.
    pub time: String,
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
    /// The on-call console at `/` (default on).
    pub console: Option<bool>,
    #[serde(default)]
    pub console_auth: RawConsoleAuth,
}

/// How people sign in to the console.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConsoleAuth {
    /// A one-time link pushed to the person's own contact (default on).
    pub sign_in_by_push: Option<bool>,
    /// How long a pushed sign-in link works (default 5m).
    pub link_ttl: Option<String>,
    /// How long a session lasts (default 30d).
    pub session_ttl: Option<String>,
    /// An authenticating proxy in front of the relay names the person in a header.
    pub proxy: Option<RawProxyAuth>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProxyAuth {
    /// `X-Forwarded-Email`, `Remote-User`, …: the person's name or e-mail address.
    pub header: String,
    /// Addresses the proxy connects from (`127.0.0.1`, `10.0.0.0/8`); the header from any
    /// other address is refused.
    pub trusted_proxies: Vec<String>,
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
