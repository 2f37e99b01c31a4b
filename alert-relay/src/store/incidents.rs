//! Incidents: webhooks applied to them, due steps fired, escalations stopped; each change with
//! the outbox rows it creates in one transaction.

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::{
    AckOutcome, Composer, Effects, IngestOutcome, StoreError, StoredIncident, UNCONFIGURED,
};
use crate::domain::{AlertGroup, GroupKey, PolicyName, Timestamp};
use crate::escalation::{Action, Event, Incident, Phase, Plan, StopReason};

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
                    // A target a reload removed since the incident started: dead at once.
                    let dead = !composer.configured(&target);
                    tx.execute(
                        "INSERT INTO outbox (incident_id, target, payload, status, next_try, created_at, done_at, last_error) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?6, ?7)",
                        params![
                            incident.id,
                            target.as_str(),
                            serde_json::to_string(&notification)?,
                            if dead { "dead" } else { "pending" },
                            now.0,
                            dead.then_some(now.0),
                            dead.then_some(UNCONFIGURED),
                        ],
                    )?;
                    if dead {
                        effects.unconfigured.push(target);
                    } else {
                        effects.queued += 1;
                    }
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

/// Open incidents (escalating, or stopped and waiting for the resolve), oldest first, at most
/// `limit`.
pub fn open_incidents(conn: &Connection, limit: u32) -> Result<Vec<StoredIncident>, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT id, group_key, machine, alert_group FROM incidents WHERE open = 1 ORDER BY id LIMIT ?1",
    )?;
    let rows = stmt.query_map(params![limit], row_to_incident)?;
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
