//! Load generator for the relay benchmarks (scripts/bench/). Not part of the product.
//!
//! - `intake`: webhooks at a fixed rate (open loop, latency measured from the scheduled send
//!   time, so a stall is not hidden), or as fast as `--connections` allow with `--rate 0`.
//! - `e2e`: webhooks at a fixed rate while acting as the ntfy server; reports the time from
//!   sending a webhook to receiving its push.
//! - `storm`: `--groups` webhooks carrying `--alerts` alerts in all within `--within`, then
//!   waits for every page.
//! - `trivial`: serves `POST /webhook` answering 200 at once (the physical floor).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};

fn arg(args: &[String], name: &str, default: &str) -> String {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
        .unwrap_or_else(|| default.to_owned())
}

/// Offset of the alert names (`--start`), so that repeated runs against one relay create new
/// incidents instead of refreshing old ones.
static START: AtomicU64 = AtomicU64::new(0);

fn webhook(n: u64, alerts: usize) -> Value {
    let name = format!("Load{}", n + START.load(Ordering::Relaxed));
    let alerts: Vec<Value> = (0..alerts)
        .map(|i| {
            json!({
                "status": "firing",
                "labels": {"alertname": name, "severity": "critical", "instance": format!("host-{i}")},
                "annotations": {"summary": "load test"},
                "startsAt": "2026-11-01T00:00:00Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus/graph",
                "fingerprint": format!("{n:08x}{i:08x}")
            })
        })
        .collect();
    json!({
        "version": "4", "groupKey": format!("{{}}:{{alertname=\"{name}\"}}"), "status": "firing",
        "receiver": "relay", "groupLabels": {"alertname": name},
        "commonLabels": {"alertname": name, "severity": "critical"},
        "commonAnnotations": {"summary": "load test"}, "externalURL": "http://am:9093",
        "truncatedAlerts": 0, "alerts": alerts
    })
}

#[derive(Default)]
struct Stats {
    latencies_us: Mutex<Vec<u64>>,
    errors: AtomicU64,
}

impl Stats {
    fn report(&self, label: &str, elapsed: Duration) -> Value {
        let mut l = self.latencies_us.lock().expect("lock").clone();
        l.sort_unstable();
        let pct = |p: f64| {
            l.get(((l.len() as f64 * p).ceil() as usize).saturating_sub(1))
                .copied()
                .unwrap_or(0) as f64
                / 1000.0
        };
        let out = json!({
            "mode": label,
            "requests": l.len(),
            "errors": self.errors.load(Ordering::Relaxed),
            "seconds": elapsed.as_secs_f64(),
            "rate_per_s": l.len() as f64 / elapsed.as_secs_f64(),
            "p50_ms": pct(0.50), "p90_ms": pct(0.90), "p99_ms": pct(0.99), "max_ms": pct(1.0),
        });
        println!("{out}");
        out
    }
}

async fn send(client: &reqwest::Client, url: &str, token: &str, body: String) -> bool {
    match client
        .post(url)
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
    {
        Ok(r) => r.status().is_success(),
        Err(_) => false,
    }
}

/// Fixed-rate open loop for `duration`; `make(n)` gives the n-th body.
async fn open_loop(
    url: &str,
    token: &str,
    rate: f64,
    duration: Duration,
    alerts: usize,
    stats: Arc<Stats>,
    sent_at: Option<Arc<Mutex<HashMap<u64, Instant>>>>,
) -> Duration {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()
        .expect("client");
    let start = Instant::now();
    let total = (rate * duration.as_secs_f64()) as u64;
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..total {
        let due = start + Duration::from_secs_f64(n as f64 / rate);
        tokio::time::sleep_until(due.into()).await;
        let (client, url, token, stats, sent_at) = (
            client.clone(),
            url.to_owned(),
            token.to_owned(),
            Arc::clone(&stats),
            sent_at.clone(),
        );
        let body = webhook(n, alerts).to_string();
        tasks.spawn(async move {
            if let Some(map) = &sent_at {
                map.lock().expect("lock").insert(n, due);
            }
            let ok = send(&client, &url, &token, body).await;
            let us = due.elapsed().as_micros() as u64;
            if ok {
                stats.latencies_us.lock().expect("lock").push(us)
            } else {
                stats.errors.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    start.elapsed()
}

/// Closed loop: `connections` workers sending back to back for `duration`.
async fn closed_loop(
    url: &str,
    token: &str,
    connections: usize,
    duration: Duration,
    stats: Arc<Stats>,
) -> Duration {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(connections)
        .build()
        .expect("client");
    let counter = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..connections {
        let (client, url, token, stats, counter) = (
            client.clone(),
            url.to_owned(),
            token.to_owned(),
            Arc::clone(&stats),
            Arc::clone(&counter),
        );
        tasks.spawn(async move {
            while start.elapsed() < duration {
                let n = counter.fetch_add(1, Ordering::Relaxed);
                let began = Instant::now();
                let ok = send(&client, &url, &token, webhook(n, 1).to_string()).await;
                if ok {
                    stats
                        .latencies_us
                        .lock()
                        .expect("lock")
                        .push(began.elapsed().as_micros() as u64)
                } else {
                    stats.errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    start.elapsed()
}

/// A fake ntfy recording when each page (by its `Load<n>` title) arrived.
async fn fake_ntfy(listen: SocketAddr) -> Arc<Mutex<HashMap<u64, Instant>>> {
    let arrivals: Arc<Mutex<HashMap<u64, Instant>>> = Arc::default();
    let seen = Arc::clone(&arrivals);
    let app = Router::new().route(
        "/",
        post(move |body: axum::body::Bytes| {
            let seen = Arc::clone(&seen);
            async move {
                let now = Instant::now();
                if let Ok(v) = serde_json::from_slice::<Value>(&body) {
                    let title = v["title"].as_str().unwrap_or("");
                    if let Some(n) = title
                        .split("Load")
                        .nth(1)
                        .and_then(|t| t.split(|c: char| !c.is_ascii_digit()).next())
                        .and_then(|d| d.parse().ok())
                    {
                        let n: u64 = n;
                        seen.lock()
                            .expect("lock")
                            .entry(n.saturating_sub(START.load(Ordering::Relaxed)))
                            .or_insert(now);
                    }
                }
                "{}"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .expect("bind ntfy");
    tokio::spawn(async move { axum::serve(listener, app).await });
    arrivals
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mode = args.get(1).cloned().unwrap_or_default();
    let url = arg(&args, "--url", "http://127.0.0.1:9465/webhook");
    let token = arg(&args, "--token", "");
    let rate: f64 = arg(&args, "--rate", "500").parse().expect("--rate");
    let duration =
        Duration::from_secs_f64(arg(&args, "--duration", "10").parse().expect("--duration"));
    let stats = Arc::new(Stats::default());
    START.store(
        arg(&args, "--start", "0").parse().expect("--start"),
        Ordering::Relaxed,
    );
    match mode.as_str() {
        "intake" => {
            let elapsed = if rate > 0.0 {
                open_loop(&url, &token, rate, duration, 1, Arc::clone(&stats), None).await
            } else {
                let connections = arg(&args, "--connections", "32").parse().expect("--connections");
                closed_loop(&url, &token, connections, duration, Arc::clone(&stats)).await
            };
            stats.report("intake", elapsed);
        }
        "e2e" => {
            let listen: SocketAddr = arg(&args, "--ntfy-listen", "127.0.0.1:18090").parse().expect("--ntfy-listen");
            let arrivals = fake_ntfy(listen).await;
            let sent = Arc::new(Mutex::new(HashMap::new()));
            let elapsed = open_loop(&url, &token, rate, duration, 1, Arc::clone(&stats), Some(Arc::clone(&sent))).await;
            let expected = sent.lock().expect("lock").len();
            let deadline = Instant::now() + Duration::from_secs(30);
            while arrivals.lock().expect("lock").len() < expected && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let e2e = Stats::default();
            {
                let sent = sent.lock().expect("lock");
                let arrivals = arrivals.lock().expect("lock");
                let mut l = e2e.latencies_us.lock().expect("lock");
                for (n, at) in arrivals.iter() {
                    if let Some(s) = sent.get(n) {
                        l.push(at.duration_since(*s).as_micros() as u64);
                    }
                }
                e2e.errors.store((expected - l.len()) as u64, Ordering::Relaxed);
            }
            stats.report("e2e-intake", elapsed);
            e2e.report("e2e-webhook-to-push", elapsed);
        }
        "storm" => {
            let listen: SocketAddr = arg(&args, "--ntfy-listen", "127.0.0.1:18090").parse().expect("--ntfy-listen");
            let groups: u64 = arg(&args, "--groups", "1000").parse().expect("--groups");
            let alerts: usize = arg(&args, "--alerts", "5000").parse().expect("--alerts");
            let arrivals = fake_ntfy(listen).await;
            let per_group = (alerts as u64 / groups).max(1) as usize;
            let rate = groups as f64 / duration.as_secs_f64();
            let elapsed = open_loop(&url, &token, rate, duration, per_group, Arc::clone(&stats), None).await;
            stats.report("storm-intake", elapsed);
            let started = Instant::now();
            let deadline = started + Duration::from_secs(120);
            while (arrivals.lock().expect("lock").len() as u64) < groups && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let got = arrivals.lock().expect("lock").len();
            println!("{}", json!({"mode": "storm-pages", "expected": groups, "received": got, "lost": groups as i64 - got as i64, "drain_seconds_after_last_webhook": started.elapsed().as_secs_f64()}));
        }
        "trivial" => {
            let listen: SocketAddr = arg(&args, "--listen", "127.0.0.1:19465").parse().expect("--listen");
            let app = Router::new().route("/webhook", post(|_body: axum::body::Bytes| async { "{\"status\":\"ok\"}" }));
            let listener = tokio::net::TcpListener::bind(listen).await.expect("bind");
            axum::serve(listener, app).await.expect("serve");
        }
        _ => eprintln!("usage: loadgen intake|e2e|storm|trivial [--url U] [--token T] [--rate R] [--duration S] ..."),
    }
}
