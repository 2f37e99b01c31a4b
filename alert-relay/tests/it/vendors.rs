//! Slack and PagerDuty through the whole relay: trigger, acknowledge, resolve, and the same
//! PagerDuty dedup_key across a restart.

use serde_json::Value;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer};

use crate::helpers::*;

const PD_KEY: &str = "0123456789abcdef0123456789abcdef";

fn policy(slack: &str, pagerduty: &str) -> String {
    format!(
        r#"
server:
  public_url: ${{PUBLIC_URL:-http://127.0.0.1:1}}
  webhook_auth:
    bearer_token: "{TOKEN}"
  ack_secret: "an-ack-secret-of-sufficient-length"
delivery:
  initial_backoff: 100ms
  max_backoff: 400ms
targets:
  slack:
    oncall:
      webhook_url: "{slack}/services/T1/B1/SECRET"
  pagerduty:
    prod:
      routing_key: "{PD_KEY}"
      url: "{pagerduty}/v2/enqueue"
policies:
  - name: critical
    steps:
      - after: 0s
        notify: [slack.oncall, pagerduty.prod]
"#
    )
}

async fn bodies(server: &MockServer) -> Vec<Value> {
    pushes(server).await
}

#[tokio::test(flavor = "multi_thread")]
async fn slack_and_pagerduty_follow_the_incident_across_a_restart() {
    let slack = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/services/T1/B1/SECRET"))
        .respond_with(crate::fakes::StrictSlack)
        .mount(&slack)
        .await;
    let pd = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v2/enqueue"))
        .respond_with(crate::fakes::StrictPagerDuty)
        .mount(&pd)
        .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("policy.yml");
    std::fs::write(&file, policy(&slack.uri(), &pd.uri())).expect("write");
    let data = dir.path().join("data");

    let relay = TestRelay::start_self_linked(&file, &data).await;
    relay.webhook(&webhook("GatewayDown", "firing")).await;
    let message = wait_pushes(&slack, 1).await.remove(0);
    assert_eq!(message["attachments"][0]["color"], "danger");
    assert!(message["text"]
        .as_str()
        .expect("text")
        .starts_with("[critical] GatewayDown"));
    let trigger = eventually("trigger", std::time::Duration::from_secs(5), || async {
        bodies(&pd).await.into_iter().next()
    })
    .await;
    assert_eq!(trigger["event_action"], "trigger");
    assert_eq!(trigger["routing_key"], PD_KEY);
    assert_eq!(trigger["payload"]["class"], "GatewayDown");
    let key = trigger["dedup_key"].as_str().expect("dedup_key").to_owned();

    // Acknowledge through the API (Slack and PagerDuty have no ack link).
    let ack = reqwest::Client::new()
        .post(format!("{}/api/v1/incidents/1/ack", relay.url))
        .bearer_auth(TOKEN)
        .header("x-acknowledged-by", "alice")
        .send()
        .await
        .expect("ack");
    assert_eq!(ack.status(), 200);
    let events = eventually("acknowledge", std::time::Duration::from_secs(5), || async {
        let b = bodies(&pd).await;
        (b.len() >= 2).then_some(b)
    })
    .await;
    assert_eq!(events[1]["event_action"], "acknowledge");
    assert_eq!(events[1]["dedup_key"], key.as_str());
    relay.shutdown().await;

    // After a restart the resolve closes the same PagerDuty incident.
    let relay = TestRelay::start(&file, &data, None).await;
    relay.webhook(&webhook("GatewayDown", "resolved")).await;
    let events = eventually("resolve", std::time::Duration::from_secs(5), || async {
        let b = bodies(&pd).await;
        (b.len() >= 3).then_some(b)
    })
    .await;
    assert_eq!(events[2]["event_action"], "resolve");
    assert_eq!(events[2]["dedup_key"], key.as_str());
    let slack_messages = wait_pushes(&slack, 3).await;
    assert_eq!(
        slack_messages[2]["attachments"][0]["color"], "good",
        "resolved is green"
    );
}
