//! Where notifications go: one folder per service behind the [`Sink`] trait. Only the sinks
//! know vendor JSON. Retry classification and backoff are pure functions here.

pub mod log;
pub mod ntfy;
pub mod pagerduty;
pub mod slack;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, StatusCode};
use rand::Rng;

use crate::config::{Config, TargetConfig};
use crate::domain::{Notification, TargetName};
use crate::templates::Rendered;

/// The result of one delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    /// Worth retrying (network error, 408, 429, 5xx); `after` when the vendor said when.
    Retry {
        after: Option<Duration>,
        reason: String,
    },
    /// Will never succeed as it is (other 4xx): dead-lettered.
    Permanent {
        reason: String,
    },
}

pub type SendFuture<'a> = Pin<Box<dyn Future<Output = Outcome> + Send + 'a>>;

/// What a target's healthcheck found, without sending anything to a human.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// Reachable, and where the vendor can tell, our credentials are accepted.
    Ok(String),
    /// A page sent now would not arrive (or not at once): why.
    Failed(String),
    /// The vendor offers no check short of sending a notification (`test-notify` does that).
    Unchecked(String),
}

pub type HealthFuture<'a> = Pin<Box<dyn Future<Output = Health> + Send + 'a>>;

pub trait Sink: Send + Sync {
    /// One attempt; never panics, never retries by itself.
    fn send<'a>(&'a self, notification: &'a Notification, text: &'a Rendered) -> SendFuture<'a>;

    /// Checks the target without notifying anyone (at start, and `check-config --probe`).
    fn healthcheck(&self) -> HealthFuture<'_>;
}

/// How an HTTP answer should be treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Ok,
    Retry(Option<Duration>),
    Permanent,
}

/// Retry 408, 429 and 5xx (honouring `Retry-After` in seconds); other 4xx are permanent.
pub fn classify(status: StatusCode, headers: &HeaderMap) -> Class {
    if status.is_success() {
        return Class::Ok;
    }
    if status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
        || status.is_server_error()
    {
        let after = headers
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            // A vendor asking for more than an hour is treated as an hour.
            .map(|s| Duration::from_secs(s.min(3600)));
        return Class::Retry(after);
    }
    if status.is_client_error() {
        Class::Permanent
    } else {
        // 1xx/3xx answers to a POST: not delivered, perhaps a misconfigured URL; retry.
        Class::Retry(None)
    }
}

/// Exponential backoff with full jitter, bounded below so that retries never spin.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
}

impl Backoff {
    /// `initial` must be positive and at most `max` (checked by config validation).
    pub fn new(initial: Duration, max: Duration) -> Self {
        let initial = initial.max(Duration::from_millis(10));
        Self {
            initial,
            max: max.max(initial),
        }
    }

    /// Ceiling of the delay after `attempts` failed attempts.
    pub fn ceiling(&self, attempts: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempts.saturating_sub(1).min(30));
        self.initial.saturating_mul(factor).min(self.max)
    }

    /// A random delay in [ceiling/10, ceiling].
    pub fn delay(&self, attempts: u32) -> Duration {
        let ceiling = self.ceiling(attempts);
        let floor = ceiling / 10;
        let span = u64::try_from((ceiling - floor).as_millis()).unwrap_or(u64::MAX);
        floor + Duration::from_millis(rand::rng().random_range(0..=span))
    }
}

/// Builds a sink for every enabled target.
pub fn build(config: &Config, client: &reqwest::Client) -> BTreeMap<TargetName, Arc<dyn Sink>> {
    config
        .targets
        .iter()
        .map(|(name, target)| {
            let sink: Arc<dyn Sink> = match target {
                TargetConfig::Ntfy(c) => Arc::new(ntfy::NtfySink::new(c.clone(), client.clone())),
                TargetConfig::Slack(c) => {
                    Arc::new(slack::SlackSink::new(c.clone(), client.clone()))
                }
                TargetConfig::PagerDuty(c) => {
                    Arc::new(pagerduty::PagerDutySink::new(c.clone(), client.clone()))
                }
                TargetConfig::Log(c) => Arc::new(log::LogSink::new(c.clone())),
            };
            (name.clone(), sink)
        })
        .collect()
}

/// Every sink's healthcheck, at the same time; results in target order.
pub async fn check_all(sinks: &BTreeMap<TargetName, Arc<dyn Sink>>) -> Vec<(TargetName, Health)> {
    let checks = sinks
        .iter()
        .map(|(target, sink)| async move { (target.clone(), sink.healthcheck().await) });
    futures_util::future::join_all(checks).await
}

/// Sends `request`. A transport failure (refused, reset, timed out) is a retry whose reason
/// names the cause but never the URL: a Slack webhook URL is its own credential.
pub async fn send(request: reqwest::RequestBuilder) -> Result<reqwest::Response, Outcome> {
    request.send().await.map_err(|error| Outcome::Retry {
        after: None,
        reason: describe(&error.without_url()),
    })
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

    fn headers(retry_after: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(v) = retry_after {
            h.insert(http::header::RETRY_AFTER, v.parse().expect("header"));
        }
        h
    }

    #[test]
    fn classify_per_status_code() {
        let none = headers(None);
        assert_eq!(classify(StatusCode::OK, &none), Class::Ok);
        assert_eq!(classify(StatusCode::ACCEPTED, &none), Class::Ok);
        assert_eq!(classify(StatusCode::BAD_REQUEST, &none), Class::Permanent);
        assert_eq!(classify(StatusCode::UNAUTHORIZED, &none), Class::Permanent);
        assert_eq!(classify(StatusCode::NOT_FOUND, &none), Class::Permanent);
        assert_eq!(
            classify(StatusCode::PAYLOAD_TOO_LARGE, &none),
            Class::Permanent
        );
        assert_eq!(
            classify(StatusCode::REQUEST_TIMEOUT, &none),
            Class::Retry(None)
        );
        assert_eq!(
            classify(StatusCode::INTERNAL_SERVER_ERROR, &none),
            Class::Retry(None)
        );
        assert_eq!(
            classify(StatusCode::SERVICE_UNAVAILABLE, &none),
            Class::Retry(None)
        );
        assert_eq!(
            classify(StatusCode::INSUFFICIENT_STORAGE, &none),
            Class::Retry(None)
        );
    }

    #[test]
    fn retry_after_is_honoured_and_bounded() {
        assert_eq!(
            classify(StatusCode::TOO_MANY_REQUESTS, &headers(Some("7"))),
            Class::Retry(Some(Duration::from_secs(7)))
        );
        assert_eq!(
            classify(StatusCode::SERVICE_UNAVAILABLE, &headers(Some("999999"))),
            Class::Retry(Some(Duration::from_secs(3600)))
        );
        assert_eq!(
            classify(
                StatusCode::TOO_MANY_REQUESTS,
                &headers(Some("Wed, 21 Oct 2015 07:28:00 GMT"))
            ),
            Class::Retry(None),
            "dates fall back to our own backoff"
        );
    }

    #[test]
    fn backoff_grows_to_its_cap_with_jitter_inside_bounds() {
        let backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        let ceilings: Vec<u64> = (1..=8).map(|a| backoff.ceiling(a).as_secs()).collect();
        assert_eq!(ceilings, vec![1, 2, 4, 8, 16, 32, 60, 60]);
        assert_eq!(backoff.ceiling(u32::MAX), Duration::from_secs(60));
        for attempts in 1..20 {
            let delay = backoff.delay(attempts);
            let ceiling = backoff.ceiling(attempts);
            assert!(
                delay >= ceiling / 10 && delay <= ceiling,
                "{delay:?} outside {ceiling:?}"
            );
        }
    }
}
