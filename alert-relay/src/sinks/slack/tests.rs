//! The exact Slack requests, and the retry/permanent split on Slack's answers.

use std::time::Duration;

use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::*;
use crate::domain::{sample_notification, NotificationKind, Rendered};
use crate::sinks::{Outcome, Sink};
use crate::validation::Secret;

fn text() -> Rendered {
    Rendered {
        title: "[critical] GatewayHighErrorRate".into(),
        body: "The gateway answers 5xx.".into(),
    }
}

#[test]
fn a_firing_message_has_fallback_colour_fields_and_buttons() {
    let n = sample_notification("critical", "slack.oncall", NotificationKind::Firing);
    let body = build_message(&n, &text());
    assert_eq!(
        body["text"],
        "[critical] GatewayHighErrorRate: The gateway answers 5xx."
    );
    let attachment = &body["attachments"][0];
    assert_eq!(attachment["color"], "danger");
    let blocks = attachment["blocks"].as_array().expect("blocks");
    assert_eq!(
        blocks[0],
        serde_json::json!({"type": "header", "text": {"type": "plain_text", "text": "[critical] GatewayHighErrorRate"}})
    );
    let fields: Vec<&str> = blocks[2]["fields"]
        .as_array()
        .expect("fields")
        .iter()
        .map(|f| f["text"].as_str().expect("text"))
        .collect();
    assert_eq!(
        fields,
        vec![
            "*Severity*\ncritical",
            "*Alerts*\n1 firing, 1 total",
            "*service*\ngateway",
            "*target*\ngateway"
        ]
    );
    let buttons: Vec<(&str, &str)> = blocks[3]["elements"]
        .as_array()
        .expect("buttons")
        .iter()
        .map(|b| {
            (
                b["text"]["text"].as_str().expect("label"),
                b["url"].as_str().expect("url"),
            )
        })
        .collect();
    assert_eq!(
        buttons[0],
        (
            "Runbook",
            "https://example.com/docs/runbooks/GatewayHighErrorRate.md"
        )
    );
    assert_eq!(buttons[1].0, "Source");
    assert_eq!(buttons[2].0, "Silence");
    assert_eq!(
        blocks[4]["elements"][0]["text"],
        "incident relay-1 · policy critical · step 1"
    );
}

#[test]
fn resolved_is_green_without_a_silence_button() {
    let n = sample_notification("critical", "slack.oncall", NotificationKind::Resolved);
    let body = build_message(&n, &text());
    assert_eq!(body["attachments"][0]["color"], "good");
    let labels: Vec<&str> = body["attachments"][0]["blocks"][3]["elements"]
        .as_array()
        .expect("buttons")
        .iter()
        .map(|b| b["text"]["text"].as_str().expect("label"))
        .collect();
    assert_eq!(labels, vec!["Runbook", "Source"]);
}

async fn send_with(response: ResponseTemplate) -> (Outcome, MockServer) {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/services/T000/B000/XXXX"))
        .respond_with(response)
        .mount(&server)
        .await;
    let sink = SlackSink::new(
        SlackConfig {
            webhook_url: Secret(format!("{}/services/T000/B000/XXXX", server.uri())),
        },
        reqwest::Client::new(),
    );
    let outcome = sink
        .send(
            &sample_notification("critical", "slack.oncall", NotificationKind::Firing),
            &text(),
        )
        .await;
    (outcome, server)
}

#[tokio::test]
async fn ok_is_delivered() {
    let (outcome, server) = send_with(ResponseTemplate::new(200).set_body_string("ok")).await;
    assert_eq!(outcome, Outcome::Delivered);
    let request = &server.received_requests().await.expect("recorded")[0];
    assert_eq!(request.headers["content-type"], "application/json");
}

#[tokio::test]
async fn rate_limits_are_retried_after_retry_after() {
    let (outcome, _s) = send_with(
        ResponseTemplate::new(429)
            .insert_header("retry-after", "2")
            .set_body_string("rate_limited"),
    )
    .await;
    assert_eq!(
        outcome,
        Outcome::Retry {
            after: Some(Duration::from_secs(2)),
            reason: "slack answered 429 Too Many Requests: rate_limited".into()
        }
    );
    let (outcome, _s) = send_with(ResponseTemplate::new(500).set_body_string("rollup_error")).await;
    assert!(matches!(outcome, Outcome::Retry { after: None, .. }));
}

#[tokio::test]
async fn slack_errors_are_permanent_and_explained() {
    for (status, word, hint) in [
        (400, "invalid_payload", "malformed"),
        (404, "channel_not_found", "create a new webhook"),
        (410, "channel_is_archived", "unarchive"),
        (403, "action_prohibited", "admin"),
    ] {
        let (outcome, _s) = send_with(ResponseTemplate::new(status).set_body_string(word)).await;
        let Outcome::Permanent { reason } = outcome else {
            panic!("{word} must be permanent")
        };
        assert!(reason.contains(word) && reason.contains(hint), "{reason}");
    }
}

#[tokio::test]
async fn a_network_error_never_shows_the_webhook_url() {
    let sink = SlackSink::new(
        SlackConfig {
            webhook_url: Secret("http://127.0.0.1:9/services/T000/B000/SECRETPART".into()),
        },
        reqwest::Client::new(),
    );
    let outcome = sink
        .send(
            &sample_notification("p", "slack.x", NotificationKind::Firing),
            &text(),
        )
        .await;
    let Outcome::Retry { reason, .. } = outcome else {
        panic!("retry")
    };
    assert!(!reason.contains("SECRETPART"), "{reason}");
}
