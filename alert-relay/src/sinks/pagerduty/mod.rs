//! PagerDuty Events API v2: `trigger` with a stable `dedup_key` per incident (retries and
//! restarts never open a second PagerDuty incident), `acknowledge` and `resolve`.

mod request;
mod sink;

pub use request::{build_event, dedup_key};
pub use sink::PagerDutySink;

#[cfg(test)]
mod tests;
