//! The pure request builder: a notification and its text in, ntfy's JSON body out.

use serde::Serialize;

use super::config::NtfyConfig;
use crate::domain::{Notification, NotificationKind, Rendered, Severity};

/// ntfy refuses (or turns into an attachment) messages above 4096 bytes.
pub const MAX_MESSAGE_BYTES: usize = 4096;
const MAX_ACTIONS: usize = 3;

#[derive(Debug, Serialize, PartialEq)]
pub struct Message<'a> {
    topic: &'a str,
    title: &'a str,
    message: String,
    pub(super) priority: u8,
    tags: Vec<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    click: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    actions: Vec<Action<'a>>,
    sequence_id: &'a str,
}

#[derive(Debug, Serialize, PartialEq)]
#[serde(tag = "action", rename_all = "lowercase")]
enum Action<'a> {
    View {
        label: &'a str,
        url: &'a str,
        clear: bool,
    },
    Http {
        label: &'a str,
        url: &'a str,
        method: &'a str,
        clear: bool,
    },
}

/// Builds the JSON body for `POST <server>/`.
pub fn build_message<'a>(
    config: &'a NtfyConfig,
    n: &'a Notification,
    text: &'a Rendered,
) -> Message<'a> {
    let severity = Severity::from_label(n.group.common_labels.get("severity").map(String::as_str));
    let (priority, mut tags) = match n.kind {
        NotificationKind::Firing => {
            let (slot, tag) = match severity {
                Severity::Critical => (0, "rotating_light"),
                Severity::Warning => (1, "warning"),
                _ => (2, "information_source"),
            };
            (config.priorities[slot], vec![tag])
        }
        // Low priority: replaces the page silently instead of waking anyone again.
        NotificationKind::Resolved => (2, vec!["white_check_mark"]),
        NotificationKind::Acknowledged => (2, vec!["eyes"]),
    };
    tags.extend(config.tags.iter().map(String::as_str));
    let runbook = n.runbook_url();
    let mut actions = Vec::new();
    if let Some(url) = runbook {
        actions.push(Action::View {
            label: "Runbook",
            url,
            clear: false,
        });
    }
    if n.kind == NotificationKind::Firing {
        if let Some(url) = n.ack_url.as_deref() {
            actions.push(Action::Http {
                label: "Acknowledge",
                url,
                method: "POST",
                clear: true,
            });
        }
        if let Some(url) = n.silence_url.as_deref() {
            actions.push(Action::View {
                label: "Silence",
                url,
                clear: false,
            });
        }
    }
    actions.truncate(MAX_ACTIONS);
    Message {
        topic: &config.topic,
        title: &text.title,
        message: truncate(&text.body, MAX_MESSAGE_BYTES),
        priority,
        tags,
        click: runbook.or_else(|| n.generator_url()),
        actions,
        sequence_id: &n.sequence_id,
    }
}

/// Cuts `text` to at most `limit` bytes on a character boundary, marking the cut.
fn truncate(text: &str, limit: usize) -> String {
    if text.len() <= limit {
        return text.to_owned();
    }
    const MARK: &str = "…";
    let mut end = limit - MARK.len();
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{MARK}", &text[..end])
}

#[cfg(test)]
pub(super) fn truncate_for_test(text: &str, limit: usize) -> String {
    truncate(text, limit)
}
