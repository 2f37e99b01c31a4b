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
//! harmless. Times are passed in (`now`); nothing here reads a clock.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Notify;

use crate::domain::{
    Alert, AlertGroup, AlertStatus, Fingerprint, GroupKey, Labels, PolicyName, Timestamp,
    OWN_RECEIVER,
};

/// The `alertname` of the relay's own alert.
pub const MISSING_ALERT: &str = "HeartbeatMissing";

/// Heartbeats seen per policy, and whether their absence is currently reported.
pub struct Heartbeats {
    started: Timestamp,
    beats: Mutex<HashMap<PolicyName, Beat>>,
    /// Wakes the watcher when a heartbeat arrives (so a resolve is not a tick late).
    pub arrived: Notify,
}

#[derive(Default)]
struct Beat {
    last_seen: Option<Timestamp>,
    /// The runbook link of the last heartbeat (the Watchdog's), reused in the page.
    runbook_url: Option<String>,
    /// `None` until this process raised or resolved the alert.
    raised: Option<bool>,
}

impl Heartbeats {
    /// Heartbeats of a relay started at `started`.
    pub fn new(started: Timestamp) -> Self {
        Self {
            started,
            beats: Mutex::default(),
            arrived: Notify::new(),
        }
    }

    /// Called by intake for every firing webhook of a heartbeat policy.
    pub fn seen(&self, policy: &PolicyName, group: &AlertGroup, now: Timestamp) {
        let mut beats = self.beats.lock().unwrap_or_else(|e| e.into_inner());
        let beat = beats.entry(policy.clone()).or_default();
        beat.last_seen = Some(now);
        if let Some(url) = group.common_annotations.get("runbook_url") {
            beat.runbook_url = Some(url.clone());
        }
        drop(beats);
        self.arrived.notify_one();
    }

    /// What to do now for `policy`, whose heartbeats may be `missing_after` apart.
    pub fn decide(&self, policy: &PolicyName, missing_after: Duration, now: Timestamp) -> Decision {
        let mut beats = self.beats.lock().unwrap_or_else(|e| e.into_inner());
        let beat = beats.entry(policy.clone()).or_default();
        let since = beat.last_seen.unwrap_or(self.started);
        let missing =
            now.0 - since.0 > i64::try_from(missing_after.as_millis()).unwrap_or(i64::MAX);
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

    /// Records that the alert was raised (or resolved) and stored.
    pub fn settle(&self, policy: &PolicyName, raised: bool) {
        let mut beats = self.beats.lock().unwrap_or_else(|e| e.into_inner());
        beats.entry(policy.clone()).or_default().raised = Some(raised);
    }
}

#[derive(Debug, PartialEq)]
pub enum Decision {
    Nothing,
    Raise { runbook_url: Option<String> },
    Resolve,
}

/// The relay's own alert about `policy`, shaped as Alertmanager would have sent it.
pub fn missing_alert(
    policy: &PolicyName,
    missing_after: Duration,
    firing: bool,
    runbook_url: Option<&str>,
    now: Timestamp,
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
    let now = now.to_rfc3339();
    AlertGroup {
        group_key: GroupKey(format!(
            "{{}}:{{alertname=\"{MISSING_ALERT}\",heartbeat=\"{}\"}}",
            policy.as_str()
        )),
        status,
        receiver: OWN_RECEIVER.into(),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn group() -> AlertGroup {
        missing_alert(
            &PolicyName::from("heartbeat"),
            Duration::from_secs(60),
            true,
            Some("https://runbooks/Watchdog.md"),
            T0,
        )
    }

    const T0: Timestamp = Timestamp(1_800_000_000_000);

    fn at(secs: i64) -> Timestamp {
        Timestamp(T0.0 + secs * 1000)
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
        let beats = Heartbeats::new(T0);
        let policy = PolicyName::from("heartbeat");
        let after = Duration::from_secs(60);
        // Within the grace after start: nothing; past it without a heartbeat: raise.
        assert_eq!(beats.decide(&policy, after, at(30)), Decision::Nothing);
        assert!(matches!(
            beats.decide(&policy, after, at(61)),
            Decision::Raise { .. }
        ));
        beats.settle(&policy, true);
        assert_eq!(beats.decide(&policy, after, at(120)), Decision::Nothing);
        // A heartbeat: resolve once, then quiet.
        beats.seen(&policy, &group(), at(130));
        assert_eq!(beats.decide(&policy, after, at(130)), Decision::Resolve);
        beats.settle(&policy, false);
        assert_eq!(beats.decide(&policy, after, at(130)), Decision::Nothing);
        // Missing again, with the runbook of the last heartbeat.
        assert_eq!(
            beats.decide(&policy, after, at(191)),
            Decision::Raise {
                runbook_url: Some("https://runbooks/Watchdog.md".into())
            }
        );
    }

    #[test]
    fn after_a_restart_the_first_heartbeat_resolves_what_may_be_open() {
        let beats = Heartbeats::new(T0);
        let policy = PolicyName::from("heartbeat");
        beats.seen(&policy, &group(), at(1));
        assert_eq!(
            beats.decide(&policy, Duration::from_secs(60), at(1)),
            Decision::Resolve
        );
    }
}
