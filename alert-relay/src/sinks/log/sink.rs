//! Writes each notification as one JSON line, serialised so lines never interleave.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::sync::Mutex;

use serde::Serialize;

use super::config::LogConfig;
use crate::domain::{Notification, NotificationKind, Rendered};
use crate::sinks::{Health, HealthFuture, Outcome, SendFuture, Sink};

/// The line written (private wire type of this sink).
#[derive(Serialize)]
struct Line<'a> {
    ts_ms: i64,
    target: &'a str,
    kind: NotificationKind,
    incident_id: i64,
    sequence_id: &'a str,
    policy: &'a str,
    step: usize,
    alertname: Option<&'a str>,
    severity: Option<&'a str>,
    firing: usize,
    title: &'a str,
    body: &'a str,
    runbook_url: Option<&'a str>,
    ack_url: Option<&'a str>,
    /// The console's page for it, or a sign-in link (a person reached through a log file).
    console_url: Option<&'a str>,
}

pub struct LogSink {
    config: LogConfig,
    lock: Mutex<()>,
}

impl LogSink {
    pub fn new(config: LogConfig) -> Self {
        Self {
            config,
            lock: Mutex::new(()),
        }
    }

    fn write(&self, n: &Notification, text: &Rendered) -> std::io::Result<()> {
        let labels = &n.group.common_labels;
        let line = Line {
            ts_ms: n.created_at.0,
            target: n.target.as_str(),
            kind: n.kind,
            incident_id: n.incident_id,
            sequence_id: &n.sequence_id,
            policy: n.policy.as_str(),
            step: n.step,
            alertname: labels.get("alertname").map(String::as_str),
            severity: labels.get("severity").map(String::as_str),
            firing: n.group.firing_count(),
            title: &text.title,
            body: &text.body,
            runbook_url: n.runbook_url(),
            ack_url: n.ack_url.as_deref(),
            console_url: n.console_url.as_deref(),
        };
        let mut json = serde_json::to_vec(&line)?;
        json.push(b'\n');
        let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        match &self.config.path {
            None => {
                let mut out = std::io::stdout().lock();
                out.write_all(&json)?;
                out.flush()
            }
            Some(path) => {
                let mut file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .mode(0o600)
                    .open(path)?;
                file.write_all(&json)
            }
        }
    }
}

impl Sink for LogSink {
    fn send<'a>(&'a self, notification: &'a Notification, text: &'a Rendered) -> SendFuture<'a> {
        Box::pin(async move {
            match self.write(notification, text) {
                Ok(()) => Outcome::Delivered,
                // A full disk or a vanished directory may come back.
                Err(error) => Outcome::Retry {
                    after: None,
                    reason: format!("cannot write the log line: {error}"),
                },
            }
        })
    }

    fn healthcheck(&self) -> HealthFuture<'_> {
        Box::pin(async {
            let Some(path) = &self.config.path else {
                return Health::Ok("writes to standard output".into());
            };
            match std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(path)
            {
                Ok(_) => Health::Ok(format!("{} is writable", path.display())),
                Err(error) => Health::Failed(format!("cannot open {}: {error}", path.display())),
            }
        })
    }
}
