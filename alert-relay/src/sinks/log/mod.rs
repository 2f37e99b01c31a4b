//! The `log` target: each notification as one JSON line, on stdout or appended to a file.
//! The default that needs no account, and an audit trail of every page.

mod config;
mod sink;

use std::sync::Arc;

pub use config::{validate, LogConfig, RawLog};
pub use sink::LogSink;

use crate::sinks::{Sink, Vendor};
use crate::validation::{Checker, RawTemplates};

pub struct Log;

impl Vendor for Log {
    type Raw = RawLog;
    type Config = LogConfig;

    fn validate(
        c: &mut Checker<'_>,
        path: &str,
        raw: &RawLog,
    ) -> Option<Result<LogConfig, String>> {
        config::validate(c, path, raw)
    }

    fn templates(_: &RawLog) -> Option<&RawTemplates> {
        None
    }

    fn sink(config: &LogConfig, _: &reqwest::Client) -> Arc<dyn Sink> {
        Arc::new(LogSink::new(config.clone()))
    }

    fn describe(config: &LogConfig) -> String {
        format!(
            "log {}",
            config
                .path
                .as_ref()
                .map_or("stdout".into(), |p| p.display().to_string())
        )
    }
}
