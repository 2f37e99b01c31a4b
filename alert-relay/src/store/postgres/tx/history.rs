//! PostgreSQL's side of the history and of retention (`store::history`): the same rows and
//! answers as SQLite's.

use tokio_postgres::types::ToSql;

use super::{decode_incident, PgTx};
use crate::domain::Timestamp;
use crate::engine::IncidentEvent;
use crate::store::history::{
    self, Arg, ClosedIncident, HistoryQuery, PageBucket, Pruned, Seek, BUCKET_MS,
};
use crate::store::{BadRow, Loaded, StoreError};

fn numbered(n: usize) -> String {
    format!("${n}")
}

impl PgTx<'_> {
    pub(super) fn history_page(
        &mut self,
        q: &HistoryQuery,
    ) -> Result<Loaded<ClosedIncident>, StoreError> {
        let (sql, args) = history::closed_query(q, numbered);
        let args: Vec<Box<dyn ToSql + Sync>> = args
            .into_iter()
            .map(|a| -> Box<dyn ToSql + Sync> {
                match a {
                    Arg::Text(s) => Box::new(super::text(&s).into_owned()),
                    Arg::Int(i) => Box::new(i),
                }
            })
            .collect();
        let refs: Vec<&(dyn ToSql + Sync)> = args.iter().map(|a| a.as_ref()).collect();
        let rows = self.rows(&sql, &refs)?;
        let mut loaded = Loaded {
            rows: Vec::new(),
            bad: Vec::new(),
        };
        for row in &rows {
            let closed_at = row.try_get::<_, i64>(5).map(Timestamp);
            match (decode_incident(row), closed_at) {
                (Ok(record), Ok(closed_at)) => {
                    loaded.rows.push(ClosedIncident { record, closed_at })
                }
                (Err(bad), _) => loaded.bad.push(bad),
                (Ok(record), Err(e)) => loaded.bad.push(BadRow {
                    table: "incidents",
                    id: record.id,
                    error: e.to_string(),
                }),
            }
        }
        // A page above the cursor is read nearest first; it is shown newest first.
        if matches!(q.seek, Seek::Newer(_)) {
            loaded.rows.reverse();
        }
        Ok(loaded)
    }

    pub(super) fn page_counts(
        &mut self,
        (from, until): (Timestamp, Timestamp),
        (target_prefix, detail_prefix): (&str, &str),
        limit: u32,
    ) -> Result<Vec<PageBucket>, StoreError> {
        self.rows(
            "SELECT target, at / $6 * $6 AS bucket, COUNT(*) FROM incident_events \
             WHERE kind = 'delivered' AND at >= $1 AND at < $2 \
             AND starts_with(target, $3) AND starts_with(detail, $4) \
             GROUP BY target, bucket ORDER BY target, bucket LIMIT $5",
            &[
                &from.0,
                &until.0,
                &target_prefix,
                &detail_prefix,
                &i64::from(limit),
                &BUCKET_MS,
            ],
        )?
        .iter()
        .map(|r| {
            Ok(PageBucket {
                target: r.try_get(0)?,
                start: Timestamp(r.try_get(1)?),
                pages: u32::try_from(r.try_get::<_, i64>(2)?).unwrap_or(u32::MAX),
            })
        })
        .collect()
    }

    pub(super) fn acknowledged_events(
        &mut self,
        (from, until): (Timestamp, Timestamp),
        limit: u32,
    ) -> Result<Vec<IncidentEvent>, StoreError> {
        let sql = history::acknowledged_timelines_sql(numbered);
        self.rows(&sql, &[&from.0, &until.0, &i64::from(limit)])?
            .iter()
            .map(super::incident_event)
            .collect()
    }

    /// Relays pruning at once share the work: incidents another has locked are skipped.
    pub(super) fn prune(&mut self, before: Timestamp, limit: u32) -> Result<Pruned, StoreError> {
        let ids: Vec<i64> = self
            .rows(
                "SELECT id FROM incidents WHERE closed_at IS NOT NULL AND closed_at < $1 \
                 AND NOT EXISTS (SELECT 1 FROM outbox WHERE outbox.incident_id = incidents.id AND outbox.status = 'pending') \
                 ORDER BY closed_at, id LIMIT $2 FOR UPDATE SKIP LOCKED",
                &[&before.0, &i64::from(limit)],
            )?
            .iter()
            .map(|r| r.try_get(0))
            .collect::<Result<_, _>>()?;
        if ids.is_empty() {
            return Ok(Pruned::default());
        }
        Ok(Pruned {
            events: self.execute(
                "DELETE FROM incident_events WHERE incident_id = ANY($1)",
                &[&ids],
            )?,
            outbox: self.execute("DELETE FROM outbox WHERE incident_id = ANY($1)", &[&ids])?,
            nonces: self.execute(
                "DELETE FROM ack_nonces WHERE incident_id = ANY($1)",
                &[&ids],
            )?,
            incidents: self.execute("DELETE FROM incidents WHERE id = ANY($1)", &[&ids])?,
            ..Pruned::default()
        })
    }
}
