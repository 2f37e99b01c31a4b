//! Pages that used to be lost to vendor limits and to large groups, through the whole relay
//! against vendors as strict as the real ones (`fakes`).

use std::time::Duration;

use serde_json::{json, Value};

use crate::fakes::{strict, StrictNtfy, StrictPagerDuty, StrictSlack};
use crate::helpers::*;

const PD_KEY: &str = "0123456789abcdef0123456789abcdef";

/// Every vendor, a title template that lists every instance, and the default body limit.
fn policy(ntfy: &str, slack: &str, pagerduty: &str) -> String {
    format!(
        r#"
server:
  webhook_auth:
    bearer_token: "{TOKEN}"
  ack_secret: "an-ack-secret-of-sufficient-length"
  public_url: http://relay.test/
delivery:
  initial_backoff: 100ms
  max_backoff: 400ms
targets:
  ntfy:
    primary: {{url: "{ntfy}", topic: oncall-primary}}
  slack:
    ops: {{webhook_url: "{slack}/services/T/B/X"}}
  pagerduty:
    prod: {{routing_key: "{PD_KEY}", url: "{pagerduty}/v2/enqueue"}}
policies:
  - name: critical
    templates:
      title: "{{{{alertname}}}} on {{{{#each alerts}}}}{{{{labels.instance}}}}, {{{{/each}}}}"
    steps:
      - after: 0s
        notify: [ntfy.primary, slack.ops, pagerduty.prod]
"#
    )
}

/// A group of `n` alerts with long instance names, a long label and a long source link.
fn big_group(n: usize) -> Value {
    let mut group = webhook("DiskFull", "firing");
    let alert = group["alerts"][0].clone();
    let alerts: Vec<Value> = (0..n)
        .map(|i| {
            let mut a = alert.clone();
            a["labels"]["instance"] = format!("host-{i:04}.{}", "rack".repeat(50)).into();
            a["fingerprint"] = format!("fp-{i}").into();
            a["generatorURL"] =
                format!("http://prometheus.test/graph?g0.expr={}", "x".repeat(3500)).into();
            a
        })
        .collect();
    group["alerts"] = alerts.into();
    group["commonLabels"]["service"] = "s".repeat(5000).into();
    group["truncatedAlerts"] = 12.into();
    group
}

#[tokio::test(flavor = "multi_thread")]
async fn a_huge_group_is_accepted_and_pages_every_vendor_within_its_limits() {
    let ntfy = strict(StrictNtfy).await;
    let slack = strict(StrictSlack).await;
    let pd = strict(StrictPagerDuty).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("policy.yml");
    std::fs::write(&file, policy(&ntfy.uri(), &slack.uri(), &pd.uri())).expect("write");
    let relay = TestRelay::start(&file, &dir.path().join("data"), None).await;

    let group = big_group(1500);
    let body = group.to_string();
    assert!(
        body.len() > 1 << 20,
        "more than the old 1 MiB limit: {}",
        body.len()
    );
    let (status, answer) = relay.webhook(&group).await;
    assert_eq!(
        status, 200,
        "a valid group is never refused for its size: {answer}"
    );

    for (server, vendor) in [(&ntfy, "ntfy"), (&slack, "slack"), (&pd, "pagerduty")] {
        eventually(
            &format!("a page accepted by {vendor}"),
            Duration::from_secs(10),
            || async {
                let requests = posts(server).await;
                (!requests.is_empty()).then_some(())
            },
        )
        .await;
    }
    let listing = relay.settled(Duration::from_secs(60)).await;
    assert_eq!(
        listing["incidents"][0]["alerts_firing"], 1500,
        "{}",
        listing["incidents"][0]["id"]
    );
    let (_, letters) = relay.get("/api/v1/dead-letters", Some(TOKEN)).await;
    assert_eq!(
        letters["dead_letters"],
        json!([]),
        "nothing refused by a vendor"
    );

    let push: Value = serde_json::from_slice(&posts(&ntfy).await[0].body).expect("json");
    let title = push["title"].as_str().expect("title");
    assert!(title.starts_with("DiskFull on host-0000"), "{title}");
    assert!(
        title.contains(" more)"),
        "a visible marker where it was cut: {title}"
    );
    let message = push["message"].as_str().expect("message");
    assert!(message.contains("1512 alerts, 1500 shown"), "{message}");
    let event: Value = serde_json::from_slice(&posts(&pd).await[0].body).expect("json");
    assert_eq!(
        event["payload"]["summary"]
            .as_str()
            .map(|s| s.chars().count()),
        Some(1024)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_strict_fakes_refuse_what_the_vendors_refuse() {
    let ntfy = strict(StrictNtfy).await;
    let client = reqwest::Client::new();
    let too_big = json!({"topic": "t", "message": "m".repeat(5000)});
    let answer = client
        .post(ntfy.uri())
        .json(&too_big)
        .send()
        .await
        .expect("post");
    assert_eq!(answer.status(), 413);
    let bad_priority = json!({"topic": "t", "message": "m", "priority": 9});
    let answer = client
        .post(ntfy.uri())
        .json(&bad_priority)
        .send()
        .await
        .expect("post");
    assert_eq!(answer.status(), 400);

    let slack = strict(StrictSlack).await;
    let long_header = json!({"text": "x", "blocks": [{"type": "header", "text": {"type": "plain_text", "text": "h".repeat(151)}}]});
    let answer = client
        .post(slack.uri())
        .json(&long_header)
        .send()
        .await
        .expect("post");
    assert_eq!(
        (
            answer.status().as_u16(),
            answer.text().await.expect("body").as_str()
        ),
        (400, "invalid_blocks")
    );

    let pd = strict(StrictPagerDuty).await;
    let bad_time = json!({"routing_key": PD_KEY, "event_action": "trigger", "dedup_key": "k",
        "payload": {"summary": "s", "source": "x", "severity": "critical", "timestamp": "NaN"}});
    let answer = client
        .post(pd.uri())
        .json(&bad_time)
        .send()
        .await
        .expect("post");
    assert_eq!(answer.status(), 400);
}
