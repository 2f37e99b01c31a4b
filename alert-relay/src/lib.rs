//! alert-relay: Alertmanager webhooks in, escalating notifications out, nothing lost.
//!
//! Data flows one way: **transport → application → engine → store → outbox → sinks**.
//! Modules, from the bottom up; none imports a module listed after it:
//!
//! # Layout
//! - [`domain`]: typed values shared by every module (`Timestamp`, `Severity`, `AlertGroup`,
//!   `Notification`, matcher quoting...).
//! - [`validation`]: the config toolkit (errors with path and line, `${ENV}`, secrets).
//! - [`ack`]: HMAC-signed, expiring acknowledge links bound to a random incident key.
//! - [`engine`]: the pure engine — the escalation machine, link composition, and what each
//!   event does to the rows (`webhook`, `acknowledge`, `silenced`, `due`).
//! - [`store`]: rows and transactions behind one contract (`Store`, `Tx`); SQLite backend.
//! - [`sinks`]: one folder per vendor (config, request builder, sender, tests) behind
//!   `Sink`; the shared send → classify path, retry and backoff.
//! - [`config`]: the escalation-policy YAML: server, delivery and policies; targets are
//!   validated by their vendor's folder.
//! - [`templates`]: handlebars titles and bodies, a default per sink, overridable.
//! - [`silence`]: asks Alertmanager whether an incident's alerts still page.
//! - [`metrics`]: the relay's own `relay_*` metrics.
//! - [`app`]: the application layer — one method per use case (ingest, acknowledge, fire
//!   due steps, deliver, forget removed targets, heartbeats, reload).
//! - [`background`]: every long-running loop; each calls one use case.
//! - [`server`]: the HTTP transport (auth layer, webhook parsing, API views, the pages a
//!   person opens in a browser) and `run`.
//! - [`console`]: the on-call console for phones and desktops, a transport like `server`
//!   (askama pages, sessions and sign-in, forms checked for origin and token).
//! - [`oncall`], [`cli`]: the command line and the clients of a running relay's API.

pub mod ack;
pub mod app;
pub mod background;
pub mod cli;
pub mod config;
pub mod console;
pub mod domain;
pub mod engine;
#[doc(hidden)]
pub mod fuzzing;
pub mod metrics;
pub mod oncall;
pub mod server;
pub mod silence;
pub mod sinks;
pub mod store;
pub mod templates;
pub mod validation;
