//! What the webhook endpoint answers: credentials, bad bodies, duplicates.

use std::time::Duration;

use wiremock::MockServer;

use crate::helpers::*;

async fn setup() -> (TestRelay, MockServer, tempfile::TempDir) {
    let ntfy = fake_vendor(200).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let relay = TestRelay::paging(&ntfy, dir.path()).await;
    (relay, ntfy, dir)
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_or_wrong_credentials_get_401_and_nothing_is_sent() {
    let (relay, ntfy, _dir) = setup().await;
    let body = webhook("GatewayDown", "firing").to_string();
    let (status, answer) = relay.post("/webhook", None, body.clone()).await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (401, Some("missing or wrong credentials"))
    );
    let (status, answer) = relay
        .post(
            "/webhook",
            Some("test-webhook-token-012345678X"),
            body.clone(),
        )
        .await;
    assert_eq!(status, 401);
    assert!(
        !answer.to_string().contains(TOKEN),
        "the secret must not be echoed"
    );
    let basic = reqwest::Client::new()
        .post(format!("{}/webhook", relay.url))
        .basic_auth("x", Some(TOKEN))
        .body(body)
        .send()
        .await
        .expect("request");
    assert_eq!(basic.status(), 401, "bearer configured: basic is refused");
    let listing = relay.settled(Duration::from_secs(60)).await;
    assert_eq!(
        listing["incidents"],
        serde_json::json!([]),
        "nothing was stored"
    );
    assert!(pushes(&ntfy).await.is_empty());
    assert_eq!(
        relay
            .metric(r#"relay_webhooks_received_total{outcome="unauthorized"}"#)
            .await,
        Some(3.0)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_truncated_and_non_utf8_bodies_get_400_with_a_reason() {
    let (relay, _ntfy, _dir) = setup().await;
    let full = webhook("GatewayDown", "firing").to_string();
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            b"{not json".to_vec(),
            "invalid Alertmanager webhook: key must be a string at line 1 column 2",
        ),
        (
            full.as_bytes()[..full.len() / 2].to_vec(),
            "invalid Alertmanager webhook: EOF while parsing",
        ),
        (
            vec![0xff, 0xfe, 0xfd],
            "invalid Alertmanager webhook: expected value at line 1 column 1",
        ),
        (
            br#"{"version":"4","status":"firing","alerts":[]}"#.to_vec(),
            "invalid Alertmanager webhook: missing field `groupKey`",
        ),
        (
            format!("{{\"deep\":{}{}}}", "[".repeat(20_000), "]".repeat(20_000)).into_bytes(),
            "invalid Alertmanager webhook: ",
        ),
    ];
    for (body, expected) in cases {
        let (status, answer) = relay.post("/webhook", Some(TOKEN), body).await;
        assert_eq!(status, 400, "{answer}");
        let message = answer["error"].as_str().expect("error message");
        assert!(
            message.starts_with(expected),
            "{message} does not start with {expected}"
        );
    }
    assert_eq!(
        relay
            .metric(r#"relay_webhooks_received_total{outcome="bad_request"}"#)
            .await,
        Some(5.0)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_bodies_get_413() {
    let (relay, _ntfy, _dir) = setup().await;
    let mut payload = webhook("GatewayDown", "firing");
    payload["commonAnnotations"]["description"] = "x".repeat(70_000).into();
    let (status, answer) = relay
        .post("/webhook", Some(TOKEN), payload.to_string())
        .await;
    assert_eq!(status, 413);
    assert!(
        answer["error"].as_str().expect("error").contains("65536"),
        "{answer}"
    );
    assert_eq!(
        relay
            .metric(r#"relay_webhooks_received_total{outcome="too_large"}"#)
            .await,
        Some(1.0)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn duplicates_and_repeats_do_not_restart_escalation() {
    let (relay, ntfy, _dir) = setup().await;
    let payload = webhook("GatewayHighErrorRate", "firing");
    assert_eq!(
        relay.webhook(&payload).await,
        (200, serde_json::json!({"status": "started"}))
    );
    // Alertmanager's repeat_interval re-send and an HA twin, one after the other.
    for _ in 0..3 {
        assert_eq!(
            relay.webhook(&payload).await,
            (200, serde_json::json!({"status": "refreshed"}))
        );
    }
    wait_pushes(&ntfy, 1).await;
    let listing = relay.settled(Duration::from_secs(60)).await;
    assert_eq!(
        listing["incidents"].as_array().map(Vec::len),
        Some(1),
        "{listing}"
    );
    assert_eq!(listing["incidents"][0]["steps_fired"], 1, "{listing}");
    assert_eq!(pushes(&ntfy).await.len(), 1, "one page, not four");
    assert_eq!(
        relay
            .metric(r#"relay_webhooks_received_total{outcome="duplicate"}"#)
            .await,
        Some(3.0)
    );
    // A resolve for nothing open is accepted and ignored (late HA duplicate).
    let resolved = webhook("SomethingElse", "resolved");
    assert_eq!(
        relay.webhook(&resolved).await,
        (200, serde_json::json!({"status": "ignored"}))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_policy_in_the_path_is_a_clear_404() {
    let (relay, _ntfy, _dir) = setup().await;
    let (status, answer) = relay
        .post(
            "/webhook/nope",
            Some(TOKEN),
            webhook("X", "firing").to_string(),
        )
        .await;
    assert_eq!(status, 404);
    assert_eq!(
        answer["error"],
        "no policy named `nope` (defined: critical)"
    );
    let (status, _) = relay
        .post(
            "/webhook/critical",
            Some(TOKEN),
            webhook("X", "firing").to_string(),
        )
        .await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn health_ready_and_metrics_answer() {
    let (relay, _ntfy, _dir) = setup().await;
    let health = reqwest::get(format!("{}/health", relay.url))
        .await
        .expect("health");
    assert_eq!(health.status(), 200);
    let ready = reqwest::get(format!("{}/ready", relay.url))
        .await
        .expect("ready");
    assert_eq!(ready.status(), 200);
    let metrics = reqwest::get(format!("{}/metrics", relay.url))
        .await
        .expect("metrics");
    assert_eq!(
        metrics.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = metrics.text().await.expect("text");
    let mut promtool = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (installed by the test command)");
    std::io::Write::write_all(&mut promtool.stdin.take().expect("stdin"), text.as_bytes())
        .expect("write");
    let output = promtool.wait_with_output().expect("promtool");
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
