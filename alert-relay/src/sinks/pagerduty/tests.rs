//! The exact Events API v2 requests and the retry/permanent split.

use url::Url;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::*;
use crate::domain::{sample_notification, NotificationKind, Rendered};
use crate::sinks::{Outcome, Sink};
use crate::validation::Secret;

const KEY: &str = "0123456789abcdef0123456789abcdef";

fn config(url: &str) -> PagerDutyConfig {
    PagerDutyConfig {
        routing_key: Secret(KEY.into()),
        url: Url::parse(url).expect("url"),
        source: None,
    }
}

fn text() -> Rendered {
    Rendered {
        title: "[critical] GatewayHighErrorRate".into(),
        body: "The gateway answers 5xx.".into(),
    }
}

#[test]
fn a_trigger_carries_the_whole_payload() {
    let config = config("https://events.pagerduty.com/v2/enqueue");
    let n = sample_notification("critical", "pagerduty.prod", NotificationKind::Firing);
    let text = text();
    let event = serde_json::to_value(build_event(&config, &n, &text)).expect("json");
    assert_eq!(
        event,
        serde_json::json!({
            "routing_key": KEY,
            "event_action": "trigger",
            "dedup_key": "alert-relay-1-1793502000000",
            "payload": {
                "summary": "[critical] GatewayHighErrorRate: The gateway answers 5xx.",
                "source": "gateway",
                "severity": "critical",
                "timestamp": "2026-11-01T03:00:00Z",
                "component": "gateway",
                "group": "gateway",
                "class": "GatewayHighErrorRate",
                "custom_details": {
                    "firing": 1,
                    "truncated_alerts": 0,
                    "labels": {"alertname": "GatewayHighErrorRate", "service": "gateway", "severity": "critical", "target": "gateway"},
                    "annotations": n.group.common_annotations,
                    "alerts": [{"labels": n.group.alerts[0].labels, "status": "firing", "starts_at": "2026-11-01T03:00:00Z"}]
                }
            },
            "links": [
                {"href": "https://example.com/docs/runbooks/GatewayHighErrorRate.md", "text": "Runbook"},
                {"href": "http://prometheus:9090/graph?g0.expr=job%3Ahttp_request_errors%3Aratio_rate5m", "text": "Source"}
            ],
            "client": "alert-relay",
            "client_url": "http://alertmanager:9093"
        })
    );
}

#[test]
fn acknowledge_and_resolve_send_only_the_key() {
    let config = config("https://events.pagerduty.com/v2/enqueue");
    let text = text();
    for (kind, action) in [
        (NotificationKind::Acknowledged, "acknowledge"),
        (NotificationKind::Resolved, "resolve"),
    ] {
        let n = sample_notification("critical", "pagerduty.prod", kind);
        let event = serde_json::to_value(build_event(&config, &n, &text)).expect("json");
        assert_eq!(
            event,
            serde_json::json!({"routing_key": KEY, "event_action": action, "dedup_key": "alert-relay-1-1793502000000"})
        );
    }
}

#[test]
fn long_summaries_are_cut_to_1024_characters() {
    let config = config("https://events.pagerduty.com/v2/enqueue");
    let n = sample_notification("critical", "pagerduty.prod", NotificationKind::Firing);
    let text = Rendered {
        title: "t".into(),
        body: "é".repeat(5000),
    };
    let event = serde_json::to_value(build_event(&config, &n, &text)).expect("json");
    assert_eq!(
        event["payload"]["summary"]
            .as_str()
            .expect("summary")
            .chars()
            .count(),
        1024
    );
}

async fn send_with(response: ResponseTemplate) -> Outcome {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v2/enqueue"))
        .respond_with(response)
        .mount(&server)
        .await;
    let sink = PagerDutySink::new(
        config(&format!("{}/v2/enqueue", server.uri())),
        reqwest::Client::new(),
    );
    sink.send(
        &sample_notification("critical", "pagerduty.prod", NotificationKind::Firing),
        &text(),
    )
    .await
}

#[tokio::test]
async fn accepted_202_is_delivered_400_permanent_429_retried() {
    let ok = send_with(ResponseTemplate::new(202).set_body_json(
        serde_json::json!({"status": "success", "message": "Event processed", "dedup_key": "x"}),
    ))
    .await;
    assert_eq!(ok, Outcome::Delivered);
    let bad = send_with(ResponseTemplate::new(400).set_body_json(serde_json::json!({"status": "invalid event", "message": "Event object is invalid", "errors": ["Length of 'routing_key' is incorrect (should be 32 characters)"]}))).await;
    assert_eq!(bad, Outcome::Permanent { reason: "pagerduty answered 400 Bad Request: Event object is invalid: Length of 'routing_key' is incorrect (should be 32 characters)".into() });
    let throttled = send_with(ResponseTemplate::new(429)).await;
    assert!(matches!(throttled, Outcome::Retry { .. }));
    let down = send_with(ResponseTemplate::new(502)).await;
    assert!(matches!(down, Outcome::Retry { .. }));
}

#[test]
fn a_huge_group_fits_the_event_size_limit_and_keeps_its_counts() {
    let config = config("http://pd.local/v2/enqueue");
    let mut n = sample_notification("critical", "pagerduty.x", NotificationKind::Firing);
    let alert = n.group.alerts[0].clone();
    n.group.alerts = (0..3000)
        .map(|i| {
            let mut a = alert.clone();
            a.labels
                .insert("instance".into(), format!("host-{i}-{}", "x".repeat(200)));
            a
        })
        .collect();
    n.group
        .common_annotations
        .insert("description".into(), "d".repeat(600_000));
    n.group
        .common_labels
        .insert("instance".into(), "i".repeat(10_000));
    let text = Rendered {
        title: "t".repeat(5000),
        body: "b".repeat(5000),
    };
    let event = serde_json::to_value(build_event(&config, &n, &text)).expect("json");
    let size = event.to_string().len();
    assert!(size <= MAX_EVENT_BYTES, "{size}");
    let payload = &event["payload"];
    assert_eq!(
        payload["summary"].as_str().map(|s| s.chars().count()),
        Some(1024)
    );
    assert!(payload["source"].as_str().expect("source").chars().count() <= 255);
    assert_eq!(payload["custom_details"]["firing"], 3000);
    assert!(payload["custom_details"]["note"].is_string());
}
