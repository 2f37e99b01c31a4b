//! The embedded backend: one SQLite file in WAL mode. Durable transactions use a connection
//! with `synchronous=FULL` (one fsync per commit, batched by group commit), delivery
//! bookkeeping a second one with `synchronous=NORMAL`. Schema versions are migrated forward
//! at open (`PRAGMA user_version`).

mod history;

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::{
    BadRow, ClosedIncident, ConsoleSession, Counts, DeadLetter, Finish, HistoryQuery, Loaded, Mode,
    OutboxItem, Pruned, Quarantined, Store, StoreError, Tx, Work,
};
use crate::domain::{GroupKey, IncidentKey, PolicyName, TargetName, Timestamp};
use crate::engine::{EventKind, IncidentEvent, IncidentRecord, NewEvent, NewOutbox, Override};

/// Below this much free space on the data directory's filesystem, the store is not ready:
/// a webhook would fail to commit (and an acknowledged delivery fail to be recorded).
pub const MIN_FREE_BYTES: u64 = 4 << 20;

pub struct SqliteStore {
    /// Both connections sit behind this one lock: SQLite never sees two writers at once, so
    /// nobody waits in SQLite's sleeping busy handler (which added 100 ms stalls under load).
    conns: Mutex<Connections>,
    /// The directory whose filesystem must have room.
    dir: std::path::PathBuf,
    /// The exclusive lock on the data directory, held for the store's life (`open`); the
    /// kernel drops it when the process ends, crash or not.
    _lock: Option<std::fs::File>,
}

struct Connections {
    main: Connection,
    delivery: Connection,
}

/// Forward-only migrations; `MIGRATIONS[i]` takes the schema from version `i` to `i + 1`.
const MIGRATIONS: [&str; 9] = [
    "
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
",
    "
ALTER TABLE incidents ADD COLUMN incident_key TEXT NOT NULL DEFAULT '';
ALTER TABLE outbox ADD COLUMN kind TEXT NOT NULL DEFAULT '';
CREATE INDEX IF NOT EXISTS outbox_pending_incident ON outbox(incident_id) WHERE status = 'pending';
",
    "
ALTER TABLE incidents ADD COLUMN quarantined TEXT;
CREATE TABLE IF NOT EXISTS probe (id INTEGER PRIMARY KEY, at INTEGER NOT NULL);
",
    "
CREATE TABLE IF NOT EXISTS overrides (
    id INTEGER PRIMARY KEY,
    schedule TEXT NOT NULL,
    person TEXT NOT NULL,
    replaces TEXT,
    starts_at INTEGER NOT NULL,
    ends_at INTEGER NOT NULL,
    created_by TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    removed_at INTEGER
);
CREATE INDEX IF NOT EXISTS overrides_live ON overrides(ends_at) WHERE removed_at IS NULL;
CREATE TABLE IF NOT EXISTS handoffs (shift TEXT PRIMARY KEY, announced_at INTEGER NOT NULL);
",
    "
CREATE TABLE incident_events (
    id INTEGER PRIMARY KEY,
    incident_id INTEGER NOT NULL,
    at INTEGER NOT NULL,
    kind TEXT NOT NULL,
    actor TEXT,
    target TEXT,
    detail TEXT NOT NULL
);
CREATE INDEX incident_events_by_incident ON incident_events (incident_id, id);
",
    "
CREATE TABLE console_sessions (
    id_hash TEXT PRIMARY KEY,
    person TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    user_agent TEXT NOT NULL,
    revoked_at INTEGER
);
CREATE INDEX console_sessions_person ON console_sessions (person);
CREATE TABLE signin_links (
    token_hash TEXT PRIMARY KEY,
    person TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at INTEGER
);
",
    // A person's pages received (the console's Me page), without reading every event.
    "
CREATE INDEX IF NOT EXISTS incident_events_by_target
    ON incident_events (target, kind, at, id) WHERE target IS NOT NULL;
",
    history::MIGRATION,
    // The open incidents (the Now page, every start) in order, the quarantined ones, and
    // the pages delivered to people (the history's numbers), without reading the others.
    "
CREATE INDEX IF NOT EXISTS incidents_open ON incidents (id) WHERE open = 1;
CREATE INDEX IF NOT EXISTS incidents_quarantined ON incidents (updated_at, id)
    WHERE quarantined IS NOT NULL;
CREATE INDEX IF NOT EXISTS incident_events_kind_target
    ON incident_events (kind, target, at, incident_id, detail, actor);
",
];

fn console_session(r: &rusqlite::Row<'_>) -> rusqlite::Result<ConsoleSession> {
    Ok(ConsoleSession {
        id_hash: r.get(0)?,
        person: r.get(1)?,
        created_at: Timestamp(r.get(2)?),
        expires_at: Timestamp(r.get(3)?),
        user_agent: r.get(4)?,
    })
}

fn incident_event(r: &rusqlite::Row<'_>) -> rusqlite::Result<IncidentEvent> {
    let kind: String = r.get(3)?;
    Ok(IncidentEvent {
        id: r.get(0)?,
        incident_id: r.get(1)?,
        at: Timestamp(r.get(2)?),
        kind: EventKind::parse(&kind),
        kind_name: kind,
        actor: r.get(4)?,
        target: r.get(5)?,
        detail: r.get(6)?,
    })
}

impl SqliteStore {
    /// Opens (creating) `dir/relay.db`, taking the directory for this process alone: a
    /// second relay on the same directory would send every page twice.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Open(format!("cannot create {}: {e}", dir.display())))?;
        let lock = lock_dir(dir)?;
        let mut store = Self::open_file(&dir.join("relay.db"))?;
        store._lock = Some(lock);
        Ok(store)
    }

    pub fn open_file(path: &Path) -> Result<Self, StoreError> {
        let mut main = Connection::open(path)?;
        main.pragma_update(None, "journal_mode", "WAL")?;
        // FULL: a committed webhook survives power loss, not only a process crash.
        main.pragma_update(None, "synchronous", "FULL")?;
        main.pragma_update(None, "busy_timeout", 5000)?;
        migrate(&mut main)?;
        check_integrity(&main, path)?;
        let delivery = Connection::open(path)?;
        delivery.pragma_update(None, "synchronous", "NORMAL")?;
        delivery.pragma_update(None, "busy_timeout", 5000)?;
        Ok(Self {
            conns: Mutex::new(Connections { main, delivery }),
            dir: path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."))
                .to_owned(),
            _lock: None,
        })
    }

    /// Raw access to both connections (main, delivery), for tests that make writes fail.
    pub fn with_connections<T>(
        &self,
        f: impl FnOnce(&mut Connection, &mut Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        let Connections { main, delivery } = &mut *conns;
        f(main, delivery)
    }

    /// Raw access to the main connection, for tests that damage or inspect the file.
    pub fn with_connection<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut conns.main)
    }
}

/// Takes `dir/lock` exclusively (advisory `flock`) and writes our pid into it; a clear error
/// naming the holder when another process has it.
fn lock_dir(dir: &Path) -> Result<std::fs::File, StoreError> {
    use std::io::{Read, Seek, Write};
    let path = dir.join("lock");
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| StoreError::Open(format!("cannot open {}: {e}", path.display())))?;
    // A relay that is still exiting (a restart) lets go within moments: wait a little.
    let mut tries = 0;
    let locked = loop {
        match file.try_lock() {
            Err(std::fs::TryLockError::WouldBlock) if tries < 30 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            other => break other,
        }
    };
    if let Err(error) = locked {
        let mut holder = String::new();
        let _ = file.read_to_string(&mut holder);
        let holder = holder.trim();
        return Err(StoreError::Open(match error {
            std::fs::TryLockError::WouldBlock => format!(
                "{} is in use by another alert-relay (pid {}): one relay per data directory \
                 (two would send every page twice); stop it, or give this one its own --data-dir \
                 (several replicas share state through PostgreSQL instead)",
                dir.display(),
                if holder.is_empty() { "unknown" } else { holder }
            ),
            std::fs::TryLockError::Error(e) => format!("cannot lock {}: {e}", path.display()),
        }));
    }
    let written = file
        .set_len(0)
        .and_then(|()| file.rewind())
        .and_then(|()| writeln!(file, "{}", std::process::id()));
    if let Err(e) = written {
        tracing::warn!(path = %path.display(), error = %e, "cannot record our pid in the lock file");
    }
    Ok(file)
}

/// A damaged file is a clear error at start, never a relay that answers `/ready` and then
/// fails every webhook.
fn check_integrity(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let problems: Vec<String> = {
        let mut stmt = conn.prepare("PRAGMA quick_check(5)")?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
        rows.collect::<Result<_, _>>()?
    };
    if problems.iter().all(|p| p == "ok") {
        return Ok(());
    }
    Err(StoreError::Open(format!(
        "{} is damaged ({}): stop, keep a copy of the data directory, then restore the last \
         backup (docs/operations.md, backing up) or move the file aside to start empty",
        path.display(),
        problems.join("; ")
    )))
}

fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Exclusive)?;
    let version: usize = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if version > MIGRATIONS.len() {
        return Err(StoreError::Open(format!(
            "the database has schema version {version}, newer than this relay knows ({}): \
             run the newer relay, or restore a backup made before the upgrade",
            MIGRATIONS.len()
        )));
    }
    for (i, step) in MIGRATIONS.iter().enumerate().skip(version) {
        tx.execute_batch(step)?;
        if *step == history::MIGRATION {
            history::backfill(&tx)?;
        }
        tx.pragma_update(None, "user_version", i + 1)?;
    }
    tx.commit()?;
    Ok(())
}

impl Store for SqliteStore {
    fn transact(&self, mode: Mode, work: &mut Work<'_>) -> Result<(), StoreError> {
        let mut conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        let (conn, behavior) = match mode {
            Mode::Read => (&mut conns.main, TransactionBehavior::Deferred),
            Mode::Durable => (&mut conns.main, TransactionBehavior::Immediate),
            Mode::Relaxed => (&mut conns.delivery, TransactionBehavior::Immediate),
        };
        let tx = conn.transaction_with_behavior(behavior)?;
        work(&mut SqliteTx(&tx))?;
        tx.commit()?;
        Ok(())
    }

    fn transact_each(
        &self,
        jobs: &mut [&mut Work<'_>],
    ) -> Result<Vec<Result<(), StoreError>>, StoreError> {
        let mut conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        let mut tx = conns
            .main
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut results = Vec::with_capacity(jobs.len());
        for job in jobs.iter_mut() {
            let savepoint = tx.savepoint()?;
            match job(&mut SqliteTx(&savepoint)) {
                Ok(()) => {
                    savepoint.commit()?;
                    results.push(Ok(()));
                }
                // Dropping the savepoint rolls this job back.
                Err(error) => results.push(Err(error)),
            }
        }
        tx.commit()?;
        Ok(results)
    }

    /// Room on the filesystem, and a write that must allocate new pages (rolled back, so
    /// it costs no fsync): a full disk or a database at its size limit fails here.
    fn probe(&self) -> Result<(), StoreError> {
        let stat = rustix::fs::statvfs(&self.dir).map_err(|e| {
            StoreError::Open(format!(
                "cannot check free space on {}: {e}",
                self.dir.display()
            ))
        })?;
        let free = stat.f_bavail.saturating_mul(stat.f_frsize);
        if free < MIN_FREE_BYTES {
            return Err(StoreError::Open(format!(
                "{} has {free} bytes free, less than the {MIN_FREE_BYTES} needed to accept pages: free some space",
                self.dir.display()
            )));
        }
        let mut conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        let tx = conns
            .main
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute("INSERT INTO probe (at) VALUES (zeroblob(65536))", [])?;
        drop(tx);
        Ok(())
    }
}

/// A transaction or savepoint (both deref to the connection).
struct SqliteTx<'a>(&'a Connection);

const INCIDENT_COLUMNS: &str = "id, incident_key, group_key, machine, alert_group";

type IncidentRow = (i64, String, String, String, String);

fn incident_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<IncidentRow> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
    ))
}

fn decode((id, key, group_key, machine, group): IncidentRow) -> Result<IncidentRecord, BadRow> {
    let bad = |error: String| BadRow {
        table: "incidents",
        id,
        error,
    };
    Ok(IncidentRecord {
        id,
        key: IncidentKey::from_hex(&key).ok_or_else(|| bad("malformed incident key".into()))?,
        group_key: GroupKey(group_key),
        group: serde_json::from_str(&group).map_err(|e| bad(format!("alert_group: {e}")))?,
        machine: serde_json::from_str(&machine).map_err(|e| bad(format!("machine: {e}")))?,
    })
}

impl SqliteTx<'_> {
    fn incidents(
        &self,
        filter: &str,
        args: impl rusqlite::Params,
    ) -> Result<Loaded<IncidentRecord>, StoreError> {
        let mut stmt = self.0.prepare_cached(&format!(
            "SELECT {INCIDENT_COLUMNS} FROM incidents {filter}"
        ))?;
        let mut loaded = Loaded {
            rows: Vec::new(),
            bad: Vec::new(),
        };
        // A column of the wrong type is as unreadable as bad JSON.
        let rows = stmt.query_map(args, |row| {
            Ok(match incident_row(row) {
                Ok(raw) => decode(raw),
                Err(e) => Err(BadRow {
                    table: "incidents",
                    id: row.get(0).unwrap_or_default(),
                    error: e.to_string(),
                }),
            })
        })?;
        for row in rows {
            match row? {
                Ok(record) => loaded.rows.push(record),
                Err(bad) => loaded.bad.push(bad),
            }
        }
        Ok(loaded)
    }
}

impl Tx for SqliteTx<'_> {
    fn open_incident(
        &mut self,
        policy: &PolicyName,
        group: &GroupKey,
    ) -> Result<Loaded<IncidentRecord>, StoreError> {
        self.incidents(
            "WHERE policy = ?1 AND group_key = ?2 AND open = 1",
            params![policy.as_str(), group.as_str()],
        )
    }

    fn incident(&mut self, id: i64) -> Result<Option<IncidentRecord>, StoreError> {
        let mut loaded = self.incidents("WHERE id = ?1", params![id])?;
        if let Some(bad) = loaded.bad.pop() {
            return Err(StoreError::Undecodable(bad));
        }
        Ok(loaded.rows.pop())
    }

    fn due_incidents(
        &mut self,
        now: Timestamp,
        limit: u32,
    ) -> Result<Loaded<IncidentRecord>, StoreError> {
        self.incidents(
            "WHERE next_due IS NOT NULL AND next_due <= ?1 ORDER BY next_due, id LIMIT ?2",
            params![now.0, limit],
        )
    }

    fn open_incidents(&mut self, limit: u32) -> Result<Loaded<IncidentRecord>, StoreError> {
        self.incidents("WHERE open = 1 ORDER BY id LIMIT ?1", params![limit])
    }

    fn quarantine(&mut self, row: &BadRow, now: Timestamp) -> Result<(), StoreError> {
        let reason = row.to_string();
        match row.table {
            "incidents" => self.0.prepare_cached(
                "UPDATE incidents SET open = 0, next_due = NULL, quarantined = ?2, updated_at = ?3, closed_at = COALESCE(closed_at, ?3) WHERE id = ?1",
            )?
            .execute(params![row.id, reason, now.0])?,
            _ => self.0.prepare_cached(
                "UPDATE outbox SET status = 'dead', done_at = ?2, last_error = ?3 WHERE id = ?1",
            )?
            .execute(params![row.id, now.0, reason])?,
        };
        Ok(())
    }

    fn quarantined(&mut self, limit: u32) -> Result<Vec<Quarantined>, StoreError> {
        let mut stmt = self.0.prepare_cached(
            "SELECT id, quarantined, updated_at FROM incidents WHERE quarantined IS NOT NULL ORDER BY updated_at DESC, id DESC LIMIT ?1",
        )?;
        let rows = stmt.query_map(params![limit], |r| {
            Ok(Quarantined {
                id: r.get(0)?,
                reason: r.get(1)?,
                at: Timestamp(r.get(2)?),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn undecodable(&mut self) -> Result<Vec<BadRow>, StoreError> {
        let mut bad = self.incidents("WHERE open = 1", [])?.bad;
        let mut stmt = self
            .0
            .prepare_cached("SELECT id, payload FROM outbox WHERE status = 'pending'")?;
        let rows = stmt.query_map([], |r| {
            let id: i64 = r.get(0)?;
            Ok((id, r.get::<_, String>(1)))
        })?;
        for row in rows {
            let (id, payload) = row?;
            bad.extend(super::undecodable_outbox(
                id,
                payload.map_err(|e| e.to_string()),
            ));
        }
        Ok(bad)
    }

    fn next_due(&mut self) -> Result<Option<Timestamp>, StoreError> {
        Ok(self
            .0
            .prepare_cached("SELECT MIN(next_due) FROM incidents WHERE next_due IS NOT NULL")?
            .query_row([], |r| r.get::<_, Option<i64>>(0))?
            .map(Timestamp))
    }

    fn next_incident_id(&mut self) -> Result<i64, StoreError> {
        Ok(self
            .0
            .prepare_cached("SELECT COALESCE(MAX(id), 0) + 1 FROM incidents")?
            .query_row([], |r| r.get(0))?)
    }

    fn insert_incident(
        &mut self,
        incident: &IncidentRecord,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.0.prepare_cached(
            "INSERT INTO incidents (id, incident_key, policy, group_key, open, machine, alert_group, next_due, started_at, updated_at, closed_at, severity, alertname)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, CASE WHEN ?5 THEN NULL ELSE ?10 END, ?11, ?12)",
        )?
        .execute(params![
            incident.id,
            incident.key.to_hex(),
            incident.policy().as_str(),
            incident.group_key.as_str(),
            !incident.machine.is_closed(),
            serde_json::to_string(&incident.machine)?,
            serde_json::to_string(&incident.group)?,
            incident.machine.next_due().map(|t| t.0),
            incident.machine.started_at.0,
            now.0,
            incident.group.severity().as_str(),
            incident.group.alertname(),
        ])?;
        Ok(())
    }

    fn update_incident(
        &mut self,
        incident: &IncidentRecord,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.0.prepare_cached(
            "UPDATE incidents SET open = ?2, machine = ?3, alert_group = ?4, next_due = ?5, updated_at = ?6,
             closed_at = CASE WHEN ?2 THEN NULL ELSE COALESCE(closed_at, ?6) END, severity = ?7, alertname = ?8 WHERE id = ?1",
        )?
        .execute(params![
            incident.id,
            !incident.machine.is_closed(),
            serde_json::to_string(&incident.machine)?,
            serde_json::to_string(&incident.group)?,
            incident.machine.next_due().map(|t| t.0),
            now.0,
            incident.group.severity().as_str(),
            incident.group.alertname(),
        ])?;
        Ok(())
    }

    fn insert_outbox(&mut self, row: &NewOutbox, now: Timestamp) -> Result<(), StoreError> {
        let n = &row.notification;
        self.0.prepare_cached(
            "INSERT INTO outbox (incident_id, target, kind, payload, status, next_try, created_at, done_at, last_error)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, ?7, ?8)",
        )?
        .execute(params![
            n.incident_id,
            n.target.as_str(),
            super::kind_column(n.kind),
            serde_json::to_string(n)?,
            if row.dead.is_some() { "dead" } else { "pending" },
            now.0,
            row.dead.as_ref().map(|_| now.0),
            row.dead.as_deref(),
        ])?;
        Ok(())
    }

    fn supersede(
        &mut self,
        incident: i64,
        reason: &str,
        now: Timestamp,
    ) -> Result<usize, StoreError> {
        Ok(self.0.prepare_cached(
            "UPDATE outbox SET status = 'superseded', done_at = ?2, last_error = ?3 WHERE incident_id = ?1 AND status = 'pending' AND kind = 'firing'",
        )?
        .execute(params![incident, now.0, reason])?)
    }

    fn waiting_targets(&mut self, incident: i64) -> Result<Vec<TargetName>, StoreError> {
        let mut stmt = self.0.prepare_cached(
            "SELECT DISTINCT target FROM outbox WHERE incident_id = ?1 AND status = 'pending' ORDER BY target",
        )?;
        let rows = stmt.query_map(params![incident], |r| r.get::<_, String>(0))?;
        Ok(rows.map(|r| r.map(TargetName)).collect::<Result<_, _>>()?)
    }

    fn outbox_head(
        &mut self,
        target: &TargetName,
    ) -> Result<Option<Result<OutboxItem, BadRow>>, StoreError> {
        type Rest = Result<(String, u32, i64, i64), rusqlite::Error>;
        let head: Option<(i64, Rest)> = self
            .0
            .prepare_cached(
                "SELECT id, payload, attempts, created_at, next_try FROM outbox WHERE target = ?1 AND status = 'pending' ORDER BY id LIMIT 1",
            )?
            .query_row(params![target.as_str()], |r| {
                let rest = (|| Ok((r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))();
                Ok((r.get(0)?, rest))
            })
            .optional()?;
        Ok(head.map(|(id, rest)| {
            let bad = |error: String| BadRow {
                table: "outbox",
                id,
                error,
            };
            let (payload, attempts, created, next) = rest.map_err(|e| bad(e.to_string()))?;
            Ok(OutboxItem {
                id,
                notification: serde_json::from_str(&payload).map_err(|e| bad(e.to_string()))?,
                attempts,
                created_at: Timestamp(created),
                next_try: Timestamp(next),
            })
        }))
    }

    fn finish(&mut self, id: i64, finish: &Finish, now: Timestamp) -> Result<(), StoreError> {
        match finish {
            Finish::Delivered => self.0.prepare_cached(
                "UPDATE outbox SET status = 'delivered', attempts = attempts + 1, done_at = ?2, last_error = NULL WHERE id = ?1",
            )?
            .execute(params![id, now.0])?,
            Finish::Retry { next_try, error } => self.0.prepare_cached(
                "UPDATE outbox SET attempts = attempts + 1, next_try = ?2, last_error = ?3 WHERE id = ?1",
            )?
            .execute(params![id, next_try.0, error])?,
            Finish::Dead { error } => self.0.prepare_cached(
                "UPDATE outbox SET status = 'dead', attempts = attempts + 1, done_at = ?2, last_error = ?3 WHERE id = ?1",
            )?
            .execute(params![id, now.0, error])?,
        };
        Ok(())
    }

    fn pending_targets(&mut self) -> Result<Vec<TargetName>, StoreError> {
        let mut stmt = self
            .0
            .prepare_cached("SELECT DISTINCT target FROM outbox WHERE status = 'pending'")?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
        Ok(rows.map(|r| r.map(TargetName)).collect::<Result<_, _>>()?)
    }

    fn dead_letter_target(
        &mut self,
        target: &TargetName,
        reason: &str,
        now: Timestamp,
    ) -> Result<Vec<i64>, StoreError> {
        Ok(self
            .0
            .prepare_cached(
                "UPDATE outbox SET status = 'dead', done_at = ?2, last_error = ?3 WHERE target = ?1 AND status = 'pending' RETURNING incident_id",
            )?
            .query_map(params![target.as_str(), now.0, reason], |r| r.get(0))?
            .collect::<Result<_, _>>()?)
    }

    fn dead_letters(&mut self, limit: u32) -> Result<Vec<DeadLetter>, StoreError> {
        let mut stmt = self.0.prepare_cached(
            "SELECT id, incident_id, target, attempts, COALESCE(last_error, ''), created_at, COALESCE(done_at, created_at) \
             FROM outbox WHERE status = 'dead' ORDER BY id DESC LIMIT ?1",
        )?;
        let rows = stmt.query_map(params![limit], |r| {
            Ok(DeadLetter {
                id: r.get(0)?,
                incident_id: r.get(1)?,
                target: r.get(2)?,
                attempts: r.get(3)?,
                reason: r.get(4)?,
                created_at: Timestamp(r.get(5)?),
                dead_at: Timestamp(r.get(6)?),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn use_nonce(
        &mut self,
        nonce: &str,
        incident: i64,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        Ok(self.0.prepare_cached(
            "INSERT OR IGNORE INTO ack_nonces (nonce, incident_id, used_at) VALUES (?1, ?2, ?3)",
        )?
        .execute(params![nonce, incident, now.0])?
            == 1)
    }

    fn nonce_used(&mut self, nonce: &str) -> Result<bool, StoreError> {
        Ok(self
            .0
            .prepare_cached("SELECT COUNT(*) FROM ack_nonces WHERE nonce = ?1")?
            .query_row(params![nonce], |r| r.get::<_, i64>(0))?
            > 0)
    }

    fn overrides(&mut self, t: Timestamp) -> Result<Vec<Override>, StoreError> {
        let mut stmt = self.0.prepare_cached(
            "SELECT id, schedule, person, replaces, starts_at, ends_at, created_by FROM overrides WHERE removed_at IS NULL AND ends_at > ?1 ORDER BY id",
        )?;
        let rows = stmt.query_map(params![t.0], |r| {
            Ok(Override {
                id: r.get(0)?,
                schedule: r.get(1)?,
                person: r.get(2)?,
                replaces: r.get(3)?,
                starts_at: Timestamp(r.get(4)?),
                ends_at: Timestamp(r.get(5)?),
                created_by: r.get(6)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn insert_override(&mut self, o: &Override, now: Timestamp) -> Result<i64, StoreError> {
        self.0.prepare_cached(
            "INSERT INTO overrides (schedule, person, replaces, starts_at, ends_at, created_by, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?
        .execute(params![o.schedule, o.person, o.replaces, o.starts_at.0, o.ends_at.0, o.created_by, now.0])?;
        Ok(self.0.last_insert_rowid())
    }

    fn remove_override(&mut self, id: i64, now: Timestamp) -> Result<bool, StoreError> {
        Ok(self
            .0
            .prepare_cached(
                "UPDATE overrides SET removed_at = ?2 WHERE id = ?1 AND removed_at IS NULL",
            )?
            .execute(params![id, now.0])?
            == 1)
    }

    fn mark_handoff(&mut self, shift: &str, now: Timestamp) -> Result<bool, StoreError> {
        Ok(self
            .0
            .prepare_cached("INSERT OR IGNORE INTO handoffs (shift, announced_at) VALUES (?1, ?2)")?
            .execute(params![shift, now.0])?
            == 1)
    }

    fn insert_event(&mut self, e: &NewEvent, now: Timestamp) -> Result<(), StoreError> {
        self.0
            .prepare_cached(
                "INSERT INTO incident_events (incident_id, at, kind, actor, target, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![
                e.incident_id,
                now.0,
                e.kind.as_str(),
                e.actor.as_deref(),
                e.target.as_ref().map(TargetName::as_str),
                e.detail,
            ])?;
        Ok(())
    }

    fn closed_incidents(&mut self, q: &HistoryQuery) -> Result<Loaded<ClosedIncident>, StoreError> {
        history::closed_incidents(self.0, q)
    }

    fn page_buckets(
        &mut self,
        period: (Timestamp, Timestamp),
        target_prefix: &str,
        detail_prefix: &str,
        limit: u32,
    ) -> Result<Vec<crate::store::PageBucket>, StoreError> {
        history::page_buckets(self.0, period, (target_prefix, detail_prefix), limit)
    }

    fn acknowledged_timelines(
        &mut self,
        period: (Timestamp, Timestamp),
        limit: u32,
    ) -> Result<Vec<IncidentEvent>, StoreError> {
        history::acknowledged_timelines(self.0, period, limit)
    }

    fn prune_closed(&mut self, before: Timestamp, limit: u32) -> Result<Pruned, StoreError> {
        history::prune_closed(self.0, before, limit)
    }

    fn prune_console(&mut self, before: Timestamp) -> Result<(usize, usize), StoreError> {
        let sessions = self
            .0
            .prepare_cached(
                "DELETE FROM console_sessions WHERE expires_at < ?1 OR revoked_at < ?1",
            )?
            .execute(params![before.0])?;
        let links = self
            .0
            .prepare_cached("DELETE FROM signin_links WHERE expires_at < ?1")?
            .execute(params![before.0])?;
        Ok((sessions, links))
    }

    fn insert_signin(
        &mut self,
        token_hash: &str,
        person: &str,
        expires: Timestamp,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.0
            .prepare_cached(
                "INSERT INTO signin_links (token_hash, person, created_at, expires_at) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![token_hash, person, now.0, expires.0])?;
        Ok(())
    }

    fn use_signin(
        &mut self,
        token_hash: &str,
        now: Timestamp,
    ) -> Result<Option<String>, StoreError> {
        Ok(self
            .0
            .prepare_cached(
                "UPDATE signin_links SET used_at = ?2 WHERE token_hash = ?1 AND used_at IS NULL AND expires_at > ?2 RETURNING person",
            )?
            .query_map(params![token_hash, now.0], |r| r.get(0))?
            .next()
            .transpose()?)
    }

    fn insert_session(&mut self, session: &ConsoleSession) -> Result<(), StoreError> {
        self.0
            .prepare_cached(
                "INSERT INTO console_sessions (id_hash, person, created_at, expires_at, user_agent) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                session.id_hash,
                session.person,
                session.created_at.0,
                session.expires_at.0,
                session.user_agent
            ])?;
        Ok(())
    }

    fn session(
        &mut self,
        id_hash: &str,
        now: Timestamp,
    ) -> Result<Option<ConsoleSession>, StoreError> {
        Ok(self
            .0
            .prepare_cached(
                "SELECT id_hash, person, created_at, expires_at, user_agent FROM console_sessions WHERE id_hash = ?1 AND revoked_at IS NULL AND expires_at > ?2",
            )?
            .query_map(params![id_hash, now.0], console_session)?
            .next()
            .transpose()?)
    }

    fn sessions_of(
        &mut self,
        person: &str,
        now: Timestamp,
    ) -> Result<Vec<ConsoleSession>, StoreError> {
        Ok(self
            .0
            .prepare_cached(
                "SELECT id_hash, person, created_at, expires_at, user_agent FROM console_sessions WHERE person = ?1 AND revoked_at IS NULL AND expires_at > ?2 ORDER BY created_at DESC, id_hash",
            )?
            .query_map(params![person, now.0], console_session)?
            .collect::<Result<_, _>>()?)
    }

    fn revoke_sessions(
        &mut self,
        person: &str,
        only: Option<&str>,
        now: Timestamp,
    ) -> Result<usize, StoreError> {
        Ok(self
            .0
            .prepare_cached(
                "UPDATE console_sessions SET revoked_at = ?3 WHERE person = ?1 AND revoked_at IS NULL AND (?2 IS NULL OR id_hash = ?2)",
            )?
            .execute(params![person, only, now.0])?)
    }

    fn events(&mut self, incident: i64, limit: u32) -> Result<Vec<IncidentEvent>, StoreError> {
        let mut rows: Vec<IncidentEvent> = self
            .0
            .prepare_cached(
                "SELECT id, incident_id, at, kind, actor, target, detail FROM incident_events WHERE incident_id = ?1 ORDER BY id DESC LIMIT ?2",
            )?
            .query_map(params![incident, limit], incident_event)?
            .collect::<Result<_, _>>()?;
        rows.reverse();
        Ok(rows)
    }

    fn events_for_target(
        &mut self,
        target: &str,
        kind: EventKind,
        since: Timestamp,
        limit: u32,
    ) -> Result<Vec<IncidentEvent>, StoreError> {
        Ok(self
            .0
            .prepare_cached(
                "SELECT id, incident_id, at, kind, actor, target, detail FROM incident_events WHERE target = ?1 AND kind = ?2 AND at >= ?3 ORDER BY at DESC, id DESC LIMIT ?4",
            )?
            .query_map(
                params![target, kind.as_str(), since.0, limit],
                incident_event,
            )?
            .collect::<Result<_, _>>()?)
    }

    fn counts(&mut self) -> Result<Counts, StoreError> {
        let pending = self
            .0
            .prepare_cached("SELECT COUNT(*) FROM outbox WHERE status = 'pending'")?
            .query_row([], |r| r.get(0))?;
        let open = self
            .0
            .prepare_cached("SELECT COUNT(*) FROM incidents WHERE open = 1")?
            .query_row([], |r| r.get(0))?;
        Ok(Counts { pending, open })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_passes_the_store_contract() {
        let dirs = std::cell::RefCell::new(Vec::new());
        super::super::contract::check_all(&|| {
            let dir = tempfile::tempdir().expect("tempdir");
            let store = SqliteStore::open(dir.path()).expect("open");
            dirs.borrow_mut().push(dir);
            Box::new(store)
        });
    }

    #[test]
    fn a_database_from_before_versions_is_migrated_forward() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("relay.db");
        Connection::open(&path)
            .expect("open")
            .execute_batch(MIGRATIONS[0])
            .expect("the first schema, at user_version 0");
        let store = SqliteStore::open_file(&path).expect("migrated");
        let version: usize = store
            .with_connection(|c| Ok(c.pragma_query_value(None, "user_version", |r| r.get(0))?))
            .expect("version");
        assert_eq!(version, MIGRATIONS.len());
        drop(store);
        SqliteStore::open_file(&path).expect("opening again is a no-op");
    }

    #[test]
    fn a_database_from_a_newer_relay_is_refused_with_a_fix() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("relay.db");
        Connection::open(&path)
            .expect("open")
            .pragma_update(None, "user_version", 99)
            .expect("version");
        let Err(error) = SqliteStore::open_file(&path) else {
            panic!("a newer schema must be refused")
        };
        assert!(
            error.to_string().contains("newer than this relay knows"),
            "{error}"
        );
    }
}
