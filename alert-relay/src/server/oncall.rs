//! Who is on call and the overrides, over HTTP (same credentials as the webhook):
//! `GET /api/v1/oncall`, `GET|POST /api/v1/overrides`, `DELETE /api/v1/overrides/{id}`.
//! The JSON shapes are this API's own, defined here.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{error, Shared};
use crate::app::OverrideError;
use crate::domain::Timestamp;
use crate::engine::oncall::{OnCall, Schedule, Shift};
use crate::engine::Override;

#[derive(Debug, Deserialize)]
pub struct OnCallQuery {
    /// An RFC 3339 instant (default: now).
    at: Option<String>,
    /// How many shifts after the current one (default 3, at most 50).
    upcoming: Option<usize>,
}

/// One shift as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShiftView {
    pub person: String,
    pub start: String,
    pub end: String,
    /// The end in the schedule's zone, as people read it (`Mon 2027-03-08 09:00 Europe/Berlin`).
    pub end_local: String,
    /// The override that puts this person here, if any.
    pub override_id: Option<i64>,
}

/// One schedule: who is on call, and the shifts that follow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OnCallView {
    pub schedule: String,
    pub time_zone: String,
    /// `null`: nobody is on call (a gap).
    pub on_call: Option<ShiftView>,
    pub next: Vec<ShiftView>,
}

impl OnCallView {
    pub fn new(schedule: &Schedule, o: &OnCall) -> Self {
        let shift = |s: &Shift| ShiftView {
            person: s.person.clone(),
            start: s.starts_at.to_rfc3339(),
            end: s.ends_at.to_rfc3339(),
            end_local: schedule.local(s.ends_at),
            override_id: s.override_id,
        };
        OnCallView {
            schedule: o.schedule.clone(),
            time_zone: o.zone.clone(),
            on_call: o.now.as_ref().map(shift),
            next: o.next.iter().map(shift).collect(),
        }
    }
}

fn unreadable(e: &crate::store::StoreError) -> Response {
    tracing::error!(error = %e, "cannot read the store");
    error(StatusCode::SERVICE_UNAVAILABLE, "the store cannot be read")
}

/// `GET /api/v1/oncall[?at=RFC3339][&upcoming=N]`: each schedule's person on call and the
/// shifts that follow, overrides included.
pub async fn on_call(State(relay): State<Shared>, Query(q): Query<OnCallQuery>) -> Response {
    let at = match q.at.as_deref().map(Timestamp::parse) {
        None => Timestamp::now(),
        Some(Ok(at)) => at,
        Some(Err(why)) => return error(StatusCode::BAD_REQUEST, why),
    };
    let upcoming = q.upcoming.unwrap_or(3).min(50);
    match relay.on_call(at, upcoming).await {
        Ok(report) => {
            let runtime = relay.runtime();
            let schedules: Vec<OnCallView> = report
                .iter()
                .filter_map(|o| {
                    let schedule = runtime.config.schedules.get(&o.schedule)?;
                    Some(OnCallView::new(schedule, o))
                })
                .collect();
            Json(json!({"at": at.to_rfc3339(), "schedules": schedules})).into_response()
        }
        Err(e) => unreadable(&e),
    }
}

#[derive(Serialize)]
struct OverrideView<'a> {
    id: i64,
    schedule: &'a str,
    person: &'a str,
    /// Whose shifts it covers; `null`: whoever is on call.
    replaces: Option<&'a str>,
    start: String,
    end: String,
    created_by: &'a str,
}

fn override_view(o: &Override) -> OverrideView<'_> {
    OverrideView {
        id: o.id,
        schedule: &o.schedule,
        person: &o.person,
        replaces: o.replaces.as_deref(),
        start: o.starts_at.to_rfc3339(),
        end: o.ends_at.to_rfc3339(),
        created_by: &o.created_by,
    }
}

/// `GET /api/v1/overrides`: the overrides that have not ended, oldest first.
pub async fn list(State(relay): State<Shared>) -> Response {
    match relay.overrides(Timestamp::now()).await {
        Ok(overrides) => {
            let views: Vec<_> = overrides.iter().map(override_view).collect();
            Json(json!({"overrides": views})).into_response()
        }
        Err(e) => unreadable(&e),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OverrideRequest {
    schedule: String,
    person: String,
    #[serde(default)]
    replaces: Option<String>,
    start: String,
    end: String,
    created_by: String,
}

/// `POST /api/v1/overrides` `{"schedule", "person", "replaces"?, "start", "end",
/// "created_by"}`: 201 with the override; 400 with the reason when it cannot be.
pub async fn create(
    State(relay): State<Shared>,
    body: Result<Json<OverrideRequest>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Json(request) = match body {
        Ok(body) => body,
        Err(rejection) => return error(StatusCode::BAD_REQUEST, rejection.body_text()),
    };
    let times = Timestamp::parse(&request.start)
        .and_then(|start| Timestamp::parse(&request.end).map(|end| (start, end)));
    let (starts_at, ends_at) = match times {
        Ok(times) => times,
        Err(why) => return error(StatusCode::BAD_REQUEST, why),
    };
    let new = Override {
        id: 0,
        schedule: request.schedule,
        person: request.person,
        replaces: request.replaces.filter(|r| !r.is_empty()),
        starts_at,
        ends_at,
        created_by: request.created_by,
    };
    match relay.add_override(new, Timestamp::now()).await {
        Ok(o) => (
            StatusCode::CREATED,
            Json(json!({"override": override_view(&o)})),
        )
            .into_response(),
        Err(OverrideError::Invalid(why)) => error(StatusCode::BAD_REQUEST, why),
        Err(OverrideError::Store(e)) => {
            tracing::error!(error = %e, "cannot store an override");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the store cannot be written",
            )
        }
    }
}

/// `DELETE /api/v1/overrides/{id}`: 200, or 404 when there is none by that id.
pub async fn remove(State(relay): State<Shared>, Path(id): Path<i64>) -> Response {
    match relay.remove_override(id, Timestamp::now()).await {
        Ok(true) => Json(json!({"status": "removed"})).into_response(),
        Ok(false) => error(StatusCode::NOT_FOUND, format!("no override {id}")),
        Err(e) => {
            tracing::error!(error = %e, "cannot remove an override");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the store cannot be written",
            )
        }
    }
}
