//! Use cases of delivery: send the oldest pending notification of a target and record the
//! outcome ([`Relay::deliver_next`], which tests drive step by step), and dead-letter what
//! waits for a target the policy file no longer has.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::Relay;
use crate::domain::{Notification, Rendered, TargetName, Timestamp};
use crate::engine::{events, EventKind, NewEvent, UNCONFIGURED};
use crate::sinks::{Backoff, Outcome, Sink};
use crate::store::{
    self, BadRow, Claim, Finish, Lease, Mode, OutboxItem, StoreError, StoreHandle, LEASE,
    RENEW_EVERY,
};
use crate::templates::Templates;

/// How soon to ask again for a target that another relay is delivering.
const CLAIM_RETRY: Duration = Duration::from_secs(1);
/// A send in progress is abandoned this long before its lease would run out by this relay's
/// own reckoning, if the lease could not be renewed meanwhile (the database is unreachable):
/// another relay may take the target over from then.
const LEASE_MARGIN: Duration = Duration::from_secs(1);

/// What one delivery step did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Delivered,
    /// Failed, will be retried at the given time.
    Retrying(Timestamp),
    DeadLettered,
    /// The head of the queue is not due before this time (or another relay delivers it).
    Deferred(Timestamp),
    Empty,
}

/// One target's delivery settings, from the runtime it was started with.
#[derive(Clone)]
pub struct Worker {
    pub target: TargetName,
    pub sink: Arc<dyn Sink>,
    pub templates: Arc<Templates>,
    pub backoff: Backoff,
    pub timeout: Duration,
    pub give_up_after: Duration,
    /// An attempt whose outcome the store could not record (a full disk after the vendor
    /// took the page): kept here and recorded first, so the page is not sent again.
    unrecorded: Arc<Mutex<Option<Unrecorded>>>,
}

#[derive(Debug, Clone)]
struct Unrecorded {
    id: i64,
    finish: Finish,
    /// The incident's timeline entry for it, written with it.
    event: Option<NewEvent>,
    /// The lease it was sent under: recorded only if it is still this relay's.
    lease: Option<Lease>,
    /// Failed tries to record it, and when to try again.
    failures: u32,
    next: Timestamp,
}

/// Why an attempt under a lease was abandoned.
enum Lost {
    /// Another relay holds the target now.
    TakenOver,
    /// The lease could not be renewed before it would run out (the database did not answer).
    Unrenewed(String),
}

impl Relay {
    /// One worker per target of the current runtime.
    pub fn workers(&self) -> Vec<Worker> {
        let runtime = self.runtime();
        let delivery = &runtime.config.delivery;
        runtime
            .sinks
            .iter()
            .map(|(target, sink)| Worker {
                target: target.clone(),
                sink: Arc::clone(sink),
                templates: Arc::clone(&runtime.templates),
                backoff: Backoff::new(delivery.initial_backoff, delivery.max_backoff),
                timeout: delivery.timeout,
                give_up_after: delivery.give_up_after,
                unrecorded: Arc::default(),
            })
            .collect()
    }

    /// Tries the oldest pending notification of the worker's target once, and records how it
    /// went: delivered, retried later (the vendor's `Retry-After`, else backoff), or
    /// dead-lettered (refused for good, or older than `give_up_after`).
    ///
    /// Relays sharing one store deliver a target one at a time, under a lease
    /// ([`Store::claim_target`]) taken for this call and released at its end, so a relay that
    /// stops or changes its targets holds nothing. The lease is checked (and renewed) just
    /// before the send, renewed while the vendor answers, and held while the outcome is
    /// recorded: a relay that stalled past its lease sends nothing more and records nothing;
    /// the relay that took over sends the page again with the same idempotency key.
    ///
    /// [`Store::claim_target`]: crate::store::Store::claim_target
    pub async fn deliver_next(&self, w: &Worker, now: Timestamp) -> Result<Step, StoreError> {
        if let Some(step) = self.record_pending(w, now).await {
            return Ok(step);
        }
        let target = w.target.clone();
        let (claim, head) = self
            .store
            .blocking(move |store| {
                let claim = store.claim_target(&target, now)?;
                let lease = match &claim {
                    Claim::Theirs => return Ok((claim, None)),
                    Claim::Ours(lease) => Some(lease.clone()),
                    Claim::Alone => None,
                };
                let head = store::run(store, Mode::Read, |tx| tx.outbox_head(&target));
                if let (Err(_), Some(lease)) = (&head, &lease) {
                    // The read's error is the one to report.
                    let _ = store.release_target(lease);
                }
                Ok((claim, Some(head?)))
            })
            .await?;
        let lease = match claim {
            Claim::Theirs => return Ok(Step::Deferred(now.plus(CLAIM_RETRY))),
            Claim::Ours(lease) => Some(lease),
            Claim::Alone => None,
        };
        if let Some(from) = lease.as_ref().and_then(|l| l.taken_from.as_deref()) {
            self.metrics
                .lease_takeovers
                .with_label_values(&[w.target.as_str()])
                .inc();
            tracing::warn!(target = %w.target, from, "took the target over from a relay whose lease ran out (it died, hung or lost the database): its page in flight, if any, is sent again with the same key");
        }
        let mut claimed = Claimed {
            store: self.store.clone(),
            lease: lease.clone(),
        };
        let Some(head) = head else {
            claimed.release().await;
            return Ok(Step::Empty);
        };
        let step = self.deliver_head(w, head, lease, now).await;
        claimed.release().await;
        step
    }

    /// Tries `head`, the oldest pending notification of the worker's target, if it is due.
    async fn deliver_head(
        &self,
        w: &Worker,
        head: Option<Result<OutboxItem, BadRow>>,
        lease: Option<Lease>,
        now: Timestamp,
    ) -> Result<Step, StoreError> {
        let item = match head {
            None => return Ok(Step::Empty),
            Some(Ok(item)) => item,
            // An unreadable row would block its target's queue for good.
            Some(Err(bad)) => {
                let row = bad.clone();
                let held = lease.clone();
                let quarantined = self
                    .store
                    .run(Mode::Durable, move |tx| {
                        if let Some(lease) = &held {
                            if !tx.hold(lease, now)? {
                                return Ok(false);
                            }
                        }
                        tx.quarantine(&row, now)?;
                        Ok(true)
                    })
                    .await?;
                if !quarantined {
                    return Ok(self.lost(w, Lost::TakenOver, now));
                }
                self.quarantined(&[bad]);
                self.metrics
                    .dead_letters
                    .with_label_values(&[w.target.as_str()])
                    .inc();
                return Ok(Step::DeadLettered);
            }
        };
        if item.next_try > now {
            return Ok(Step::Deferred(item.next_try));
        }
        let label = w.target.as_str();
        let n = &item.notification;
        let text = w.templates.render(n);
        let started = Instant::now();
        let outcome = match self.send(w, n, &text, lease.clone(), now).await {
            Ok(outcome) => outcome,
            Err(lost) => return Ok(self.lost(w, lost, now)),
        };
        self.metrics
            .delivery_seconds
            .with_label_values(&[label])
            .observe(started.elapsed().as_secs_f64());
        let (finish, step) = self.finish(w, &item, outcome, now);
        let event = delivery_event(&item, &finish, started.elapsed(), now);
        let id = item.id;
        let (recorded, noted) = (finish.clone(), event.clone());
        let held = lease.clone();
        let written = self
            .store
            .run(Mode::Relaxed, move |tx| {
                if let Some(lease) = &held {
                    if !tx.hold(lease, now)? {
                        return Ok(false);
                    }
                }
                tx.finish(id, &recorded, now)?;
                if let Some(event) = &noted {
                    tx.insert_event(event, now)?;
                }
                Ok(true)
            })
            .await;
        match written {
            Ok(true) => {}
            Ok(false) => return Ok(self.lost(w, Lost::TakenOver, now)),
            Err(error) => {
                self.metrics.store_error(&error);
                tracing::error!(target = label, incident = n.incident_id, %error, "cannot record the delivery outcome; kept in memory, not sent again");
                let next = now.plus(w.backoff.ceiling(1));
                *lock(&w.unrecorded) = Some(Unrecorded {
                    id,
                    finish,
                    event,
                    lease,
                    failures: 1,
                    next,
                });
                return Ok(Step::Deferred(next));
            }
        }
        self.count_outcome(label, n, &finish, now);
        Ok(step)
    }

    /// Sends `n` within the worker's timeout. Under a lease: only if the lease is still this
    /// relay's just before (fencing), renewing it while the vendor answers, and abandoning
    /// the send if it can no longer be renewed in time.
    async fn send(
        &self,
        w: &Worker,
        n: &Notification,
        text: &Rendered,
        lease: Option<Lease>,
        now: Timestamp,
    ) -> Result<Outcome, Lost> {
        let timeout = w.timeout;
        let send = async move {
            match tokio::time::timeout(timeout, w.sink.send(n, text)).await {
                Ok(outcome) => outcome,
                Err(_) => Outcome::Retry {
                    after: None,
                    reason: format!("no answer within {}", humantime::format_duration(timeout)),
                },
            }
        };
        let Some(lease) = lease else {
            return Ok(send.await);
        };
        let asked = Instant::now();
        let lease = match self.renew(&lease, now).await {
            Ok(Some(lease)) => lease,
            Ok(None) => return Err(Lost::TakenOver),
            Err(error) => return Err(Lost::Unrenewed(error.to_string())),
        };
        tokio::select! {
            biased;
            outcome = send => Ok(outcome),
            lost = self.keep(lease, now, asked) => Err(lost),
        }
    }

    /// Renews `lease` every [`RENEW_EVERY`] while a send goes on; returns only when the lease
    /// is lost, or could not be renewed before it runs out by this relay's own reckoning
    /// (from `confirmed`, when the last successful renewal was asked).
    async fn keep(&self, mut lease: Lease, now: Timestamp, mut confirmed: Instant) -> Lost {
        let started = Instant::now();
        loop {
            let deadline = confirmed + LEASE.saturating_sub(LEASE_MARGIN);
            tokio::time::sleep(RENEW_EVERY).await;
            let asked = Instant::now();
            let at = now.plus(started.elapsed());
            let renewed = tokio::time::timeout_at(deadline.into(), self.renew(&lease, at)).await;
            match renewed {
                Ok(Ok(Some(renewed))) => {
                    lease = renewed;
                    confirmed = asked;
                }
                Ok(Ok(None)) => return Lost::TakenOver,
                Ok(Err(error)) if Instant::now() >= deadline => {
                    return Lost::Unrenewed(error.to_string())
                }
                Ok(Err(error)) => {
                    tracing::warn!(target = %lease.target, %error, "cannot renew the delivery lease; trying again");
                }
                Err(_) => {
                    return Lost::Unrenewed(format!(
                        "no renewal within {} ms",
                        (LEASE - LEASE_MARGIN).as_millis()
                    ))
                }
            }
        }
    }

    async fn renew(&self, lease: &Lease, now: Timestamp) -> Result<Option<Lease>, StoreError> {
        let lease = lease.clone();
        let renewed = self
            .store
            .blocking(move |store| store.renew(&lease, now))
            .await;
        if let Err(error) = &renewed {
            self.metrics.store_error(error);
        }
        renewed
    }

    /// An attempt abandoned because the lease is gone: counted and logged; the queue is
    /// looked at again soon (another relay has it, or this one claims it afresh).
    fn lost(&self, w: &Worker, lost: Lost, now: Timestamp) -> Step {
        self.metrics
            .leases_lost
            .with_label_values(&[w.target.as_str()])
            .inc();
        match lost {
            Lost::TakenOver => {
                tracing::warn!(target = %w.target, "delivery lease lost to another relay (this one stalled past it): nothing sent or recorded under it; the other relay delivers the queue")
            }
            Lost::Unrenewed(error) => {
                tracing::error!(target = %w.target, %error, "delivery lease could not be renewed in time: attempt abandoned, nothing recorded; another relay may take the target over")
            }
        }
        Step::Deferred(now.plus(CLAIM_RETRY))
    }

    /// How an attempt ended, as it is to be recorded.
    fn finish(
        &self,
        w: &Worker,
        item: &OutboxItem,
        outcome: Outcome,
        now: Timestamp,
    ) -> (Finish, Step) {
        let attempts = item.attempts + 1;
        match outcome {
            Outcome::Delivered => (Finish::Delivered, Step::Delivered),
            Outcome::Retry { after, reason } => {
                let age =
                    Duration::from_millis(u64::try_from(now.0 - item.created_at.0).unwrap_or(0));
                if age >= w.give_up_after {
                    let error = format!(
                        "gave up after {attempts} attempts over {}: {reason}",
                        humantime::format_duration(w.give_up_after)
                    );
                    (Finish::Dead { error }, Step::DeadLettered)
                } else {
                    let delay = after.unwrap_or_else(|| {
                        let mut rng = self.rng.lock().unwrap_or_else(|e| e.into_inner());
                        w.backoff.delay(attempts, &mut *rng)
                    });
                    let next_try = now.plus(delay);
                    (
                        Finish::Retry {
                            next_try,
                            error: reason,
                        },
                        Step::Retrying(next_try),
                    )
                }
            }
            Outcome::Permanent { reason } => (Finish::Dead { error: reason }, Step::DeadLettered),
        }
    }

    fn count_outcome(&self, label: &str, n: &Notification, finish: &Finish, now: Timestamp) {
        let counter = |outcome: &str| {
            self.metrics
                .notifications
                .with_label_values(&[label, outcome])
                .inc()
        };
        match finish {
            Finish::Delivered => {
                counter("delivered");
                tracing::info!(target = label, incident = n.incident_id, kind = ?n.kind, "notification delivered");
            }
            Finish::Retry { next_try, error } => {
                counter("retried");
                tracing::warn!(target = label, incident = n.incident_id, retry_in_ms = next_try.0 - now.0, %error, "delivery failed; will retry");
            }
            Finish::Dead { error } => {
                counter("dead_letter");
                self.metrics.dead_letters.with_label_values(&[label]).inc();
                tracing::error!(target = label, incident = n.incident_id, kind = ?n.kind, %error, "notification dead-lettered: it will not be retried");
            }
        }
    }

    /// Records an outcome the store refused earlier; `Some(step)` while it still cannot (the
    /// queue waits, backing off, instead of sending the same page again every second).
    async fn record_pending(&self, w: &Worker, now: Timestamp) -> Option<Step> {
        let pending = lock(&w.unrecorded).clone()?;
        if pending.next > now {
            return Some(Step::Deferred(pending.next));
        }
        let (id, finish, lease) = (pending.id, pending.finish.clone(), pending.lease.clone());
        let event = pending.event.clone();
        let written = self
            .store
            .run(Mode::Relaxed, move |tx| {
                if let Some(lease) = &lease {
                    if !tx.hold(lease, now)? {
                        return Ok(false);
                    }
                }
                tx.finish(id, &finish, now)?;
                if let Some(event) = &event {
                    tx.insert_event(event, now)?;
                }
                Ok(true)
            })
            .await;
        match written {
            Ok(true) => {
                tracing::info!(target = %w.target, "delivery outcome recorded after the store recovered");
                *lock(&w.unrecorded) = None;
                None
            }
            Ok(false) => {
                // Another relay took the target over meanwhile and sends the page again
                // with the same key; this outcome is no longer this relay's to record.
                *lock(&w.unrecorded) = None;
                Some(self.lost(w, Lost::TakenOver, now))
            }
            Err(error) => {
                self.metrics.store_error(&error);
                let failures = pending.failures + 1;
                let next = now.plus(w.backoff.ceiling(failures));
                tracing::warn!(target = %w.target, %error, retry_in_ms = next.0 - now.0, "still cannot record a delivery outcome");
                *lock(&w.unrecorded) = Some(Unrecorded {
                    failures,
                    next,
                    ..pending
                });
                Some(Step::Deferred(next))
            }
        }
    }

    /// Dead-letters pending notifications of targets the configuration no longer has (at
    /// start and after each reload), so that they neither wait forever nor count as a stuck
    /// outbox. Not fatal when it fails: they are tried again at the next reload or start.
    pub async fn forget_removed_targets(&self, now: Timestamp) {
        let known = self.runtime().configured.clone();
        let forgotten = self
            .store
            .run(Mode::Durable, move |tx| {
                let mut forgotten = Vec::new();
                for target in tx.pending_targets()? {
                    if !known.contains(&target) {
                        let incidents = tx.dead_letter_target(&target, UNCONFIGURED, now)?;
                        for incident in incidents.iter().filter(|i| **i != 0) {
                            let event =
                                NewEvent::new(*incident, EventKind::DeadLettered, UNCONFIGURED)
                                    .to(&target);
                            tx.insert_event(&event, now)?;
                        }
                        forgotten.push((target, incidents.len()));
                    }
                }
                Ok(forgotten)
            })
            .await;
        match forgotten {
            Ok(forgotten) => {
                for (target, count) in forgotten {
                    self.metrics
                        .dead_letters
                        .with_label_values(&[target.as_str()])
                        .inc_by(count as u64);
                    tracing::warn!(%target, count, "pending notifications dead-lettered: the target is no longer configured");
                }
            }
            Err(error) => {
                tracing::error!(%error, "cannot dead-letter notifications of removed targets")
            }
        }
    }
}

/// The timeline's entry for a delivery attempt's outcome (none for a handoff notice, which
/// belongs to no incident, nor for most retries of a long outage: [`events::retry_is_noted`]).
fn delivery_event(
    item: &OutboxItem,
    finish: &Finish,
    took: Duration,
    now: Timestamp,
) -> Option<NewEvent> {
    let n = &item.notification;
    if n.incident_id == 0 {
        return None;
    }
    let attempt = item.attempts + 1;
    let detail = |rest: String| events::delivery_detail(n.kind, &rest);
    let (kind, detail) = match finish {
        Finish::Delivered => (
            EventKind::Delivered,
            detail(format!("attempt {attempt}, {} ms", took.as_millis())),
        ),
        Finish::Retry { next_try, error } => {
            if !events::retry_is_noted(attempt) {
                return None;
            }
            let wait = Duration::from_millis(u64::try_from(next_try.0 - now.0).unwrap_or(0));
            (
                EventKind::Retrying,
                detail(format!(
                    "attempt {attempt} failed ({error}); next in {}",
                    humantime::format_duration(wait)
                )),
            )
        }
        Finish::Dead { error } => (
            EventKind::DeadLettered,
            detail(format!("attempt {attempt}: {error}")),
        ),
    };
    Some(NewEvent::new(n.incident_id, kind, detail).to(&n.target))
}

/// A target claimed for one delivery step: released at its end, and also if the step is
/// dropped halfway (a lease left held would keep every relay from the target until it runs
/// out).
struct Claimed {
    store: StoreHandle,
    lease: Option<Lease>,
}

impl Claimed {
    async fn release(&mut self) {
        let Some(lease) = self.lease.take() else {
            return;
        };
        let shown = lease.target.clone();
        let released = self
            .store
            .blocking(move |store| store.release_target(&lease))
            .await;
        if let Err(error) = released {
            tracing::warn!(target = %shown, %error, "cannot release the delivery lease (it runs out by itself)");
        }
    }
}

impl Drop for Claimed {
    fn drop(&mut self) {
        let Some(lease) = self.lease.take() else {
            return;
        };
        let store = self.store.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn_blocking(move || store.store().release_target(&lease));
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
