//! The acknowledge link in a browser: `GET /ack/<token>` shows the incident and an
//! **Acknowledge** button and changes nothing (Slack, mail and chat previews fetch links);
//! the button's `POST` acknowledges and answers a page, API clients keep their JSON.

use askama::Template;
use axum::extract::{Path as UrlPath, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;

use super::{from_a_browser, html};
use crate::ack::AckError;
use crate::app::{AckLinkError, LinkAck, LinkPreview};
use crate::domain::Timestamp;
use crate::engine::escalation::{Phase, StopReason};
use crate::engine::{AckOutcome, IncidentRecord};
use crate::server::{acknowledged, error, not_stored, Shared};

/// The page: what the link stands for, and the button while it can still acknowledge.
#[derive(Debug, Template)]
#[template(path = "ack.html")]
pub struct AckView {
    pub heading: String,
    pub incident: Option<IncidentView>,
    /// One or two sentences: what this page means and what to do.
    pub message: String,
    pub can_acknowledge: bool,
}

/// An incident as the page names it; every value is text from the alerts, escaped.
#[derive(Debug)]
pub struct IncidentView {
    pub id: i64,
    pub alertname: String,
    pub summary: Option<String>,
    pub severity: String,
    pub firing: usize,
    pub total: u64,
    pub started: String,
    pub state: String,
}

impl IncidentView {
    pub fn of(record: &IncidentRecord) -> Self {
        let group = &record.group;
        let annotation = |name: &str| {
            group.common_annotations.get(name).cloned().or_else(|| {
                group
                    .alerts
                    .iter()
                    .find_map(|a| a.annotations.get(name).cloned())
            })
        };
        let machine = &record.machine;
        let state = match machine.phase {
            Phase::Escalating => "escalating".to_owned(),
            Phase::Stopped(StopReason::Acknowledged) => match &machine.acknowledged_by {
                Some(by) => format!("acknowledged by {by}"),
                None => "acknowledged".to_owned(),
            },
            Phase::Stopped(StopReason::Silenced) => match &machine.silence_note {
                Some(note) => format!("silenced ({note})"),
                None => "silenced".to_owned(),
            },
            Phase::Stopped(StopReason::Resolved) | Phase::Closed => "resolved".to_owned(),
        };
        Self {
            id: record.id,
            alertname: group
                .common_labels
                .get("alertname")
                .or_else(|| group.group_labels.get("alertname"))
                .cloned()
                .unwrap_or_else(|| "unnamed alert".to_owned()),
            summary: annotation("summary").filter(|s| !s.trim().is_empty()),
            severity: group.severity().to_string(),
            firing: group.firing_count(),
            total: group.alerts.len() as u64 + group.truncated_alerts,
            started: machine.started_at.to_rfc3339(),
            state,
        }
    }
}

/// `GET /ack/<token>`: what the link would do; never acknowledges.
pub async fn show(State(relay): State<Shared>, UrlPath(token): UrlPath<String>) -> Response {
    let view = match relay.preview_ack_link(&token, Timestamp::now()).await {
        Ok(preview) => preview_view(&preview),
        Err(AckLinkError::Refused(e)) => refused_view(e),
        Err(AckLinkError::Store(e)) => {
            tracing::error!(error = %e, "acknowledge page not shown: store failed");
            store_view()
        }
    };
    page(view)
}

/// `POST /ack/<token>`: acknowledges, once. A page for a browser's form, the JSON answer
/// of before for API clients (ntfy's action button among them).
pub async fn confirm(
    State(relay): State<Shared>,
    UrlPath(token): UrlPath<String>,
    headers: HeaderMap,
) -> Response {
    let browser = from_a_browser(&headers);
    let view = match relay.acknowledge_link(&token, Timestamp::now()).await {
        Ok(done) => {
            // The JSON answer also logs the outcome, for browsers too.
            let json = acknowledged(done.id, "ack link", done.outcome);
            if !browser {
                return json;
            }
            done_view(&done)
        }
        Err(AckLinkError::Refused(e)) => {
            tracing::warn!(error = %e, "acknowledge refused");
            if !browser {
                return error(refusal_status(e), e.to_string());
            }
            refused_view(e)
        }
        Err(AckLinkError::Store(e)) => {
            let json = not_stored(&e);
            if !browser {
                return json;
            }
            store_view()
        }
    };
    page(view)
}

fn preview_view(preview: &LinkPreview) -> (StatusCode, AckView) {
    let Some(record) = &preview.incident else {
        return unknown(preview.id);
    };
    let incident = IncidentView::of(record);
    if preview.used {
        return used(incident);
    }
    let escalating = record.machine.phase == Phase::Escalating;
    let view = if escalating {
        AckView {
            heading: format!("Acknowledge {}?", incident.alertname),
            message: "Acknowledging stops the escalation: nobody further is paged, and \
                      everyone paged so far is told. Opening this page changed nothing."
                .to_owned(),
            can_acknowledge: true,
            incident: Some(incident),
        }
    } else {
        AckView {
            heading: "Nothing to acknowledge".to_owned(),
            message: format!(
                "This incident is {} already: escalation has stopped.",
                incident.state
            ),
            can_acknowledge: false,
            incident: Some(incident),
        }
    };
    (StatusCode::OK, view)
}

fn done_view(done: &LinkAck) -> (StatusCode, AckView) {
    let incident = done.incident.as_ref().map(IncidentView::of);
    match done.outcome {
        AckOutcome::Acknowledged => (
            StatusCode::OK,
            AckView {
                heading: "Acknowledged".to_owned(),
                message: "Escalation stopped: nobody further is paged, and everyone paged \
                          so far is told that you are on it."
                    .to_owned(),
                can_acknowledge: false,
                incident: incident.map(|mut i| {
                    i.state = "acknowledged".to_owned();
                    i
                }),
            },
        ),
        AckOutcome::NotEscalating => (
            StatusCode::OK,
            AckView {
                heading: "Nothing to acknowledge".to_owned(),
                message: "This incident had stopped escalating already; nothing changed."
                    .to_owned(),
                can_acknowledge: false,
                incident,
            },
        ),
        AckOutcome::UnknownIncident => unknown(done.id),
        AckOutcome::Replayed => match incident {
            Some(incident) => used(incident),
            None => unknown(done.id),
        },
    }
}

fn used(incident: IncidentView) -> (StatusCode, AckView) {
    (
        StatusCode::CONFLICT,
        AckView {
            heading: "Link already used".to_owned(),
            message: format!(
                "This acknowledge link was used already. The incident is {}.",
                incident.state
            ),
            can_acknowledge: false,
            incident: Some(incident),
        },
    )
}

fn unknown(id: i64) -> (StatusCode, AckView) {
    (
        StatusCode::NOT_FOUND,
        AckView {
            heading: "No such incident".to_owned(),
            message: format!(
                "This link is for incident #{id}, which this relay does not have (its data \
                 was reset or restored since the page was sent)."
            ),
            can_acknowledge: false,
            incident: None,
        },
    )
}

fn refused_view(e: AckError) -> (StatusCode, AckView) {
    let (heading, message) = match e {
        AckError::Expired => (
            "Link expired",
            "This acknowledge link has expired. Acknowledge from a newer page, or with \
             `alert-relay ack ID` or the API.",
        ),
        AckError::Malformed | AckError::Forged => (
            "Invalid link",
            "This is not a valid acknowledge link: it may have been cut short or changed. \
             Open it from the page you received.",
        ),
    };
    (
        refusal_status(e),
        AckView {
            heading: heading.to_owned(),
            message: message.to_owned(),
            can_acknowledge: false,
            incident: None,
        },
    )
}

/// 410 for an expired link, 403 for one that is not the relay's.
fn refusal_status(e: AckError) -> StatusCode {
    match e {
        AckError::Expired => StatusCode::GONE,
        AckError::Malformed | AckError::Forged => StatusCode::FORBIDDEN,
    }
}

fn store_view() -> (StatusCode, AckView) {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        AckView {
            heading: "Try again".to_owned(),
            message: "The relay cannot reach its store just now; nothing was changed. Try \
                      again in a moment."
                .to_owned(),
            can_acknowledge: false,
            incident: None,
        },
    )
}

/// The page, never cached: it holds the link's token and the incident's current state.
fn page((status, view): (StatusCode, AckView)) -> Response {
    let mut response = html(status, &view);
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
