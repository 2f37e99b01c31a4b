//! The pure request builder: a notification and its text in, Slack's JSON body out.

use serde_json::{json, Value};

use crate::domain::{Notification, NotificationKind, Rendered, Severity};
use crate::sinks::fit;

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
// Block Kit's documented limits (<https://api.slack.com/reference/block-kit/blocks>,
// <https://api.slack.com/reference/block-kit/block-elements#button>); Slack answers
// `invalid_blocks` to a message past any of them.
const MAX_SECTION_CHARS: usize = 3000;
const MAX_FIELD_CHARS: usize = 2000;
const MAX_FIELDS: usize = 10;
const MAX_HEADER_CHARS: usize = 150;
const MAX_BUTTON_URL_CHARS: usize = 3000;
const MAX_CONTEXT_CHARS: usize = 3000;
/// The top-level `text` (the notification's fallback) is cut by Slack past 40,000 characters;
/// ours stays as short as a section.
const MAX_TEXT_CHARS: usize = 3000;

fn color(n: &Notification) -> &'static str {
    match n.kind {
        NotificationKind::Resolved => "good",
        NotificationKind::Acknowledged => "#764FA5",
        NotificationKind::Silenced => "#9E9E9E",
        NotificationKind::Handoff => "#439FE0",
        NotificationKind::Firing => {
            match Severity::from_label(n.group.common_labels.get("severity").map(String::as_str)) {
                Severity::Critical => "danger",
                Severity::Warning => "warning",
                _ => "#439FE0",
            }
        }
    }
}

/// Text that comes from labels and annotations, made inert for Slack's `mrkdwn`: `&`, `<` and
/// `>` are its control characters (`<!channel>`, `<https://x|click>`), per
/// <https://api.slack.com/reference/surfaces/formatting#escaping>.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

/// Escaped text cut to `limit` characters, never inside an entity (`&amp;` counts as Slack
/// counts it: five characters).
fn mrkdwn(text: &str, limit: usize) -> String {
    let escaped = escape(text);
    if escaped.chars().count() <= limit {
        return escaped;
    }
    // Cut the raw text until its escaped form fits: entities are never split.
    let mut raw_limit = limit;
    loop {
        let cut = fit::chars(text, raw_limit);
        let escaped = escape(&cut);
        if escaped.chars().count() <= limit || raw_limit == 0 {
            return escaped;
        }
        raw_limit -= (escaped.chars().count() - limit).min(raw_limit);
    }
}

/// Builds the JSON body for `POST <webhook url>`, within Block Kit's limits for any input.
pub fn build_message(n: &Notification, text: &Rendered) -> Value {
    let labels = &n.group.common_labels;
    let mut fields = vec![
        json!({"type": "mrkdwn", "text": format!("*Severity*\n{}", mrkdwn(labels.get("severity").map_or("none", String::as_str), 100))}),
        json!({"type": "mrkdwn", "text": alerts_field(n)}),
    ];
    for name in SHOWN_LABELS {
        if let Some(value) = labels.get(name) {
            fields.push(json!({"type": "mrkdwn", "text": format!("*{name}*\n{}", mrkdwn(value, MAX_FIELD_CHARS - name.len() - 3))}));
        }
    }
    fields.truncate(MAX_FIELDS);
    let mut buttons = Vec::new();
    let mut button = |label: &str, url: Option<&str>, primary: bool| {
        if let Some(url) = fit::url(url, MAX_BUTTON_URL_CHARS) {
            let mut b = json!({"type": "button", "text": {"type": "plain_text", "text": label}, "url": url});
            if primary {
                b["style"] = "primary".into();
            }
            buttons.push(b);
        }
    };
    button("Runbook", n.runbook_url(), true);
    button("Open in the console", n.console_url.as_deref(), false);
    button("Source", n.generator_url(), false);
    if n.kind == NotificationKind::Firing {
        button("Silence", n.silence_url.as_deref(), false);
    }
    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "text": header(&text.title)}}),
        json!({"type": "section", "text": {"type": "mrkdwn", "text": mrkdwn(&text.body, MAX_SECTION_CHARS)}}),
        json!({"type": "section", "fields": fields}),
    ];
    if let Some(who) = mentions(n) {
        blocks.insert(
            1,
            json!({"type": "section", "text": {"type": "mrkdwn", "text": format!("*Paging* {who}")}}),
        );
    }
    if !buttons.is_empty() {
        blocks.push(json!({"type": "actions", "elements": buttons}));
    }
    blocks.push(
        json!({"type": "context", "elements": [{"type": "mrkdwn", "text": mrkdwn(&format!(
            "incident {} · policy {} · step {}", n.sequence_id, n.policy, n.step + 1
        ), MAX_CONTEXT_CHARS)}]}),
    );
    json!({
        "text": fallback(n, text),
        "attachments": [{"color": color(n), "blocks": blocks}],
    })
}

/// The smaller message sent when Slack refused the blocks: the text alone.
pub fn build_plain(n: &Notification, text: &Rendered) -> Value {
    json!({ "text": fallback(n, text) })
}

/// `<@U024BE7LH> <@W0123>`: the people the step pages, as Slack mentions (which notify them).
/// Only well-formed member ids (checked at load; a stored row is checked again), at most 20.
fn mentions(n: &Notification) -> Option<String> {
    let ids: Vec<String> = n
        .mentions
        .iter()
        .filter(|id| {
            (1..=32).contains(&id.len())
                && id
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
        })
        .take(20)
        .map(|id| format!("<@{id}>"))
        .collect();
    (!ids.is_empty()).then(|| ids.join(" "))
}

/// The top-level text, which Slack shows in notifications: the mentions (unescaped, so that
/// they notify), then the escaped title and body.
fn fallback(n: &Notification, text: &Rendered) -> String {
    let body = mrkdwn(&format!("{}: {}", text.title, text.body), MAX_TEXT_CHARS);
    match mentions(n) {
        Some(who) => fit::chars(&format!("{who} {body}"), MAX_TEXT_CHARS),
        None => body,
    }
}

/// A header is `plain_text` (no escaping), at most 150 characters and never empty.
fn header(title: &str) -> String {
    let title = fit::chars(title.trim(), MAX_HEADER_CHARS);
    if title.is_empty() {
        "alert".to_owned()
    } else {
        title
    }
}

/// `3 firing, 5 total` and, when Alertmanager left some out (`max_alerts`), how many.
fn alerts_field(n: &Notification) -> String {
    let group = &n.group;
    let mut text = format!(
        "*Alerts*\n{} firing, {} total",
        group.firing_count(),
        group.alerts.len() as u64 + group.truncated_alerts
    );
    if group.truncated_alerts > 0 {
        text.push_str(&format!(" ({} shown)", group.alerts.len()));
    }
    text
}
