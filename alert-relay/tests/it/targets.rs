//! Target healthchecks while the relay runs: `relay_target_healthy`, re-checked on an interval.

use std::time::Duration;

use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread")]
async fn target_health_is_measured_at_start_and_rechecked_on_the_interval() {
    // The ntfy server is unhealthy at the first check, healthy from the second on.
    let ntfy = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/health"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&ntfy)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/health"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"healthy": true})))
        .with_priority(2)
        .mount(&ntfy)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/account"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&ntfy)
        .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = dir.path().join("policy.yml");
    std::fs::write(
        &policy,
        policy_with_dead_secondary(&ntfy.uri(), "1h").replace(
            "  give_up_after: 1h\n",
            "  give_up_after: 1h\n  healthcheck_interval: 1s\n",
        ),
    )
    .expect("write");
    let relay = TestRelay::start(&policy, &dir.path().join("data"), None).await;

    let secondary = r#"relay_target_healthy{target="ntfy.secondary"}"#;
    let primary = r#"relay_target_healthy{target="ntfy.primary"}"#;
    eventually(
        "the dead secondary measured",
        Duration::from_secs(5),
        || async { relay.metric(secondary).await.filter(|v| *v == 0.0) },
    )
    .await;
    eventually(
        "the primary healthy after a re-check",
        Duration::from_secs(5),
        || async { relay.metric(primary).await.filter(|v| *v == 1.0) },
    )
    .await;
    let checks = ntfy
        .received_requests()
        .await
        .expect("recorded")
        .iter()
        .filter(|r| r.url.path() == "/v1/health")
        .count();
    assert!(checks >= 2, "re-checked on the interval: {checks} check(s)");
    assert!(
        pushes(&ntfy).await.is_empty(),
        "a healthcheck notifies nobody"
    );
}
