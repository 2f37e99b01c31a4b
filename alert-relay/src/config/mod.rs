//! The escalation-policy file: parsed into raw structs ([`raw`]), then validated in one pass
//! that expands `${ENV}` and `*_file` secrets and reports every problem with its path, line
//! and fix ([`validate`]).

mod env;
pub mod locate;
mod matcher;
pub mod raw;
mod validate;

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::time::Duration;

use url::Url;

use crate::domain::{Labels, PolicyName, TargetName};
use crate::escalation::Plan;
pub use matcher::Matcher;
pub use validate::validate;

/// A secret value: never printed by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// The validated configuration the relay runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub delivery: DeliveryConfig,
    /// Enabled targets by name (`ntfy.primary`, `log.audit`).
    pub targets: BTreeMap<TargetName, TargetConfig>,
    /// Targets defined but switched off (an ntfy target whose topic is empty), with why.
    pub disabled_targets: BTreeMap<TargetName, String>,
    /// Per-target template overrides.
    pub target_templates: BTreeMap<TargetName, TargetTemplates>,
    pub policies: Vec<Policy>,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Base URL the relay is reachable at from phones (for acknowledge links).
    pub public_url: Option<Url>,
    pub webhook_auth: WebhookAuth,
    /// Key of acknowledge links; `None` = generated once and kept in the data directory.
    pub ack_secret: Option<Secret>,
    pub ack_link_ttl: Duration,
    /// Alertmanager's external URL (silence links, silence checks).
    pub alertmanager_url: Option<Url>,
    pub max_body_bytes: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookAuth {
    Bearer(Secret),
    Basic { username: String, password: Secret },
    None,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryConfig {
    pub timeout: Duration,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// A notification not delivered this long after it was queued is dead-lettered.
    pub give_up_after: Duration,
    /// How often targets are checked without notifying anyone; `None`: only at start and
    /// after reloads.
    pub healthcheck_interval: Option<Duration>,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            give_up_after: Duration::from_secs(6 * 3600),
            healthcheck_interval: Some(Duration::from_secs(300)),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum TargetConfig {
    Ntfy(NtfyConfig),
    Slack(SlackConfig),
    PagerDuty(PagerDutyConfig),
    Log(LogConfig),
}

#[derive(Debug, Clone, PartialEq)]
pub struct SlackConfig {
    pub webhook_url: Secret,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PagerDutyConfig {
    pub routing_key: Secret,
    pub url: Url,
    pub source: Option<String>,
}

/// Title and body templates of a target (used unless the policy has its own).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TargetTemplates {
    pub title: Option<String>,
    pub body: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NtfyConfig {
    pub server: Url,
    pub topic: String,
    pub auth: NtfyAuth,
    /// Priority for critical, warning and other severities.
    pub priorities: [u8; 3],
    pub tags: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum NtfyAuth {
    None,
    Token(Secret),
    Basic { username: String, password: Secret },
}

#[derive(Debug, Clone, PartialEq)]
pub struct LogConfig {
    /// `None` = stdout.
    pub path: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone)]
pub struct Policy {
    pub name: PolicyName,
    pub matchers: Vec<Matcher>,
    pub plan: Plan,
    pub title_template: Option<String>,
    pub body_template: Option<String>,
    /// Webhooks of this policy are heartbeats: none for this long raises a
    /// `HeartbeatMissing` alert (see `heartbeat`).
    pub heartbeat_missing_after: Option<std::time::Duration>,
}

impl Policy {
    pub fn matches(&self, labels: &Labels) -> bool {
        self.matchers.iter().all(|m| m.matches(labels))
    }
}

/// Reads a secret kept in a file, without the line ending that editors and `echo` add.
pub fn read_secret_file(path: &Path) -> std::io::Result<String> {
    let text = std::fs::read_to_string(path)?;
    Ok(text.trim_end_matches(['\n', '\r']).to_owned())
}

impl Config {
    /// The first policy whose matchers all match `labels`.
    pub fn policy_for(&self, labels: &Labels) -> Option<&Policy> {
        self.policies.iter().find(|p| p.matches(labels))
    }

    pub fn policy_named(&self, name: &str) -> Option<&Policy> {
        self.policies.iter().find(|p| p.name.as_str() == name)
    }

    /// Reads, parses and validates `path` with the process environment.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors::single(
                path,
                ConfigError::new("", format!("cannot read the file: {e}")),
            )
        })?;
        Self::parse(&text, path, &|name| std::env::var(name).ok())
    }

    /// Parses and validates `text`; `env` looks variables up (tests pass their own).
    pub fn parse(
        text: &str,
        path: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigErrors> {
        let raw: raw::RawConfig = serde_yaml::from_str(text).map_err(|e| {
            let mut error = ConfigError::new("", e.to_string());
            error.line = e.location().map(|l| l.line());
            ConfigErrors::single(path, error)
        })?;
        validate(raw, env).map_err(|mut errors| {
            for error in &mut errors {
                if error.line.is_none() && !error.path.is_empty() {
                    error.line = locate::line_of(text, &error.path);
                }
            }
            ConfigErrors {
                file: path.display().to_string(),
                errors,
            }
        })
    }
}

/// One problem: where (path and line) and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub path: String,
    pub line: Option<usize>,
    pub message: String,
}

impl ConfigError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            line: None,
            message: message.into(),
        }
    }
}

/// Every problem found in one file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors {
    pub file: String,
    pub errors: Vec<ConfigError>,
}

impl ConfigErrors {
    fn single(path: &Path, error: ConfigError) -> Self {
        Self {
            file: path.display().to_string(),
            errors: vec![error],
        }
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}", self.file)?;
            if let Some(line) = e.line {
                write!(f, ":{line}")?;
            }
            if e.path.is_empty() {
                write!(f, ": {}", e.message)?;
            } else {
                write!(f, ": {}: {}", e.path, e.message)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
