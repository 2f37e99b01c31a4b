//! The dead man's switch with a real Alertmanager sending the Watchdog: while heartbeats flow
//! nobody is paged; when Alertmanager dies the relay pages `HeartbeatMissing`; when heartbeats
//! come back the page is resolved.

use std::time::Duration;

use serde_json::json;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread")]
async fn a_silent_alertmanager_pages_and_its_return_resolves() {
    let ntfy = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_string(r#"{"id":"x"}"#))
        .mount(&ntfy)
        .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let audit = dir.path().join("audit.log");
    let policy = dir.path().join("policy.yml");
    std::fs::write(
        &policy,
        policy_yaml(&ntfy.uri(), "1h")
            .replace(
                "targets:\n",
                &format!("targets:\n  log:\n    audit: {{path: \"{}\"}}\n", audit.display()),
            )
            .replace(
                "policies:\n",
                "policies:\n  - name: heartbeat\n    matchers: ['alertname=\"Watchdog\"']\n    heartbeat: {missing_after: 3s}\n    steps:\n      - {after: 0s, notify: [log.audit]}\n    send_resolved: false\n",
            ),
    )
    .expect("write");
    let relay = TestRelay::start(&policy, &dir.path().join("data"), None).await;

    // Alertmanager repeats the Watchdog every second to /webhook/heartbeat.
    let am = start_alertmanager(&format!(
        "route:\n  receiver: relay-heartbeat\n  group_by: [alertname]\n  group_wait: 0s\n  group_interval: 1s\n  repeat_interval: 1s\nreceivers:\n  - name: relay-heartbeat\n    webhook_configs:\n      - url: {}/webhook/heartbeat\n        send_resolved: false\n        http_config:\n          authorization: {{type: Bearer, credentials: {TOKEN}}}\n",
        relay.url
    ))
    .await;
    let response = reqwest::Client::new()
        .post(format!("{}/api/v2/alerts", am.url))
        .json(&json!([{
            "labels": {"alertname": "Watchdog", "severity": "none"},
            "annotations": {"runbook_url": "https://runbooks.test/docs/runbooks/Watchdog.md"},
        }]))
        .send()
        .await
        .expect("post the Watchdog");
    assert!(response.status().is_success());
    eventually("repeated heartbeats", Duration::from_secs(15), || async {
        relay
            .metric(r#"relay_webhooks_received_total{outcome="duplicate"}"#)
            .await
            .filter(|n| *n >= 3.0)
    })
    .await;
    let last_seen = relay
        .metric(r#"relay_heartbeat_last_seen_timestamp_seconds{policy="heartbeat"}"#)
        .await
        .expect("heartbeat gauge");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64();
    assert!(
        (now - last_seen).abs() < 5.0,
        "last seen {last_seen}, now {now}"
    );
    // Heartbeats for longer than `missing_after` (3s; one a second): nobody paged.
    eventually(
        "heartbeats for longer than missing_after",
        Duration::from_secs(15),
        || async {
            relay
                .metric(r#"relay_webhooks_received_total{outcome="duplicate"}"#)
                .await
                .filter(|n| *n >= 8.0)
        },
    )
    .await;
    assert!(
        pushes(&ntfy).await.is_empty(),
        "paged while heartbeats were arriving"
    );

    // Alertmanager dies: within missing_after (+ the watcher's second) the primary is paged.
    drop(am);
    let page = eventually(
        "a HeartbeatMissing page",
        Duration::from_secs(10),
        || async { pushes(&ntfy).await.into_iter().next() },
    )
    .await;
    let text = page.to_string();
    assert!(
        text.contains("No heartbeat from Alertmanager for 3s"),
        "{page}"
    );
    assert_eq!(page["topic"], "oncall-primary");
    assert_eq!(page["priority"], 5, "critical");
    let runbook = page["actions"]
        .as_array()
        .and_then(|a| a.iter().find(|a| a["label"] == "Runbook"))
        .map(|a| a["url"].clone());
    assert_eq!(
        runbook,
        Some("https://runbooks.test/docs/runbooks/Watchdog.md".into()),
        "the Watchdog's runbook: {page}"
    );
    // The on-call view lists the HeartbeatMissing incident, not the Watchdog's own (open by
    // design, it would sit on top of every listing).
    let (_, listing) = relay.get("/api/v1/incidents", Some(TOKEN)).await;
    let names: Vec<&str> = listing["incidents"]
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|i| i["common_labels"]["alertname"].as_str())
        .collect();
    assert_eq!(names, ["HeartbeatMissing"], "{listing}");

    // A heartbeat again: the page is resolved (same sequence id), and nothing else is sent.
    let mut beat = webhook("Watchdog", "firing");
    beat["commonLabels"]["severity"] = "none".into();
    let (status, _) = relay
        .post("/webhook/heartbeat", Some(TOKEN), beat.to_string())
        .await;
    assert_eq!(status, 200);
    let all = wait_pushes(&ntfy, 2).await;
    assert_eq!(all[1]["sequence_id"], page["sequence_id"]);
    assert!(
        all[1].to_string().to_lowercase().contains("resolved"),
        "{}",
        all[1]
    );
    let listing = relay.settled(Duration::from_secs(3600)).await;
    assert_eq!(
        listing["incidents"],
        serde_json::json!([]),
        "HeartbeatMissing is closed"
    );
    assert_eq!(pushes(&ntfy).await.len(), 2);
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn heartbeat_missing_escalates_the_whole_chain_while_alertmanager_knows_nothing_of_it() {
    // Alertmanager is up (the relay asks it about silences) but its route to the relay is
    // broken: no heartbeat arrives. HeartbeatMissing must page the primary, then the secondary.
    let am = start_alertmanager("route:\n  receiver: none\nreceivers:\n  - name: none\n").await;
    let ntfy = fake_vendor(200).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = dir.path().join("policy.yml");
    std::fs::write(
        &policy,
        policy_yaml(&ntfy.uri(), "1s")
            .replace(
                "  max_body_bytes:",
                &format!("  alertmanager_url: {}\n  max_body_bytes:", am.url),
            )
            .replace(
                "policies:\n",
                "policies:\n  - name: heartbeat\n    matchers: ['alertname=\"Watchdog\"']\n    heartbeat: {missing_after: 1s}\n    steps:\n      - {after: 0s, notify: [ntfy.primary]}\n    send_resolved: false\n",
            ),
    )
    .expect("write");
    let relay = TestRelay::start(&policy, &dir.path().join("data"), None).await;
    let pushed = wait_pushes(&ntfy, 2).await;
    let topics: Vec<&str> = pushed.iter().filter_map(|p| p["topic"].as_str()).collect();
    assert_eq!(
        topics,
        vec!["oncall-primary", "oncall-secondary"],
        "{pushed:#?}"
    );
    assert!(pushed.iter().all(|p| p["title"]
        .as_str()
        .is_some_and(|t| t.contains("HeartbeatMissing"))));
    let labels: Vec<&str> = pushed[0]["actions"]
        .as_array()
        .expect("actions")
        .iter()
        .filter_map(|a| a["label"].as_str())
        .collect();
    assert!(
        !labels.contains(&"Silence"),
        "a silence in Alertmanager could not stop it: {labels:?}"
    );
    assert_eq!(
        relay
            .metric(r#"relay_escalations_stopped_total{reason="silenced"}"#)
            .await,
        Some(0.0)
    );
    drop(am);
}
