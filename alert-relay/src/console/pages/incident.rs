//! An incident's page, and what can be done about it.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;

use super::{chrome, refused, unavailable, zone, Shared, TokenForm};
use crate::console::auth::Viewer;
use crate::console::views::{self, IncidentPage};
use crate::console::{base_path, page_error, render};
use crate::domain::Timestamp;
use crate::engine::AckOutcome;

/// `GET /incidents/{id}`: its alerts, its timeline, what comes next, and what to do.
pub async fn incident(
    State(relay): State<Shared>,
    viewer: Viewer,
    Path(id): Path<i64>,
) -> Response {
    let now = Timestamp::now();
    let zone = zone(&relay, &viewer);
    let found = tokio::try_join!(
        relay.incident(id),
        relay.timeline(id, 500),
        relay.on_call(now, 0)
    );
    let (open, events, on_call) = match found {
        Ok(found) => found,
        Err(error) => return unavailable(error),
    };
    let Some(open) = open else {
        return page_error(StatusCode::NOT_FOUND, "There is no such incident.");
    };
    let m = &open.record.machine;
    let page = IncidentPage {
        chrome: chrome(&relay, Some(&viewer)),
        id,
        title: views::title(&open),
        severity: views::severity(&open),
        state: views::state(&open, &zone),
        policy: m.plan.policy.as_str().to_owned(),
        started: views::local(m.started_at, &zone),
        next: views::next(&open, &on_call, &zone),
        can_ack: m.is_escalating(),
        can_escalate: m.is_escalating() && m.next_due().is_some(),
        can_resolve: !m.is_closed(),
        can_silence: !m.is_closed() && relay.runtime().silences.is_some(),
        alerts: views::alerts(&open),
        links: views::links(&open),
        timeline: events.iter().map(|e| views::event_row(e, &zone)).collect(),
        zone,
    };
    render(&page)
}

/// `POST /incidents/{id}/ack`: acknowledges for the viewer.
pub async fn acknowledge(
    State(relay): State<Shared>,
    viewer: Viewer,
    Path(id): Path<i64>,
    headers: HeaderMap,
    Form(form): Form<TokenForm>,
) -> Response {
    if let Some(no) = refused(&relay, &viewer, &headers, &form.csrf) {
        return no;
    }
    let by = format!("{} (console)", viewer.person);
    match relay.acknowledge(id, by, Timestamp::now()).await {
        Ok(outcome) => {
            tracing::info!(incident = id, person = %viewer.person, ?outcome, "acknowledged in the console");
            if outcome == AckOutcome::UnknownIncident {
                return page_error(StatusCode::NOT_FOUND, "There is no such incident.");
            }
            let base = base_path(&relay.runtime());
            Redirect::to(&format!("{base}incidents/{id}")).into_response()
        }
        Err(error) => unavailable(error),
    }
}

/// What an action by hand did, as the incident page answers it.
fn after_action(
    relay: &crate::app::Relay,
    id: i64,
    done: Result<crate::engine::ManualOutcome, crate::app::ManualError>,
) -> Response {
    use crate::app::ManualError;
    match done {
        Ok(_) => {
            let base = base_path(&relay.runtime());
            Redirect::to(&format!("{base}incidents/{id}")).into_response()
        }
        Err(ManualError::Unknown(_)) => {
            page_error(StatusCode::NOT_FOUND, "There is no such incident.")
        }
        Err(ManualError::Store(error)) => unavailable(error),
        Err(error @ (ManualError::NoAlertmanager | ManualError::Alertmanager(_))) => {
            tracing::warn!(incident = id, %error, "console: silence refused");
            page_error(StatusCode::BAD_GATEWAY, &error.to_string())
        }
    }
}

/// `POST /incidents/{id}/escalate`: the next step now.
pub async fn escalate(
    State(relay): State<Shared>,
    viewer: Viewer,
    Path(id): Path<i64>,
    headers: HeaderMap,
    Form(form): Form<TokenForm>,
) -> Response {
    if let Some(no) = refused(&relay, &viewer, &headers, &form.csrf) {
        return no;
    }
    let done = relay
        .escalate_now(id, &viewer.person, Timestamp::now())
        .await;
    tracing::info!(incident = id, person = %viewer.person, ?done, "escalate now, from the console");
    after_action(&relay, id, done)
}

/// `POST /incidents/{id}/resolve`: closes it by hand (alerts Alertmanager no longer sends).
pub async fn resolve(
    State(relay): State<Shared>,
    viewer: Viewer,
    Path(id): Path<i64>,
    headers: HeaderMap,
    Form(form): Form<TokenForm>,
) -> Response {
    if let Some(no) = refused(&relay, &viewer, &headers, &form.csrf) {
        return no;
    }
    let done = relay
        .resolve_by_hand(id, &viewer.person, Timestamp::now())
        .await;
    tracing::info!(incident = id, person = %viewer.person, ?done, "resolved by hand, from the console");
    after_action(&relay, id, done)
}

#[derive(serde::Deserialize)]
pub struct SilenceForm {
    #[serde(default)]
    csrf: String,
    /// `1h`, `4h`, or `until` (then `until` holds a local date and time).
    #[serde(default, rename = "for")]
    length: String,
    #[serde(default)]
    until: String,
}

/// The longest silence the console makes (longer ones belong in Alertmanager's own UI).
const LONGEST_SILENCE_MS: i64 = 14 * 24 * 3600 * 1000;

/// When a silence asked for in `form` ends, read in `zone`; `Err` says what is wrong.
fn silence_end(form: &SilenceForm, zone: &str, now: Timestamp) -> Result<Timestamp, String> {
    let end = match form.length.as_str() {
        "1h" => now.plus(std::time::Duration::from_secs(3600)),
        "4h" => now.plus(std::time::Duration::from_secs(4 * 3600)),
        "until" => {
            let local: jiff::civil::DateTime = form.until.trim().parse().map_err(|_| {
                "Give the end as a date and time, like 2026-12-08T09:00.".to_owned()
            })?;
            let tz = jiff::tz::TimeZone::get(zone).unwrap_or(jiff::tz::TimeZone::UTC);
            let zoned = local
                .to_zoned_datetime(tz)
                .map_err(|e| format!("That time does not exist in {zone}: {e}"))?;
            Timestamp(zoned.timestamp().as_millisecond())
        }
        _ => return Err("Choose how long to silence for.".into()),
    };
    if end.0 <= now.0 {
        return Err("The end of a silence must be in the future.".into());
    }
    if end.0 - now.0 > LONGEST_SILENCE_MS {
        return Err(
            "At most 14 days from the console; longer silences belong in Alertmanager.".into(),
        );
    }
    Ok(end)
}

/// `POST /incidents/{id}/silence`: a silence in Alertmanager, created by the viewer.
pub async fn silence(
    State(relay): State<Shared>,
    viewer: Viewer,
    Path(id): Path<i64>,
    headers: HeaderMap,
    Form(form): Form<SilenceForm>,
) -> Response {
    if let Some(no) = refused(&relay, &viewer, &headers, &form.csrf) {
        return no;
    }
    let now = Timestamp::now();
    let until = match silence_end(&form, &zone(&relay, &viewer), now) {
        Ok(until) => until,
        Err(why) => return page_error(StatusCode::BAD_REQUEST, &why),
    };
    let done = relay.silence_incident(id, &viewer.person, until, now).await;
    after_action(&relay, id, done)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(length: &str, until: &str) -> SilenceForm {
        SilenceForm {
            csrf: String::new(),
            length: length.into(),
            until: until.into(),
        }
    }

    #[test]
    fn a_silence_ends_when_asked_in_the_viewers_zone() {
        let now = Timestamp(1_800_000_000_000); // 2027-01-15T08:00:00Z
        assert_eq!(
            silence_end(&form("1h", ""), "UTC", now),
            Ok(Timestamp(now.0 + 3_600_000))
        );
        let berlin = silence_end(&form("until", "2027-01-15T12:00"), "Europe/Berlin", now);
        assert_eq!(
            berlin,
            Ok(Timestamp(now.0 + 3 * 3_600_000)),
            "12:00 in Berlin is 11:00Z"
        );
        assert!(silence_end(&form("until", "2027-01-15T07:00"), "UTC", now).is_err());
        assert!(silence_end(&form("until", "2027-03-15T07:00"), "UTC", now).is_err());
        assert!(silence_end(&form("until", "tomorrow"), "UTC", now).is_err());
        assert!(silence_end(&form("forever", ""), "UTC", now).is_err());
    }
}
