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
    // A vendor's error explanation is short; a proxy's error page (or a hostile endless
    // body) is read no further than its start.
    let body = start_of_body(response, ERROR_BODY_BYTES).await;
    let body: String = body.chars().take(4096).collect();
    Err(Refusal::Answer {
        status,
        class,
        body,
    })
}

/// How much of an error answer's body is read.
const ERROR_BODY_BYTES: usize = 16 * 1024;

/// At most `limit` bytes of `response`'s body (lossy UTF-8); the rest is never read.
async fn start_of_body(mut response: reqwest::Response, limit: usize) -> String {
    let mut bytes = Vec::new();
    while bytes.len() < limit {
        match response.chunk().await {
            Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
            _ => break,
        }
    }
    bytes.truncate(limit);
    String::from_utf8_lossy(&bytes).into_owned()
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

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A server answering 500 with a body that never ends (a hostile or broken receiver).
    async fn endless_500() -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let mut request = [0u8; 4096];
            let _ = socket.read(&mut request).await;
            let head = "HTTP/1.1 500 Internal Server Error\r\ntransfer-encoding: chunked\r\n\r\n";
            if socket.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            let chunk = format!("{:x}\r\n{}\r\n", 64 * 1024, "x".repeat(64 * 1024));
            while socket.write_all(chunk.as_bytes()).await.is_ok() {}
        });
        format!("http://{addr}/")
    }

    #[tokio::test]
    async fn an_endless_error_body_is_read_no_further_than_its_start() {
        let url = endless_500().await;
        let client = reqwest::Client::new();
        let outcome = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            deliver(client.post(url), "test", |_, body| body.len().to_string()),
        )
        .await
        .expect("answered without reading the whole body");
        let Outcome::Retry { reason, .. } = outcome else {
            panic!("a 500 is retried: {outcome:?}");
        };
        assert!(reason.contains("500"), "{reason}");
        assert!(
            reason.ends_with("4096"),
            "the body cut to its start: {reason}"
        );
    }
}
