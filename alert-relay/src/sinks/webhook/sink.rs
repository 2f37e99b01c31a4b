//! Posts signed events to the receiver; 2xx is delivered, 408/429/5xx retried (honouring
//! `Retry-After`), other 4xx dead-lettered with the receiver's words.

use super::config::WebhookConfig;
use super::request::{build, Budget};
use crate::domain::{Notification, Rendered, Timestamp};
use crate::sinks::http::{deliver_shrinking, first_chars};
use crate::sinks::{Health, HealthFuture, Outcome, SendFuture, Sink};

pub struct WebhookSink {
    config: WebhookConfig,
    client: reqwest::Client,
}

impl WebhookSink {
    pub fn new(config: WebhookConfig, client: reqwest::Client) -> Self {
        Self { config, client }
    }

    async fn post(&self, n: &Notification, text: &Rendered) -> Outcome {
        // Signed at the time of this attempt: a retry an hour later is not refused as stale.
        let now_secs = Timestamp::now().0.div_euclid(1000);
        let request = |budget| {
            let signed = build(&self.config, n, text, now_secs, budget);
            let mut request = self.client.post(self.config.url.clone());
            for (name, value) in signed.headers {
                request = request.header(name, value);
            }
            request.body(signed.body)
        };
        // Built within 256 KiB; a receiver with a smaller limit (413) gets 32 KiB at once.
        deliver_shrinking(
            request(Budget::NORMAL),
            || request(Budget::SMALL),
            "webhook",
            detail,
            |status, _| status == http::StatusCode::PAYLOAD_TOO_LARGE,
        )
        .await
    }
}

/// A receiver's own words: a JSON `message` or `error`, else the start of its body (bounded).
fn detail(_: http::StatusCode, body: &str) -> String {
    let words = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            ["message", "error", "detail"]
                .iter()
                .find_map(|k| v.get(k).and_then(|m| m.as_str()).map(str::to_owned))
        })
        .unwrap_or_else(|| body.to_owned());
    first_chars(&words)
}

impl Sink for WebhookSink {
    fn send<'a>(&'a self, notification: &'a Notification, text: &'a Rendered) -> SendFuture<'a> {
        Box::pin(self.post(notification, text))
    }

    /// Not checked: a receiver may run its workflow on any request to its URL (Zapier, n8n
    /// and Make take a GET as a trigger), and its URL may carry a token that must not reach
    /// the logs. `test-notify` sends a signed test event.
    fn healthcheck(&self) -> HealthFuture<'_> {
        Box::pin(async {
            Health::Unchecked(
                "a webhook receiver can only be checked by posting to it (use test-notify)".into(),
            )
        })
    }
}
