//! `demo-gateway`: a small axum app standing in for the user's gateway in the demo, the tests
//! and the benchmarks. Instrumented with `HttpMetricsLayer`; faults and the served version
//! change at run time through `/admin/*`.

mod app;

use std::net::SocketAddr;

use anyhow::Context;
use clap::Parser;
use exporter::telemetry::{self, LogFormat};

/// A demo gateway: /api/orders/{id}, /api/cheap, /health, /version, /metrics, and /admin/*
/// to inject faults and play deployments.
#[derive(Debug, Parser)]
#[command(about, disable_version_flag = true)]
struct Cli {
    /// Address to listen on.
    #[arg(long, env = "DEMO_GATEWAY_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Version served at start (/version).
    #[arg(long, default_value = "1.0.0")]
    version: String,
    /// Colour served at start.
    #[arg(long, value_enum, default_value_t = app::Color::Blue)]
    color: app::Color,
    /// Serve without HttpMetricsLayer (a baseline for the middleware benchmark).
    #[arg(long)]
    no_metrics_layer: bool,
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let guard = telemetry::init("demo-gateway", cli.log_format, None)?;
    let state = app::AppState::new(&cli.version, cli.color);
    let router = app::router(state, !cli.no_metrics_layer)?;
    let listener = tokio::net::TcpListener::bind(cli.listen)
        .await
        .with_context(|| format!("cannot listen on {}", cli.listen))?;
    tracing::info!(address = %listener.local_addr()?, version = %cli.version, "demo gateway listening");
    axum::serve(listener, router)
        .with_graceful_shutdown(telemetry::shutdown_signal())
        .await?;
    guard.shutdown(std::time::Duration::from_secs(1)).await;
    Ok(())
}
