//! Retry as pure functions: how to treat a vendor's answer ([`classify`]) and how long to wait
//! before the next attempt ([`Backoff`], exponential with full jitter from an injected source).

use std::time::Duration;

use http::{HeaderMap, StatusCode};
use rand::{Rng, RngCore};

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
    if status.is_client_error() || status.is_redirection() {
        // A redirect is never followed (the client's policy): the URL needs fixing.
        Class::Permanent
    } else {
        // 1xx answers to a POST: not delivered; retry.
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

    /// A random delay in [ceiling/10, ceiling], drawn from `rng` (seeded in the simulation).
    pub fn delay(&self, attempts: u32, rng: &mut dyn RngCore) -> Duration {
        let ceiling = self.ceiling(attempts);
        let floor = ceiling / 10;
        let span = u64::try_from((ceiling - floor).as_millis()).unwrap_or(u64::MAX);
        floor + Duration::from_millis(rng.random_range(0..=span))
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
        // Never followed: a redirect is a URL to fix.
        assert_eq!(
            classify(StatusCode::MOVED_PERMANENTLY, &none),
            Class::Permanent
        );
        assert_eq!(
            classify(StatusCode::TEMPORARY_REDIRECT, &none),
            Class::Permanent
        );
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
            let delay = backoff.delay(attempts, &mut rand::rng());
            let ceiling = backoff.ceiling(attempts);
            assert!(
                delay >= ceiling / 10 && delay <= ceiling,
                "{delay:?} outside {ceiling:?}"
            );
        }
    }
}
