//! The console's handlers, by page area: each finds the viewer, calls the application
//! layer and renders a view model. Actions are forms (POST) checked for origin and
//! anti-forgery token ([`refused`]), answered with a redirect to the page they came from.

mod dead_letters;
mod history;
mod incident;
pub mod me;
mod now;
pub mod schedules;
mod signin;

pub use dead_letters::dead_letters;
pub use history::history;
pub use incident::{acknowledge, escalate, incident, resolve, silence};
pub use now::now;
pub use signin::{signin_complete, signin_form, signin_link, signin_request, signout};

use std::sync::Arc;

use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;

use super::auth::{same_origin, Viewer};
use super::views::Chrome;
use super::{base_path, page_error};
use crate::app::Relay;

pub type Shared = Arc<Relay>;

/// The frame of a page for `viewer` (or for nobody signed in).
pub fn chrome(relay: &Relay, viewer: Option<&Viewer>) -> Chrome {
    let runtime = relay.runtime();
    Chrome {
        base: base_path(&runtime),
        person: viewer.map(|v| v.person.clone()),
        csrf: viewer
            .map(|v| runtime.links.key.form_token(&v.principal))
            .unwrap_or_default(),
        own_session: viewer.is_some_and(|v| v.session.is_some()),
    }
}

/// The zone the viewer reads times in (theirs, else UTC).
pub fn zone(relay: &Relay, viewer: &Viewer) -> String {
    relay
        .runtime()
        .config
        .people
        .get(&viewer.person)
        .and_then(|p| p.time_zone.clone())
        .unwrap_or_else(|| "UTC".into())
}

pub fn unavailable(error: impl std::fmt::Display) -> Response {
    tracing::error!(%error, "console: cannot read the store");
    page_error(
        StatusCode::SERVICE_UNAVAILABLE,
        "The pager's store cannot be read right now. Try again in a moment.",
    )
}

#[derive(Deserialize)]
pub struct TokenForm {
    #[serde(default)]
    pub csrf: String,
}

/// A form's origin and token, for the viewer: `None` when it may go on.
pub fn refused(
    relay: &Relay,
    viewer: &Viewer,
    headers: &HeaderMap,
    csrf: &str,
) -> Option<Response> {
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
