//! Sends Events API v2 events; 202 is success, 400 permanent, 429 and 5xx retried.

use super::request::build_event;
use crate::config::PagerDutyConfig;
use crate::domain::Notification;
use crate::sinks::{classify, send, Class, Health, HealthFuture, Outcome, SendFuture, Sink};
use crate::templates::Rendered;

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
        let response = match send(self.client.post(self.config.url.clone()).json(&event)).await {
            Ok(response) => response,
            Err(retry) => return retry,
        };
        let status = response.status();
        let class = classify(status, response.headers());
        let body = response.text().await.unwrap_or_default();
        // {"status":"invalid event","message":"Event object is invalid","errors":["..."]}
        let detail = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .map(|v| {
                let message = v
                    .get("message")
                    .and_then(|m| m.as_str())
                    .unwrap_or("")
                    .to_owned();
                let errors = v.get("errors").and_then(|e| e.as_array()).map(|e| {
                    e.iter()
                        .filter_map(|x| x.as_str())
                        .collect::<Vec<_>>()
                        .join("; ")
                });
                match errors {
                    Some(errors) if !errors.is_empty() => format!("{message}: {errors}"),
                    _ => message,
                }
            })
            .unwrap_or_else(|| body.chars().take(200).collect());
        match class {
            Class::Ok => Outcome::Delivered,
            Class::Retry(after) => Outcome::Retry {
                after,
                reason: format!("pagerduty answered {status}: {detail}"),
            },
            Class::Permanent => Outcome::Permanent {
                reason: format!("pagerduty answered {status}: {detail}"),
            },
        }
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
