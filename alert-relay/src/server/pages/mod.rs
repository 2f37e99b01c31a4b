//! The pages a person opens in a browser: askama views (their templates beside this file),
//! one module per page area, served behind one layer of security headers and with one
//! stylesheet (`/assets/relay.css`), so that no page carries inline script or style.
//!
//! - [`ack`]: the acknowledge link's page (`GET` shows, the form's `POST` acknowledges).
//! - The runbooks (`server::runbooks`) use the same layout, stylesheet and headers.

pub mod ack;

use askama::Template;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
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

/// The routes every relay serves to browsers: the stylesheet and the acknowledge links.
pub fn router() -> Router<Shared> {
    Router::new()
        .route("/assets/relay.css", get(stylesheet))
        .route("/ack/{token}", get(ack::show).post(ack::confirm))
        .layer(map_response(secure))
}

/// The headers of every page (and of the JSON answers on the same routes, where they are
/// harmless): the CSP above, no framing, no referrer to other sites, no type sniffing.
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

/// Whether a request comes from a person's browser (a form, or a client asking for HTML)
/// rather than an API client, which keeps the JSON answers.
pub fn from_a_browser(headers: &HeaderMap) -> bool {
    let form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .is_some_and(|v| v == "application/x-www-form-urlencoded" || v == "multipart/form-data");
    let asks_html = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|range| range.split(';').next())
        .any(|range| {
            let range = range.trim();
            range.eq_ignore_ascii_case("text/html")
                || range.eq_ignore_ascii_case("application/xhtml+xml")
        });
    form || asks_html
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn a_browser_form_or_an_html_accept_wants_a_page_and_api_clients_json() {
        let browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
        assert!(from_a_browser(&headers(&[("accept", browser)])));
        assert!(from_a_browser(&headers(&[(
            "content-type",
            "application/x-www-form-urlencoded"
        )])));
        assert!(from_a_browser(&headers(&[(
            "content-type",
            "multipart/form-data; boundary=x"
        )])));
        for api in [
            headers(&[]),
            headers(&[("accept", "application/json")]),
            headers(&[("accept", "*/*")]),
            headers(&[("content-type", "application/json")]),
        ] {
            assert!(!from_a_browser(&api), "{api:?}");
        }
    }
}
