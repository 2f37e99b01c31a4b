//! The signed webhook target through the whole relay, against a receiver that verifies
//! signatures as a Standard Webhooks library does: delivered and verified, retried under the
//! same `webhook-id`, dead-lettered with the receiver's reason; and the fake's own strictness.

use std::time::Duration;

use serde_json::{json, Value};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::fakes::StrictWebhookReceiver;
use crate::helpers::*;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const CAP: usize = 256 * 1024;

fn receiver() -> StrictWebhookReceiver {
    StrictWebhookReceiver {
        secret: SECRET,
        max_body: CAP,
    }
}

fn policy(url: &str) -> String {
    format!(
        r#"
server:
  public_url: http://relay.test/
  webhook_auth:
    bearer_token: "{TOKEN}"
  ack_secret: "an-ack-secret-of-sufficient-length"
delivery:
  initial_backoff: 100ms
  max_backoff: 400ms
targets:
  webhook:
    audit:
      url: "{url}/hooks/relay"
      secret: "{SECRET}"
      headers:
        X-Tenant: ops
policies:
  - name: critical
    steps:
      - after: 0s
        notify: [webhook.audit]
"#
    )
}

/// A receiver giving `first` answers for their number of POSTs, then the strict one.
async fn receiving(first: Vec<(ResponseTemplate, u64)>) -> MockServer {
    let server = MockServer::start().await;
    let last = u8::try_from(first.len()).expect("short") + 1;
    for ((answer, times), priority) in first.into_iter().zip(1u8..) {
        Mock::given(method("POST"))
            .respond_with(answer)
            .up_to_n_times(times)
            .with_priority(priority)
            .mount(&server)
            .await;
    }
    Mock::given(method("POST"))
        .respond_with(receiver())
        .with_priority(last)
        .mount(&server)
        .await;
    server
}

async fn start(server: &MockServer, dir: &std::path::Path) -> TestRelay {
    let file = dir.join("policy.yml");
    std::fs::write(&file, policy(&server.uri())).expect("write");
    TestRelay::start(&file, &dir.join("data"), None).await
}

/// The POSTs once there are `n`.
async fn wait_posts(server: &MockServer, n: usize) -> Vec<wiremock::Request> {
    eventually("webhook posts", Duration::from_secs(5), || async {
        let p = posts(server).await;
        (p.len() >= n).then_some(p)
    })
    .await
}

fn header(request: &wiremock::Request, name: &str) -> String {
    request
        .headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn webhook_an_alert_arrives_signed_and_verifies() {
    let server = receiving(Vec::new()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let relay = start(&server, dir.path()).await;
    relay.webhook(&webhook("GatewayDown", "firing")).await;
    let request = wait_posts(&server, 1).await.remove(0);
    assert_eq!(
        receiver().refusal(&request),
        None,
        "the receiver verifies it"
    );
    assert_eq!(header(&request, "x-tenant"), "ops");
    assert_eq!(header(&request, "content-type"), "application/json");
    let event: Value = serde_json::from_slice(&request.body).expect("json");
    assert_eq!(event["version"], "1");
    assert_eq!(event["type"], "incident.firing");
    let data = &event["data"];
    assert_eq!(data["incident"]["id"], 1);
    assert_eq!(data["incident"]["policy"], "critical");
    assert_eq!(data["alerts"][0]["labels"]["alertname"], "GatewayDown");
    assert!(data["title"]
        .as_str()
        .expect("title")
        .contains("GatewayDown"));
    assert_eq!(
        data["links"]["runbook"],
        "https://runbooks.test/docs/runbooks/GatewayDown.md"
    );
    assert_eq!(
        data["links"]["incident"], "http://relay.test/incidents/1",
        "the console (on by default) shows the incident at the public URL"
    );

    relay.webhook(&webhook("GatewayDown", "resolved")).await;
    let posts = wait_posts(&server, 2).await;
    let resolved: Value = serde_json::from_slice(&posts[1].body).expect("json");
    assert_eq!(resolved["type"], "incident.resolved");
    assert_eq!(receiver().refusal(&posts[1]), None);
    assert_ne!(
        header(&posts[0], "webhook-id"),
        header(&posts[1], "webhook-id")
    );
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn webhook_a_500_is_retried_under_the_same_webhook_id() {
    let server = receiving(vec![(ResponseTemplate::new(500), 1)]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let relay = start(&server, dir.path()).await;
    relay.webhook(&webhook("GatewayDown", "firing")).await;
    let posts = wait_posts(&server, 2).await;
    assert_eq!(
        header(&posts[0], "webhook-id"),
        header(&posts[1], "webhook-id")
    );
    assert_eq!(posts[0].body, posts[1].body);
    assert_eq!(receiver().refusal(&posts[1]), None, "the retry verifies");
    relay.settled(Duration::from_secs(60)).await;
    assert_eq!(
        crate::helpers::posts(&server).await.len(),
        2,
        "no third send"
    );
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn webhook_a_400_is_dead_lettered_with_the_receivers_reason() {
    let refusing = ResponseTemplate::new(400)
        .set_body_json(json!({"message": "unknown event type incident.firing"}));
    let server = receiving(vec![(refusing, u64::MAX)]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let relay = start(&server, dir.path()).await;
    relay.webhook(&webhook("GatewayDown", "firing")).await;
    let letters = relay.wait_dead_letters().await;
    let letter = letters[0].to_string();
    assert!(
        letter.contains("webhook answered 400 Bad Request: unknown event type incident.firing"),
        "{letter}"
    );
    assert_eq!(crate::helpers::posts(&server).await.len(), 1, "not retried");
    relay.shutdown().await;
}

/// A receiver that redirects (http to https, a moved hook) is a URL to fix: the redirect is
/// not followed (following turns the POST into a GET without its body, and sends custom
/// headers on to another host); the page is dead-lettered saying so.
#[tokio::test(flavor = "multi_thread")]
async fn webhook_a_redirect_is_not_followed_and_is_dead_lettered() {
    let elsewhere = MockServer::start().await;
    let moved = ResponseTemplate::new(301)
        .insert_header("location", format!("{}/moved", elsewhere.uri()).as_str());
    let server = receiving(vec![(moved, u64::MAX)]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let relay = start(&server, dir.path()).await;
    relay.webhook(&webhook("GatewayDown", "firing")).await;
    let letters = relay.wait_dead_letters().await;
    let letter = letters[0].to_string();
    assert!(letter.contains("301"), "{letter}");
    assert_eq!(crate::helpers::posts(&server).await.len(), 1, "not retried");
    assert!(
        elsewhere
            .received_requests()
            .await
            .unwrap_or_default()
            .is_empty(),
        "nothing went to where it pointed"
    );
    relay.shutdown().await;
}

/// The fake refuses what a real receiver refuses: without this, a passing test above could
/// hide a signature no receiver accepts.
#[tokio::test]
async fn the_fake_webhook_receiver_refuses_bad_signatures_stale_times_missing_headers_and_big_bodies(
) {
    use alert_relay::sinks::webhook::{sign, SigningKey};
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(receiver())
        .mount(&server)
        .await;
    let key = SigningKey::parse(SECRET).expect("key");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    let client = reqwest::Client::new();
    let send = |id: &str, at: i64, signature: String, body: Vec<u8>| {
        client
            .post(server.uri())
            .header("webhook-id", id)
            .header("webhook-timestamp", at.to_string())
            .header("webhook-signature", signature)
            .body(body)
            .send()
    };
    let body = br#"{"ok":true}"#.to_vec();
    let good = sign(&key, "msg_1", now, &body);
    let status = |r: reqwest::Response| r.status().as_u16();
    assert_eq!(
        status(
            send("msg_1", now, good.clone(), body.clone())
                .await
                .expect("send")
        ),
        200
    );
    let several = format!("v1,bm90IGl0 {good}");
    assert_eq!(
        status(
            send("msg_1", now, several, body.clone())
                .await
                .expect("send")
        ),
        200
    );
    let other = SigningKey::parse("whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA").expect("key");
    let wrong = sign(&other, "msg_1", now, &body);
    assert_eq!(
        status(send("msg_1", now, wrong, body.clone()).await.expect("send")),
        401
    );
    assert_eq!(
        status(
            send("msg_2", now, good.clone(), body.clone())
                .await
                .expect("send")
        ),
        401
    );
    let stale = now - 301;
    let old = sign(&key, "msg_1", stale, &body);
    assert_eq!(
        status(send("msg_1", stale, old, body.clone()).await.expect("send")),
        401
    );
    let missing = client
        .post(server.uri())
        .body(body.clone())
        .send()
        .await
        .expect("send");
    assert_eq!(status(missing), 401);
    let big = format!("{{\"x\":\"{}\"}}", "a".repeat(CAP)).into_bytes();
    let signed = sign(&key, "msg_1", now, &big);
    assert_eq!(
        status(send("msg_1", now, signed, big).await.expect("send")),
        413
    );
}
