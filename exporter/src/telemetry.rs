//! What the binaries share: logging (plain or JSON lines on stderr, optional shipping to
//! Loki), the shutdown signal (SIGTERM or Ctrl-C) and the `--healthcheck` probe that images
//! without a shell run against their own `/health`.

use std::time::Duration;

use anyhow::Context;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};
use url::Url;

/// How log lines are written to stderr. Parsed from `text` or `json` with `FromStr` (so a
/// clap argument works without the `cli` feature); `cli` adds `clap::ValueEnum` for
/// `#[arg(value_enum)]` and the listed choices in `--help`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line (for log collectors).
    Json,
}

impl LogFormat {
    /// The name accepted by `FromStr` and written by `Display`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Json => "json",
        }
    }
}

impl std::fmt::Display for LogFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A log format name other than `text` and `json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownLogFormat(String);

impl std::fmt::Display for UnknownLogFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "unknown log format `{}` (use `text` or `json`)", self.0)
    }
}

impl std::error::Error for UnknownLogFormat {}

impl std::str::FromStr for LogFormat {
    type Err = UnknownLogFormat;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        [Self::Text, Self::Json]
            .into_iter()
            .find(|format| format.as_str().eq_ignore_ascii_case(name))
            .ok_or_else(|| UnknownLogFormat(name.to_owned()))
    }
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
        LogFormat::Text => text_layer(std::io::stderr, colour_stderr()).boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_ansi(false)
            .with_writer(std::io::stderr)
            .boxed(),
    };
    let (loki_layer, loki) = match loki_url {
        None => (None, None),
        Some(url) => {
            let host = host_name();
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

/// Whether log lines on stderr get terminal colours: only when stderr is a terminal and
/// `NO_COLOR` is unset (<https://no-color.org>). A file, a pipe, `docker logs` or
/// `./scripts/stack`'s `.stack/logs/*.log` get plain text, never escape codes.
pub fn colour_stderr() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Plain text lines in which no value can start a line of its own: a label or group key with a
/// CR or LF in it (from a webhook) would otherwise forge a log line. Control characters are
/// written escaped (`\n`, `\r`, `\t`, `\u{1b}`); JSON logs escape them already. Colours
/// (levels, field names) only with `ansi`: see [`colour_stderr`].
pub fn text_layer<S, W>(writer: W, ansi: bool) -> impl Layer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    use tracing_subscriber::field::MakeExt;
    let fields = tracing_subscriber::fmt::format::debug_fn(|w, field, value| {
        let raw = format!("{value:?}");
        let text = escape_controls(&raw);
        if field.name() == "message" {
            write!(w, "{text}")
        } else {
            write!(w, "{}={text}", field.name())
        }
    })
    .delimited(" ");
    tracing_subscriber::fmt::layer()
        .fmt_fields(fields)
        .with_ansi(ansi)
        .with_writer(writer)
}

/// `text` with every control character written as an escape.
pub fn escape_controls(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&c.escape_unicode().to_string()),
            c => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

/// The machine's name for the `host` label: the kernel's on Linux (what `hostname` prints, in
/// this process's UTS namespace: the container's name in a container), else `HOSTNAME` or
/// `COMPUTERNAME`, else `unknown`. Read here rather than through `sysinfo`, which only the
/// binary's host metrics need.
fn host_name() -> String {
    #[cfg(target_os = "linux")]
    if let Ok(name) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        let name = name.trim();
        if !name.is_empty() {
            return name.to_owned();
        }
    }
    ["HOSTNAME", "COMPUTERNAME"]
        .into_iter()
        .find_map(|key| std::env::var(key).ok().filter(|name| !name.is_empty()))
        .unwrap_or_else(|| "unknown".into())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_format_parses_its_own_names_and_refuses_others() {
        for format in [LogFormat::Text, LogFormat::Json] {
            assert_eq!(format.to_string().parse::<LogFormat>(), Ok(format));
        }
        assert_eq!("JSON".parse::<LogFormat>(), Ok(LogFormat::Json));
        let error = "yaml".parse::<LogFormat>().expect_err("not a format");
        assert_eq!(
            error.to_string(),
            "unknown log format `yaml` (use `text` or `json`)"
        );
    }

    #[test]
    fn host_name_is_never_empty() {
        assert!(!host_name().is_empty());
    }
}
