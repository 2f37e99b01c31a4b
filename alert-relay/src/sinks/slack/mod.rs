//! Slack (incoming webhook): a Block Kit message with a `text` fallback, a colour bar by
//! severity and status, the labels that matter, and Runbook / Source / Silence buttons.

mod config;
mod request;
mod sink;

use std::sync::Arc;

pub use config::{RawSlack, SlackConfig};
pub use request::{build_message, build_plain, escape};
pub use sink::SlackSink;

use crate::sinks::{Sink, Vendor};
use crate::validation::{Checker, RawTemplates};

pub struct Slack;

impl Vendor for Slack {
    type Raw = RawSlack;
    type Config = SlackConfig;

    fn validate(
        c: &mut Checker<'_>,
        path: &str,
        raw: &RawSlack,
    ) -> Option<Result<SlackConfig, String>> {
        config::validate(c, path, raw)
    }

    fn templates(raw: &RawSlack) -> Option<&RawTemplates> {
        Some(&raw.templates)
    }

    fn sink(config: &SlackConfig, client: &reqwest::Client) -> Arc<dyn Sink> {
        Arc::new(SlackSink::new(config.clone(), client.clone()))
    }

    fn describe(_: &SlackConfig) -> String {
        "slack incoming webhook".to_owned()
    }
}

#[cfg(test)]
mod tests;
