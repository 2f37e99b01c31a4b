//! alert-relay: Alertmanager webhooks in, escalating notifications out, nothing lost.
//!
//! Data flows one way: **intake → engine → outbox → sinks**.
//!
//! # Layout
//! - [`domain`]: typed values shared by every module (`Timestamp`, `Severity`, `TargetName`...).
//! - [`config`]: the escalation-policy YAML: raw serde structs, pure validation with path and
//!   line in every error, `${ENV}`/`*_file` secrets, then the built `Config`.
//! - [`escalation`]: the pure incident state machine, `(state, event, now) -> actions`.
//! - [`templates`]: handlebars titles and bodies, a default per sink, overridable per policy.
//! - [`intake`]: the authenticated, size-limited `POST /webhook` handler.
//! - [`store`]: SQLite (WAL): incidents, due steps, the outbox with attempts and next try.
//! - [`sinks`]: one folder per vendor (ntfy, Slack, PagerDuty, log) behind the `Sink` trait;
//!   retry classification and backoff.
//! - [`worker`]: the scheduler (due steps) and the outbox delivery worker.
//! - [`writer`]: group commit of webhooks (one transaction and fsync per batch).
//! - [`ack`]: HMAC-signed expiring acknowledge links and the authenticated ack API.
//! - [`api`]: the read side of the HTTP API: open incidents (who was paged, what comes next)
//!   and dead letters.
//! - [`silence`]: asks Alertmanager whether an incident's alerts are silenced or inhibited.
//! - [`metrics`]: the relay's own `relay_*` metrics.
//! - [`runtime`]: the `Relay` (store, metrics) and its `Runtime` built from the policy file,
//!   swapped on reload.
//! - [`server`]: router, `run(listener, relay, shutdown)`.
//! - [`background`]: delivery workers across reloads, target healthchecks, dead letters for
//!   removed targets, reload on SIGHUP.
//! - [`cli`]: the clap command line (`serve`, `check-config`, `simulate`, `test-notify`).
//! - [`oncall`]: `incidents` and `ack`, clients of a running relay's API.

pub mod ack;
pub mod api;
pub mod background;
pub mod cli;
pub mod config;
pub mod domain;
pub mod escalation;
#[doc(hidden)]
pub mod fuzzing;
pub mod heartbeat;
pub mod intake;
pub mod metrics;
pub mod oncall;
pub mod runtime;
pub mod server;
pub mod silence;
pub mod sinks;
pub mod store;
pub mod templates;
pub mod worker;
pub mod writer;
