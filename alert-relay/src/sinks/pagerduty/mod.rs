//! PagerDuty Events API v2: `trigger` with a stable `dedup_key` per incident (retries and
//! restarts never open a second PagerDuty incident), `acknowledge` and `resolve`.

mod config;
mod request;
mod sink;

use std::sync::Arc;

pub use config::{PagerDutyConfig, RawPagerDuty};
pub use request::{build_event, build_within, dedup_key, MAX_EVENT_BYTES};
pub use sink::PagerDutySink;

use crate::sinks::{Sink, Vendor};
use crate::validation::{Checker, RawTemplates, Redacted};

pub struct PagerDuty;

impl Vendor for PagerDuty {
    type Raw = RawPagerDuty;
    type Config = PagerDutyConfig;

    fn validate(
        c: &mut Checker<'_>,
        path: &str,
        raw: &RawPagerDuty,
    ) -> Option<Result<PagerDutyConfig, String>> {
        config::validate(c, path, raw)
    }

    fn templates(raw: &RawPagerDuty) -> Option<&RawTemplates> {
        Some(&raw.templates)
    }

    fn sink(config: &PagerDutyConfig, client: &reqwest::Client) -> Arc<dyn Sink> {
        Arc::new(PagerDutySink::new(config.clone(), client.clone()))
    }

    fn describe(config: &PagerDutyConfig) -> String {
        format!("pagerduty {}", Redacted(&config.url))
    }
}

#[cfg(test)]
mod tests;
