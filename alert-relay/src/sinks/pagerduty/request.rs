//! The pure request builder: a notification and its text in, an Events API v2 body out,
//! within the API's limits for any input: `summary` at most 1024 characters, the whole event
//! at most 512 KB, `timestamp` a valid ISO 8601 date or absent
//! (<https://developer.pagerduty.com/docs/events-api-v2/trigger-events/>).

use serde::Serialize;
use serde_json::{json, Value};

use super::config::PagerDutyConfig;
use crate::domain::{web_link, Notification, NotificationKind, Rendered, Severity};
use crate::sinks::fit;

const MAX_SUMMARY_CHARS: usize = 1024;
/// `source`, `component`, `group` and `class` are short names in PagerDuty's UI.
const MAX_NAME_CHARS: usize = 255;
/// PagerDuty refuses events over 512 KB; leave room for the envelope.
pub const MAX_EVENT_BYTES: usize = 500 * 1024;
/// The smaller event sent when PagerDuty refused the first one as too large or invalid.
pub const SMALL_EVENT_BYTES: usize = 16 * 1024;

#[derive(Debug, Serialize)]
pub struct Event<'a> {
    routing_key: &'a str,
    event_action: &'static str,
    dedup_key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload: Option<Payload<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    links: Vec<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_url: Option<&'a str>,
}

#[derive(Debug, Serialize)]
struct Payload<'a> {
    summary: String,
    source: String,
    severity: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    timestamp: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    component: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    group: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    class: Option<String>,
    custom_details: Value,
}

/// One key per relay incident: its id and start time, both stored, so the key survives
/// restarts and never collides with an incident of an earlier database.
pub fn dedup_key(n: &Notification) -> String {
    format!("alert-relay-{}-{}", n.incident_id, n.incident_started_at.0)
}

fn severity(n: &Notification) -> &'static str {
    match Severity::from_label(n.group.common_labels.get("severity").map(String::as_str)) {
        Severity::Critical => "critical",
        Severity::Warning => "warning",
        Severity::Info => "info",
        Severity::Other(_) => "error",
    }
}

/// The event within the normal size.
pub fn build_event<'a>(
    config: &'a PagerDutyConfig,
    n: &'a Notification,
    text: &'a Rendered,
) -> Event<'a> {
    build_within(config, n, text, MAX_EVENT_BYTES)
}

/// The event, made to fit `limit` bytes once serialised: the per-alert details give way
/// first, then the labels and annotations (their counts stay).
pub fn build_within<'a>(
    config: &'a PagerDutyConfig,
    n: &'a Notification,
    text: &'a Rendered,
    limit: usize,
) -> Event<'a> {
    let action = match n.kind {
        NotificationKind::Firing => "trigger",
        NotificationKind::Acknowledged => "acknowledge",
        // Alertmanager sends no resolve for a silenced alert: close PagerDuty's incident, or
        // its own escalation would page on.
        NotificationKind::Silenced => "resolve",
        NotificationKind::Resolved => "resolve",
        // Never built: the sink refuses handoff notices (people are reached through ntfy,
        // and PagerDuty keeps its own schedules).
        NotificationKind::Handoff => "trigger",
    };
    let mut event = Event {
        routing_key: config.routing_key.expose(),
        event_action: action,
        dedup_key: dedup_key(n),
        payload: None,
        links: Vec::new(),
        client: None,
        client_url: None,
    };
    if n.kind != NotificationKind::Firing {
        // Acknowledge and resolve need only the key.
        return event;
    }
    let labels = &n.group.common_labels;
    let first = n.group.alerts.first();
    let label = |name: &str| {
        labels
            .get(name)
            .or_else(|| first.and_then(|a| a.labels.get(name)))
            .map(String::as_str)
    };
    let summary = fit::chars(&format!("{}: {}", text.title, text.body), MAX_SUMMARY_CHARS);
    let name = |value: Option<&str>| value.map(|v| fit::chars(v, MAX_NAME_CHARS));
    event.payload = Some(Payload {
        summary,
        source: fit::chars(
            label("instance")
                .or(label("target"))
                .or(config.source.as_deref())
                .filter(|s| !s.is_empty())
                .unwrap_or("alert-relay"),
            MAX_NAME_CHARS,
        ),
        severity: severity(n),
        // Parsed at the boundary: only a valid RFC 3339 time reaches here.
        timestamp: first.and_then(|a| a.starts_at.as_deref()),
        component: name(label("service").or(label("job"))),
        group: name(label("service")),
        class: name(label("alertname")),
        custom_details: json!({
            "firing": n.group.firing_count(),
            "truncated_alerts": n.group.truncated_alerts,
            "labels": labels,
            "annotations": n.group.common_annotations,
            "alerts": n.group.alerts.iter().map(|a| json!({"labels": a.labels, "status": a.status, "starts_at": a.starts_at})).collect::<Vec<_>>(),
        }),
    });
    if let Some(url) = fit::url(n.runbook_url(), MAX_URL_BYTES) {
        event.links.push(json!({"href": url, "text": "Runbook"}));
    }
    if let Some(url) = fit::url(n.generator_url(), MAX_URL_BYTES) {
        event.links.push(json!({"href": url, "text": "Source"}));
    }
    if let Some(url) = fit::url(n.console_url.as_deref(), MAX_URL_BYTES) {
        event
            .links
            .push(json!({"href": url, "text": "On-call console"}));
    }
    event.client = Some("alert-relay");
    event.client_url = fit::url(
        n.group.external_url.as_deref().and_then(web_link),
        MAX_URL_BYTES,
    );
    shrink_to(&mut event, n, limit);
    event
}

/// Links longer than this are left out (a cut URL is a broken link).
const MAX_URL_BYTES: usize = 2000;

fn size(event: &Event<'_>) -> usize {
    serde_json::to_vec(event).map_or(usize::MAX, |v| v.len())
}

fn shrink_to(event: &mut Event<'_>, n: &Notification, limit: usize) {
    if event.payload.is_none() {
        return;
    }
    let firing = n.group.firing_count();
    let total = n.group.alerts.len() as u64 + n.group.truncated_alerts;
    let steps = [
        json!({"firing": firing, "total": total, "labels": n.group.common_labels, "annotations": n.group.common_annotations,
               "note": "the alerts' details were left out to fit PagerDuty's size limit"}),
        json!({"firing": firing, "total": total,
               "note": "labels, annotations and the alerts' details were left out to fit PagerDuty's size limit"}),
    ];
    for details in steps {
        if size(event) <= limit {
            return;
        }
        if let Some(payload) = event.payload.as_mut() {
            payload.custom_details = details;
        }
    }
    if size(event) > limit {
        event.links.clear();
    }
}
