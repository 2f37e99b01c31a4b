//! The relay's own metrics (`relay_*`), listed in docs/metrics.md.

use prometheus::{
    GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

#[derive(Clone)]
pub struct RelayMetrics {
    pub registry: Registry,
    pub webhooks: IntCounterVec,
    pub notifications: IntCounterVec,
    pub delivery_seconds: HistogramVec,
    pub outbox_depth: IntGauge,
    pub dead_letters: IntCounterVec,
    pub target_healthy: IntGaugeVec,
    pub incidents_open: IntGauge,
    pub steps: IntCounterVec,
    pub stopped: IntCounterVec,
    pub webhook_seconds: Histogram,
    pub config_reloads: IntCounterVec,
    pub config_last_reload_successful: IntGauge,
    pub silence_checks: IntCounterVec,
    pub heartbeat_last_seen: GaugeVec,
    pub quarantined: IntCounterVec,
    pub schedule_gaps: IntCounterVec,
    pub handoff_notices: IntCounterVec,
    pub lease_takeovers: IntCounterVec,
    pub leases_lost: IntCounterVec,
    pub store_timeouts: IntCounterVec,
    pub pruned: IntCounterVec,
}

/// Outcomes of `relay_webhooks_received_total`.
pub const WEBHOOK_OUTCOMES: [&str; 6] = [
    "accepted",
    "duplicate",
    "unauthorized",
    "bad_request",
    "too_large",
    "store_error",
];

impl RelayMetrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let build = IntGaugeVec::new(
            Opts::new("relay_build_info", "The running relay build (always 1)."),
            &["version"],
        )?;
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        let metrics = Self {
            webhooks: IntCounterVec::new(
                Opts::new(
                    "relay_webhooks_received_total",
                    "Alertmanager webhooks received, by how they were answered.",
                ),
                &["outcome"],
            )?,
            notifications: IntCounterVec::new(
                Opts::new(
                    "relay_notifications_total",
                    "Delivery attempts by target and result (delivered, retried, dead_letter).",
                ),
                &["target", "outcome"],
            )?,
            delivery_seconds: HistogramVec::new(
                HistogramOpts::new(
                    "relay_delivery_duration_seconds",
                    "Time of one delivery attempt to a vendor.",
                )
                .buckets(vec![
                    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                ]),
                &["target"],
            )?,
            outbox_depth: IntGauge::new(
                "relay_outbox_depth",
                "Notifications waiting for delivery.",
            )?,
            dead_letters: IntCounterVec::new(
                Opts::new(
                    "relay_dead_letters_total",
                    "Notifications given up on (permanent vendor error or too old).",
                ),
                &["target"],
            )?,
            incidents_open: IntGauge::new("relay_incidents_open", "Incidents not resolved yet.")?,
            target_healthy: IntGaugeVec::new(
                Opts::new(
                    "relay_target_healthy",
                    "1 if the target's last healthcheck passed, 0 if it failed; absent for targets that cannot be checked without sending.",
                ),
                &["target"],
            )?,
            steps: IntCounterVec::new(
                Opts::new(
                    "relay_escalation_steps_total",
                    "Escalation steps fired, by policy.",
                ),
                &["policy"],
            )?,
            stopped: IntCounterVec::new(
                Opts::new(
                    "relay_escalations_stopped_total",
                    "Escalations stopped, by reason (resolved, acknowledged, silenced).",
                ),
                &["reason"],
            )?,
            webhook_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "relay_webhook_duration_seconds",
                    "Time to answer a webhook, durable write included.",
                )
                .buckets(vec![
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                ]),
            )?,
            config_reloads: IntCounterVec::new(
                Opts::new("relay_config_reloads_total", "Policy reloads (SIGHUP or POST /-/reload), by result."),
                &["result"],
            )?,
            config_last_reload_successful: IntGauge::new(
                "relay_config_last_reload_successful",
                "1 if the last policy reload succeeded (or none happened), 0 if it was rejected.",
            )?,
            silence_checks: IntCounterVec::new(
                Opts::new(
                    "relay_silence_checks_total",
                    "Questions to Alertmanager before an escalation step, by answer (paging, silenced, unknown, error).",
                ),
                &["result"],
            )?,
            heartbeat_last_seen: GaugeVec::new(
                Opts::new(
                    "relay_heartbeat_last_seen_timestamp_seconds",
                    "When a heartbeat (Alertmanager's Watchdog) last reached each heartbeat policy.",
                ),
                &["policy"],
            )?,
            quarantined: IntCounterVec::new(
                Opts::new(
                    "relay_quarantined_rows_total",
                    "Stored rows that could not be read and were taken out of service, by table (incidents, outbox).",
                ),
                &["table"],
            )?,
            schedule_gaps: IntCounterVec::new(
                Opts::new(
                    "relay_schedule_gaps_total",
                    "Steps that named a schedule while nobody was on call (the next step was paged instead), by schedule.",
                ),
                &["schedule"],
            )?,
            handoff_notices: IntCounterVec::new(
                Opts::new(
                    "relay_handoff_notices_total",
                    "Notices queued to tell the incoming person of a schedule they are on call, by schedule.",
                ),
                &["schedule"],
            )?,
            lease_takeovers: IntCounterVec::new(
                Opts::new(
                    "relay_delivery_lease_takeovers_total",
                    "Delivery leases this relay took over from another relay (or an earlier run of itself) whose lease ran out without being released: a relay died, hung or lost the database while it held the target. By target.",
                ),
                &["target"],
            )?,
            leases_lost: IntCounterVec::new(
                Opts::new(
                    "relay_delivery_leases_lost_total",
                    "Delivery leases this relay lost while it worked under them (it stalled or lost the database, and another relay took the target over): the attempt was abandoned unsent or unrecorded. By target.",
                ),
                &["target"],
            )?,
            store_timeouts: IntCounterVec::new(
                Opts::new(
                    "relay_store_timeouts_total",
                    "Store operations that gave up waiting, by kind: lock (a lock held by another relay), statement, idle_transaction (the server ended this relay's transaction), no_answer (the database did not answer in time), deadlock.",
                ),
                &["kind"],
            )?,
            pruned: IntCounterVec::new(
                Opts::new(
                    "relay_pruned_rows_total",
                    "Rows deleted by retention (incidents closed longer ago than `retention`, with their events, notifications and acknowledge-link nonces), by table.",
                ),
                &["table"],
            )?,
            registry,
        };
        let r = &metrics.registry;
        r.register(Box::new(build))?;
        r.register(Box::new(metrics.webhooks.clone()))?;
        r.register(Box::new(metrics.notifications.clone()))?;
        r.register(Box::new(metrics.delivery_seconds.clone()))?;
        r.register(Box::new(metrics.outbox_depth.clone()))?;
        r.register(Box::new(metrics.dead_letters.clone()))?;
        r.register(Box::new(metrics.target_healthy.clone()))?;
        r.register(Box::new(metrics.incidents_open.clone()))?;
        r.register(Box::new(metrics.steps.clone()))?;
        r.register(Box::new(metrics.stopped.clone()))?;
        r.register(Box::new(metrics.webhook_seconds.clone()))?;
        r.register(Box::new(metrics.config_reloads.clone()))?;
        r.register(Box::new(metrics.config_last_reload_successful.clone()))?;
        r.register(Box::new(metrics.silence_checks.clone()))?;
        r.register(Box::new(metrics.heartbeat_last_seen.clone()))?;
        r.register(Box::new(metrics.quarantined.clone()))?;
        r.register(Box::new(metrics.schedule_gaps.clone()))?;
        r.register(Box::new(metrics.handoff_notices.clone()))?;
        r.register(Box::new(metrics.lease_takeovers.clone()))?;
        r.register(Box::new(metrics.leases_lost.clone()))?;
        r.register(Box::new(metrics.store_timeouts.clone()))?;
        r.register(Box::new(metrics.pruned.clone()))?;
        #[cfg(target_os = "linux")]
        r.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        // Known label values start at 0, so rate() works from the first scrape.
        for outcome in WEBHOOK_OUTCOMES {
            metrics.webhooks.with_label_values(&[outcome]).inc_by(0);
        }
        for reason in ["resolved", "acknowledged", "silenced"] {
            metrics.stopped.with_label_values(&[reason]).inc_by(0);
        }
        for result in ["success", "failure"] {
            metrics
                .config_reloads
                .with_label_values(&[result])
                .inc_by(0);
        }
        for result in ["paging", "silenced", "unknown", "error"] {
            metrics
                .silence_checks
                .with_label_values(&[result])
                .inc_by(0);
        }
        for table in ["incidents", "outbox"] {
            metrics.quarantined.with_label_values(&[table]).inc_by(0);
        }
        for (table, _) in crate::store::Pruned::default().by_table() {
            metrics.pruned.with_label_values(&[table]).inc_by(0);
        }
        for kind in crate::store::TIMEOUT_KINDS {
            metrics.store_timeouts.with_label_values(&[kind]).inc_by(0);
        }
        metrics.config_last_reload_successful.set(1);
        Ok(metrics)
    }

    /// Starts the per-target series at 0.
    /// The schedule's series at zero, so that they exist before the first gap or handoff.
    pub fn init_schedule(&self, schedule: &str) {
        self.schedule_gaps.with_label_values(&[schedule]).inc_by(0);
        self.handoff_notices
            .with_label_values(&[schedule])
            .inc_by(0);
    }

    pub fn init_target(&self, target: &str) {
        for outcome in ["delivered", "retried", "dead_letter"] {
            self.notifications
                .with_label_values(&[target, outcome])
                .inc_by(0);
        }
        self.dead_letters.with_label_values(&[target]).inc_by(0);
        self.lease_takeovers.with_label_values(&[target]).inc_by(0);
        self.leases_lost.with_label_values(&[target]).inc_by(0);
    }

    /// Counts a store error that was a timeout of some kind.
    pub fn store_error(&self, error: &crate::store::StoreError) {
        if let Some(kind) = error.timeout_kind() {
            self.store_timeouts.with_label_values(&[kind]).inc();
        }
    }

    pub fn record_effects(&self, effects: &crate::engine::Effects) {
        for policy in &effects.steps {
            self.steps.with_label_values(&[policy.as_str()]).inc();
        }
        for reason in &effects.stopped {
            self.stopped.with_label_values(&[reason.as_str()]).inc();
        }
        for schedule in &effects.nobody_on_call {
            self.schedule_gaps
                .with_label_values(&[schedule.as_str()])
                .inc();
            tracing::error!(%schedule, "a step named a schedule with nobody on call: dead-lettered, the next step paged at once");
        }
        for target in &effects.unconfigured {
            self.dead_letters
                .with_label_values(&[target.as_str()])
                .inc();
            tracing::warn!(
                %target,
                "notification dead-lettered: the target is no longer configured"
            );
        }
    }
}
