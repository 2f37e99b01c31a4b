//! The invariants, checked after every step against the model, the relay's rows (read through
//! a connection of the checker's own, SQLite or PostgreSQL) and what the vendors received.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use alert_relay::domain::{Notification, TargetName, Timestamp};
use alert_relay::engine::UNCONFIGURED;
use alert_relay::store::PostgresStore;
use rusqlite::Connection;

use super::model::{Expectation, Key, Kind, Model};
use super::world::{Mode, State};

/// One outbox row as the checker sees it.
#[derive(Debug, Clone)]
pub struct Row {
    pub id: i64,
    pub key: Key,
    pub status: String,
    pub reason: Option<String>,
    pub next_try: i64,
    pub done_at: Option<i64>,
    pub sequence_id: String,
}

/// id, status, last_error, next_try, done_at, payload.
type RawRow = (i64, String, Option<String>, i64, Option<i64>, String);

/// Where the relay's rows are.
enum Source {
    /// The SQLite file beside the relay.
    Sqlite(Connection),
    /// A store of the checker's own on the relay's database.
    Postgres(Box<PostgresStore>),
}

/// Reads the relay's database beside it; payloads are parsed once per row.
pub struct Observer {
    source: Source,
    keys: BTreeMap<i64, (Key, String)>,
}

const OUTBOX: &str =
    "SELECT id, status, last_error, next_try, done_at, payload FROM outbox ORDER BY id";
const PENDING: &str = "SELECT COUNT(*) FROM outbox WHERE status = 'pending'";

impl Observer {
    pub fn open(dir: &Path) -> Self {
        let conn = Connection::open(dir.join("relay.db")).expect("the checker's connection");
        Self {
            source: Source::Sqlite(conn),
            keys: BTreeMap::new(),
        }
    }

    pub fn postgres(store: PostgresStore) -> Self {
        Self {
            source: Source::Postgres(Box::new(store)),
            keys: BTreeMap::new(),
        }
    }

    fn raw_rows(&self) -> Vec<RawRow> {
        match &self.source {
            Source::Sqlite(conn) => {
                let mut stmt = conn.prepare_cached(OUTBOX).expect("prepare");
                stmt.query_map([], |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                    ))
                })
                .expect("query")
                .collect::<Result<_, _>>()
                .expect("rows")
            }
            Source::Postgres(store) => store
                .query(OUTBOX, &[])
                .expect("outbox rows")
                .iter()
                .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5)))
                .collect(),
        }
    }

    pub fn rows(&mut self) -> Vec<Row> {
        let raw = self.raw_rows();
        raw.into_iter()
            .map(|(id, status, reason, next_try, done_at, payload)| {
                let (key, sequence_id) = self
                    .keys
                    .entry(id)
                    .or_insert_with(|| {
                        let n: Notification = serde_json::from_str(&payload).expect("payload");
                        (
                            Key {
                                incident: n.incident_id,
                                target: n.target.0.clone(),
                                kind: n.kind.into(),
                                step: n.step,
                                created_at: n.created_at.0,
                                news: n.note.is_some(),
                            },
                            n.sequence_id,
                        )
                    })
                    .clone();
                Row {
                    id,
                    key,
                    status,
                    reason,
                    next_try,
                    done_at,
                    sequence_id,
                }
            })
            .collect()
    }

    pub fn pending(&self) -> i64 {
        match &self.source {
            Source::Sqlite(conn) => conn.query_row(PENDING, [], |r| r.get(0)).expect("count"),
            Source::Postgres(store) => store.query(PENDING, &[]).expect("count")[0].get(0),
        }
    }

    /// (id, policy, group key) of every open incident.
    pub fn open_incidents(&self) -> Vec<(i64, String, String)> {
        match &self.source {
            Source::Sqlite(conn) => {
                let mut stmt = conn
                    .prepare_cached(
                        "SELECT id, policy, group_key FROM incidents WHERE open = 1 ORDER BY id",
                    )
                    .expect("prepare");
                stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                    .expect("query")
                    .collect::<Result<_, _>>()
                    .expect("rows")
            }
            Source::Postgres(store) => store
                .query(
                    "SELECT id, policy, group_key FROM incidents WHERE open ORDER BY id",
                    &[],
                )
                .expect("open incidents")
                .iter()
                .map(|r| (r.get(0), r.get(1), r.get(2)))
                .collect(),
        }
    }
}

/// Checks every invariant at `now`; `final_` after the world was made healthy and drained.
pub fn invariants(
    model: &Model,
    observer: &mut Observer,
    world: &State,
    now: Timestamp,
    final_: bool,
) -> Result<(), String> {
    let rows = observer.rows();
    let by_key: BTreeMap<&Key, &Row> = rows.iter().map(|r| (&r.key, r)).collect();
    if by_key.len() != rows.len() {
        return Err("two outbox rows for the same notification (a step queued twice)".into());
    }

    // Every notification the model owes is queued, and nothing else is: no page early, late,
    // twice, to the wrong target, off the plan the incident started with, or after a stop.
    for (key, how) in &model.expected {
        let Some(row) = by_key.get(key) else {
            return Err(format!("owed but never queued: {key:?}"));
        };
        if *how == Expectation::DeadAtOnce
            && (row.status != "dead" || row.reason.as_deref() != Some(UNCONFIGURED))
        {
            return Err(format!(
                "a page for a target not configured must be dead-lettered at once: {row:?}"
            ));
        }
    }
    for row in &rows {
        if !model.expected.contains_key(&row.key) {
            return Err(format!("queued but not owed: {row:?}"));
        }
        // The idempotency key is the incident's, on every row and every re-send.
        if row.sequence_id != format!("relay-{}", row.key.incident) {
            return Err(format!("wrong sequence id: {row:?}"));
        }
        match row.status.as_str() {
            "pending" | "delivered" => {}
            "dead" if row.reason.as_deref().is_some_and(|r| !r.is_empty()) => {}
            "dead" => return Err(format!("dead-lettered without a reason: {row:?}")),
            "superseded" => {
                let stop = model.stopped_after(&row.key);
                if row.key.kind != Kind::Firing || stop.is_none_or(|at| row.done_at != Some(at.0)) {
                    return Err(format!(
                        "superseded without a stop after it: {row:?} (stop {stop:?})"
                    ));
                }
            }
            other => return Err(format!("unknown status {other}: {row:?}")),
        }
        // Only the stop notices go out after a stop: no firing page of a stopped incident
        // still waits for delivery.
        if row.status == "pending" && row.key.kind == Kind::Firing {
            let stopped = model.stopped_after(&row.key);
            if stopped.is_some() {
                return Err(format!(
                    "a firing page still waits after its incident stopped at {stopped:?}: {row:?}"
                ));
            }
        }
        if final_ && row.status == "pending" {
            return Err(format!(
                "still pending after the world healed and time passed: {row:?}"
            ));
        }
    }

    // What vendors received matches rows; delivered rows were received; per target, requests
    // follow queue order; no page reaches a vendor after its incident stopped.
    let id_of: BTreeMap<&Key, i64> = rows.iter().map(|r| (&r.key, r.id)).collect();
    let mut last_per_target: BTreeMap<&str, i64> = BTreeMap::new();
    let mut accepted: BTreeSet<i64> = BTreeSet::new();
    // Per row: when it was last sent, and the earliest time the vendor allowed the next try.
    let mut last_try: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
    for got in &world.received {
        let key = Key {
            incident: got.incident_id,
            target: got.target.0.clone(),
            kind: got.kind.into(),
            step: got.step,
            created_at: got.created_at.0,
            news: got.news,
        };
        let Some(&id) = id_of.get(&key) else {
            return Err(format!(
                "a vendor received a page the relay never queued: {got:?}"
            ));
        };
        if got.sequence_id != format!("relay-{}", got.incident_id) {
            return Err(format!("re-sent with another idempotency key: {got:?}"));
        }
        let last = last_per_target.entry(got.target.as_str()).or_insert(id);
        if id < *last {
            return Err(format!(
                "out of queue order for {}: row {id} sent after row {last}",
                got.target
            ));
        }
        *last = id;
        // Never re-sent faster than the retry policy: not twice at one instant, and not before
        // the vendor's Retry-After.
        if let Some((at, allowed)) = last_try.get(&id) {
            if got.at.0 <= *at || got.at.0 < *allowed {
                return Err(format!(
                    "re-sent too soon: row {id} at {} after a try at {at} (allowed from {allowed})",
                    got.at.0
                ));
            }
        }
        let wait = got.retry_after.map_or(0, |d| d.as_millis() as i64);
        last_try.insert(id, (got.at.0, got.at.0 + wait));
        if got.accepted {
            accepted.insert(id);
        }
        if key.kind == Kind::Firing {
            let stopped = model.stopped_after(&key);
            if stopped.is_some_and(|at| got.at.0 > at.0) {
                return Err(format!("paged after the stop at {stopped:?}: {got:?}"));
            }
        }
    }
    for row in &rows {
        if row.status == "delivered" && !accepted.contains(&row.id) {
            return Err(format!(
                "recorded as delivered but no vendor received it: {row:?}"
            ));
        }
    }

    // A failing target never delays another: the head of a healthy target's queue is not due
    // (rows behind a head that waits for its retry wait too: delivery is in order).
    let mut heads: BTreeMap<&str, &Row> = BTreeMap::new();
    for row in rows.iter().filter(|r| r.status == "pending") {
        heads.entry(row.key.target.as_str()).or_insert(row);
    }
    for row in heads.values() {
        let mode = world
            .modes
            .get(&TargetName(row.key.target.clone()))
            .copied()
            .unwrap_or(Mode::Healthy);
        if mode == Mode::Healthy && row.next_try <= now.0 {
            return Err(format!("a healthy target left a due page waiting: {row:?}"));
        }
    }

    // At most one open incident per (policy, group); the same ones the model has open.
    let open = observer.open_incidents();
    let mut seen = BTreeSet::new();
    for (id, policy, group) in &open {
        if !seen.insert((policy, group)) {
            return Err(format!("two open incidents for {policy} {group}"));
        }
        if !model.incidents.get(id).is_some_and(|i| i.open()) {
            return Err(format!(
                "incident {id} is open, the model has it closed or unknown"
            ));
        }
    }
    let model_open = model.incidents.values().filter(|i| i.open()).count();
    if model_open != open.len() {
        return Err(format!(
            "{} open incidents, the model has {model_open}",
            open.len()
        ));
    }
    Ok(())
}
