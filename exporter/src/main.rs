//! `exporter`: host, deployment-version and probe metrics on `/metrics`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use exporter::probe::{ProbeSettings, Target};
use exporter::serve::Limits;
use exporter::server::{self, Config, FileConfig};
use exporter::telemetry::{self, LogFormat};
use url::Url;

/// Serves host metrics, the gateway's deployed version, deployments, rollbacks and health
/// on /metrics for Prometheus.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Address to serve /metrics, /health and /ready on.
    #[arg(long, env = "EXPORTER_LISTEN", default_value = "127.0.0.1:9464")]
    listen: SocketAddr,
    /// Base URL of the gateway to probe (its /health and /version), as target `gateway`.
    #[arg(long, env = "GATEWAY_URL")]
    gateway_url: Option<Url>,
    /// YAML file listing more targets: `targets: [{name, url, color}]`.
    #[arg(long, env = "EXPORTER_CONFIG")]
    config: Option<PathBuf>,
    /// File keeping the version history, so that a restart is not taken for a deployment.
    #[arg(
        long,
        env = "EXPORTER_STATE_FILE",
        default_value = "exporter-state.json"
    )]
    state_file: PathBuf,
    /// Time between probes of each target.
    #[arg(long, env = "EXPORTER_PROBE_INTERVAL", default_value = "5s", value_parser = humantime::parse_duration)]
    probe_interval: Duration,
    /// Time limit of one probe request.
    #[arg(long, env = "EXPORTER_PROBE_TIMEOUT", default_value = "3s", value_parser = humantime::parse_duration)]
    probe_timeout: Duration,
    /// Time between host metric samples (at least 200ms, for CPU usage).
    #[arg(long, env = "EXPORTER_HOST_INTERVAL", default_value = "5s", value_parser = humantime::parse_duration)]
    host_interval: Duration,
    /// Response header naming the colour (blue/green) that served the request.
    #[arg(
        long,
        env = "EXPORTER_COLOR_HEADER",
        default_value = "X-Deployment-Color"
    )]
    color_header: http::HeaderName,
    /// Log line format on stderr.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Loki base URL to ship logs to (e.g. http://loki:3100).
    #[arg(long, env = "LOKI_URL")]
    loki_url: Option<Url>,
    /// Check that an exporter answers /health on --listen, then exit 0 or 1 (for container
    /// healthchecks in images without a shell).
    #[arg(long)]
    healthcheck: bool,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("exporter: cannot start the async runtime: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = if cli.healthcheck {
        runtime.block_on(telemetry::check_health(cli.listen))
    } else {
        runtime.block_on(serve(cli))
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("exporter: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn serve(cli: Cli) -> anyhow::Result<()> {
    let config = config(&cli)?;
    let guard = telemetry::init("exporter", cli.log_format, cli.loki_url.as_ref())?;
    let listener = tokio::net::TcpListener::bind(cli.listen)
        .await
        .with_context(|| format!("cannot listen on {}", cli.listen))?;
    let result = server::run(listener, config, telemetry::shutdown_signal()).await;
    if let Err(error) = &result {
        tracing::error!(error = %format!("{error:#}"), "exporter failed");
    }
    guard.shutdown(Duration::from_secs(5)).await;
    result
}

fn config(cli: &Cli) -> anyhow::Result<Config> {
    let mut targets = Vec::new();
    if let Some(url) = &cli.gateway_url {
        targets.push(Target {
            name: "gateway".into(),
            url: url.clone(),
            color: None,
        });
    }
    if let Some(path) = &cli.config {
        targets.extend(FileConfig::load(path)?.targets);
    }
    if cli.host_interval < sysinfo::MINIMUM_CPU_UPDATE_INTERVAL {
        anyhow::bail!(
            "--host-interval must be at least {:?} (CPU usage needs two samples that far apart)",
            sysinfo::MINIMUM_CPU_UPDATE_INTERVAL
        );
    }
    if cli.probe_interval.is_zero() || cli.probe_timeout.is_zero() {
        anyhow::bail!("--probe-interval and --probe-timeout must be greater than zero");
    }
    Ok(Config {
        targets: server::validate_targets(targets)?,
        probe: ProbeSettings {
            timeout: cli.probe_timeout,
            color_header: cli.color_header.clone(),
            state_file: Some(cli.state_file.clone()),
        },
        probe_interval: cli.probe_interval,
        host_interval: cli.host_interval,
        limits: Limits::default(),
    })
}
