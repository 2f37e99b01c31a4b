//! Sends ntfy messages and classifies the answers.

use super::request::build_message;
use crate::config::{NtfyAuth, NtfyConfig};
use crate::domain::Notification;
use crate::sinks::{classify, send, Class, Outcome, SendFuture, Sink};
use crate::templates::Rendered;

pub struct NtfySink {
    config: NtfyConfig,
    client: reqwest::Client,
}

impl NtfySink {
    pub fn new(config: NtfyConfig, client: reqwest::Client) -> Self {
        Self { config, client }
    }

    async fn publish(&self, n: &Notification, text: &Rendered) -> Outcome {
        let message = build_message(&self.config, n, text);
        let mut request = self.client.post(self.config.server.clone()).json(&message);
        request = match &self.config.auth {
            NtfyAuth::None => request,
            NtfyAuth::Token(token) => request.bearer_auth(token.expose()),
            NtfyAuth::Basic { username, password } => {
                request.basic_auth(username, Some(password.expose()))
            }
        };
        let response = match send(request).await {
            Ok(response) => response,
            Err(retry) => return retry,
        };
        let status = response.status();
        let class = classify(status, response.headers());
        if class == Class::Ok {
            return Outcome::Delivered;
        }
        // ntfy explains errors as {"code":40007,"error":"invalid priority",...}.
        let body = response.text().await.unwrap_or_default();
        let detail = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
            .unwrap_or_else(|| body.chars().take(200).collect());
        let reason = format!("ntfy answered {status}: {detail}");
        match class {
            Class::Retry(after) => Outcome::Retry { after, reason },
            _ => Outcome::Permanent { reason },
        }
    }
}

impl Sink for NtfySink {
    fn send<'a>(&'a self, notification: &'a Notification, text: &'a Rendered) -> SendFuture<'a> {
        Box::pin(self.publish(notification, text))
    }
}
