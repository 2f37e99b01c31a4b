//! Real `alert-relay serve` processes on one PostgreSQL database (directly or through a
//! [`crate::proxy::Proxy`]), killed, hung (SIGSTOP) and resumed (SIGCONT) by pid, and what
//! the tests ask them over HTTP.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use alert_relay::store::postgres::scratch::ScratchDatabase;
use alert_relay::store::{self, Mode, PostgresStore};
use serde_json::Value;

use crate::helpers::*;

/// One `alert-relay serve` process with its own data directory, logging to a file. Dropped:
/// resumed if stopped, then killed, so that no stopped process is left behind.
pub struct Replica {
    pub name: &'static str,
    child: Child,
    pub url: String,
    log: PathBuf,
    stopped: bool,
}

impl Drop for Replica {
    fn drop(&mut self) {
        if self.stopped {
            let _ = signal(self.child.id(), "-CONT");
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends `signal` (`-STOP`, `-CONT`) to `pid` with kill(1).
fn signal(pid: u32, signal: &str) -> bool {
    Command::new("kill")
        .arg(signal)
        .arg(pid.to_string())
        .status()
        .is_ok_and(|s| s.success())
}

impl Replica {
    /// A replica on the scratch database `db`.
    pub async fn start(
        name: &'static str,
        policy: &Path,
        dir: &Path,
        db: &ScratchDatabase,
    ) -> Self {
        Self::start_at(name, policy, dir, &db.url().to_string()).await
    }

    /// A replica on the database at `url` (a proxy's, a private server's), its sessions
    /// named `relay-<name>` in `pg_stat_activity`; returns once it is ready.
    pub async fn start_at(name: &'static str, policy: &Path, dir: &Path, url: &str) -> Self {
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr");
        let log = dir.join(format!("{name}.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_alert-relay"))
            .arg("serve")
            .args(["--database-url", &named(url, name)])
            .args(["--listen", &addr.to_string()])
            .arg("--data-dir")
            .arg(dir.join(name))
            .arg("--config")
            .arg(policy)
            .env_remove("LOKI_URL")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("start alert-relay");
        let url = format!("http://{addr}");
        wait_ok(&format!("{url}/ready"), Duration::from_secs(20)).await;
        Self {
            name,
            child,
            url,
            log,
            stopped: false,
        }
    }

    /// The `application_name` of its database sessions.
    pub fn session_name(&self) -> String {
        format!("relay-{}", self.name)
    }

    /// The process id (a delivery lease's holder names it).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, and reaped: no shutdown of any kind.
    pub fn kill_9(&mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reaped");
    }

    /// SIGSTOP: the process hangs where it is, its connections open.
    pub fn stop(&mut self) {
        assert!(signal(self.child.id(), "-STOP"), "SIGSTOP {}", self.name);
        self.stopped = true;
    }

    /// SIGCONT: it goes on from where it was stopped.
    pub fn cont(&mut self) {
        assert!(signal(self.child.id(), "-CONT"), "SIGCONT {}", self.name);
        self.stopped = false;
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Log lines saying that `what` happened for `target`.
    pub fn logged(&self, what: &str, target: &str) -> usize {
        self.log()
            .lines()
            .filter(|l| l.contains(what) && l.contains(target))
            .count()
    }

    pub async fn webhook(&self, payload: &Value) -> u16 {
        reqwest::Client::new()
            .post(format!("{}/webhook", self.url))
            .bearer_auth(TOKEN)
            .body(payload.to_string())
            .send()
            .await
            .expect("webhook")
            .status()
            .as_u16()
    }

    /// The webhook's status, or `None` without an answer within `limit` (or no connection).
    pub async fn webhook_within(&self, payload: &Value, limit: Duration) -> Option<u16> {
        reqwest::Client::new()
            .post(format!("{}/webhook", self.url))
            .bearer_auth(TOKEN)
            .body(payload.to_string())
            .timeout(limit)
            .send()
            .await
            .ok()
            .map(|r| r.status().as_u16())
    }

    /// `GET /ready`'s status, or `None` without an answer within `limit`.
    pub async fn ready_within(&self, limit: Duration) -> Option<u16> {
        reqwest::Client::new()
            .get(format!("{}/ready", self.url))
            .timeout(limit)
            .send()
            .await
            .ok()
            .map(|r| r.status().as_u16())
    }

    /// The open incidents `GET /api/v1/incidents` lists (up to 1,000).
    pub async fn incidents(&self) -> Option<Vec<Value>> {
        let answer = reqwest::Client::new()
            .get(format!("{}/api/v1/incidents?limit=1000", self.url))
            .bearer_auth(TOKEN)
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .ok()?;
        let listing = answer.json::<Value>().await.ok()?;
        listing["incidents"].as_array().cloned()
    }

    /// `GET /api/v1/incidents` shows nothing waiting to be sent and no step still to come.
    pub async fn settled(&self) -> bool {
        self.incidents().await.is_some_and(|all| {
            all.iter().all(|i| {
                i["waiting"].as_array().is_some_and(Vec::is_empty) && i["next_step"].is_null()
            })
        })
    }

    /// The sum of the series of `/metrics` named `name` whose line contains `having` (a
    /// label, or `""` for all).
    pub async fn metric_sum(&self, name: &str, having: &str) -> f64 {
        let text = reqwest::Client::new()
            .get(format!("{}/metrics", self.url))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics text");
        text.lines()
            .filter(|l| {
                l.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with(['{', ' ']))
                    && l.contains(having)
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

/// `url` with the replica's name as its `application_name`, to tell in `pg_stat_activity`
/// which replica a session belongs to.
fn named(url: &str, name: &str) -> String {
    let mut url = url::Url::parse(url).expect("a URL");
    url.query_pairs_mut()
        .append_pair("application_name", &format!("relay-{name}"));
    url.to_string()
}

/// Sends `payload` to every replica at once; each must store it.
pub async fn to_all(replicas: &[Replica], payload: &Value) {
    let sends = replicas.iter().map(|r| r.webhook(payload));
    for status in futures_util::future::join_all(sends).await {
        assert_eq!(status, 200, "every replica acknowledges the webhook");
    }
}

/// Waits until the database holds nothing left to send for `open` open incidents.
pub async fn all_sent(db: &ScratchDatabase, open: i64) {
    let store = PostgresStore::open(db.url()).expect("the checker's store");
    eventually("every page recorded", Duration::from_secs(30), || async {
        store::run(&store, Mode::Read, |tx| tx.counts())
            .ok()
            .filter(|c| c.pending == 0 && c.open == open)
    })
    .await;
}

/// The pushes by (topic, sequence id).
pub fn by_step(pushes: &[Value]) -> BTreeMap<(String, String), usize> {
    let mut steps = BTreeMap::new();
    for p in pushes {
        let key = (
            p["topic"].as_str().expect("a topic").to_owned(),
            p["sequence_id"].as_str().expect("a sequence id").to_owned(),
        );
        *steps.entry(key).or_insert(0) += 1;
    }
    steps
}
