//! Probes of each target's `/version` and `/health` on an interval: blackbox-style probe
//! metrics, the served build and colour, health per check, and deployments and rollbacks
//! from a version history that survives restarts.
//!
//! What a gateway answers is bounded ([`limits`]): body size, redirects, checks per target
//! and label length, each counted when exceeded.

mod fetch;
pub mod history;
pub mod limits;
mod metrics;
pub mod wire;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::HeaderName;
use prometheus::Registry;
use tokio::task::JoinSet;
use url::Url;

use crate::schedule::Every;

use fetch::{fetch, Failure, Fetched};
use history::{Build, Change, Recovery, State};
pub use metrics::ProbeOutcome;
use metrics::{ProbeMetrics, StateFileError, COLORS};
use wire::{HealthDoc, VersionDoc};

/// One probed service: the gateway, or a blue or green upstream behind it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    pub name: String,
    /// Base URL; `/health` and `/version` are appended.
    pub url: Url,
    /// The colour this target always serves, when no header or field says it.
    #[serde(default)]
    pub color: Option<String>,
}

#[derive(Debug, Clone)]
pub struct ProbeSettings {
    pub timeout: Duration,
    /// Response header naming the colour serving the request.
    pub color_header: HeaderName,
    /// Where the version history is kept; `None` keeps it in memory only.
    pub state_file: Option<PathBuf>,
}

/// Owns the probe metrics and version history; [`Prober::probe_all`] is one round.
pub struct Prober {
    client: reqwest::Client,
    targets: Vec<Target>,
    settings: ProbeSettings,
    metrics: ProbeMetrics,
    state: State,
    /// The error each failing (target, endpoint) last logged, to log changes only.
    failing: HashMap<(String, &'static str), String>,
}

impl Prober {
    /// Registers the metrics and restores the history from the state file. A state file that
    /// cannot be read or parsed is logged and counted, never fatal: the history starts empty.
    pub fn new(
        registry: &Registry,
        targets: Vec<Target>,
        settings: ProbeSettings,
    ) -> anyhow::Result<Self> {
        let client = fetch::client(settings.timeout)?;
        let names: Vec<&str> = targets.iter().map(|t| t.name.as_str()).collect();
        let metrics = ProbeMetrics::register(registry, &names)?;
        let state = match &settings.state_file {
            Some(path) => restore(path, &metrics),
            None => State::default(),
        };
        for target in &targets {
            let history = state.targets.get(&target.name).cloned().unwrap_or_default();
            metrics.restore(&target.name, &history);
        }
        Ok(Self {
            client,
            targets,
            settings,
            metrics,
            state,
            failing: HashMap::new(),
        })
    }

    /// Probes every target concurrently once and applies the results.
    pub async fn probe_all(&mut self) {
        let mut probes = JoinSet::new();
        for (index, target) in self.targets.iter().enumerate() {
            let client = self.client.clone();
            let url = target.url.clone();
            let header = self.settings.color_header.clone();
            probes.spawn(async move {
                let (health, version) = tokio::join!(
                    fetch(&client, &url, "health", &header),
                    fetch(&client, &url, "version", &header)
                );
                (index, health, version)
            });
        }
        let mut results = Vec::with_capacity(self.targets.len());
        while let Some(joined) = probes.join_next().await {
            match joined {
                Ok(result) => results.push(result),
                Err(error) => tracing::error!(%error, "probe task failed"),
            }
        }
        let now = unix_now();
        let mut history_changed = false;
        for (index, health, version) in results {
            let target = self.targets[index].clone();
            self.apply_health(&target, health);
            history_changed |= self.apply_version(&target, version, now);
        }
        if history_changed {
            self.save_state();
        }
    }

    /// Probes every `interval` until `stop` changes; signals `first` after the first round.
    pub async fn run(
        mut self,
        interval: Duration,
        stop: tokio::sync::watch::Receiver<bool>,
        first: tokio::sync::oneshot::Sender<()>,
    ) {
        let mut every = Every::new(interval, stop, first);
        while every.tick().await {
            self.probe_all().await;
        }
    }

    fn apply_health(&mut self, target: &Target, fetched: Fetched) {
        self.count_refusal(target, "health", &fetched);
        let doc = match &fetched.body {
            Ok(body) => wire::parse::<HealthDoc>("health", body),
            Err(failure) => Err(failure.reason.clone()),
        };
        // A 503 with a valid document is a reachable but unhealthy gateway: its health
        // series say so, while the probe itself failed (non-2xx), as in blackbox_exporter.
        let success = fetched.is_2xx() && doc.is_ok();
        let error = match (&doc, fetched.is_2xx()) {
            (Err(e), _) => Some(e.clone()),
            (Ok(_), false) => Some(format!("/health answered HTTP {}", fetched.status)),
            (Ok(_), true) => None,
        };
        self.note(target, "health", error);
        self.metrics.record_probe(
            &target.name,
            "health",
            &ProbeOutcome {
                success,
                status: fetched.status,
                seconds: fetched.seconds,
            },
        );
        let doc = doc.ok();
        let checks = doc.as_ref().map(|d| limits::checks(&d.checks));
        if let Some(checks) = &checks {
            self.metrics
                .count_bounded_checks(&target.name, checks.dropped, checks.cut_names);
        }
        self.metrics.record_health(
            &target.name,
            doc.as_ref().map(|d| d.status),
            checks.as_ref().map(|c| &c.kept),
        );
    }

    /// Returns whether the version history changed.
    fn apply_version(&mut self, target: &Target, fetched: Fetched, now: f64) -> bool {
        self.count_refusal(target, "version", &fetched);
        let doc = match (&fetched.body, fetched.is_2xx()) {
            (Ok(body), true) => wire::parse::<VersionDoc>("version", body),
            (Ok(_), false) => Err(format!("/version answered HTTP {}", fetched.status)),
            (Err(failure), _) => Err(failure.reason.clone()),
        };
        self.note(target, "version", doc.as_ref().err().cloned());
        self.metrics.record_probe(
            &target.name,
            "version",
            &ProbeOutcome {
                success: doc.is_ok(),
                status: fetched.status,
                seconds: fetched.seconds,
            },
        );
        // While the version cannot be read, the last known build stays the served one.
        let Ok(doc) = doc else { return false };
        let color = fetched
            .color
            .or(doc.color.clone())
            .or(target.color.clone())
            .map(|c| c.to_ascii_lowercase());
        let [version, commit, build_date, color] = [
            ("version", doc.version.as_str()),
            ("commit", &doc.git_commit),
            ("build_date", &doc.build_date),
            ("color", color.as_deref().unwrap_or("")),
        ]
        .map(|(label, value)| {
            let (value, was_cut) = limits::label(value);
            if was_cut {
                self.metrics.count_cut_label(&target.name, label);
            }
            value
        });
        if !color.is_empty() && !COLORS.contains(&color.as_str()) {
            tracing::debug!(target = %target.name, color, "colour is neither blue nor green");
        }
        self.metrics
            .record_build(&target.name, &version, &commit, &build_date, &color);
        let history = self.state.targets.entry(target.name.clone()).or_default();
        let from = history.current.as_ref().map(|b| b.version.clone());
        let build = Build {
            version,
            commit,
            build_date,
        };
        let (version, commit) = (build.version.clone(), build.commit.clone());
        match history.observe(build, now) {
            Change::Unchanged => false,
            Change::First => {
                tracing::info!(target = %target.name, %version, "first version seen");
                true
            }
            change @ (Change::Deployed(basis) | Change::RolledBack(basis)) => {
                let rollback = matches!(change, Change::RolledBack(_));
                self.metrics.record_change(&target.name, rollback, now);
                tracing::warn!(
                    target = %target.name,
                    from = from.as_deref().unwrap_or(""),
                    to = %version,
                    %commit,
                    rollback,
                    decided_by = basis.as_str(),
                    "{}",
                    if rollback { "rollback detected" } else { "deployment detected" }
                );
                true
            }
        }
    }

    fn count_refusal(&self, target: &Target, endpoint: &str, fetched: &Fetched) {
        if let Err(Failure {
            refused: Some(refusal),
            ..
        }) = &fetched.body
        {
            self.metrics.count_refused(&target.name, endpoint, *refusal);
        }
    }

    /// Logs an endpoint starting to fail (or failing differently) and recovering, not every
    /// failed probe.
    fn note(&mut self, target: &Target, endpoint: &'static str, error: Option<String>) {
        let key = (target.name.clone(), endpoint);
        match error {
            Some(error) => {
                let error = limits::cut(&error, limits::MAX_ERROR_BYTES).into_owned();
                if self.failing.get(&key) != Some(&error) {
                    tracing::warn!(target = %target.name, url = %target.url, endpoint, %error, "probe failed");
                    self.failing.insert(key, error);
                }
            }
            None => {
                if self.failing.remove(&key).is_some() {
                    tracing::info!(target = %target.name, endpoint, "probe recovered");
                }
            }
        }
    }

    fn save_state(&self) {
        let Some(path) = &self.settings.state_file else {
            return;
        };
        if let Err(error) = self.state.save(path) {
            self.metrics.count_state_file_error(StateFileError::Write);
            tracing::warn!(%error, "version history not saved; a restart may miscount deployments");
        }
    }
}

/// The history in `path`, or an empty one when the file is unreadable or corrupt (logged,
/// counted, and a corrupt file set aside), so that a bad file never stops the exporter.
fn restore(path: &Path, metrics: &ProbeMetrics) -> State {
    let now = unix_now() as u64;
    let (state, recovery) = State::load(path, now);
    let shown = path.display();
    match recovery {
        None => {}
        Some(Recovery::SetAside { error, moved_to }) => {
            metrics.count_state_file_corrupt();
            tracing::warn!(
                path = %shown,
                %error,
                moved_to = %moved_to.display(),
                "state file is corrupt; set aside, starting with an empty version history"
            );
        }
        Some(Recovery::NotSetAside {
            error,
            rename_error,
        }) => {
            metrics.count_state_file_corrupt();
            tracing::warn!(
                path = %shown,
                %error,
                %rename_error,
                "state file is corrupt and could not be set aside; starting with an empty \
                 version history, the next save replaces the file"
            );
        }
        Some(Recovery::Unreadable { error }) => {
            metrics.count_state_file_error(StateFileError::Read);
            tracing::warn!(
                path = %shown,
                %error,
                "cannot read the state file; starting with an empty version history"
            );
        }
    }
    state
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}
