//! Silence awareness against a real Alertmanager (Debian's prometheus-alertmanager) holding a
//! real silence.

use std::time::Duration;

use serde_json::{json, Value};
use wiremock::MockServer;

use crate::helpers::*;

async fn alertmanager() -> Alertmanager {
    start_alertmanager("route:\n  receiver: none\nreceivers:\n  - name: none\n").await
}

/// Posts a firing alert to Alertmanager and returns the fingerprint it gave it.
async fn fire(am: &Alertmanager, alertname: &str) -> String {
    let client = reqwest::Client::new();
    let labels = json!({"alertname": alertname, "severity": "critical", "service": "gateway"});
    let response = client
        .post(format!("{}/api/v2/alerts", am.url))
        .json(&json!([{"labels": labels, "annotations": {}, "generatorURL": "http://prometheus.test/graph"}]))
        .send()
        .await
        .expect("post alert");
    assert!(response.status().is_success());
    eventually("alert in alertmanager", Duration::from_secs(10), || async {
        alerts_named(am, alertname, "")
            .await?
            .first()
            .and_then(|a| a["fingerprint"].as_str())
            .map(str::to_owned)
    })
    .await
}

async fn silence(am: &Alertmanager, alertname: &str) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let body = json!({
        "matchers": [{"name": "alertname", "value": alertname, "isRegex": false, "isEqual": true}],
        "startsAt": rfc3339(now - 1),
        "endsAt": rfc3339(now + 3600),
        "createdBy": "test",
        "comment": "maintenance"
    });
    let response = reqwest::Client::new()
        .post(format!("{}/api/v2/silences", am.url))
        .json(&body)
        .send()
        .await
        .expect("silence");
    assert!(
        response.status().is_success(),
        "{}",
        response.text().await.unwrap_or_default()
    );
    eventually("alert silenced", Duration::from_secs(10), || async {
        alerts_named(am, alertname, "silenced=false&")
            .await?
            .is_empty()
            .then_some(())
    })
    .await;
}

/// Alertmanager's alerts named `alertname` (`query`: more filters, each ending in `&`).
async fn alerts_named(am: &Alertmanager, alertname: &str, query: &str) -> Option<Vec<Value>> {
    reqwest::get(format!(
        "{}/api/v2/alerts?{query}filter=alertname%3D%22{alertname}%22",
        am.url
    ))
    .await
    .ok()?
    .json()
    .await
    .ok()
}

fn rfc3339(unix: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_secs(unix)).to_string()
}

fn webhook_with(alertname: &str, fingerprint: &str) -> Value {
    let mut payload = webhook(alertname, "firing");
    payload["alerts"][0]["fingerprint"] = fingerprint.into();
    payload
}

async fn relay_with_alertmanager(
    ntfy: &MockServer,
    am_url: &str,
    dir: &std::path::Path,
) -> TestRelay {
    let policy = dir.join("policy.yml");
    let text = policy_yaml(&ntfy.uri(), "1s").replace(
        "  max_body_bytes:",
        &format!("  alertmanager_url: {am_url}\n  max_body_bytes:"),
    );
    std::fs::write(&policy, text).expect("write");
    TestRelay::start(&policy, &dir.join("data"), None).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_silenced_alert_stops_escalating_and_an_unsilenced_one_does_not() {
    let am = alertmanager().await;
    let ntfy = fake_vendor(200).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let relay = relay_with_alertmanager(&ntfy, &am.url, dir.path()).await;

    let silenced = fire(&am, "GatewayDown").await;
    let paging = fire(&am, "GatewayHighErrorRate").await;
    relay.webhook(&webhook_with("GatewayDown", &silenced)).await;
    relay
        .webhook(&webhook_with("GatewayHighErrorRate", &paging))
        .await;
    wait_pushes(&ntfy, 2).await;
    // Silenced after it fired: Alertmanager will never send a resolve for it.
    silence(&am, "GatewayDown").await;

    // The secondary for the one still paging, and the notice of the silence to the primary.
    let pushed = wait_pushes(&ntfy, 4).await;
    relay.settled(Duration::from_secs(3600)).await;
    let pushed_later = pushes(&ntfy).await;
    assert_eq!(pushed_later.len(), 4, "{pushed_later:#?}");
    let notice: Vec<&Value> = pushed
        .iter()
        .filter(|p| {
            p["title"]
                .as_str()
                .is_some_and(|t| t.starts_with("SILENCED "))
        })
        .collect();
    assert_eq!(notice.len(), 1, "{pushed:#?}");
    assert_eq!(notice[0]["topic"], "oncall-primary");
    assert_eq!(notice[0]["priority"], 2, "quiet: it replaces the page");
    let message = notice[0]["message"].as_str().expect("message");
    assert!(
        message.contains("silenced by test until") && message.contains(": maintenance"),
        "who silenced it and until when, from Alertmanager: {message}"
    );
    let secondary: Vec<&Value> = pushed
        .iter()
        .filter(|p| p["topic"] == "oncall-secondary")
        .collect();
    assert_eq!(secondary.len(), 1);
    assert!(secondary[0]["title"]
        .as_str()
        .expect("title")
        .contains("GatewayHighErrorRate"));
    assert_eq!(
        relay
            .metric(r#"relay_escalations_stopped_total{reason="silenced"}"#)
            .await,
        Some(1.0)
    );
    assert_eq!(
        relay
            .metric(r#"relay_silence_checks_total{result="silenced"}"#)
            .await,
        Some(1.0)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn labels_with_backslashes_and_quotes_are_matched_exactly_and_unknown_alerts_keep_paging() {
    let am = alertmanager().await;
    let ntfy = fake_vendor(200).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let relay = relay_with_alertmanager(&ntfy, &am.url, dir.path()).await;
    let share = r#"\\fileserver\backup "C:\new""#;
    // Alertmanager holds the alert, firing and not silenced, with a label that needs escaping.
    let labels = json!({"alertname": "ShareFull", "severity": "critical", "share": share});
    reqwest::Client::new()
        .post(format!("{}/api/v2/alerts", am.url))
        .json(&json!([{"labels": labels}]))
        .send()
        .await
        .expect("post alert");
    let fingerprint = eventually("alert in alertmanager", Duration::from_secs(10), || async {
        alerts_named(&am, "ShareFull", "")
            .await?
            .first()
            .and_then(|a| a["fingerprint"].as_str())
            .map(str::to_owned)
    })
    .await;
    let mut payload = webhook_with("ShareFull", &fingerprint);
    payload["groupLabels"] = json!({"alertname": "ShareFull", "share": share});
    payload["alerts"][0]["labels"] = labels.clone();
    relay.webhook(&payload).await;
    // A group Alertmanager never heard of (the relay's own kind of alert): not a silence.
    relay
        .webhook(&webhook("NeverInAlertmanager", "firing"))
        .await;
    let pushed = wait_pushes(&ntfy, 4).await;
    let secondaries = pushed
        .iter()
        .filter(|p| p["topic"] == "oncall-secondary")
        .count();
    assert_eq!(secondaries, 2, "both escalated: {pushed:#?}");
    assert_eq!(
        relay
            .metric(r#"relay_escalations_stopped_total{reason="silenced"}"#)
            .await,
        Some(0.0),
        "neither was taken for silenced"
    );
    assert!(
        relay
            .metric(r#"relay_silence_checks_total{result="paging"}"#)
            .await
            >= Some(1.0)
    );
    assert!(
        relay
            .metric(r#"relay_silence_checks_total{result="unknown"}"#)
            .await
            >= Some(1.0)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_alertmanager_means_escalating_anyway() {
    let ntfy = fake_vendor(200).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let relay = relay_with_alertmanager(&ntfy, "http://127.0.0.1:9", dir.path()).await;
    relay.webhook(&webhook("GatewayDown", "firing")).await;
    let pushed = wait_pushes(&ntfy, 2).await;
    assert_eq!(pushed[1]["topic"], "oncall-secondary");
    assert!(
        relay
            .metric(r#"relay_silence_checks_total{result="error"}"#)
            .await
            .expect("metric")
            >= 1.0
    );
}
