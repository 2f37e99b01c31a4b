//! Sends ntfy messages and classifies the answers.

use super::config::{NtfyAuth, NtfyConfig};
use super::request::{build_within, Budget};
use crate::domain::{Notification, Rendered};
use crate::sinks::http::{deliver_shrinking, describe, first_chars};
use crate::sinks::{Health, HealthFuture, Outcome, SendFuture, Sink};
use crate::validation::Redacted;

pub struct NtfySink {
    config: NtfyConfig,
    client: reqwest::Client,
}

impl NtfySink {
    pub fn new(config: NtfyConfig, client: reqwest::Client) -> Self {
        Self { config, client }
    }

    async fn publish(&self, n: &Notification, text: &Rendered) -> Outcome {
        let request = |budget| {
            let message = build_within(&self.config, n, text, budget);
            self.authorize(self.client.post(self.config.server.clone()).json(&message))
        };
        // A server configured with a lower `message-size-limit` answers 413: smaller, at once.
        deliver_shrinking(
            request(Budget::NORMAL),
            || request(Budget::SMALL),
            "ntfy",
            detail,
            |status, _| status == http::StatusCode::PAYLOAD_TOO_LARGE,
        )
        .await
    }
}

/// ntfy explains errors as `{"code":40007,"error":"invalid priority",...}`.
fn detail(_: http::StatusCode, body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
        .unwrap_or_else(|| first_chars(body))
}

impl NtfySink {
    /// `GET /v1/health` (the server is up), then with credentials `GET /v1/account` (they
    /// are accepted). Neither publishes anything.
    async fn check(&self) -> Health {
        let server = &self.config.server;
        let shown = Redacted(server);
        let health = match self.ask(server, "v1/health", false).await {
            Ok(answer) => answer.json::<serde_json::Value>().await.unwrap_or_default(),
            Err(why) => return Health::Failed(why),
        };
        if health.get("healthy") != Some(&serde_json::Value::Bool(true)) {
            return Health::Failed(format!("{shown} says it is not healthy: {health}"));
        }
        let replaces = self.replaces_by_sequence_id().await;
        if self.config.auth == NtfyAuth::None {
            return Health::Ok(format!(
                "{shown} is healthy (no credentials to check){replaces}"
            ));
        }
        match self.ask(server, "v1/account", true).await {
            Ok(_) => Health::Ok(format!(
                "{shown} is healthy and accepts the credentials{replaces}"
            )),
            Err(why) => Health::Failed(why),
        }
    }

    /// Whether the server replaces a page by its sequence id (ntfy 2.16 and later): without it,
    /// a resolve or an acknowledge arrives as a new message beside the page. ntfy tells its
    /// version (`GET /v1/version`, 2.17 and later, with the credentials) or nothing; a warning
    /// for an older one, a note when it cannot tell.
    async fn replaces_by_sequence_id(&self) -> String {
        const NEEDED: (u64, u64) = (2, 16);
        let answer = match self.ask(&self.config.server, "v1/version", true).await {
            Ok(answer) => answer.json::<serde_json::Value>().await.unwrap_or_default(),
            Err(_) => {
                return "; its version is not visible: ntfy 2.16 or later replaces a page by its sequence id (older ones show resolves as new messages)".into()
            }
        };
        let version = answer["version"]
            .as_str()
            .unwrap_or("")
            .trim_start_matches('v');
        let mut parts = version.split('.').map(|p| p.parse::<u64>().ok());
        match (parts.next().flatten(), parts.next().flatten()) {
            (Some(major), Some(minor)) if (major, minor) < NEEDED => format!(
                "; WARNING: ntfy {version} does not replace a page by its sequence id (2.16 or later does): resolves and acknowledgements arrive as new messages"
            ),
            (Some(_), Some(_)) => format!("; ntfy {version} replaces pages by sequence id"),
            _ => String::new(),
        }
    }

    /// `request` with the topic's token or password, if it has one.
    fn authorize(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.config.auth {
            NtfyAuth::None => request,
            NtfyAuth::Token(token) => request.bearer_auth(token.expose()),
            NtfyAuth::Basic { username, password } => {
                request.basic_auth(username, Some(password.expose()))
            }
        }
    }

    /// A GET answered 2xx, or why not.
    async fn ask(
        &self,
        server: &url::Url,
        path: &str,
        with_auth: bool,
    ) -> Result<reqwest::Response, String> {
        let url = server
            .join(path)
            .map_err(|e| format!("{}{path}: {e}", Redacted(server)))?;
        let mut request = self.client.get(url.clone());
        let url = Redacted(&url);
        if with_auth {
            request = self.authorize(request);
        }
        let response = request
            .send()
            .await
            .map_err(|e| format!("{url}: {}", describe(&e.without_url())))?;
        let status = response.status();
        if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
            return Err(format!("{url} refused the credentials ({status})"));
        }
        if !status.is_success() {
            return Err(format!("{url} answered {status}"));
        }
        Ok(response)
    }
}

impl Sink for NtfySink {
    fn send<'a>(&'a self, notification: &'a Notification, text: &'a Rendered) -> SendFuture<'a> {
        Box::pin(self.publish(notification, text))
    }

    fn healthcheck(&self) -> HealthFuture<'_> {
        Box::pin(self.check())
    }
}
