//! The History page's view model: closed incidents with their filters and pages, and who
//! carried the pager; and the parsing of what its forms send (days in the viewer's zone, a
//! place in the history).

use std::time::Duration;

use askama::Template;

use super::{ago, local, Chrome};
use crate::app::load::Load;
use crate::app::OpenIncident;
use crate::domain::Timestamp;
use crate::store::{ClosedIncident, Cursor};

/// The periods the per-person numbers are shown over, in days; the first is the default.
pub const PERIODS: [u32; 4] = [30, 7, 14, 90];

#[derive(Template)]
#[template(path = "console/history.html")]
pub struct HistoryView {
    pub chrome: Chrome,
    pub zone: String,
    /// The filters as sent, to show them again.
    pub alertname: String,
    pub from: String,
    pub to: String,
    pub policies: Vec<Choice>,
    pub severities: Vec<Choice>,
    pub periods: Vec<Choice>,
    /// What in the form could not be read (and was left out).
    pub problems: Vec<String>,
    pub incidents: Vec<HistoryRow>,
    pub unreadable: usize,
    pub newest: Option<String>,
    pub newer: Option<String>,
    pub older: Option<String>,
    /// The filters as hidden fields of the per-person form (and the other way round).
    pub keep_filters: Vec<(String, String)>,
    pub days: u32,
    pub load: Vec<LoadRow>,
    pub unattributed: Option<String>,
    /// When working hours start and end (`08:00`, `20:00`).
    pub day_starts: String,
    pub day_ends: String,
}

/// An option of a `<select>`.
pub struct Choice {
    pub value: String,
    pub label: String,
    pub selected: bool,
}

impl Choice {
    pub fn list<'a>(values: impl IntoIterator<Item = &'a str>, chosen: &str) -> Vec<Choice> {
        values
            .into_iter()
            .map(|v| Choice {
                value: v.to_owned(),
                label: v.to_owned(),
                selected: v == chosen,
            })
            .collect()
    }
}

pub struct HistoryRow {
    pub id: i64,
    pub title: String,
    pub severity: String,
    pub policy: String,
    pub closed: String,
    pub lasted: String,
    pub ended: String,
}

pub struct LoadRow {
    pub person: String,
    pub zone: String,
    pub pages: u32,
    pub outside: u32,
    pub acks: u32,
    pub median: String,
}

pub fn history_row(closed: ClosedIncident, zone: &str) -> HistoryRow {
    let closed_at = closed.closed_at;
    let open = OpenIncident {
        record: closed.record,
        waiting: Vec::new(),
    };
    let m = &open.record.machine;
    let ended = match (&m.acknowledged_by, &m.silence_note) {
        (Some(by), _) => format!("Acknowledged by {}, then resolved", super::who(by)),
        (None, Some(note)) => format!("Silenced ({note})"),
        (None, None) => "Resolved without an acknowledgement".to_owned(),
    };
    HistoryRow {
        id: open.record.id,
        title: super::title(&open),
        severity: super::severity(&open),
        policy: m.plan.policy.as_str().to_owned(),
        closed: local(closed_at, zone),
        lasted: ago(m.started_at, closed_at),
        ended,
    }
}

pub fn load_rows(load: &Load) -> Vec<LoadRow> {
    load.people
        .iter()
        .map(|p| LoadRow {
            person: p.person.clone(),
            zone: p.zone.clone(),
            pages: p.pages,
            outside: p.pages_outside_hours,
            acks: p.acks,
            median: p.median_ack.map_or_else(|| "—".to_owned(), span),
        })
        .collect()
}

/// A duration as the console writes one (`4 min`, `1 h 5 min`).
pub fn span(d: Duration) -> String {
    let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    ago(Timestamp(0), Timestamp(ms))
}

/// The start of `day` (`2027-01-15`, as a date field sends it) in `zone`; `next` gives the
/// start of the day after (an inclusive end).
pub fn day_start(day: &str, zone: &str, next: bool) -> Option<Timestamp> {
    let tz = jiff::tz::TimeZone::get(zone).unwrap_or(jiff::tz::TimeZone::UTC);
    let mut date: jiff::civil::Date = day.trim().parse().ok()?;
    if next {
        date = date.tomorrow().ok()?;
    }
    let start = date.to_zoned_datetime(tz).ok()?;
    Some(Timestamp(start.timestamp().as_millisecond()))
}

/// A place in the history as a link carries it: `<closed_at ms>.<id>`.
pub fn cursor_param(c: Cursor) -> String {
    format!("{}.{}", c.closed_at.0, c.id)
}

pub fn parse_cursor(text: &str) -> Option<Cursor> {
    let (at, id) = text.trim().split_once('.')?;
    Some(Cursor {
        closed_at: Timestamp(at.parse().ok()?),
        id: id.parse().ok()?,
    })
}

/// `base` with `params` as its query string (empty values left out).
pub fn href(base: &str, params: &[(String, String)]) -> String {
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in params.iter().filter(|(_, v)| !v.is_empty()) {
        query.append_pair(k, v);
    }
    let query = query.finish();
    if query.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{query}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_day_starts_at_midnight_in_the_viewers_zone() {
        // 2027-01-15T00:00 in Berlin is 2027-01-14T23:00Z.
        let start = day_start("2027-01-15", "Europe/Berlin", false).expect("a day");
        assert_eq!(start.to_rfc3339(), "2027-01-14T23:00:00.000Z");
        let end = day_start("2027-01-15", "Europe/Berlin", true).expect("the next");
        assert_eq!(end.0 - start.0, 86_400_000);
        assert_eq!(day_start("15/01/2027", "UTC", false), None);
        assert_eq!(day_start("<script>", "UTC", false), None);
    }

    #[test]
    fn a_place_in_the_history_round_trips_and_nonsense_is_none() {
        let c = Cursor {
            closed_at: Timestamp(1_800_000_000_000),
            id: 42,
        };
        assert_eq!(parse_cursor(&cursor_param(c)), Some(c));
        for bad in ["", "42", "x.y", "1.2.3", "1800000000000.-"] {
            assert_eq!(parse_cursor(bad), None, "{bad}");
        }
    }

    #[test]
    fn links_carry_only_the_filters_that_are_set_encoded() {
        let params = [
            ("policy".to_owned(), "a&b c".to_owned()),
            ("severity".to_owned(), String::new()),
        ];
        assert_eq!(href("/history", &params), "/history?policy=a%26b+c");
        assert_eq!(href("/history", &[]), "/history");
    }

    #[test]
    fn spans_read_like_the_rest_of_the_console() {
        assert_eq!(span(Duration::from_secs(45)), "45 s");
        assert_eq!(span(Duration::from_secs(3900)), "1 h 5 min");
    }
}
