//! Group commit for webhooks: intake hands each parsed webhook to one writer thread, which
//! stores everything queued meanwhile in a single transaction (one fsync for the batch) and
//! then answers each caller. Under load this turns hundreds of fsyncs into a few; alone, a
//! webhook is its own batch. A webhook is acknowledged only after its batch committed.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::domain::{AlertGroup, Timestamp};
use crate::escalation::Plan;
use crate::store::{self, Composer, Effects, IngestOutcome, Store, StoreError};

/// Webhooks stored per transaction at most.
const MAX_BATCH: usize = 512;
/// Webhooks waiting for the writer at most; beyond, intake waits (backpressure).
const QUEUE: usize = 8192;

type Reply = Result<(IngestOutcome, Effects), String>;

struct Job {
    plan: Plan,
    group: AlertGroup,
    composer: Arc<dyn Composer + Send + Sync>,
    now: Timestamp,
    reply: oneshot::Sender<Reply>,
}

#[derive(Clone)]
pub struct IngestWriter {
    queue: mpsc::Sender<Job>,
}

impl IngestWriter {
    /// Starts the writer thread; it ends when every `IngestWriter` clone is dropped.
    pub fn start(store: Store) -> std::io::Result<Self> {
        let (queue, jobs) = mpsc::channel(QUEUE);
        std::thread::Builder::new()
            .name("relay-writer".into())
            .spawn(move || write_loop(&store, jobs))?;
        Ok(Self { queue })
    }

    /// Stores one webhook's effects durably; returns once they are committed.
    pub async fn ingest(
        &self,
        plan: Plan,
        group: AlertGroup,
        composer: Arc<dyn Composer + Send + Sync>,
        now: Timestamp,
    ) -> Result<(IngestOutcome, Effects), StoreError> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            plan,
            group,
            composer,
            now,
            reply,
        };
        self.queue
            .send(job)
            .await
            .map_err(|_| StoreError::Batch("the writer stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Batch("the writer stopped".into()))?
            .map_err(StoreError::Batch)
    }
}

fn write_loop(store: &Store, mut jobs: mpsc::Receiver<Job>) {
    while let Some(first) = jobs.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let result = store.with(|conn| {
            let refs: Vec<store::IngestJob<'_>> = batch
                .iter()
                .map(|j| {
                    (
                        &j.plan,
                        &j.group,
                        j.composer.as_ref() as &dyn Composer,
                        j.now,
                    )
                })
                .collect();
            store::ingest_batch(conn, &refs)
        });
        match result {
            Ok(results) => {
                for (job, result) in batch.into_iter().zip(results) {
                    let _ = job.reply.send(result.map_err(|e| e.to_string()));
                }
            }
            Err(error) => {
                let message = error.to_string();
                for job in batch {
                    let _ = job.reply.send(Err(message.clone()));
                }
            }
        }
    }
}
