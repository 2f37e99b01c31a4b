//! The relay with its state in PostgreSQL: the real binary (`serve --database-url`) pages
//! end to end, survives `kill -9`, and keeps nothing in the data directory but the key;
//! two relays on one database send each page once.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use alert_relay::config::Config;
use alert_relay::store::postgres::scratch::ScratchDatabase;
use alert_relay::store::{self, Claim, Mode, PostgresStore, Store};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, Respond, ResponseTemplate};

use crate::helpers::*;

struct Relay {
    child: Child,
    url: String,
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `serve` on `db`, the password given by a file (the test server trusts loopback, so it
/// is not checked there: the unit tests check that the driver gets it).
async fn start(policy: &std::path::Path, data: &std::path::Path, db: &ScratchDatabase) -> Relay {
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    let password = data.with_extension("password");
    std::fs::write(&password, "not-in-the-url\n").expect("password file");
    let child = Command::new(env!("CARGO_BIN_EXE_alert-relay"))
        .arg("serve")
        .arg("--config")
        .arg(policy)
        .arg("--data-dir")
        .arg(data)
        .args(["--listen", &addr.to_string()])
        .env("RELAY_DATABASE_URL", db.url().to_string())
        .env("RELAY_DATABASE_PASSWORD_FILE", &password)
        .env_remove("LOKI_URL")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start alert-relay");
    let url = format!("http://{addr}");
    wait_ok(&format!("{url}/ready"), Duration::from_secs(20)).await;
    Relay { child, url }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_webhook_pages_end_to_end_on_postgres_and_survives_kill_9() {
    let Some(db) = ScratchDatabase::create() else {
        return;
    };
    let ntfy = fake_vendor(200).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = write_policy(dir.path(), &ntfy.uri(), "2s");
    let data = dir.path().join("data");

    let mut relay = start(&policy, &data, &db).await;
    let answer = reqwest::Client::new()
        .post(format!("{}/webhook", relay.url))
        .bearer_auth(TOKEN)
        .body(webhook("GatewayDown", "firing").to_string())
        .send()
        .await
        .expect("webhook");
    assert_eq!(answer.status(), 200, "acknowledged once stored");
    let first = wait_pushes(&ntfy, 1).await;
    assert_eq!(first[0]["topic"], "oncall-primary");
    // The incident and its delivered first page are in PostgreSQL, not in a file beside the
    // relay. (Killed before recording the delivery, it would send the page again, with the
    // same sequence id: waiting for the record keeps the count below exact.)
    let store = PostgresStore::open(db.url()).expect("the checker's store");
    eventually(
        "the first page recorded",
        Duration::from_secs(10),
        || async {
            store::run(&store, Mode::Read, |tx| tx.counts())
                .ok()
                .filter(|c| c.pending == 0 && c.open == 1)
        },
    )
    .await;
    assert!(!data.join("relay.db").exists(), "no SQLite file: {data:?}");
    relay.child.kill().expect("SIGKILL");
    relay.child.wait().expect("reaped");

    // A new process on the same database fires the second step when it is due.
    let mut relay = start(&policy, &data, &db).await;
    let both = wait_pushes(&ntfy, 2).await;
    assert_eq!(both[1]["topic"], "oncall-secondary");
    assert!(
        relay.child.try_wait().expect("status").is_none(),
        "still serving"
    );
    let listed: serde_json::Value = reqwest::Client::new()
        .get(format!("{}/api/v1/incidents", relay.url))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("incidents")
        .json()
        .await
        .expect("JSON");
    let incidents = listed["incidents"].as_array().expect("a list");
    assert_eq!(
        incidents.len(),
        1,
        "the same incident, not a new one: {listed}"
    );
    drop(relay);
}

#[test]
fn a_bad_database_url_stops_serve_at_once_with_a_fix_and_no_password() {
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = write_policy(dir.path(), "http://127.0.0.1:9", "1h");
    let serve = |url: &str| {
        Command::new(env!("CARGO_BIN_EXE_alert-relay"))
            .arg("serve")
            .arg("--config")
            .arg(&policy)
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["--listen", "127.0.0.1:0", "--database-url", url])
            .env_remove("LOKI_URL")
            .output()
            .expect("run alert-relay")
    };
    let wrong = serve("mysql://relay:s3cret@db/relay");
    let stderr = String::from_utf8_lossy(&wrong.stderr);
    assert_eq!(wrong.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("must start with postgres://"), "{stderr}");
    assert!(!stderr.contains("s3cret"), "{stderr}");

    let unreachable = serve("postgres://relay:s3cret@127.0.0.1:1/relay");
    let stderr = String::from_utf8_lossy(&unreachable.stderr);
    assert_eq!(unreachable.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cannot connect to PostgreSQL"), "{stderr}");
    assert!(!stderr.contains("s3cret"), "{stderr}");
    assert!(
        !dir.path().join("data").join("relay.db").exists(),
        "never falls back to SQLite"
    );
}

/// ntfy, as strict as ever, taking a while to answer: both relays' workers reach the head
/// of the queue while a page to it is still on its way.
struct SlowNtfy(Duration);

impl Respond for SlowNtfy {
    fn respond(&self, request: &wiremock::Request) -> ResponseTemplate {
        crate::fakes::StrictNtfy.respond(request).set_delay(self.0)
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn two_relays_on_one_database_send_each_page_once() {
    let Some(db) = ScratchDatabase::create() else {
        return;
    };
    let ntfy = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(SlowNtfy(Duration::from_millis(100)))
        .mount(&ntfy)
        .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = write_policy(dir.path(), &ntfy.uri(), "1h");
    let text = std::fs::read_to_string(&policy).expect("policy");
    let mut relays = Vec::new();
    for name in ["a", "b"] {
        let config = Config::parse(&text, &policy, &|_| None).unwrap_or_else(|e| panic!("{e}"));
        let relay = alert_relay::server::Relay::builder(config, &dir.path().join(name))
            .store(Arc::new(db.open()))
            .build()
            .expect("relay");
        relays.push(TestRelay::serve(relay).await);
    }
    // Webhooks to both, so that both relays' workers deliver the one queue at once.
    const INCIDENTS: usize = 12;
    for i in 0..INCIDENTS {
        let (status, body) = relays[i % 2]
            .webhook(&webhook(&format!("Alert{i}"), "firing"))
            .await;
        assert_eq!(status, 200, "{body}");
    }
    let store = db.open();
    eventually("every page sent", Duration::from_secs(30), || async {
        store::run(&store, Mode::Read, |tx| tx.counts())
            .ok()
            .filter(|c| c.pending == 0 && c.open == INCIDENTS as i64)
    })
    .await;
    // Recorded as sent: nothing more goes out from here, so the count is final.
    let pushes = pushes(&ntfy).await;
    let mut ids: Vec<&str> = pushes
        .iter()
        .map(|p| p["sequence_id"].as_str().expect("a sequence id"))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(
        (pushes.len(), ids.len()),
        (INCIDENTS, INCIDENTS),
        "each page once: {ids:?}"
    );
    for relay in relays {
        relay.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_delivery_step_dropped_halfway_gives_its_claim_back() {
    let Some(db) = ScratchDatabase::create() else {
        return;
    };
    let ntfy = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(SlowNtfy(Duration::from_secs(1)))
        .mount(&ntfy)
        .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = write_policy(dir.path(), &ntfy.uri(), "1h");
    let text = std::fs::read_to_string(&policy).expect("policy");
    let config = Config::parse(&text, &policy, &|_| None).unwrap_or_else(|e| panic!("{e}"));
    let relay = alert_relay::server::Relay::builder(config, &dir.path().join("data"))
        .store(Arc::new(db.open()))
        .build()
        .expect("relay");
    let now = alert_relay::domain::Timestamp::now();
    let body = webhook("GatewayDown", "firing").to_string();
    let group = alert_relay::server::webhook::parse(body.as_bytes()).expect("group");
    relay.ingest(None, group, now).await.expect("ingest");
    let worker = relay
        .workers()
        .into_iter()
        .find(|w| w.target.as_str() == "ntfy.primary")
        .expect("the primary's worker");
    // Cut while the vendor is still answering: the step never reaches its end.
    let cut = tokio::time::timeout(Duration::from_millis(300), relay.deliver_next(&worker, now));
    assert!(cut.await.is_err(), "the vendor answers only after a second");
    let other = PostgresStore::open(db.url()).expect("another relay's store");
    eventually("the claim given back", Duration::from_secs(5), || async {
        matches!(other.claim_target(&worker.target, now), Ok(Claim::Ours(_))).then_some(())
    })
    .await;
}
