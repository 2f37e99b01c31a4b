//! Durable state as rows and transactions, behind one contract that each backend implements:
//! [`Store`] runs a unit of work in a transaction, [`Tx`] is what the work may read and write.
//! The store makes no domain decisions: what to write is decided by the engine, and
//! [`commit`] writes an engine [`Transition`] as it is. Backends: [`sqlite`] (the embedded
//! default) and [`postgres`] (state off the machine). [`contract`] holds the tests every
//! backend must pass.
//!
//! Calls are blocking; async code goes through [`StoreHandle`] (`spawn_blocking`).

pub mod contract;
pub mod history;
pub mod postgres;
pub mod sqlite;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::domain::{GroupKey, Notification, PolicyName, TargetName, Timestamp};
use crate::engine::{
    EventKind, IncidentEvent, IncidentRecord, IncidentWrite, NewEvent, NewOutbox, Override,
    Transition,
};

pub use history::{
    ClosedIncident, Cursor, HistoryFilter, HistoryQuery, PageBucket, Pruned, Seek, BUCKET_MS,
};
pub use postgres::{DatabaseUrl, PostgresStore};
pub use sqlite::SqliteStore;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("PostgreSQL: {0}")]
    Postgres(PgError),
    #[error("stored JSON is invalid: {0}")]
    Json(#[from] serde_json::Error),
    #[error("the store task failed: {0}")]
    Task(String),
    #[error("the webhook could not be stored: {0}")]
    Batch(String),
    #[error("{0}")]
    Open(String),
    #[error("{0}")]
    Undecodable(BadRow),
    /// The database did not answer in time (down, or a network path that stopped
    /// forwarding): the connection is closed and the work is not done.
    #[error("{0}")]
    Unavailable(String),
}

/// The kinds of [`StoreError::timeout_kind`].
pub const TIMEOUT_KINDS: [&str; 5] = [
    "lock",
    "statement",
    "idle_transaction",
    "no_answer",
    "deadlock",
];

impl StoreError {
    /// What the store gave up waiting for, if this error is a timeout: `lock` (another
    /// relay held a lock past `lock_timeout`), `statement` (`statement_timeout`),
    /// `idle_transaction` (the server ended this relay's transaction, left idle too long),
    /// `no_answer` (the database did not answer in time), `deadlock`.
    pub fn timeout_kind(&self) -> Option<&'static str> {
        match self {
            Self::Unavailable(_) => Some("no_answer"),
            Self::Postgres(e) => match e.code()? {
                "55P03" => Some("lock"),
                "57014" => Some("statement"),
                "25P03" => Some("idle_transaction"),
                "40P01" => Some("deadlock"),
                _ => None,
            },
            _ => None,
        }
    }
}

/// A PostgreSQL error shown with its cause: the server's message, detail and hint (the
/// driver's own `Display` stops at "db error").
#[derive(Debug)]
pub struct PgError(pub tokio_postgres::Error);

impl PgError {
    /// The SQLSTATE code of a server error (`23505` for a unique violation, …).
    pub fn code(&self) -> Option<&str> {
        self.0.code().map(|c| c.code())
    }
}

impl std::fmt::Display for PgError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(db) = self.0.as_db_error() {
            return write!(f, "{}", db.to_string().replace('\n', "; "));
        }
        write!(f, "{}", self.0)?;
        let mut cause = std::error::Error::source(&self.0);
        while let Some(error) = cause {
            write!(f, ": {error}")?;
            cause = error.source();
        }
        Ok(())
    }
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(error: tokio_postgres::Error) -> Self {
        Self::Postgres(PgError(error))
    }
}

/// A row that cannot be read back (damaged, or written by something else): quarantined by
/// the application layer, never allowed to block the rows around it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRow {
    pub table: &'static str,
    pub id: i64,
    pub error: String,
}

impl std::fmt::Display for BadRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} row {} cannot be read: {}",
            self.table, self.id, self.error
        )
    }
}

/// Rows of a query, and those of its rows that could not be read.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded<T> {
    pub rows: Vec<T>,
    pub bad: Vec<BadRow>,
}

/// An incident row taken out of service, for the dead-letter listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quarantined {
    pub id: i64,
    pub reason: String,
    pub at: Timestamp,
}

/// How durable a transaction must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Reads only.
    Read,
    /// Survives power loss once committed (incidents and the notifications they queue).
    Durable,
    /// Delivery bookkeeping: a power loss may forget it, so a notification is sent again
    /// with the same idempotency key (ntfy sequence id, PagerDuty dedup_key).
    Relaxed,
}

/// How a delivery attempt ended, as recorded on its outbox row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finish {
    Delivered,
    Retry { next_try: Timestamp, error: String },
    Dead { error: String },
}

/// One outbox row ready for delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxItem {
    pub id: i64,
    pub notification: Notification,
    pub attempts: u32,
    pub created_at: Timestamp,
    pub next_try: Timestamp,
}

/// A notification given up on: refused by its vendor, or its target was removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub id: i64,
    pub incident_id: i64,
    pub target: String,
    pub attempts: u32,
    pub reason: String,
    pub created_at: Timestamp,
    pub dead_at: Timestamp,
}

/// A console session as stored (its id only as a hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleSession {
    pub id_hash: String,
    pub person: String,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    /// The browser it was made in, as it said (for "your sessions").
    pub user_agent: String,
}

/// Gauges: notifications waiting and incidents open.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub pending: i64,
    pub open: i64,
}

/// What a unit of work may read and write inside its transaction.
pub trait Tx {
    /// The open incident of `policy` for `group`, if any.
    fn open_incident(
        &mut self,
        policy: &PolicyName,
        group: &GroupKey,
    ) -> Result<Loaded<IncidentRecord>, StoreError>;
    /// One incident; `Err(Undecodable)` if its row cannot be read.
    fn incident(&mut self, id: i64) -> Result<Option<IncidentRecord>, StoreError>;
    /// The incidents among `ids` that exist, those that cannot be read in `bad`. A backend a
    /// network away answers it in one round trip.
    fn incidents_among(&mut self, ids: &[i64]) -> Result<Loaded<IncidentRecord>, StoreError> {
        let mut loaded = Loaded {
            rows: Vec::new(),
            bad: Vec::new(),
        };
        for &id in ids {
            match self.incident(id) {
                Ok(Some(record)) => loaded.rows.push(record),
                Ok(None) => {}
                Err(StoreError::Undecodable(bad)) => loaded.bad.push(bad),
                Err(other) => return Err(other),
            }
        }
        Ok(loaded)
    }
    /// Incidents whose next step is due at `now`, earliest first, at most `limit`.
    fn due_incidents(
        &mut self,
        now: Timestamp,
        limit: u32,
    ) -> Result<Loaded<IncidentRecord>, StoreError>;
    /// Open incidents, oldest first, at most `limit`.
    fn open_incidents(&mut self, limit: u32) -> Result<Loaded<IncidentRecord>, StoreError>;
    /// Takes a row that cannot be read out of service: an incident is closed and no longer
    /// due, an outbox row dead-lettered, both with the reason.
    fn quarantine(&mut self, row: &BadRow, now: Timestamp) -> Result<(), StoreError>;
    /// Incident rows quarantined, newest first.
    fn quarantined(&mut self, limit: u32) -> Result<Vec<Quarantined>, StoreError>;
    /// When the next step of any incident is due.
    fn next_due(&mut self) -> Result<Option<Timestamp>, StoreError>;
    /// An id for a new incident, greater than any given before (a backend may skip numbers:
    /// one taken by a transaction that rolled back). Only in a writing transaction.
    fn next_incident_id(&mut self) -> Result<i64, StoreError>;
    fn insert_incident(
        &mut self,
        incident: &IncidentRecord,
        now: Timestamp,
    ) -> Result<(), StoreError>;
    fn update_incident(
        &mut self,
        incident: &IncidentRecord,
        now: Timestamp,
    ) -> Result<(), StoreError>;
    /// Queues a notification (or records it dead at once). A backend may send the write
    /// with the transaction's next statement: its failure then fails that statement or the
    /// commit, never goes unnoticed.
    fn insert_outbox(&mut self, row: &NewOutbox, now: Timestamp) -> Result<(), StoreError>;
    /// Marks the incident's firing notifications still pending as superseded.
    fn supersede(
        &mut self,
        incident: i64,
        reason: &str,
        now: Timestamp,
    ) -> Result<usize, StoreError>;
    /// The targets that have notifications of `incident` still waiting for delivery.
    fn waiting_targets(&mut self, incident: i64) -> Result<Vec<TargetName>, StoreError>;
    /// [`Tx::waiting_targets`] of each of `incidents` (one with none waiting is left out).
    /// A backend a network away answers it in one round trip.
    fn waiting_targets_of(
        &mut self,
        incidents: &[i64],
    ) -> Result<BTreeMap<i64, Vec<TargetName>>, StoreError> {
        let mut waiting = BTreeMap::new();
        for &id in incidents {
            let targets = self.waiting_targets(id)?;
            if !targets.is_empty() {
                waiting.insert(id, targets);
            }
        }
        Ok(waiting)
    }
    /// The oldest pending notification of `target` (`Err(BadRow)` if it cannot be read).
    fn outbox_head(
        &mut self,
        target: &TargetName,
    ) -> Result<Option<Result<OutboxItem, BadRow>>, StoreError>;
    /// Every open incident and pending notification that cannot be read (a scan at start).
    fn undecodable(&mut self) -> Result<Vec<BadRow>, StoreError>;
    fn finish(&mut self, id: i64, finish: &Finish, now: Timestamp) -> Result<(), StoreError>;
    /// Targets that have pending notifications.
    fn pending_targets(&mut self) -> Result<Vec<TargetName>, StoreError>;
    /// Dead-letters every pending notification of `target`; returns the incident of each
    /// (one entry per notification).
    fn dead_letter_target(
        &mut self,
        target: &TargetName,
        reason: &str,
        now: Timestamp,
    ) -> Result<Vec<i64>, StoreError>;
    /// The latest dead letters, newest first.
    fn dead_letters(&mut self, limit: u32) -> Result<Vec<DeadLetter>, StoreError>;
    /// Records an acknowledge link's nonce; `false` if it was recorded before.
    fn use_nonce(&mut self, nonce: &str, incident: i64, now: Timestamp)
        -> Result<bool, StoreError>;
    /// Whether an acknowledge link's nonce was used already (read only: a page that shows
    /// the link does not use it).
    fn nonce_used(&mut self, nonce: &str) -> Result<bool, StoreError>;
    fn counts(&mut self) -> Result<Counts, StoreError>;
    /// Overrides not removed that end after `t`, oldest first.
    fn overrides(&mut self, t: Timestamp) -> Result<Vec<Override>, StoreError>;
    /// Stores an override (its `id` is ignored); returns its id.
    fn insert_override(&mut self, o: &Override, now: Timestamp) -> Result<i64, StoreError>;
    /// Removes an override; `false` if there was none by that id.
    fn remove_override(&mut self, id: i64, now: Timestamp) -> Result<bool, StoreError>;
    /// Records that a shift's handoff was announced; `false` if it had been already.
    fn mark_handoff(&mut self, shift: &str, now: Timestamp) -> Result<bool, StoreError>;
    /// Adds to an incident's timeline (sent with the next statement, like `insert_outbox`).
    fn insert_event(&mut self, event: &NewEvent, now: Timestamp) -> Result<(), StoreError>;
    /// The latest `limit` events of an incident, oldest first.
    fn events(&mut self, incident: i64, limit: u32) -> Result<Vec<IncidentEvent>, StoreError>;
    /// The latest `limit` events of `kind` about `target` (a target's name, `person.alice`)
    /// at or after `since`, across incidents, newest first.
    fn events_for_target(
        &mut self,
        target: &str,
        kind: EventKind,
        since: Timestamp,
        limit: u32,
    ) -> Result<Vec<IncidentEvent>, StoreError>;
    /// Closed incidents (not quarantined) that `q` selects, newest first, at most its limit
    /// (rows that cannot be read come back in `bad`).
    fn closed_incidents(&mut self, q: &HistoryQuery) -> Result<Loaded<ClosedIncident>, StoreError>;
    /// The `delivered` events at `period.0` ≤ at < `period.1` whose target starts with
    /// `target_prefix` and whose detail starts with `detail_prefix`, counted by target and
    /// quarter hour ([`BUCKET_MS`]), by target and in time order, at most `limit` buckets.
    fn page_buckets(
        &mut self,
        period: (Timestamp, Timestamp),
        target_prefix: &str,
        detail_prefix: &str,
        limit: u32,
    ) -> Result<Vec<PageBucket>, StoreError>;
    /// The [`history::ESCALATION_KINDS`] events of every incident with an `acknowledged`
    /// event at `period.0` ≤ at < `period.1`, by incident and in order, at most `limit`.
    fn acknowledged_timelines(
        &mut self,
        period: (Timestamp, Timestamp),
        limit: u32,
    ) -> Result<Vec<IncidentEvent>, StoreError>;
    /// Deletes at most `limit` incidents closed before `before`, oldest first, with their
    /// events, notifications and acknowledge-link nonces. Never an open incident, nor one
    /// with a notification still waiting for delivery.
    fn prune_closed(&mut self, before: Timestamp, limit: u32) -> Result<Pruned, StoreError>;
    /// Keeps a console sign-in link (its token hashed) until `expires`.
    fn insert_signin(
        &mut self,
        token_hash: &str,
        person: &str,
        expires: Timestamp,
        now: Timestamp,
    ) -> Result<(), StoreError>;
    /// Uses a sign-in link: the person it was for, if it exists, is unused and unexpired
    /// (then it is used up); `None` otherwise.
    fn use_signin(
        &mut self,
        token_hash: &str,
        now: Timestamp,
    ) -> Result<Option<String>, StoreError>;
    fn insert_session(&mut self, session: &ConsoleSession) -> Result<(), StoreError>;
    /// A live session: not expired, not revoked.
    fn session(
        &mut self,
        id_hash: &str,
        now: Timestamp,
    ) -> Result<Option<ConsoleSession>, StoreError>;
    /// A person's live sessions, newest first.
    fn sessions_of(
        &mut self,
        person: &str,
        now: Timestamp,
    ) -> Result<Vec<ConsoleSession>, StoreError>;
    /// Deletes console sessions ended (expired or revoked) and sign-in links expired before
    /// `before`; returns how many of each.
    fn prune_console(&mut self, before: Timestamp) -> Result<(usize, usize), StoreError>;
    /// Revokes a person's sessions (`only`: one of them); returns how many.
    fn revoke_sessions(
        &mut self,
        person: &str,
        only: Option<&str>,
        now: Timestamp,
    ) -> Result<usize, StoreError>;
    /// Renews `lease` to [`LEASE`] from `now` and keeps it this relay's until the
    /// transaction ends (no other relay can take it over meanwhile); `false` if another relay
    /// holds it now: the work must then write nothing (fencing).
    fn hold(&mut self, lease: &Lease, now: Timestamp) -> Result<bool, StoreError> {
        let _ = (lease, now);
        Ok(true)
    }
}

/// How long a delivery lease lasts after it is taken or renewed. A relay that stops renewing
/// (killed, hung, cut off from the database) loses its targets to another this long after
/// its last renewal at most; the holder renews well before ([`RENEW_EVERY`]).
pub const LEASE: Duration = Duration::from_secs(5);
/// How often a relay renews the leases it works under.
pub const RENEW_EVERY: Duration = Duration::from_millis(1500);

/// Which relay delivers a target's notifications now, among relays sharing one store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The store belongs to this relay alone: nothing to claim or release.
    Alone,
    /// This relay's until the lease expires or is released: deliver, in queue order.
    Ours(Lease),
    /// Another relay (or another worker of this one) holds a live lease on this target: ask
    /// again a little later.
    Theirs,
}

/// A claim on one target's queue that ends at `expires` unless renewed. Every new holder
/// gets a greater `fence`: a holder that stalled and lost its lease finds out before it
/// sends ([`Store::renew`]) and before it records anything ([`Tx::hold`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub target: TargetName,
    pub fence: i64,
    pub expires: Timestamp,
    /// When this lease was taken over from a holder whose lease ran out without being
    /// released (it died, hung or lost the database): that holder.
    pub taken_from: Option<String>,
}

/// A unit of work: runs inside one transaction; an `Err` rolls it back.
pub type Work<'a> = dyn FnMut(&mut dyn Tx) -> Result<(), StoreError> + 'a;

/// The contract of a backend.
pub trait Store: Send + Sync {
    /// Runs `work` in one transaction, committed if it returns `Ok`.
    fn transact(&self, mode: Mode, work: &mut Work<'_>) -> Result<(), StoreError>;

    /// Group commit: every job in its own savepoint of one durable transaction (one fsync for
    /// all); a failing job is rolled back alone. `Err` when the commit itself failed, and then
    /// every job failed.
    fn transact_each(
        &self,
        jobs: &mut [&mut Work<'_>],
    ) -> Result<Vec<Result<(), StoreError>>, StoreError>;

    /// A cheap write that is rolled back: can the store accept a webhook now?
    fn probe(&self) -> Result<(), StoreError>;

    /// Claims the delivery of `target`'s queue for this relay, as a lease lasting [`LEASE`]
    /// from `now`: among relays sharing the store, one delivers a target at a time, so none
    /// sends a notification another is sending, and the queue stays in order. A lease that
    /// ran out (its holder died, hung or lost the database) is taken over. A store that one
    /// relay holds alone (SQLite) answers `Alone`.
    fn claim_target(&self, target: &TargetName, now: Timestamp) -> Result<Claim, StoreError> {
        let _ = (target, now);
        Ok(Claim::Alone)
    }

    /// Extends `lease` to [`LEASE`] from `now`; `None` if it is no longer this relay's (another
    /// took it over after it ran out): then send and record nothing under it.
    fn renew(&self, lease: &Lease, now: Timestamp) -> Result<Option<Lease>, StoreError> {
        let _ = now;
        Ok(Some(lease.clone()))
    }

    /// Gives up `lease` (the step is over): another relay may claim the target at once.
    fn release_target(&self, lease: &Lease) -> Result<(), StoreError> {
        let _ = lease;
        Ok(())
    }

    /// Whether other relays may write to this store too: then a queue that looks empty or
    /// claimed may get work no waker of this relay announces, and is looked at again soon.
    fn shared(&self) -> bool {
        false
    }
}

/// Runs `work` in one transaction of `mode` and returns what it returned.
pub fn run<T>(
    store: &dyn Store,
    mode: Mode,
    mut work: impl FnMut(&mut dyn Tx) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let mut out = None;
    store.transact(mode, &mut |tx| {
        out = Some(work(tx)?);
        Ok(())
    })?;
    out.ok_or_else(|| StoreError::Task("the transaction returned nothing".into()))
}

/// An outbox row whose payload cannot be read back as a notification (its column could not
/// be read as text, or the text is not a notification): what `Tx::undecodable` reports.
pub(crate) fn undecodable_outbox(id: i64, payload: Result<String, String>) -> Option<BadRow> {
    let error = match payload {
        Ok(text) => serde_json::from_str::<crate::domain::Notification>(&text)
            .err()?
            .to_string(),
        Err(e) => e,
    };
    Some(BadRow {
        table: "outbox",
        id,
        error,
    })
}

/// The lock that intake takes on `policy`'s `group` in a store shared by several relays: the
/// first 8 bytes of a SHA-256 of both, the same in every relay and every version. The intake
/// writer orders each batch by it, so that locks are always taken in the same order.
pub fn group_lock_key(policy: &PolicyName, group: &GroupKey) -> i64 {
    use sha2::{Digest, Sha256};
    let mut hash = Sha256::new();
    hash.update(b"alert-relay intake\0");
    hash.update(policy.as_str().as_bytes());
    hash.update(b"\0");
    hash.update(group.as_str().as_bytes());
    let digest = hash.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(first)
}

/// The `kind` column of an outbox row (superseding touches `firing` rows only).
pub(crate) fn kind_column(kind: crate::domain::NotificationKind) -> &'static str {
    kind.as_str()
}

/// Writes an engine transition as it is.
pub fn commit(tx: &mut dyn Tx, t: &Transition, now: Timestamp) -> Result<(), StoreError> {
    for write in &t.incidents {
        match write {
            IncidentWrite::Insert(incident) => tx.insert_incident(incident, now)?,
            IncidentWrite::Update(incident) => tx.update_incident(incident, now)?,
        }
    }
    for (incident, reason) in &t.supersede {
        tx.supersede(*incident, reason, now)?;
    }
    for row in &t.outbox {
        tx.insert_outbox(row, now)?;
    }
    for event in &t.events {
        tx.insert_event(event, now)?;
    }
    Ok(())
}

/// A shared handle for async callers: each unit of work runs on a blocking thread.
#[derive(Clone)]
pub struct StoreHandle {
    store: Arc<dyn Store>,
}

impl StoreHandle {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }

    pub fn store(&self) -> &dyn Store {
        self.store.as_ref()
    }

    pub async fn run<T, F>(&self, mode: Mode, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnMut(&mut dyn Tx) -> Result<T, StoreError> + Send + 'static,
    {
        let store = Arc::clone(&self.store);
        tokio::task::spawn_blocking(move || run(store.as_ref(), mode, work))
            .await
            .map_err(|e| StoreError::Task(e.to_string()))?
    }

    /// Runs `f` with the store on a blocking thread (calls that are not one transaction).
    pub async fn blocking<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Store) -> Result<T, StoreError> + Send + 'static,
    {
        let store = Arc::clone(&self.store);
        tokio::task::spawn_blocking(move || f(store.as_ref()))
            .await
            .map_err(|e| StoreError::Task(e.to_string()))?
    }

    pub async fn probe(&self) -> Result<(), StoreError> {
        let store = Arc::clone(&self.store);
        tokio::task::spawn_blocking(move || store.probe())
            .await
            .map_err(|e| StoreError::Task(e.to_string()))?
    }
}
