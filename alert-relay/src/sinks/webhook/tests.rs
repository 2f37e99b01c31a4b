//! The exact signed requests, their limits, the config's refusals and the retry/permanent
//! split.

use std::path::Path;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use url::Url;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::*;
use crate::domain::{sample_notification, Notification, NotificationKind, Rendered, Timestamp};
use crate::sinks::{Outcome, Sink};

/// A 24-byte key, as Standard Webhooks secrets are generated.
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// A known-good vector, checked against an independent implementation: the npm package
/// `standardwebhooks` 1.1.1 (`new Webhook(secret).verify(body, headers)` accepted this
/// header with its clock at `TIMESTAMP`, and its own `sign(id, date, body)` gave the same
/// value; a changed body was refused). The body is a relay-shaped event.
const VECTOR_ID: &str = "msg_2b4c3fb4b0f1f7e2a8a2b6d1c0e9f3a7";
const VECTOR_TIMESTAMP: i64 = 1_793_503_020;
const VECTOR_BODY: &str = r#"{"version":"1","type":"incident.firing","timestamp":"2026-11-01T03:17:00.000Z","data":{"kind":"firing","title":"[critical] GatewayHighErrorRate \"<b>\" ✓"}}"#;
const VECTOR_SIGNATURE: &str = "v1,QBT5vKgLdExd8wMBzD8vBKLwPlpi2RqdwCFbjDQqYEE=";

fn key() -> SigningKey {
    SigningKey::parse(SECRET).expect("secret")
}

fn config(url: &str) -> WebhookConfig {
    let mut value = http::HeaderValue::from_static("Bearer receiver-token");
    value.set_sensitive(true);
    WebhookConfig {
        url: Url::parse(url).expect("url"),
        key: key(),
        headers: vec![(http::HeaderName::from_static("authorization"), value)],
    }
}

fn text() -> Rendered {
    Rendered {
        title: "[critical] GatewayHighErrorRate".into(),
        body: "The gateway answers 5xx.".into(),
    }
}

fn firing() -> Notification {
    let mut n = sample_notification("critical", "webhook.audit", NotificationKind::Firing);
    n.console_url = Some("https://relay.example.com/incidents/1".into());
    n
}

fn header<'a>(request: &'a SignedRequest, name: &str) -> &'a str {
    request
        .headers
        .iter()
        .find(|(n, _)| n.as_str() == name)
        .and_then(|(_, v)| v.to_str().ok())
        .unwrap_or_else(|| panic!("no {name} header"))
}

/// The check a receiver makes, written here from the specification rather than with
/// [`sign`]: HMAC-SHA256 over `{id}.{timestamp}.{body}`, base64, after `v1,`.
fn verifies(secret: &str, id: &str, timestamp: &str, body: &[u8], signature: &str) -> bool {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(secret.trim_start_matches("whsec_"))
        .expect("base64");
    let mut mac = Hmac::<Sha256>::new_from_slice(&raw).expect("key");
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    let expected = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    signature
        .split(' ')
        .any(|s| s.strip_prefix("v1,") == Some(expected.as_str()))
}

#[test]
fn the_interop_vector_signs_as_the_reference_library_does() {
    assert_eq!(
        sign(&key(), VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_BODY.as_bytes()),
        VECTOR_SIGNATURE
    );
}

#[test]
fn a_request_carries_the_three_webhook_headers_content_type_and_the_targets_own() {
    let request = build(
        &config("https://hooks.example.com/in"),
        &firing(),
        &text(),
        1_793_503_020,
        Budget::NORMAL,
    );
    let names: Vec<&str> = request.headers.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "content-type",
            "webhook-id",
            "webhook-timestamp",
            "webhook-signature",
            "authorization"
        ]
    );
    assert_eq!(header(&request, "content-type"), "application/json");
    assert_eq!(header(&request, "webhook-timestamp"), "1793503020");
    assert_eq!(header(&request, "webhook-id"), request.id);
    assert!(request.id.starts_with("msg_") && request.id.len() == 36);
    assert!(format!("{:?}", config("https://x/").key).contains("***"));
}

#[test]
fn the_signature_covers_exactly_the_bytes_sent() {
    let request = build(
        &config("https://hooks.example.com/in"),
        &firing(),
        &text(),
        1_793_503_020,
        Budget::NORMAL,
    );
    let signature = header(&request, "webhook-signature");
    assert!(verifies(
        SECRET,
        &request.id,
        "1793503020",
        &request.body,
        signature
    ));
    let mut tampered = request.body.clone();
    tampered.push(b' ');
    assert!(!verifies(
        SECRET,
        &request.id,
        "1793503020",
        &tampered,
        signature
    ));
    assert!(!verifies(
        SECRET,
        &request.id,
        "1793503021",
        &request.body,
        signature
    ));
}

#[test]
fn the_webhook_id_is_stable_across_retries_and_distinct_per_notification() {
    let config = config("https://hooks.example.com/in");
    let n = firing();
    let first = build(&config, &n, &text(), 1_000, Budget::NORMAL);
    let retry = build(&config, &n, &text(), 4_600, Budget::NORMAL);
    assert_eq!(first.id, retry.id);
    assert_eq!(
        first.body, retry.body,
        "the body does not depend on the send time"
    );
    assert_ne!(
        header(&first, "webhook-signature"),
        header(&retry, "webhook-signature"),
        "each attempt is signed at its own time"
    );
    let mut others = Vec::new();
    for change in [
        |n: &mut Notification| n.kind = NotificationKind::Resolved,
        |n: &mut Notification| n.step = 1,
        |n: &mut Notification| n.created_at = Timestamp(n.created_at.0 + 1),
        |n: &mut Notification| n.incident_id = 2,
        |n: &mut Notification| n.target = "webhook.other".into(),
    ] {
        let mut other = n.clone();
        change(&mut other);
        others.push(message_id(&other));
    }
    others.push(first.id.clone());
    others.sort();
    others.dedup();
    assert_eq!(others.len(), 6, "{others:?}");
}

#[test]
fn the_payload_is_version_1_with_the_incident_alerts_text_and_links() {
    let n = firing();
    let body: Value =
        serde_json::from_slice(&body_within(&n, &text(), Budget::NORMAL)).expect("json");
    assert_eq!(
        body,
        json!({
            "version": "1",
            "type": "incident.firing",
            "timestamp": "2026-11-01T03:17:00.000Z",
            "data": {
                "kind": "firing",
                "incident": {
                    "id": 1,
                    "sequence_id": "relay-1",
                    "policy": "critical",
                    "group_key": "{}:{alertname=\"GatewayHighErrorRate\", service=\"gateway\"}",
                    "status": "open",
                    "started_at": "2026-11-01T03:00:00.000Z"
                },
                "step": 0,
                "target": "webhook.audit",
                "person": null,
                "title": "[critical] GatewayHighErrorRate",
                "body": "The gateway answers 5xx.",
                "note": null,
                "acknowledged_by": null,
                "silence_note": null,
                "group": {
                    "status": "firing",
                    "receiver": "relay",
                    "group_labels": {"alertname": "GatewayHighErrorRate"},
                    "common_labels": n.group.common_labels,
                    "common_annotations": n.group.common_annotations
                },
                "alerts": [{
                    "status": "firing",
                    "fingerprint": "0123456789abcdef",
                    "starts_at": "2026-11-01T03:00:00Z",
                    "ends_at": null,
                    "labels": n.group.alerts[0].labels,
                    "annotations": n.group.alerts[0].annotations,
                    "generator_url": "http://prometheus:9090/graph?g0.expr=job%3Ahttp_request_errors%3Aratio_rate5m"
                }],
                "alerts_total": 1,
                "alerts_firing": 1,
                "alerts_omitted": 0,
                "entries_omitted": 0,
                "links": {
                    "runbook": "https://example.com/docs/runbooks/GatewayHighErrorRate.md",
                    "acknowledge": "https://relay.example.com/ack/TOKEN",
                    "silence": "http://alertmanager:9093/#/silences/new?filter=%7Balertname%3D%22GatewayHighErrorRate%22%7D",
                    "source": "http://prometheus:9090/graph?g0.expr=job%3Ahttp_request_errors%3Aratio_rate5m",
                    "incident": "https://relay.example.com/incidents/1",
                    "alertmanager": "http://alertmanager:9093"
                }
            }
        })
    );
    for (kind, event, status) in [
        (
            NotificationKind::Acknowledged,
            "incident.acknowledged",
            "acknowledged",
        ),
        (NotificationKind::Resolved, "incident.resolved", "resolved"),
        (NotificationKind::Silenced, "incident.silenced", "silenced"),
    ] {
        let n = sample_notification("critical", "webhook.audit", kind);
        let body: Value =
            serde_json::from_slice(&body_within(&n, &text(), Budget::NORMAL)).expect("json");
        assert_eq!(body["type"], event);
        assert_eq!(body["data"]["kind"], kind.as_str());
        assert_eq!(body["data"]["incident"]["status"], status);
    }
}

/// A group no receiver should have to take whole: 5,000 alerts with long labels, huge
/// annotations, and long text.
fn huge() -> (Notification, Rendered) {
    let mut n = firing();
    let alert = n.group.alerts[0].clone();
    n.group.alerts = (0..5000)
        .map(|i| {
            let mut a = alert.clone();
            a.labels
                .insert("instance".into(), format!("host-{i}-{}", "x".repeat(300)));
            a.annotations
                .insert("description".into(), "\"\\\u{1}".repeat(100));
            a
        })
        .collect();
    n.group.alerts[0]
        .annotations
        .insert("description".into(), "\"\\\u{1}".repeat(100_000));
    n.group.truncated_alerts = 7;
    for i in 0..2000 {
        n.group
            .common_labels
            .insert(format!("label_{i:04}"), "v".repeat(500));
    }
    n.group
        .common_annotations
        .insert("description".into(), "é".repeat(100_000));
    let text = Rendered {
        title: "t".repeat(50_000),
        body: "b".repeat(500_000),
    };
    (n, text)
}

#[test]
fn a_huge_group_fits_256_kib_and_says_how_many_alerts_were_left_out() {
    let (n, text) = huge();
    let body = body_within(&n, &text, Budget::NORMAL);
    assert!(body.len() <= 256 * 1024, "{}", body.len());
    let v: Value = serde_json::from_slice(&body).expect("json");
    let data = &v["data"];
    let kept = data["alerts"].as_array().expect("alerts").len() as u64;
    assert!(kept >= 1, "some alerts are kept");
    assert_eq!(data["alerts_total"], 5007);
    assert_eq!(data["alerts_firing"], 5000);
    assert_eq!(data["alerts_omitted"].as_u64(), Some(5007 - kept));
    assert!(data["entries_omitted"].as_u64().expect("entries") > 0);
    let description = data["group"]["common_annotations"]["description"]
        .as_str()
        .expect("cut, not dropped");
    assert!(description.ends_with(" more)"), "a visible marker");
    assert!(data["body"].as_str().expect("body").ends_with(" more)"));
    assert!(data["title"].as_str().expect("title").len() <= 1024);
}

#[test]
fn every_budget_holds_whatever_the_input() {
    let (mut n, text) = huge();
    n.group.group_key = crate::domain::GroupKey("k".repeat(100_000));
    n.note = Some("n".repeat(100_000));
    for budget in [Budget::NORMAL, Budget::SMALL] {
        let body = body_within(&n, &text, budget);
        assert!(
            body.len() <= budget.total,
            "{} > {}",
            body.len(),
            budget.total
        );
        let v: Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(v["version"], "1");
    }
}

#[test]
fn hostile_label_values_are_just_json_strings() {
    let mut n = firing();
    let hostile = "\"},\"injected\":true,\"x\":{\"\\\u{0}\n</script><!channel>${HOME}";
    n.group
        .common_labels
        .insert("service".into(), hostile.into());
    n.group.alerts[0]
        .annotations
        .insert("evil\"key".into(), hostile.into());
    let v: Value = serde_json::from_slice(&body_within(&n, &text(), Budget::NORMAL)).expect("json");
    assert_eq!(v["data"]["group"]["common_labels"]["service"], hostile);
    assert_eq!(v["data"]["alerts"][0]["annotations"]["evil\"key"], hostile);
    assert!(v.get("injected").is_none() && v["data"].get("injected").is_none());
}

#[test]
fn links_are_only_absolute_http_urls() {
    let mut n = firing();
    n.group.alerts[0].generator_url = Some("javascript:alert(1)".into());
    n.ack_url = Some(format!(
        "https://relay.example.com/ack/{}",
        "a".repeat(3000)
    ));
    n.console_url = None;
    let v: Value = serde_json::from_slice(&body_within(&n, &text(), Budget::NORMAL)).expect("json");
    assert_eq!(v["data"]["links"]["source"], Value::Null);
    assert_eq!(v["data"]["alerts"][0]["generator_url"], Value::Null);
    assert_eq!(
        v["data"]["links"]["acknowledge"],
        Value::Null,
        "too long to cut"
    );
    assert_eq!(v["data"]["links"]["incident"], Value::Null);
}

fn parse(targets: &str) -> Result<crate::config::Config, String> {
    let text = format!(
        "server:\n  webhook_auth:\n    none: true\ntargets:\n  webhook:\n{targets}policies:\n  - name: critical\n    steps:\n      - after: 0s\n        notify: [webhook.audit]\n"
    );
    let env = |name: &str| (name == "WEBHOOK_SECRET").then(|| SECRET.to_owned());
    crate::config::Config::parse(&text, Path::new("policy.yml"), &env).map_err(|e| e.to_string())
}

#[test]
fn config_takes_a_url_a_secret_from_the_environment_and_headers() {
    let config = parse(
        "    audit:\n      url: https://hooks.example.com/in\n      secret: ${WEBHOOK_SECRET}\n      headers:\n        Authorization: Bearer abc\n",
    )
    .expect("valid");
    let Some(crate::config::TargetConfig::Webhook(target)) =
        config.targets.get(&"webhook.audit".into())
    else {
        panic!("no webhook target")
    };
    assert_eq!(target.key, key());
    assert_eq!(target.headers.len(), 1);
    assert!(
        !format!("{config:?}").contains("Bearer abc"),
        "header values are secret"
    );
}

#[test]
fn config_refuses_a_header_given_twice_and_one_that_would_garble_the_body() {
    let errors = parse(
        "    audit:\n      url: https://hooks.example.com/in\n      secret: ${WEBHOOK_SECRET}\n      headers:\n        X-Key: a\n        x-key: b\n        Content-Encoding: gzip\n",
    )
    .expect_err("twice");
    assert!(errors.contains("given twice"), "{errors}");
    assert!(
        errors.contains("targets.webhook.audit.headers.Content-Encoding:"),
        "{errors}"
    );
}

#[test]
fn config_refuses_reserved_headers_bad_secrets_and_names_path_and_line() {
    let errors = parse(
        "    audit:\n      url: https://hooks.example.com/in\n      secret: ${WEBHOOK_SECRET}\n      headers:\n        Content-Type: text/plain\n        webhook-signature: v1,x\n        Host: evil\n        X-Ok: fine\n",
    )
    .expect_err("reserved");
    assert!(
        errors.contains("policy.yml:10: targets.webhook.audit.headers.Content-Type: `Content-Type` is set by the relay itself"),
        "{errors}"
    );
    assert!(
        errors.contains("targets.webhook.audit.headers.webhook-signature:"),
        "{errors}"
    );
    assert!(
        errors.contains("targets.webhook.audit.headers.Host:"),
        "{errors}"
    );
    assert!(!errors.contains("X-Ok"), "{errors}");
    for (secret, why) in [
        ("not-a-whsec", "starts with `whsec_`"),
        ("whsec_***", "not valid base64"),
        ("whsec_c2hvcnQ=", "24 to 64 random bytes"),
    ] {
        let errors = parse(&format!(
            "    audit:\n      url: https://hooks.example.com/in\n      secret: \"{secret}\"\n"
        ))
        .expect_err("bad secret");
        assert!(
            errors.contains("targets.webhook.audit.secret:") && errors.contains(why),
            "{errors}"
        );
        assert!(!errors.contains(secret), "the secret is echoed: {errors}");
    }
    let missing = parse("    audit:\n      url: https://hooks.example.com/in\n").expect_err("none");
    assert!(
        missing.contains("targets.webhook.audit.secret: missing"),
        "{missing}"
    );
}

async fn send_with(response: ResponseTemplate) -> (Outcome, Vec<wiremock::Request>) {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(response)
        .mount(&server)
        .await;
    let sink = WebhookSink::new(
        config(&format!("{}/in", server.uri())),
        reqwest::Client::new(),
    );
    let outcome = sink.send(&firing(), &text()).await;
    (
        outcome,
        server.received_requests().await.unwrap_or_default(),
    )
}

#[tokio::test]
async fn webhook_2xx_is_delivered_5xx_and_429_retried_other_4xx_permanent() {
    assert_eq!(
        send_with(ResponseTemplate::new(204)).await.0,
        Outcome::Delivered
    );
    assert!(matches!(
        send_with(ResponseTemplate::new(503)).await.0,
        Outcome::Retry { after: None, .. }
    ));
    assert!(matches!(
        send_with(ResponseTemplate::new(408)).await.0,
        Outcome::Retry { .. }
    ));
    assert_eq!(
        send_with(ResponseTemplate::new(429).insert_header("retry-after", "30"))
            .await
            .0,
        Outcome::Retry {
            after: Some(std::time::Duration::from_secs(30)),
            reason: "webhook answered 429 Too Many Requests: ".into()
        }
    );
    let (bad, _) = send_with(
        ResponseTemplate::new(400).set_body_json(json!({"message": "unknown event type"})),
    )
    .await;
    assert_eq!(
        bad,
        Outcome::Permanent {
            reason: "webhook answered 400 Bad Request: unknown event type".into()
        }
    );
    let (long, _) =
        send_with(ResponseTemplate::new(422).set_body_string("x".repeat(100_000))).await;
    let Outcome::Permanent { reason } = long else {
        panic!("{long:?}")
    };
    assert!(reason.len() < 300, "the receiver's words are bounded");
}

#[tokio::test]
async fn webhook_413_gets_the_smaller_body_at_once() {
    let (outcome, requests) = send_with(ResponseTemplate::new(413)).await;
    assert!(matches!(outcome, Outcome::Permanent { .. }), "{outcome:?}");
    assert_eq!(requests.len(), 2);
    assert!(requests[1].body.len() <= Budget::SMALL.total);
    assert_eq!(
        requests[0].headers.get("webhook-id"),
        requests[1].headers.get("webhook-id")
    );
}
