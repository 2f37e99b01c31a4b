//! The pure request builder: a notification and its text in, ntfy's JSON body out, within
//! ntfy's limits for any input. ntfy (server `message-size-limit`, default 4096 bytes) refuses
//! a JSON publish larger than twice that with 413 (code 41303), and a message over the limit
//! is refused or turned into an attachment; see <https://docs.ntfy.sh/publish/> and
//! <https://docs.ntfy.sh/config/#message-limits>.

use serde::Serialize;

use super::config::NtfyConfig;
use crate::domain::{Notification, NotificationKind, Rendered, Severity};
use crate::sinks::fit;

/// ntfy's default `message-size-limit`: the message, in bytes.
pub const MAX_MESSAGE_BYTES: usize = 4096;
/// ntfy refuses a JSON publish larger than twice the message limit.
pub const MAX_BODY_BYTES: usize = 2 * MAX_MESSAGE_BYTES;
const MAX_ACTIONS: usize = 3;
/// A title longer than a lock screen shows helps nobody; the rest is in the message.
const MAX_TITLE_BYTES: usize = 250;
/// Longer URLs are dropped (a cut URL is a broken link); the page still goes out.
const MAX_URL_BYTES: usize = 2000;

/// How much room a message may take: the normal limits, or the small ones of the retry after
/// a server with a lower limit answered 413.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    pub body: usize,
    pub message: usize,
}

impl Budget {
    pub const NORMAL: Budget = Budget {
        body: MAX_BODY_BYTES,
        message: MAX_MESSAGE_BYTES,
    };
    /// For a server configured below the default: a quarter of everything.
    pub const SMALL: Budget = Budget {
        body: MAX_BODY_BYTES / 4,
        message: MAX_MESSAGE_BYTES / 4,
    };
}

#[derive(Debug, Serialize, PartialEq)]
pub struct Message<'a> {
    topic: &'a str,
    title: String,
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

/// Builds the JSON body for `POST <server>/` within the normal budget.
pub fn build_message<'a>(
    config: &'a NtfyConfig,
    n: &'a Notification,
    text: &'a Rendered,
) -> Message<'a> {
    build_within(config, n, text, Budget::NORMAL)
}

/// Builds the JSON body for `POST <server>/` so that it fits `budget` once serialised.
pub fn build_within<'a>(
    config: &'a NtfyConfig,
    n: &'a Notification,
    text: &'a Rendered,
    budget: Budget,
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
        NotificationKind::Silenced => (2, vec!["mute"]),
        // Default priority: it should be seen, not wake anyone.
        NotificationKind::Handoff => (3, vec!["calendar"]),
    };
    tags.extend(config.tags.iter().map(String::as_str));
    let runbook = fit::url(n.runbook_url(), MAX_URL_BYTES);
    let console = fit::url(n.console_url.as_deref(), MAX_URL_BYTES);
    let mut actions = Vec::new();
    // A page's three buttons are Runbook, Acknowledge and Silence (ntfy shows three at
    // most); tapping the push itself opens the incident in the console.
    if let Some(url) = console.filter(|_| n.kind != NotificationKind::Firing) {
        actions.push(Action::View {
            label: "Open",
            url,
            clear: false,
        });
    }
    if let Some(url) = runbook {
        actions.push(Action::View {
            label: "Runbook",
            url,
            clear: false,
        });
    }
    if n.kind == NotificationKind::Firing {
        if let Some(url) = fit::url(n.ack_url.as_deref(), MAX_URL_BYTES) {
            actions.push(Action::Http {
                label: "Acknowledge",
                url,
                method: "POST",
                clear: true,
            });
        }
        if let Some(url) = fit::url(n.silence_url.as_deref(), MAX_URL_BYTES) {
            actions.push(Action::View {
                label: "Silence",
                url,
                clear: false,
            });
        }
    }
    actions.truncate(MAX_ACTIONS);
    let title_limit = MAX_TITLE_BYTES.min(budget.message);
    let mut message = Message {
        topic: &config.topic,
        title: fit::json_bytes(&text.title, title_limit),
        message: fit::json_bytes(&text.body, budget.message),
        priority,
        tags,
        click: console
            .or(runbook)
            .or_else(|| fit::url(n.generator_url(), MAX_URL_BYTES)),
        actions,
        sequence_id: &n.sequence_id,
    };
    shrink_to(&mut message, budget.body);
    message
}

/// Makes the serialised body fit `limit`: the message gives way first, then the links, then
/// the title. Everything else (topic, tags, sequence id) is small and bounded by config.
fn shrink_to(message: &mut Message<'_>, limit: usize) {
    loop {
        let size = serde_json::to_vec(&*message).map_or(usize::MAX, |v| v.len());
        if size <= limit {
            return;
        }
        let excess = size - limit;
        let room = fit::json_len(&message.message);
        if room > 0 {
            let target = room.saturating_sub(excess);
            message.message = fit::json_bytes(&message.message, target);
            if fit::json_len(&message.message) < room {
                continue;
            }
            message.message.clear();
            continue;
        }
        if !message.actions.is_empty() || message.click.is_some() {
            // The Acknowledge button (ours, short) is the last to go.
            if message.actions.len() > 1 {
                message.actions.retain(|a| matches!(a, Action::Http { .. }));
            } else {
                message.click = None;
                message.actions.clear();
            }
            continue;
        }
        let title = fit::json_len(&message.title);
        if title == 0 {
            return;
        }
        message.title = fit::json_bytes(&message.title, title.saturating_sub(excess));
        if fit::json_len(&message.title) >= title {
            message.title.clear();
        }
    }
}

#[cfg(test)]
pub(super) fn body_len(message: &Message<'_>) -> usize {
    serde_json::to_vec(message).map_or(usize::MAX, |v| v.len())
}

#[cfg(test)]
pub(super) fn message_text<'a>(message: &'a Message<'_>) -> (&'a str, &'a str) {
    (&message.title, &message.message)
}
