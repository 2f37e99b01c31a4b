//! The pure request builder: a notification and its text in, Slack's JSON body out.

use serde_json::{json, Value};

use crate::domain::{Notification, NotificationKind, Rendered, Severity};

/// Labels worth a field in the message, in this order (alertname and severity are shown
/// already).
const SHOWN_LABELS: [&str; 6] = [
    "service",
    "target",
    "instance",
    "job",
    "check",
    "mountpoint",
];
const MAX_SECTION_CHARS: usize = 3000;
const MAX_HEADER_CHARS: usize = 150;

fn color(n: &Notification) -> &'static str {
    match n.kind {
        NotificationKind::Resolved => "good",
        NotificationKind::Acknowledged => "#764FA5",
        NotificationKind::Firing => {
            match Severity::from_label(n.group.common_labels.get("severity").map(String::as_str)) {
                Severity::Critical => "danger",
                Severity::Warning => "warning",
                _ => "#439FE0",
            }
        }
    }
}

fn cut(text: &str, limit: usize) -> String {
    if text.chars().count() <= limit {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(limit - 1).collect();
    out.push('…');
    out
}

/// Builds the JSON body for `POST <webhook url>`.
pub fn build_message(n: &Notification, text: &Rendered) -> Value {
    let labels = &n.group.common_labels;
    let mut fields = vec![
        json!({"type": "mrkdwn", "text": format!("*Severity*\n{}", labels.get("severity").map_or("none", String::as_str))}),
    ];
    fields.push(json!({"type": "mrkdwn", "text": format!("*Alerts*\n{} firing, {} total", n.group.firing_count(), n.group.alerts.len())}));
    for name in SHOWN_LABELS {
        if let Some(value) = labels.get(name) {
            fields.push(json!({"type": "mrkdwn", "text": format!("*{name}*\n{value}")}));
        }
    }
    let mut buttons = Vec::new();
    if let Some(url) = n.runbook_url() {
        buttons.push(json!({"type": "button", "text": {"type": "plain_text", "text": "Runbook"}, "url": url, "style": "primary"}));
    }
    if let Some(url) = n.generator_url() {
        buttons.push(
            json!({"type": "button", "text": {"type": "plain_text", "text": "Source"}, "url": url}),
        );
    }
    if n.kind == NotificationKind::Firing {
        if let Some(url) = &n.silence_url {
            buttons.push(json!({"type": "button", "text": {"type": "plain_text", "text": "Silence"}, "url": url}));
        }
    }
    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "text": cut(&text.title, MAX_HEADER_CHARS)}}),
        json!({"type": "section", "text": {"type": "mrkdwn", "text": cut(&text.body, MAX_SECTION_CHARS)}}),
        json!({"type": "section", "fields": fields}),
    ];
    if !buttons.is_empty() {
        blocks.push(json!({"type": "actions", "elements": buttons}));
    }
    blocks.push(
        json!({"type": "context", "elements": [{"type": "mrkdwn", "text": format!(
            "incident {} · policy {} · step {}", n.sequence_id, n.policy, n.step + 1
        )}]}),
    );
    json!({
        "text": cut(&format!("{}: {}", text.title, text.body), MAX_SECTION_CHARS),
        "attachments": [{"color": color(n), "blocks": blocks}],
    })
}
