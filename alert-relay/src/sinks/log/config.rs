//! The `targets.log.<name>` section: a file to append JSON lines to, or `-` for stdout.

use serde::Deserialize;

use crate::validation::{Checker, EnvString};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    /// File to append JSON lines to; `-` is stdout.
    pub path: EnvString,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LogConfig {
    /// `None` = stdout.
    pub path: Option<std::path::PathBuf>,
}

pub fn validate(
    c: &mut Checker<'_>,
    path: &str,
    raw: &RawLog,
) -> Option<Result<LogConfig, String>> {
    let value = c.expand(&format!("{path}.path"), &raw.path)?;
    let path = match value.as_str() {
        "-" | "" => None,
        file => Some(std::path::PathBuf::from(file)),
    };
    Some(Ok(LogConfig { path }))
}
