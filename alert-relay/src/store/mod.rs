//! Durable state in SQLite (WAL, synchronous=FULL): incidents with their escalation state,
//! the outbox of notifications with attempts and next try, and used acknowledge nonces.
//!
//! Every change an event causes (incident state, new outbox rows) is one transaction, so a
//! crash leaves either all of it or none. All calls are blocking: async code goes through
//! `spawn_blocking` (see [`Store::run`]).

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::Connection;

use crate::domain::{AlertGroup, GroupKey, Notification, PolicyName, TargetName, Timestamp};
use crate::escalation::{Incident, StopReason};

mod incidents;
mod outbox;

pub use incidents::*;
pub use outbox::*;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("stored JSON is invalid: {0}")]
    Json(#[from] serde_json::Error),
    #[error("the store task failed: {0}")]
    Task(String),
    #[error("the webhook could not be stored: {0}")]
    Batch(String),
}

/// Builds the notifications an action asks for (ack links, silence links): the part of the
/// driver that needs secrets, kept out of the store.
pub trait Composer {
    /// Whether `target` is configured now. An incident's plan is the policy as it was when
    /// the incident started; a reload may have removed a target since.
    fn configured(&self, target: &TargetName) -> bool;

    fn compose(
        &self,
        incident: &StoredIncident,
        target: &TargetName,
        step: usize,
        kind: crate::domain::NotificationKind,
        now: Timestamp,
    ) -> Notification;
}

/// An incident row.
#[derive(Debug, Clone)]
pub struct StoredIncident {
    pub id: i64,
    pub group_key: GroupKey,
    pub group: AlertGroup,
    pub machine: Incident,
}

/// What a webhook did, for the answer and the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IngestOutcome {
    /// A new incident started escalating.
    Started,
    /// An open incident got the latest alerts (Alertmanager repeats, HA duplicates).
    Refreshed,
    Resolved,
    /// A resolve for no open incident (already resolved, or never seen).
    Ignored,
}

/// What an acknowledge did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckOutcome {
    Acknowledged,
    /// Already acknowledged, silenced or resolved: nothing changed.
    NotEscalating,
    UnknownIncident,
    /// The link's nonce was used before.
    Replayed,
}

/// One outbox row ready for delivery.
#[derive(Debug, Clone)]
pub struct OutboxItem {
    pub id: i64,
    pub notification: Notification,
    pub attempts: u32,
    pub created_at: Timestamp,
    pub next_try: Timestamp,
}

/// Side effects of a transaction the caller reports in metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Effects {
    pub queued: usize,
    /// Notifications dead-lettered at once: their target is no longer configured.
    pub unconfigured: Vec<TargetName>,
    pub steps: Vec<PolicyName>,
    pub stopped: Vec<StopReason>,
}

/// Why a notification for a target missing from the current policy file is dead-lettered.
pub const UNCONFIGURED: &str =
    "target is no longer configured (removed or renamed in the policy file since the incident started)";

#[derive(Clone)]
pub struct Store {
    /// Both connections sit behind this one lock: SQLite never sees two writers at once, so
    /// nobody waits in SQLite's sleeping busy handler (which added 100 ms stalls under load).
    conns: Arc<Mutex<Connections>>,
}

struct Connections {
    /// Incidents and the outbox rows they create: synchronous=FULL, one fsync per commit.
    main: Connection,
    /// Delivery bookkeeping (marking notifications delivered, retried, dead) goes through a
    /// second connection with synchronous=NORMAL: no fsync per delivery. A power loss may
    /// forget that a notification was sent, so it is sent again: at-least-once, with the
    /// same ntfy sequence id and PagerDuty dedup_key, so the repeat replaces the page.
    delivery: Connection,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS incidents (
    id INTEGER PRIMARY KEY,
    policy TEXT NOT NULL,
    group_key TEXT NOT NULL,
    open INTEGER NOT NULL,
    machine TEXT NOT NULL,
    alert_group TEXT NOT NULL,
    next_due INTEGER,
    started_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS incidents_one_open ON incidents(policy, group_key) WHERE open = 1;
CREATE INDEX IF NOT EXISTS incidents_due ON incidents(next_due) WHERE next_due IS NOT NULL;
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY,
    incident_id INTEGER NOT NULL,
    target TEXT NOT NULL,
    payload TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    next_try INTEGER NOT NULL,
    last_error TEXT,
    created_at INTEGER NOT NULL,
    done_at INTEGER
);
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox(target, id) WHERE status = 'pending';
CREATE TABLE IF NOT EXISTS ack_nonces (
    nonce TEXT PRIMARY KEY,
    incident_id INTEGER NOT NULL,
    used_at INTEGER NOT NULL
);
";

impl Store {
    /// Opens (creating) `dir/relay.db`.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Task(format!("cannot create {}: {e}", dir.display())))?;
        Self::open_file(&dir.join("relay.db"))
    }

    pub fn open_file(path: &Path) -> Result<Self, StoreError> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // FULL: a committed webhook survives power loss, not only a process crash.
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "busy_timeout", 5000)?;
        conn.execute_batch(SCHEMA)?;
        let delivery = Connection::open(path)?;
        delivery.pragma_update(None, "synchronous", "NORMAL")?;
        delivery.pragma_update(None, "busy_timeout", 5000)?;
        Ok(Self {
            conns: Arc::new(Mutex::new(Connections {
                main: conn,
                delivery,
            })),
        })
    }

    /// Runs `f` with the main connection (synchronous=FULL) on a blocking thread.
    pub async fn run<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.run_on(|conns| &mut conns.main, f).await
    }

    /// Like [`Store::run`], on the delivery connection (synchronous=NORMAL).
    pub async fn run_delivery<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.run_on(|conns| &mut conns.delivery, f).await
    }

    async fn run_on<T, F>(
        &self,
        pick: fn(&mut Connections) -> &mut Connection,
        f: F,
    ) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let conns = Arc::clone(&self.conns);
        tokio::task::spawn_blocking(move || {
            let mut guard = conns.lock().unwrap_or_else(|e| e.into_inner());
            f(pick(&mut guard))
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
    }

    /// Blocking access for tests and the CLI.
    pub fn with<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut guard = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut guard.main)
    }

    /// Checks the database accepts writes (for `/ready`).
    pub async fn writable(&self) -> Result<(), StoreError> {
        self.run(|conn| {
            conn.execute_batch("BEGIN IMMEDIATE; ROLLBACK;")?;
            Ok(())
        })
        .await
    }
}
