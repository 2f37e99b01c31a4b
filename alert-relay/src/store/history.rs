//! What the history reads and retention deletes, the same on every backend: closed incidents
//! a page at a time (keyset on `(closed_at, id)`, never `OFFSET`), the timeline rows the
//! per-person numbers are worked out from, and the prune. The SQL that both backends share
//! is built here ([`closed_query`]); each backend only binds the arguments.

use crate::domain::Timestamp;
use crate::engine::{EventKind, IncidentRecord};

/// A place in the history: the `(closed_at, id)` of a row. The history reads newest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub closed_at: Timestamp,
    pub id: i64,
}

/// Where a page of the history starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seek {
    /// The newest rows.
    Newest,
    /// Rows closed before this one (the next page down).
    Older(Cursor),
    /// Rows closed after this one (the page above), the nearest first.
    Newer(Cursor),
}

/// Which closed incidents a history page lists; `None` is any.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HistoryFilter {
    pub policy: Option<String>,
    /// As `Severity::as_str` names it (`critical`, `warning`, `info`, or the label's value).
    pub severity: Option<String>,
    pub alertname: Option<String>,
    /// Closed at or after.
    pub closed_from: Option<Timestamp>,
    /// Closed before.
    pub closed_until: Option<Timestamp>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryQuery {
    pub filter: HistoryFilter,
    pub seek: Seek,
    pub limit: u32,
}

/// A closed incident, and when it closed (resolved, or closed by a new firing after a
/// silence).
#[derive(Debug, Clone, PartialEq)]
pub struct ClosedIncident {
    pub record: IncidentRecord,
    pub closed_at: Timestamp,
}

impl ClosedIncident {
    pub fn cursor(&self) -> Cursor {
        Cursor {
            closed_at: self.closed_at,
            id: self.record.id,
        }
    }
}

/// How finely pages are counted over time: a quarter of an hour. Every time zone's offset
/// and every change of it is a whole number of quarter hours, so a bucket lies wholly inside
/// or wholly outside working hours in any zone.
pub const BUCKET_MS: i64 = 15 * 60 * 1000;

/// Pages delivered to one target in one quarter hour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageBucket {
    pub target: String,
    /// The quarter hour's start (a multiple of [`BUCKET_MS`]).
    pub start: Timestamp,
    pub pages: u32,
}

/// What a prune deleted, by table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    pub incidents: usize,
    pub events: usize,
    pub outbox: usize,
    pub nonces: usize,
    pub sessions: usize,
    pub signin_links: usize,
}

impl Pruned {
    /// The counts by table name (the metric's `table` label).
    pub fn by_table(&self) -> [(&'static str, usize); 6] {
        [
            ("incidents", self.incidents),
            ("incident_events", self.events),
            ("outbox", self.outbox),
            ("ack_nonces", self.nonces),
            ("console_sessions", self.sessions),
            ("signin_links", self.signin_links),
        ]
    }

    pub fn add(&mut self, other: Pruned) {
        self.incidents += other.incidents;
        self.events += other.events;
        self.outbox += other.outbox;
        self.nonces += other.nonces;
        self.sessions += other.sessions;
        self.signin_links += other.signin_links;
    }
}

/// An incident's id and history columns (`closed_at`, `severity`, `alertname`), as the
/// migration tests read them back.
#[cfg(test)]
pub type HistoryColumns = (i64, Option<i64>, Option<String>, Option<String>);

/// An argument of a built query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Arg {
    Text(String),
    Int(i64),
}

/// The query of one history page: `SELECT id, incident_key, group_key, machine,
/// alert_group, closed_at` of readable closed incidents, newest first (nearest first for
/// [`Seek::Newer`]), `limit` rows; `placeholder(n)` writes the n-th argument's (`?n`, `$n`).
pub fn closed_query(q: &HistoryQuery, placeholder: fn(usize) -> String) -> (String, Vec<Arg>) {
    let mut args = Vec::new();
    let mut arg = |value: Arg| {
        args.push(value);
        placeholder(args.len())
    };
    let mut sql = String::from(
        "SELECT id, incident_key, group_key, machine, alert_group, closed_at FROM incidents \
         WHERE closed_at IS NOT NULL AND quarantined IS NULL",
    );
    let f = &q.filter;
    for (column, value) in [
        ("policy", &f.policy),
        ("severity", &f.severity),
        ("alertname", &f.alertname),
    ] {
        if let Some(value) = value {
            sql.push_str(&format!(
                " AND {column} = {}",
                arg(Arg::Text(value.clone()))
            ));
        }
    }
    if let Some(from) = f.closed_from {
        sql.push_str(&format!(" AND closed_at >= {}", arg(Arg::Int(from.0))));
    }
    if let Some(until) = f.closed_until {
        sql.push_str(&format!(" AND closed_at < {}", arg(Arg::Int(until.0))));
    }
    let order = match q.seek {
        Seek::Newest => "DESC",
        Seek::Older(c) | Seek::Newer(c) => {
            let (op, order) = match q.seek {
                Seek::Older(_) => ("<", "DESC"),
                _ => (">", "ASC"),
            };
            let (at, same, id) = (
                arg(Arg::Int(c.closed_at.0)),
                arg(Arg::Int(c.closed_at.0)),
                arg(Arg::Int(c.id)),
            );
            sql.push_str(&format!(
                " AND (closed_at {op} {at} OR (closed_at = {same} AND id {op} {id}))"
            ));
            order
        }
    };
    let limit = arg(Arg::Int(i64::from(q.limit)));
    sql.push_str(&format!(
        " ORDER BY closed_at {order}, id {order} LIMIT {limit}"
    ));
    (sql, args)
}

/// The kinds of event the per-person numbers read from an acknowledged incident's timeline.
pub const ESCALATION_KINDS: [EventKind; 4] = [
    EventKind::Paged,
    EventKind::Delivered,
    EventKind::Acknowledged,
    EventKind::AckTimedOut,
];

/// `SELECT` of the timeline rows of the incidents acknowledged in a period; arguments:
/// from, until, limit.
pub fn acknowledged_timelines_sql(placeholder: fn(usize) -> String) -> String {
    let kinds: Vec<String> = ESCALATION_KINDS
        .iter()
        .map(|k| format!("'{}'", k.as_str()))
        .collect();
    format!(
        // Driven by the acknowledged incidents, each read by its own index entries (an
        // `IN` over the kinds would have SQLite read every delivery ever made).
        "SELECT e.id, e.incident_id, e.at, e.kind, e.actor, e.target, e.detail \
         FROM (SELECT DISTINCT incident_id FROM incident_events \
             WHERE kind = 'acknowledged' AND at >= {from} AND at < {until}) AS a \
         JOIN incident_events AS e ON e.incident_id = a.incident_id \
         WHERE e.kind IN ({kinds}) ORDER BY e.incident_id, e.id LIMIT {limit}",
        from = placeholder(1),
        until = placeholder(2),
        limit = placeholder(3),
        kinds = kinds.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sqlite(n: usize) -> String {
        format!("?{n}")
    }

    #[test]
    fn a_first_page_without_filters_reads_newest_first() {
        let q = HistoryQuery {
            filter: HistoryFilter::default(),
            seek: Seek::Newest,
            limit: 51,
        };
        let (sql, args) = closed_query(&q, sqlite);
        assert!(sql.ends_with(
            "WHERE closed_at IS NOT NULL AND quarantined IS NULL ORDER BY closed_at DESC, id DESC LIMIT ?1"
        ), "{sql}");
        assert_eq!(args, [Arg::Int(51)]);
    }

    #[test]
    fn filters_and_a_cursor_are_arguments_never_text_in_the_query() {
        let q = HistoryQuery {
            filter: HistoryFilter {
                policy: Some("critical' OR 1=1 --".into()),
                severity: None,
                alertname: Some("GatewayDown".into()),
                closed_from: Some(Timestamp(10)),
                closed_until: None,
            },
            seek: Seek::Newer(Cursor {
                closed_at: Timestamp(20),
                id: 7,
            }),
            limit: 5,
        };
        let (sql, args) = closed_query(&q, |n| format!("${n}"));
        assert!(!sql.contains("OR 1=1"), "{sql}");
        assert!(sql.contains(
            "AND policy = $1 AND alertname = $2 AND closed_at >= $3 \
             AND (closed_at > $4 OR (closed_at = $5 AND id > $6)) ORDER BY closed_at ASC, id ASC LIMIT $7"
        ), "{sql}");
        assert_eq!(args.len(), 7);
        assert_eq!(args[5], Arg::Int(7));
    }
}
