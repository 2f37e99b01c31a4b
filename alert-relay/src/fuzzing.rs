//! Entry points for fuzzing the two parsers that take untrusted input: the webhook body and
//! the policy file. They must never panic, whatever the bytes (cargo fuzz targets in fuzz/).

use std::path::Path;

/// Parses a webhook body as intake does.
pub fn webhook(data: &[u8]) {
    let _ = crate::server::webhook::parse(data);
}

/// Parses and validates a policy file as `check-config` does (no environment variables set,
/// so `${VAR}` without default is an error path worth exercising too).
pub fn policy(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = crate::config::Config::parse(text, Path::new("fuzz.yml"), &|_| None);
    }
}
