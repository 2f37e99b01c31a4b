//! The gateway's `/version` and `/health` JSON, parsed leniently: unknown fields are
//! ignored, missing optional fields are empty, and anything else is a clear error.

use std::collections::BTreeMap;

use serde::Deserialize;

/// `GET /version`: `{"version","git_commit","build_date"}` (+ optional `color`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct VersionDoc {
    pub version: String,
    #[serde(default, alias = "commit")]
    pub git_commit: String,
    #[serde(default)]
    pub build_date: String,
    #[serde(default)]
    pub color: Option<String>,
}

/// Overall health as the gateway reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    Healthy,
    Degraded,
    Unhealthy,
}

impl HealthStatus {
    pub const ALL: [HealthStatus; 3] = [Self::Healthy, Self::Degraded, Self::Unhealthy];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Healthy => "healthy",
            Self::Degraded => "degraded",
            Self::Unhealthy => "unhealthy",
        }
    }
}

/// Status of one named check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckStatus {
    Pass,
    Warn,
    Fail,
}

impl CheckStatus {
    pub const ALL: [CheckStatus; 3] = [Self::Pass, Self::Warn, Self::Fail];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pass => "pass",
            Self::Warn => "warn",
            Self::Fail => "fail",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct CheckDoc {
    pub status: CheckStatus,
}

/// `GET /health`: `{"status", "version", "checks": {name: {"status", ...}}}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct HealthDoc {
    pub status: HealthStatus,
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub checks: BTreeMap<String, CheckDoc>,
}

/// Parses a probe body, naming the endpoint and keeping serde's position in the message.
pub fn parse<T: serde::de::DeserializeOwned>(endpoint: &str, body: &[u8]) -> Result<T, String> {
    serde_json::from_slice(body).map_err(|e| format!("/{endpoint} answered invalid JSON: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_tolerates_unknown_and_missing_fields() {
        let doc: VersionDoc =
            parse("version", br#"{"version":"1.2.3","extra":true}"#).expect("valid");
        assert_eq!(doc.version, "1.2.3");
        assert_eq!(doc.git_commit, "");
        let doc: VersionDoc = parse(
            "version",
            br#"{"version":"2","git_commit":"abc","build_date":"2026-11-01","color":"green"}"#,
        )
        .expect("valid");
        assert_eq!(doc.color.as_deref(), Some("green"));
    }

    #[test]
    fn health_with_checks() {
        let doc: HealthDoc = parse(
            "health",
            br#"{"status":"degraded","version":"1","checks":{"database":{"status":"fail","error":"timeout"},"cache":{"status":"pass"}}}"#,
        )
        .expect("valid");
        assert_eq!(doc.status, HealthStatus::Degraded);
        assert_eq!(doc.checks["database"].status, CheckStatus::Fail);
    }

    #[test]
    fn garbage_is_a_clear_error() {
        let error =
            parse::<HealthDoc>("health", b"<html>502 Bad Gateway</html>").expect_err("html");
        assert!(
            error.starts_with("/health answered invalid JSON"),
            "{error}"
        );
        let error = parse::<HealthDoc>("health", br#"{"status":"on fire"}"#).expect_err("bad enum");
        assert!(error.contains("unknown variant"), "{error}");
        assert!(parse::<VersionDoc>("version", br#"{"git_commit":"x"}"#).is_err());
    }
}
