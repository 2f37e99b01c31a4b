//! A replica's own store in the simulation on PostgreSQL, with the faults a replica meets:
//! cut off from the database (every call fails), or stalled inside a transaction (it holds
//! its locks, idle, until the server ends it — the driver waits for that — and fails when
//! it wakes up).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use alert_relay::domain::{TargetName, Timestamp};
use alert_relay::store::{Claim, Lease, Mode, PostgresStore, Store, StoreError, Tx, Work};
use tokio::sync::Notify;

/// Which transaction of the replica stalls next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stall {
    /// The next group commit of webhooks.
    Intake,
    /// The next transaction that records a delivery.
    Recording,
}

struct Armed {
    on: Stall,
    /// Told once the transaction has done its work and stalls before committing.
    stalled: Arc<Notify>,
    /// The driver's word to go on.
    release: mpsc::Receiver<()>,
}

pub struct FaultyStore {
    inner: PostgresStore,
    cut: AtomicBool,
    armed: Mutex<Option<Armed>>,
}

/// Longest a stalled transaction waits for the driver (a run never needs as long).
const STALL_AT_MOST: Duration = Duration::from_secs(60);

impl FaultyStore {
    pub fn new(inner: PostgresStore) -> Self {
        Self {
            inner,
            cut: AtomicBool::new(false),
            armed: Mutex::new(None),
        }
    }

    pub fn holder(&self) -> &str {
        self.inner.holder()
    }

    pub fn set_cut(&self, cut: bool) {
        self.cut.store(cut, Ordering::SeqCst);
    }

    /// The next transaction of kind `on` stalls once its work is done; `stalled` is told
    /// then, and it goes on (to fail: the server has ended it) when `release` gets a word.
    pub fn stall(&self, on: Stall, stalled: Arc<Notify>) -> mpsc::Sender<()> {
        let (go, release) = mpsc::channel();
        *self.armed.lock().unwrap_or_else(|e| e.into_inner()) = Some(Armed {
            on,
            stalled,
            release,
        });
        go
    }

    /// Cancels a stall that has not come.
    pub fn disarm(&self) {
        self.armed.lock().unwrap_or_else(|e| e.into_inner()).take();
    }

    fn check(&self) -> Result<(), StoreError> {
        if self.cut.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable(
                "cut off from the database (simulated)".into(),
            ));
        }
        Ok(())
    }

    fn take(&self, on: Stall) -> Option<Armed> {
        let mut armed = self.armed.lock().unwrap_or_else(|e| e.into_inner());
        if armed.as_ref().is_some_and(|a| a.on == on) {
            return armed.take();
        }
        None
    }
}

/// Waits, inside the transaction, until the driver lets it go on.
fn wait_inside(armed: &Armed) {
    armed.stalled.notify_one();
    let _ = armed.release.recv_timeout(STALL_AT_MOST);
}

impl Store for FaultyStore {
    fn transact(&self, mode: Mode, work: &mut Work<'_>) -> Result<(), StoreError> {
        self.check()?;
        let armed = (mode == Mode::Relaxed)
            .then(|| self.take(Stall::Recording))
            .flatten();
        let Some(armed) = armed else {
            return self.inner.transact(mode, work);
        };
        self.inner.transact(mode, &mut |tx| {
            work(tx)?;
            wait_inside(&armed);
            Ok(())
        })
    }

    fn transact_each(
        &self,
        jobs: &mut [&mut Work<'_>],
    ) -> Result<Vec<Result<(), StoreError>>, StoreError> {
        self.check()?;
        let Some(armed) = self.take(Stall::Intake) else {
            return self.inner.transact_each(jobs);
        };
        // The jobs, then one that stalls: all in the one transaction.
        type Job<'j> = Box<dyn FnMut(&mut dyn Tx) -> Result<(), StoreError> + 'j>;
        let armed = &armed;
        let mut boxed: Vec<Job<'_>> = jobs
            .iter_mut()
            .map(|job| Box::new(move |tx: &mut dyn Tx| job(tx)) as Job<'_>)
            .collect();
        boxed.push(Box::new(move |_: &mut dyn Tx| {
            wait_inside(armed);
            Ok(())
        }));
        let mut all: Vec<&mut Work<'_>> = boxed.iter_mut().map(|b| &mut **b).collect();
        let mut results = self.inner.transact_each(&mut all)?;
        results.pop();
        Ok(results)
    }

    fn probe(&self) -> Result<(), StoreError> {
        self.check()?;
        self.inner.probe()
    }

    fn claim_target(&self, target: &TargetName, now: Timestamp) -> Result<Claim, StoreError> {
        self.check()?;
        self.inner.claim_target(target, now)
    }

    fn renew(&self, lease: &Lease, now: Timestamp) -> Result<Option<Lease>, StoreError> {
        self.check()?;
        self.inner.renew(lease, now)
    }

    fn release_target(&self, lease: &Lease) -> Result<(), StoreError> {
        self.check()?;
        self.inner.release_target(lease)
    }

    fn shared(&self) -> bool {
        true
    }
}
