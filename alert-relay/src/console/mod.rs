//! The on-call console: pages for phones and desktops, served by the relay itself (a
//! transport, like `server`). Handlers find out who is asking ([`auth`]), call a use case of
//! the application layer, and render a typed view model ([`views`]) with an askama template
//! (`templates/console/`). Every form works without JavaScript; `assets/console.js` only
//! refreshes the live parts of a page. Every page is sent with a strict
//! Content-Security-Policy (nothing from another origin, no inline script or style).
//!
//! - [`auth`]: sessions and the trusted proxy's header, the forms' origin and token checks.
//! - `pages`: the handlers; [`views`]: view models and formatting; `assets`: CSS and script.

mod assets;
pub mod auth;
mod pages;
pub mod views;

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

use crate::app::{Relay, Runtime};

/// Sent with every console answer.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; \
     connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; \
     object-src 'none'";

/// The console's routes (empty when `server.console: false`).
pub fn router(relay: &Arc<Relay>) -> Router<Arc<Relay>> {
    if relay.runtime().config.server.console.is_none() {
        return Router::new();
    }
    Router::new()
        .route("/", get(pages::now))
        .route(
            "/signin",
            get(pages::signin_form).post(pages::signin_request),
        )
        .route(
            "/signin/{token}",
            get(pages::signin_link).post(pages::signin_complete),
        )
        .route("/signout", post(pages::signout))
        .route("/incidents/{id}", get(pages::incident))
        .route("/incidents/{id}/ack", post(pages::acknowledge))
        .route("/incidents/{id}/escalate", post(pages::escalate))
        .route("/incidents/{id}/resolve", post(pages::resolve))
        .route("/incidents/{id}/silence", post(pages::silence))
        .merge(pages::schedules::router())
        .merge(pages::me::router())
        .route("/history", get(pages::history))
        .route("/dead-letters", get(pages::dead_letters))
        .route("/assets/{name}", get(assets::asset))
        .layer(axum::middleware::map_response_with_state(
            relay.clone(),
            render_message,
        ))
        .layer(axum::middleware::map_response(secure_headers))
}

/// The headers of every console answer: the relay's pages' own ([`crate::server::pages::secure`]),
/// with the console's stricter policy and nothing cached (pages name people and incidents).
async fn secure_headers(response: Response) -> Response {
    let mut response = crate::server::pages::secure(response).await;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

/// Where the console lives under the public URL (`/pager/` behind a proxy that serves it
/// there), always ending in `/`; `/` without a public URL.
pub fn base_path(runtime: &Runtime) -> String {
    let path = runtime
        .config
        .server
        .public_url
        .as_ref()
        .map_or("/", |u| u.path());
    if path.ends_with('/') {
        path.to_owned()
    } else {
        format!("{path}/")
    }
}

/// What went wrong, said on a page of its own (rendered by [`render_message`]).
#[derive(Clone)]
struct Message(String);

/// A small page that says what went wrong, with its status. It is rendered by a layer of the
/// console's router, which knows where the console lives (its links and stylesheet under the
/// public URL's path), so that any handler or extractor can answer with one.
pub fn page_error(status: StatusCode, message: &str) -> Response {
    let mut response = status.into_response();
    response
        .extensions_mut()
        .insert(Message(message.to_owned()));
    response
}

/// Renders the message page a [`page_error`] answer asks for.
async fn render_message(State(relay): State<Arc<Relay>>, mut response: Response) -> Response {
    let Some(Message(message)) = response.extensions_mut().remove::<Message>() else {
        return response;
    };
    let status = response.status();
    let base = base_path(&relay.runtime());
    let title = status.canonical_reason().unwrap_or("Error");
    (
        status,
        render(&views::MessagePage::new(&base, title, &message)),
    )
        .into_response()
}

/// Renders a template; a template that fails to render is a 500 with a plain message.
pub fn render(page: &impl askama::Template) -> Response {
    match page.render() {
        Ok(html) => Html(html).into_response(),
        Err(error) => {
            tracing::error!(%error, "console: a page failed to render");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page failed to render",
            )
                .into_response()
        }
    }
}
