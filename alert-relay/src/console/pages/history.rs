//! The History page: resolved incidents, filtered and a page at a time, and who carried the
//! pager over a chosen period.

use axum::extract::{Query, State};
use axum::response::Response;
use serde::Deserialize;

use super::{chrome, unavailable, zone, Shared};
use crate::app::load::{DAY_ENDS, DAY_STARTS};
use crate::console::auth::Viewer;
use crate::console::views::history::{self as view, Choice, HistoryView, PERIODS};
use crate::console::{base_path, render};
use crate::domain::{Severity, Timestamp};
use crate::store::{HistoryFilter, Seek};

/// Incidents per page.
const PAGE: u32 = 50;
/// Longest filter value kept (a label value can be long, a typed one is not).
const MAX_VALUE: usize = 200;

/// What the page's forms and links send; every field optional.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Params {
    policy: String,
    severity: String,
    alertname: String,
    /// Days (`2027-01-15`) in the viewer's zone, both included.
    from: String,
    to: String,
    older: String,
    newer: String,
    days: String,
}

fn value(text: &str) -> Option<String> {
    let text = text.trim();
    (!text.is_empty()).then(|| text.chars().take(MAX_VALUE).collect())
}

/// `GET /history`.
pub async fn history(
    State(relay): State<Shared>,
    viewer: Viewer,
    Query(p): Query<Params>,
) -> Response {
    let now = Timestamp::now();
    let zone = zone(&relay, &viewer);
    let mut problems = Vec::new();
    let mut day = |field: &str, text: &str, next: bool| {
        let text = value(text)?;
        let start = view::day_start(&text, &zone, next);
        if start.is_none() {
            problems.push(format!(
                "“{text}” in {field} is not a date (YYYY-MM-DD): left out."
            ));
        }
        start
    };
    let filter = HistoryFilter {
        policy: value(&p.policy),
        severity: value(&p.severity).map(|s| Severity::from_label(Some(&s)).as_str().to_owned()),
        alertname: value(&p.alertname),
        closed_from: day("From", &p.from, false),
        closed_until: day("To", &p.to, true),
    };
    let seek = match (view::parse_cursor(&p.older), view::parse_cursor(&p.newer)) {
        (Some(c), _) => Seek::Older(c),
        (None, Some(c)) => Seek::Newer(c),
        (None, None) => Seek::Newest,
    };
    let days = p
        .days
        .trim()
        .parse()
        .ok()
        .filter(|d| PERIODS.contains(d))
        .unwrap_or(PERIODS[0]);
    let since = Timestamp(now.0 - i64::from(days) * 86_400_000);
    let found = tokio::try_join!(
        relay.history(filter.clone(), seek, PAGE),
        relay.person_load(since, now),
    );
    let (page, load) = match found {
        Ok(found) => found,
        Err(error) => return unavailable(error),
    };
    let base = format!("{}history", base_path(&relay.runtime()));
    let filters: Vec<(String, String)> = [
        ("policy", filter.policy.clone().unwrap_or_default()),
        ("severity", filter.severity.clone().unwrap_or_default()),
        ("alertname", filter.alertname.clone().unwrap_or_default()),
        ("from", value(&p.from).unwrap_or_default()),
        ("to", value(&p.to).unwrap_or_default()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let with = |extra: Vec<(String, String)>| {
        let mut params = filters.clone();
        params.push(("days".into(), days.to_string()));
        params.extend(extra);
        view::href(&base, &params)
    };
    let link = |name: &str, cursor| with(vec![(name.to_owned(), view::cursor_param(cursor))]);
    let runtime = relay.runtime();
    let mut policies: Vec<&str> = runtime
        .config
        .policies
        .iter()
        .map(|p| p.name.as_str())
        .collect();
    let chosen_policy = filter.policy.clone().unwrap_or_default();
    if !chosen_policy.is_empty() && !policies.contains(&chosen_policy.as_str()) {
        policies.push(&chosen_policy);
    }
    let chosen_severity = filter.severity.clone().unwrap_or_default();
    let mut severities = vec!["critical", "warning", "info"];
    if !chosen_severity.is_empty() && !severities.contains(&chosen_severity.as_str()) {
        severities.push(&chosen_severity);
    }
    let page_view = HistoryView {
        chrome: chrome(&relay, Some(&viewer)),
        alertname: filter.alertname.clone().unwrap_or_default(),
        from: value(&p.from).unwrap_or_default(),
        to: value(&p.to).unwrap_or_default(),
        policies: Choice::list(policies, &chosen_policy),
        severities: Choice::list(severities, &chosen_severity),
        periods: PERIODS
            .iter()
            .map(|d| Choice {
                value: d.to_string(),
                label: format!("{d} days"),
                selected: *d == days,
            })
            .collect(),
        problems,
        unreadable: page.unreadable,
        newest: (seek != Seek::Newest).then(|| with(Vec::new())),
        newer: page.newer.map(|c| link("newer", c)),
        older: page.older.map(|c| link("older", c)),
        incidents: page
            .incidents
            .into_iter()
            .map(|c| view::history_row(c, &zone))
            .collect(),
        keep_filters: filters.into_iter().filter(|(_, v)| !v.is_empty()).collect(),
        days,
        load: view::load_rows(&load),
        unattributed: (load.unattributed > 0).then(|| {
            format!(
                "{} acknowledgement{} by a link when several people had been paged, or by a name that is nobody's in the policy file (median {}).",
                load.unattributed,
                if load.unattributed == 1 { "" } else { "s" },
                load.unattributed_median.map_or_else(|| "—".to_owned(), view::span)
            )
        }),
        day_starts: format!("{DAY_STARTS:02}:00"),
        day_ends: format!("{DAY_ENDS:02}:00"),
        zone,
    };
    render(&page_view)
}
