//! The console's handlers: each finds the viewer, calls the application layer and renders a
//! view model. Actions are forms (POST) checked for origin and anti-forgery token, answered
//! with a redirect to the page they came from.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use serde::Deserialize;

use super::auth::{cleared_cookie, same_origin, session_cookie, Viewer};
use super::views::{self, Chrome, IncidentPage, NowPage, OnCallRow, TargetRow};
use super::{base_path, page_error, render};
use crate::app::{console::SigninError, Relay};
use crate::domain::Timestamp;
use crate::engine::AckOutcome;

type Shared = Arc<Relay>;

fn chrome(relay: &Relay, viewer: Option<&Viewer>) -> Chrome {
    let runtime = relay.runtime();
    Chrome {
        base: base_path(&runtime),
        person: viewer.map(|v| v.person.clone()),
        csrf: viewer
            .map(|v| runtime.links.key.form_token(&v.principal))
            .unwrap_or_default(),
    }
}

/// The zone the viewer reads times in (theirs, else UTC).
fn zone(relay: &Relay, viewer: &Viewer) -> String {
    relay
        .runtime()
        .config
        .people
        .get(&viewer.person)
        .and_then(|p| p.time_zone.clone())
        .unwrap_or_else(|| "UTC".into())
}

fn unavailable(error: impl std::fmt::Display) -> Response {
    tracing::error!(%error, "console: cannot read the store");
    page_error(
        StatusCode::SERVICE_UNAVAILABLE,
        "The pager's store cannot be read right now. Try again in a moment.",
    )
}

/// `GET /`: open incidents, who is on call, and the pager's own health.
pub async fn now(State(relay): State<Shared>, viewer: Viewer) -> Response {
    let now = Timestamp::now();
    let zone = zone(&relay, &viewer);
    let (open, on_call, dead) = match tokio::try_join!(
        relay.open_incidents(200),
        relay.on_call(now, 1),
        relay.dead_letters(1000),
    ) {
        Ok(found) => found,
        Err(error) => return unavailable(error),
    };
    let incidents = open
        .iter()
        .map(|o| views::IncidentRow {
            id: o.record.id,
            title: views::title(o),
            severity: views::severity(o),
            state: views::state(o, &zone),
            since: views::ago(o.record.machine.started_at, now),
            next: views::next(o, &on_call, &zone),
        })
        .collect();
    let day_ago = Timestamp(now.0 - 86_400_000);
    let page = NowPage {
        chrome: chrome(&relay, Some(&viewer)),
        incidents,
        on_call: on_call
            .iter()
            .map(|o| OnCallRow {
                schedule: o.schedule.clone(),
                now: o.now.as_ref().map(|s| s.person.clone()),
                until: o.now.as_ref().map(|s| views::local(s.ends_at, &zone)),
                next: o
                    .next
                    .first()
                    .map(|s| format!("{} from {}", s.person, views::local(s.starts_at, &zone))),
            })
            .collect(),
        targets: target_health(&relay),
        heartbeats: heartbeats(&relay, now),
        dead_letters: dead.0.iter().filter(|d| d.dead_at > day_ago).count(),
        zone,
    };
    render(&page)
}

/// Each target's last healthcheck, from the relay's own gauge.
fn target_health(relay: &Relay) -> Vec<TargetRow> {
    let checked: std::collections::BTreeMap<String, bool> = relay
        .metrics()
        .registry
        .gather()
        .iter()
        .filter(|f| f.name() == "relay_target_healthy")
        .flat_map(|f| f.get_metric().iter())
        .filter_map(|m| {
            let target = m.get_label().iter().find(|l| l.name() == "target")?;
            Some((target.value().to_owned(), m.get_gauge().get_value() > 0.5))
        })
        .collect();
    relay
        .runtime()
        .sinks
        .keys()
        .map(|t| TargetRow {
            name: t.as_str().to_owned(),
            healthy: checked.get(t.as_str()).copied(),
        })
        .collect()
}

/// When each heartbeat policy last heard its heartbeat.
fn heartbeats(relay: &Relay, now: Timestamp) -> Vec<(String, String)> {
    relay
        .metrics()
        .registry
        .gather()
        .iter()
        .filter(|f| f.name() == "relay_heartbeat_last_seen_timestamp_seconds")
        .flat_map(|f| f.get_metric().iter())
        .filter_map(|m| {
            let policy = m.get_label().iter().find(|l| l.name() == "policy")?;
            let seen = Timestamp((m.get_gauge().get_value() * 1000.0) as i64);
            Some((
                policy.value().to_owned(),
                format!("{} ago", views::ago(seen, now)),
            ))
        })
        .collect()
}

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

#[derive(Deserialize)]
pub struct TokenForm {
    #[serde(default)]
    csrf: String,
}

/// A form's origin and token, for the viewer: `None` when it may go on.
fn refused(relay: &Relay, viewer: &Viewer, headers: &HeaderMap, csrf: &str) -> Option<Response> {
    let runtime = relay.runtime();
    let origin_ok = same_origin(headers, runtime.config.server.public_url.as_ref());
    let token_ok = runtime.links.key.verify_form(&viewer.principal, csrf);
    if origin_ok && token_ok {
        return None;
    }
    tracing::warn!(person = %viewer.person, origin_ok, token_ok, "console: a form refused (another site, or no valid form token)");
    Some(page_error(
        StatusCode::FORBIDDEN,
        "This form was not sent from the console's own page. Reload the page and try again.",
    ))
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

/// `GET /signin`.
pub async fn signin_form(State(relay): State<Shared>) -> Response {
    let push = push_possible(&relay);
    render(&views::SigninPage {
        chrome: chrome(&relay, None),
        push,
        sent: false,
        refused: None,
    })
}

fn push_possible(relay: &Relay) -> bool {
    let runtime = relay.runtime();
    runtime
        .config
        .server
        .console
        .as_ref()
        .is_some_and(|c| c.sign_in_by_push)
        && runtime.config.server.public_url.is_some()
}

#[derive(Deserialize)]
pub struct SigninForm {
    #[serde(default)]
    name: String,
}

/// `POST /signin`: the same answer for any name (a link is on its way if it is someone's).
pub async fn signin_request(
    State(relay): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<SigninForm>,
) -> Response {
    if !same_origin(&headers, relay.runtime().config.server.public_url.as_ref()) {
        return page_error(
            StatusCode::FORBIDDEN,
            "This form was sent from another site.",
        );
    }
    let name: String = form.name.chars().take(200).collect();
    let (status, sent, refused) = match relay
        .request_signin(&name, peer.ip(), Timestamp::now())
        .await
    {
        Ok(()) => (StatusCode::OK, true, None),
        Err(SigninError::RateLimited) => (
            StatusCode::TOO_MANY_REQUESTS,
            false,
            Some("Too many sign-in requests. Wait a few minutes and try again.".to_owned()),
        ),
        Err(SigninError::Off) => return page_error(StatusCode::NOT_FOUND, "The console is off."),
        Err(SigninError::Store(error)) => return unavailable(error),
    };
    let page = views::SigninPage {
        chrome: chrome(&relay, None),
        push: push_possible(&relay),
        sent,
        refused,
    };
    (status, render(&page)).into_response()
}

/// `GET /signin/{token}`: a button that signs in (a link preview's GET signs nobody in).
pub async fn signin_link(State(relay): State<Shared>, Path(token): Path<String>) -> Response {
    render(&views::SigninLinkPage {
        chrome: chrome(&relay, None),
        token: token
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
            .collect(),
    })
}

/// `POST /signin/{token}`: uses the link once, and starts a session.
pub async fn signin_complete(
    State(relay): State<Shared>,
    Path(token): Path<String>,
    headers: HeaderMap,
) -> Response {
    let runtime = relay.runtime();
    if !same_origin(&headers, runtime.config.server.public_url.as_ref()) {
        return page_error(
            StatusCode::FORBIDDEN,
            "This form was sent from another site.",
        );
    }
    let agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("unknown browser");
    match relay.complete_signin(&token, agent, Timestamp::now()).await {
        Ok(Some(new)) => {
            let base = base_path(&runtime);
            let secure = runtime
                .config
                .server
                .public_url
                .as_ref()
                .is_some_and(|u| u.scheme() == "https");
            let ttl = u64::try_from((new.session.expires_at.0 - new.session.created_at.0) / 1000)
                .unwrap_or(0);
            let mut response = Redirect::to(&base).into_response();
            if let Ok(value) = session_cookie(&new.token, &base, ttl, secure).parse() {
                response.headers_mut().insert(header::SET_COOKIE, value);
            }
            response
        }
        Ok(None) => page_error(
            StatusCode::GONE,
            "This sign-in link was used already or has expired. Ask for a new one.",
        ),
        Err(SigninError::Store(error)) => unavailable(error),
        Err(_) => page_error(StatusCode::NOT_FOUND, "The console is off."),
    }
}

#[derive(Deserialize)]
pub struct SignoutForm {
    #[serde(default)]
    csrf: String,
    /// Sign out of every session, not only this one.
    #[serde(default)]
    everywhere: Option<String>,
}

/// `POST /signout`.
pub async fn signout(
    State(relay): State<Shared>,
    viewer: Viewer,
    headers: HeaderMap,
    Form(form): Form<SignoutForm>,
) -> Response {
    if let Some(no) = refused(&relay, &viewer, &headers, &form.csrf) {
        return no;
    }
    let only = match form.everywhere {
        Some(_) => None,
        None => viewer.session.clone(),
    };
    if only.is_none() && form.everywhere.is_none() {
        return page_error(
            StatusCode::BAD_REQUEST,
            "You are signed in by your organisation's proxy: sign out there.",
        );
    }
    if let Err(error) = relay.sign_out(&viewer.person, only, Timestamp::now()).await {
        return unavailable(error);
    }
    let base = base_path(&relay.runtime());
    let mut response = Redirect::to(&format!("{base}signin")).into_response();
    if let Ok(value) = cleared_cookie(&base).parse() {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}
