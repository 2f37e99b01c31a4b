//! The `exporter` binary's pieces: its configuration, registry, router and `run` entry point.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use prometheus::{IntGaugeVec, Opts, Registry};
use tokio::net::TcpListener;

use crate::host::{HostCollector, HostSampler};
use crate::layer::metrics_handler;
use crate::probe::{ProbeSettings, Prober, Target};
use crate::serve::{serve, Limits};

/// Everything `run` needs, validated.
#[derive(Debug, Clone)]
pub struct Config {
    pub targets: Vec<Target>,
    pub probe: ProbeSettings,
    pub probe_interval: Duration,
    pub host_interval: Duration,
    /// Timeouts and the connection limit of the HTTP server.
    pub limits: Limits,
}

/// The optional YAML file: more targets than `--gateway-url` (for example the blue and green
/// upstreams behind the gateway).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default)]
    pub targets: Vec<Target>,
}

impl FileConfig {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
        serde_yaml::from_str(&text).map_err(|e| {
            let at = e
                .location()
                .map(|l| format!(" at line {}, column {}", l.line(), l.column()))
                .unwrap_or_default();
            anyhow::anyhow!("{}{at}: {e}", path.display())
        })
    }
}

/// Checks target names are unique and colours known; returns the targets in order.
pub fn validate_targets(targets: Vec<Target>) -> anyhow::Result<Vec<Target>> {
    let mut seen = std::collections::BTreeSet::new();
    for (i, target) in targets.iter().enumerate() {
        if target.name.is_empty() {
            anyhow::bail!(
                "targets[{i}].name is empty: give each target a short name such as `gateway`"
            );
        }
        if !seen.insert(target.name.as_str()) {
            anyhow::bail!(
                "targets[{i}].name `{}` is used twice: names must be unique",
                target.name
            );
        }
        if let Some(color) = &target.color {
            if !["blue", "green"].contains(&color.as_str()) {
                anyhow::bail!("targets[{i}].color `{color}` must be `blue` or `green`");
            }
        }
        if !["http", "https"].contains(&target.url.scheme()) {
            anyhow::bail!("targets[{i}].url `{}` must be http or https", target.url);
        }
    }
    Ok(targets)
}

#[derive(Clone)]
pub struct AppState {
    pub registry: Registry,
    pub ready: Arc<AtomicBool>,
}

/// `/metrics`, `/health` (alive) and `/ready` (first host sample and probe round done).
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics_handler(state.registry.clone())))
        .route("/health", get(|| async { "ok\n" }))
        .route("/ready", get(ready))
        .with_state(state)
}

async fn ready(State(state): State<AppState>) -> impl IntoResponse {
    if state.ready.load(Ordering::Acquire) {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "collecting\n")
    }
}

/// A registry with the exporter's own metrics: build info and `process_*`.
pub fn base_registry() -> anyhow::Result<Registry> {
    let registry = Registry::new();
    let build = IntGaugeVec::new(
        Opts::new(
            "exporter_build_info",
            "The running exporter build (always 1).",
        ),
        &["version", "commit"],
    )?;
    build
        .with_label_values(&[env!("CARGO_PKG_VERSION"), env!("BUILD_COMMIT")])
        .set(1);
    registry.register(Box::new(build))?;
    #[cfg(target_os = "linux")]
    registry.register(Box::new(
        prometheus::process_collector::ProcessCollector::for_self(),
    ))?;
    Ok(registry)
}

/// Serves until `shutdown` resolves, then stops the background tasks and returns.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let registry = base_registry()?;
    let host = HostCollector::new();
    registry.register(Box::new(host.clone()))?;
    let prober = Prober::new(&registry, config.targets.clone(), config.probe.clone())?;
    let sampler = HostSampler::new()?;

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let (host_first_tx, host_first) = tokio::sync::oneshot::channel();
    let (probe_first_tx, probe_first) = tokio::sync::oneshot::channel();
    let host_task = tokio::spawn(host.run(
        sampler,
        config.host_interval,
        stop_rx.clone(),
        host_first_tx,
    ));
    let probe_task = tokio::spawn(prober.run(config.probe_interval, stop_rx, probe_first_tx));

    let ready = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&ready);
    tokio::spawn(async move {
        let _ = tokio::join!(host_first, probe_first);
        flag.store(true, Ordering::Release);
        tracing::info!("first collection done; ready");
    });

    let address: SocketAddr = listener.local_addr()?;
    tracing::info!(%address, targets = config.targets.len(), "exporter listening");
    let served = serve(
        listener,
        router(AppState { registry, ready }),
        config.limits,
        shutdown,
    )
    .await;
    // The background loops stop whether the server ended well or not.
    let _ = stop_tx.send(true);
    let _ = tokio::join!(host_task, probe_task);
    served?;
    tracing::info!("exporter stopped");
    Ok(())
}
