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
    let response = match request.send().await {
        Ok(response) => response,
        Err(error) => {
            return Outcome::Retry {
                after: None,
                reason: describe(&error.without_url()),
            }
        }
    };
    let status = response.status();
    let class = classify(status, response.headers());
    if class == Class::Ok {
        return Outcome::Delivered;
    }
    let body = response.text().await.unwrap_or_default();
    let reason = format!("{vendor} answered {status}: {}", detail(status, &body));
    match class {
        Class::Retry(after) => Outcome::Retry { after, reason },
        _ => Outcome::Permanent { reason },
    }
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
