//! ntfy (phone push): JSON publishing to the server root, with priority by severity, a click
//! URL, up to three actions (Runbook, Acknowledge, Silence) and a sequence id per incident so
//! that the resolve replaces the page on the phone.

mod config;
mod request;
mod sink;

use std::sync::Arc;

pub use config::{validate, NtfyAuth, NtfyConfig, RawNtfy};
pub use request::{build_message, build_within, Budget, MAX_BODY_BYTES, MAX_MESSAGE_BYTES};
pub use sink::NtfySink;

use crate::sinks::{Sink, Vendor};
use crate::validation::{Checker, RawTemplates, Redacted};

pub struct Ntfy;

impl Vendor for Ntfy {
    type Raw = RawNtfy;
    type Config = NtfyConfig;

    fn validate(
        c: &mut Checker<'_>,
        path: &str,
        raw: &RawNtfy,
    ) -> Option<Result<NtfyConfig, String>> {
        config::validate(c, path, raw)
    }

    fn templates(raw: &RawNtfy) -> Option<&RawTemplates> {
        Some(&raw.templates)
    }

    fn sink(config: &NtfyConfig, client: &reqwest::Client) -> Arc<dyn Sink> {
        Arc::new(NtfySink::new(config.clone(), client.clone()))
    }

    fn describe(config: &NtfyConfig) -> String {
        format!("ntfy {} topic {}", Redacted(&config.server), config.topic)
    }
}

#[cfg(test)]
mod tests;
