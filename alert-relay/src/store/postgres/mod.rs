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
//! **Transactions.** Like SQLite's, every write transaction of one relay runs alone (one
//! lock in the process), so the application layer sees the same serial order as with
//! SQLite. Reads run beside them in `REPEATABLE READ READ ONLY` transactions: one snapshot
//! for the whole unit of work. [`Mode::Relaxed`] commits with `synchronous_commit = off`:
//! a server crash may forget the last delivery records, and the notification is sent again
//! with the same idempotency key. Group commit ([`Store::transact_each`]) is one
//! transaction with a `SAVEPOINT` per job; a failing job is rolled back to its savepoint
//! alone. PostgreSQL aborts a transaction at the first failed statement (SQLite does not):
//! a unit of work that met a failed statement and still returned `Ok` is rolled back and
//! reported, never committed by half.
//!
//! **Several relays on one database.** What one relay's lock serialises in the process,
//! the database serialises between relays:
//! - *Incidents*: read for writing with `FOR UPDATE`, so two relays never both advance an
//!   incident from the same state. The scheduler takes due incidents with
//!   `FOR UPDATE SKIP LOCKED`: relays firing at once share them out instead of queueing, and
//!   one locked by another relay's webhook is fired on the next pass.
//! - *Intake*: from its first read of an open incident to the commit, a webhook's
//!   transaction holds a transaction-scoped advisory lock, so two relays given the same
//!   webhook (both Alertmanagers of a pair) never both start an incident for one group or
//!   choose the same id; the second finds the first's incident and refreshes it.
//! - *Delivery* (`claims`): a target's queue is delivered by one relay at a time, claimed
//!   for each delivery step with a session-level advisory lock on a connection of the
//!   store's own. Not `SKIP LOCKED` on outbox rows: skipping a locked head would send the
//!   next notification before it and break the queue's order; a claim per target keeps it.
//!   A dead relay's claims end with its session: at once when its process dies, within
//!   the server's TCP keepalive (about 25 s) when its machine or network does; its
//!   transactions too (and any left idle for a minute). A notification being sent when its
//!   relay died is sent again by the next with the same idempotency key.
//!
//! **TLS** (`tls`): rustls with the ring provider, no OpenSSL. `sslmode` and `sslrootcert`
//! mean what they mean to libpq (`verify-full` checks the chain and the host name); the
//! relay reads them itself and gives the pool a connector that checks what they ask, and
//! SCRAM binds the password exchange to the server's certificate when the server offers it.
//!
//! **Left for later**: client certificates (`sslcert`); heartbeats are still counted in
//! each relay's memory, not in the database.

mod claims;
mod database_url;
mod schema;
pub mod scratch;
mod tls;
mod tx;

use std::future::Future;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use deadpool_postgres::{ClientWrapper, Manager, ManagerConfig, Object, Pool, RecyclingMethod};

pub use database_url::DatabaseUrl;

use super::{Claim, Mode, Store, StoreError, Work};
use crate::domain::TargetName;
use claims::Claims;
use tx::PgTx;

/// Connections at most: one writer at a time, the rest for reads and `/ready`.
const POOL_SIZE: usize = 8;
/// Waiting longer for a free or new connection is a failure (a webhook gets a 5xx).
const POOL_WAIT: Duration = Duration::from_secs(15);

pub struct PostgresStore {
    pool: Pool,
    /// Write transactions of this process, one at a time (see the module doc).
    writer: Mutex<()>,
    /// Where it connects, password hidden, for error messages.
    shown: String,
    /// The targets this relay delivers now, locked against other relays.
    claims: Claims,
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

/// Waits for a query: the connection's task does the I/O on the driver's runtime.
fn wait<F: Future>(future: F) -> F::Output {
    futures_executor::block_on(future)
}

impl PostgresStore {
    /// Connects, then migrates the schema forward (under an advisory lock: replicas that
    /// start together are safe).
    pub fn open(url: &DatabaseUrl) -> Result<Self, StoreError> {
        let shown = url.to_string();
        let config = url.config().map_err(StoreError::Open)?;
        let claims = Claims::new(config.clone());
        let manager = Manager::from_config(
            config,
            url.tls().map_err(StoreError::Open)?,
            ManagerConfig {
                // Checks that the connection is alive; locks and LISTEN never outlive the
                // transaction that took them, so nothing needs cleaning.
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .wait_timeout(Some(POOL_WAIT))
            .create_timeout(Some(POOL_WAIT))
            .recycle_timeout(Some(POOL_WAIT))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|e| StoreError::Open(format!("{shown}: {e}")))?;
        let store = Self {
            pool,
            writer: Mutex::new(()),
            shown,
            claims,
        };
        let session = store.session()?;
        schema::migrate(session.client()).map_err(|e| match e {
            StoreError::Open(why) => StoreError::Open(format!("{}: {why}", store.shown)),
            other => StoreError::Open(format!(
                "{}: cannot migrate the schema: {other}",
                store.shown
            )),
        })?;
        session.release();
        Ok(store)
    }

    /// Runs statements outside the contract (several, separated by `;`), for tests that
    /// damage or inspect rows.
    pub fn execute(&self, sql: &str) -> Result<(), StoreError> {
        let session = self.session()?;
        wait(session.client().batch_execute(sql))?;
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
        let rows = wait(session.client().query(sql, params))?;
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
                PoolError::Timeout(_) => StoreError::Open(format!(
                    "no connection to PostgreSQL at {} within {} s",
                    self.shown,
                    POOL_WAIT.as_secs()
                )),
                other => StoreError::Open(format!("PostgreSQL at {}: {other}", self.shown)),
            }
        })?;
        Ok(Session {
            object: Some(object),
        })
    }

    fn writer(&self, mode: Mode) -> Option<MutexGuard<'_, ()>> {
        (mode != Mode::Read).then(|| self.writer.lock().unwrap_or_else(|e| e.into_inner()))
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

    fn batch(&self, sql: &str) -> Result<(), StoreError> {
        Ok(wait(self.client().batch_execute(sql))?)
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

impl Store for PostgresStore {
    fn transact(&self, mode: Mode, work: &mut Work<'_>) -> Result<(), StoreError> {
        let _writer = self.writer(mode);
        let session = self.session()?;
        session.batch(begin(mode))?;
        let mut tx = PgTx::new(session.client(), mode);
        match work(&mut tx).and_then(|()| tx.check()) {
            Ok(()) => {
                session.batch("COMMIT")?;
                session.release();
                Ok(())
            }
            Err(error) => {
                if session.batch("ROLLBACK").is_ok() {
                    session.release();
                }
                Err(error)
            }
        }
    }

    fn transact_each(
        &self,
        jobs: &mut [&mut Work<'_>],
    ) -> Result<Vec<Result<(), StoreError>>, StoreError> {
        let _writer = self.writer(Mode::Durable);
        let session = self.session()?;
        session.batch(begin(Mode::Durable))?;
        let mut results = Vec::with_capacity(jobs.len());
        for job in jobs.iter_mut() {
            session.batch("SAVEPOINT job")?;
            let mut tx = PgTx::new(session.client(), Mode::Durable);
            match job(&mut tx).and_then(|()| tx.check()) {
                Ok(()) => {
                    session.batch("RELEASE SAVEPOINT job")?;
                    results.push(Ok(()));
                }
                Err(error) => {
                    session.batch("ROLLBACK TO SAVEPOINT job; RELEASE SAVEPOINT job")?;
                    results.push(Err(error));
                }
            }
        }
        session.batch("COMMIT")?;
        session.release();
        Ok(results)
    }

    /// A connection within the pool's wait, and a write that is rolled back: a server that
    /// is down, full of connections or read-only (a standby after a failover) fails here.
    fn probe(&self) -> Result<(), StoreError> {
        let session = self.session()?;
        session.batch("BEGIN")?;
        let now = crate::domain::Timestamp::now().0;
        wait(
            session
                .client()
                .execute("INSERT INTO probe (at) VALUES ($1)", &[&now]),
        )?;
        session.batch("ROLLBACK")?;
        session.release();
        Ok(())
    }

    fn claim_target(&self, target: &TargetName) -> Result<Claim, StoreError> {
        self.claims.claim(target)
    }

    fn shared(&self) -> bool {
        true
    }

    fn release_target(&self, target: &TargetName) -> Result<(), StoreError> {
        self.claims.release(target)
    }
}

#[cfg(test)]
mod replicas;
#[cfg(test)]
mod tests;
