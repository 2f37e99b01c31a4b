//! Policy hot reload: a valid file takes effect, an invalid one is rejected and the old policy
//! stays in force.

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
