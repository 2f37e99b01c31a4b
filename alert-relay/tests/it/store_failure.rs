//! A store that cannot write: the relay answers 5xx, Alertmanager (the real one) retries, and
//! nothing is lost once the store works again.

use std::time::Duration;

use std::sync::Arc;

use alert_relay::config::Config;
use alert_relay::server::Relay;
use alert_relay::store::SqliteStore;
use serde_json::json;

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread")]
async fn an_unwritable_store_gets_503_and_alertmanagers_retry_delivers_later() {
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

    // The disk "fills up": every write fails from now on.
    store
        .with_connection(|c| Ok(c.pragma_update(None, "query_only", true)?))
        .expect("pragma");
    let (status, answer) = relay.webhook(&webhook("Direct", "firing")).await;
    assert_eq!(status, 503, "{answer}");
    assert_eq!(answer["error"], "could not store the webhook; retry later");
    let ready = reqwest::get(format!("{}/ready", relay.url))
        .await
        .expect("ready");
    assert_eq!(
        ready.status(),
        503,
        "not ready while the store cannot write"
    );

    // The real Alertmanager sends to the relay, gets 503, and keeps the notification.
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, TOKEN).expect("token");
    let am = start_alertmanager(&format!(
        "route:\n  receiver: relay\n  group_by: [alertname]\n  group_wait: 0s\n  group_interval: 1s\n  repeat_interval: 1h\n\
         receivers:\n  - name: relay\n    webhook_configs:\n      - url: {}/webhook\n        http_config:\n          authorization:\n            credentials_file: {}\n",
        relay.url,
        token_file.display()
    ))
    .await;
    let alert = json!([{"labels": {"alertname": "DiskFull", "severity": "critical"}, "annotations": {"summary": "disk full"}}]);
    let posted = reqwest::Client::new()
        .post(format!("{}/api/v2/alerts", am.url))
        .json(&alert)
        .send()
        .await
        .expect("alert");
    assert!(posted.status().is_success());
    eventually(
        "alertmanager to be refused",
        Duration::from_secs(15),
        || async {
            relay
                .metric(r#"relay_webhooks_received_total{outcome="store_error"}"#)
                .await
                .filter(|v| *v >= 2.0)
        },
    )
    .await;
    assert!(
        pushes(&ntfy).await.is_empty(),
        "nothing was stored, so nothing was sent"
    );

    // The disk is freed: Alertmanager's next attempt is stored and paged.
    store
        .with_connection(|c| Ok(c.pragma_update(None, "query_only", false)?))
        .expect("pragma");
    let pushed = eventually(
        "the page after recovery",
        Duration::from_secs(20),
        || async {
            let p = pushes(&ntfy).await;
            (!p.is_empty()).then_some(p)
        },
    )
    .await;
    assert!(pushed[0]["title"]
        .as_str()
        .expect("title")
        .contains("DiskFull"));
    drop(am);
}
