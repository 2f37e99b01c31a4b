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
    /// Attempts recorded.
    pub attempts: i64,
    pub sequence_id: String,
    /// The person the page names (a `person.<name>` target).
    pub person: Option<String>,
}

/// id, status, last_error, next_try, done_at, payload, attempts.
type RawRow = (i64, String, Option<String>, i64, Option<i64>, String, i64);

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
    keys: BTreeMap<i64, (Key, String, Option<String>)>,
}

const OUTBOX: &str =
    "SELECT id, status, last_error, next_try, done_at, payload, attempts FROM outbox ORDER BY id";
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
                        r.get(6)?,
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
                .map(|r| {
                    let attempts: i32 = r.get(6);
                    (
                        r.get(0),
                        r.get(1),
                        r.get(2),
                        r.get(3),
                        r.get(4),
                        r.get(5),
                        i64::from(attempts),
                    )
                })
                .collect(),
        }
    }

    pub fn rows(&mut self) -> Vec<Row> {
        let raw = self.raw_rows();
        raw.into_iter()
            .map(
                |(id, status, reason, next_try, done_at, payload, attempts)| {
                    let (key, sequence_id, person) = self
                        .keys
                        .entry(id)
                        .or_insert_with(|| {
                            let n: Notification = serde_json::from_str(&payload).expect("payload");
                            (Key::of(&n), n.sequence_id, n.person)
                        })
                        .clone();
                    Row {
                        id,
                        key,
                        status,
                        reason,
                        next_try,
                        done_at,
                        attempts,
                        sequence_id,
                        person,
                    }
                },
            )
            .collect()
    }

    pub fn pending(&self) -> i64 {
        match &self.source {
            Source::Sqlite(conn) => conn.query_row(PENDING, [], |r| r.get(0)).expect("count"),
            Source::Postgres(store) => store.query(PENDING, &[]).expect("count")[0].get(0),
        }
    }

    /// The targets with pending rows.
    pub fn pending_targets(&mut self) -> BTreeSet<String> {
        const TARGETS: &str = "SELECT DISTINCT target FROM outbox WHERE status = 'pending'";
        match &self.source {
            Source::Sqlite(conn) => {
                let mut stmt = conn.prepare_cached(TARGETS).expect("prepare");
                stmt.query_map([], |r| r.get(0))
                    .expect("query")
                    .collect::<Result<_, _>>()
                    .expect("targets")
            }
            Source::Postgres(store) => store
                .query(TARGETS, &[])
                .expect("targets")
                .iter()
                .map(|r| r.get(0))
                .collect(),
        }
    }

    /// Every timeline event: (incident, kind, target).
    pub fn events(&self) -> Vec<(i64, String, Option<String>)> {
        const EVENTS: &str = "SELECT incident_id, kind, target FROM incident_events ORDER BY id";
        match &self.source {
            Source::Sqlite(conn) => {
                let mut stmt = conn.prepare_cached(EVENTS).expect("prepare");
                stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                    .expect("query")
                    .collect::<Result<_, _>>()
                    .expect("events")
            }
            Source::Postgres(store) => store
                .query(EVENTS, &[])
                .expect("events")
                .iter()
                .map(|r| (r.get(0), r.get(1), r.get(2)))
                .collect(),
        }
    }

    /// Delivery leases not released: target, holder, end (PostgreSQL; none on SQLite).
    pub fn leases(&self) -> Vec<(String, String, i64)> {
        match &self.source {
            Source::Sqlite(_) => Vec::new(),
            Source::Postgres(store) => store
                .query(
                    "SELECT target, holder, expires_at FROM delivery_claims WHERE NOT released",
                    &[],
                )
                .expect("leases")
                .iter()
                .map(|r| (r.get(0), r.get(1), r.get(2)))
                .collect(),
        }
    }

    /// Sessions of the relays' database sitting idle inside a transaction.
    pub fn idle_transactions(&self) -> i64 {
        match &self.source {
            Source::Sqlite(_) => 0,
            Source::Postgres(store) => store
                .query(
                    "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() \
                     AND state LIKE 'idle in transaction%'",
                    &[],
                )
                .expect("sessions")[0]
                .get(0),
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

/// How long after it fell due a page may still wait, when the target's lease is held by a
/// replica that stalled, crashed or lost the database (the promise: every page
/// leaves within 10 s of when it was due, whatever happens to one replica).
const FAILOVER_MS: i64 = 10_000;

/// Checks every invariant at `now`; `final_` after the world was made healthy and drained.
/// `running`: the lease holders of the replicas taking their steps.
pub fn invariants(
    model: &Model,
    observer: &mut Observer,
    world: &State,
    now: Timestamp,
    running: &BTreeSet<String>,
    final_: bool,
) -> Result<(), String> {
    let rows = observer.rows();
    let by_key: BTreeMap<&Key, &Row> = rows.iter().map(|r| (&r.key, r)).collect();
    if by_key.len() != rows.len() {
        return Err("two outbox rows for the same notification (a step queued twice)".into());
    }

    // Schedules first: their failures say more than "owed but never queued".
    schedules(model, &rows)?;
    timelines(model, observer, &rows)?;

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
        if let Expectation::NobodyOnCall(schedule) = how {
            let says = format!("nobody is on call in schedule {schedule} at ");
            if row.status != "dead" || !row.reason.as_deref().is_some_and(|r| r.starts_with(&says))
            {
                return Err(format!(
                    "a schedule step with nobody on call must be dead-lettered at once, saying so: {row:?}"
                ));
            }
        }
    }
    for row in &rows {
        if !model.expected.contains_key(&row.key) {
            return Err(format!("queued but not owed: {row:?}"));
        }
        // The idempotency key is the incident's, on every row and every re-send.
        if row.sequence_id != row.key.sequence_id() {
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
    // Per row: when it was last sent, and the earliest time the vendor allowed the next try
    // (any time, if that try's sender stalled and lost its lease before recording the answer).
    let mut last_try: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
    for got in &world.received {
        let key = got.key.clone();
        let Some(&id) = id_of.get(&key) else {
            return Err(format!(
                "a vendor received a page the relay never queued: {got:?}"
            ));
        };
        if got.sequence_id != key.sequence_id() {
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
        let wait = match got.abandoned {
            true => 0,
            false => got.retry_after.map_or(0, |d| d.as_millis() as i64),
        };
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
    // Every attempt a vendor saw is recorded once, but for an attempt whose sender stalled
    // and lost its lease to another replica: that one is never recorded (fencing).
    let mut seen: BTreeMap<i64, i64> = BTreeMap::new();
    for got in world.received.iter().filter(|g| !g.abandoned) {
        if let Some(&id) = id_of.get(&got.key) {
            *seen.entry(id).or_default() += 1;
        }
    }
    for row in &rows {
        let sent = seen.get(&row.id).copied().unwrap_or(0);
        if row.attempts != sent && !stalled_now(world, row) {
            return Err(format!(
                "{} attempts recorded, {sent} seen by the vendor (abandoned ones apart): {row:?}",
                row.attempts
            ));
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
    // (rows behind a head that waits for its retry wait too: delivery is in order) — unless a
    // replica that stopped taking steps holds the target's lease, and then for at most
    // FAILOVER_MS after it fell due.
    let stale: BTreeMap<String, i64> = observer
        .leases()
        .into_iter()
        .filter(|(_, holder, expires)| !running.contains(holder) && *expires > now.0)
        .map(|(target, _, expires)| (target, expires))
        .collect();
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
        if mode != Mode::Healthy || row.next_try > now.0 {
            continue;
        }
        if now.0 - row.next_try > FAILOVER_MS {
            return Err(format!(
                "a due page waited more than {FAILOVER_MS} ms: {row:?} (leases held by stopped replicas: {stale:?})"
            ));
        }
        if !stale.contains_key(&row.key.target) {
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

/// Schedules: a page from a schedule step names the person the model has on call at the
/// page's creation; a gap leaves exactly one dead row per schedule and pages the next step's
/// targets at once; a handoff is announced at most once per (schedule, person, shift start).
fn schedules(model: &Model, rows: &[Row]) -> Result<(), String> {
    let mut by_step: BTreeMap<(i64, usize, i64), Vec<&Row>> = BTreeMap::new();
    for row in rows {
        // The page names the person it goes to.
        let person = row.key.target.strip_prefix("person.");
        if row.person.as_deref() != person {
            return Err(format!("the page names {:?}: {row:?}", row.person));
        }
        if row.key.kind != Kind::Firing {
            continue;
        }
        by_step
            .entry((row.key.incident, row.key.step, row.key.created_at))
            .or_default()
            .push(row);
        let Some(resolution) =
            model
                .resolutions
                .get(&(row.key.incident, row.key.step, row.key.created_at))
        else {
            if row.key.target.starts_with("schedule.") {
                return Err(format!("a page to a schedule itself: {row:?}"));
            }
            continue;
        };
        if let Some(person) = person {
            let on_call = resolution.schedules.iter().any(|(_, p)| *p == Some(person));
            let instead = resolution.fallback.contains(&row.key.target.as_str());
            let direct = model
                .incidents
                .get(&row.key.incident)
                .and_then(|i| i.plan.steps.get(row.key.step))
                .is_some_and(|(_, targets)| targets.contains(&row.key.target.as_str()));
            if !on_call && !instead && !direct {
                return Err(format!(
                    "a schedule step paged {person}, but the model has {:?} on call then: {row:?}",
                    resolution.schedules
                ));
            }
        }
    }
    for ((incident, step, at), resolution) in &model.resolutions {
        let of_step = by_step
            .get(&(*incident, *step, *at))
            .map_or(&[][..], Vec::as_slice);
        for (schedule, who) in &resolution.schedules {
            let target = format!("schedule.{schedule}");
            let dead = of_step.iter().filter(|r| r.key.target == target).count();
            match who {
                None if dead != 1 => {
                    return Err(format!(
                        "nobody on call in {schedule} at {at} (incident {incident} step {step}): {dead} dead rows for it, not one"
                    ))
                }
                Some(p) if dead != 0 => {
                    return Err(format!(
                        "{p} is on call in {schedule} at {at}, yet a row for the schedule itself"
                    ))
                }
                Some(p) if !of_step.iter().any(|r| r.key.target == format!("person.{p}")) => {
                    return Err(format!(
                        "{p} is on call in {schedule} at {at}, yet not paged (incident {incident} step {step})"
                    ))
                }
                _ => {}
            }
        }
        for target in &resolution.fallback {
            if !of_step.iter().any(|r| r.key.target == *target) {
                return Err(format!(
                    "a gap at {at} (incident {incident} step {step}): the next step's {target} was not paged at once"
                ));
            }
        }
    }
    let mut announced = BTreeSet::new();
    for row in rows.iter().filter(|r| r.key.kind == Kind::Handoff) {
        let Some((schedule, start)) = &row.key.shift else {
            return Err(format!("a handoff notice without its shift: {row:?}"));
        };
        if row.key.incident != 0 {
            return Err(format!("a handoff notice of an incident: {row:?}"));
        }
        if !announced.insert((schedule, &row.key.target, *start))
            && !model.removal_notices.contains(&row.key)
        {
            return Err(format!(
                "handoff to {} in {schedule} at {start} announced twice: {row:?}",
                row.key.target
            ));
        }
    }
    Ok(())
}

/// Timelines: each incident started once; each recorded delivery has its event (for its
/// incident and target), and nothing else has; each notification given up on after it was
/// queued has one; each acknowledgement that stopped an incident is there.
fn timelines(model: &Model, observer: &Observer, rows: &[Row]) -> Result<(), String> {
    let events = observer.events();
    let count = |kind: &str| {
        let mut n: BTreeMap<(i64, Option<String>), usize> = BTreeMap::new();
        for (incident, k, target) in &events {
            if k == kind {
                *n.entry((*incident, target.clone())).or_default() += 1;
            }
        }
        n
    };
    let started: BTreeMap<i64, usize> = count("started")
        .into_iter()
        .map(|((i, _), n)| (i, n))
        .collect();
    for id in model.incidents.keys() {
        if started.get(id) != Some(&1) {
            return Err(format!(
                "incident {id}'s timeline has {:?} `started` events, not one",
                started.get(id)
            ));
        }
    }
    let mut delivered: BTreeMap<(i64, Option<String>), usize> = BTreeMap::new();
    let mut gave_up: BTreeMap<(i64, Option<String>), usize> = BTreeMap::new();
    for row in rows.iter().filter(|r| r.key.incident != 0) {
        let at = (row.key.incident, Some(row.key.target.clone()));
        match row.status.as_str() {
            "delivered" => *delivered.entry(at).or_default() += 1,
            // Dead at once (a target gone, nobody on call) is the step's own event.
            "dead"
                if !matches!(
                    model.expected.get(&row.key),
                    Some(Expectation::DeadAtOnce | Expectation::NobodyOnCall(_))
                ) =>
            {
                *gave_up.entry(at).or_default() += 1
            }
            _ => {}
        }
    }
    if count("delivered") != delivered {
        return Err(format!(
            "`delivered` events {:?} differ from delivered rows {delivered:?}",
            count("delivered")
        ));
    }
    // At least one per row given up on: a row dead-lettered by one replica (its target gone
    // from that replica's policy) may still be delivered by another that was sending it.
    let noted = count("dead_lettered");
    for (at, rows) in &gave_up {
        if noted.get(at).copied().unwrap_or(0) < *rows {
            return Err(format!(
                "{rows} rows given up on for {at:?}, `dead_lettered` events {noted:?}"
            ));
        }
    }
    let acknowledged: BTreeMap<i64, usize> = count("acknowledged")
        .into_iter()
        .map(|((i, _), n)| (i, n))
        .collect();
    if acknowledged != model.acknowledgements {
        return Err(format!(
            "`acknowledged` events {acknowledged:?}, the model has {:?}",
            model.acknowledgements
        ));
    }
    Ok(())
}

/// Whether `row` has an attempt in flight right now, by a stalled replica (not yet recorded,
/// nor known to be abandoned).
fn stalled_now(world: &State, row: &Row) -> bool {
    world.in_flight.as_ref().is_some_and(|key| *key == row.key)
}
