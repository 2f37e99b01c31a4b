//! The Me area: one's shifts ahead across schedules, the pages one received, one's sessions
//! (each one's own to end) and one's calendar feed.

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use serde::Deserialize;

use super::{chrome, refused, unavailable, zone, Shared};
use crate::console::auth::{cleared_cookie, Viewer};
use crate::console::views::me::{self, MePage};
use crate::console::{base_path, page_error, render};
use crate::domain::Timestamp;

/// How far ahead the shifts, and how far back the pages received, reach; and how many of
/// each are shown at most.
const SHIFT_DAYS: i64 = 30;
const PAGE_DAYS: i64 = 30;
const MAX_SHIFTS: usize = 100;
const MAX_PAGES: u32 = 100;

/// The area's routes.
pub fn router() -> Router<Shared> {
    Router::new()
        .route("/me", get(page))
        .route("/me/sessions/revoke", post(revoke))
}

#[derive(Deserialize)]
struct Done {
    done: Option<String>,
}

/// `GET /me`.
async fn page(State(relay): State<Shared>, viewer: Viewer, Query(done): Query<Done>) -> Response {
    let now = Timestamp::now();
    let zone = zone(&relay, &viewer);
    let me = &viewer.person;
    let ahead = (now, Timestamp(now.0 + SHIFT_DAYS * 86_400_000));
    let since = Timestamp(now.0 - PAGE_DAYS * 86_400_000);
    let feed = format!("person-{me}");
    let found = tokio::try_join!(
        relay.feed_shifts(&feed, ahead, MAX_SHIFTS),
        relay.pages_received(me, since, MAX_PAGES + 1),
        relay.sessions_of(me, now),
    );
    let (shifts, mut pages, sessions) = match found {
        Ok(found) => found,
        Err(error) => return unavailable(error),
    };
    let more_pages = pages.len() > MAX_PAGES as usize;
    pages.truncate(MAX_PAGES as usize);
    let notice = match done.done.as_deref() {
        Some("revoked") => Some("Done: that session is signed out."),
        _ => None,
    };
    let view = MePage {
        chrome: chrome(&relay, Some(&viewer)),
        shift_days: SHIFT_DAYS,
        shifts: shifts
            .iter()
            .map(|(schedule, shift)| me::my_shift(schedule, shift, &zone, now))
            .collect(),
        page_days: PAGE_DAYS,
        pages: pages.iter().map(|p| me::page_row(p, &zone)).collect(),
        more_pages,
        sessions: sessions
            .iter()
            .map(|s| me::session_row(s, viewer.session.as_deref(), &zone))
            .collect(),
        by_proxy: viewer.session.is_none(),
        feed: relay.runtime().feed_url(&feed),
        notice,
        zone,
    };
    render(&view)
}

#[derive(Deserialize)]
struct RevokeForm {
    #[serde(default)]
    csrf: String,
    /// The session's hash, as the page lists it.
    #[serde(default)]
    session: String,
}

/// `POST /me/sessions/revoke`: ends one of the viewer's own sessions (only theirs: the use
/// case ends a session by its hash among the person's). Ending the one in use signs out.
async fn revoke(
    State(relay): State<Shared>,
    viewer: Viewer,
    headers: HeaderMap,
    Form(form): Form<RevokeForm>,
) -> Response {
    if let Some(no) = refused(&relay, &viewer, &headers, &form.csrf) {
        return no;
    }
    let hash = form.session.trim().to_owned();
    if hash.is_empty() {
        return page_error(
            StatusCode::BAD_REQUEST,
            "Which session? Reload the page and try again.",
        );
    }
    let this_one = viewer.session.as_deref() == Some(hash.as_str());
    match relay
        .sign_out(&viewer.person, Some(hash), Timestamp::now())
        .await
    {
        Ok(0) => {
            tracing::warn!(person = %viewer.person, "console: a session to end that is not one of the person's live ones");
            page_error(
                StatusCode::NOT_FOUND,
                "You have no such session (it ended already, or is not yours).",
            )
        }
        Ok(_) => {
            tracing::info!(person = %viewer.person, this_one, "console: a session signed out");
            let base = base_path(&relay.runtime());
            if !this_one {
                return Redirect::to(&format!("{base}me?done=revoked")).into_response();
            }
            let mut response = Redirect::to(&format!("{base}signin")).into_response();
            if let Ok(value) = cleared_cookie(&base).parse() {
                response.headers_mut().insert(header::SET_COOKIE, value);
            }
            response
        }
        Err(error) => unavailable(error),
    }
}
