//! What the binaries share: logging (plain or JSON lines on stderr, optional shipping to
//! Loki), the shutdown signal (SIGTERM or Ctrl-C) and the `--healthcheck` probe that images
//! without a shell run against their own `/health`.

use std::time::Duration;

use anyhow::Context;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};
use url::Url;

/// How log lines are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line (for log collectors).
    Json,
}

/// Keeps the Loki shipper alive; [`TelemetryGuard::shutdown`] flushes what is queued.
#[must_use = "dropping the guard without shutdown loses the last log lines bound for Loki"]
pub struct TelemetryGuard {
    loki: Option<(
        tracing_loki::BackgroundTaskController,
        tokio::task::JoinHandle<()>,
    )>,
}

impl TelemetryGuard {
    /// Flushes queued lines to Loki, waiting at most `limit` (Loki may be down).
    pub async fn shutdown(self, limit: Duration) {
        let Some((controller, task)) = self.loki else {
            return;
        };
        controller.shutdown().await;
        if tokio::time::timeout(limit, task).await.is_err() {
            eprintln!("log shipping to Loki did not finish within {limit:?}; some lines are lost");
        }
    }
}

/// Installs the global subscriber. `RUST_LOG` filters (default `info`). With `loki_url`, log
/// events are also pushed to Loki with labels `service` and `host`. Must run inside a Tokio
/// runtime when `loki_url` is set.
pub fn init(
    service: &'static str,
    format: LogFormat,
    loki_url: Option<&Url>,
) -> anyhow::Result<TelemetryGuard> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let stderr = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_writer(std::io::stderr)
            .boxed(),
    };
    let (loki_layer, loki) = match loki_url {
        None => (None, None),
        Some(url) => {
            let host = sysinfo::System::host_name().unwrap_or_else(|_| "unknown".into());
            let (layer, controller, task) = tracing_loki::builder()
                .label("service", service)?
                .label("host", host)?
                .extra_field("pid", std::process::id().to_string())?
                .build_controller_url(url.clone())?;
            (Some(layer), Some((controller, tokio::spawn(task))))
        }
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(stderr)
        .with(loki_layer)
        .try_init()?;
    Ok(TelemetryGuard { loki })
}

/// Resolves on SIGTERM or Ctrl-C (SIGINT).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("Ctrl-C received, shutting down"),
        () = terminate => tracing::info!("SIGTERM received, shutting down"),
    }
}

/// Asks the server listening on `listen` for `/health` (an unspecified address means this
/// host): Ok on a 2xx answer within 3 s. Containers use it as their healthcheck command.
pub async fn check_health(listen: std::net::SocketAddr) -> anyhow::Result<()> {
    let mut address = listen;
    if address.ip().is_unspecified() {
        address.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let response = reqwest::Client::new()
        .get(format!("http://{address}/health"))
        .timeout(Duration::from_secs(3))
        .send()
        .await
        .with_context(|| format!("no answer from http://{address}/health"))?;
    anyhow::ensure!(
        response.status().is_success(),
        "/health answered {}",
        response.status()
    );
    Ok(())
}
