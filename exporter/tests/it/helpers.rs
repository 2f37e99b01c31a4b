//! Starting the binaries, waiting with deadlines, scraping, and `promtool`.

use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn free_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr")
}

/// A child process killed when dropped (also when a test fails).
pub struct Proc {
    pub child: Child,
    pub addr: SocketAddr,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "no exit 10s after SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

pub async fn demo_gateway(version: &str) -> Proc {
    let addr = free_addr();
    let child = Command::new(env!("CARGO_BIN_EXE_demo-gateway"))
        .args(["--listen", &addr.to_string(), "--version", version])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start demo-gateway");
    let proc = Proc { child, addr };
    wait_for(&proc.url("/health"), |s, _| s == 200).await;
    proc
}

/// Starts the exporter probing `gateway_url` fast, and waits until it is ready (its first
/// probe round is done).
pub async fn exporter(gateway_url: &str, state_file: &Path, stderr: Stdio) -> Proc {
    let addr = free_addr();
    let child = Command::new(env!("CARGO_BIN_EXE_exporter"))
        .args(["--listen", &addr.to_string(), "--gateway-url", gateway_url])
        .args([
            "--probe-interval",
            "100ms",
            "--probe-timeout",
            "500ms",
            "--host-interval",
            "250ms",
        ])
        .arg("--state-file")
        .arg(state_file)
        .env_remove("LOKI_URL")
        // Colour is decided by stderr alone (a terminal or not), not by the test's shell.
        .env_remove("NO_COLOR")
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("start exporter");
    let proc = Proc { child, addr };
    wait_for(&proc.url("/ready"), |s, _| s == 200).await;
    proc
}

/// Serves `router` on a free port of `ip` (a loopback address) inside the test's runtime;
/// returns its base URL.
pub async fn fake_server_on(ip: &str, router: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind((ip, 0)).await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, router).await });
    format!("http://{addr}")
}

/// Serves `router` on a free port of 127.0.0.1; returns its base URL.
pub async fn fake_server(router: axum::Router) -> String {
    fake_server_on("127.0.0.1", router).await
}

/// Polls the file `path` until it contains `needle` or 10 s pass; returns its text.
pub async fn wait_for_text(path: &Path, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.contains(needle) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for `{needle}` in {}:\n{text}",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn get(url: &str) -> (u16, String) {
    let client = reqwest::Client::new();
    match client.get(url).timeout(Duration::from_secs(5)).send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            (status, response.text().await.unwrap_or_default())
        }
        Err(_) => (0, String::new()),
    }
}

pub async fn post_json(url: &str, body: &str) -> (u16, String) {
    let response = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .expect("request");
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

/// Polls `url` until `done(status, body)` or 10 s pass.
pub async fn wait_for(url: &str, done: impl Fn(u16, &str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = get(url).await;
        if done(status, &body) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting on {url}: last {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn scrape(proc: &Proc) -> String {
    let (status, body) = get(&proc.url("/metrics")).await;
    assert_eq!(status, 200);
    body
}

/// Waits until the exporter's scrape has `series` at `value`.
pub async fn wait_sample(exporter: &Proc, series: &str, value: f64) -> String {
    wait_for(&exporter.url("/metrics"), |_, body| {
        sample(body, series) == Some(value)
    })
    .await
}

/// Waits until `series` (a `probe_duration_seconds` series, new each round) has changed
/// `rounds` times: that many more probe rounds are done.
pub async fn wait_probe_rounds(exporter: &Proc, series: &str, rounds: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = None;
    let mut seen = 0;
    while seen <= rounds {
        let value = sample(&scrape(exporter).await, series);
        if value.is_some() && value != last {
            last = value;
            seen += 1;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {rounds} probe rounds ({series})"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The value of the first sample whose line starts with `series` (name and labels).
pub fn sample(scrape: &str, series: &str) -> Option<f64> {
    scrape
        .lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Runs `promtool check metrics` on a scrape; returns its output on failure.
pub fn promtool_check_metrics(scrape: &str) -> Result<(), String> {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            format!("promtool not runnable ({e}); the test command installs Debian's prometheus")
        })?;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(scrape.as_bytes())
        .expect("write");
    let output = child.wait_with_output().expect("promtool");
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}
