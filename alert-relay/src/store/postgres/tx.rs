//! What a unit of work reads and writes on PostgreSQL: the same rows and answers as
//! SQLite's `Tx`, statement for statement.

mod history;

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use deadpool_postgres::ClientWrapper as Client;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use super::{leases, wait};
use crate::domain::{GroupKey, IncidentKey, PolicyName, TargetName, Timestamp};
use crate::engine::{EventKind, IncidentEvent, IncidentRecord, NewEvent, NewOutbox, Override};
use crate::store::{
    group_lock_key, BadRow, ClosedIncident, ConsoleSession, Counts, DeadLetter, Finish,
    HistoryQuery, Lease, Loaded, Mode, OutboxItem, Pruned, Quarantined, StoreError, Tx,
};

/// Taken before intake reads a group's open incident, held to the commit: relays sharing
/// the database take webhooks for one group one after the other, and for other groups at
/// once. Locks of one transaction are taken in the order of their keys (the intake writer
/// sorts its batch by [`group_lock_key`]), so two batches never wait on each other in a
/// circle.
const GROUP_LOCK: &str = "SELECT pg_advisory_xact_lock($1)";

/// A write whose answer nobody waits for: sent with the next statement (or the commit).
struct Deferred {
    sql: &'static str,
    args: Vec<Box<dyn ToSql + Sync + Send>>,
}

/// What the units of work of one transaction share: its `BEGIN`, sent with the first
/// statement; the writes not sent yet (inserts and updates of incidents and notifications go
/// out together with the next read, so a webhook costs the round trips of its reads only);
/// and the overrides it read (intake reads them once per group commit, not per webhook).
pub(super) struct TxState {
    begin: Cell<Option<&'static str>>,
    writes: RefCell<Vec<Deferred>>,
    overrides: RefCell<Option<(Timestamp, Vec<Override>)>>,
}

impl TxState {
    pub(super) fn new(begin: &'static str) -> Self {
        Self {
            begin: Cell::new(Some(begin)),
            writes: RefCell::new(Vec::new()),
            overrides: RefCell::new(None),
        }
    }

    /// Whether the transaction began on the server, or has writes to send: a unit of work
    /// that did neither leaves nothing to commit or roll back.
    pub(super) fn begun(&self) -> bool {
        self.begin.get().is_none() || !self.writes.borrow().is_empty()
    }

    /// Forgets the writes not sent yet (their job is being rolled back).
    pub(super) fn drop_writes(&self) {
        self.writes.borrow_mut().clear();
    }

    /// Sends the writes not sent yet, then `sql` (`COMMIT`, or a savepoint's), in one round
    /// trip; the first error, if any.
    pub(super) fn end(
        &self,
        client: &Client,
        limit: Duration,
        holder: &str,
        sql: &'static str,
    ) -> Result<(), StoreError> {
        let mut tx = PgTx::new(client, self, Mode::Durable, limit, holder);
        tx.send(client.batch_execute(sql))
    }
}

pub(super) struct PgTx<'a> {
    client: &'a Client,
    state: &'a TxState,
    mode: Mode,
    /// How long the relay waits for any answer.
    limit: Duration,
    /// This relay's name in the leases.
    holder: &'a str,
    /// The first statement that failed: PostgreSQL has aborted the transaction since.
    failed: Option<String>,
}

/// PostgreSQL's text cannot hold NUL; SQLite's can. Free text from outside (a vendor's
/// answer, an error) is stored with U+FFFD in its place rather than not at all.
fn text(s: &str) -> Cow<'_, str> {
    if s.contains('\0') {
        Cow::Owned(s.replace('\0', "\u{FFFD}"))
    } else {
        Cow::Borrowed(s)
    }
}

fn console_session(r: &Row) -> Result<ConsoleSession, StoreError> {
    Ok(ConsoleSession {
        id_hash: r.try_get(0)?,
        person: r.try_get(1)?,
        created_at: Timestamp(r.try_get(2)?),
        expires_at: Timestamp(r.try_get(3)?),
        user_agent: r.try_get(4)?,
    })
}

/// One `incident_events` row, its columns in the order every query selects them.
pub(super) fn incident_event(r: &Row) -> Result<IncidentEvent, StoreError> {
    let kind: String = r.try_get(3)?;
    Ok(IncidentEvent {
        id: r.try_get(0)?,
        incident_id: r.try_get(1)?,
        at: Timestamp(r.try_get(2)?),
        kind: EventKind::parse(&kind),
        kind_name: kind,
        actor: r.try_get(4)?,
        target: r.try_get(5)?,
        detail: r.try_get(6)?,
    })
}

/// Attempts are never negative (a `CHECK` says so).
fn attempts(n: i32) -> u32 {
    u32::try_from(n).unwrap_or(0)
}

/// An incident row as `SELECT id, incident_key, group_key, machine, alert_group` gives it.
fn decode_incident(row: &Row) -> Result<IncidentRecord, BadRow> {
    let id: i64 = row.try_get(0).unwrap_or_default();
    let bad = |error: String| BadRow {
        table: "incidents",
        id,
        error,
    };
    let column = |i: usize| row.try_get::<_, String>(i).map_err(|e| bad(e.to_string()));
    let (key, group_key, machine, group) = (column(1)?, column(2)?, column(3)?, column(4)?);
    Ok(IncidentRecord {
        id,
        key: IncidentKey::from_hex(&key).ok_or_else(|| bad("malformed incident key".into()))?,
        group_key: GroupKey(group_key),
        group: serde_json::from_str(&group).map_err(|e| bad(format!("alert_group: {e}")))?,
        machine: serde_json::from_str(&machine).map_err(|e| bad(format!("machine: {e}")))?,
    })
}

impl<'a> PgTx<'a> {
    pub(super) fn new(
        client: &'a Client,
        state: &'a TxState,
        mode: Mode,
        limit: Duration,
        holder: &'a str,
    ) -> Self {
        Self {
            client,
            state,
            mode,
            limit,
            holder,
            failed: None,
        }
    }

    /// `Err` if a statement failed: the transaction is aborted and must not be committed
    /// (PostgreSQL would answer `COMMIT` with a silent rollback).
    pub(super) fn check(&self) -> Result<(), StoreError> {
        match &self.failed {
            None => Ok(()),
            Some(error) => Err(StoreError::Task(format!(
                "a statement failed ({error}) and the work went on: rolled back"
            ))),
        }
    }

    /// Incidents read to be changed are locked until commit (`skip`: those another relay
    /// has locked are left to it); plain reads take no lock.
    fn lock(&self, skip: bool) -> &'static str {
        match (self.mode, skip) {
            (Mode::Read, _) => "",
            (_, false) => " FOR UPDATE",
            (_, true) => " FOR UPDATE SKIP LOCKED",
        }
    }

    fn note<T>(&mut self, result: Result<T, StoreError>) -> Result<T, StoreError> {
        result.inspect_err(|e| {
            self.failed.get_or_insert_with(|| e.to_string());
        })
    }

    /// Sets, releases or rolls back to a savepoint (group commit), beginning the
    /// transaction first if need be. A failure here is the whole transaction's.
    pub(super) fn savepoint(&mut self, sql: &'static str) -> Result<(), StoreError> {
        let client = self.client;
        let result = self.send(client.batch_execute(sql));
        // Whatever the job did before, this statement's failure is not the job's.
        self.failed = None;
        result
    }

    /// Waits for `query`, sent right behind the transaction's `BEGIN` if this is its first
    /// statement: the server runs them in order, and the relay waits once.
    fn send<T>(
        &mut self,
        query: impl Future<Output = Result<T, tokio_postgres::Error>>,
    ) -> Result<T, StoreError> {
        let begin = self.state.begin.take();
        let writes = std::mem::take(&mut *self.state.writes.borrow_mut());
        let client = self.client;
        let result = wait(self.limit, async move {
            let mut statements = Vec::with_capacity(writes.len());
            for write in &writes {
                statements.push(client.prepare_cached(write.sql).await?);
            }
            let before = async {
                if let Some(begin) = begin {
                    client.batch_execute(begin).await?;
                }
                Ok::<(), tokio_postgres::Error>(())
            };
            let sent = statements.iter().zip(&writes).map(|(statement, write)| {
                let args: Vec<&(dyn ToSql + Sync)> = write
                    .args
                    .iter()
                    .map(|a| a.as_ref() as &(dyn ToSql + Sync))
                    .collect();
                async move { client.execute(statement, &args).await }
            });
            // Polled in order, so sent in order: BEGIN, the writes, the query.
            let (began, written, answer) =
                futures_util::future::join3(before, futures_util::future::join_all(sent), query)
                    .await;
            began?;
            for result in written {
                result?;
            }
            answer
        });
        self.note(result)
    }

    /// Queues a write to go out with the next statement.
    fn defer(&mut self, sql: &'static str, args: Vec<Box<dyn ToSql + Sync + Send>>) {
        self.state.writes.borrow_mut().push(Deferred { sql, args });
    }

    fn rows(&mut self, sql: &str, args: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>, StoreError> {
        let client = self.client;
        self.send(async move {
            let statement = client.prepare_cached(sql).await?;
            client.query(&statement, args).await
        })
    }

    fn execute(&mut self, sql: &str, args: &[&(dyn ToSql + Sync)]) -> Result<usize, StoreError> {
        let client = self.client;
        let n = self.send(async move {
            let statement = client.prepare_cached(sql).await?;
            client.execute(&statement, args).await
        })?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    fn one<T>(&mut self, sql: &str, args: &[&(dyn ToSql + Sync)]) -> Result<T, StoreError>
    where
        T: for<'r> tokio_postgres::types::FromSql<'r>,
    {
        let rows = self.rows(sql, args)?;
        match rows.first() {
            Some(row) => Ok(row.try_get(0)?),
            None => Err(StoreError::Task(format!("no row from {sql}"))),
        }
    }

    fn incident_query(&self, filter: &str, skip_locked: bool) -> String {
        format!(
            "SELECT id, incident_key, group_key, machine, alert_group FROM incidents {filter}{}",
            self.lock(skip_locked)
        )
    }

    fn decode_incidents(rows: &[Row]) -> Loaded<IncidentRecord> {
        let mut loaded = Loaded {
            rows: Vec::new(),
            bad: Vec::new(),
        };
        for row in rows {
            match decode_incident(row) {
                Ok(record) => loaded.rows.push(record),
                Err(bad) => loaded.bad.push(bad),
            }
        }
        loaded
    }

    fn incidents(
        &mut self,
        filter: &str,
        args: &[&(dyn ToSql + Sync)],
        skip_locked: bool,
    ) -> Result<Loaded<IncidentRecord>, StoreError> {
        let sql = self.incident_query(filter, skip_locked);
        let rows = self.rows(&sql, args)?;
        Ok(Self::decode_incidents(&rows))
    }

    fn targets(rows: Vec<Row>) -> Result<Vec<TargetName>, StoreError> {
        rows.iter().map(|r| Ok(TargetName(r.try_get(0)?))).collect()
    }
}

impl Tx for PgTx<'_> {
    fn open_incident(
        &mut self,
        policy: &PolicyName,
        group: &GroupKey,
    ) -> Result<Loaded<IncidentRecord>, StoreError> {
        const FILTER: &str = "WHERE policy = $1 AND group_key = $2 AND open";
        if self.mode == Mode::Read {
            return self.incidents(FILTER, &[&policy.as_str(), &text(group.as_str())], false);
        }
        // The group's lock, then the read: sent together (one round trip), run in order, so
        // the read sees whatever the lock's previous holder committed.
        let sql = self.incident_query(FILTER, false);
        let key = group_lock_key(policy, group);
        let group = text(group.as_str());
        let args: [&(dyn ToSql + Sync); 2] = [&policy.as_str(), &group];
        let client = self.client;
        let rows = self.send(async {
            let lock = client.prepare_cached(GROUP_LOCK).await?;
            let read = client.prepare_cached(&sql).await?;
            let (locked, rows) = futures_util::future::join(
                client.execute(&lock, &[&key]),
                client.query(&read, &args),
            )
            .await;
            locked?;
            rows
        })?;
        Ok(Self::decode_incidents(&rows))
    }

    fn incident(&mut self, id: i64) -> Result<Option<IncidentRecord>, StoreError> {
        let mut loaded = self.incidents("WHERE id = $1", &[&id], false)?;
        if let Some(bad) = loaded.bad.pop() {
            return Err(StoreError::Undecodable(bad));
        }
        Ok(loaded.rows.pop())
    }

    fn incidents_among(&mut self, ids: &[i64]) -> Result<Loaded<IncidentRecord>, StoreError> {
        self.incidents("WHERE id = ANY($1)", &[&ids], false)
    }

    fn due_incidents(
        &mut self,
        now: Timestamp,
        limit: u32,
    ) -> Result<Loaded<IncidentRecord>, StoreError> {
        // Several relays' schedulers share the due incidents instead of queueing on them.
        self.incidents(
            "WHERE next_due IS NOT NULL AND next_due <= $1 ORDER BY next_due, id LIMIT $2",
            &[&now.0, &i64::from(limit)],
            true,
        )
    }

    fn open_incidents(&mut self, limit: u32) -> Result<Loaded<IncidentRecord>, StoreError> {
        self.incidents(
            "WHERE open ORDER BY id LIMIT $1",
            &[&i64::from(limit)],
            false,
        )
    }

    fn quarantine(&mut self, row: &BadRow, now: Timestamp) -> Result<(), StoreError> {
        let reason = row.to_string();
        let reason = text(&reason);
        match row.table {
            "incidents" => self.execute(
                "UPDATE incidents SET open = false, next_due = NULL, quarantined = $2, updated_at = $3, closed_at = COALESCE(closed_at, $3) WHERE id = $1",
                &[&row.id, &reason, &now.0],
            )?,
            _ => self.execute(
                "UPDATE outbox SET status = 'dead', done_at = $2, last_error = $3 WHERE id = $1",
                &[&row.id, &now.0, &reason],
            )?,
        };
        Ok(())
    }

    fn quarantined(&mut self, limit: u32) -> Result<Vec<Quarantined>, StoreError> {
        self.rows(
            "SELECT id, quarantined, updated_at FROM incidents WHERE quarantined IS NOT NULL ORDER BY updated_at DESC, id DESC LIMIT $1",
            &[&i64::from(limit)],
        )?
        .iter()
        .map(|r| {
            Ok(Quarantined {
                id: r.try_get(0)?,
                reason: r.try_get(1)?,
                at: Timestamp(r.try_get(2)?),
            })
        })
        .collect()
    }

    fn undecodable(&mut self) -> Result<Vec<BadRow>, StoreError> {
        let mut bad = self.incidents("WHERE open", &[], false)?.bad;
        for row in self.rows(
            "SELECT id, payload FROM outbox WHERE status = 'pending'",
            &[],
        )? {
            let id: i64 = row.try_get(0)?;
            bad.extend(crate::store::undecodable_outbox(
                id,
                row.try_get::<_, String>(1).map_err(|e| e.to_string()),
            ));
        }
        Ok(bad)
    }

    fn next_due(&mut self) -> Result<Option<Timestamp>, StoreError> {
        let due: Option<i64> = self.one(
            "SELECT MIN(next_due) FROM incidents WHERE next_due IS NOT NULL",
            &[],
        )?;
        Ok(due.map(Timestamp))
    }

    /// From a sequence: relays starting incidents for different groups at once never wait
    /// for each other (an id taken by a transaction that rolled back is skipped).
    fn next_incident_id(&mut self) -> Result<i64, StoreError> {
        self.one("SELECT nextval('incident_ids')", &[])
    }

    fn insert_incident(
        &mut self,
        incident: &IncidentRecord,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let machine = serde_json::to_string(&incident.machine)?;
        let group = serde_json::to_string(&incident.group)?;
        self.defer(
            "INSERT INTO incidents (id, incident_key, policy, group_key, open, machine, alert_group, next_due, started_at, updated_at, closed_at, severity, alertname)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, CASE WHEN $5 THEN NULL ELSE $10::BIGINT END, $11, $12)",
            vec![
                Box::new(incident.id),
                Box::new(incident.key.to_hex()),
                Box::new(incident.policy().as_str().to_owned()),
                Box::new(text(incident.group_key.as_str()).into_owned()),
                Box::new(!incident.machine.is_closed()),
                Box::new(machine),
                Box::new(group),
                Box::new(incident.machine.next_due().map(|t| t.0)),
                Box::new(incident.machine.started_at.0),
                Box::new(now.0),
                Box::new(text(incident.group.severity().as_str()).into_owned()),
                Box::new(incident.group.alertname().map(|a| text(a).into_owned())),
            ],
        );
        Ok(())
    }

    fn update_incident(
        &mut self,
        incident: &IncidentRecord,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let machine = serde_json::to_string(&incident.machine)?;
        let group = serde_json::to_string(&incident.group)?;
        self.defer(
            "UPDATE incidents SET open = $2, machine = $3, alert_group = $4, next_due = $5, updated_at = $6,
             closed_at = CASE WHEN $2 THEN NULL ELSE COALESCE(closed_at, $6) END, severity = $7, alertname = $8 WHERE id = $1",
            vec![
                Box::new(incident.id),
                Box::new(!incident.machine.is_closed()),
                Box::new(machine),
                Box::new(group),
                Box::new(incident.machine.next_due().map(|t| t.0)),
                Box::new(now.0),
                Box::new(text(incident.group.severity().as_str()).into_owned()),
                Box::new(incident.group.alertname().map(|a| text(a).into_owned())),
            ],
        );
        Ok(())
    }

    fn insert_outbox(&mut self, row: &NewOutbox, now: Timestamp) -> Result<(), StoreError> {
        let n = &row.notification;
        let payload = serde_json::to_string(n)?;
        let reason = row.dead.as_deref().map(|r| text(r).into_owned());
        let status = if row.dead.is_some() {
            "dead"
        } else {
            "pending"
        };
        self.defer(
            "INSERT INTO outbox (incident_id, target, kind, payload, status, next_try, created_at, done_at, last_error)
             VALUES ($1, $2, $3, $4, $5, $6, $6, $7, $8)",
            vec![
                Box::new(n.incident_id),
                Box::new(n.target.as_str().to_owned()),
                Box::new(crate::store::kind_column(n.kind)),
                Box::new(payload),
                Box::new(status),
                Box::new(now.0),
                Box::new(row.dead.as_ref().map(|_| now.0)),
                Box::new(reason),
            ],
        );
        Ok(())
    }

    fn supersede(
        &mut self,
        incident: i64,
        reason: &str,
        now: Timestamp,
    ) -> Result<usize, StoreError> {
        self.execute(
            "UPDATE outbox SET status = 'superseded', done_at = $2, last_error = $3 WHERE incident_id = $1 AND status = 'pending' AND kind = 'firing'",
            &[&incident, &now.0, &text(reason)],
        )
    }

    fn waiting_targets(&mut self, incident: i64) -> Result<Vec<TargetName>, StoreError> {
        let rows = self.rows(
            "SELECT DISTINCT target FROM outbox WHERE incident_id = $1 AND status = 'pending' ORDER BY target",
            &[&incident],
        )?;
        Self::targets(rows)
    }

    fn waiting_targets_of(
        &mut self,
        incidents: &[i64],
    ) -> Result<BTreeMap<i64, Vec<TargetName>>, StoreError> {
        let rows = self.rows(
            "SELECT DISTINCT incident_id, target FROM outbox \
             WHERE incident_id = ANY($1) AND status = 'pending' ORDER BY incident_id, target",
            &[&incidents],
        )?;
        let mut waiting: BTreeMap<i64, Vec<TargetName>> = BTreeMap::new();
        for row in rows {
            waiting
                .entry(row.try_get(0)?)
                .or_default()
                .push(TargetName(row.try_get(1)?));
        }
        Ok(waiting)
    }

    fn outbox_head(
        &mut self,
        target: &TargetName,
    ) -> Result<Option<Result<OutboxItem, BadRow>>, StoreError> {
        let rows = self.rows(
            "SELECT id, payload, attempts, created_at, next_try FROM outbox WHERE target = $1 AND status = 'pending' ORDER BY id LIMIT 1",
            &[&target.as_str()],
        )?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        let id: i64 = row.try_get(0)?;
        let bad = |error: String| BadRow {
            table: "outbox",
            id,
            error,
        };
        let read = || -> Result<OutboxItem, BadRow> {
            let payload: String = row.try_get(1).map_err(|e| bad(e.to_string()))?;
            let tries: i32 = row.try_get(2).map_err(|e| bad(e.to_string()))?;
            let created: i64 = row.try_get(3).map_err(|e| bad(e.to_string()))?;
            let next: i64 = row.try_get(4).map_err(|e| bad(e.to_string()))?;
            Ok(OutboxItem {
                id,
                notification: serde_json::from_str(&payload).map_err(|e| bad(e.to_string()))?,
                attempts: attempts(tries),
                created_at: Timestamp(created),
                next_try: Timestamp(next),
            })
        };
        Ok(Some(read()))
    }

    fn finish(&mut self, id: i64, finish: &Finish, now: Timestamp) -> Result<(), StoreError> {
        match finish {
            Finish::Delivered => self.execute(
                "UPDATE outbox SET status = 'delivered', attempts = attempts + 1, done_at = $2, last_error = NULL WHERE id = $1",
                &[&id, &now.0],
            )?,
            Finish::Retry { next_try, error } => self.execute(
                "UPDATE outbox SET attempts = attempts + 1, next_try = $2, last_error = $3 WHERE id = $1",
                &[&id, &next_try.0, &text(error)],
            )?,
            Finish::Dead { error } => self.execute(
                "UPDATE outbox SET status = 'dead', attempts = attempts + 1, done_at = $2, last_error = $3 WHERE id = $1",
                &[&id, &now.0, &text(error)],
            )?,
        };
        Ok(())
    }

    fn pending_targets(&mut self) -> Result<Vec<TargetName>, StoreError> {
        let rows = self.rows(
            "SELECT DISTINCT target FROM outbox WHERE status = 'pending' ORDER BY target",
            &[],
        )?;
        Self::targets(rows)
    }

    fn dead_letter_target(
        &mut self,
        target: &TargetName,
        reason: &str,
        now: Timestamp,
    ) -> Result<Vec<i64>, StoreError> {
        self.rows(
            "UPDATE outbox SET status = 'dead', done_at = $2, last_error = $3 WHERE target = $1 AND status = 'pending' RETURNING incident_id",
            &[&target.as_str(), &now.0, &text(reason)],
        )?
        .iter()
        .map(|r| Ok(r.try_get(0)?))
        .collect()
    }

    fn dead_letters(&mut self, limit: u32) -> Result<Vec<DeadLetter>, StoreError> {
        self.rows(
            "SELECT id, incident_id, target, attempts, COALESCE(last_error, ''), created_at, COALESCE(done_at, created_at) \
             FROM outbox WHERE status = 'dead' ORDER BY id DESC LIMIT $1",
            &[&i64::from(limit)],
        )?
        .iter()
        .map(|r| {
            Ok(DeadLetter {
                id: r.try_get(0)?,
                incident_id: r.try_get(1)?,
                target: r.try_get(2)?,
                attempts: attempts(r.try_get(3)?),
                reason: r.try_get(4)?,
                created_at: Timestamp(r.try_get(5)?),
                dead_at: Timestamp(r.try_get(6)?),
            })
        })
        .collect()
    }

    fn use_nonce(
        &mut self,
        nonce: &str,
        incident: i64,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        Ok(self.execute(
            "INSERT INTO ack_nonces (nonce, incident_id, used_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            &[&text(nonce), &incident, &now.0],
        )? == 1)
    }

    fn nonce_used(&mut self, nonce: &str) -> Result<bool, StoreError> {
        let used: i64 = self.one(
            "SELECT COUNT(*) FROM ack_nonces WHERE nonce = $1",
            &[&text(nonce)],
        )?;
        Ok(used > 0)
    }

    fn counts(&mut self) -> Result<Counts, StoreError> {
        let pending = self.one("SELECT COUNT(*) FROM outbox WHERE status = 'pending'", &[])?;
        let open = self.one("SELECT COUNT(*) FROM incidents WHERE open", &[])?;
        Ok(Counts { pending, open })
    }

    fn overrides(&mut self, t: Timestamp) -> Result<Vec<Override>, StoreError> {
        if let Some((at, cached)) = &*self.state.overrides.borrow() {
            if *at == t {
                return Ok(cached.clone());
            }
        }
        let read: Vec<Override> = self
            .rows(
                "SELECT id, schedule, person, replaces, starts_at, ends_at, created_by FROM overrides WHERE removed_at IS NULL AND ends_at > $1 ORDER BY id",
                &[&t.0],
            )?
            .iter()
            .map(|r| {
                Ok(Override {
                    id: r.try_get(0)?,
                    schedule: r.try_get(1)?,
                    person: r.try_get(2)?,
                    replaces: r.try_get(3)?,
                    starts_at: Timestamp(r.try_get(4)?),
                    ends_at: Timestamp(r.try_get(5)?),
                    created_by: r.try_get(6)?,
                })
            })
            .collect::<Result<_, StoreError>>()?;
        *self.state.overrides.borrow_mut() = Some((t, read.clone()));
        Ok(read)
    }

    fn insert_override(&mut self, o: &Override, now: Timestamp) -> Result<i64, StoreError> {
        self.state.overrides.borrow_mut().take();
        self.one(
            "INSERT INTO overrides (schedule, person, replaces, starts_at, ends_at, created_by, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
            &[
                &text(&o.schedule),
                &text(&o.person),
                &o.replaces.as_deref().map(text),
                &o.starts_at.0,
                &o.ends_at.0,
                &text(&o.created_by),
                &now.0,
            ],
        )
    }

    fn remove_override(&mut self, id: i64, now: Timestamp) -> Result<bool, StoreError> {
        self.state.overrides.borrow_mut().take();
        Ok(self.execute(
            "UPDATE overrides SET removed_at = $2 WHERE id = $1 AND removed_at IS NULL",
            &[&id, &now.0],
        )? == 1)
    }

    fn mark_handoff(&mut self, shift: &str, now: Timestamp) -> Result<bool, StoreError> {
        Ok(self.execute(
            "INSERT INTO handoffs (shift, announced_at) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            &[&text(shift), &now.0],
        )? == 1)
    }

    fn insert_event(&mut self, e: &NewEvent, now: Timestamp) -> Result<(), StoreError> {
        self.defer(
            "INSERT INTO incident_events (incident_id, at, kind, actor, target, detail) VALUES ($1, $2, $3, $4, $5, $6)",
            vec![
                Box::new(e.incident_id),
                Box::new(now.0),
                Box::new(e.kind.as_str()),
                Box::new(e.actor.as_deref().map(|a| text(a).into_owned())),
                Box::new(e.target.as_ref().map(|t| t.as_str().to_owned())),
                Box::new(text(&e.detail).into_owned()),
            ],
        );
        Ok(())
    }

    fn closed_incidents(&mut self, q: &HistoryQuery) -> Result<Loaded<ClosedIncident>, StoreError> {
        self.history_page(q)
    }

    fn page_buckets(
        &mut self,
        period: (Timestamp, Timestamp),
        target_prefix: &str,
        detail_prefix: &str,
        limit: u32,
    ) -> Result<Vec<crate::store::PageBucket>, StoreError> {
        self.page_counts(period, (target_prefix, detail_prefix), limit)
    }

    fn acknowledged_timelines(
        &mut self,
        period: (Timestamp, Timestamp),
        limit: u32,
    ) -> Result<Vec<IncidentEvent>, StoreError> {
        self.acknowledged_events(period, limit)
    }

    fn prune_closed(&mut self, before: Timestamp, limit: u32) -> Result<Pruned, StoreError> {
        self.prune(before, limit)
    }

    fn prune_console(&mut self, before: Timestamp) -> Result<(usize, usize), StoreError> {
        let sessions = self.execute(
            "DELETE FROM console_sessions WHERE expires_at < $1 OR revoked_at < $1",
            &[&before.0],
        )?;
        let links = self.execute(
            "DELETE FROM signin_links WHERE expires_at < $1",
            &[&before.0],
        )?;
        Ok((sessions, links))
    }

    fn insert_signin(
        &mut self,
        token_hash: &str,
        person: &str,
        expires: Timestamp,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO signin_links (token_hash, person, created_at, expires_at) VALUES ($1, $2, $3, $4)",
            &[&token_hash, &text(person), &now.0, &expires.0],
        )?;
        Ok(())
    }

    fn use_signin(
        &mut self,
        token_hash: &str,
        now: Timestamp,
    ) -> Result<Option<String>, StoreError> {
        let rows = self.rows(
            "UPDATE signin_links SET used_at = $2 WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2 RETURNING person",
            &[&token_hash, &now.0],
        )?;
        rows.first().map(|r| Ok(r.try_get(0)?)).transpose()
    }

    fn insert_session(&mut self, session: &ConsoleSession) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO console_sessions (id_hash, person, created_at, expires_at, user_agent) VALUES ($1, $2, $3, $4, $5)",
            &[
                &session.id_hash,
                &text(&session.person),
                &session.created_at.0,
                &session.expires_at.0,
                &text(&session.user_agent),
            ],
        )?;
        Ok(())
    }

    fn session(
        &mut self,
        id_hash: &str,
        now: Timestamp,
    ) -> Result<Option<ConsoleSession>, StoreError> {
        let rows = self.rows(
            "SELECT id_hash, person, created_at, expires_at, user_agent FROM console_sessions WHERE id_hash = $1 AND revoked_at IS NULL AND expires_at > $2",
            &[&id_hash, &now.0],
        )?;
        rows.first().map(console_session).transpose()
    }

    fn sessions_of(
        &mut self,
        person: &str,
        now: Timestamp,
    ) -> Result<Vec<ConsoleSession>, StoreError> {
        self.rows(
            "SELECT id_hash, person, created_at, expires_at, user_agent FROM console_sessions WHERE person = $1 AND revoked_at IS NULL AND expires_at > $2 ORDER BY created_at DESC, id_hash",
            &[&text(person), &now.0],
        )?
        .iter()
        .map(console_session)
        .collect()
    }

    fn revoke_sessions(
        &mut self,
        person: &str,
        only: Option<&str>,
        now: Timestamp,
    ) -> Result<usize, StoreError> {
        self.execute(
            "UPDATE console_sessions SET revoked_at = $3 WHERE person = $1 AND revoked_at IS NULL AND ($2::text IS NULL OR id_hash = $2)",
            &[&text(person), &only, &now.0],
        )
    }

    fn events(&mut self, incident: i64, limit: u32) -> Result<Vec<IncidentEvent>, StoreError> {
        let mut rows = self
            .rows(
                "SELECT id, incident_id, at, kind, actor, target, detail FROM incident_events WHERE incident_id = $1 ORDER BY id DESC LIMIT $2",
                &[&incident, &i64::from(limit)],
            )?
            .iter()
            .map(incident_event)
            .collect::<Result<Vec<_>, StoreError>>()?;
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
        self.rows(
            "SELECT id, incident_id, at, kind, actor, target, detail FROM incident_events WHERE target = $1 AND kind = $2 AND at >= $3 ORDER BY at DESC, id DESC LIMIT $4",
            &[&text(target), &kind.as_str(), &since.0, &i64::from(limit)],
        )?
        .iter()
        .map(incident_event)
        .collect()
    }

    fn hold(&mut self, lease: &Lease, now: Timestamp) -> Result<bool, StoreError> {
        let holder = self.holder;
        let expires = leases::expiry(now);
        let renewed = self.rows(
            leases::RENEW,
            &[&lease.target.as_str(), &holder, &lease.fence, &expires.0],
        )?;
        Ok(!renewed.is_empty())
    }
}
