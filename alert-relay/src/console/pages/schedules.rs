//! The Schedules area: every schedule, one schedule's next two weeks, covering a shift and
//! removing an override one made. Actions go through the same use cases as the API's
//! overrides ([`Relay::cover_shift`] → `add_override`, `remove_override`).

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use serde::Deserialize;

use super::{chrome, refused, unavailable, zone, Shared, TokenForm};
use crate::app::{Cover, OverrideError, Relay};
use crate::console::auth::Viewer;
use crate::console::views::schedules::{self, SchedulePage, ScheduleSummary, SchedulesPage};
use crate::console::{base_path, page_error, render};
use crate::domain::Timestamp;

/// How far ahead a schedule's page looks, and how many shifts it shows at most (a drill
/// rotation of one-minute shifts would otherwise fill two weeks with 20,000).
const DAYS: i64 = 14;
const MAX_SHIFTS: usize = 200;

/// The area's routes.
pub fn router() -> Router<Shared> {
    Router::new()
        .route("/schedules", get(list))
        .route("/schedules/{name}", get(schedule))
        .route("/schedules/{name}/cover", post(cover))
        .route("/schedules/{name}/overrides/{id}/remove", post(remove))
}

/// `GET /schedules`: every schedule, who is on call and who comes next.
async fn list(State(relay): State<Shared>, viewer: Viewer) -> Response {
    let now = Timestamp::now();
    let zone = zone(&relay, &viewer);
    let on_call = match relay.on_call(now, 1).await {
        Ok(on_call) => on_call,
        Err(error) => return unavailable(error),
    };
    let schedules = on_call
        .iter()
        .map(|o| ScheduleSummary {
            name: o.schedule.clone(),
            zone: o.zone.clone(),
            now: o.now.as_ref().map(|s| {
                (
                    s.person.clone(),
                    crate::console::views::local(s.ends_at, &zone),
                )
            }),
            next: o.next.first().map(|s| {
                (
                    s.person.clone(),
                    crate::console::views::local(s.starts_at, &zone),
                )
            }),
            yours: o.now.as_ref().is_some_and(|s| s.person == viewer.person),
        })
        .collect();
    render(&SchedulesPage {
        chrome: chrome(&relay, Some(&viewer)),
        zone,
        schedules,
    })
}

#[derive(Deserialize)]
struct Done {
    done: Option<String>,
}

/// `GET /schedules/{name}`.
async fn schedule(
    State(relay): State<Shared>,
    viewer: Viewer,
    Path(name): Path<String>,
    Query(done): Query<Done>,
) -> Response {
    let notice = match done.done.as_deref() {
        Some("covered") => Some("Done: you cover that shift. Steps that fire in it page you."),
        Some("removed") => Some("Done: your override is removed."),
        _ => None,
    };
    page(&relay, &viewer, &name, StatusCode::OK, None, notice).await
}

/// The schedule's page with `status`, and what the last action did or why it could not.
async fn page(
    relay: &Relay,
    viewer: &Viewer,
    name: &str,
    status: StatusCode,
    error: Option<String>,
    notice: Option<&'static str>,
) -> Response {
    let now = Timestamp::now();
    let zone = zone(relay, viewer);
    let until = Timestamp(now.0 + DAYS * 86_400_000);
    let ahead = match relay.schedule_ahead(name, now, until, MAX_SHIFTS + 1).await {
        Ok(Some(ahead)) => ahead,
        Ok(None) => return page_error(StatusCode::NOT_FOUND, "There is no such schedule."),
        Err(error) => return unavailable(error),
    };
    let mut shifts = schedules::shift_views(&ahead, &viewer.person, &zone, now);
    let truncated = shifts.len() > MAX_SHIFTS;
    shifts.truncate(MAX_SHIFTS);
    let runtime = relay.runtime();
    let view = SchedulePage {
        chrome: chrome(relay, Some(viewer)),
        name: ahead.schedule.name.clone(),
        same_zone: ahead.schedule.zone_name == zone,
        schedule_zone: ahead.schedule.zone_name.clone(),
        days: DAYS,
        now: shifts.first().filter(|s| s.current).cloned(),
        yours: schedules::yours(&ahead, &viewer.person, &zone, now),
        shifts,
        truncated,
        error,
        notice,
        schedule_feed: runtime.feed_url(&format!("schedule-{}", ahead.schedule.name)),
        my_feed: runtime.feed_url(&format!("person-{}", viewer.person)),
        zone,
    };
    (status, render(&view)).into_response()
}

#[derive(Deserialize)]
struct CoverForm {
    #[serde(default)]
    csrf: String,
    /// Whose shift it is, from when until when (milliseconds), as the page showed it; read
    /// as text so that a malformed form is still checked for its origin and token first.
    #[serde(default)]
    person: String,
    #[serde(default)]
    start: String,
    #[serde(default)]
    end: String,
}

/// `POST /schedules/{name}/cover`: the viewer takes over a shift (an override they create).
async fn cover(
    State(relay): State<Shared>,
    viewer: Viewer,
    Path(name): Path<String>,
    headers: HeaderMap,
    Form(form): Form<CoverForm>,
) -> Response {
    if let Some(no) = refused(&relay, &viewer, &headers, &form.csrf) {
        return no;
    }
    let (Ok(start), Ok(end)) = (form.start.parse(), form.end.parse()) else {
        return page_error(
            StatusCode::BAD_REQUEST,
            "This form is not one of the console's. Reload the schedule and try again.",
        );
    };
    let cover = Cover {
        schedule: name.clone(),
        person: form.person,
        starts_at: Timestamp(start),
        ends_at: Timestamp(end),
        by: viewer.person.clone(),
    };
    match relay.cover_shift(cover, Timestamp::now()).await {
        Ok(o) => {
            tracing::info!(person = %viewer.person, schedule = %name, override_id = o.id, replaces = o.replaces.as_deref().unwrap_or("anyone"), "console: a shift covered");
            let base = base_path(&relay.runtime());
            Redirect::to(&format!("{base}schedules/{name}?done=covered")).into_response()
        }
        Err(OverrideError::Invalid(why)) => {
            tracing::info!(person = %viewer.person, schedule = %name, %why, "console: covering a shift refused");
            let why = format!("The shift could not be covered: {why}.");
            page(
                &relay,
                &viewer,
                &name,
                StatusCode::BAD_REQUEST,
                Some(why),
                None,
            )
            .await
        }
        Err(OverrideError::Store(error)) => unavailable(error),
    }
}

/// `POST /schedules/{name}/overrides/{id}/remove`: removes an override the viewer made.
async fn remove(
    State(relay): State<Shared>,
    viewer: Viewer,
    Path((name, id)): Path<(String, i64)>,
    headers: HeaderMap,
    Form(form): Form<TokenForm>,
) -> Response {
    if let Some(no) = refused(&relay, &viewer, &headers, &form.csrf) {
        return no;
    }
    let now = Timestamp::now();
    let found = match relay.overrides(now).await {
        Ok(overrides) => overrides
            .into_iter()
            .find(|o| o.id == id && o.schedule == name),
        Err(error) => return unavailable(error),
    };
    let why = match found {
        None => (
            StatusCode::NOT_FOUND,
            "There is no such override in this schedule any more (it ended, or was removed).",
        ),
        Some(o) if o.created_by != viewer.person => {
            tracing::warn!(person = %viewer.person, override_id = id, created_by = %o.created_by, "console: removing an override made by someone else refused");
            (
                StatusCode::FORBIDDEN,
                "You can remove only the overrides you made.",
            )
        }
        Some(_) => match relay.remove_override(id, now).await {
            Ok(true) => {
                tracing::info!(person = %viewer.person, schedule = %name, override_id = id, "console: an override removed");
                let base = base_path(&relay.runtime());
                return Redirect::to(&format!("{base}schedules/{name}?done=removed"))
                    .into_response();
            }
            Ok(false) => (StatusCode::NOT_FOUND, "This override was removed already."),
            Err(error) => return unavailable(error),
        },
    };
    page(&relay, &viewer, &name, why.0, Some(why.1.to_owned()), None).await
}
