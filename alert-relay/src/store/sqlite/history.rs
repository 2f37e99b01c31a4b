//! SQLite's side of the history and of retention (`store::history`): the schema version that
//! adds them, and their queries.

use rusqlite::{params, params_from_iter, Connection};

use super::{decode, incident_row, BadRow, Loaded, StoreError};
use crate::domain::{AlertGroup, Timestamp};
use crate::engine::IncidentEvent;
use crate::store::history::{
    self, Arg, ClosedIncident, HistoryQuery, PageBucket, Pruned, BUCKET_MS,
};

/// When an incident closed, and what the history filters on, as columns; the indexes that
/// serve a history page, the per-person numbers, the dead letters and the prune. Closed
/// incidents stored before get `closed_at` from their last update, and their severity and
/// alert name from [`backfill`].
pub(super) const MIGRATION: &str = "
ALTER TABLE incidents ADD COLUMN closed_at INTEGER;
ALTER TABLE incidents ADD COLUMN severity TEXT;
ALTER TABLE incidents ADD COLUMN alertname TEXT;
UPDATE incidents SET closed_at = updated_at WHERE open = 0;
CREATE INDEX incidents_closed ON incidents (closed_at, id) WHERE closed_at IS NOT NULL;
CREATE INDEX incidents_closed_policy ON incidents (policy, closed_at, id) WHERE closed_at IS NOT NULL;
CREATE INDEX incidents_closed_severity ON incidents (severity, closed_at, id) WHERE closed_at IS NOT NULL;
CREATE INDEX incidents_closed_alertname ON incidents (alertname, closed_at, id) WHERE closed_at IS NOT NULL;
CREATE INDEX incident_events_kind_at ON incident_events (kind, at);
CREATE INDEX outbox_incident ON outbox (incident_id);
CREATE INDEX outbox_dead ON outbox (id) WHERE status = 'dead';
CREATE INDEX ack_nonces_incident ON ack_nonces (incident_id);
";

/// Fills `severity` and `alertname` of the incidents stored before the columns existed, as
/// the relay fills them on every write (rows that cannot be read are left empty).
pub(super) fn backfill(conn: &Connection) -> Result<(), StoreError> {
    let rows: Vec<(i64, rusqlite::Result<String>)> = conn
        .prepare("SELECT id, alert_group FROM incidents WHERE severity IS NULL")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1))))?
        .collect::<Result<_, _>>()?;
    let mut update =
        conn.prepare("UPDATE incidents SET severity = ?2, alertname = ?3 WHERE id = ?1")?;
    for (id, group) in rows {
        let Some(group) = group
            .ok()
            .and_then(|g| serde_json::from_str::<AlertGroup>(&g).ok())
        else {
            continue;
        };
        update.execute(params![id, group.severity().as_str(), group.alertname()])?;
    }
    Ok(())
}

fn numbered(n: usize) -> String {
    format!("?{n}")
}

fn sql_arg(arg: &Arg) -> rusqlite::types::Value {
    match arg {
        Arg::Text(s) => rusqlite::types::Value::Text(s.clone()),
        Arg::Int(i) => rusqlite::types::Value::Integer(*i),
    }
}

pub(super) fn closed_incidents(
    conn: &Connection,
    q: &HistoryQuery,
) -> Result<Loaded<ClosedIncident>, StoreError> {
    let (sql, args) = history::closed_query(q, numbered);
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params_from_iter(args.iter().map(sql_arg)), |row| {
        let closed_at = Timestamp(row.get(5)?);
        Ok(match incident_row(row) {
            Ok(raw) => decode(raw).map(|record| ClosedIncident { record, closed_at }),
            Err(e) => Err(BadRow {
                table: "incidents",
                id: row.get(0).unwrap_or_default(),
                error: e.to_string(),
            }),
        })
    })?;
    let mut loaded = Loaded {
        rows: Vec::new(),
        bad: Vec::new(),
    };
    for row in rows {
        match row? {
            Ok(closed) => loaded.rows.push(closed),
            Err(bad) => loaded.bad.push(bad),
        }
    }
    // A page above the cursor is read nearest first; it is shown newest first.
    if matches!(q.seek, history::Seek::Newer(_)) {
        loaded.rows.reverse();
    }
    Ok(loaded)
}

pub(super) fn page_buckets(
    conn: &Connection,
    (from, until): (Timestamp, Timestamp),
    (target_prefix, detail_prefix): (&str, &str),
    limit: u32,
) -> Result<Vec<PageBucket>, StoreError> {
    // The target as a range (binary collation) reads the prefix's part of the index alone,
    // which holds every column read (no row is looked up) in time order per target. The
    // index named, as the bundled SQLite would rather take (kind, at) and read every
    // delivery of the period, to any target, row by row.
    let (range, end) = match prefix_end(target_prefix) {
        // The prefix check too: the range's end is loose past a surrogate gap.
        Some(end) => (
            "AND target >= ?3 AND target < ?6 AND substr(target, 1, length(?3)) = ?3",
            end,
        ),
        None => (
            "AND substr(target, 1, length(?3)) = ?3 AND ?6 = ''",
            String::new(),
        ),
    };
    Ok(conn
        .prepare_cached(&format!(
            "SELECT target, at / ?7 * ?7 AS bucket, COUNT(*) FROM incident_events \
             INDEXED BY incident_events_kind_target \
             WHERE kind = 'delivered' {range} AND at >= ?1 AND at < ?2 \
             AND substr(detail, 1, length(?4)) = ?4 \
             GROUP BY target, bucket ORDER BY target, bucket LIMIT ?5"
        ))?
        .query_map(
            params![
                from.0,
                until.0,
                target_prefix,
                detail_prefix,
                limit,
                end,
                BUCKET_MS
            ],
            |r| {
                Ok(PageBucket {
                    target: r.get(0)?,
                    start: Timestamp(r.get(1)?),
                    pages: r.get(2)?,
                })
            },
        )?
        .collect::<Result<_, _>>()?)
}

/// The first string after every string that starts with `prefix` (None: no such bound).
fn prefix_end(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        if let Some(next) = char::from_u32(u32::from(last) + 1) {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

pub(super) fn acknowledged_timelines(
    conn: &Connection,
    (from, until): (Timestamp, Timestamp),
    limit: u32,
) -> Result<Vec<IncidentEvent>, StoreError> {
    let sql = history::acknowledged_timelines_sql(numbered);
    Ok(conn
        .prepare_cached(&sql)?
        .query_map(params![from.0, until.0, limit], super::incident_event)?
        .collect::<Result<_, _>>()?)
}

pub(super) fn prune_closed(
    conn: &Connection,
    before: Timestamp,
    limit: u32,
) -> Result<Pruned, StoreError> {
    let ids: Vec<i64> = conn
        .prepare_cached(
            // Never the newest incident: the next id is the highest one plus one, and an id
            // must never come back (links, sequence ids and receivers' keys name it).
            "SELECT id FROM incidents WHERE closed_at IS NOT NULL AND closed_at < ?1 \
             AND id < (SELECT MAX(id) FROM incidents) \
             AND NOT EXISTS (SELECT 1 FROM outbox WHERE outbox.incident_id = incidents.id AND outbox.status = 'pending') \
             ORDER BY closed_at, id LIMIT ?2",
        )?
        .query_map(params![before.0, limit], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let mut pruned = Pruned::default();
    for id in ids {
        let delete = |sql: &str| -> Result<usize, StoreError> {
            Ok(conn.prepare_cached(sql)?.execute(params![id])?)
        };
        pruned.events += delete("DELETE FROM incident_events WHERE incident_id = ?1")?;
        pruned.outbox += delete("DELETE FROM outbox WHERE incident_id = ?1")?;
        pruned.nonces += delete("DELETE FROM ack_nonces WHERE incident_id = ?1")?;
        pruned.incidents += delete("DELETE FROM incidents WHERE id = ?1")?;
    }
    Ok(pruned)
}

#[cfg(test)]
mod tests {
    use super::super::{SqliteStore, MIGRATIONS};
    use super::*;
    use crate::domain::{sample_notification, NotificationKind};
    use crate::store::history::HistoryColumns;

    #[test]
    fn incidents_from_before_the_history_get_its_columns() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("relay.db");
        let conn = Connection::open(&path).expect("open");
        let before = MIGRATIONS
            .iter()
            .position(|m| *m == MIGRATION)
            .expect("a step of the schema");
        for step in &MIGRATIONS[..before] {
            conn.execute_batch(step).expect("an older schema");
        }
        conn.pragma_update(None, "user_version", before)
            .expect("version");
        let group = sample_notification("critical", "GatewayDown", NotificationKind::Firing).group;
        let group = serde_json::to_string(&group).expect("json");
        for (id, open, alert_group) in [(1, 0, group.as_str()), (2, 1, group.as_str()), (3, 0, "{")]
        {
            conn.execute(
                "INSERT INTO incidents (id, policy, group_key, open, machine, alert_group, started_at, updated_at) \
                 VALUES (?1, 'critical', ?1, ?2, '{}', ?3, 5, 9)",
                params![id, open, alert_group],
            )
            .expect("a row of the older schema");
        }
        drop(conn);
        let store = SqliteStore::open_file(&path).expect("migrated");
        let rows: Vec<HistoryColumns> = store
            .with_connection(|c| {
                Ok(c.prepare(
                    "SELECT id, closed_at, severity, alertname FROM incidents ORDER BY id",
                )?
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
                .collect::<Result<_, _>>()?)
            })
            .expect("rows");
        let expected_name =
            sample_notification("critical", "GatewayDown", NotificationKind::Firing)
                .group
                .alertname()
                .map(str::to_owned);
        assert_eq!(
            rows,
            [
                (1, Some(9), Some("critical".into()), expected_name.clone()),
                (2, None, Some("critical".into()), expected_name),
                (3, Some(9), None, None),
            ]
        );
    }

    #[test]
    fn a_prefix_ends_where_its_last_character_is_passed() {
        assert_eq!(prefix_end("person.").as_deref(), Some("person/"));
        assert_eq!(prefix_end("").as_deref(), None);
        assert_eq!(prefix_end("a\u{10FFFF}").as_deref(), Some("b"));
    }
}
