//! The toolkit of config validation, shared by the policy (`config`) and the vendors'
//! own config (`sinks/*/config.rs`): errors with path and line, `${ENV}` expansion, secrets
//! inline or from files, durations and URLs. Reading a `*_file` secret is its only I/O.

mod env;
pub mod locate;

use std::fmt;
use std::path::Path;
use std::time::Duration;

use url::Url;

pub use env::expand;

/// A string that may hold `${VAR}` / `${VAR:-default}`; expanded during validation.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(transparent)]
pub struct EnvString(pub String);

/// Title and body templates as written (a policy's, or a target's).
#[derive(Debug, Default, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTemplates {
    pub title: Option<String>,
    pub body: Option<String>,
}

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

/// Reads a secret kept in a file, without the line ending that editors and `echo` add.
pub fn read_secret_file(path: &Path) -> std::io::Result<String> {
    let text = std::fs::read_to_string(path)?;
    Ok(text.trim_end_matches(['\n', '\r']).to_owned())
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
    pub fn single(path: &Path, error: ConfigError) -> Self {
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

/// Collects every problem of one pass (so a file is fixed in one go, not one error a run).
pub struct Checker<'a> {
    env: &'a dyn Fn(&str) -> Option<String>,
    pub errors: Vec<ConfigError>,
}

impl<'a> Checker<'a> {
    pub fn new(env: &'a dyn Fn(&str) -> Option<String>) -> Self {
        Self {
            env,
            errors: Vec::new(),
        }
    }

    pub fn error(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.errors.push(ConfigError::new(path, message));
    }

    pub fn expand(&mut self, path: &str, value: &EnvString) -> Option<String> {
        match expand(&value.0, self.env) {
            Ok(v) => Some(v),
            Err(e) => {
                self.error(path, e);
                None
            }
        }
    }

    /// A secret given inline (`key`) or as a file (`key_file`), at most one of them.
    pub fn secret(
        &mut self,
        path: &str,
        inline: Option<&EnvString>,
        file: Option<&EnvString>,
    ) -> Option<Secret> {
        match (inline, file) {
            (Some(_), Some(_)) => {
                self.error(
                    path,
                    "set either the value or the `_file` variant, not both",
                );
                None
            }
            (Some(v), None) => self.expand(path, v).map(Secret),
            (None, Some(f)) => {
                let file_path = format!("{path}_file");
                let name = self.expand(&file_path, f)?;
                match read_secret_file(Path::new(&name)) {
                    Ok(secret) => Some(Secret(secret)),
                    Err(e) => {
                        self.error(file_path, format!("cannot read secret file {name}: {e}"));
                        None
                    }
                }
            }
            (None, None) => None,
        }
    }

    /// A handlebars template that must compile.
    pub fn template(&mut self, path: &str, text: &str) {
        if let Err(e) = handlebars::Template::compile(text) {
            self.error(path, format!("invalid template: {e}"));
        }
    }

    pub fn duration(&mut self, path: &str, text: Option<&str>, default: Duration) -> Duration {
        let Some(text) = text else { return default };
        match parse_duration(text) {
            Ok(d) => d,
            Err(e) => {
                self.error(path, e);
                default
            }
        }
    }

    pub fn url(&mut self, path: &str, value: &str) -> Option<Url> {
        match Url::parse(value) {
            Ok(url) if matches!(url.scheme(), "http" | "https") => Some(url),
            Ok(_) => {
                self.error(path, format!("`{value}` must be an http or https URL"));
                None
            }
            Err(e) => {
                self.error(
                    path,
                    format!("`{value}` is not a URL ({e}); write it like https://ntfy.example.com"),
                );
                None
            }
        }
    }
}

/// A URL as it may be printed: a password in its userinfo is shown as `***` (logs,
/// `check-config --probe`, `test-notify`).
pub struct Redacted<'a>(pub &'a Url);

impl fmt::Display for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.password().is_none() {
            return write!(f, "{}", self.0);
        }
        let mut shown = self.0.clone();
        let _ = shown.set_password(Some("***"));
        write!(f, "{shown}")
    }
}

/// Durations like `0m`, `15m`, `1h30m`, `45s`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    if trimmed.starts_with('-') {
        return Err(format!(
            "`{text}` is negative: delays count from the incident's start, use 0m or more"
        ));
    }
    if trimmed == "0" {
        return Ok(Duration::ZERO);
    }
    humantime::parse_duration(trimmed)
        .map_err(|e| format!("`{text}` is not a duration ({e}); write it like 0m, 15m, 1h30m"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_in_a_url_is_never_printed() {
        let url = Url::parse("https://user:s3cret@ntfy.example.com/").expect("url");
        assert_eq!(
            Redacted(&url).to_string(),
            "https://user:***@ntfy.example.com/"
        );
        let plain = Url::parse("https://ntfy.example.com/").expect("url");
        assert_eq!(Redacted(&plain).to_string(), "https://ntfy.example.com/");
    }
}
