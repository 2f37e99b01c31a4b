//! The console's view models, filled from the application layer's read side, and the few
//! ways it formats things (times in the viewer's zone, durations, safe links). Askama
//! escapes every value a template prints: nothing here builds HTML.

pub mod dead_letters;
pub mod history;
pub mod me;
pub mod schedules;

use askama::Template;

use crate::app::OpenIncident;
use crate::domain::{AlertStatus, Timestamp};
use crate::engine::{IncidentEvent, IncidentRecord, OnCall, Phase, StopReason};

/// What every page's frame needs: where the console lives, and who is signed in.
pub struct Chrome {
    pub base: String,
    pub person: Option<String>,
    /// The signed-in person's anti-forgery token, for every form.
    pub csrf: String,
    /// Signed in here (a session to sign out of); a person the proxy names signs out there.
    pub own_session: bool,
}

#[derive(Template)]
#[template(path = "console/message.html")]
pub struct MessagePage {
    pub chrome: Chrome,
    pub title: String,
    pub message: String,
}

impl MessagePage {
    pub fn new(base: &str, title: &str, message: &str) -> Self {
        Self {
            chrome: Chrome {
                base: base.to_owned(),
                person: None,
                csrf: String::new(),
                own_session: false,
            },
            title: title.to_owned(),
            message: message.to_owned(),
        }
    }
}

#[derive(Template)]
#[template(path = "console/signin.html")]
pub struct SigninPage {
    pub chrome: Chrome,
    pub push: bool,
    /// Said after a request: a link is on its way if the name is someone's.
    pub sent: bool,
    pub refused: Option<String>,
}

#[derive(Template)]
#[template(path = "console/signin_link.html")]
pub struct SigninLinkPage {
    pub chrome: Chrome,
    pub token: String,
}

#[derive(Template)]
#[template(path = "console/now.html")]
pub struct NowPage {
    pub chrome: Chrome,
    pub zone: String,
    pub incidents: Vec<IncidentRow>,
    pub on_call: Vec<OnCallRow>,
    pub targets: Vec<TargetRow>,
    pub heartbeats: Vec<(String, String)>,
    pub dead_letters: usize,
}

pub struct IncidentRow {
    pub id: i64,
    pub title: String,
    pub severity: String,
    pub state: String,
    pub since: String,
    pub next: Option<String>,
}

pub struct OnCallRow {
    pub schedule: String,
    pub now: Option<String>,
    pub until: Option<String>,
    pub next: Option<String>,
}

pub struct TargetRow {
    pub name: String,
    /// `None`: not checked (Slack and PagerDuty cannot be, without sending).
    pub healthy: Option<bool>,
}

#[derive(Template)]
#[template(path = "console/incident.html")]
pub struct IncidentPage {
    pub chrome: Chrome,
    pub zone: String,
    pub id: i64,
    pub title: String,
    pub severity: String,
    pub state: String,
    pub policy: String,
    pub started: String,
    pub next: Option<String>,
    pub can_ack: bool,
    /// Escalating with a next step (or repeat) still planned.
    pub can_escalate: bool,
    /// Not closed yet.
    pub can_resolve: bool,
    /// Alertmanager is known, and the incident is not closed.
    pub can_silence: bool,
    pub alerts: Vec<AlertView>,
    pub links: Vec<(String, String)>,
    pub timeline: Vec<EventRow>,
}

pub struct AlertView {
    pub firing: bool,
    pub labels: Vec<(String, String)>,
    pub annotations: Vec<(String, String)>,
}

pub struct EventRow {
    pub at: String,
    pub kind: String,
    pub label: String,
    pub actor: Option<String>,
    pub target: Option<String>,
    pub detail: String,
}

/// `t` in `zone` (an IANA name; UTC when unknown), as a person reads it on a phone.
pub fn local(t: Timestamp, zone: &str) -> String {
    let tz = jiff::tz::TimeZone::get(zone).unwrap_or(jiff::tz::TimeZone::UTC);
    match jiff::Timestamp::from_millisecond(t.0) {
        Ok(ts) => ts
            .to_zoned_datetime(tz)
            .strftime("%a %-d %b %H:%M")
            .to_string(),
        Err(_) => t.to_rfc3339(),
    }
}

/// `text` with each RFC 3339 time in it (a silence's end, as Alertmanager and the engine
/// write it) read in `zone`, as every other time on the page is.
pub fn local_times(text: &str, zone: &str) -> String {
    text.split(' ')
        .map(|word| {
            let bare = word.trim_end_matches([':', ',', ';', '.', ')']);
            match bare.parse::<jiff::Timestamp>() {
                Ok(t) => format!(
                    "{}{}",
                    local(Timestamp(t.as_millisecond()), zone),
                    &word[bare.len()..]
                ),
                Err(_) => word.to_owned(),
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// How long from `then` to `now`, in the largest sensible unit or two.
pub fn ago(then: Timestamp, now: Timestamp) -> String {
    let secs = (now.0 - then.0).max(0) / 1000;
    match secs {
        0..60 => format!("{secs} s"),
        60..3600 => format!("{} min", secs / 60),
        3600..86_400 => format!("{} h {} min", secs / 3600, secs % 3600 / 60),
        _ => format!("{} d {} h", secs / 86_400, secs % 86_400 / 3600),
    }
}

/// `url` if it is an http(s) link (never `javascript:`, `data:` or anything else).
pub fn http_link(url: &str) -> Option<String> {
    let parsed = url::Url::parse(url.trim()).ok()?;
    matches!(parsed.scheme(), "http" | "https").then(|| parsed.to_string())
}

/// A title for an incident: its alert name and summary.
pub fn title(open: &OpenIncident) -> String {
    record_title(&open.record)
}

/// [`title`] of an incident's record.
pub fn record_title(record: &IncidentRecord) -> String {
    let g = &record.group;
    let name = g
        .common_labels
        .get("alertname")
        .or_else(|| g.group_labels.get("alertname"))
        .cloned()
        .unwrap_or_else(|| format!("incident {}", record.id));
    match g.common_annotations.get("summary") {
        Some(summary) if !summary.is_empty() => format!("{name}: {summary}"),
        _ => name,
    }
}

pub fn severity(open: &OpenIncident) -> String {
    open.record
        .group
        .common_labels
        .get("severity")
        .cloned()
        .unwrap_or_else(|| "none".into())
}

/// Where an incident stands, in a sentence.
pub fn state(open: &OpenIncident, zone: &str) -> String {
    let m = &open.record.machine;
    let at = |t: Option<Timestamp>| t.map(|t| local(t, zone)).unwrap_or_default();
    match m.phase {
        Phase::Escalating => format!(
            "Paging: step {} of {}",
            m.steps_fired.max(1),
            m.plan.steps.len()
        ),
        Phase::Stopped(StopReason::Acknowledged) => format!(
            "Acknowledged by {} at {}",
            who(m.acknowledged_by.as_deref().unwrap_or("someone")),
            at(m.stopped_at)
        ),
        Phase::Stopped(StopReason::Silenced) => match m.silence_note.as_deref() {
            Some(note) => match note.strip_prefix("silenced by ") {
                Some(rest) => format!("Silenced by {}", local_times(rest, zone)),
                None => format!("Silenced ({})", local_times(note, zone)),
            },
            None => "Silenced in Alertmanager".into(),
        },
        Phase::Stopped(StopReason::Resolved) | Phase::Closed => {
            format!("Resolved at {}", at(m.stopped_at))
        }
    }
}

/// What comes next: when, and to whom (who each schedule would page now).
pub fn next(open: &OpenIncident, on_call: &[OnCall], zone: &str) -> Option<String> {
    let (at, targets) = open.record.machine.next_step()?;
    let whom: Vec<String> = targets
        .iter()
        .map(|t| match t.as_str().strip_prefix("schedule.") {
            Some(name) => {
                let who = on_call
                    .iter()
                    .find(|o| o.schedule == name)
                    .and_then(|o| o.now.as_ref())
                    .map_or("nobody on call".to_owned(), |s| s.person.clone());
                format!("{} ({who})", t.as_str())
            }
            None => t.as_str().to_owned(),
        })
        .collect();
    Some(format!(
        "Next: step {} at {} → {}",
        open.record.machine.steps_fired + 1,
        local(at, zone),
        whom.join(", ")
    ))
}

pub fn alerts(open: &OpenIncident) -> Vec<AlertView> {
    open.record
        .group
        .alerts
        .iter()
        .map(|a| AlertView {
            firing: a.status == AlertStatus::Firing,
            labels: a
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            annotations: a
                .annotations
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        })
        .collect()
}

/// The incident's links that are safe to follow: runbook, source, Grafana (http(s) only).
pub fn links(open: &OpenIncident) -> Vec<(String, String)> {
    let g = &open.record.group;
    let first = g.alerts.first();
    let annotation = |k: &str| {
        g.common_annotations
            .get(k)
            .or_else(|| first.and_then(|a| a.annotations.get(k)))
    };
    let mut out = Vec::new();
    for (label, url) in [
        ("Runbook", annotation("runbook_url")),
        ("Dashboard", annotation("dashboard_url")),
        ("Source", first.and_then(|a| a.generator_url.as_ref())),
    ] {
        if let Some(url) = url.and_then(|u| http_link(u)) {
            out.push((label.to_owned(), url));
        }
    }
    out
}

pub fn event_row(e: &IncidentEvent, zone: &str) -> EventRow {
    let label = match e.kind_name.as_str() {
        "started" => "Started",
        "alerts_joined" => "Alerts joined",
        "paged" => "Paged",
        "notice" => "Notice",
        "dead_at_once" => "Not sent",
        "acknowledged" => "Acknowledged",
        "silenced" => "Silenced",
        "resolved" => "Resolved",
        "ack_timed_out" => "Acknowledgement ran out",
        "escalated" => "Escalated by hand",
        "delivered" => "Delivered",
        "retrying" => "Failed, retrying",
        "dead_lettered" => "Given up",
        _ => "Event",
    };
    EventRow {
        at: local(e.at, zone),
        kind: e.kind_name.clone(),
        label: label.to_owned(),
        actor: e.actor.as_deref().map(who),
        target: e.target.clone(),
        detail: local_times(&e.detail, zone),
    }
}

/// Who did something, as a sentence says it: `alice (console)` (how the relay records an
/// action taken in the console) reads "alice in the console".
pub fn who(actor: &str) -> String {
    match actor.strip_suffix(crate::app::load::CONSOLE_SUFFIX) {
        Some(person) => format!("{person} in the console"),
        None => actor.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_action_in_the_console_reads_as_one() {
        assert_eq!(who("alice (console)"), "alice in the console");
        assert_eq!(who("alice"), "alice");
        assert_eq!(who("ntfy button"), "ntfy button");
    }

    #[test]
    fn only_http_links_are_links() {
        assert_eq!(
            http_link("https://runbooks.example/GatewayDown").as_deref(),
            Some("https://runbooks.example/GatewayDown")
        );
        for bad in [
            "javascript:alert(1)",
            " JAVASCRIPT:alert(1)",
            "data:text/html,<script>alert(1)</script>",
            "/GatewayDown",
            "vbscript:x",
            "",
        ] {
            assert_eq!(http_link(bad), None, "{bad}");
        }
    }

    #[test]
    fn times_read_in_the_viewers_zone() {
        let t = Timestamp(1_800_000_000_000); // 2027-01-15T08:00:00Z
        assert_eq!(local(t, "UTC"), "Fri 15 Jan 08:00");
        assert_eq!(local(t, "Europe/Berlin"), "Fri 15 Jan 09:00");
        assert_eq!(local(t, "Not/AZone"), "Fri 15 Jan 08:00");
        assert_eq!(ago(Timestamp(t.0 - 3_720_000), t), "1 h 2 min");
    }

    #[test]
    fn times_in_notes_read_in_the_viewers_zone() {
        assert_eq!(
            local_times(
                "silenced by alice until 2027-01-15T08:00:00.498Z: disk replaced",
                "Europe/Berlin"
            ),
            "silenced by alice until Fri 15 Jan 09:00: disk replaced"
        );
        for untouched in ["inhibited by another alert", "step 2 → ntfy.secondary", ""] {
            assert_eq!(local_times(untouched, "UTC"), untouched);
        }
    }
}
