//! Durable state in SQLite (WAL, synchronous=FULL): incidents with their escalation state,
//! the outbox of notifications with attempts and next try, and used acknowledge nonces.
//!
//! Every change an event causes (incident state, new outbox rows) is one transaction, so a
//! crash leaves either all of it or none. All calls are blocking: async code goes through
//! `spawn_blocking` (see [`Store::run`]).

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use crate::domain::{AlertGroup, GroupKey, Notification, PolicyName, TargetName, Timestamp};
use crate::escalation::{Action, Event, Incident, Phase, Plan, StopReason};

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
    pub steps: Vec<PolicyName>,
    pub stopped: Vec<StopReason>,
}

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

/// One webhook of a batch: its policy's plan, its group, the composer and the time.
pub type IngestJob<'a> = (&'a Plan, &'a AlertGroup, &'a dyn Composer, Timestamp);
pub type IngestResult = Result<(IngestOutcome, Effects), StoreError>;

/// Applies one webhook's group to its policy's incident, in one transaction.
pub fn ingest(
    conn: &mut Connection,
    plan: &Plan,
    group: &AlertGroup,
    composer: &dyn Composer,
    now: Timestamp,
) -> Result<(IngestOutcome, Effects), StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let result = ingest_in(&tx, plan, group, composer, now)?;
    tx.commit()?;
    Ok(result)
}

/// Applies a batch of webhooks in one transaction (one fsync for all), each in its own
/// savepoint so that one failing webhook does not undo the others. If the commit fails, every
/// webhook of the batch fails (and Alertmanager retries them).
pub fn ingest_batch(
    conn: &mut Connection,
    jobs: &[IngestJob<'_>],
) -> Result<Vec<IngestResult>, StoreError> {
    let mut tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut results = Vec::with_capacity(jobs.len());
    for (plan, group, composer, now) in jobs {
        let savepoint = tx.savepoint()?;
        match ingest_in(&savepoint, plan, group, *composer, *now) {
            Ok(done) => {
                savepoint.commit()?;
                results.push(Ok(done));
            }
            // Dropping the savepoint rolls this webhook back.
            Err(error) => results.push(Err(error)),
        }
    }
    tx.commit()?;
    Ok(results)
}

fn ingest_in(
    conn: &Connection,
    plan: &Plan,
    group: &AlertGroup,
    composer: &dyn Composer,
    now: Timestamp,
) -> Result<(IngestOutcome, Effects), StoreError> {
    let tx = conn;
    let mut effects = Effects::default();
    let open = load_open(tx, &plan.policy, &group.group_key)?;
    let firing = group.status == crate::domain::AlertStatus::Firing;
    let outcome = match (open, firing) {
        (Some(mut incident), true)
            if incident.machine.phase != Phase::Stopped(StopReason::Silenced) =>
        {
            incident.group = group.clone();
            save(tx, &incident, now)?;
            IngestOutcome::Refreshed
        }
        (Some(mut incident), true) => {
            // Silenced earlier, firing again now: the silence is over, so page anew.
            incident.machine.phase = Phase::Closed;
            save(tx, &incident, now)?;
            start(tx, plan, group, composer, now, &mut effects)?;
            IngestOutcome::Started
        }
        (None, true) => {
            start(tx, plan, group, composer, now, &mut effects)?;
            IngestOutcome::Started
        }
        (Some(mut incident), false) => {
            incident.group = group.clone();
            let actions = incident.machine.handle(Event::Resolved, now);
            apply(tx, &mut incident, actions, composer, now, &mut effects)?;
            IngestOutcome::Resolved
        }
        (None, false) => IngestOutcome::Ignored,
    };
    Ok((outcome, effects))
}

fn start(
    tx: &Connection,
    plan: &Plan,
    group: &AlertGroup,
    composer: &dyn Composer,
    now: Timestamp,
    effects: &mut Effects,
) -> Result<(), StoreError> {
    let (machine, actions) = Incident::start(plan.clone(), now);
    tx.execute(
        "INSERT INTO incidents (policy, group_key, open, machine, alert_group, next_due, started_at, updated_at)
         VALUES (?1, ?2, 1, ?3, ?4, ?5, ?6, ?6)",
        params![
            plan.policy.as_str(),
            group.group_key.as_str(),
            serde_json::to_string(&machine)?,
            serde_json::to_string(group)?,
            machine.next_due().map(|t| t.0),
            now.0
        ],
    )?;
    let mut incident = StoredIncident {
        id: tx.last_insert_rowid(),
        group_key: group.group_key.clone(),
        group: group.clone(),
        machine,
    };
    apply(tx, &mut incident, actions, composer, now, effects)
}

/// Persists the incident and queues what its actions ask for.
fn apply(
    tx: &Connection,
    incident: &mut StoredIncident,
    actions: Vec<Action>,
    composer: &dyn Composer,
    now: Timestamp,
    effects: &mut Effects,
) -> Result<(), StoreError> {
    for action in actions {
        match action {
            Action::Notify {
                step,
                kind,
                targets,
            } => {
                if kind == crate::domain::NotificationKind::Firing {
                    effects.steps.push(incident.machine.plan.policy.clone());
                }
                for target in targets {
                    let notification = composer.compose(incident, &target, step, kind, now);
                    tx.execute(
                        "INSERT INTO outbox (incident_id, target, payload, next_try, created_at) VALUES (?1, ?2, ?3, ?4, ?4)",
                        params![incident.id, target.as_str(), serde_json::to_string(&notification)?, now.0],
                    )?;
                    effects.queued += 1;
                }
            }
            Action::Stopped(reason) => effects.stopped.push(reason),
        }
    }
    save(tx, incident, now)
}

fn save(tx: &Connection, incident: &StoredIncident, now: Timestamp) -> Result<(), StoreError> {
    tx.execute(
        "UPDATE incidents SET open = ?2, machine = ?3, alert_group = ?4, next_due = ?5, updated_at = ?6 WHERE id = ?1",
        params![
            incident.id,
            !incident.machine.is_closed(),
            serde_json::to_string(&incident.machine)?,
            serde_json::to_string(&incident.group)?,
            incident.machine.next_due().map(|t| t.0),
            now.0
        ],
    )?;
    Ok(())
}

fn row_to_incident(row: &rusqlite::Row<'_>) -> rusqlite::Result<(i64, String, String, String)> {
    Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
}

fn decode(
    (id, group_key, machine, group): (i64, String, String, String),
) -> Result<StoredIncident, StoreError> {
    Ok(StoredIncident {
        id,
        group_key: GroupKey(group_key),
        group: serde_json::from_str(&group)?,
        machine: serde_json::from_str(&machine)?,
    })
}

fn load_open(
    conn: &Connection,
    policy: &PolicyName,
    key: &GroupKey,
) -> Result<Option<StoredIncident>, StoreError> {
    conn.query_row(
        "SELECT id, group_key, machine, alert_group FROM incidents WHERE policy = ?1 AND group_key = ?2 AND open = 1",
        params![policy.as_str(), key.as_str()],
        row_to_incident,
    )
    .optional()?
    .map(decode)
    .transpose()
}

pub fn load_incident(conn: &Connection, id: i64) -> Result<Option<StoredIncident>, StoreError> {
    conn.query_row(
        "SELECT id, group_key, machine, alert_group FROM incidents WHERE id = ?1",
        params![id],
        row_to_incident,
    )
    .optional()?
    .map(decode)
    .transpose()
}

/// Fires the due steps of every incident due at `now`; returns the effects.
pub fn fire_due(
    conn: &mut Connection,
    composer: &dyn Composer,
    now: Timestamp,
) -> Result<Effects, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut effects = Effects::default();
    let due: Vec<_> = {
        let mut stmt = tx.prepare(
            "SELECT id, group_key, machine, alert_group FROM incidents WHERE next_due IS NOT NULL AND next_due <= ?1 ORDER BY next_due LIMIT 500",
        )?;
        let rows = stmt.query_map(params![now.0], row_to_incident)?;
        rows.collect::<Result<_, _>>()?
    };
    for row in due {
        let mut incident = decode(row)?;
        let actions = incident.machine.handle(Event::Due, now);
        apply(&tx, &mut incident, actions, composer, now, &mut effects)?;
    }
    tx.commit()?;
    Ok(effects)
}

/// Incidents with a step due at `now` (the silence check looks at them first).
pub fn due(conn: &Connection, now: Timestamp) -> Result<Vec<StoredIncident>, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT id, group_key, machine, alert_group FROM incidents WHERE next_due IS NOT NULL AND next_due <= ?1 ORDER BY next_due LIMIT 500",
    )?;
    let rows = stmt.query_map(params![now.0], row_to_incident)?;
    rows.map(|r| decode(r?)).collect()
}

/// When the next step of any incident is due.
pub fn next_due(conn: &Connection) -> Result<Option<Timestamp>, StoreError> {
    Ok(conn
        .query_row(
            "SELECT MIN(next_due) FROM incidents WHERE next_due IS NOT NULL",
            [],
            |r| r.get::<_, Option<i64>>(0),
        )?
        .map(Timestamp))
}

/// Applies a human or Alertmanager stop (`Acknowledged`, `Silenced`) to an incident.
/// `nonce` (ack links) is recorded so that a link works once.
pub fn stop(
    conn: &mut Connection,
    id: i64,
    event: Event,
    nonce: Option<&str>,
    composer: &dyn Composer,
    now: Timestamp,
) -> Result<(AckOutcome, Effects), StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut effects = Effects::default();
    if let Some(nonce) = nonce {
        let fresh = tx.execute(
            "INSERT OR IGNORE INTO ack_nonces (nonce, incident_id, used_at) VALUES (?1, ?2, ?3)",
            params![nonce, id, now.0],
        )?;
        if fresh == 0 {
            return Ok((AckOutcome::Replayed, effects));
        }
    }
    let Some(mut incident) = load_incident(&tx, id)? else {
        tx.commit()?;
        return Ok((AckOutcome::UnknownIncident, effects));
    };
    if !incident.machine.is_escalating() {
        tx.commit()?;
        return Ok((AckOutcome::NotEscalating, effects));
    }
    let actions = incident.machine.handle(event, now);
    apply(&tx, &mut incident, actions, composer, now, &mut effects)?;
    tx.commit()?;
    Ok((AckOutcome::Acknowledged, effects))
}

/// The oldest pending notification of `target` (delivery is in order per target).
pub fn head(conn: &Connection, target: &TargetName) -> Result<Option<OutboxItem>, StoreError> {
    conn.query_row(
        "SELECT id, payload, attempts, created_at, next_try FROM outbox WHERE target = ?1 AND status = 'pending' ORDER BY id LIMIT 1",
        params![target.as_str()],
        |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, u32>(2)?, r.get::<_, i64>(3)?, r.get::<_, i64>(4)?)),
    )
    .optional()?
    .map(|(id, payload, attempts, created, next)| {
        Ok(OutboxItem {
            id,
            notification: serde_json::from_str(&payload)?,
            attempts,
            created_at: Timestamp(created),
            next_try: Timestamp(next),
        })
    })
    .transpose()
}

pub fn mark_delivered(conn: &Connection, id: i64, now: Timestamp) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE outbox SET status = 'delivered', attempts = attempts + 1, done_at = ?2, last_error = NULL WHERE id = ?1",
        params![id, now.0],
    )?;
    Ok(())
}

pub fn mark_retry(
    conn: &Connection,
    id: i64,
    next_try: Timestamp,
    error: &str,
) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE outbox SET attempts = attempts + 1, next_try = ?2, last_error = ?3 WHERE id = ?1",
        params![id, next_try.0, error],
    )?;
    Ok(())
}

pub fn mark_dead(
    conn: &Connection,
    id: i64,
    now: Timestamp,
    error: &str,
) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE outbox SET status = 'dead', attempts = attempts + 1, done_at = ?2, last_error = ?3 WHERE id = ?1",
        params![id, now.0, error],
    )?;
    Ok(())
}

/// Pending notifications for targets the current config does not know (renamed or removed):
/// dead-lettered so they do not wait forever. Returns how many.
pub fn dead_letter_orphans(
    conn: &Connection,
    known: &[TargetName],
    now: Timestamp,
) -> Result<usize, StoreError> {
    let mut stmt = conn.prepare("SELECT DISTINCT target FROM outbox WHERE status = 'pending'")?;
    let targets: Vec<String> = stmt
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let mut count = 0;
    for target in targets
        .iter()
        .filter(|t| !known.iter().any(|k| k.as_str() == t.as_str()))
    {
        count += conn.execute(
            "UPDATE outbox SET status = 'dead', done_at = ?2, last_error = 'target no longer configured' WHERE target = ?1 AND status = 'pending'",
            params![target, now.0],
        )?;
    }
    Ok(count)
}

/// Gauges: pending notifications and open incidents.
pub fn counts(conn: &Connection) -> Result<(i64, i64), StoreError> {
    let pending = conn.query_row(
        "SELECT COUNT(*) FROM outbox WHERE status = 'pending'",
        [],
        |r| r.get(0),
    )?;
    let open = conn.query_row("SELECT COUNT(*) FROM incidents WHERE open = 1", [], |r| {
        r.get(0)
    })?;
    Ok((pending, open))
}
