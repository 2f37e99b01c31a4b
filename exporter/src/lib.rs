//! Metrics for a web service behind a gateway: app RED metrics, deployment versions, host.
//!
//! # Layout
//! - [`layer`]: `HttpMetricsLayer`, the tower layer recording RED metrics for any axum app,
//!   and `metrics_handler` serving a registry in the Prometheus text format.
//! - [`telemetry`]: what the binaries share: tracing setup (plain or JSON logs, Loki
//!   shipping), the shutdown signal and the `--healthcheck` probe.
//! - [`host`]: host metrics read with `sysinfo` on a background timer.
//! - [`probe`]: probes of the gateway's `/health` and `/version`, version history and the
//!   deployment/rollback counters.
//! - [`server`]: the `exporter` binary's router and `run` entry point.

pub mod host;
pub mod layer;
pub mod probe;
mod schedule;
pub mod server;
pub mod telemetry;
