//! Replicas in the simulation: on SQLite one relay; on PostgreSQL two relays on one database,
//! each with its own store, which the seed stalls mid-send (the vendor got the request, the
//! answer never comes while it hangs), stalls inside a transaction (intake, or the recording
//! of a delivery: its locks held until the server ends the transaction), or cuts off from
//! the database — one replica at a time — and later resumes. A stalled replica takes no step
//! at all: its use case is a future nobody polls until it resumes.

use std::future::Future;
use std::pin::Pin;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use alert_relay::app::{Relay, Step, Worker};
use alert_relay::store::postgres::Limits;
use alert_relay::store::StoreError;

use super::faults::{FaultyStore, Stall};
use super::Sim;

/// How long the server lets a transaction sit idle in the simulation: a stalled replica's
/// locks are free after this (and the driver waits for that before going on). Long enough
/// that a healthy transaction on a loaded machine is never ended by it.
pub const IDLE_LIMIT: Duration = Duration::from_millis(1000);

pub fn limits() -> Limits {
    Limits {
        idle_in_transaction: IDLE_LIMIT,
        lock_wait: Duration::from_millis(3000),
        statement: Duration::from_millis(4000),
        answer: Duration::from_millis(5000),
        probe: Duration::from_millis(2000),
        pool_wait: Duration::from_millis(5000),
    }
}

pub type Pending = Pin<Box<dyn Future<Output = Outcome>>>;

/// How a stalled use case ended once resumed.
#[derive(Debug)]
pub enum Outcome {
    Delivery(Result<Step, StoreError>),
    Webhook(Result<(), String>),
}

pub enum Fault {
    /// Frozen in the middle of a use case.
    Stalled {
        what: String,
        pending: Pending,
        /// Lets a stalled transaction go on (`None`: a stalled send, opened by the gate).
        release: Option<mpsc::Sender<()>>,
        /// The vendor asked for a crash of the relay after taking the page.
        crash: bool,
    },
    /// Every store call fails.
    Cut,
}

/// Replica faults a run reached (a full run on PostgreSQL must reach each).
#[derive(Debug, Default, Clone, Copy)]
pub struct Faults {
    pub stall_send: usize,
    pub stall_recording: usize,
    pub stall_intake: usize,
    pub cut: usize,
    /// Stalled attempts another replica sent again after taking the target over.
    pub taken_over: usize,
}

impl Faults {
    pub fn add(&mut self, o: &Faults) {
        self.stall_send += o.stall_send;
        self.stall_recording += o.stall_recording;
        self.stall_intake += o.stall_intake;
        self.cut += o.cut;
        self.taken_over += o.taken_over;
    }
}

pub struct Replica {
    pub relay: Arc<Relay>,
    pub workers: Vec<Worker>,
    /// PostgreSQL only: the replica's own store, where its faults are injected.
    pub store: Option<Arc<FaultyStore>>,
    pub fault: Option<Fault>,
    /// A reload it missed while stalled, applied when it resumes.
    pub stale_config: bool,
}

impl Replica {
    pub fn running(&self) -> bool {
        self.fault.is_none()
    }

    pub fn holder(&self) -> Option<String> {
        self.store.as_ref().map(|s| s.holder().to_owned())
    }
}

impl Sim {
    /// Replicas that take steps now.
    pub fn running(&self) -> Vec<usize> {
        (0..self.replicas.len())
            .filter(|r| self.replicas[*r].running())
            .collect()
    }

    /// A running replica, chosen by the seed when there are several.
    pub fn pick(&mut self) -> usize {
        let running = self.running();
        if running.len() == 1 {
            return running[0];
        }
        running[rand::Rng::random_range(&mut self.rng, 0..running.len())]
    }

    /// Replicas whose loops take their pass: running ones, and one cut off from the
    /// database (its calls fail), but not a stalled one.
    pub fn passing(&self) -> Vec<usize> {
        (0..self.replicas.len())
            .filter(|r| !matches!(self.replicas[*r].fault, Some(Fault::Stalled { .. })))
            .collect()
    }

    pub fn faulty(&self) -> Option<usize> {
        (0..self.replicas.len()).find(|r| !self.replicas[*r].running())
    }

    /// Runs `pending` until it ends or stalls; `Some` when it ended.
    pub async fn until_stalled(&mut self, mut pending: Pending) -> Result<Outcome, Pending> {
        let stalled = Arc::clone(&self.world.state().stalled);
        tokio::select! {
            biased;
            outcome = &mut pending => Ok(outcome),
            _ = stalled.notified() => Err(pending),
        }
    }

    /// One delivery step of replica `r`'s worker; `None` if the replica stalled in it.
    pub async fn deliver(&mut self, r: usize, worker: &Worker) -> Result<Option<Step>, String> {
        let relay = Arc::clone(&self.replicas[r].relay);
        let target = worker.target.clone();
        let (worker, now) = (worker.clone(), self.now);
        let pending: Pending =
            Box::pin(async move { Outcome::Delivery(relay.deliver_next(&worker, now).await) });
        match self.until_stalled(pending).await {
            Ok(Outcome::Delivery(step)) => step
                .map(Some)
                .map_err(|e| format!("deliver_next failed: {e}")),
            Ok(other) => Err(format!("a delivery ended as {other:?}")),
            Err(pending) => {
                let release = self.releases.pop();
                let received = self.world.state().received.len().checked_sub(1);
                if let Some(i) = received {
                    let mut s = self.world.state();
                    s.in_flight = Some(s.received[i].key.clone());
                    self.in_flight = Some((i, r));
                }
                let crash = std::mem::take(&mut self.world.state().crash_requested);
                self.trace.push(format!(
                    "  replica {r} stalls {}",
                    if release.is_some() {
                        "recording a delivery"
                    } else {
                        "mid-send"
                    }
                ));
                if release.is_some() {
                    self.faults.stall_recording += 1;
                    self.wait_transaction_ended().await?;
                } else {
                    self.faults.stall_send += 1;
                }
                self.replicas[r].fault = Some(Fault::Stalled {
                    what: format!("delivery to {target}"),
                    pending,
                    release,
                    crash,
                });
                Ok(None)
            }
        }
    }

    /// Arms a stall of a running replica: mid-send (the gate) or in its next recording.
    pub fn arm_delivery_stall(&mut self, r: usize, in_transaction: bool) {
        if in_transaction {
            let store = self.replicas[r].store.clone().expect("a replica's store");
            let stalled = Arc::clone(&self.world.state().stalled);
            self.releases.push(store.stall(Stall::Recording, stalled));
            self.trace.push(format!(
                "replica {r} will stall recording its next delivery"
            ));
        } else {
            self.world.state().hang_send = Some(r);
            self.trace
                .push(format!("replica {r} will stall in its next send"));
        }
        self.armed = Some(r);
    }

    /// Waits until the server has ended the stalled replica's transaction (its locks are
    /// free): no other transaction sits idle in the simulation.
    pub async fn wait_transaction_ended(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + IDLE_LIMIT * 10;
        loop {
            let idle = self
                .observer
                .as_ref()
                .expect("observer")
                .idle_transactions();
            if idle == 0 {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{idle} transaction(s) still idle after {:?}",
                    IDLE_LIMIT * 10
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The stalled or cut-off replica comes back: a stalled use case goes on from where it
    /// stopped (a send gets its answer; a transaction finds itself ended by the server).
    pub async fn resume(&mut self, r: usize) -> Result<(), String> {
        self.armed = None;
        let Some(fault) = self.replicas[r].fault.take() else {
            return Ok(());
        };
        self.fine_until = self.now.plus(Duration::from_secs(20));
        match fault {
            Fault::Cut => {
                self.trace.push(format!("replica {r} reconnects"));
                if let Some(store) = &self.replicas[r].store {
                    store.set_cut(false);
                }
            }
            Fault::Stalled {
                what,
                pending,
                release,
                crash,
            } => {
                match &release {
                    Some(go) => {
                        let _ = go.send(());
                    }
                    None => self.world.state().gate.notify_one(),
                }
                let outcome = pending.await;
                self.trace
                    .push(format!("replica {r} resumes its {what}: {outcome:?}"));
                if release.is_none() {
                    let recorded = matches!(
                        outcome,
                        Outcome::Delivery(Ok(Step::Delivered
                            | Step::Retrying(_)
                            | Step::DeadLettered))
                    );
                    self.settle_send(recorded);
                }
                if release.is_none() && matches!(outcome, Outcome::Delivery(Err(_))) {
                    return Err(format!("a stalled send ended in an error: {outcome:?}"));
                }
                if matches!(outcome, Outcome::Webhook(Ok(()))) {
                    return Err(
                        "a webhook whose transaction the server ended was stored anyway".into(),
                    );
                }
                if crash {
                    self.crash_replica(r).await;
                }
            }
        }
        if std::mem::take(&mut self.replicas[r].stale_config) {
            let config = self.config();
            self.replicas[r]
                .relay
                .apply(config)
                .map_err(|e| format!("reload refused: {e}"))?;
            self.replicas[r].workers = self.replicas[r].relay.workers();
            self.replicas[r]
                .relay
                .forget_removed_targets(self.now)
                .await;
        }
        Ok(())
    }

    /// A fault event (PostgreSQL only): one replica at a time stalls mid-send, stalls inside
    /// a transaction, or is cut off from the database; a later event resumes it.
    pub async fn fault(&mut self, roll: usize, g: usize) -> Result<(), String> {
        if let Some(r) = self.faulty() {
            return self.resume(r).await;
        }
        if let Some(r) = self.armed {
            if roll >= 110 {
                self.trace
                    .push(format!("replica {r}: the stall did not come"));
                self.disarm();
            }
            return Ok(());
        }
        let r = self.pick();
        match roll {
            106 | 107 | 111 => self.arm_delivery_stall(r, false),
            108 => self.arm_delivery_stall(r, true),
            109 => self.stall_intake(r, g).await?,
            _ => {
                self.trace
                    .push(format!("replica {r} is cut off from the database"));
                if let Some(store) = &self.replicas[r].store {
                    store.set_cut(true);
                }
                self.replicas[r].fault = Some(Fault::Cut);
                self.faults.cut += 1;
                self.fine_until = self.now.plus(Duration::from_secs(20));
            }
        }
        Ok(())
    }

    /// Cancels a stall that has not come yet.
    pub fn disarm(&mut self) {
        self.armed = None;
        self.world.state().hang_send = None;
        self.releases.clear();
        for replica in &self.replicas {
            if let Some(store) = &replica.store {
                store.disarm();
            }
        }
    }

    /// Replica `r` stalls while it stores a webhook for group `g` (its locks held until the
    /// server ends the transaction); the other Alertmanager's copy goes to another replica.
    async fn stall_intake(&mut self, r: usize, g: usize) -> Result<(), String> {
        let store = self.replicas[r].store.clone().expect("a replica's store");
        let stalled = Arc::clone(&self.world.state().stalled);
        let go = store.stall(Stall::Intake, stalled);
        let relay = Arc::clone(&self.replicas[r].relay);
        let group = self.group(g, alert_relay::domain::AlertStatus::Firing);
        let now = self.now;
        let pending: Pending = Box::pin(async move {
            Outcome::Webhook(
                relay
                    .ingest(None, group, now)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
            )
        });
        self.trace.push(format!(
            "replica {r} stalls storing a webhook for group {g}"
        ));
        let pending = match self.until_stalled(pending).await {
            Ok(outcome) => return Err(format!("the webhook did not stall: {outcome:?}")),
            Err(pending) => pending,
        };
        self.wait_transaction_ended().await?;
        self.faults.stall_intake += 1;
        self.replicas[r].fault = Some(Fault::Stalled {
            what: format!("webhook for group {g}"),
            pending,
            release: Some(go),
            crash: false,
        });
        self.fine_until = self.now.plus(Duration::from_secs(20));
        self.trace
            .push(format!("fire group {g} ({} alerts)", self.alerts[g]));
        self.webhook(g, alert_relay::domain::AlertStatus::Firing)
            .await
    }

    /// Every replica back to health, before the final drain.
    pub async fn heal(&mut self) -> Result<(), String> {
        self.disarm();
        if let Some(r) = self.faulty() {
            self.resume(r).await?;
        }
        Ok(())
    }

    /// Settles the attempt a stalled replica made, once it runs again: abandoned if another
    /// replica sent the same page since (the stalled one must then record nothing), or done
    /// once its outcome is recorded.
    pub fn settle_in_flight(&mut self) {
        let Some((i, r)) = self.in_flight else {
            return;
        };
        if !self.replicas[r].running() {
            return;
        }
        let key = self.world.state().received[i].key.clone();
        let recorded = self
            .observer
            .as_mut()
            .expect("observer")
            .rows()
            .into_iter()
            .find(|row| row.key == key)
            .map_or(0, |row| row.attempts);
        let mut s = self.world.state();
        let seen = s
            .received
            .iter()
            .filter(|g| g.key == key && !g.abandoned)
            .count() as i64;
        let resent = s.received[i + 1..]
            .iter()
            .any(|g| g.key == key && g.replica != r);
        if recorded == seen {
            // Recorded by the replica that stalled (nobody took it over meanwhile).
        } else if recorded == seen - 1 && resent {
            s.received[i].abandoned = true;
            self.faults.taken_over += 1;
        } else {
            return;
        }
        s.in_flight = None;
        self.in_flight = None;
    }

    /// A stalled send has its answer now, and the replica recorded it or not: if another
    /// replica sent the page meanwhile (it took the target over), the stalled attempt must
    /// not have been recorded — it is marked abandoned, and a record of it would show as one
    /// attempt too many; one not recorded is abandoned too.
    fn settle_send(&mut self, recorded: bool) {
        let Some((i, r)) = self.in_flight.take() else {
            return;
        };
        let mut s = self.world.state();
        s.in_flight = None;
        let key = s.received[i].key.clone();
        let taken = s.received[i + 1..]
            .iter()
            .any(|g| g.key == key && g.replica != r);
        if taken {
            self.faults.taken_over += 1;
        }
        if taken || !recorded {
            s.received[i].abandoned = true;
        }
    }
}
