//! The exact ntfy requests, checked against a recording fake server (wiremock).

use std::time::Duration;

use url::Url;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::request::{body_len, message_text};
use super::*;
use crate::domain::{sample_notification, NotificationKind, Rendered};
use crate::sinks::{Health, Outcome, Sink};
use crate::validation::Secret;

fn config(server: &str) -> NtfyConfig {
    NtfyConfig {
        server: Url::parse(server).expect("url"),
        topic: "oncall-primary".into(),
        auth: NtfyAuth::Token(Secret("tk_e2e".into())),
        priorities: [5, 4, 3],
        tags: vec![],
    }
}

fn text() -> Rendered {
    Rendered {
        title: "[critical] GatewayHighErrorRate".into(),
        body: "The gateway answers more than 5% of requests with 5xx.".into(),
    }
}

#[test]
fn a_critical_page_has_priority_click_actions_and_sequence_id() {
    let config = config("http://ntfy.local");
    let n = sample_notification("critical", "ntfy.primary", NotificationKind::Firing);
    let text = text();
    let json = serde_json::to_value(build_message(&config, &n, &text)).expect("json");
    assert_eq!(
        json,
        serde_json::json!({
            "topic": "oncall-primary",
            "title": "[critical] GatewayHighErrorRate",
            "message": "The gateway answers more than 5% of requests with 5xx.",
            "priority": 5,
            "tags": ["rotating_light"],
            "click": "https://example.com/docs/runbooks/GatewayHighErrorRate.md",
            "actions": [
                {"action": "view", "label": "Runbook", "url": "https://example.com/docs/runbooks/GatewayHighErrorRate.md", "clear": false},
                {"action": "http", "label": "Acknowledge", "url": "https://relay.example.com/ack/TOKEN", "method": "POST", "clear": true},
                {"action": "view", "label": "Silence", "url": "http://alertmanager:9093/#/silences/new?filter=%7Balertname%3D%22GatewayHighErrorRate%22%7D", "clear": false}
            ],
            "sequence_id": "relay-1"
        })
    );
}

#[test]
fn a_page_opens_the_console_on_a_tap_and_keeps_its_three_buttons() {
    let config = config("http://ntfy.local");
    let mut n = sample_notification("critical", "ntfy.primary", NotificationKind::Firing);
    n.console_url = Some("https://relay.example.com/incidents/1".into());
    let json = serde_json::to_value(build_message(&config, &n, &text())).expect("json");
    assert_eq!(json["click"], "https://relay.example.com/incidents/1");
    let labels: Vec<&str> = json["actions"]
        .as_array()
        .expect("actions")
        .iter()
        .map(|a| a["label"].as_str().expect("label"))
        .collect();
    assert_eq!(labels, ["Runbook", "Acknowledge", "Silence"]);
    // A notice (or a sign-in push) has room: the console link is a button too.
    n.kind = NotificationKind::Resolved;
    let json = serde_json::to_value(build_message(&config, &n, &text())).expect("json");
    assert_eq!(json["actions"][0]["label"], "Open");
}

#[test]
fn severities_map_to_priorities_and_resolves_are_quiet() {
    let config = config("http://ntfy.local");
    let text = text();
    let mut n = sample_notification("p", "t", NotificationKind::Firing);
    n.group
        .common_labels
        .insert("severity".into(), "warning".into());
    assert_eq!(build_message(&config, &n, &text).priority, 4);
    n.group
        .common_labels
        .insert("severity".into(), "info".into());
    assert_eq!(build_message(&config, &n, &text).priority, 3);
    let resolved = sample_notification("p", "t", NotificationKind::Resolved);
    let message = serde_json::to_value(build_message(&config, &resolved, &text)).expect("json");
    assert_eq!(message["priority"], 2);
    assert_eq!(message["sequence_id"], "relay-1", "replaces the page");
    assert_eq!(
        message["actions"].as_array().map(Vec::len),
        Some(1),
        "only the runbook"
    );
}

#[test]
fn without_a_runbook_the_click_goes_to_the_source() {
    let config = config("http://ntfy.local");
    let text = text();
    let mut n = sample_notification("p", "t", NotificationKind::Firing);
    n.group.common_annotations.remove("runbook_url");
    for alert in &mut n.group.alerts {
        alert.annotations.remove("runbook_url");
    }
    let message = serde_json::to_value(build_message(&config, &n, &text)).expect("json");
    assert!(message["click"]
        .as_str()
        .expect("click")
        .starts_with("http://prometheus:9090/graph"));
}

#[test]
fn long_messages_are_cut_within_the_limit_on_a_char_boundary() {
    let config = config("http://ntfy.local");
    let n = sample_notification("critical", "ntfy.primary", NotificationKind::Firing);
    let text = Rendered {
        title: "[critical] GatewayHighErrorRate".into(),
        body: "é".repeat(5000),
    };
    let message = build_message(&config, &n, &text);
    let (_, body) = message_text(&message);
    assert!(body.len() <= MAX_MESSAGE_BYTES, "{}", body.len());
    assert!(body.ends_with(" more)"), "a visible marker");
    assert!(body_len(&message) <= MAX_BODY_BYTES);
}

#[test]
fn any_title_body_and_links_fit_the_json_body_limit() {
    let config = config("http://ntfy.local");
    // A title template listing 300 instances, escapes in the body, and huge links.
    let instances: Vec<String> = (0..300)
        .map(|i| format!("host-{i:03}.example.com"))
        .collect();
    let hostile = [
        (instances.join(", "), "short".to_owned()),
        ("t".into(), "\"\\\n".repeat(3000)),
        ("\u{1}".repeat(2000), "\u{1}".repeat(2000)),
        (String::new(), String::new()),
        ("ünï✓".repeat(900), "ünï✓".repeat(900)),
    ];
    for (i, (title, body)) in hostile.into_iter().enumerate() {
        let mut n = sample_notification("critical", "ntfy.primary", NotificationKind::Firing);
        if i % 2 == 0 {
            let long = format!("https://runbooks.test/{}", "r".repeat(5000));
            n.group
                .common_annotations
                .insert("runbook_url".into(), long);
            n.silence_url = Some(format!(
                "http://am/#/silences/new?filter={}",
                "%22".repeat(3000)
            ));
        }
        let text = Rendered { title, body };
        for budget in [Budget::NORMAL, Budget::SMALL] {
            let message = build_within(&config, &n, &text, budget);
            assert!(
                body_len(&message) <= budget.body,
                "case {i}: {}",
                body_len(&message)
            );
            let (title, body) = message_text(&message);
            assert!(
                body.len() <= budget.message && title.len() <= 250,
                "case {i}"
            );
            let json = serde_json::to_value(&message).expect("json");
            assert_eq!(json["sequence_id"], "relay-1", "case {i}");
            assert!(
                json["actions"]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|x| x["label"] == "Acknowledge")),
                "the Acknowledge button survives every cut (case {i})"
            );
        }
    }
}

#[tokio::test]
async fn a_413_from_a_server_with_a_lower_limit_gets_a_smaller_page_at_once() {
    let server = MockServer::start().await;
    // A server configured with message-size-limit 1024: bodies over 2048 bytes are refused.
    Mock::given(method("POST"))
        .and(|request: &wiremock::Request| request.body.len() > 2048)
        .respond_with(
            ResponseTemplate::new(413)
                .set_body_string(r#"{"code":41303,"http":413,"error":"request entity too large"}"#),
        )
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    let sink = NtfySink::new(config(&server.uri()), reqwest::Client::new());
    let n = sample_notification("critical", "ntfy.primary", NotificationKind::Firing);
    let text = Rendered {
        title: "[critical] GatewayHighErrorRate".into(),
        body: "x".repeat(4000),
    };
    assert_eq!(sink.send(&n, &text).await, Outcome::Delivered);
    let sizes: Vec<usize> = server
        .received_requests()
        .await
        .expect("recorded")
        .iter()
        .map(|r| r.body.len())
        .collect();
    assert_eq!(sizes.len(), 2, "{sizes:?}");
    assert!(sizes[0] > 2048 && sizes[1] <= 2048, "{sizes:?}");
}

async fn send_with(response: ResponseTemplate) -> (Outcome, MockServer) {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/"))
        .and(header("authorization", "Bearer tk_e2e"))
        .respond_with(response)
        .mount(&server)
        .await;
    let sink = NtfySink::new(config(&server.uri()), reqwest::Client::new());
    let n = sample_notification("critical", "ntfy.primary", NotificationKind::Firing);
    let outcome = sink.send(&n, &text()).await;
    (outcome, server)
}

#[tokio::test]
async fn delivers_with_the_token_to_the_server_root() {
    let (outcome, server) =
        send_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({"id": "x"}))).await;
    assert_eq!(outcome, Outcome::Delivered);
    let requests = server.received_requests().await.expect("recorded");
    assert_eq!(requests.len(), 1);
    let body: serde_json::Value = serde_json::from_slice(&requests[0].body).expect("json");
    assert_eq!(body["topic"], "oncall-primary");
    assert_eq!(requests[0].headers["content-type"], "application/json");
}

#[tokio::test]
async fn retries_on_503_and_429_with_retry_after() {
    let (outcome, _server) = send_with(ResponseTemplate::new(503)).await;
    assert!(
        matches!(outcome, Outcome::Retry { after: None, .. }),
        "{outcome:?}"
    );
    let (outcome, _server) = send_with(
        ResponseTemplate::new(429)
            .insert_header("retry-after", "30")
            .set_body_json(
                serde_json::json!({"code": 42901, "http": 429, "error": "limit reached"}),
            ),
    )
    .await;
    assert_eq!(
        outcome,
        Outcome::Retry {
            after: Some(Duration::from_secs(30)),
            reason: "ntfy answered 429 Too Many Requests: limit reached".into()
        }
    );
}

#[tokio::test]
async fn a_413_even_for_the_smaller_page_is_dead_lettered_with_both_reasons() {
    let (outcome, server) = send_with(
        ResponseTemplate::new(413)
            .set_body_string(r#"{"code":41303,"error":"request entity too large"}"#),
    )
    .await;
    let Outcome::Permanent { reason } = outcome else {
        panic!("{outcome:?}")
    };
    assert!(reason.contains("the smaller version too"), "{reason}");
    assert_eq!(server.received_requests().await.map(|r| r.len()), Some(2));
}

#[tokio::test]
async fn gives_up_on_400_with_ntfys_reason() {
    let (outcome, _server) = send_with(
        ResponseTemplate::new(400).set_body_json(serde_json::json!({"code": 40018, "http": 400, "error": "invalid request: actions invalid"})),
    )
    .await;
    assert_eq!(
        outcome,
        Outcome::Permanent {
            reason: "ntfy answered 400 Bad Request: invalid request: actions invalid".into()
        }
    );
}

#[tokio::test]
async fn a_dead_server_is_retried() {
    let sink = NtfySink::new(config("http://127.0.0.1:9"), reqwest::Client::new());
    let n = sample_notification("critical", "ntfy.primary", NotificationKind::Firing);
    let outcome = sink.send(&n, &text()).await;
    assert!(
        matches!(&outcome, Outcome::Retry { reason, .. } if reason.starts_with("request failed")),
        "{outcome:?}"
    );
}

async fn ntfy_with(health: ResponseTemplate, account: ResponseTemplate) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/health"))
        .respond_with(health)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/account"))
        .and(header("authorization", "Bearer tk_e2e"))
        .respond_with(account)
        .mount(&server)
        .await;
    server
}

fn healthy() -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(serde_json::json!({"healthy": true}))
}

async fn check(config: NtfyConfig) -> Health {
    NtfySink::new(config, reqwest::Client::new())
        .healthcheck()
        .await
}

#[tokio::test]
async fn healthcheck_asks_health_and_account_and_publishes_nothing() {
    let server = ntfy_with(healthy(), ResponseTemplate::new(200)).await;
    let health = check(config(&server.uri())).await;
    assert!(
        matches!(&health, Health::Ok(why) if why.contains("accepts the credentials")),
        "{health:?}"
    );
    let requests = server.received_requests().await.expect("recorded");
    let asked: Vec<(String, String)> = requests
        .iter()
        .map(|r| (r.method.to_string(), r.url.path().to_owned()))
        .collect();
    assert_eq!(
        asked,
        [
            ("GET".to_owned(), "/v1/health".to_owned()),
            ("GET".to_owned(), "/v1/version".to_owned()),
            ("GET".to_owned(), "/v1/account".to_owned())
        ],
        "GETs only: nothing published"
    );
}

#[tokio::test]
async fn healthcheck_fails_on_refused_credentials_unhealthy_or_dead_servers() {
    let refused = ntfy_with(healthy(), ResponseTemplate::new(401)).await;
    let health = check(config(&refused.uri())).await;
    assert!(
        matches!(&health, Health::Failed(why) if why.contains("refused the credentials (401")),
        "{health:?}"
    );

    let unhealthy = ntfy_with(
        ResponseTemplate::new(200).set_body_json(serde_json::json!({"healthy": false})),
        ResponseTemplate::new(200),
    )
    .await;
    let health = check(config(&unhealthy.uri())).await;
    assert!(
        matches!(&health, Health::Failed(why) if why.contains("not healthy")),
        "{health:?}"
    );

    let health = check(config("http://127.0.0.1:9")).await;
    assert!(
        matches!(&health, Health::Failed(why) if why.contains("/v1/health")),
        "{health:?}"
    );
}

#[tokio::test]
async fn without_credentials_only_the_server_is_checked() {
    let server = ntfy_with(healthy(), ResponseTemplate::new(500)).await;
    let mut anonymous = config(&server.uri());
    anonymous.auth = NtfyAuth::None;
    let health = check(anonymous).await;
    assert!(
        matches!(&health, Health::Ok(why) if why.contains("no credentials to check")),
        "{health:?}"
    );
    let asked: Vec<String> = server
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .map(|r| r.url.path().to_owned())
        .collect();
    assert!(!asked.iter().any(|p| p == "/v1/account"), "{asked:?}");
}

#[tokio::test]
async fn the_healthcheck_warns_about_a_server_too_old_to_replace_pages() {
    for (version, expect) in [
        (
            "2.13.0",
            "WARNING: ntfy 2.13.0 does not replace a page by its sequence id",
        ),
        ("v2.17.1", "ntfy 2.17.1 replaces pages by sequence id"),
    ] {
        let server = ntfy_with(healthy(), ResponseTemplate::new(200)).await;
        Mock::given(method("GET"))
            .and(path("/v1/version"))
            .respond_with(
                ResponseTemplate::new(200).set_body_json(serde_json::json!({"version": version})),
            )
            .mount(&server)
            .await;
        let Health::Ok(detail) = check(config(&server.uri())).await else {
            panic!("healthy")
        };
        assert!(detail.contains(expect), "{detail}");
    }
    // No version route (ntfy before 2.17, or a token that is not an admin's): a note.
    let server = ntfy_with(healthy(), ResponseTemplate::new(200)).await;
    let Health::Ok(detail) = check(config(&server.uri())).await else {
        panic!("healthy")
    };
    assert!(detail.contains("its version is not visible"), "{detail}");
}
