//! Calendar feeds of who is on call, in iCalendar (RFC 5545) for Google Calendar, Outlook and
//! Apple Calendar to subscribe to: one per schedule (`schedule-<name>`) and one per person
//! (`person-<name>`, their shifts in every schedule). Calendar apps cannot send a header, so
//! each feed has its own secret token in its URL (`?token=`), derived from the ack secret.
//! `GET /api/v1/calendars` (authenticated) lists the feeds with their URLs.

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use icalendar::{Calendar, Component, Property};
use serde::Deserialize;
use serde_json::json;

use super::{error, Shared};
use crate::domain::Timestamp;
use crate::engine::oncall::{Schedule, Shift};

/// A feed shows 30 days back and 90 ahead, at most this many shifts per schedule.
const MAX_SHIFTS: usize = 1000;
const PAST_MS: i64 = 30 * 86_400_000;
const AHEAD_MS: i64 = 90 * 86_400_000;

/// `20270301T080000Z`
fn ical_time(t: Timestamp) -> String {
    jiff::Timestamp::from_millisecond(t.0)
        .map(|t| t.strftime("%Y%m%dT%H%M%SZ").to_string())
        .unwrap_or_else(|_| "19700101T000000Z".into())
}

/// The feeds the policy file has: `schedule-<name>` and `person-<name>`.
pub fn feeds(config: &crate::config::Config) -> Vec<String> {
    config
        .schedules
        .keys()
        .map(|s| format!("schedule-{s}"))
        .chain(config.people.keys().map(|p| format!("person-{p}")))
        .collect()
}

/// The feed as iCalendar text: one event per shift, its UID stable across requests (so a
/// calendar updates an event rather than adding one), times in UTC.
pub fn render(feed: &str, shifts: &[(&Schedule, Shift)], now: Timestamp) -> String {
    let mut calendar = Calendar::new();
    calendar.name(&format!("On call: {feed}"));
    calendar.description("Who is on call, from alert-relay's schedules and overrides.");
    // How often subscribers should fetch again (Outlook and Apple read these).
    calendar.append_property(Property::new("X-PUBLISHED-TTL", "PT1H"));
    calendar.append_property(
        Property::new("REFRESH-INTERVAL", "PT1H")
            .add_parameter("VALUE", "DURATION")
            .done(),
    );
    for (schedule, shift) in shifts {
        let summary = if feed.starts_with("person-") {
            format!("On call: {}", schedule.name)
        } else {
            format!("On call: {} ({})", shift.person, schedule.name)
        };
        let mut description = format!(
            "{} is on call for {} until {}.",
            shift.person,
            schedule.name,
            schedule.local(shift.ends_at)
        );
        if shift.override_id.is_some() {
            description.push_str(" An override.");
        }
        let event = icalendar::Event::new()
            .uid(&format!("{}-{}@alert-relay", shift.key, shift.starts_at.0))
            .summary(&summary)
            .description(&description)
            .add_property("DTSTART", ical_time(shift.starts_at))
            .add_property("DTEND", ical_time(shift.ends_at))
            .add_property("DTSTAMP", ical_time(now))
            .add_property("TRANSP", "TRANSPARENT")
            .done();
        calendar.push(event);
    }
    calendar.done().to_string()
}

#[derive(Debug, Deserialize)]
pub struct FeedQuery {
    token: Option<String>,
}

/// `GET /calendar/{feed}.ics?token=…`: 403 with a wrong or missing token, 404 for a feed the
/// policy file does not have.
pub async fn feed(
    State(relay): State<Shared>,
    Path(file): Path<String>,
    Query(q): Query<FeedQuery>,
) -> Response {
    let Some(feed) = file.strip_suffix(".ics") else {
        return error(StatusCode::NOT_FOUND, "a feed ends in .ics");
    };
    let runtime = relay.runtime();
    if !feeds(&runtime.config).iter().any(|f| f == feed) {
        return error(StatusCode::NOT_FOUND, format!("no calendar feed {feed}"));
    }
    let valid = q
        .token
        .as_deref()
        .is_some_and(|t| runtime.links.key.verify_feed(feed, t));
    if !valid {
        return error(
            StatusCode::FORBIDDEN,
            "wrong or missing token (GET /api/v1/calendars lists the feeds' URLs)",
        );
    }
    let now = Timestamp::now();
    let window = (Timestamp(now.0 - PAST_MS), Timestamp(now.0 + AHEAD_MS));
    let shifts = match relay.feed_shifts(feed, window, MAX_SHIFTS).await {
        Ok(shifts) => shifts,
        Err(e) => {
            tracing::error!(error = %e, "cannot read the overrides");
            return error(StatusCode::SERVICE_UNAVAILABLE, "the store cannot be read");
        }
    };
    let shifts: Vec<(&Schedule, Shift)> = shifts.iter().map(|(s, x)| (s, x.clone())).collect();
    (
        [
            (header::CONTENT_TYPE, "text/calendar; charset=utf-8"),
            (header::CACHE_CONTROL, "private, max-age=300"),
        ],
        render(feed, &shifts, now),
    )
        .into_response()
}

/// `GET /api/v1/calendars`: every feed with its secret URL (under `server.public_url` when
/// set, else a path on this relay).
pub async fn list(State(relay): State<Shared>) -> Response {
    let runtime = relay.runtime();
    let listed: Vec<_> = feeds(&runtime.config)
        .into_iter()
        .map(|feed| json!({"url": runtime.feed_url(&feed), "feed": feed}))
        .collect();
    Json(json!({"calendars": listed})).into_response()
}
