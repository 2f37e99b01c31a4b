//! Domain types shared by every module: parsed once at the boundary, then passed around typed.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

mod link;
mod sample;
pub use link::{is_runbook_name, web_link};
pub use sample::sample_notification;

/// Wall-clock instant as Unix milliseconds. Pure code receives it as `now`; only drivers read
/// the clock (`Timestamp::now()`).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// Reads the system clock. Never call this from `escalation` or `config`.
    pub fn now() -> Self {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        Timestamp(ms)
    }

    pub fn plus(self, d: std::time::Duration) -> Self {
        Timestamp(self.0.saturating_add(d.as_millis() as i64))
    }

    pub fn as_millis(self) -> i64 {
        self.0
    }

    /// Reads an RFC 3339 instant with its offset (`2027-03-29T07:30:00Z`,
    /// `2027-03-29T09:30:00+02:00`).
    pub fn parse(text: &str) -> Result<Self, String> {
        text.trim()
            .parse::<jiff::Timestamp>()
            .map(|t| Timestamp(t.as_millisecond()))
            .map_err(|e| {
                format!("`{text}` is not an instant ({e}); write it like 2027-03-29T07:30:00Z")
            })
    }

    /// `2026-11-23T04:05:06.789Z`; instants before 1970 print as the epoch.
    pub fn to_rfc3339(self) -> String {
        let since_epoch = std::time::Duration::from_millis(u64::try_from(self.0).unwrap_or(0));
        humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + since_epoch).to_string()
    }
}

/// Alert severity from the `severity` label. Unknown values are kept as `Other`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Critical,
    Warning,
    Info,
    Other(String),
}

impl Severity {
    pub fn from_label(value: Option<&str>) -> Self {
        match value.map(str::to_ascii_lowercase).as_deref() {
            Some("critical") | Some("page") => Severity::Critical,
            Some("warning") | Some("warn") => Severity::Warning,
            Some("info") | Some("none") | None => Severity::Info,
            Some(other) => Severity::Other(other.to_owned()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Severity::Critical => "critical",
            Severity::Warning => "warning",
            Severity::Info => "info",
            Severity::Other(s) => s,
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                $name(s.to_owned())
            }
        }
    };
}

name_type!(
    /// Name of a notification target in the policy file (`ntfy.primary`, `log`...).
    TargetName
);
name_type!(
    /// Name of an escalation policy in the policy file.
    PolicyName
);
name_type!(
    /// Alertmanager's alert fingerprint.
    Fingerprint
);
name_type!(
    /// Alertmanager's `groupKey`: one incident per (policy, group key) while it fires.
    GroupKey
);

/// A random key given to an incident when it starts. Unlike the row id it never repeats,
/// even after the store is reset or restored: acknowledge links are bound to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct IncidentKey(pub [u8; 16]);

impl IncidentKey {
    pub fn to_hex(self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The key of an incident stored before keys existed is all zeros (`""` in the store).
    pub fn from_hex(text: &str) -> Option<Self> {
        if text.is_empty() {
            return Some(Self::default());
        }
        if text.len() != 32 || !text.is_ascii() {
            return None;
        }
        let mut bytes = [0u8; 16];
        for (i, byte) in bytes.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(Self(bytes))
    }
}

pub type Labels = BTreeMap<String, String>;

/// The `receiver` of the alerts the relay raises itself (`HeartbeatMissing`): Alertmanager has
/// never heard of them, so it is not asked about their silences and offers no silence link.
pub const OWN_RECEIVER: &str = "alert-relay";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertStatus {
    Firing,
    Resolved,
}

/// One alert of a webhook, parsed and validated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub status: AlertStatus,
    pub labels: Labels,
    pub annotations: Labels,
    pub starts_at: Option<String>,
    pub ends_at: Option<String>,
    pub generator_url: Option<String>,
    pub fingerprint: Fingerprint,
}

impl Alert {
    pub fn severity(&self) -> Severity {
        Severity::from_label(self.labels.get("severity").map(String::as_str))
    }

    pub fn name(&self) -> &str {
        self.labels
            .get("alertname")
            .map(String::as_str)
            .unwrap_or("unnamed")
    }
}

/// A webhook notification from Alertmanager, parsed at the boundary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertGroup {
    pub group_key: GroupKey,
    pub status: AlertStatus,
    pub receiver: String,
    pub group_labels: Labels,
    pub common_labels: Labels,
    pub common_annotations: Labels,
    pub external_url: Option<String>,
    pub truncated_alerts: u64,
    pub alerts: Vec<Alert>,
}

impl AlertGroup {
    /// The labels a policy is matched against: the common labels of the group.
    pub fn match_labels(&self) -> &Labels {
        &self.common_labels
    }

    pub fn severity(&self) -> Severity {
        Severity::from_label(self.common_labels.get("severity").map(String::as_str))
    }

    /// The alert's name: the common `alertname` label, else the grouping one.
    pub fn alertname(&self) -> Option<&str> {
        self.common_labels
            .get("alertname")
            .or_else(|| self.group_labels.get("alertname"))
            .map(String::as_str)
    }

    pub fn firing_count(&self) -> usize {
        self.alerts
            .iter()
            .filter(|a| a.status == AlertStatus::Firing)
            .count()
    }

    /// The `runbook_url` annotation as the rule wrote it (the common one, else the first
    /// alert's): maybe relative, maybe not a link at all. Notifications carry it resolved
    /// ([`Notification::runbook_url`]).
    pub fn runbook_annotation(&self) -> Option<&str> {
        self.common_annotations
            .get("runbook_url")
            .or_else(|| {
                self.alerts
                    .iter()
                    .find_map(|a| a.annotations.get("runbook_url"))
            })
            .map(String::as_str)
    }
}

/// The Alertmanager matcher `name="value"`, with the value escaped the way Alertmanager's
/// parser reads it back (`\\`, `\"`, `\n`), so that any UTF-8 value round-trips.
pub fn equality_matcher(name: &str, value: &str) -> String {
    let mut out = String::with_capacity(name.len() + value.len() + 4);
    out.push_str(name);
    out.push_str("=\"");
    for ch in value.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            other => out.push(other),
        }
    }
    out.push('"');
    out
}

/// Reads a quoted matcher value back as Alertmanager does: `\\`, `\"` and `\n` are escapes,
/// any other backslash is literal; an unescaped quote inside is an error (`None`).
pub fn unquote_matcher_value(quoted: &str) -> Option<String> {
    let inner = quoted.strip_prefix('"')?.strip_suffix('"')?;
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars().peekable();
    while let Some(ch) = chars.next() {
        match ch {
            '\\' => match chars.peek().copied() {
                Some('n') => {
                    chars.next();
                    out.push('\n');
                }
                Some(c @ ('"' | '\\')) => {
                    chars.next();
                    out.push(c);
                }
                _ => out.push('\\'),
            },
            '"' => return None,
            other => out.push(other),
        }
    }
    Some(out)
}

/// Why a notification is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotificationKind {
    Firing,
    Resolved,
    Acknowledged,
    /// Alertmanager reported the alerts silenced or inhibited: escalation stopped.
    Silenced,
    /// A shift began: the incoming person is told they are on call (no incident; its `note`
    /// says for which schedule and until when).
    Handoff,
}

impl NotificationKind {
    /// Its name, as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Firing => "firing",
            Self::Resolved => "resolved",
            Self::Acknowledged => "acknowledged",
            Self::Silenced => "silenced",
            Self::Handoff => "handoff",
        }
    }
}

/// The text of one notification, rendered from its templates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub title: String,
    pub body: String,
}

/// One notification for one target: what the outbox stores (as JSON) and what a `Sink` sends.
/// Sinks turn it into their private wire types; nothing here is vendor-shaped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    pub incident_id: i64,
    pub policy: PolicyName,
    pub target: TargetName,
    pub kind: NotificationKind,
    /// Index of the escalation step (0-based) that produced it.
    pub step: usize,
    /// The alerts as last received for this incident.
    pub group: AlertGroup,
    /// Stable per incident (`relay-<incident_id>`): ntfy sequence id, PagerDuty dedup key.
    pub sequence_id: String,
    pub incident_started_at: Timestamp,
    /// Signed acknowledge link (POST), when the relay has a public URL and the incident is open.
    pub ack_url: Option<String>,
    /// Alertmanager's silence page pre-filled with the group's labels, when known.
    pub silence_url: Option<String>,
    pub created_at: Timestamp,
    /// Who acknowledged the incident, on the notice that says so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acknowledged_by: Option<String>,
    /// Who silenced the alerts and until when, on the notice that says so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub silence_note: Option<String>,
    /// Why this page goes out besides its step: new alerts joined an acknowledged incident,
    /// or an acknowledgement ran out while the alerts still fire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The person this goes to (a target `person.<name>`, or whoever a schedule named).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub person: Option<String>,
    /// Slack member ids of the people the same step pages (Slack messages mention them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mentions: Vec<String>,
    /// The runbook link, resolved once when the notification was composed
    /// (`engine::links::runbook_link`): an absolute http(s) URL, a relative one made absolute
    /// under `server.public_url`; `None` when there is no link that can be opened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runbook_link: Option<String>,
    /// Where the console shows what this is about, when the console is on and the relay has a
    /// public URL: the incident's page (`<public_url>incidents/<id>`, composed in
    /// `engine::links`), or a sign-in link in a sign-in push.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub console_url: Option<String>,
}

impl Notification {
    /// The runbook link every vendor shows: the one resolved at composition, else (a
    /// notification queued before links were resolved, a sample) the annotation when it is
    /// an absolute http(s) URL. Never a relative path, never `javascript:` or `data:`.
    pub fn runbook_url(&self) -> Option<&str> {
        self.runbook_link
            .as_deref()
            .or_else(|| self.group.runbook_annotation().and_then(web_link))
    }

    /// The first alert's `generatorURL` that can be opened (absolute http(s)).
    pub fn generator_url(&self) -> Option<&str> {
        self.group
            .alerts
            .iter()
            .find_map(|a| a.generator_url.as_deref().and_then(web_link))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matcher_values_round_trip_whatever_they_hold() {
        for value in [
            "plain",
            r"\\fileserver\backup",
            r"C:\new",
            "quote \" inside",
            "line\nbreak",
            "trailing\\",
            "",
            "ünïcödé ✓",
            r#"\"\\n"#,
        ] {
            let matcher = equality_matcher("share", value);
            let quoted = matcher.strip_prefix("share=").expect("prefix");
            assert_eq!(
                unquote_matcher_value(quoted).as_deref(),
                Some(value),
                "{matcher}"
            );
        }
        assert_eq!(equality_matcher("path", r"C:\new"), r#"path="C:\\new""#);
        assert_eq!(unquote_matcher_value(r#""a"b""#), None);
        assert_eq!(unquote_matcher_value(r#""a\qb""#).as_deref(), Some(r"a\qb"));
    }

    #[test]
    fn incident_keys_round_trip_through_hex() {
        let key = IncidentKey([0xab; 16]);
        assert_eq!(IncidentKey::from_hex(&key.to_hex()), Some(key));
        assert_eq!(IncidentKey::from_hex(""), Some(IncidentKey::default()));
        assert_eq!(IncidentKey::from_hex("zz"), None);
        assert_eq!(IncidentKey::from_hex(&"é".repeat(16)), None);
    }

    #[test]
    fn timestamps_print_as_rfc3339_in_utc_with_milliseconds() {
        assert_eq!(
            Timestamp(1_795_410_306_789).to_rfc3339(),
            "2026-11-23T05:05:06.789Z"
        );
        assert_eq!(Timestamp(-5).to_rfc3339(), "1970-01-01T00:00:00.000Z");
    }
}
