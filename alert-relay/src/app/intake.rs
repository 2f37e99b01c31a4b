//! Use cases that take alerts in: a webhook from Alertmanager, and the relay's own
//! `HeartbeatMissing` when heartbeats stop. Both go through the same path: choose the
//! policy, then the engine's `webhook` under group commit — one writer thread stores every
//! webhook queued meanwhile in a single transaction (one fsync for the batch), each in its
//! own savepoint. A webhook is answered only after its batch committed.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::heartbeat::{missing_alert, Decision, MISSING_ALERT};
use super::{inputs, Relay};
use crate::domain::{AlertGroup, AlertStatus, PolicyName, Timestamp};
use crate::engine::{self, Effects, Fresh, IngestOutcome, Plan};
use crate::store::{self, Store, StoreError, Tx};

/// Webhooks stored per transaction at most.
const MAX_BATCH: usize = 512;
/// Webhooks waiting for the writer at most; beyond, intake waits (backpressure).
const QUEUE: usize = 8192;

/// What a webhook did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ingested {
    /// `None`: no policy matches the group's labels; nothing to escalate.
    pub outcome: Option<IngestOutcome>,
    pub policy: Option<PolicyName>,
    pub queued: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("no policy named `{name}` (defined: {known})")]
    UnknownPolicy { name: String, known: String },
    /// Not stored: Alertmanager must retry.
    #[error(transparent)]
    Store(#[from] StoreError),
}

type Unit = Box<dyn FnMut(&mut dyn Tx) -> Result<(IngestOutcome, Effects), StoreError> + Send>;

struct Job {
    /// [`store::group_lock_key`] of the webhook's group: a batch runs in this order.
    order: i64,
    work: Unit,
    reply: oneshot::Sender<Result<(IngestOutcome, Effects), String>>,
}

/// The group-commit writer: a thread that ends when its last handle is dropped.
pub(super) struct IngestWriter {
    queue: Option<mpsc::Sender<Job>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for IngestWriter {
    /// Closes the queue and waits for the writer to finish its batch, so that the store (and
    /// the data directory's lock) is released when the relay is.
    fn drop(&mut self) {
        self.queue.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl IngestWriter {
    /// `timeouts`: `relay_store_timeouts_total`, counted for each webhook a timeout failed.
    pub(super) fn start(
        store: Arc<dyn Store>,
        timeouts: prometheus::IntCounterVec,
    ) -> std::io::Result<Self> {
        let (queue, jobs) = mpsc::channel(QUEUE);
        let thread = std::thread::Builder::new()
            .name("relay-writer".into())
            .spawn(move || write_loop(store.as_ref(), jobs, &timeouts))?;
        Ok(Self {
            queue: Some(queue),
            thread: Some(thread),
        })
    }

    async fn submit(&self, order: i64, work: Unit) -> Result<(IngestOutcome, Effects), StoreError> {
        let (reply, answer) = oneshot::channel();
        let stopped = || StoreError::Batch("the writer stopped".into());
        self.queue
            .as_ref()
            .ok_or_else(stopped)?
            .send(Job { order, work, reply })
            .await
            .map_err(|_| stopped())?;
        answer
            .await
            .map_err(|_| stopped())?
            .map_err(StoreError::Batch)
    }
}

fn write_loop(
    store: &dyn Store,
    mut jobs: mpsc::Receiver<Job>,
    timeouts: &prometheus::IntCounterVec,
) {
    let count = |error: &StoreError, n: usize| {
        if let Some(kind) = error.timeout_kind() {
            timeouts.with_label_values(&[kind]).inc_by(n as u64);
        }
    };
    while let Some(first) = jobs.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        // Group locks in one order in every relay's batches: none waits for another in a
        // circle. Stable: webhooks of one group keep their order.
        batch.sort_by_key(|job| job.order);
        let mut results: Vec<Option<(IngestOutcome, Effects)>> = vec![None; batch.len()];
        let committed = {
            let mut units: Vec<Box<store::Work<'_>>> = batch
                .iter_mut()
                .zip(results.iter_mut())
                .map(|(job, result)| {
                    Box::new(move |tx: &mut dyn Tx| {
                        *result = Some((job.work)(tx)?);
                        Ok(())
                    }) as Box<store::Work<'_>>
                })
                .collect();
            let mut refs: Vec<&mut store::Work<'_>> = units.iter_mut().map(|u| &mut **u).collect();
            store.transact_each(&mut refs)
        };
        match committed {
            Ok(each) => {
                for ((job, status), result) in batch.into_iter().zip(each).zip(results) {
                    let answer = match (status, result) {
                        (Ok(()), Some(done)) => Ok(done),
                        (Err(error), _) => {
                            count(&error, 1);
                            Err(error.to_string())
                        }
                        (Ok(()), None) => Err("the webhook's work did not run".into()),
                    };
                    let _ = job.reply.send(answer);
                }
            }
            Err(error) => {
                count(&error, batch.len());
                let message = error.to_string();
                for job in batch {
                    let _ = job.reply.send(Err(message.clone()));
                }
            }
        }
    }
}

impl Relay {
    /// A webhook from Alertmanager, for the named policy or the first whose matchers match.
    pub async fn ingest(
        &self,
        policy: Option<&str>,
        group: AlertGroup,
        now: Timestamp,
    ) -> Result<Ingested, IngestError> {
        let runtime = self.runtime();
        let chosen = match policy {
            Some(name) => runtime.config.policy_named(name).ok_or_else(|| {
                let known: Vec<&str> = runtime
                    .config
                    .policies
                    .iter()
                    .map(|p| p.name.as_str())
                    .collect();
                IngestError::UnknownPolicy {
                    name: name.to_owned(),
                    known: known.join(", "),
                }
            })?,
            None => match runtime.config.policy_for(group.match_labels()) {
                Some(p) => p,
                None => {
                    return Ok(Ingested {
                        outcome: None,
                        policy: None,
                        queued: 0,
                    })
                }
            },
        };
        if chosen.heartbeat_missing_after.is_some() && group.status == AlertStatus::Firing {
            self.heartbeats.seen(&chosen.name, &group, now);
            self.metrics
                .heartbeat_last_seen
                .with_label_values(&[chosen.name.as_str()])
                .set(now.0 as f64 / 1000.0);
        }
        let (outcome, effects) = self.store_group(chosen.plan.clone(), group, now).await?;
        Ok(Ingested {
            outcome: Some(outcome),
            policy: Some(chosen.name.clone()),
            queued: effects.queued,
        })
    }

    /// Applies `group` to `plan`'s policy through the engine, under group commit.
    async fn store_group(
        &self,
        plan: Plan,
        group: AlertGroup,
        now: Timestamp,
    ) -> Result<(IngestOutcome, Effects), StoreError> {
        let runtime = self.runtime();
        let key = self.new_key();
        let order = store::group_lock_key(&plan.policy, &group.group_key);
        let work: Unit = Box::new(move |tx| {
            let found = tx.open_incident(&plan.policy, &group.group_key)?;
            // An unreadable open incident would block its group for good: quarantined, and the
            // webhook starts a new incident (paging again rather than never).
            for bad in &found.bad {
                tx.quarantine(bad, now)?;
            }
            let open = found.rows.into_iter().next();
            // An id only for a webhook that starts an incident (a sequence skips none then).
            let id = if engine::starts_incident(open.as_ref(), &group) {
                tx.next_incident_id()?
            } else {
                0
            };
            let fresh = Fresh { id, key };
            let (outcome, t) = engine::webhook(
                open,
                &plan,
                group.clone(),
                fresh,
                &inputs(&runtime, &tx.overrides(now)?, now),
            );
            store::commit(tx, &t, now)?;
            Ok((outcome, t.effects))
        });
        let (outcome, effects) = self.writer.submit(order, work).await?;
        self.apply_effects(&effects);
        Ok((outcome, effects))
    }

    /// The dead man's switch: raises `HeartbeatMissing` for each heartbeat policy silent for
    /// longer than its `missing_after`, and resolves it when heartbeats are back.
    pub async fn check_heartbeats(&self, now: Timestamp) {
        let runtime = self.runtime();
        let watched: Vec<(PolicyName, Duration)> = runtime
            .config
            .policies
            .iter()
            .filter_map(|p| Some((p.name.clone(), p.heartbeat_missing_after?)))
            .collect();
        for (policy, missing_after) in watched {
            let (firing, runbook_url) = match self.heartbeats.decide(&policy, missing_after, now) {
                Decision::Nothing => continue,
                Decision::Raise { runbook_url } => (true, runbook_url),
                Decision::Resolve => (false, None),
            };
            let group = missing_alert(&policy, missing_after, firing, runbook_url.as_deref(), now);
            let Some(chosen) = runtime.config.policy_for(group.match_labels()) else {
                tracing::error!(heartbeat = %policy, "no policy matches the {MISSING_ALERT} alert (severity=critical); nobody can be told that heartbeats stopped");
                self.heartbeats.settle(&policy, firing);
                continue;
            };
            match self.store_group(chosen.plan.clone(), group, now).await {
                Ok((outcome, _)) => {
                    self.heartbeats.settle(&policy, firing);
                    if firing {
                        tracing::error!(heartbeat = %policy, missing_after = %humantime::format_duration(missing_after), policy = %chosen.name, ?outcome, "heartbeats stopped: raised {MISSING_ALERT}");
                    } else {
                        tracing::info!(heartbeat = %policy, ?outcome, "heartbeats are back: {MISSING_ALERT} resolved");
                    }
                }
                // Not settled: tried again on the next tick.
                Err(error) => {
                    tracing::error!(%error, heartbeat = %policy, "cannot store {MISSING_ALERT}; retrying")
                }
            }
        }
    }
}
