//! What reaches ntfy, when, and what happens when ntfy misbehaves.

use std::time::{Duration, Instant};

use alert_relay::store::{self, Mode, SqliteStore};
use serde_json::Value;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread")]
async fn a_critical_alert_pages_the_primary_with_the_exact_request() {
    let ntfy = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/"))
        .and(header("authorization", "Bearer tk_e2e"))
        .and(header("content-type", "application/json"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&ntfy)
        .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = write_policy(dir.path(), &ntfy.uri(), "1h");
    let relay = TestRelay::start(
        &policy,
        &dir.path().join("data"),
        Some("https://relay.test"),
    )
    .await;
    let started = Instant::now();
    relay
        .webhook(&webhook("GatewayHighErrorRate", "firing"))
        .await;
    let push = wait_pushes(&ntfy, 1).await.remove(0);
    let latency = started.elapsed();
    assert!(latency < Duration::from_secs(5), "{latency:?}");

    assert_eq!(push["topic"], "oncall-primary");
    assert_eq!(push["priority"], 5);
    assert_eq!(push["title"], "[critical] GatewayHighErrorRate");
    assert_eq!(
        push["click"], "https://relay.test/incidents/1",
        "tapping the push opens the incident in the console"
    );
    assert_eq!(push["sequence_id"], "relay-1");
    assert_eq!(push["tags"], serde_json::json!(["rotating_light"]));
    let actions = push["actions"].as_array().expect("actions");
    assert_eq!(actions.len(), 3);
    assert_eq!(actions[0]["label"], "Runbook");
    assert_eq!(actions[1]["label"], "Acknowledge");
    assert_eq!(actions[1]["action"], "http");
    assert_eq!(actions[1]["method"], "POST");
    assert!(actions[1]["url"]
        .as_str()
        .expect("url")
        .starts_with("https://relay.test/ack/"));
    assert_eq!(
        actions[2]["url"],
        "http://alertmanager.test:9093/#/silences/new?filter=%7Balertname%3D%22GatewayHighErrorRate%22%7D"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_next_step_fires_on_time_and_resolve_updates_the_push() {
    let ntfy = fake_vendor(200).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = write_policy(dir.path(), &ntfy.uri(), "1s");
    let relay = TestRelay::start(&policy, &dir.path().join("data"), None).await;
    let started = Instant::now();
    relay.webhook(&webhook("GatewayDown", "firing")).await;
    let pushed = wait_pushes(&ntfy, 2).await;
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(900),
        "secondary paged too early: {elapsed:?}"
    );
    assert_eq!(pushed[1]["topic"], "oncall-secondary");

    relay.webhook(&webhook("GatewayDown", "resolved")).await;
    let pushed = wait_pushes(&ntfy, 4).await;
    let resolved: Vec<&Value> = pushed[2..].iter().collect();
    let mut topics: Vec<&str> = resolved
        .iter()
        .map(|p| p["topic"].as_str().expect("topic"))
        .collect();
    topics.sort_unstable();
    assert_eq!(
        topics,
        vec!["oncall-primary", "oncall-secondary"],
        "everyone paged hears the resolve"
    );
    for push in resolved {
        assert_eq!(push["sequence_id"], "relay-1", "replaces the page");
        assert!(push["title"]
            .as_str()
            .expect("title")
            .starts_with("RESOLVED "));
        assert_eq!(push["priority"], 2);
    }
    assert_eq!(
        relay
            .metric(r#"relay_escalations_stopped_total{reason="resolved"}"#)
            .await,
        Some(1.0)
    );
    // A new firing after the resolve is a new incident.
    relay.webhook(&webhook("GatewayDown", "firing")).await;
    let pushed = wait_pushes(&ntfy, 5).await;
    assert_eq!(pushed[4]["sequence_id"], "relay-2");
}

#[tokio::test(flavor = "multi_thread")]
async fn acknowledging_stops_escalation_and_links_work_once() {
    let ntfy = fake_vendor(200).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = write_policy(dir.path(), &ntfy.uri(), "1s");
    let relay = TestRelay::start_self_linked(&policy, &dir.path().join("data")).await;
    relay.webhook(&webhook("GatewayDown", "firing")).await;
    let page = wait_pushes(&ntfy, 1).await.remove(0);
    let ack_url = page["actions"][1]["url"]
        .as_str()
        .expect("ack url")
        .to_owned();
    let answer = reqwest::Client::new()
        .post(&ack_url)
        .send()
        .await
        .expect("ack");
    assert_eq!(answer.status(), 200);
    // The primary hears it is acknowledged; the secondary is never paged.
    let pushed = wait_pushes(&ntfy, 2).await;
    assert_eq!(pushed[1]["topic"], "oncall-primary");
    assert!(pushed[1]["title"]
        .as_str()
        .expect("title")
        .starts_with("ACK "));
    let listing = relay.settled(Duration::from_secs(3600)).await;
    assert_eq!(
        listing["incidents"][0]["state"], "acknowledged",
        "{listing}"
    );
    assert!(listing["incidents"][0]["next_step"].is_null(), "{listing}");
    assert_eq!(
        pushes(&ntfy).await.len(),
        2,
        "no escalation after the acknowledge"
    );

    let replay = reqwest::Client::new()
        .post(&ack_url)
        .send()
        .await
        .expect("replay");
    assert_eq!(replay.status(), 409);
    let forged = ack_url.replace('A', "B");
    let forged = reqwest::Client::new()
        .post(&forged)
        .send()
        .await
        .expect("forged");
    assert!(
        matches!(forged.status().as_u16(), 403),
        "{}",
        forged.status()
    );
    let api = reqwest::Client::new()
        .post(format!("{}/api/v1/incidents/1/ack", relay.url))
        .send()
        .await
        .expect("api");
    assert_eq!(api.status(), 401, "the API needs credentials");
    assert_eq!(
        relay
            .metric(r#"relay_escalations_stopped_total{reason="acknowledged"}"#)
            .await,
        Some(1.0)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn retries_on_503_and_429_then_delivers() {
    let ntfy = scripted_vendor(vec![
        (ResponseTemplate::new(503), 2),
        (
            ResponseTemplate::new(429).insert_header("retry-after", "1"),
            1,
        ),
    ])
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let relay = TestRelay::paging(&ntfy, dir.path()).await;
    relay.webhook(&webhook("GatewayDown", "firing")).await;
    wait_pushes(&ntfy, 4).await;
    let requests = posts(&ntfy).await;
    assert_eq!(
        requests[3].body, requests[0].body,
        "a retry sends the same message"
    );
    assert_eq!(
        eventually("delivered", Duration::from_secs(5), || async {
            relay
                .metric(r#"relay_notifications_total{outcome="delivered",target="ntfy.primary"}"#)
                .await
                .filter(|v| *v >= 1.0)
        })
        .await,
        1.0
    );
    assert_eq!(
        relay
            .metric(r#"relay_notifications_total{outcome="retried",target="ntfy.primary"}"#)
            .await,
        Some(3.0)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn retry_after_is_honoured() {
    let ntfy = scripted_vendor(vec![(
        ResponseTemplate::new(429).insert_header("retry-after", "1"),
        1,
    )])
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let relay = TestRelay::paging(&ntfy, dir.path()).await;
    relay.webhook(&webhook("GatewayDown", "firing")).await;
    wait_pushes(&ntfy, 1).await;
    let first = Instant::now();
    wait_pushes(&ntfy, 2).await;
    assert!(
        first.elapsed() >= Duration::from_millis(900),
        "retried after {:?}, before Retry-After",
        first.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn gives_up_on_400_and_dead_letters_once() {
    let ntfy = fake_vendor(400).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let relay = TestRelay::paging(&ntfy, dir.path()).await;
    relay.webhook(&webhook("GatewayDown", "firing")).await;
    let dead = eventually("dead letter", Duration::from_secs(5), || async {
        relay
            .metric(r#"relay_dead_letters_total{target="ntfy.primary"}"#)
            .await
            .filter(|v| *v >= 1.0)
    })
    .await;
    assert_eq!(dead, 1.0);
    relay.settled(Duration::from_secs(60)).await;
    assert_eq!(
        pushes(&ntfy).await.len(),
        1,
        "a permanent error is not retried"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_vendor_does_not_block_intake() {
    // Nothing listens on the ntfy port: every delivery fails, intake still answers at once.
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = write_policy(dir.path(), "http://127.0.0.1:9", "1h");
    let relay = TestRelay::start(&policy, &dir.path().join("data"), None).await;
    for i in 0..20 {
        let started = Instant::now();
        let (status, _) = relay
            .webhook(&webhook(&format!("Alert{i}"), "firing"))
            .await;
        assert_eq!(status, 200);
        assert!(started.elapsed() < Duration::from_secs(1));
    }
    let retried = eventually("retries", Duration::from_secs(5), || async {
        relay
            .metric(r#"relay_notifications_total{outcome="retried",target="ntfy.primary"}"#)
            .await
            .filter(|v| *v >= 2.0)
    })
    .await;
    assert!(retried >= 2.0);
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_lets_a_delivery_in_progress_finish_and_records_it() {
    let ntfy = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_millis(800)))
        .mount(&ntfy)
        .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let relay = TestRelay::paging(&ntfy, dir.path()).await;
    relay.webhook(&webhook("GatewayDown", "firing")).await;
    // The push has reached ntfy, whose answer is 800 ms away, when the stop comes.
    wait_pushes(&ntfy, 1).await;
    let stopping = Instant::now();
    relay.shutdown().await;
    assert!(
        stopping.elapsed() >= Duration::from_millis(500),
        "shutdown returned after {:?}, before ntfy answered",
        stopping.elapsed()
    );

    let store = SqliteStore::open(&dir.path().join("data")).expect("store");
    let counts = store::run(&store, Mode::Read, |tx| tx.counts()).expect("counts");
    let (pending, open) = (counts.pending, counts.open);
    assert_eq!(
        pending, 0,
        "the answered push is recorded as delivered, so a restart does not send it again"
    );
    assert_eq!(open, 1);
    assert_eq!(pushes(&ntfy).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_cannot_claim_an_acknowledgement_made_in_the_console_or_by_a_link() {
    let ntfy = fake_vendor(200).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = write_policy(dir.path(), &ntfy.uri(), "1h");
    let relay = TestRelay::start(&policy, &dir.path().join("data"), None).await;
    relay.webhook(&webhook("GatewayDown", "firing")).await;
    wait_pushes(&ntfy, 1).await;
    for by in ["alice (console)", "ack link"] {
        let answer = reqwest::Client::new()
            .post(format!("{}/api/v1/incidents/1/ack", relay.url))
            .bearer_auth(TOKEN)
            .header("x-acknowledged-by", by)
            .send()
            .await
            .expect("ack");
        assert_eq!(answer.status(), 400, "{by}");
    }
    let (_, listing) = relay.get("/api/v1/incidents", Some(TOKEN)).await;
    assert_ne!(
        listing["incidents"][0]["state"], "acknowledged",
        "{listing}"
    );
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn new_alerts_joining_an_acknowledged_incident_page_those_already_paged() {
    let ntfy = fake_vendor(200).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = write_policy(dir.path(), &ntfy.uri(), "1h");
    let relay = TestRelay::start(&policy, &dir.path().join("data"), None).await;
    relay
        .webhook(&webhook("HostDiskAlmostFull", "firing"))
        .await;
    wait_pushes(&ntfy, 1).await;
    let answer = reqwest::Client::new()
        .post(format!("{}/api/v1/incidents/1/ack", relay.url))
        .bearer_auth(TOKEN)
        .header("x-acknowledged-by", "alice")
        .send()
        .await
        .expect("ack");
    assert_eq!(answer.status(), 200);
    let ack = wait_pushes(&ntfy, 2).await.remove(1);
    assert!(
        ack["message"]
            .as_str()
            .is_some_and(|m| m.contains("Acknowledged by alice")),
        "the ack notice says who: {ack}"
    );
    // Two more hosts join the group: Alertmanager's next webhook carries three alerts.
    let mut three = webhook("HostDiskAlmostFull", "firing");
    let first = three["alerts"][0].clone();
    let more: Vec<Value> = (1..=3)
        .map(|i| {
            let mut a = first.clone();
            a["fingerprint"] = format!("fp-{i}").into();
            a["labels"]["instance"] = format!("host-{i}").into();
            a
        })
        .collect();
    three["alerts"] = more.into();
    let (_, answer) = relay.webhook(&three).await;
    assert_eq!(
        answer["status"], "refreshed",
        "the same incident; escalation not restarted"
    );
    let news = wait_pushes(&ntfy, 3).await.remove(2);
    assert_eq!(news["topic"], "oncall-primary");
    assert_eq!(news["priority"], 5, "a page, not a quiet update");
    assert!(
        news["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("2 new alerts joined since alice acknowledged.")),
        "{news}"
    );
    // The same three again: nothing new, nothing sent.
    relay.webhook(&three).await;
    let listing = relay.settled(Duration::from_secs(60)).await;
    assert_eq!(
        listing["incidents"][0]["state"], "acknowledged",
        "{listing}"
    );
    assert_eq!(pushes(&ntfy).await.len(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_forgotten_acknowledgement_runs_out_and_pages_the_chain_again() {
    let ntfy = fake_vendor(200).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = dir.path().join("policy.yml");
    std::fs::write(
        &policy,
        policy_yaml(&ntfy.uri(), "1h").replace("    steps:\n", "    ack_timeout: 2s\n    steps:\n"),
    )
    .expect("write");
    let relay = TestRelay::start(&policy, &dir.path().join("data"), None).await;
    relay.webhook(&webhook("GatewayDown", "firing")).await;
    wait_pushes(&ntfy, 1).await;
    let acked = Instant::now();
    reqwest::Client::new()
        .post(format!("{}/api/v1/incidents/1/ack", relay.url))
        .bearer_auth(TOKEN)
        .header("x-acknowledged-by", "bob")
        .send()
        .await
        .expect("ack");
    let (_, listing) = relay.get("/api/v1/incidents", Some(TOKEN)).await;
    assert_eq!(listing["incidents"][0]["state"], "acknowledged");
    assert_eq!(
        listing["incidents"][0]["next_step"]["targets"],
        serde_json::json!(["ntfy.primary"]),
        "the listing shows when the ack runs out: {listing}"
    );
    let again = wait_pushes(&ntfy, 3).await.remove(2);
    assert!(
        acked.elapsed() >= Duration::from_millis(1900),
        "not before the timeout"
    );
    assert_eq!(again["topic"], "oncall-primary");
    assert_eq!(again["sequence_id"], "relay-1", "the same incident");
    assert!(
        again["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("Acknowledged by bob") && m.contains("escalating again")),
        "{again}"
    );
    let (_, listing) = relay.get("/api/v1/incidents", Some(TOKEN)).await;
    assert_eq!(listing["incidents"][0]["state"], "escalating", "{listing}");
}
