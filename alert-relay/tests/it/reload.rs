//! Policy hot reload: a valid file takes effect, an invalid one is rejected and the old policy
//! stays in force.

use std::time::Duration;

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread")]
async fn a_valid_reload_takes_effect_and_an_invalid_one_is_rejected() {
    let ntfy = fake_vendor(200).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = write_policy(dir.path(), &ntfy.uri(), "1h");
    let relay = TestRelay::start(&policy, &dir.path().join("data"), None).await;

    // Unauthenticated reloads are refused.
    let (status, _) = relay.post("/-/reload", None, "").await;
    assert_eq!(status, 401);

    // The primary's topic changes.
    std::fs::write(
        &policy,
        policy_yaml(&ntfy.uri(), "1h").replace("topic: oncall-primary", "topic: oncall-new"),
    )
    .expect("write");
    let (status, answer) = relay.post("/-/reload", Some(TOKEN), "").await;
    assert_eq!(
        (status, answer["status"].as_str()),
        (200, Some("reloaded")),
        "{answer}"
    );
    relay.webhook(&webhook("First", "firing")).await;
    assert_eq!(wait_pushes(&ntfy, 1).await[0]["topic"], "oncall-new");

    // A broken file is refused with its errors; the running policy stays.
    std::fs::write(
        &policy,
        policy_yaml(&ntfy.uri(), "1h").replace("[ntfy.secondary]", "[ntfy.nobody]"),
    )
    .expect("write");
    let (status, answer) = relay.post("/-/reload", Some(TOKEN), "").await;
    assert_eq!(status, 400);
    let errors = answer["error"].as_str().expect("errors");
    assert!(errors.contains("unknown target `ntfy.nobody`"), "{errors}");
    relay.webhook(&webhook("Second", "firing")).await;
    assert_eq!(
        wait_pushes(&ntfy, 2).await[1]["topic"],
        "oncall-new",
        "the last good policy is in force"
    );
    assert_eq!(
        relay
            .metric(r#"relay_config_reloads_total{result="failure"}"#)
            .await,
        Some(1.0)
    );
    assert_eq!(
        relay
            .metric(r#"relay_config_reloads_total{result="success"}"#)
            .await,
        Some(1.0)
    );
    assert_eq!(
        relay.metric("relay_config_last_reload_successful").await,
        Some(0.0)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_step_for_a_target_removed_by_a_reload_is_dead_lettered_at_once() {
    let ntfy = fake_vendor(200).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = write_policy(dir.path(), &ntfy.uri(), "1s");
    let relay = TestRelay::start(&policy, &dir.path().join("data"), None).await;
    relay.webhook(&webhook("GatewayDown", "firing")).await;
    wait_pushes(&ntfy, 1).await;

    // The secondary is renamed before the incident's second step is due; the incident keeps
    // the plan it started with, whose step 2 names a target that no longer exists.
    std::fs::write(
        &policy,
        policy_yaml(&ntfy.uri(), "1s")
            .replace("secondary:", "backup:")
            .replace("[ntfy.secondary]", "[ntfy.backup]"),
    )
    .expect("write");
    let (status, answer) = relay.post("/-/reload", Some(TOKEN), "").await;
    assert_eq!(status, 200, "{answer}");

    let letters = relay.wait_dead_letters().await;
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0]["target"], "ntfy.secondary");
    assert_eq!(letters[0]["attempts"], 0);
    let reason = letters[0]["reason"].as_str().expect("reason");
    assert!(reason.contains("no longer configured"), "{reason}");
    assert_eq!(
        relay
            .metric(r#"relay_dead_letters_total{target="ntfy.secondary"}"#)
            .await,
        Some(1.0)
    );
    assert_eq!(relay.metric("relay_outbox_depth").await, Some(0.0));
    assert_eq!(
        pushes(&ntfy).await.len(),
        1,
        "nothing was sent for the step"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn pending_retries_of_a_target_removed_by_a_reload_are_dead_lettered() {
    let ntfy = fake_vendor(200).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = dir.path().join("policy.yml");
    let dead_secondary = policy_with_dead_secondary(&ntfy.uri(), "0s");
    std::fs::write(&policy, &dead_secondary).expect("write");
    let relay = TestRelay::start(&policy, &dir.path().join("data"), None).await;
    relay.webhook(&webhook("GatewayDown", "firing")).await;
    eventually(
        "a retry of the secondary",
        Duration::from_secs(5),
        || async {
            relay
                .metric(r#"relay_notifications_total{outcome="retried",target="ntfy.secondary"}"#)
                .await
                .filter(|n| *n >= 1.0)
        },
    )
    .await;

    std::fs::write(
        &policy,
        dead_secondary
            .replace("secondary:", "backup:")
            .replace("[ntfy.secondary]", "[ntfy.backup]"),
    )
    .expect("write");
    let (status, answer) = relay.post("/-/reload", Some(TOKEN), "").await;
    assert_eq!(status, 200, "{answer}");
    let dead = eventually("the dead letter", Duration::from_secs(5), || async {
        relay
            .metric(r#"relay_dead_letters_total{target="ntfy.secondary"}"#)
            .await
            .filter(|n| *n >= 1.0)
    })
    .await;
    assert_eq!(dead, 1.0);
    let (_, body) = relay.get("/api/v1/dead-letters", Some(TOKEN)).await;
    let letter = &body["dead_letters"][0];
    assert_eq!(letter["target"], "ntfy.secondary");
    assert!(letter["attempts"].as_u64().expect("attempts") >= 1);
    assert!(letter["reason"]
        .as_str()
        .expect("reason")
        .contains("no longer configured"));
    eventually("an empty outbox", Duration::from_secs(5), || async {
        relay
            .metric("relay_outbox_depth")
            .await
            .filter(|n| *n == 0.0)
    })
    .await;
}
