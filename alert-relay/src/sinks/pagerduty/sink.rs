//! Sends Events API v2 events; 202 is success, 400 permanent, 429 and 5xx retried.

use super::config::PagerDutyConfig;
use super::request::{build_within, MAX_EVENT_BYTES, SMALL_EVENT_BYTES};
use crate::domain::{Notification, Rendered};
use crate::sinks::http::{deliver_shrinking, first_chars};
use crate::sinks::{Health, HealthFuture, Outcome, SendFuture, Sink};

pub struct PagerDutySink {
    config: PagerDutyConfig,
    client: reqwest::Client,
}

impl PagerDutySink {
    pub fn new(config: PagerDutyConfig, client: reqwest::Client) -> Self {
        Self { config, client }
    }

    async fn enqueue(&self, n: &Notification, text: &Rendered) -> Outcome {
        let request = |limit| {
            let event = build_within(&self.config, n, text, limit);
            self.client.post(self.config.url.clone()).json(&event)
        };
        // Built within the documented limits; a 413, or a 400 that names a size, gets the
        // smaller event at once.
        deliver_shrinking(
            request(MAX_EVENT_BYTES),
            || request(SMALL_EVENT_BYTES),
            "pagerduty",
            detail,
            |status, body| {
                status == http::StatusCode::PAYLOAD_TOO_LARGE
                    || (status == http::StatusCode::BAD_REQUEST
                        && ["too large", "too long", "exceeds"]
                            .iter()
                            .any(|w| body.to_ascii_lowercase().contains(w)))
            },
        )
        .await
    }
}

/// `{"status":"invalid event","message":"Event object is invalid","errors":["..."]}`.
fn detail(_: http::StatusCode, body: &str) -> String {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(body) else {
        return first_chars(body);
    };
    let message = v.get("message").and_then(|m| m.as_str()).unwrap_or("");
    let errors: Vec<&str> = v
        .get("errors")
        .and_then(|e| e.as_array())
        .map(|e| e.iter().filter_map(|x| x.as_str()).collect())
        .unwrap_or_default();
    if errors.is_empty() {
        message.to_owned()
    } else {
        format!("{message}: {}", errors.join("; "))
    }
}

impl Sink for PagerDutySink {
    fn send<'a>(&'a self, notification: &'a Notification, text: &'a Rendered) -> SendFuture<'a> {
        if notification.kind == crate::domain::NotificationKind::Handoff {
            return Box::pin(async {
                Outcome::Permanent {
                    reason: "a handoff notice goes to a person's ntfy topic, not to PagerDuty (which has schedules of its own)".into(),
                }
            });
        }
        Box::pin(self.enqueue(notification, text))
    }

    fn healthcheck(&self) -> HealthFuture<'_> {
        Box::pin(async {
            Health::Unchecked(
                "the Events API can only be checked by sending an event (use test-notify)".into(),
            )
        })
    }
}
