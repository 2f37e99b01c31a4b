//! The shared backend: PostgreSQL through `tokio-postgres` and a `deadpool` pool, for
//! relays that keep their state off the machine, and for several relays sharing one
//! database.
//!
//! **Blocking on an async driver.** The [`Store`] contract is synchronous and is called
//! from three kinds of threads: tokio's blocking pool (`StoreHandle`), the intake writer's
//! own thread, and plain test threads — and the simulation reads rows from inside a
//! current-thread runtime. So the store never blocks on *the caller's* runtime. One
//! process-wide runtime of its own (two worker threads named `relay-postgres`) drives the
//! connections: each connection's I/O task runs there, and so does taking a connection
//! from the pool (connecting needs a reactor and timers). A query is only a message to that
//! task and an answer back over a channel, so the caller waits for it with a plain
//! executor (`futures_executor::block_on`), which works on any thread, inside a runtime or
//! not. The runtime is a `static`: dropping a store inside async code drops no runtime.
//!
//! **Transactions.** The transactions of one relay run side by side, as those of several
//! relays do: what must happen one at a time is serialised by the database (below), not by
//! a lock in the process, so intake never waits behind a delivery record. Reads run in
//! `REPEATABLE READ READ ONLY` transactions: one snapshot for the whole unit of work.
//! [`Mode::Relaxed`] commits with `synchronous_commit = off`: a server crash may forget the
//! last delivery records, and the notification is sent again with the same idempotency key.
//! A transaction's `BEGIN` goes out with its first statement, and its inserts and updates of
//! incidents and notifications with the statement after them (or the commit): a webhook
//! costs the round trips of its reads. Group commit ([`Store::transact_each`]) is one
//! transaction; if anything in it fails, it is rolled back and run again with a `SAVEPOINT`
//! per job, so that a failing job is rolled back alone. PostgreSQL aborts a transaction at
//! the first failed statement (SQLite does not): a unit of work that met a failed statement
//! and still returned `Ok` is rolled back and reported, never committed by half.
//!
//! **Several relays on one database.** The database serialises what must happen one at a
//! time, and no relay — killed, hung, or cut off from the
//! database — can hold up the others for longer than a few seconds ([`Limits`]: the server
//! ends a transaction left idle for 3 s, gives up a lock wait after 4 s and a statement
//! after 5 s; the relay gives up on an answer after 6 s and closes that connection):
//! - *Incidents*: read for writing with `FOR UPDATE`, so two relays never both advance an
//!   incident from the same state. The scheduler takes due incidents with
//!   `FOR UPDATE SKIP LOCKED`: relays firing at once share them out instead of queueing, and
//!   one locked by another relay is fired on the next pass.
//! - *Intake*: from its first read of a group's open incident to the commit, a webhook's
//!   transaction holds a transaction-scoped advisory lock on that group (policy and group
//!   key), so two relays given the same webhook (both Alertmanagers of a pair) never both
//!   start an incident for one group; the second finds the first's incident and refreshes
//!   it. Webhooks for other groups do not wait. Incident ids come from a sequence.
//! - *Delivery* (`leases`): a target's queue is delivered by one relay at a time, under a
//!   lease (a row of `delivery_claims`) that lasts [`LEASE`] unless its holder renews it.
//!   Not `SKIP LOCKED` on outbox rows: skipping a locked head would send the next
//!   notification before it and break the queue's order; a lease per target keeps it. A
//!   lease that ran out is taken over, and its fence grows: the stalled holder learns it
//!   before it sends and cannot record anything after ([`Tx::hold`] locks the lease row
//!   in the transaction that records). A notification being sent when its relay stalled is
//!   sent again by the next with the same idempotency key.
//!
//! Leases and due steps are reckoned in the relays' own clocks (`now`), as the escalation
//! is: the relays' clocks must agree to well within a second (NTP).
//!
//! **TLS** (`tls`): rustls with the ring provider, no OpenSSL. `sslmode` and `sslrootcert`
//! mean what they mean to libpq (`verify-full` checks the chain and the host name); the
//! relay reads them itself and gives the pool a connector that checks what they ask, and
//! SCRAM binds the password exchange to the server's certificate when the server offers it.
//!
//! **Left for later**: client certificates (`sslcert`); heartbeats are still counted in
//! each relay's memory, not in the database.
//!
//! [`LEASE`]: crate::store::LEASE
//! [`Tx::hold`]: crate::store::Tx::hold

mod database_url;
mod leases;
mod schema;
pub mod scratch;
mod tls;
mod tx;

use std::future::Future;
use std::sync::OnceLock;
use std::time::Duration;

use deadpool_postgres::{ClientWrapper, Manager, ManagerConfig, Object, Pool, RecyclingMethod};

pub use database_url::{DatabaseUrl, Limits};

use super::{Claim, Lease, Mode, Store, StoreError, Work};
use crate::domain::{TargetName, Timestamp};
use tx::{PgTx, TxState};

/// Connections at most (transactions, leases and `/ready` of one relay together).
const POOL_SIZE: usize = 8;

pub struct PostgresStore {
    pool: Pool,
    /// Where it connects, password hidden, for error messages.
    shown: String,
    limits: Limits,
    /// This store's name in `delivery_claims`: unique per process and store.
    holder: String,
}

/// The runtime that drives every connection of every store in the process.
fn driver() -> Result<&'static tokio::runtime::Runtime, StoreError> {
    static DRIVER: OnceLock<Result<tokio::runtime::Runtime, String>> = OnceLock::new();
    DRIVER
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("relay-postgres")
                .enable_all()
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| StoreError::Open(format!("cannot start the PostgreSQL driver: {e}")))
}

/// Runs `future` on the driver's runtime and waits for it from any thread.
fn on_driver<T: Send + 'static>(
    future: impl Future<Output = T> + Send + 'static,
) -> Result<T, StoreError> {
    let (send, answer) = std::sync::mpsc::sync_channel(1);
    driver()?.spawn(async move {
        let _ = send.send(future.await);
    });
    answer
        .recv()
        .map_err(|_| StoreError::Task("the PostgreSQL driver stopped".into()))
}

/// Waits for a query at most `limit`: the connection's task does the I/O on the driver's
/// runtime, whose timers also keep the deadline. A server that does not answer in time (a
/// network path that stopped forwarding) is [`StoreError::Unavailable`], never a hang; the
/// caller then closes the connection rather than wait on it again.
fn wait<T>(
    limit: Duration,
    future: impl Future<Output = Result<T, tokio_postgres::Error>>,
) -> Result<T, StoreError> {
    let _timers = driver()?.enter();
    match futures_executor::block_on(tokio::time::timeout(limit, future)) {
        Ok(answer) => Ok(answer?),
        Err(_) => Err(StoreError::Unavailable(format!(
            "PostgreSQL did not answer within {} ms",
            limit.as_millis()
        ))),
    }
}

/// A name for this store among the relays on one database: host, process and a random part
/// (two stores in one process — tests — are two holders).
fn holder_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default();
    let host = if host.is_empty() {
        "relay".into()
    } else {
        host
    };
    format!(
        "{host}:{}:{:08x}",
        std::process::id(),
        rand::random::<u32>()
    )
}

impl PostgresStore {
    /// Connects, then migrates the schema forward (under an advisory lock: replicas that
    /// start together are safe).
    pub fn open(url: &DatabaseUrl) -> Result<Self, StoreError> {
        Self::open_with(url, Limits::default())
    }

    /// [`PostgresStore::open`] with other limits (the simulation keeps them short).
    pub fn open_with(url: &DatabaseUrl, limits: Limits) -> Result<Self, StoreError> {
        let shown = url.to_string();
        let config = url.config_with(&limits).map_err(StoreError::Open)?;
        let manager = Manager::from_config(
            config,
            url.tls().map_err(StoreError::Open)?,
            ManagerConfig {
                // Checks that the connection is alive; locks never outlive the transaction
                // that took them, so nothing needs cleaning.
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .wait_timeout(Some(limits.pool_wait))
            .create_timeout(Some(limits.pool_wait))
            .recycle_timeout(Some(limits.pool_wait))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|e| StoreError::Open(format!("{shown}: {e}")))?;
        let store = Self {
            pool,
            shown,
            limits,
            holder: holder_name(),
        };
        let session = store.session()?;
        schema::migrate(session.client(), limits.answer).map_err(|e| match e {
            StoreError::Open(why) => StoreError::Open(format!("{}: {why}", store.shown)),
            other => StoreError::Open(format!(
                "{}: cannot migrate the schema: {other}",
                store.shown
            )),
        })?;
        session.release();
        Ok(store)
    }

    /// This store's name in the leases it holds (`delivery_claims.holder`).
    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// Runs statements outside the contract (several, separated by `;`), for tests that
    /// damage or inspect rows.
    pub fn execute(&self, sql: &str) -> Result<(), StoreError> {
        let session = self.session()?;
        session.batch(sql, self.limits.answer)?;
        session.release();
        Ok(())
    }

    /// Runs one query outside the contract and returns its rows, for tests that inspect
    /// the database (the simulation's checker).
    pub fn query(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>, StoreError> {
        let session = self.session()?;
        let rows = wait(self.limits.answer, session.client().query(sql, params))?;
        session.release();
        Ok(rows)
    }

    /// A connection from the pool, given back when the session is released and closed
    /// if it is dropped in an unknown state (inside a transaction, after an error).
    fn session(&self) -> Result<Session, StoreError> {
        let pool = self.pool.clone();
        let object = on_driver(async move { pool.get().await })?.map_err(|e| {
            use deadpool_postgres::PoolError;
            match e {
                PoolError::Backend(e) => StoreError::Open(format!(
                    "cannot connect to PostgreSQL at {}: {}",
                    self.shown,
                    super::PgError(e)
                )),
                PoolError::Timeout(_) => StoreError::Unavailable(format!(
                    "no connection to PostgreSQL at {} within {} ms",
                    self.shown,
                    self.limits.pool_wait.as_millis()
                )),
                other => StoreError::Open(format!("PostgreSQL at {}: {other}", self.shown)),
            }
        })?;
        Ok(Session {
            object: Some(object),
        })
    }

    /// Runs one lease statement on a pooled connection, outside any transaction.
    fn lease<T>(
        &self,
        op: impl FnOnce(&ClientWrapper, &str, Duration) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let session = self.session()?;
        let result = op(session.client(), &self.holder, self.limits.answer);
        if result.is_ok() {
            session.release();
        }
        result
    }
}

/// A pooled connection; dropping it without [`Session::release`] closes it, so that a
/// transaction left open by an error or a panic is rolled back by the server and the
/// connection never goes back to the pool half used.
struct Session {
    object: Option<Object>,
}

impl Session {
    fn client(&self) -> &ClientWrapper {
        // Present until `release` or drop consume the session.
        match &self.object {
            Some(object) => object,
            None => unreachable!("a session is used only before it is released"),
        }
    }

    fn batch(&self, sql: &str, limit: Duration) -> Result<(), StoreError> {
        wait(limit, self.client().batch_execute(sql))
    }

    /// Gives the connection back to the pool, clean.
    fn release(mut self) {
        self.object.take();
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Some(object) = self.object.take() {
            drop(Object::take(object));
        }
    }
}

fn begin(mode: Mode) -> &'static str {
    match mode {
        Mode::Read => "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
        Mode::Durable => "BEGIN",
        Mode::Relaxed => "BEGIN; SET LOCAL synchronous_commit = off",
    }
}

/// Ends a transaction that failed: rolled back, and the connection given back — unless the
/// server stopped answering, when the connection is closed instead (the server rolls back).
fn abandon(session: Session, error: &StoreError, limit: Duration) {
    if matches!(error, StoreError::Unavailable(_)) {
        return;
    }
    if session.batch("ROLLBACK", limit).is_ok() {
        session.release();
    }
}

impl PostgresStore {
    /// Group commit the careful way: a savepoint per job, so that a failing job is rolled
    /// back alone.
    fn each_in_savepoints(
        &self,
        session: &Session,
        jobs: &mut [&mut Work<'_>],
    ) -> Result<Vec<Result<(), StoreError>>, StoreError> {
        let limit = self.limits.answer;
        let client = session.client();
        let state = TxState::new(begin(Mode::Durable));
        let mut results = Vec::with_capacity(jobs.len());
        for job in jobs.iter_mut() {
            let mut tx = PgTx::new(client, &state, Mode::Durable, limit, &self.holder);
            tx.savepoint("SAVEPOINT job")?;
            // The job's writes go out with the release: their failure is the job's.
            let done = job(&mut tx)
                .and_then(|()| tx.check())
                .and_then(|()| state.end(client, limit, &self.holder, "RELEASE SAVEPOINT job"));
            match done {
                Ok(()) => results.push(Ok(())),
                Err(error @ StoreError::Unavailable(_)) => return Err(error),
                Err(error) => {
                    // Unsent writes of the failed job are dropped with it.
                    state.drop_writes();
                    let mut tx = PgTx::new(client, &state, Mode::Durable, limit, &self.holder);
                    tx.savepoint("ROLLBACK TO SAVEPOINT job; RELEASE SAVEPOINT job")?;
                    results.push(Err(error));
                }
            }
        }
        if state.begun() {
            state.end(client, limit, &self.holder, "COMMIT")?;
        }
        Ok(results)
    }
}

impl Store for PostgresStore {
    fn transact(&self, mode: Mode, work: &mut Work<'_>) -> Result<(), StoreError> {
        let limit = self.limits.answer;
        let session = self.session()?;
        let state = TxState::new(begin(mode));
        let mut tx = PgTx::new(session.client(), &state, mode, limit, &self.holder);
        let done = work(&mut tx).and_then(|()| tx.check()).and_then(|()| {
            if state.begun() {
                state.end(session.client(), limit, &self.holder, "COMMIT")?;
            }
            Ok(())
        });
        match done {
            Ok(()) => {
                session.release();
                Ok(())
            }
            Err(error) if !state.begun() => {
                session.release();
                Err(error)
            }
            Err(error) => {
                abandon(session, &error, limit);
                Err(error)
            }
        }
    }

    /// Group commit, optimistic: every job in one transaction without savepoints, each job's
    /// writes sent with the next job's first read (a webhook costs the round trips of its
    /// reads); only if something fails is the transaction rolled back and every job run again
    /// in a savepoint of its own, so that the failing one is rolled back alone.
    fn transact_each(
        &self,
        jobs: &mut [&mut Work<'_>],
    ) -> Result<Vec<Result<(), StoreError>>, StoreError> {
        let limit = self.limits.answer;
        let session = self.session()?;
        let client = session.client();
        let state = TxState::new(begin(Mode::Durable));
        let mut failed = false;
        for job in jobs.iter_mut() {
            let mut tx = PgTx::new(client, &state, Mode::Durable, limit, &self.holder);
            match job(&mut tx).and_then(|()| tx.check()) {
                Ok(()) => {}
                Err(error @ StoreError::Unavailable(_)) => return Err(error),
                Err(_) => {
                    failed = true;
                    break;
                }
            }
        }
        if !failed {
            // The last job's writes go out with the commit.
            let committed = match state.begun() {
                true => state.end(client, limit, &self.holder, "COMMIT"),
                false => Ok(()),
            };
            match committed {
                Ok(()) => {
                    session.release();
                    return Ok(jobs.iter().map(|_| Ok(())).collect());
                }
                Err(error @ StoreError::Unavailable(_)) => return Err(error),
                Err(_) => {}
            }
        }
        // Something failed — a job's statement, or a write of some job sent later with
        // another's: which job is found by running them again, each in its own savepoint.
        if state.begun() {
            session.batch("ROLLBACK", limit)?;
        }
        let results = self.each_in_savepoints(&session, jobs)?;
        session.release();
        Ok(results)
    }

    /// A connection within the pool's wait, and a write that is rolled back, all within
    /// [`Limits::probe`]: a server that is down, unreachable, full of connections or
    /// read-only (a standby after a failover) fails here.
    fn probe(&self) -> Result<(), StoreError> {
        let limit = self.limits.probe;
        let started = std::time::Instant::now();
        let session = self.session()?;
        let left = limit.saturating_sub(started.elapsed());
        let now = crate::domain::Timestamp::now().0;
        let client = session.client();
        let write = async {
            client.batch_execute("BEGIN").await?;
            client
                .execute("INSERT INTO probe (at) VALUES ($1)", &[&now])
                .await?;
            client.batch_execute("ROLLBACK").await
        };
        wait(left, write)?;
        session.release();
        Ok(())
    }

    fn claim_target(&self, target: &TargetName, now: Timestamp) -> Result<Claim, StoreError> {
        self.lease(|client, holder, limit| leases::claim(client, holder, target, now, limit))
    }

    fn renew(&self, lease: &Lease, now: Timestamp) -> Result<Option<Lease>, StoreError> {
        self.lease(|client, holder, limit| leases::renew(client, holder, lease, now, limit))
    }

    fn release_target(&self, lease: &Lease) -> Result<(), StoreError> {
        self.lease(|client, holder, limit| leases::release(client, holder, lease, limit))
    }

    fn shared(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod replicas;
#[cfg(test)]
mod tests;
