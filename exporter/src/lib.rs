//! Metrics for a web service behind a gateway: app RED metrics, deployment versions, host.
//!
//! # Layout
//! - [`layer`] (feature `layer`): `HttpMetricsLayer`, the tower layer recording RED metrics
//!   for any axum app, and `metrics_handler` serving a registry in the Prometheus text format.
//! - [`telemetry`] (feature `telemetry`; `cli` adds `clap::ValueEnum` to `LogFormat`): what
//!   the binaries share: tracing setup (plain or JSON logs, Loki shipping), the shutdown signal
//!   and the `--healthcheck` probe.
//! - [`serve`] (feature `serve`): the HTTP/1.1 server of both binaries: header, body and idle
//!   timeouts, a connection limit that sheds half-sent requests first, graceful shutdown.
//! - [`host`] (feature `bin`): host metrics read with `sysinfo` on a background timer.
//! - [`probe`] (feature `bin`): probes of the gateway's `/health` and `/version`, version
//!   history and the deployment/rollback counters.
//! - [`server`] (feature `bin`): the `exporter` binary's router and `run` entry point.
//!
//! The default feature `bin` is everything; an app embedding the layer asks for
//! `default-features = false, features = ["layer"]`.

#[cfg(feature = "bin")]
pub mod host;
#[cfg(feature = "layer")]
pub mod layer;
#[cfg(feature = "bin")]
pub mod probe;
#[cfg(feature = "bin")]
mod schedule;
#[cfg(feature = "serve")]
pub mod serve;
#[cfg(feature = "bin")]
pub mod server;
#[cfg(feature = "telemetry")]
pub mod telemetry;
