//! Metrics for a web service behind a gateway: app RED metrics, deployment versions, host.
//!
//! # Layout
//! - [`layer`]: `HttpMetricsLayer`, the tower layer recording RED metrics for any axum app,
//!   and `metrics_handler` serving a registry in the Prometheus text format.
//! - [`telemetry`]: tracing setup shared by the binaries (plain or JSON logs, Loki shipping,
//!   shutdown signal).
//! - [`host`]: host metrics read with `sysinfo` on a background timer.
//! - [`probe`]: probes of the gateway's `/health` and `/version`, version history and the
//!   deployment/rollback counters.
//! - [`server`]: the `exporter` binary's router and `run` entry point.

pub mod host;
pub mod layer;
pub mod probe;
pub mod server;
pub mod telemetry;
