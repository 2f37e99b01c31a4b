//! Authentication of the routes that need it (webhooks, the API, reload): one axum layer
//! that checks the `Authorization` header before any body is read, in constant time.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{error, Shared};
use crate::config::WebhookAuth;

/// The layer: 401 with `WWW-Authenticate` unless the credentials match the policy file's
/// `server.webhook_auth` (read per request, so a reload takes effect at once).
pub async fn require(State(relay): State<Shared>, request: Request, next: Next) -> Response {
    let auth = relay.runtime().config.server.webhook_auth.clone();
    if authorized(&auth, request.headers()) {
        return next.run(request).await;
    }
    if request.uri().path().starts_with("/webhook") {
        relay
            .metrics()
            .webhooks
            .with_label_values(&["unauthorized"])
            .inc();
    }
    tracing::warn!(path = %request.uri().path(), "request refused: missing or wrong credentials");
    let mut response = error(StatusCode::UNAUTHORIZED, "missing or wrong credentials");
    response.headers_mut().insert(
        http::header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer"),
    );
    response.into_response()
}

/// Checks the `Authorization` header. Both sides are hashed first, so the comparison takes
/// the same time whatever the length or content of the guess.
pub fn authorized(auth: &WebhookAuth, headers: &HeaderMap) -> bool {
    let given = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    match auth {
        WebhookAuth::None => true,
        WebhookAuth::Bearer(token) => {
            let presented = given
                .strip_prefix("Bearer ")
                .or_else(|| given.strip_prefix("bearer "))
                .unwrap_or("");
            same(presented.as_bytes(), token.expose().as_bytes()) && !presented.is_empty()
        }
        WebhookAuth::Basic { username, password } => {
            let decoded = given
                .strip_prefix("Basic ")
                .and_then(|b| STANDARD.decode(b.trim()).ok())
                .unwrap_or_default();
            let expected = format!("{username}:{}", password.expose());
            // Both halves compared together: no early exit on a wrong username.
            same(&decoded, expected.as_bytes()) && !decoded.is_empty()
        }
    }
}

fn same(a: &[u8], b: &[u8]) -> bool {
    Sha256::digest(a).ct_eq(&Sha256::digest(b)).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(http::header::AUTHORIZATION, value.parse().expect("header"));
        h
    }

    #[test]
    fn bearer_and_basic_credentials() {
        let bearer = WebhookAuth::Bearer(Secret("0123456789abcdef".into()));
        assert!(authorized(&bearer, &headers("Bearer 0123456789abcdef")));
        assert!(!authorized(&bearer, &headers("Bearer 0123456789abcdeF")));
        assert!(!authorized(&bearer, &headers("Bearer ")));
        assert!(!authorized(&bearer, &HeaderMap::new()));
        assert!(!authorized(
            &bearer,
            &headers("Basic MDEyMzQ1Njc4OWFiY2RlZg==")
        ));
        let basic = WebhookAuth::Basic {
            username: "am".into(),
            password: Secret("pw".into()),
        };
        assert!(authorized(
            &basic,
            &headers(&format!("Basic {}", STANDARD.encode("am:pw")))
        ));
        assert!(!authorized(
            &basic,
            &headers(&format!("Basic {}", STANDARD.encode("am:px")))
        ));
        assert!(!authorized(&basic, &headers("Basic !!!")));
    }
}
