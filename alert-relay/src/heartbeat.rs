//! The dead man's switch. Alertmanager sends the always-firing `Watchdog` to a policy with
//! `heartbeat: {missing_after: 10m}`; when no webhook reaches that policy for that long,
//! Prometheus, Alertmanager or the route between them is broken and no alert would reach
//! anyone. The relay then raises an alert of its own, `HeartbeatMissing` (severity critical),
//! which follows the policies like any other (so it pages), and resolves it when heartbeats
//! come back.
//!
//! Heartbeat times live in memory: after a restart the clock starts again from the start, so
//! a relay that comes up without heartbeats pages after `missing_after`. Raising and resolving
//! are idempotent (a second raise refreshes the open incident), so a restart in the middle is
//! harmless.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{watch, Notify};

use crate::domain::{
    Alert, AlertGroup, AlertStatus, Fingerprint, GroupKey, Labels, PolicyName, Timestamp,
};
use crate::runtime::Relay;

/// The `alertname` of the relay's own alert.
pub const MISSING_ALERT: &str = "HeartbeatMissing";

/// Heartbeats seen per policy, and whether their absence is currently reported.
pub struct Heartbeats {
    started: Instant,
    beats: Mutex<HashMap<PolicyName, Beat>>,
    /// Wakes the watcher when a heartbeat arrives (so a resolve is not a tick late).
    arrived: Notify,
}

#[derive(Default)]
struct Beat {
    last_seen: Option<Instant>,
    /// The runbook link of the last heartbeat (the Watchdog's), reused in the page.
    runbook_url: Option<String>,
    /// `None` until this process raised or resolved the alert.
    raised: Option<bool>,
}

impl Default for Heartbeats {
    fn default() -> Self {
        Self {
            started: Instant::now(),
            beats: Mutex::default(),
            arrived: Notify::new(),
        }
    }
}

impl Heartbeats {
    /// Called by intake for every firing webhook of a heartbeat policy.
    pub fn seen(&self, policy: &PolicyName, group: &AlertGroup) {
        let mut beats = self.beats.lock().unwrap_or_else(|e| e.into_inner());
        let beat = beats.entry(policy.clone()).or_default();
        beat.last_seen = Some(Instant::now());
        if let Some(url) = group.common_annotations.get("runbook_url") {
            beat.runbook_url = Some(url.clone());
        }
        drop(beats);
        self.arrived.notify_one();
    }

    /// What to do now for `policy`, whose heartbeats may be `missing_after` apart.
    fn decide(&self, policy: &PolicyName, missing_after: Duration, now: Instant) -> Decision {
        let mut beats = self.beats.lock().unwrap_or_else(|e| e.into_inner());
        let beat = beats.entry(policy.clone()).or_default();
        let since = beat.last_seen.unwrap_or(self.started);
        let missing = now.duration_since(since) > missing_after;
        match (missing, beat.raised) {
            (true, Some(true)) | (false, Some(false)) => Decision::Nothing,
            // Not missing and never raised by this process: resolve only once a heartbeat
            // came (it may close an alert raised before a restart).
            (false, None) if beat.last_seen.is_none() => Decision::Nothing,
            (true, _) => Decision::Raise {
                runbook_url: beat.runbook_url.clone(),
            },
            (false, _) => Decision::Resolve,
        }
    }

    fn settle(&self, policy: &PolicyName, raised: bool) {
        let mut beats = self.beats.lock().unwrap_or_else(|e| e.into_inner());
        beats.entry(policy.clone()).or_default().raised = Some(raised);
    }
}

#[derive(Debug, PartialEq)]
enum Decision {
    Nothing,
    Raise { runbook_url: Option<String> },
    Resolve,
}

/// The relay's own alert about `policy`, shaped as Alertmanager would have sent it.
fn missing_alert(
    policy: &PolicyName,
    missing_after: Duration,
    firing: bool,
    runbook_url: Option<&str>,
) -> AlertGroup {
    let after = humantime::format_duration(missing_after).to_string();
    let pairs = |pairs: &[(&str, &str)]| -> Labels {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    };
    let labels = pairs(&[
        ("alertname", MISSING_ALERT),
        ("severity", "critical"),
        ("heartbeat", policy.as_str()),
    ]);
    let mut annotations = pairs(&[
        (
            "summary",
            &format!("No heartbeat from Alertmanager for {after}: alerts may reach nobody"),
        ),
        (
            "description",
            &format!(
                "alert-relay received no webhook for its heartbeat policy `{}` (Alertmanager's \
                 Watchdog) for {after}. Prometheus, Alertmanager, or the route from Alertmanager \
                 to the relay is down: other alerts are probably not being delivered either.",
                policy.as_str()
            ),
        ),
    ]);
    if let Some(url) = runbook_url {
        annotations.insert("runbook_url".into(), url.into());
    }
    let status = if firing {
        AlertStatus::Firing
    } else {
        AlertStatus::Resolved
    };
    let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    AlertGroup {
        group_key: GroupKey(format!(
            "{{}}:{{alertname=\"{MISSING_ALERT}\",heartbeat=\"{}\"}}",
            policy.as_str()
        )),
        status,
        receiver: "alert-relay".into(),
        group_labels: pairs(&[("alertname", MISSING_ALERT), ("heartbeat", policy.as_str())]),
        common_labels: labels.clone(),
        common_annotations: annotations.clone(),
        external_url: None,
        truncated_alerts: 0,
        alerts: vec![Alert {
            status,
            labels,
            annotations,
            starts_at: Some(now.clone()),
            ends_at: (!firing).then_some(now),
            generator_url: None,
            fingerprint: Fingerprint(format!("heartbeat-{}", policy.as_str())),
        }],
    }
}

/// Checks every heartbeat policy each second (or when a heartbeat arrives) until `stop`.
pub async fn run_watch(relay: Arc<Relay>, mut stop: watch::Receiver<bool>) {
    loop {
        if *stop.borrow() {
            return;
        }
        check(&relay).await;
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = relay.heartbeats.arrived.notified() => {}
            _ = stop.changed() => return,
        }
    }
}

async fn check(relay: &Arc<Relay>) {
    let runtime = relay.runtime();
    let watched: Vec<(PolicyName, Duration)> = runtime
        .config
        .policies
        .iter()
        .filter_map(|p| Some((p.name.clone(), p.heartbeat_missing_after?)))
        .collect();
    for (policy, missing_after) in watched {
        let (firing, runbook_url) =
            match relay
                .heartbeats
                .decide(&policy, missing_after, Instant::now())
            {
                Decision::Nothing => continue,
                Decision::Raise { runbook_url } => (true, runbook_url),
                Decision::Resolve => (false, None),
            };
        let group = missing_alert(&policy, missing_after, firing, runbook_url.as_deref());
        let Some(chosen) = runtime.config.policy_for(group.match_labels()) else {
            tracing::error!(heartbeat = %policy.as_str(), "no policy matches the HeartbeatMissing alert (severity=critical); nobody can be told that heartbeats stopped");
            relay.heartbeats.settle(&policy, firing);
            continue;
        };
        let result = relay
            .writer
            .ingest(
                chosen.plan.clone(),
                group,
                runtime.composer.clone(),
                Timestamp::now(),
            )
            .await;
        match result {
            Ok((outcome, effects)) => {
                relay.metrics.record_effects(&effects);
                relay.heartbeats.settle(&policy, firing);
                if effects.queued > 0 {
                    relay.wakers.wake_all();
                }
                if firing {
                    tracing::error!(heartbeat = %policy.as_str(), missing_after = %humantime::format_duration(missing_after), policy = %chosen.name.as_str(), ?outcome, "heartbeats stopped: raised HeartbeatMissing");
                } else {
                    tracing::info!(heartbeat = %policy.as_str(), ?outcome, "heartbeats are back: HeartbeatMissing resolved");
                }
            }
            // Not settled: tried again on the next tick.
            Err(error) => {
                tracing::error!(%error, heartbeat = %policy.as_str(), "cannot store HeartbeatMissing; retrying")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group() -> AlertGroup {
        missing_alert(
            &PolicyName::from("heartbeat"),
            Duration::from_secs(60),
            true,
            Some("https://runbooks/Watchdog.md"),
        )
    }

    #[test]
    fn the_relays_own_alert_is_critical_and_names_the_policy() {
        let group = group();
        assert_eq!(group.common_labels["alertname"], MISSING_ALERT);
        assert_eq!(group.common_labels["severity"], "critical");
        assert_eq!(group.common_labels["heartbeat"], "heartbeat");
        assert_eq!(
            group.common_annotations["runbook_url"],
            "https://runbooks/Watchdog.md"
        );
        assert!(group.common_annotations["summary"].contains("1m"));
        assert_eq!(group.firing_count(), 1);
    }

    #[test]
    fn raises_once_when_missing_and_resolves_once_when_back() {
        let beats = Heartbeats::default();
        let policy = PolicyName::from("heartbeat");
        let after = Duration::from_secs(60);
        let t0 = beats.started;
        // Within the grace after start: nothing; past it without a heartbeat: raise.
        assert_eq!(
            beats.decide(&policy, after, t0 + Duration::from_secs(30)),
            Decision::Nothing
        );
        assert!(matches!(
            beats.decide(&policy, after, t0 + Duration::from_secs(61)),
            Decision::Raise { .. }
        ));
        beats.settle(&policy, true);
        assert_eq!(
            beats.decide(&policy, after, t0 + Duration::from_secs(120)),
            Decision::Nothing
        );
        // A heartbeat: resolve once, then quiet.
        beats.seen(&policy, &group());
        let now = Instant::now();
        assert_eq!(beats.decide(&policy, after, now), Decision::Resolve);
        beats.settle(&policy, false);
        assert_eq!(beats.decide(&policy, after, now), Decision::Nothing);
        // Missing again, with the runbook of the last heartbeat.
        assert_eq!(
            beats.decide(&policy, after, now + Duration::from_secs(61)),
            Decision::Raise {
                runbook_url: Some("https://runbooks/Watchdog.md".into())
            }
        );
    }

    #[test]
    fn after_a_restart_the_first_heartbeat_resolves_what_may_be_open() {
        let beats = Heartbeats::default();
        let policy = PolicyName::from("heartbeat");
        beats.seen(&policy, &group());
        assert_eq!(
            beats.decide(&policy, Duration::from_secs(60), Instant::now()),
            Decision::Resolve
        );
    }
}
