//! One GET of a target's endpoint within the limits: a bounded body, redirects followed only
//! within the target's origin, and the reason when an answer is refused.

use std::time::{Duration, Instant};

use http::HeaderName;
use reqwest::redirect::{Attempt, Policy};
use url::Url;

use super::limits::{self, MAX_BODY_BYTES, MAX_REDIRECTS};

/// The probes' HTTP client: time limit per request (redirects and body included) and the
/// same-origin redirect policy.
pub fn client(timeout: Duration) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(timeout)
        .user_agent(concat!("bundle-exporter/", env!("CARGO_PKG_VERSION")))
        .redirect(Policy::custom(same_origin))
        .build()
}

/// Follows a redirect to the scheme, host and port first asked, [`MAX_REDIRECTS`] times at
/// most; stops at any other, so that the 3xx itself is the answer (see [`fetch`]).
fn same_origin(attempt: Attempt<'_>) -> reqwest::redirect::Action {
    // `previous` starts with the URL first asked.
    let first = attempt.previous().first().map(Url::origin);
    let followed = attempt.previous().len().saturating_sub(1);
    if followed < MAX_REDIRECTS && first == Some(attempt.url().origin()) {
        attempt.follow()
    } else {
        attempt.stop()
    }
}

/// Why an answer was refused by a limit (a label of `exporter_probe_responses_refused_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    BodyTooLarge,
    Redirect,
}

impl Refusal {
    pub const ALL: [Refusal; 2] = [Self::BodyTooLarge, Self::Redirect];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::BodyTooLarge => "body_too_large",
            Self::Redirect => "redirect",
        }
    }
}

/// Why there is no body to parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub reason: String,
    pub refused: Option<Refusal>,
}

impl Failure {
    fn other(reason: String) -> Self {
        Self {
            reason,
            refused: None,
        }
    }
}

/// The raw result of one request.
pub struct Fetched {
    /// 0 when there was no answer.
    pub status: u16,
    pub seconds: f64,
    pub color: Option<String>,
    pub body: Result<Vec<u8>, Failure>,
}

impl Fetched {
    pub fn is_2xx(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

pub async fn fetch(
    client: &reqwest::Client,
    base: &Url,
    endpoint: &'static str,
    color_header: &HeaderName,
) -> Fetched {
    let started = Instant::now();
    let url = join(base, endpoint);
    let mut fetched = Fetched {
        status: 0,
        seconds: 0.0,
        color: None,
        body: Err(Failure::other(String::new())),
    };
    match client.get(url.clone()).send().await {
        Err(error) => fetched.body = Err(Failure::other(describe(&error))),
        Ok(mut response) => {
            fetched.status = response.status().as_u16();
            fetched.color = response
                .headers()
                .get(color_header)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            fetched.body = match refused_redirect(&response, &url, endpoint) {
                Some(failure) => Err(failure),
                None => read_limited(&mut response, endpoint).await,
            };
        }
    }
    fetched.seconds = started.elapsed().as_secs_f64();
    fetched
}

/// A redirect the policy did not follow: to another origin, or one too many.
fn refused_redirect(response: &reqwest::Response, asked: &Url, endpoint: &str) -> Option<Failure> {
    // The statuses reqwest follows; any other 3xx is a plain non-2xx answer.
    if ![301, 302, 303, 307, 308].contains(&response.status().as_u16()) {
        return None;
    }
    let location = response.headers().get(http::header::LOCATION)?;
    let location = String::from_utf8_lossy(location.as_bytes());
    let next = response.url().join(&location).ok();
    let shown = limits::cut(&location, limits::MAX_LABEL_BYTES);
    let reason = if next.is_some_and(|next| next.origin() == asked.origin()) {
        format!("/{endpoint} redirected more than {MAX_REDIRECTS} times (last to {shown})")
    } else {
        format!(
            "/{endpoint} redirected to {shown}, not followed: redirects are followed only \
             within {}",
            asked.origin().ascii_serialization()
        )
    };
    Some(Failure {
        reason,
        refused: Some(Refusal::Redirect),
    })
}

async fn read_limited(
    response: &mut reqwest::Response,
    endpoint: &str,
) -> Result<Vec<u8>, Failure> {
    let too_large = || Failure {
        reason: format!("/{endpoint} body is larger than {MAX_BODY_BYTES} bytes"),
        refused: Some(Refusal::BodyTooLarge),
    };
    // A declared length over the limit is refused before reading anything.
    if response
        .content_length()
        .is_some_and(|n| n > MAX_BODY_BYTES as u64)
    {
        return Err(too_large());
    }
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > MAX_BODY_BYTES {
                    return Err(too_large());
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(error) => return Err(Failure::other(describe(&error))),
        }
    }
}

fn describe(error: &reqwest::Error) -> String {
    use std::error::Error;
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    // reqwest's top-level message hides the cause (refused, reset...): add the innermost.
    let mut cause: &dyn Error = error;
    while let Some(next) = cause.source() {
        cause = next;
    }
    format!("{kind}: {cause}")
}

/// `base` + `/endpoint`, keeping any path prefix of `base`.
fn join(base: &Url, endpoint: &str) -> Url {
    let mut url = base.clone();
    let path = format!("{}/{endpoint}", base.path().trim_end_matches('/'));
    url.set_path(&path);
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_join_onto_a_base_with_or_without_a_prefix() {
        let base = Url::parse("http://gw:8080").expect("url");
        assert_eq!(join(&base, "health").as_str(), "http://gw:8080/health");
        let base = Url::parse("http://gw:8080/blue/").expect("url");
        assert_eq!(
            join(&base, "version").as_str(),
            "http://gw:8080/blue/version"
        );
    }
}
