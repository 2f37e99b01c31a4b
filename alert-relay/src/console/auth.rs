//! Who is asking: a person signed in with a session cookie, or named by a trusted
//! authenticating proxy; and the checks on every form (its anti-forgery token, and that it
//! was sent from the console's own origin).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};

use super::{base_path, page_error};
use crate::app::Relay;
use crate::domain::Timestamp;

/// The cookie that carries a session token.
pub const COOKIE: &str = "relay_session";

/// A signed-in person.
#[derive(Debug, Clone)]
pub struct Viewer {
    pub person: String,
    /// Whose anti-forgery token forms carry: `session:<hash>` or `proxy:<person>`.
    pub principal: String,
    /// The session's hash, when signed in by a session (a proxy's person has none).
    pub session: Option<String>,
}

/// A request from someone not signed in: sent to the sign-in page.
pub struct SignIn(Response);

impl IntoResponse for SignIn {
    fn into_response(self) -> Response {
        self.0
    }
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

impl FromRequestParts<Arc<Relay>> for Viewer {
    type Rejection = SignIn;

    async fn from_request_parts(
        parts: &mut Parts,
        relay: &Arc<Relay>,
    ) -> Result<Self, Self::Rejection> {
        let runtime = relay.runtime();
        let base = base_path(&runtime);
        let to_signin = || SignIn(Redirect::to(&format!("{base}signin")).into_response());
        let Some(console) = &runtime.config.server.console else {
            return Err(SignIn(StatusCode::NOT_FOUND.into_response()));
        };
        if let Some(proxy) = &console.proxy {
            if let Some(value) = parts.headers.get(&proxy.header) {
                let peer = parts
                    .extensions
                    .get::<ConnectInfo<SocketAddr>>()
                    .map(|c| c.0.ip());
                if !peer.is_some_and(|ip| proxy.trusts(ip)) {
                    tracing::warn!(?peer, header = %proxy.header, "console: the proxy's header from an address not trusted: refused");
                    return Err(SignIn(page_error(
                        StatusCode::FORBIDDEN,
                        "This request names a person in a header that only the trusted proxy may set.",
                    )));
                }
                let named = value.to_str().unwrap_or_default();
                let Some(person) = runtime.config.person_named(named) else {
                    tracing::warn!(named, "console: the proxy names nobody of the policy file");
                    return Err(SignIn(page_error(
                        StatusCode::FORBIDDEN,
                        "You are signed in at the proxy, but not one of the people of this pager.",
                    )));
                };
                return Ok(Viewer {
                    principal: format!("proxy:{person}"),
                    person: person.to_owned(),
                    session: None,
                });
            }
        }
        let Some(token) = cookie(&parts.headers, COOKIE) else {
            return Err(to_signin());
        };
        match relay.console_session(token, Timestamp::now()).await {
            Ok(Some(session)) if runtime.config.people.contains_key(&session.person) => {
                Ok(Viewer {
                    principal: format!("session:{}", session.id_hash),
                    person: session.person,
                    session: Some(session.id_hash),
                })
            }
            Ok(_) => Err(to_signin()),
            Err(error) => {
                tracing::error!(%error, "console: cannot read sessions");
                Err(SignIn(page_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "The pager's store cannot be read right now. Try again in a moment.",
                )))
            }
        }
    }
}

/// Whether a form was sent from the console's own pages: its Origin (or, without one, its
/// Referer) is this relay's, and the browser does not call it cross-site.
pub fn same_origin(headers: &HeaderMap, public: Option<&url::Url>) -> bool {
    if headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == "cross-site")
    {
        return false;
    }
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let origin = headers
        .get(header::ORIGIN)
        .or_else(|| headers.get(header::REFERER))
        .and_then(|v| v.to_str().ok());
    let Some(origin) = origin else {
        // Browsers send Origin with every form POST; a client without it is not a browser
        // page of another site.
        return true;
    };
    let Ok(origin) = url::Url::parse(origin) else {
        return false;
    };
    let ours = |u: &url::Url| {
        u.scheme() == origin.scheme()
            && u.host_str() == origin.host_str()
            && u.port_or_known_default() == origin.port_or_known_default()
    };
    if public.is_some_and(ours) {
        return true;
    }
    let authority = match origin.port() {
        Some(port) => format!("{}:{port}", origin.host_str().unwrap_or_default()),
        None => origin.host_str().unwrap_or_default().to_owned(),
    };
    host.is_some_and(|h| h.eq_ignore_ascii_case(&authority))
}

/// The `Set-Cookie` value for a new session.
pub fn session_cookie(token: &str, base: &str, max_age_secs: u64, secure: bool) -> String {
    format!(
        "{COOKIE}={token}; Path={base}; Max-Age={max_age_secs}; HttpOnly; SameSite=Lax{}",
        if secure { "; Secure" } else { "" }
    )
}

/// The `Set-Cookie` value that removes the session cookie.
pub fn cleared_cookie(base: &str) -> String {
    format!("{COOKIE}=; Path={base}; Max-Age=0; HttpOnly; SameSite=Lax")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().expect("header value"));
        }
        h
    }

    #[test]
    fn a_form_from_another_site_is_not_ours() {
        let public: url::Url = "https://pager.example.org/pager/".parse().expect("url");
        assert!(same_origin(
            &headers(&[
                ("origin", "https://pager.example.org"),
                ("host", "relay:9465")
            ]),
            Some(&public)
        ));
        assert!(same_origin(
            &headers(&[
                ("origin", "http://127.0.0.1:9465"),
                ("host", "127.0.0.1:9465")
            ]),
            None
        ));
        assert!(!same_origin(
            &headers(&[
                ("origin", "https://evil.example"),
                ("host", "127.0.0.1:9465")
            ]),
            Some(&public)
        ));
        assert!(!same_origin(
            &headers(&[("origin", "null"), ("host", "127.0.0.1:9465")]),
            None
        ));
        assert!(!same_origin(
            &headers(&[("sec-fetch-site", "cross-site"), ("host", "127.0.0.1:9465")]),
            None
        ));
    }

    #[test]
    fn the_session_cookie_is_http_only_lax_and_secure_over_https() {
        let c = session_cookie("t", "/pager/", 60, true);
        assert_eq!(
            c,
            "relay_session=t; Path=/pager/; Max-Age=60; HttpOnly; SameSite=Lax; Secure"
        );
        assert!(!session_cookie("t", "/", 60, false).contains("Secure"));
        let h = headers(&[("cookie", "a=b; relay_session=xyz; c=d")]);
        assert_eq!(cookie(&h, COOKIE), Some("xyz"));
    }
}
