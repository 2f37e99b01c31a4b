//! The world around the relay in the simulation: vendors that answer as the seed decides
//! (and record every request), and an Alertmanager that knows which groups are silenced.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use alert_relay::app::Peers;
use alert_relay::config::Config;
use alert_relay::domain::{AlertGroup, Notification, Rendered, TargetName, Timestamp};
use alert_relay::silence::{SilenceFuture, SilenceOracle, Verdict};
use alert_relay::sinks::{Health, HealthFuture, Outcome, SendFuture, Sink};

use super::model::Key;

/// How a vendor answers, until the seed changes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Healthy,
    /// 503 on every request.
    Down,
    /// 429 with `Retry-After` seconds.
    RateLimited(u64),
    /// 400: refuses every request (permanent).
    Refusing,
    /// No answer within the timeout.
    Timeout,
    /// Accepts the page, but the answer is lost (timeout): the relay must re-send it.
    AcceptThenTimeout,
    /// Accepts the page, then the relay crashes before it records the delivery.
    AcceptThenCrash,
    /// Every other request fails with 503.
    Flaky,
}

/// One request a vendor received.
#[derive(Debug, Clone)]
pub struct Received {
    /// The replica that sent it.
    pub replica: usize,
    /// Its sender stalled before recording the outcome, and lost the lease: the next try
    /// (by the relay that took over) does not know the vendor's answer to this one.
    pub abandoned: bool,
    /// The notification it carried, as the checker identifies rows.
    pub key: Key,
    pub target: TargetName,
    pub sequence_id: String,
    /// Simulated time of the request.
    pub at: Timestamp,
    /// Whether the vendor took the page (it may still have answered with an error).
    pub accepted: bool,
    /// The `Retry-After` the vendor answered with, if any.
    pub retry_after: Option<Duration>,
}

#[derive(Default)]
pub struct State {
    pub now: Timestamp,
    pub modes: BTreeMap<TargetName, Mode>,
    pub received: Vec<Received>,
    pub silenced: BTreeSet<String>,
    /// Groups Alertmanager has no alerts of (lost state): "unknown" must not stop paging.
    pub forgotten: BTreeSet<String>,
    pub alertmanager_down: bool,
    /// Set by `AcceptThenCrash`: the driver crashes the relay at once.
    pub crash_requested: bool,
    flaky_toggle: bool,
    /// The replica whose next send stalls after the vendor got the request: the replica
    /// hangs mid-send until the driver opens `gate`.
    pub hang_send: Option<usize>,
    /// Told when a send stalls.
    pub stalled: Arc<Notify>,
    /// Opened by the driver to let a stalled send have its answer.
    pub gate: Arc<Notify>,
    /// The page a stalled replica is sending or recording (its attempt not recorded yet).
    pub in_flight: Option<Key>,
}

/// Shared by the driver, the fake vendors and the fake Alertmanager.
#[derive(Default, Clone)]
pub struct World(pub Arc<Mutex<State>>);

impl World {
    pub fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The vendors and Alertmanager as replica `replica` sees them.
    pub fn for_replica(&self, replica: usize) -> ReplicaPeers {
        ReplicaPeers {
            world: self.clone(),
            replica,
        }
    }

    fn answer(&self, replica: usize, target: &TargetName, n: &Notification) -> Outcome {
        let mut s = self.state();
        let mode = s.modes.get(target).copied().unwrap_or(Mode::Healthy);
        let (accepted, outcome) = match mode {
            Mode::Healthy => (true, Outcome::Delivered),
            Mode::Down => (false, retry(None, "503 Service Unavailable")),
            Mode::RateLimited(secs) => (
                false,
                retry(Some(Duration::from_secs(secs)), "429 Too Many Requests"),
            ),
            Mode::Refusing => (
                false,
                Outcome::Permanent {
                    reason: "400 Bad Request: refused".into(),
                },
            ),
            Mode::Timeout => (false, retry(None, "no answer within 2s")),
            Mode::AcceptThenTimeout => (true, retry(None, "no answer within 2s")),
            Mode::AcceptThenCrash => {
                s.crash_requested = true;
                (true, retry(None, "the relay crashed before recording"))
            }
            Mode::Flaky => {
                s.flaky_toggle = !s.flaky_toggle;
                if s.flaky_toggle {
                    (false, retry(None, "503 Service Unavailable"))
                } else {
                    (true, Outcome::Delivered)
                }
            }
        };
        let at = s.now;
        let retry_after = match &outcome {
            Outcome::Retry { after, .. } => *after,
            _ => None,
        };
        s.received.push(Received {
            replica,
            abandoned: false,
            key: Key::of(n),
            target: target.clone(),
            sequence_id: n.sequence_id.clone(),
            at,
            accepted,
            retry_after,
        });
        outcome
    }
}

fn retry(after: Option<Duration>, reason: &str) -> Outcome {
    Outcome::Retry {
        after,
        reason: reason.into(),
    }
}

struct SimSink {
    target: TargetName,
    world: World,
    replica: usize,
}

impl Sink for SimSink {
    fn send<'a>(&'a self, n: &'a Notification, _: &'a Rendered) -> SendFuture<'a> {
        let outcome = self.world.answer(self.replica, &self.target, n);
        let stall = {
            let mut s = self.world.state();
            (s.hang_send == Some(self.replica)).then(|| {
                s.hang_send = None;
                (Arc::clone(&s.stalled), Arc::clone(&s.gate))
            })
        };
        Box::pin(async move {
            if let Some((stalled, gate)) = stall {
                stalled.notify_one();
                gate.notified().await;
            }
            outcome
        })
    }

    fn healthcheck(&self) -> HealthFuture<'_> {
        Box::pin(async { Health::Unchecked("simulated".into()) })
    }
}

struct SimAlertmanager {
    world: World,
}

impl SilenceOracle for SimAlertmanager {
    fn still_paging<'a>(&'a self, group: &'a AlertGroup) -> SilenceFuture<'a> {
        let s = self.world.state();
        let answer = if s.alertmanager_down {
            Err("connection refused".to_owned())
        } else if s.silenced.contains(group.group_key.as_str()) {
            Ok(Verdict::Suppressed {
                note: "silenced by sim until later".into(),
            })
        } else if s.forgotten.contains(group.group_key.as_str()) {
            // Alertmanager lost its state (restarted without storage): it knows nothing.
            Ok(Verdict::Unknown)
        } else {
            Ok(Verdict::Paging)
        };
        Box::pin(async move { answer })
    }
}

/// The world seen by one replica: its vendors' requests are marked as its own.
pub struct ReplicaPeers {
    world: World,
    replica: usize,
}

impl Peers for ReplicaPeers {
    fn sinks(&self, config: &Config) -> BTreeMap<TargetName, Arc<dyn Sink>> {
        config
            .targets
            .keys()
            .map(|target| {
                let sink: Arc<dyn Sink> = Arc::new(SimSink {
                    target: target.clone(),
                    world: self.world.clone(),
                    replica: self.replica,
                });
                (target.clone(), sink)
            })
            .collect()
    }

    fn silences(&self, _: &Config) -> Option<Arc<dyn SilenceOracle>> {
        Some(Arc::new(SimAlertmanager {
            world: self.world.clone(),
        }))
    }
}
