//! Probes of each target's `/version` and `/health` on an interval: blackbox-style probe
//! metrics, the served build and colour, health per check, and deployments and rollbacks
//! from a version history that survives restarts.

pub mod history;
mod metrics;
pub mod wire;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http::HeaderName;
use prometheus::Registry;
use tokio::task::JoinSet;
use url::Url;

use crate::schedule::Every;

use history::{Build, Change, Recovery, State};
pub use metrics::ProbeOutcome;
use metrics::{ProbeMetrics, StateFileError, COLORS};
use wire::{HealthDoc, VersionDoc};

/// Bodies larger than this are not a health or version document.
const MAX_BODY_BYTES: usize = 1 << 20;

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
        let client = reqwest::Client::builder()
            .timeout(settings.timeout)
            .user_agent(concat!("bundle-exporter/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let metrics = ProbeMetrics::register(registry)?;
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
        let doc = fetched
            .body
            .as_ref()
            .map_err(Clone::clone)
            .and_then(|body| wire::parse::<HealthDoc>("health", body));
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
        self.metrics.record_health(&target.name, doc.as_ref().ok());
    }

    /// Returns whether the version history changed.
    fn apply_version(&mut self, target: &Target, fetched: Fetched, now: f64) -> bool {
        let doc = match (&fetched.body, fetched.is_2xx()) {
            (Ok(body), true) => wire::parse::<VersionDoc>("version", body),
            (Ok(_), false) => Err(format!("/version answered HTTP {}", fetched.status)),
            (Err(e), _) => Err(e.clone()),
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
        if let Some(color) = color.as_deref().filter(|c| !COLORS.contains(c)) {
            tracing::debug!(target = %target.name, color, "colour is neither blue nor green");
        }
        self.metrics.record_build(
            &target.name,
            &doc.version,
            &doc.git_commit,
            &doc.build_date,
            color.as_deref(),
        );
        let history = self.state.targets.entry(target.name.clone()).or_default();
        let from = history.current.as_ref().map(|b| b.version.clone());
        let build = Build {
            version: doc.version.clone(),
            commit: doc.git_commit.clone(),
            build_date: doc.build_date.clone(),
        };
        match history.observe(build, now) {
            Change::Unchanged => false,
            Change::First => {
                tracing::info!(target = %target.name, version = %doc.version, "first version seen");
                true
            }
            change @ (Change::Deployed(basis) | Change::RolledBack(basis)) => {
                let rollback = matches!(change, Change::RolledBack(_));
                self.metrics.record_change(&target.name, rollback, now);
                tracing::warn!(
                    target = %target.name,
                    from = from.as_deref().unwrap_or(""),
                    to = %doc.version,
                    commit = %doc.git_commit,
                    rollback,
                    decided_by = basis.as_str(),
                    "{}",
                    if rollback { "rollback detected" } else { "deployment detected" }
                );
                true
            }
        }
    }

    /// Logs an endpoint starting to fail (or failing differently) and recovering, not every
    /// failed probe.
    fn note(&mut self, target: &Target, endpoint: &'static str, error: Option<String>) {
        let key = (target.name.clone(), endpoint);
        match error {
            Some(error) => {
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

/// The raw result of one request.
struct Fetched {
    status: u16,
    seconds: f64,
    color: Option<String>,
    body: Result<Vec<u8>, String>,
}

impl Fetched {
    fn is_2xx(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

async fn fetch(
    client: &reqwest::Client,
    base: &Url,
    endpoint: &'static str,
    color_header: &HeaderName,
) -> Fetched {
    let started = Instant::now();
    let url = join(base, endpoint);
    let mut fetched = Fetched {
        status: 0,
        seconds: 0.0,
        color: None,
        body: Err(String::new()),
    };
    match client.get(url).send().await {
        Err(error) => fetched.body = Err(describe(&error)),
        Ok(mut response) => {
            fetched.status = response.status().as_u16();
            fetched.color = response
                .headers()
                .get(color_header)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            fetched.body = read_limited(&mut response, endpoint).await;
        }
    }
    fetched.seconds = started.elapsed().as_secs_f64();
    fetched
}

async fn read_limited(response: &mut reqwest::Response, endpoint: &str) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > MAX_BODY_BYTES {
                    return Err(format!(
                        "/{endpoint} body is larger than {MAX_BODY_BYTES} bytes"
                    ));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(error) => return Err(describe(&error)),
        }
    }
}

fn describe(error: &reqwest::Error) -> String {
    use std::error::Error;
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    // reqwest's top-level message hides the cause (refused, reset...): add the innermost.
    let mut cause: &dyn Error = error;
    while let Some(next) = cause.source() {
        cause = next;
    }
    format!("{kind}: {cause}")
}

/// `base` + `/endpoint`, keeping any path prefix of `base`.
fn join(base: &Url, endpoint: &str) -> Url {
    let mut url = base.clone();
    let path = format!("{}/{endpoint}", base.path().trim_end_matches('/'));
    url.set_path(&path);
    url
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_join_onto_a_base_with_or_without_a_prefix() {
        let base = Url::parse("http://gw:8080").expect("url");
        assert_eq!(join(&base, "health").as_str(), "http://gw:8080/health");
        let base = Url::parse("http://gw:8080/blue/").expect("url");
        assert_eq!(
            join(&base, "version").as_str(),
            "http://gw:8080/blue/version"
        );
    }
}
