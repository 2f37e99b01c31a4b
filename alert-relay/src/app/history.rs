//! Use cases of the history: closed incidents a page at a time, who carried the pager over a
//! period ([`load`]), and retention — pruning incidents closed longer ago than `retention`
//! with their events, notifications and nonces, in small batches.

use std::time::Duration;

use super::load::{self, Load, People};
use super::Relay;
use crate::config::Config;
use crate::domain::Timestamp;
use crate::engine::events::page_delivery_prefix;
use crate::engine::oncall::person_target;
use crate::store::{
    ClosedIncident, Cursor, HistoryFilter, HistoryQuery, Mode, Pruned, Seek, StoreError,
};

/// Incidents deleted per transaction: short enough that intake never waits long behind it.
const PRUNE_BATCH: u32 = 200;
/// Batches per prune at most (the rest waits for the next pass).
const PRUNE_BATCHES: usize = 500;
/// Timeline rows read for the per-person numbers at most, per kind of query.
const LOAD_ROWS: u32 = 100_000;

/// One page of the history, newest first, and where the pages beside it start.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryPage {
    pub incidents: Vec<ClosedIncident>,
    /// Rows unreadable on this page (left out, logged).
    pub unreadable: usize,
    pub older: Option<Cursor>,
    pub newer: Option<Cursor>,
}

/// Pages rows read with one more than `limit` into a [`HistoryPage`]: the extra row says
/// whether there is more in the direction read.
pub fn paginate(mut rows: Vec<ClosedIncident>, seek: Seek, limit: usize) -> HistoryPage {
    let more = rows.len() > limit;
    let (older, newer) = match seek {
        Seek::Newest | Seek::Older(_) => {
            rows.truncate(limit);
            let older = more
                .then(|| rows.last().map(ClosedIncident::cursor))
                .flatten();
            let newer = match seek {
                Seek::Older(_) => rows.first().map(ClosedIncident::cursor),
                _ => None,
            };
            (older, newer)
        }
        Seek::Newer(_) => {
            // Newest first: the extra row is the first one.
            if more {
                rows.remove(0);
            }
            let newer = more
                .then(|| rows.first().map(ClosedIncident::cursor))
                .flatten();
            (rows.last().map(ClosedIncident::cursor), newer)
        }
    };
    HistoryPage {
        incidents: rows,
        unreadable: 0,
        older,
        newer,
    }
}

struct PolicyPeople<'a>(&'a Config);

impl People for PolicyPeople<'_> {
    fn zones(&self) -> Vec<(String, Option<String>)> {
        self.0
            .people
            .iter()
            .map(|(name, p)| (name.clone(), p.time_zone.clone()))
            .collect()
    }

    fn named(&self, who: &str) -> Option<String> {
        self.0.person_named(who).map(str::to_owned)
    }
}

impl Relay {
    /// Closed incidents that `filter` selects, `limit` to a page, from `seek`.
    pub async fn history(
        &self,
        filter: HistoryFilter,
        seek: Seek,
        limit: u32,
    ) -> Result<HistoryPage, StoreError> {
        let q = HistoryQuery {
            filter,
            seek,
            limit: limit.saturating_add(1),
        };
        let loaded = self
            .store
            .run(Mode::Read, move |tx| tx.closed_incidents(&q))
            .await?;
        for bad in &loaded.bad {
            tracing::warn!(table = bad.table, id = bad.id, error = %bad.error, "a closed incident cannot be read: left out of the history");
        }
        let mut page = paginate(loaded.rows, seek, usize::try_from(limit).unwrap_or(0));
        page.unreadable = loaded.bad.len();
        Ok(page)
    }

    /// Who carried the pager over `from` ≤ t < `until`: pages, pages outside hours and the
    /// median time to acknowledge, per person ([`load`] says how each is counted).
    pub async fn person_load(&self, from: Timestamp, until: Timestamp) -> Result<Load, StoreError> {
        let period = (from, until);
        let (pages, timelines) = self
            .store
            .run(Mode::Read, move |tx| {
                let people = person_target("");
                Ok((
                    tx.page_buckets(period, people.as_str(), &page_delivery_prefix(), LOAD_ROWS)?,
                    tx.acknowledged_timelines(period, LOAD_ROWS)?,
                ))
            })
            .await?;
        if pages.len() >= LOAD_ROWS as usize || timelines.len() >= LOAD_ROWS as usize {
            tracing::warn!(
                rows = LOAD_ROWS,
                "the period has more pages than the history reads: the numbers are partial"
            );
        }
        let runtime = self.runtime();
        Ok(load::load(
            &PolicyPeople(&runtime.config),
            period,
            &pages,
            &timelines,
        ))
    }

    /// Deletes the incidents closed more than `retention` before `now` (never an open one),
    /// with their timelines, notifications and acknowledge-link nonces, a batch per
    /// transaction; counts what went in `relay_pruned_rows_total`.
    pub async fn prune(&self, now: Timestamp) -> Result<Pruned, StoreError> {
        let retention = self.runtime().config.retention;
        let before = Timestamp(
            now.0
                .saturating_sub(i64::try_from(retention.as_millis()).unwrap_or(i64::MAX)),
        );
        // Console sessions and sign-in links once they have ended, kept an hour after for
        // the sign-in rate limits (15 minutes) and the logs.
        let ended = Timestamp(now.0.saturating_sub(3_600_000));
        // A failure here does not keep the incidents from being pruned: logged, tried again
        // at the next pass.
        let (sessions, signin_links) = self
            .store
            .run(Mode::Relaxed, move |tx| tx.prune_console(ended))
            .await
            .unwrap_or_else(|error| {
                tracing::warn!(%error, "retention: cannot prune ended console sessions");
                (0, 0)
            });
        let mut total = Pruned {
            sessions,
            signin_links,
            ..Pruned::default()
        };
        for (table, rows) in total.by_table() {
            self.metrics
                .pruned
                .with_label_values(&[table])
                .inc_by(rows as u64);
        }
        for _ in 0..PRUNE_BATCHES {
            let pruned = self
                .store
                .run(Mode::Relaxed, move |tx| {
                    tx.prune_closed(before, PRUNE_BATCH)
                })
                .await?;
            for (table, rows) in pruned.by_table() {
                self.metrics
                    .pruned
                    .with_label_values(&[table])
                    .inc_by(rows as u64);
            }
            total.add(pruned);
            if pruned.incidents < PRUNE_BATCH as usize {
                break;
            }
            // Between batches, intake and delivery get the store first.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if total.incidents + total.sessions + total.signin_links > 0 {
            tracing::info!(
                incidents = total.incidents,
                events = total.events,
                notifications = total.outbox,
                sessions = total.sessions,
                signin_links = total.signin_links,
                closed_before = %before.to_rfc3339(),
                "retention: old closed incidents pruned"
            );
        }
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{sample_notification, IncidentKey, NotificationKind};
    use crate::engine::{Incident, IncidentRecord, Plan};

    fn closed(id: i64) -> ClosedIncident {
        let group = sample_notification("p", "t", NotificationKind::Firing).group;
        let plan = Plan {
            policy: "p".into(),
            steps: Vec::new(),
            repeat: None,
            send_resolved: true,
            ack_timeout_ms: None,
        };
        ClosedIncident {
            record: IncidentRecord {
                id,
                key: IncidentKey::default(),
                group_key: group.group_key.clone(),
                group,
                machine: Incident::start(plan, Timestamp(0)).0,
            },
            closed_at: Timestamp(id * 10),
        }
    }

    fn ids(page: &HistoryPage) -> Vec<i64> {
        page.incidents.iter().map(|c| c.record.id).collect()
    }

    fn at(id: i64) -> Option<Cursor> {
        Some(closed(id).cursor())
    }

    #[test]
    fn the_first_page_links_only_to_older_rows_when_there_are_some() {
        let page = paginate(vec![closed(9), closed(8), closed(7)], Seek::Newest, 2);
        assert_eq!(
            (ids(&page), page.older, page.newer),
            (vec![9, 8], at(8), None)
        );
        let all = paginate(vec![closed(9), closed(8)], Seek::Newest, 2);
        assert_eq!((all.older, all.newer), (None, None));
    }

    #[test]
    fn a_page_further_down_links_both_ways_until_the_last() {
        let cursor = closed(9).cursor();
        let middle = paginate(
            vec![closed(8), closed(7), closed(6)],
            Seek::Older(cursor),
            2,
        );
        assert_eq!(
            (ids(&middle), middle.older, middle.newer),
            (vec![8, 7], at(7), at(8))
        );
        let last = paginate(vec![closed(6)], Seek::Older(cursor), 2);
        assert_eq!((last.older, last.newer), (None, at(6)));
    }

    #[test]
    fn a_page_above_drops_its_extra_row_at_the_top() {
        let cursor = closed(5).cursor();
        let above = paginate(
            vec![closed(8), closed(7), closed(6)],
            Seek::Newer(cursor),
            2,
        );
        assert_eq!(
            (ids(&above), above.older, above.newer),
            (vec![7, 6], at(6), at(7))
        );
        let top = paginate(vec![closed(7), closed(6)], Seek::Newer(cursor), 2);
        assert_eq!((ids(&top), top.older, top.newer), (vec![7, 6], at(6), None));
    }
}
