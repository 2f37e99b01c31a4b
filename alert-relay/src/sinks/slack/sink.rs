//! Posts to a Slack incoming webhook and reads Slack's answer (`ok` or an error word).

use super::config::SlackConfig;
use super::request::{build_message, build_plain};
use crate::domain::{Notification, Rendered};
use crate::sinks::http::deliver_shrinking;
use crate::sinks::{Health, HealthFuture, Outcome, SendFuture, Sink};

pub struct SlackSink {
    config: SlackConfig,
    client: reqwest::Client,
}

impl SlackSink {
    pub fn new(config: SlackConfig, client: reqwest::Client) -> Self {
        Self { config, client }
    }

    async fn post(&self, n: &Notification, text: &Rendered) -> Outcome {
        let request = |body: &serde_json::Value| {
            self.client
                .post(self.config.webhook_url.expose())
                .json(body)
        };
        // Built within Block Kit's limits; should Slack still refuse the blocks, the text
        // alone goes out rather than nothing.
        deliver_shrinking(
            request(&build_message(n, text)),
            || request(&build_plain(n, text)),
            "slack",
            detail,
            |status, body| {
                status == http::StatusCode::BAD_REQUEST
                    && matches!(body.trim(), "invalid_blocks" | "invalid_attachments")
            },
        )
        .await
    }
}

/// Slack answers with one error word (`invalid_blocks`, `channel_not_found`); some need a hint.
fn detail(_: http::StatusCode, body: &str) -> String {
    let word: String = body.trim().chars().take(100).collect();
    let hint = match word.as_str() {
        "invalid_payload" => " (the message was refused as malformed)",
        "channel_not_found" | "no_service" => {
            " (the webhook's channel or app was removed: create a new webhook)"
        }
        "channel_is_archived" => " (unarchive the channel or point the webhook elsewhere)",
        "action_prohibited" => " (an admin restricted posting to this channel)",
        _ => "",
    };
    format!("{word}{hint}")
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
