//! A relay running in-process on a free port, a fake ntfy, and webhook payloads.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use alert_relay::config::Config;
use alert_relay::server::{self, Relay};
use serde_json::{json, Value};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

pub const TOKEN: &str = "test-webhook-token-0123456789";

/// A policy: critical pages `primary` at once and `secondary` after `second_after`.
pub fn policy_yaml(ntfy: &str, second_after: &str) -> String {
    format!(
        r#"
server:
  public_url: ${{PUBLIC_URL:-http://127.0.0.1:1}}
  webhook_auth:
    bearer_token: "{TOKEN}"
  ack_secret: "an-ack-secret-of-sufficient-length"
  max_body_bytes: 65536
delivery:
  timeout: 2s
  initial_backoff: 100ms
  max_backoff: 400ms
  give_up_after: 1h
targets:
  ntfy:
    primary: {{url: "{ntfy}", topic: oncall-primary, token: tk_e2e}}
    secondary: {{url: "{ntfy}", topic: oncall-secondary, token: tk_e2e}}
policies:
  - name: critical
    matchers: ['severity="critical"']
    steps:
      - after: 0s
        notify: [ntfy.primary]
      - after: {second_after}
        notify: [ntfy.secondary]
"#
    )
}

/// [`policy_yaml`] whose secondary points at a port where nothing listens.
pub fn policy_with_dead_secondary(ntfy: &str, second_after: &str) -> String {
    policy_yaml(ntfy, second_after).replace(
        &format!(r#"secondary: {{url: "{ntfy}""#),
        r#"secondary: {url: "http://127.0.0.1:9""#,
    )
}

pub fn write_policy(dir: &Path, ntfy: &str, second_after: &str) -> PathBuf {
    let path = dir.join("policy.yml");
    std::fs::write(&path, policy_yaml(ntfy, second_after)).expect("write policy");
    path
}

/// The relay served in this test's runtime; dropped = shut down.
pub struct TestRelay {
    pub url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl TestRelay {
    /// The shipped-like policy paging `ntfy` (secondary after 1 h), state under `dir`.
    pub async fn paging(ntfy: &MockServer, dir: &Path) -> Self {
        let policy = write_policy(dir, &ntfy.uri(), "1h");
        Self::start(&policy, &dir.join("data"), None).await
    }

    pub async fn start(policy: &Path, data_dir: &Path, public_url: Option<&str>) -> Self {
        let text = std::fs::read_to_string(policy).expect("policy");
        let public = public_url.map(str::to_owned);
        let config = Config::parse(&text, policy, &move |name| {
            (name == "PUBLIC_URL").then(|| public.clone()).flatten()
        })
        .unwrap_or_else(|e| panic!("{e}"));
        let relay = Relay::new(config, data_dir)
            .expect("relay")
            .with_config_path(policy);
        Self::serve(relay).await
    }

    /// Starts on a chosen public URL: binds first so the ack links point at itself.
    pub async fn start_self_linked(policy: &Path, data_dir: &Path) -> Self {
        Self::start_self_linked_with(policy, data_dir, server::Options::default()).await
    }

    /// [`TestRelay::start_self_linked`] serving what `options` adds (the runbooks).
    pub async fn start_self_linked_with(
        policy: &Path,
        data_dir: &Path,
        options: server::Options,
    ) -> Self {
        Self::start_self_linked_on(policy, data_dir, options, None).await
    }

    /// [`TestRelay::start_self_linked_with`] on `store` (SQLite in `data_dir` when `None`).
    pub async fn start_self_linked_on(
        policy: &Path,
        data_dir: &Path,
        options: server::Options,
        store: Option<std::sync::Arc<dyn alert_relay::store::Store>>,
    ) -> Self {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = probe.local_addr().expect("addr");
        drop(probe);
        let text = std::fs::read_to_string(policy).expect("policy");
        let public = format!("http://{addr}/");
        let config = Config::parse(&text, policy, &move |name| {
            (name == "PUBLIC_URL").then(|| public.clone())
        })
        .unwrap_or_else(|e| panic!("{e}"));
        let mut builder = Relay::builder(config, data_dir);
        if let Some(store) = store {
            builder = builder.store(store);
        }
        let relay = builder.build().expect("relay").with_config_path(policy);
        let listener = tokio::net::TcpListener::bind(addr).await.expect("rebind");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server::run_with(listener, relay, options, async {
            let _ = stopped.await;
        }));
        Self {
            url: format!("http://{addr}"),
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("join").expect("clean shutdown");
        }
    }

    pub async fn post(
        &self,
        path: &str,
        token: Option<&str>,
        body: impl Into<reqwest::Body>,
    ) -> (u16, Value) {
        let mut request = reqwest::Client::new()
            .post(format!("{}{path}", self.url))
            .body(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        let body = response.json().await.unwrap_or(Value::Null);
        (status, body)
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        let mut request = reqwest::Client::new().get(format!("{}{path}", self.url));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Waits until `GET /api/v1/dead-letters` lists something, and returns the list.
    pub async fn wait_dead_letters(&self) -> Vec<Value> {
        eventually("a dead letter", Duration::from_secs(5), || async {
            let (_, body) = self.get("/api/v1/dead-letters", Some(TOKEN)).await;
            body["dead_letters"]
                .as_array()
                .filter(|letters| !letters.is_empty())
                .cloned()
        })
        .await
    }

    /// Waits until the relay can send nothing more soon: no notification waiting for any open
    /// incident, and no step due within `quiet`. Counting what a vendor received is then final
    /// (for that long), without sleeping to "see that nothing happens".
    pub async fn settled(&self, quiet: Duration) -> Value {
        eventually("a settled relay", Duration::from_secs(10), || async {
            let (status, listing) = self.get("/api/v1/incidents", Some(TOKEN)).await;
            let now = humantime::parse_rfc3339(listing["now"].as_str()?).ok()?;
            let calm = listing["incidents"].as_array()?.iter().all(|i| {
                let waiting = i["waiting"].as_array().is_some_and(|w| w.is_empty());
                let next_far = i["next_step"]["at"]
                    .as_str()
                    .and_then(|at| humantime::parse_rfc3339(at).ok())
                    .is_none_or(|at| at > now + quiet);
                waiting && next_far
            });
            (status == 200 && calm).then_some(listing)
        })
        .await
    }

    pub async fn webhook(&self, payload: &Value) -> (u16, Value) {
        self.post("/webhook", Some(TOKEN), payload.to_string())
            .await
    }

    pub async fn metric(&self, series: &str) -> Option<f64> {
        let text = reqwest::get(format!("{}/metrics", self.url))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        text.lines()
            .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }
}

impl Drop for TestRelay {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// An Alertmanager v4 webhook for one alert.
pub fn webhook(alertname: &str, status: &str) -> Value {
    json!({
        "version": "4",
        "groupKey": format!("{{}}:{{alertname=\"{alertname}\"}}"),
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "relay",
        "groupLabels": {"alertname": alertname},
        "commonLabels": {"alertname": alertname, "severity": "critical", "service": "gateway"},
        "commonAnnotations": {
            "summary": "The gateway answers too many requests with 5xx.",
            "runbook_url": format!("https://runbooks.test/docs/runbooks/{alertname}.md")
        },
        "externalURL": "http://alertmanager.test:9093",
        "alerts": [{
            "status": status,
            "labels": {"alertname": alertname, "severity": "critical", "service": "gateway"},
            "annotations": {},
            "startsAt": "2026-11-01T03:00:00Z",
            "endsAt": if status == "firing" { "0001-01-01T00:00:00Z" } else { "2026-11-01T03:20:00Z" },
            "generatorURL": "http://prometheus.test:9090/graph",
            "fingerprint": "fp-1"
        }]
    })
}

/// A fake vendor answering every POST with `status`, recording each request; for 200, a
/// fake ntfy as strict as ntfy (`fakes::StrictNtfy`).
pub async fn fake_vendor(status: u16) -> MockServer {
    if status == 200 {
        return scripted_vendor(Vec::new()).await;
    }
    scripted_vendor(vec![(ResponseTemplate::new(status), u64::MAX)]).await
}

/// A fake vendor giving each answer for its number of POSTs, in order, then answering the
/// rest as strictly as ntfy would.
pub async fn scripted_vendor(answers: Vec<(ResponseTemplate, u64)>) -> MockServer {
    let server = MockServer::start().await;
    let last = u8::try_from(answers.len()).expect("a short script") + 1;
    for ((answer, times), priority) in answers.into_iter().zip(1u8..) {
        Mock::given(method("POST"))
            .respond_with(answer)
            .up_to_n_times(times)
            .with_priority(priority)
            .mount(&server)
            .await;
    }
    Mock::given(method("POST"))
        .respond_with(crate::fakes::StrictNtfy)
        .with_priority(last)
        .mount(&server)
        .await;
    server
}

/// The JSON bodies POSTed to the fake ntfy, oldest first (its healthcheck GETs are not pushes).
pub async fn pushes(server: &MockServer) -> Vec<Value> {
    posts(server)
        .await
        .iter()
        .filter_map(|r| serde_json::from_slice(&r.body).ok())
        .collect()
}

/// The POST requests a fake vendor received, oldest first.
pub async fn posts(server: &MockServer) -> Vec<wiremock::Request> {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.method == http::Method::POST)
        .collect()
}

/// Polls `check` every 20 ms until it gives `Some` or `limit` passes.
pub async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs the `alert-relay` binary with `args` to completion (blocking).
pub fn relay_command<I, A>(args: I) -> std::process::Output
where
    I: IntoIterator<Item = A>,
    A: AsRef<std::ffi::OsStr>,
{
    std::process::Command::new(env!("CARGO_BIN_EXE_alert-relay"))
        .args(args)
        .output()
        .expect("run alert-relay")
}

/// The standard output of a command that must have succeeded (its stderr otherwise).
pub fn success_stdout(output: &std::process::Output) -> String {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Waits until `url` answers 200 (a server starting up).
pub async fn wait_ok(url: &str, limit: Duration) {
    eventually(&format!("200 from {url}"), limit, || async {
        reqwest::get(url)
            .await
            .ok()
            .filter(|r| r.status() == 200)
            .map(|_| ())
    })
    .await;
}

/// Waits until the fake ntfy holds `n` pushes and returns them.
pub async fn wait_pushes(server: &MockServer, n: usize) -> Vec<Value> {
    eventually(&format!("{n} pushes"), Duration::from_secs(10), || async {
        let got = pushes(server).await;
        (got.len() >= n).then_some(got)
    })
    .await
}

/// A real Alertmanager (Debian's prometheus-alertmanager) on a free port; killed when dropped.
pub struct Alertmanager {
    child: std::process::Child,
    pub url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts Alertmanager with `config` (YAML; `{dir}` is replaced by its data directory).
pub async fn start_alertmanager(config: &str) -> Alertmanager {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("am.yml");
    std::fs::write(
        &file,
        config.replace("{dir}", &dir.path().display().to_string()),
    )
    .expect("write");
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    let child = std::process::Command::new("prometheus-alertmanager")
        .arg(format!("--config.file={}", file.display()))
        .arg(format!("--storage.path={}", dir.path().display()))
        .arg(format!("--web.listen-address={addr}"))
        .arg("--cluster.listen-address=")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("prometheus-alertmanager (installed by the test command)");
    let url = format!("http://{addr}");
    wait_ok(&format!("{url}/-/ready"), Duration::from_secs(20)).await;
    Alertmanager {
        child,
        url,
        _dir: dir,
    }
}

impl TestRelay {
    /// Serves an already built relay (tests that keep a handle on its store, or on the relay
    /// itself to drive its use cases).
    pub async fn serve(relay: impl Into<std::sync::Arc<Relay>>) -> Self {
        let relay: std::sync::Arc<Relay> = relay.into();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server::run(listener, relay, async {
            let _ = stopped.await;
        }));
        Self {
            url,
            stop: Some(stop),
            task: Some(task),
        }
    }
}
