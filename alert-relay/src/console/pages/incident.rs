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
