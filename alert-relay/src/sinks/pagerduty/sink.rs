//! Sends Events API v2 events; 202 is success, 400 permanent, 429 and 5xx retried.

use super::config::PagerDutyConfig;
use super::request::build_event;
use crate::domain::{Notification, Rendered};
use crate::sinks::http::{deliver, first_chars};
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
        let event = build_event(&self.config, n, text);
        let request = self.client.post(self.config.url.clone()).json(&event);
        deliver(request, "pagerduty", detail).await
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
