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

/// Block Kit's documented limits, checked the way Slack does before answering
/// `invalid_blocks` (independent of the builder's own constants).
fn block_kit_violations(body: &serde_json::Value) -> Vec<String> {
    let mut out = Vec::new();
    let count = |v: &serde_json::Value| v.as_str().map_or(0, |s| s.chars().count());
    for block in body["attachments"][0]["blocks"]
        .as_array()
        .into_iter()
        .flatten()
    {
        match block["type"].as_str() {
            Some("header") if count(&block["text"]["text"]) > 150 => out.push("header".into()),
            Some("section") => {
                if count(&block["text"]["text"]) > 3000 {
                    out.push("section text".into());
                }
                let fields = block["fields"].as_array().map(Vec::as_slice).unwrap_or(&[]);
                if fields.len() > 10 || fields.iter().any(|f| count(&f["text"]) > 2000) {
                    out.push("fields".into());
                }
            }
            Some("actions") => {
                for b in block["elements"].as_array().into_iter().flatten() {
                    if count(&b["url"]) > 3000 || count(&b["text"]["text"]) > 75 {
                        out.push("button".into());
                    }
                }
            }
            _ => {}
        }
    }
    out
}

#[test]
fn hostile_labels_and_links_stay_within_block_kit() {
    let mut n = sample_notification("critical", "slack.oncall", NotificationKind::Firing);
    n.group
        .common_labels
        .insert("instance".into(), "i".repeat(5000));
    n.group
        .common_labels
        .insert("service".into(), "<&>".repeat(1000));
    n.group.alerts[0].generator_url = Some(format!(
        "http://prometheus/graph?g0.expr={}",
        "x".repeat(4000)
    ));
    let instances: Vec<String> = (0..300).map(|i| format!("host-{i}")).collect();
    let text = Rendered {
        title: instances.join(", "),
        body: "<!channel> <https://evil.example|click> & more ".repeat(200),
    };
    let body = build_message(&n, &text);
    assert_eq!(block_kit_violations(&body), Vec::<String>::new(), "{body}");
    let blocks = body["attachments"][0]["blocks"].as_array().expect("blocks");
    let section = blocks[1]["text"]["text"].as_str().expect("section");
    assert!(
        section.starts_with("&lt;!channel&gt; &lt;https://evil.example|click&gt; &amp;"),
        "{section}"
    );
    assert!(!section.contains("<!channel>"));
    let buttons: Vec<&str> = blocks[3]["elements"]
        .as_array()
        .expect("buttons")
        .iter()
        .map(|b| b["text"]["text"].as_str().expect("label"))
        .collect();
    assert_eq!(
        buttons,
        vec!["Runbook", "Silence"],
        "the overlong Source link is left out"
    );
    assert!(body["text"].as_str().expect("text").chars().count() <= 3000);
}

#[test]
fn a_cut_never_splits_an_escape() {
    let n = sample_notification("critical", "slack.oncall", NotificationKind::Firing);
    let text = Rendered {
        title: "t".into(),
        body: "&".repeat(4000),
    };
    let body = build_message(&n, &text);
    let section = body["attachments"][0]["blocks"][1]["text"]["text"]
        .as_str()
        .expect("section");
    assert!(section.chars().count() <= 3000);
    let head = section.split('…').next().expect("head");
    assert!(
        head.len().is_multiple_of(5) && head.chars().all(|c| "&amp;".contains(c)),
        "{head}"
    );
}

#[test]
fn alertmanagers_truncated_alerts_are_counted_and_shown() {
    let mut n = sample_notification("critical", "slack.oncall", NotificationKind::Firing);
    n.group.truncated_alerts = 40;
    let body = build_message(&n, &text());
    let fields = body["attachments"][0]["blocks"][2]["fields"].to_string();
    assert!(fields.contains("1 firing, 41 total (1 shown)"), "{fields}");
}

#[tokio::test]
async fn invalid_blocks_gets_the_text_alone_instead_of_a_dead_letter() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(|r: &wiremock::Request| r.body.windows(11).any(|w| w == b"attachments"))
        .respond_with(ResponseTemplate::new(400).set_body_string("invalid_blocks"))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_string("ok"))
        .mount(&server)
        .await;
    let sink = SlackSink::new(
        SlackConfig {
            webhook_url: Secret(format!("{}/services/T/B/X", server.uri())),
        },
        reqwest::Client::new(),
    );
    let n = sample_notification("critical", "slack.oncall", NotificationKind::Firing);
    assert_eq!(sink.send(&n, &text()).await, Outcome::Delivered);
    let requests = server.received_requests().await.expect("recorded");
    assert_eq!(requests.len(), 2);
    let plain: serde_json::Value = serde_json::from_slice(&requests[1].body).expect("json");
    assert_eq!(
        plain,
        serde_json::json!({"text": "[critical] GatewayHighErrorRate: The gateway answers 5xx."})
    );
}

#[test]
fn the_people_a_step_pages_are_mentioned_so_that_slack_notifies_them() {
    let mut n = sample_notification("critical", "slack.oncall", NotificationKind::Firing);
    n.mentions = vec!["U024BE7LH".into(), "W0123ABC".into(), "<!channel>".into()];
    let body = build_message(&n, &text());
    assert_eq!(
        body["text"],
        "<@U024BE7LH> <@W0123ABC> [critical] GatewayHighErrorRate: The gateway answers 5xx.",
        "a malformed id is dropped, never sent as markup"
    );
    let blocks = body["attachments"][0]["blocks"].as_array().expect("blocks");
    assert_eq!(
        blocks[1]["text"]["text"],
        "*Paging* <@U024BE7LH> <@W0123ABC>"
    );
    // The smaller retry after invalid_blocks keeps them.
    assert!(build_plain(&n, &text())["text"]
        .as_str()
        .is_some_and(|t| t.starts_with("<@U024BE7LH> <@W0123ABC> ")));
    n.mentions.clear();
    assert_eq!(
        build_message(&n, &text())["attachments"][0]["blocks"][1]["type"],
        "section"
    );
    assert!(!build_message(&n, &text())["text"]
        .as_str()
        .unwrap_or_default()
        .contains("<@"));
}
