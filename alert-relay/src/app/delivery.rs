//! Use cases of delivery: send the oldest pending notification of a target and record the
//! outcome ([`Relay::deliver_next`], which tests drive step by step), and dead-letter what
//! waits for a target the policy file no longer has.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::Relay;
use crate::domain::{TargetName, Timestamp};
use crate::engine::UNCONFIGURED;
use crate::sinks::{Backoff, Outcome, Sink};
use crate::store::{self, BadRow, Claim, Finish, Mode, OutboxItem, StoreError, StoreHandle};
use crate::templates::Templates;

/// How soon to ask again for a target that another relay is delivering.
const CLAIM_RETRY: Duration = Duration::from_secs(1);

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
    /// Failed tries to record it, and when to try again.
    failures: u32,
    next: Timestamp,
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
    /// Relays sharing one store deliver a target one at a time ([`Store::claim_target`]): the
    /// worker claims it for this call and releases it at the end, so a relay that stops or
    /// changes its targets holds nothing.
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
                let claim = store.claim_target(&target)?;
                if claim == Claim::Theirs {
                    return Ok((claim, None));
                }
                let head = store::run(store, Mode::Read, |tx| tx.outbox_head(&target));
                if head.is_err() && claim == Claim::Ours {
                    // The read's error is the one to report.
                    let _ = store.release_target(&target);
                }
                Ok((claim, Some(head?)))
            })
            .await?;
        let Some(head) = head else {
            return Ok(Step::Deferred(now.plus(CLAIM_RETRY)));
        };
        let mut claimed = Claimed {
            store: self.store.clone(),
            target: (claim == Claim::Ours).then(|| w.target.clone()),
        };
        let step = self.deliver_head(w, head, now).await;
        claimed.release().await;
        step
    }

    /// Tries `head`, the oldest pending notification of the worker's target, if it is due.
    async fn deliver_head(
        &self,
        w: &Worker,
        head: Option<Result<OutboxItem, BadRow>>,
        now: Timestamp,
    ) -> Result<Step, StoreError> {
        let item = match head {
            None => return Ok(Step::Empty),
            Some(Ok(item)) => item,
            // An unreadable row would block its target's queue for good.
            Some(Err(bad)) => {
                let row = bad.clone();
                self.store
                    .run(Mode::Durable, move |tx| tx.quarantine(&row, now))
                    .await?;
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
        let started = std::time::Instant::now();
        let outcome = match tokio::time::timeout(w.timeout, w.sink.send(n, &text)).await {
            Ok(outcome) => outcome,
            Err(_) => Outcome::Retry {
                after: None,
                reason: format!("no answer within {}", humantime::format_duration(w.timeout)),
            },
        };
        self.metrics
            .delivery_seconds
            .with_label_values(&[label])
            .observe(started.elapsed().as_secs_f64());
        let attempts = item.attempts + 1;
        let (finish, step) = match outcome {
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
        };
        let id = item.id;
        let recorded = finish.clone();
        if let Err(error) = self
            .store
            .run(Mode::Relaxed, move |tx| tx.finish(id, &recorded, now))
            .await
        {
            tracing::error!(target = label, incident = n.incident_id, %error, "cannot record the delivery outcome; kept in memory, not sent again");
            let next = now.plus(w.backoff.ceiling(1));
            *lock(&w.unrecorded) = Some(Unrecorded {
                id,
                finish,
                failures: 1,
                next,
            });
            return Ok(Step::Deferred(next));
        }
        let counter = |outcome: &str| {
            self.metrics
                .notifications
                .with_label_values(&[label, outcome])
                .inc()
        };
        match &finish {
            Finish::Delivered => {
                counter("delivered");
                tracing::info!(target = label, incident = n.incident_id, kind = ?n.kind, attempts, "notification delivered");
            }
            Finish::Retry { next_try, error } => {
                counter("retried");
                tracing::warn!(target = label, incident = n.incident_id, attempts, retry_in_ms = next_try.0 - now.0, %error, "delivery failed; will retry");
            }
            Finish::Dead { error } => {
                counter("dead_letter");
                self.metrics.dead_letters.with_label_values(&[label]).inc();
                tracing::error!(target = label, incident = n.incident_id, kind = ?n.kind, %error, "notification dead-lettered: it will not be retried");
            }
        }
        Ok(step)
    }

    /// Records an outcome the store refused earlier; `Some(step)` while it still cannot (the
    /// queue waits, backing off, instead of sending the same page again every second).
    async fn record_pending(&self, w: &Worker, now: Timestamp) -> Option<Step> {
        let pending = lock(&w.unrecorded).clone()?;
        if pending.next > now {
            return Some(Step::Deferred(pending.next));
        }
        let (id, finish) = (pending.id, pending.finish.clone());
        match self
            .store
            .run(Mode::Relaxed, move |tx| tx.finish(id, &finish, now))
            .await
        {
            Ok(()) => {
                tracing::info!(target = %w.target, "delivery outcome recorded after the store recovered");
                *lock(&w.unrecorded) = None;
                None
            }
            Err(error) => {
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
                        let count = tx.dead_letter_target(&target, UNCONFIGURED, now)?;
                        forgotten.push((target, count));
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

/// A target claimed for one delivery step: released at its end, and also if the step is
/// dropped halfway (a claim left held would stop every relay delivering the target).
struct Claimed {
    store: StoreHandle,
    target: Option<TargetName>,
}

impl Claimed {
    async fn release(&mut self) {
        let Some(target) = self.target.take() else {
            return;
        };
        let shown = target.clone();
        let released = self
            .store
            .blocking(move |store| store.release_target(&target))
            .await;
        if let Err(error) = released {
            tracing::warn!(target = %shown, %error, "cannot release the delivery claim (the store drops it with its connection)");
        }
    }
}

impl Drop for Claimed {
    fn drop(&mut self) {
        let Some(target) = self.target.take() else {
            return;
        };
        let store = self.store.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn_blocking(move || store.store().release_target(&target));
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
