//! The pure request builder: a notification and its text in, an Events API v2 body out.

use serde::Serialize;
use serde_json::{json, Value};

use super::config::PagerDutyConfig;
use crate::domain::{Notification, NotificationKind, Rendered, Severity};

const MAX_SUMMARY_CHARS: usize = 1024;

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
    source: &'a str,
    severity: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    timestamp: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    component: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    group: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    class: Option<&'a str>,
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

pub fn build_event<'a>(
    config: &'a PagerDutyConfig,
    n: &'a Notification,
    text: &'a Rendered,
) -> Event<'a> {
    let action = match n.kind {
        NotificationKind::Firing => "trigger",
        NotificationKind::Acknowledged => "acknowledge",
        NotificationKind::Resolved => "resolve",
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
    let summary: String = format!("{}: {}", text.title, text.body)
        .chars()
        .take(MAX_SUMMARY_CHARS)
        .collect();
    event.payload = Some(Payload {
        summary,
        source: label("instance")
            .or(label("target"))
            .or(config.source.as_deref())
            .unwrap_or("alert-relay"),
        severity: severity(n),
        timestamp: first.and_then(|a| a.starts_at.as_deref()),
        component: label("service").or(label("job")),
        group: label("service"),
        class: label("alertname"),
        custom_details: json!({
            "firing": n.group.firing_count(),
            "labels": labels,
            "annotations": n.group.common_annotations,
            "alerts": n.group.alerts.iter().map(|a| json!({"labels": a.labels, "status": a.status, "starts_at": a.starts_at})).collect::<Vec<_>>(),
        }),
    });
    if let Some(url) = n.runbook_url() {
        event.links.push(json!({"href": url, "text": "Runbook"}));
    }
    if let Some(url) = n.generator_url() {
        event.links.push(json!({"href": url, "text": "Source"}));
    }
    event.client = Some("alert-relay");
    event.client_url = n.group.external_url.as_deref().filter(|u| !u.is_empty());
    event
}
