//! Signing in (by a link pushed to one's own phone) and out.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use serde::Deserialize;

use super::{chrome, refused, unavailable, Shared};
use crate::app::console::SigninError;
use crate::app::Relay;
use crate::console::auth::{cleared_cookie, same_origin, session_cookie, Viewer};
use crate::console::views;
use crate::console::{base_path, page_error, render};
use crate::domain::Timestamp;

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
