//! The read side of the HTTP API, for the on-call engineer's "who has been paged, and what
//! comes next?" and the operator's "what did the relay give up on?". Same credentials as the
//! webhook. The JSON shapes are this API's own, defined here.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::app::{OpenIncident, Relay};
use crate::domain::{AlertStatus, Labels, Timestamp};
use crate::engine::{Phase, StopReason};
use crate::store::{DeadLetter, StoreError};

const DEFAULT_LIMIT: u32 = 100;
const MAX_LIMIT: u32 = 1000;

#[derive(Debug, Deserialize)]
pub struct Page {
    limit: Option<u32>,
}

impl Page {
    fn limit(&self) -> u32 {
        self.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT)
    }
}

#[derive(Serialize)]
struct IncidentView<'a> {
    id: i64,
    policy: &'a str,
    /// `escalating`, `acknowledged` or `silenced` (open incidents only).
    state: &'static str,
    started_at: String,
    group_labels: &'a Labels,
    common_labels: &'a Labels,
    summary: Option<&'a str>,
    alerts_firing: usize,
    steps_fired: usize,
    steps_total: usize,
    /// Who has been notified so far, in order.
    notified: Vec<&'a str>,
    /// Targets whose notifications are still waiting for delivery (retrying a vendor).
    waiting: Vec<&'a str>,
    /// The next step: when and whom (`null` when nothing more is planned).
    next_step: Option<NextStep<'a>>,
}

#[derive(Serialize)]
struct NextStep<'a> {
    at: String,
    targets: Vec<&'a str>,
    /// Who each `schedule.<name>` among the targets would page now (`null`: nobody); the
    /// person is chosen when the step fires.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    on_call_now: BTreeMap<&'a str, Option<String>>,
}

#[derive(Serialize)]
struct DeadLetterView<'a> {
    id: i64,
    incident_id: i64,
    target: &'a str,
    attempts: u32,
    reason: &'a str,
    created_at: String,
    dead_at: String,
}

fn view<'a>(open: &'a OpenIncident, on_call: &BTreeMap<String, String>) -> IncidentView<'a> {
    let incident = &open.record;
    let machine = &incident.machine;
    let state = match machine.phase {
        Phase::Escalating => "escalating",
        Phase::Stopped(StopReason::Acknowledged) => "acknowledged",
        Phase::Stopped(StopReason::Silenced) => "silenced",
        Phase::Stopped(StopReason::Resolved) | Phase::Closed => "resolved",
    };
    IncidentView {
        id: incident.id,
        policy: machine.plan.policy.as_str(),
        state,
        started_at: machine.started_at.to_rfc3339(),
        group_labels: &incident.group.group_labels,
        common_labels: &incident.group.common_labels,
        summary: incident
            .group
            .common_annotations
            .get("summary")
            .map(String::as_str),
        alerts_firing: incident
            .group
            .alerts
            .iter()
            .filter(|a| a.status == AlertStatus::Firing)
            .count(),
        steps_fired: machine.steps_fired,
        steps_total: machine.plan.steps.len(),
        notified: machine.notified.iter().map(|t| t.as_str()).collect(),
        waiting: open.waiting.iter().map(|t| t.as_str()).collect(),
        next_step: machine.next_step().map(|(at, targets)| NextStep {
            at: at.to_rfc3339(),
            targets: targets.iter().map(|t| t.as_str()).collect(),
            on_call_now: targets
                .iter()
                .filter_map(|t| {
                    let name = t.as_str().strip_prefix("schedule.")?;
                    Some((t.as_str(), on_call.get(name).cloned()))
                })
                .collect(),
        }),
    }
}

fn dead_letter_view(letter: &DeadLetter) -> DeadLetterView<'_> {
    DeadLetterView {
        id: letter.id,
        incident_id: letter.incident_id,
        target: &letter.target,
        attempts: letter.attempts,
        reason: &letter.reason,
        created_at: letter.created_at.to_rfc3339(),
        dead_at: letter.dead_at.to_rfc3339(),
    }
}

fn unreadable(error: &StoreError, what: &str) -> Response {
    tracing::error!(%error, what, "cannot read the store");
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({ "error": "the store cannot be read" })),
    )
        .into_response()
}

/// `GET /api/v1/incidents[?limit=N]`: open incidents, oldest first (heartbeat policies'
/// always-open incidents left out).
pub async fn incidents(State(relay): State<Arc<Relay>>, Query(page): Query<Page>) -> Response {
    let now = Timestamp::now();
    let on_call: BTreeMap<String, String> = match relay.on_call(now, 0).await {
        Ok(report) => report
            .into_iter()
            .filter_map(|o| Some((o.schedule, o.now?.person)))
            .collect(),
        Err(error) => return unreadable(&error, "overrides"),
    };
    match relay.open_incidents(page.limit()).await {
        Ok(open) => {
            let views: Vec<_> = open.iter().map(|o| view(o, &on_call)).collect();
            let now = now.to_rfc3339();
            Json(json!({ "now": now, "incidents": views })).into_response()
        }
        Err(error) => unreadable(&error, "open incidents"),
    }
}

#[derive(Serialize)]
struct EventView<'a> {
    at: String,
    kind: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    actor: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    target: Option<&'a str>,
    detail: &'a str,
}

/// `GET /api/v1/incidents/{id}/events[?limit=N]`: the incident's timeline, oldest first
/// (the latest N events): what it received, whom it paged, what each vendor answered, who
/// acknowledged. 404 for an incident that has none.
pub async fn events(
    State(relay): State<Arc<Relay>>,
    axum::extract::Path(id): axum::extract::Path<i64>,
    Query(page): Query<Page>,
) -> Response {
    match relay.timeline(id, page.limit()).await {
        Ok(events) if events.is_empty() => (
            StatusCode::NOT_FOUND,
            Json(json!({ "error": format!("no incident {id}") })),
        )
            .into_response(),
        Ok(events) => {
            let views: Vec<EventView<'_>> = events
                .iter()
                .map(|e| EventView {
                    at: e.at.to_rfc3339(),
                    kind: &e.kind_name,
                    actor: e.actor.as_deref(),
                    target: e.target.as_deref(),
                    detail: &e.detail,
                })
                .collect();
            Json(json!({ "incident_id": id, "events": views })).into_response()
        }
        Err(error) => unreadable(&error, "incident events"),
    }
}

/// `GET /api/v1/dead-letters[?limit=N]`: notifications given up on, newest first, and
/// incidents whose stored row could not be read (quarantined).
pub async fn dead_letters(State(relay): State<Arc<Relay>>, Query(page): Query<Page>) -> Response {
    match relay.dead_letters(page.limit()).await {
        Ok((letters, quarantined)) => {
            let views: Vec<_> = letters.iter().map(dead_letter_view).collect();
            let quarantined: Vec<_> = quarantined
                .iter()
                .map(|q| {
                    json!({"incident_id": q.id, "reason": q.reason, "quarantined_at": q.at.to_rfc3339()})
                })
                .collect();
            Json(json!({ "dead_letters": views, "quarantined_incidents": quarantined }))
                .into_response()
        }
        Err(error) => unreadable(&error, "dead letters"),
    }
}
