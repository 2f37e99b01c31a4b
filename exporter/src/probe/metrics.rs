//! The deployment-version and probe metric families, how a probe result updates them, and
//! the counters of limits exceeded and state file trouble.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use prometheus::{GaugeVec, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry};

use super::fetch::Refusal;
use super::history::History;
use super::wire::{CheckStatus, HealthStatus};

pub const COLORS: [&str; 2] = ["blue", "green"];

/// The labels whose values come from a gateway's answer and are cut to a maximum length.
const CUT_LABELS: [&str; 5] = ["version", "commit", "build_date", "color", "check"];
const ENDPOINTS: [&str; 2] = ["health", "version"];

/// What failed on the state file (a label of `exporter_state_file_errors_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateFileError {
    Read,
    Write,
}

impl StateFileError {
    const ALL: [StateFileError; 2] = [Self::Read, Self::Write];

    fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Write => "write",
        }
    }
}

/// Metric handles plus what is needed to remove series that no longer hold.
pub struct ProbeMetrics {
    version_info: IntGaugeVec,
    active_color: IntGaugeVec,
    changes: IntCounterVec,
    rollbacks: IntCounterVec,
    last_change: GaugeVec,
    health: IntGaugeVec,
    check: IntGaugeVec,
    success: IntGaugeVec,
    duration: GaugeVec,
    status_code: IntGaugeVec,
    checks_dropped: IntCounterVec,
    labels_truncated: IntCounterVec,
    responses_refused: IntCounterVec,
    state_file_corrupt: IntCounter,
    state_file_errors: IntCounterVec,
    /// Per target: the labels of its current `app_version_info` series.
    info_labels: HashMap<String, [String; 4]>,
    /// Per target: the checks it reported last time.
    checks: HashMap<String, BTreeSet<String>>,
}

fn gauge_vec(name: &str, help: &str, labels: &[&str]) -> Result<IntGaugeVec, prometheus::Error> {
    IntGaugeVec::new(Opts::new(name, help), labels)
}

impl ProbeMetrics {
    /// Registers the families; the limit counters of each target start at 0.
    pub fn register(registry: &Registry, targets: &[&str]) -> Result<Self, prometheus::Error> {
        let metrics = Self {
            version_info: gauge_vec(
                "app_version_info",
                "The build a target serves now (always 1).",
                &["target", "version", "commit", "build_date", "color"],
            )?,
            active_color: gauge_vec(
                "app_active_color",
                "1 for the colour (blue or green) a target serves now, 0 for the other.",
                &["target", "color"],
            )?,
            changes: IntCounterVec::new(
                Opts::new(
                    "deployment_changes_total",
                    "Times the build served by a target changed.",
                ),
                &["target"],
            )?,
            rollbacks: IntCounterVec::new(
                Opts::new(
                    "deployment_rollbacks_total",
                    "Changes of a target to an older release: lower semver, else earlier build date, else a build served before.",
                ),
                &["target"],
            )?,
            last_change: GaugeVec::new(
                Opts::new(
                    "deployment_last_change_timestamp_seconds",
                    "Unix time of a target's last build change.",
                ),
                &["target"],
            )?,
            health: gauge_vec(
                "app_health_status",
                "1 for a target's overall health status now, 0 for the others.",
                &["target", "status"],
            )?,
            check: gauge_vec(
                "app_health_check_status",
                "1 for the status of one health check now, 0 for the others.",
                &["target", "check", "status"],
            )?,
            success: gauge_vec(
                "probe_success",
                "1 if the last probe got a 2xx answer with valid JSON.",
                &["target", "endpoint"],
            )?,
            duration: GaugeVec::new(
                Opts::new("probe_duration_seconds", "Duration of the last probe."),
                &["target", "endpoint"],
            )?,
            status_code: gauge_vec(
                "probe_http_status_code",
                "HTTP status of the last probe (0 when no answer).",
                &["target", "endpoint"],
            )?,
            checks_dropped: IntCounterVec::new(
                Opts::new(
                    "exporter_probe_checks_dropped_total",
                    "Health checks left out of a target's series because its answer had more than the limit, summed over probes.",
                ),
                &["target"],
            )?,
            labels_truncated: IntCounterVec::new(
                Opts::new(
                    "exporter_probe_label_values_truncated_total",
                    "Label values from a target's answers cut to the maximum length, summed over probes.",
                ),
                &["target", "label"],
            )?,
            responses_refused: IntCounterVec::new(
                Opts::new(
                    "exporter_probe_responses_refused_total",
                    "Probe answers refused by a limit (body too large, redirect not followed).",
                ),
                &["target", "endpoint", "reason"],
            )?,
            state_file_corrupt: IntCounter::new(
                "exporter_state_file_corrupt_total",
                "Corrupt state files set aside at start (the version history started empty).",
            )?,
            state_file_errors: IntCounterVec::new(
                Opts::new(
                    "exporter_state_file_errors_total",
                    "Failed reads (at start) and writes of the state file.",
                ),
                &["operation"],
            )?,
            info_labels: HashMap::new(),
            checks: HashMap::new(),
        };
        for target in targets {
            metrics.checks_dropped.with_label_values(&[target]);
            for label in CUT_LABELS {
                metrics.labels_truncated.with_label_values(&[target, label]);
            }
            for endpoint in ENDPOINTS {
                for refusal in Refusal::ALL {
                    metrics.responses_refused.with_label_values(&[
                        target,
                        endpoint,
                        refusal.as_str(),
                    ]);
                }
            }
        }
        for operation in StateFileError::ALL {
            metrics
                .state_file_errors
                .with_label_values(&[operation.as_str()]);
        }
        let collectors: [Box<dyn prometheus::core::Collector>; 15] = [
            Box::new(metrics.version_info.clone()),
            Box::new(metrics.active_color.clone()),
            Box::new(metrics.changes.clone()),
            Box::new(metrics.rollbacks.clone()),
            Box::new(metrics.last_change.clone()),
            Box::new(metrics.health.clone()),
            Box::new(metrics.check.clone()),
            Box::new(metrics.success.clone()),
            Box::new(metrics.duration.clone()),
            Box::new(metrics.status_code.clone()),
            Box::new(metrics.checks_dropped.clone()),
            Box::new(metrics.labels_truncated.clone()),
            Box::new(metrics.responses_refused.clone()),
            Box::new(metrics.state_file_corrupt.clone()),
            Box::new(metrics.state_file_errors.clone()),
        ];
        for collector in collectors {
            registry.register(collector)?;
        }
        Ok(metrics)
    }

    pub fn count_bounded_checks(&self, target: &str, dropped: u64, cut_names: u64) {
        self.checks_dropped
            .with_label_values(&[target])
            .inc_by(dropped);
        self.labels_truncated
            .with_label_values(&[target, "check"])
            .inc_by(cut_names);
    }

    /// `label` is one of the version labels (`version`, `commit`, `build_date`, `color`).
    pub fn count_cut_label(&self, target: &str, label: &str) {
        self.labels_truncated
            .with_label_values(&[target, label])
            .inc();
    }

    pub fn count_refused(&self, target: &str, endpoint: &str, refusal: Refusal) {
        self.responses_refused
            .with_label_values(&[target, endpoint, refusal.as_str()])
            .inc();
    }

    pub fn count_state_file_corrupt(&self) {
        self.state_file_corrupt.inc();
    }

    pub fn count_state_file_error(&self, error: StateFileError) {
        self.state_file_errors
            .with_label_values(&[error.as_str()])
            .inc();
    }

    /// Makes the counters of `target` start from its restored history, so that an exporter
    /// restart neither resets nor bumps them.
    pub fn restore(&self, target: &str, history: &History) {
        self.changes
            .with_label_values(&[target])
            .inc_by(history.changes);
        self.rollbacks
            .with_label_values(&[target])
            .inc_by(history.rollbacks);
        if let Some(at) = history.last_change {
            self.last_change.with_label_values(&[target]).set(at);
        }
    }

    pub fn record_probe(&self, target: &str, endpoint: &str, outcome: &ProbeOutcome) {
        let labels = [target, endpoint];
        self.success
            .with_label_values(&labels)
            .set(i64::from(outcome.success));
        self.duration
            .with_label_values(&labels)
            .set(outcome.seconds);
        self.status_code
            .with_label_values(&labels)
            .set(i64::from(outcome.status));
    }

    pub fn record_build(
        &mut self,
        target: &str,
        version: &str,
        commit: &str,
        build_date: &str,
        color: &str,
    ) {
        let labels = [
            version.to_owned(),
            commit.to_owned(),
            build_date.to_owned(),
            color.to_owned(),
        ];
        if self.info_labels.get(target) != Some(&labels) {
            if let Some(old) = self.info_labels.insert(target.to_owned(), labels.clone()) {
                let old = [target, &old[0], &old[1], &old[2], &old[3]];
                let _ = self.version_info.remove_label_values(&old);
            }
            let new = [target, &labels[0], &labels[1], &labels[2], &labels[3]];
            self.version_info.with_label_values(&new).set(1);
        }
        if COLORS.contains(&color) {
            for candidate in COLORS {
                self.active_color
                    .with_label_values(&[target, candidate])
                    .set(i64::from(candidate == color));
            }
        }
    }

    pub fn record_change(&self, target: &str, rollback: bool, at: f64) {
        self.changes.with_label_values(&[target]).inc();
        if rollback {
            self.rollbacks.with_label_values(&[target]).inc();
        }
        self.last_change.with_label_values(&[target]).set(at);
    }

    /// Sets the health series from a parsed document's status and its bounded checks, or to
    /// "unknown" (all 0, no checks) when the gateway gave none.
    pub fn record_health(
        &mut self,
        target: &str,
        overall: Option<HealthStatus>,
        checks: Option<&BTreeMap<String, CheckStatus>>,
    ) {
        for status in HealthStatus::ALL {
            let on = overall == Some(status);
            self.health
                .with_label_values(&[target, status.as_str()])
                .set(i64::from(on));
        }
        let now: BTreeSet<String> = checks
            .map(|c| c.keys().cloned().collect())
            .unwrap_or_default();
        let before = self.checks.insert(target.to_owned(), now.clone());
        for gone in before.iter().flatten().filter(|c| !now.contains(*c)) {
            for status in CheckStatus::ALL {
                let _ = self
                    .check
                    .remove_label_values(&[target, gone, status.as_str()]);
            }
        }
        for (name, check) in checks.into_iter().flatten() {
            for status in CheckStatus::ALL {
                self.check
                    .with_label_values(&[target, name, status.as_str()])
                    .set(i64::from(*check == status));
            }
        }
    }
}

/// What one HTTP probe of one endpoint gave.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProbeOutcome {
    pub success: bool,
    pub status: u16,
    pub seconds: f64,
}
