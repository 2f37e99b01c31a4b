//! The outbox: the oldest pending notification per target, delivered, retried or dead-lettered.

use rusqlite::{params, Connection, OptionalExtension};

use super::{OutboxItem, StoreError, UNCONFIGURED};
use crate::domain::{TargetName, Timestamp};

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
/// dead-lettered so they do not wait forever. Returns how many, per target.
pub fn dead_letter_orphans(
    conn: &Connection,
    known: &[TargetName],
    now: Timestamp,
) -> Result<Vec<(String, usize)>, StoreError> {
    let mut stmt = conn.prepare("SELECT DISTINCT target FROM outbox WHERE status = 'pending'")?;
    let targets: Vec<String> = stmt
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let mut orphans = Vec::new();
    for target in targets
        .into_iter()
        .filter(|t| !known.iter().any(|k| k.as_str() == t.as_str()))
    {
        let count = conn.execute(
            "UPDATE outbox SET status = 'dead', done_at = ?2, last_error = ?3 WHERE target = ?1 AND status = 'pending'",
            params![target, now.0, UNCONFIGURED],
        )?;
        orphans.push((target, count));
    }
    Ok(orphans)
}

/// A notification given up on: refused by its vendor, or its target was removed.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub id: i64,
    pub incident_id: i64,
    pub target: String,
    pub attempts: u32,
    pub reason: String,
    pub created_at: Timestamp,
    pub dead_at: Timestamp,
}

/// The latest dead letters, newest first, at most `limit`.
pub fn dead_letters(conn: &Connection, limit: u32) -> Result<Vec<DeadLetter>, StoreError> {
    let mut stmt = conn.prepare(
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
