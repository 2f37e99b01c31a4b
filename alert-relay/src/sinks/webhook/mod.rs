//! A generic signed webhook: the incident, its alerts, text and links as versioned JSON,
//! POSTed to any URL and signed as the Standard Webhooks specification says (`webhook-id`
//! stable across retries, `webhook-timestamp`, `webhook-signature: v1,<HMAC-SHA256>`).

mod config;
mod request;
mod sink;

use std::sync::Arc;

pub use config::{RawWebhook, SigningKey, WebhookConfig, RESERVED_HEADERS};
pub use request::{body_within, build, message_id, sign, Budget, SignedRequest};
pub use sink::WebhookSink;

use crate::sinks::{Sink, Vendor};
use crate::validation::{Checker, RawTemplates, Redacted};

pub struct Webhook;

impl Vendor for Webhook {
    type Raw = RawWebhook;
    type Config = WebhookConfig;

    fn validate(
        c: &mut Checker<'_>,
        path: &str,
        raw: &RawWebhook,
    ) -> Option<Result<WebhookConfig, String>> {
        config::validate(c, path, raw)
    }

    fn templates(raw: &RawWebhook) -> Option<&RawTemplates> {
        Some(&raw.templates)
    }

    fn sink(config: &WebhookConfig, client: &reqwest::Client) -> Arc<dyn Sink> {
        Arc::new(WebhookSink::new(config.clone(), client.clone()))
    }

    fn describe(config: &WebhookConfig) -> String {
        format!("signed webhook {}", Redacted(&config.url))
    }
}

#[cfg(test)]
mod tests;
