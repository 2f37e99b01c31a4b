//! Posts to a Slack incoming webhook and reads Slack's answer (`ok` or an error word).

use super::request::build_message;
use crate::config::SlackConfig;
use crate::domain::Notification;
use crate::sinks::{classify, send, Class, Health, HealthFuture, Outcome, SendFuture, Sink};
use crate::templates::Rendered;

pub struct SlackSink {
    config: SlackConfig,
    client: reqwest::Client,
}

impl SlackSink {
    pub fn new(config: SlackConfig, client: reqwest::Client) -> Self {
        Self { config, client }
    }

    async fn post(&self, n: &Notification, text: &Rendered) -> Outcome {
        let body = build_message(n, text);
        let response = match send(
            self.client
                .post(self.config.webhook_url.expose())
                .json(&body),
        )
        .await
        {
            Ok(response) => response,
            Err(retry) => return retry,
        };
        let status = response.status();
        let class = classify(status, response.headers());
        let answer = response.text().await.unwrap_or_default();
        let word = answer.trim().chars().take(100).collect::<String>();
        match class {
            Class::Ok => Outcome::Delivered,
            Class::Retry(after) => Outcome::Retry {
                after,
                reason: format!("slack answered {status}: {word}"),
            },
            Class::Permanent => {
                let hint = match word.as_str() {
                    "invalid_payload" => " (the message was refused as malformed)",
                    "channel_not_found" | "no_service" => {
                        " (the webhook's channel or app was removed: create a new webhook)"
                    }
                    "channel_is_archived" => {
                        " (unarchive the channel or point the webhook elsewhere)"
                    }
                    "action_prohibited" => " (an admin restricted posting to this channel)",
                    _ => "",
                };
                Outcome::Permanent {
                    reason: format!("slack answered {status}: {word}{hint}"),
                }
            }
        }
    }
}

impl Sink for SlackSink {
    fn send<'a>(&'a self, notification: &'a Notification, text: &'a Rendered) -> SendFuture<'a> {
        Box::pin(self.post(notification, text))
    }

    fn healthcheck(&self) -> HealthFuture<'_> {
        Box::pin(async {
            Health::Unchecked(
                "an incoming webhook can only be checked by posting to it (use test-notify)".into(),
            )
        })
    }
}
