//! The async drivers around the pure engine: the scheduler (fires due steps) and one delivery
//! worker per target (drains its outbox in order, with retries). Both only sleep, call the
//! store and call sinks; every decision is made by `escalation`, `sinks::classify` or here in
//! [`deliver_next`], which tests drive step by step.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify};
use url::Url;

use crate::ack::AckKey;
use crate::domain::{Notification, NotificationKind, TargetName, Timestamp};
use crate::metrics::RelayMetrics;
use crate::runtime::Relay;
use crate::sinks::{Backoff, Outcome, Sink};
use crate::store::{self, Composer, Store, StoreError, StoredIncident};
use crate::templates::Templates;

/// Builds notifications with signed acknowledge links and Alertmanager silence links.
pub struct LinkComposer {
    pub public_url: Option<Url>,
    pub key: AckKey,
    pub ttl: Duration,
    pub alertmanager_url: Option<Url>,
    /// The targets of the configuration this composer belongs to.
    pub targets: BTreeSet<TargetName>,
}

impl Composer for LinkComposer {
    fn configured(&self, target: &TargetName) -> bool {
        self.targets.contains(target)
    }

    fn compose(
        &self,
        incident: &StoredIncident,
        target: &TargetName,
        step: usize,
        kind: NotificationKind,
        now: Timestamp,
    ) -> Notification {
        let ack_url = (kind == NotificationKind::Firing)
            .then_some(self.public_url.as_ref())
            .flatten()
            .and_then(|base| {
                let token = self.key.sign(incident.id, now.plus(self.ttl));
                base.join(&format!("ack/{token}")).ok()
            })
            .map(String::from);
        // Alertmanager's own external URL (what browsers reach) first; the relay's
        // `alertmanager_url` may be an internal address.
        let alertmanager = incident
            .group
            .external_url
            .clone()
            .filter(|u| !u.is_empty())
            .or_else(|| self.alertmanager_url.as_ref().map(|u| u.to_string()))
            .map(|u| u.trim_end_matches('/').to_owned());
        let silence_url = alertmanager.map(|base| {
            let labels = if incident.group.group_labels.is_empty() {
                &incident.group.common_labels
            } else {
                &incident.group.group_labels
            };
            let filter = labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", v.replace('"', "\\\"")))
                .collect::<Vec<_>>()
                .join(",");
            let encoded: String =
                url::form_urlencoded::byte_serialize(format!("{{{filter}}}").as_bytes()).collect();
            format!(
                "{base}/#/silences/new?filter={}",
                encoded.replace('+', "%20")
            )
        });
        Notification {
            incident_id: incident.id,
            policy: incident.machine.plan.policy.clone(),
            target: target.clone(),
            kind,
            step,
            group: incident.group.clone(),
            sequence_id: format!("relay-{}", incident.id),
            incident_started_at: incident.machine.started_at,
            ack_url,
            silence_url,
            created_at: now,
        }
    }
}

/// Wakes sleeping drivers when there may be new work. `Notify::notify_one` keeps a permit,
/// so a wake sent while a driver is busy is not lost.
#[derive(Clone, Default)]
pub struct Wakers {
    pub scheduler: Arc<Notify>,
    delivery: Arc<std::sync::RwLock<Vec<Arc<Notify>>>>,
}

impl Wakers {
    /// A wake handle for one more delivery worker.
    pub fn register_delivery(&self) -> Arc<Notify> {
        let notify = Arc::new(Notify::new());
        self.delivery
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(Arc::clone(&notify));
        notify
    }

    /// Forgets the wake handles of delivery workers that stopped (after a reload).
    pub fn clear_delivery(&self) {
        self.delivery
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    pub fn wake_delivery(&self) {
        for notify in self
            .delivery
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            notify.notify_one();
        }
    }

    /// After an event was stored: its notifications and its next step.
    pub fn wake_all(&self) {
        self.scheduler.notify_one();
        self.wake_delivery();
    }
}

/// What one delivery step did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Delivered,
    /// Failed, will be retried at the given time.
    Retrying(Timestamp),
    DeadLettered,
    /// The head of the queue is not due before this time.
    Deferred(Timestamp),
    Empty,
}

/// Everything a delivery worker needs.
pub struct Delivery {
    pub store: Store,
    pub sink: Arc<dyn Sink>,
    pub target: TargetName,
    pub templates: Arc<Templates>,
    pub backoff: Backoff,
    pub timeout: Duration,
    pub give_up_after: Duration,
    pub metrics: RelayMetrics,
}

/// Tries the oldest pending notification of the target once.
pub async fn deliver_next(d: &Delivery, now: Timestamp) -> Result<Step, StoreError> {
    let target = d.target.clone();
    let Some(item) = d
        .store
        .run_delivery(move |c| store::head(c, &target))
        .await?
    else {
        return Ok(Step::Empty);
    };
    if item.next_try > now {
        return Ok(Step::Deferred(item.next_try));
    }
    let label = d.target.as_str();
    let text = d.templates.render(&item.notification);
    let started = std::time::Instant::now();
    let outcome =
        match tokio::time::timeout(d.timeout, d.sink.send(&item.notification, &text)).await {
            Ok(outcome) => outcome,
            Err(_) => Outcome::Retry {
                after: None,
                reason: format!("no answer within {}", humantime::format_duration(d.timeout)),
            },
        };
    d.metrics
        .delivery_seconds
        .with_label_values(&[label])
        .observe(started.elapsed().as_secs_f64());
    let attempts = item.attempts + 1;
    let id = item.id;
    let n = &item.notification;
    let step = match outcome {
        Outcome::Delivered => {
            d.store
                .run_delivery(move |c| store::mark_delivered(c, id, now))
                .await?;
            d.metrics
                .notifications
                .with_label_values(&[label, "delivered"])
                .inc();
            tracing::info!(target = label, incident = n.incident_id, kind = ?n.kind, attempts, "notification delivered");
            Step::Delivered
        }
        Outcome::Retry { after, reason } => {
            let next = now.plus(after.unwrap_or_else(|| d.backoff.delay(attempts)));
            let age = Duration::from_millis(u64::try_from(now.0 - item.created_at.0).unwrap_or(0));
            if age >= d.give_up_after {
                let error = format!(
                    "gave up after {attempts} attempts over {}: {reason}",
                    humantime::format_duration(d.give_up_after)
                );
                dead_letter(d, id, now, &error, n).await?;
                Step::DeadLettered
            } else {
                let error = reason.clone();
                d.store
                    .run_delivery(move |c| store::mark_retry(c, id, next, &error))
                    .await?;
                d.metrics
                    .notifications
                    .with_label_values(&[label, "retried"])
                    .inc();
                tracing::warn!(target = label, incident = n.incident_id, attempts, retry_in_ms = next.0 - now.0, error = %reason, "delivery failed; will retry");
                Step::Retrying(next)
            }
        }
        Outcome::Permanent { reason } => {
            dead_letter(d, id, now, &reason, n).await?;
            Step::DeadLettered
        }
    };
    Ok(step)
}

async fn dead_letter(
    d: &Delivery,
    id: i64,
    now: Timestamp,
    reason: &str,
    n: &Notification,
) -> Result<(), StoreError> {
    let error = reason.to_owned();
    d.store
        .run_delivery(move |c| store::mark_dead(c, id, now, &error))
        .await?;
    let label = d.target.as_str();
    d.metrics
        .notifications
        .with_label_values(&[label, "dead_letter"])
        .inc();
    d.metrics.dead_letters.with_label_values(&[label]).inc();
    tracing::error!(target = label, incident = n.incident_id, kind = ?n.kind, error = %reason, "notification dead-lettered: it will not be retried");
    Ok(())
}

/// Drains the target's outbox until `stop`; finishes the attempt in progress first.
pub async fn run_delivery(d: Delivery, wake: Arc<Notify>, mut stop: watch::Receiver<bool>) {
    loop {
        if *stop.borrow() {
            return;
        }
        let wait = match deliver_next(&d, Timestamp::now()).await {
            Ok(Step::Delivered | Step::Retrying(_) | Step::DeadLettered) => continue,
            Ok(Step::Deferred(until)) => {
                Duration::from_millis(u64::try_from(until.0 - Timestamp::now().0).unwrap_or(0))
            }
            Ok(Step::Empty) => Duration::from_secs(5),
            Err(error) => {
                tracing::error!(target = %d.target, %error, "outbox unavailable; retrying in 1s");
                Duration::from_secs(1)
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = wake.notified() => {}
            _ = stop.changed() => return,
        }
    }
}

/// Asks Alertmanager about every incident due now and stops those whose alerts are silenced
/// or inhibited. Unreachable Alertmanager: escalate anyway (fail safe toward paging).
async fn stop_silenced(relay: &Relay, runtime: &crate::runtime::Runtime, now: Timestamp) {
    let Some(alertmanager) = &runtime.alertmanager else {
        return;
    };
    let due = match relay.store.run(move |c| store::due(c, now)).await {
        Ok(due) => due,
        Err(error) => {
            tracing::error!(%error, "cannot read due incidents");
            return;
        }
    };
    for incident in due {
        match alertmanager.still_paging(&incident.group).await {
            Ok(true) => relay
                .metrics
                .silence_checks
                .with_label_values(&["paging"])
                .inc(),
            Ok(false) => {
                relay
                    .metrics
                    .silence_checks
                    .with_label_values(&["silenced"])
                    .inc();
                let composer = Arc::clone(&runtime.composer);
                let id = incident.id;
                match relay
                    .store
                    .run(move |c| {
                        store::stop(
                            c,
                            id,
                            crate::escalation::Event::Silenced,
                            None,
                            composer.as_ref(),
                            now,
                        )
                    })
                    .await
                {
                    Ok((_, effects)) => {
                        relay.metrics.record_effects(&effects);
                        tracing::info!(incident = id, group = %incident.group_key, "escalation stopped: Alertmanager reports the alerts silenced, inhibited or gone");
                    }
                    Err(error) => {
                        tracing::error!(%error, incident = id, "cannot record the silence")
                    }
                }
            }
            Err(error) => {
                relay
                    .metrics
                    .silence_checks
                    .with_label_values(&["error"])
                    .inc();
                tracing::warn!(incident = incident.id, %error, "cannot ask Alertmanager about silences; escalating anyway");
                // One failure per round is enough: the others would wait for the same timeout.
                return;
            }
        }
    }
}

/// Fires due escalation steps until `stop`, sleeping until the next one is due.
pub async fn run_scheduler(relay: Arc<Relay>, mut stop: watch::Receiver<bool>) {
    loop {
        if *stop.borrow() {
            return;
        }
        let runtime = relay.runtime();
        let now = Timestamp::now();
        stop_silenced(&relay, &runtime, now).await;
        let composer = Arc::clone(&runtime.composer);
        drop(runtime);
        let wait = match relay
            .store
            .run(move |conn| {
                let effects = store::fire_due(conn, composer.as_ref(), now)?;
                let next = store::next_due(conn)?;
                let counts = store::counts(conn)?;
                Ok((effects, next, counts))
            })
            .await
        {
            Ok((effects, next, (pending, open))) => {
                relay.metrics.record_effects(&effects);
                relay.metrics.outbox_depth.set(pending);
                relay.metrics.incidents_open.set(open);
                if effects.queued > 0 {
                    relay.wakers.wake_delivery();
                }
                // Wake at least every second to keep the gauges fresh.
                let until_next = next.map_or(1000, |t| (t.0 - Timestamp::now().0).clamp(0, 1000));
                Duration::from_millis(u64::try_from(until_next).unwrap_or(0))
            }
            Err(error) => {
                tracing::error!(%error, "cannot read due escalation steps; retrying in 1s");
                Duration::from_secs(1)
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = relay.wakers.scheduler.notified() => {}
            _ = stop.changed() => return,
        }
    }
}
