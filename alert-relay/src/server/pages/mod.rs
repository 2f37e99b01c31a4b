//! The pages a person opens in a browser: askama views (their templates beside this file),
//! one module per page area, served behind one layer of security headers and with one
//! stylesheet (`/assets/relay.css`), so that no page carries inline script or style.
//!
//! - The runbooks (`server::runbooks`) use this layout, stylesheet and headers.

use askama::Template;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::map_response;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::Shared;

/// Everything from this origin only (the stylesheet; forms post back here), no plugins, no
/// `<base>`, never framed. No `'unsafe-inline'`: the pages have no inline script or style.
pub const CONTENT_SECURITY_POLICY: &str =
    "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The one stylesheet of every page.
pub const STYLESHEET: &str = include_str!("relay.css");

/// The routes every relay serves to browsers: the stylesheet.
pub fn router() -> Router<Shared> {
    Router::new()
        .route("/assets/relay.css", get(stylesheet))
        .layer(map_response(secure))
}

/// The headers of every page: the CSP above, no framing, no referrer to other sites, no
/// type sniffing.
pub async fn secure(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        STYLESHEET,
    )
        .into_response()
}

/// `view` as an HTML answer with `status`. askama escapes every value; rendering fails only
/// if a value's `Display` does, which is logged and answered 500 in plain text.
pub fn html(status: StatusCode, view: &impl Template) -> Response {
    match view.render() {
        Ok(page) => (
            status,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            page,
        )
            .into_response(),
        Err(error) => {
            tracing::error!(%error, "a page failed to render");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page could not be shown\n",
            )
                .into_response()
        }
    }
}
