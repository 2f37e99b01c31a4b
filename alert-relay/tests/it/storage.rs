//! Storage faults: a second relay on the same directory, a damaged file, unreadable rows, a
//! full store. Each is a clear error or a quarantined row, never a silent outage.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use alert_relay::config::Config;
use alert_relay::server::Relay;
use alert_relay::store::SqliteStore;
use rusqlite::Connection;

use crate::helpers::*;

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_addr() -> String {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .to_string()
}

fn serve(policy: &Path, data: &Path, addr: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_alert-relay"))
        .arg("serve")
        .arg("--config")
        .arg(policy)
        .arg("--data-dir")
        .arg(data)
        .args(["--listen", addr])
        .env_remove("LOKI_URL")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start alert-relay")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_relay_on_the_same_directory_refuses_to_start_and_names_the_first() {
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = write_policy(dir.path(), "http://127.0.0.1:9", "1h");
    let data = dir.path().join("data");
    let addr = free_addr();
    let first = Running(serve(&policy, &data, &addr));
    wait_ok(&format!("http://{addr}/ready"), Duration::from_secs(10)).await;
    let second = serve(&policy, &data, &free_addr())
        .wait_with_output()
        .expect("the second exits");
    assert_eq!(second.status.code(), Some(1));
    let error = String::from_utf8_lossy(&second.stderr);
    assert!(
        error.contains("in use by another alert-relay")
            && error.contains(&format!("pid {}", first.0.id())),
        "{error}"
    );
    drop(first); // SIGKILL: the kernel releases the lock with the process.
    let addr = free_addr();
    let _again = Running(serve(&policy, &data, &addr));
    wait_ok(&format!("http://{addr}/ready"), Duration::from_secs(10)).await;
}

#[test]
fn a_damaged_database_is_a_clear_error_at_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = write_policy(dir.path(), "http://127.0.0.1:9", "1h");
    let data = dir.path().join("data");
    {
        let store = SqliteStore::open(&data).expect("create");
        // Enough rows for several pages, so that a page in the middle can be damaged.
        store
            .with_connection(|c| {
                c.execute_batch(
                    "CREATE TABLE filler (x TEXT); WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000) INSERT INTO filler SELECT hex(randomblob(100)) FROM n; PRAGMA wal_checkpoint(TRUNCATE);",
                )?;
                Ok(())
            })
            .expect("fill");
    }
    let file = data.join("relay.db");
    let mut bytes = std::fs::read(&file).expect("read");
    assert!(bytes.len() > 16 * 4096, "{}", bytes.len());
    for b in &mut bytes[8 * 4096..9 * 4096] {
        *b = 0xA5;
    }
    std::fs::write(&file, bytes).expect("damage");
    let output = relay_command([
        "serve".as_ref(),
        "--config".as_ref(),
        policy.as_os_str(),
        "--data-dir".as_ref(),
        data.as_os_str(),
        "--listen".as_ref(),
        free_addr().as_ref(),
    ]);
    assert_eq!(output.status.code(), Some(1));
    let error = String::from_utf8_lossy(&output.stderr);
    assert!(
        error.contains("is damaged") && error.contains("restore"),
        "{error}"
    );
}

/// Replaces incident `id`'s stored state with bytes that are not its JSON.
fn damage_incident(data: &Path, id: i64) {
    let conn = Connection::open(data.join("relay.db")).expect("open");
    conn.execute(
        "UPDATE incidents SET machine = '{not json' WHERE id = ?1",
        [id],
    )
    .expect("damage");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreadable_incident_is_quarantined_and_the_others_escalate() {
    let ntfy = fake_vendor(200).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = write_policy(dir.path(), &ntfy.uri(), "1s");
    let data = dir.path().join("data");
    let relay = TestRelay::start(&policy, &data, None).await;
    relay.webhook(&webhook("Broken", "firing")).await;
    wait_pushes(&ntfy, 1).await;
    damage_incident(&data, 1);
    relay.webhook(&webhook("Healthy", "firing")).await;
    // Incident 2 reaches its second step although incident 1 was due first and is unreadable.
    let pushed = wait_pushes(&ntfy, 3).await;
    let secondary: Vec<&str> = pushed
        .iter()
        .filter(|p| p["topic"] == "oncall-secondary")
        .filter_map(|p| p["title"].as_str())
        .collect();
    assert_eq!(secondary, vec!["[critical] Healthy"], "{pushed:#?}");
    let (status, letters) = relay.get("/api/v1/dead-letters", Some(TOKEN)).await;
    assert_eq!(status, 200);
    let quarantined = letters["quarantined_incidents"].as_array().expect("list");
    assert_eq!(quarantined.len(), 1, "{letters}");
    assert_eq!(quarantined[0]["incident_id"], 1);
    assert!(quarantined[0]["reason"]
        .as_str()
        .expect("reason")
        .contains("incidents row 1 cannot be read"));
    let (status, _) = relay.get("/api/v1/incidents", Some(TOKEN)).await;
    assert_eq!(status, 200, "the listing works around it");
    assert_eq!(
        relay
            .metric(r#"relay_quarantined_rows_total{table="incidents"}"#)
            .await,
        Some(1.0)
    );
    // A new firing of the broken group pages again, as a new incident.
    relay.webhook(&webhook("Broken", "firing")).await;
    let pushed = wait_pushes(&ntfy, 4).await;
    assert_eq!(pushed[3]["sequence_id"], "relay-3", "{pushed:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreadable_notification_is_dead_lettered_and_its_queue_goes_on() {
    let vendor = crate::fakes::Recovering::default();
    let ntfy = wiremock::MockServer::start().await;
    wiremock::Mock::given(wiremock::matchers::method("POST"))
        .respond_with(vendor.clone())
        .mount(&ntfy)
        .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = write_policy(dir.path(), &ntfy.uri(), "1h");
    let data = dir.path().join("data");
    let relay = TestRelay::start(&policy, &data, None).await;
    relay.webhook(&webhook("First", "firing")).await;
    relay.webhook(&webhook("Second", "firing")).await;
    wait_pushes(&ntfy, 1).await;
    Connection::open(data.join("relay.db"))
        .expect("open")
        .execute("UPDATE outbox SET payload = 'garbage' WHERE id = 1", [])
        .expect("damage");
    // The damaged row is taken out at the queue's next attempt (an attempt in flight when it
    // was damaged gets a 503 and only records its retry).
    let letters = relay.wait_dead_letters().await;
    assert!(letters[0]["reason"]
        .as_str()
        .expect("reason")
        .contains("outbox row 1 cannot be read"));
    let before = posts(&ntfy).await.len();
    vendor.recover();
    let pushed = eventually("the next page", Duration::from_secs(10), || async {
        let all = pushes(&ntfy).await;
        (all.len() > before).then(|| all[before..].to_vec())
    })
    .await;
    assert_eq!(
        pushed[0]["title"], "[critical] Second",
        "the next page goes out"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_store_is_not_ready_and_refuses_webhooks_with_a_5xx() {
    let ntfy = fake_vendor(200).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = write_policy(dir.path(), &ntfy.uri(), "1h");
    let config = Config::parse(
        &std::fs::read_to_string(&policy).expect("read"),
        &policy,
        &|_| None,
    )
    .expect("config");
    let data = dir.path().join("data");
    let store = Arc::new(SqliteStore::open(&data).expect("store"));
    let relay = Relay::builder(config, &data)
        .store(Arc::clone(&store) as _)
        .build()
        .expect("relay");
    let relay = TestRelay::serve(relay).await;
    wait_ok(&format!("{}/ready", relay.url), Duration::from_secs(5)).await;
    // The database may not grow any more: SQLite's "database or disk is full".
    store
        .with_connection(|c| {
            let pages: i64 = c.query_row("PRAGMA page_count", [], |r| r.get(0))?;
            c.pragma_update(None, "max_page_count", pages)?;
            Ok(())
        })
        .expect("pragma");
    let ready = reqwest::get(format!("{}/ready", relay.url))
        .await
        .expect("ready");
    assert_eq!(ready.status(), 503, "not ready while nothing can be stored");
    let (status, _) = relay.webhook(&big_webhook()).await;
    assert_eq!(status, 503, "Alertmanager retries a 5xx");
    store
        .with_connection(|c| Ok(c.pragma_update(None, "max_page_count", 1_000_000)?))
        .expect("pragma");
    wait_ok(&format!("{}/ready", relay.url), Duration::from_secs(5)).await;
    let (status, _) = relay.webhook(&big_webhook()).await;
    assert_eq!(status, 200);
}

/// A webhook whose rows need new pages.
fn big_webhook() -> serde_json::Value {
    let mut w = webhook("Full", "firing");
    w["commonAnnotations"]["description"] = "d".repeat(20_000).into();
    w
}

#[tokio::test(flavor = "multi_thread")]
async fn an_old_ack_link_does_not_acknowledge_a_new_incident_after_the_store_was_reset() {
    let ntfy = fake_vendor(200).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = write_policy(dir.path(), &ntfy.uri(), "1h");
    let data = dir.path().join("data");
    let relay = TestRelay::start_self_linked(&policy, &data).await;
    relay.webhook(&webhook("Before", "firing")).await;
    let old_link = wait_pushes(&ntfy, 1).await[0]["actions"][1]["url"]
        .as_str()
        .expect("ack link")
        .to_owned();
    relay.shutdown().await;
    // The store is lost (or restored from an old backup); the ack key file is kept.
    for file in ["relay.db", "relay.db-wal", "relay.db-shm"] {
        let _ = std::fs::remove_file(data.join(file));
    }
    let relay = TestRelay::start_self_linked(&policy, &data).await;
    relay.webhook(&webhook("After", "firing")).await;
    let pushed = wait_pushes(&ntfy, 2).await;
    assert_eq!(
        pushed[1]["sequence_id"], "relay-1",
        "the new incident has the old one's id"
    );
    let old_link = old_link.replace(
        &old_link[..old_link.find("/ack/").expect("path")],
        &relay.url,
    );
    let answer = reqwest::Client::new()
        .post(&old_link)
        .send()
        .await
        .expect("ack");
    assert_eq!(
        answer.status(),
        404,
        "bound to the old incident's key, not its id"
    );
    let (_, listing) = relay.get("/api/v1/incidents", Some(TOKEN)).await;
    assert_eq!(listing["incidents"][0]["state"], "escalating", "{listing}");
}
