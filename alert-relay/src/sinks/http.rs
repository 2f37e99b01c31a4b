//! The one way HTTP vendors are called: send → classify the answer → extract the vendor's own
//! explanation of an error. Each vendor supplies only how to read its error body.

use http::StatusCode;

use super::retry::{classify, Class};
use super::Outcome;

/// How a vendor explains a refusal: its status and body in, a short reason out.
pub type Detail = fn(StatusCode, &str) -> String;

/// Sends `request` and turns the answer into an [`Outcome`]. A transport failure (refused,
/// reset, timed out) is a retry whose reason names the cause but never the URL: a Slack
/// webhook URL is its own credential.
pub async fn deliver(request: reqwest::RequestBuilder, vendor: &str, detail: Detail) -> Outcome {
    match attempt(request).await {
        Ok(()) => Outcome::Delivered,
        Err(refusal) => refusal.outcome(vendor, detail),
    }
}

/// Like [`deliver`], but when the vendor refuses the request for its size (`too_large`
/// recognises the answer), sends `smaller()` at once: a vendor's size limit leads to a smaller
/// page, never to a dropped one. Only if the smaller one is refused too is it dead-lettered,
/// with both reasons.
pub async fn deliver_shrinking(
    request: reqwest::RequestBuilder,
    smaller: impl FnOnce() -> reqwest::RequestBuilder,
    vendor: &str,
    detail: Detail,
    too_large: fn(StatusCode, &str) -> bool,
) -> Outcome {
    let refusal = match attempt(request).await {
        Ok(()) => return Outcome::Delivered,
        Err(refusal) => refusal,
    };
    let Refusal::Answer { status, body, .. } = &refusal else {
        return refusal.outcome(vendor, detail);
    };
    if !too_large(*status, body) {
        return refusal.outcome(vendor, detail);
    }
    let first = format!("{vendor} answered {status}: {}", detail(*status, body));
    tracing::warn!(vendor, reason = %first, "refused as too large; sending a smaller version");
    match attempt(smaller()).await {
        Ok(()) => Outcome::Delivered,
        Err(again) => match again.outcome(vendor, detail) {
            Outcome::Permanent { reason } => Outcome::Permanent {
                reason: format!("{first}; the smaller version too: {reason}"),
            },
            other => other,
        },
    }
}

/// Why an attempt did not deliver.
enum Refusal {
    Transport(String),
    Answer {
        status: StatusCode,
        class: Class,
        body: String,
    },
}

impl Refusal {
    fn outcome(self, vendor: &str, detail: Detail) -> Outcome {
        match self {
            Refusal::Transport(reason) => Outcome::Retry {
                after: None,
                reason,
            },
            Refusal::Answer {
                status,
                class,
                body,
            } => {
                let reason = format!("{vendor} answered {status}: {}", detail(status, &body));
                match class {
                    Class::Retry(after) => Outcome::Retry { after, reason },
                    _ => Outcome::Permanent { reason },
                }
            }
        }
    }
}

async fn attempt(request: reqwest::RequestBuilder) -> Result<(), Refusal> {
    let response = request
        .send()
        .await
        .map_err(|error| Refusal::Transport(describe(&error.without_url())))?;
    let status = response.status();
    let class = classify(status, response.headers());
    if class == Class::Ok {
        return Ok(());
    }
    // A vendor's error explanation is short; a proxy's error page need not be read whole.
    let body = response.text().await.unwrap_or_default();
    let body: String = body.chars().take(4096).collect();
    Err(Refusal::Answer {
        status,
        class,
        body,
    })
}

/// The start of a body that is not the JSON a vendor documents (a proxy's HTML page, say).
pub fn first_chars(body: &str) -> String {
    body.trim().chars().take(200).collect()
}

/// Describes a reqwest error with its innermost cause (refused, reset, timed out...).
pub fn describe(error: &reqwest::Error) -> String {
    use std::error::Error;
    let mut cause: &dyn Error = error;
    while let Some(next) = cause.source() {
        cause = next;
    }
    if error.is_timeout() {
        format!("timed out: {cause}")
    } else {
        format!("request failed: {cause}")
    }
}
