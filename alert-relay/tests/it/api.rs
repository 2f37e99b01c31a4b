//! The read side of the API: open incidents (who was paged, what comes next), dead letters.

use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::*;

fn parse_time(value: &Value) -> std::time::SystemTime {
    humantime::parse_rfc3339(value.as_str().expect("a time string")).expect("RFC 3339")
}

#[tokio::test(flavor = "multi_thread")]
async fn open_incidents_say_who_was_paged_and_what_comes_next() {
    let ntfy = fake_vendor(200).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let relay = TestRelay::paging(&ntfy, dir.path()).await;

    let (status, body) = relay.get("/api/v1/incidents", None).await;
    assert_eq!(status, 401, "{body}");
    let (status, body) = relay.get("/api/v1/incidents", Some("wrong")).await;
    assert_eq!(status, 401, "{body}");
    let (status, body) = relay.get("/api/v1/incidents", Some(TOKEN)).await;
    assert_eq!(status, 200);
    assert_eq!(body["incidents"], json!([]));

    relay.webhook(&webhook("GatewayDown", "firing")).await;
    wait_pushes(&ntfy, 1).await;
    let (status, body) = relay.get("/api/v1/incidents", Some(TOKEN)).await;
    assert_eq!(status, 200);
    let incidents = body["incidents"].as_array().expect("a list");
    assert_eq!(incidents.len(), 1, "{body}");
    let incident = &incidents[0];
    assert_eq!(incident["policy"], "critical");
    assert_eq!(incident["state"], "escalating");
    assert_eq!(
        incident["group_labels"],
        json!({"alertname": "GatewayDown"})
    );
    assert_eq!(incident["common_labels"]["service"], "gateway");
    assert_eq!(
        incident["summary"],
        "The gateway answers too many requests with 5xx."
    );
    assert_eq!(incident["alerts_firing"], 1);
    assert_eq!(incident["steps_fired"], 1);
    assert_eq!(incident["steps_total"], 2);
    assert_eq!(incident["notified"], json!(["ntfy.primary"]));
    assert_eq!(incident["next_step"]["targets"], json!(["ntfy.secondary"]));
    let wait = parse_time(&incident["next_step"]["at"])
        .duration_since(parse_time(&incident["started_at"]))
        .expect("the next step comes after the start");
    assert_eq!(wait, Duration::from_secs(3600), "secondary after 1h");

    let id = incident["id"].as_i64().expect("id");
    let (status, _) = relay
        .post(&format!("/api/v1/incidents/{id}/ack"), Some(TOKEN), "")
        .await;
    assert_eq!(status, 200);
    let (_, body) = relay.get("/api/v1/incidents", Some(TOKEN)).await;
    assert_eq!(body["incidents"][0]["state"], "acknowledged");
    assert_eq!(body["incidents"][0]["next_step"], Value::Null);

    relay.webhook(&webhook("GatewayDown", "resolved")).await;
    let (_, body) = relay.get("/api/v1/incidents", Some(TOKEN)).await;
    assert_eq!(
        body["incidents"],
        json!([]),
        "a resolved incident is closed"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn dead_letters_list_what_a_vendor_refused_and_why() {
    let ntfy = fake_vendor(400).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let relay = TestRelay::paging(&ntfy, dir.path()).await;
    let (status, _) = relay.get("/api/v1/dead-letters", None).await;
    assert_eq!(status, 401);

    relay.webhook(&webhook("GatewayDown", "firing")).await;
    let letters = relay.wait_dead_letters().await;
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0]["target"], "ntfy.primary");
    assert_eq!(letters[0]["attempts"], 1);
    let reason = letters[0]["reason"].as_str().expect("reason");
    assert!(reason.contains("400"), "{reason}");
    assert!(parse_time(&letters[0]["dead_at"]) >= parse_time(&letters[0]["created_at"]));

    let (_, body) = relay.get("/api/v1/dead-letters?limit=0", Some(TOKEN)).await;
    assert_eq!(
        body["dead_letters"].as_array().map(Vec::len),
        Some(1),
        "limit is at least 1"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_incidents_timeline_says_what_happened_in_order_with_each_vendors_answer() {
    let ntfy = fake_vendor(200).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let relay = TestRelay::paging(&ntfy, dir.path()).await;
    let (status, _) = relay.get("/api/v1/incidents/1/events", None).await;
    assert_eq!(status, 401, "the timeline needs the token");
    let (status, body) = relay.get("/api/v1/incidents/1/events", Some(TOKEN)).await;
    assert_eq!(status, 404, "{body}");

    relay.webhook(&webhook("GatewayDown", "firing")).await;
    wait_pushes(&ntfy, 1).await;
    let (_, body) = relay.get("/api/v1/incidents", Some(TOKEN)).await;
    let id = body["incidents"][0]["id"].as_i64().expect("id");
    let (status, _) = relay
        .post(&format!("/api/v1/incidents/{id}/ack"), Some(TOKEN), "")
        .await;
    assert_eq!(status, 200);
    wait_pushes(&ntfy, 2).await;
    relay.webhook(&webhook("GatewayDown", "resolved")).await;
    let kinds = || async {
        let (_, body) = relay
            .get(&format!("/api/v1/incidents/{id}/events"), Some(TOKEN))
            .await;
        let kinds: Vec<String> = body["events"]
            .as_array()
            .expect("events")
            .iter()
            .map(|e| e["kind"].as_str().expect("kind").to_owned())
            .collect();
        (kinds.len() >= 9).then_some(body)
    };
    let body = eventually("the whole timeline", Duration::from_secs(10), kinds).await;
    let events = body["events"].as_array().expect("events");
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["kind"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        kinds,
        [
            "started",
            "paged",
            "delivered",
            "notice",
            "acknowledged",
            "delivered",
            "resolved",
            "notice",
            "delivered",
        ],
        "{body}"
    );
    assert_eq!(events[1]["detail"], "step 1 → ntfy.primary");
    assert_eq!(events[2]["target"], "ntfy.primary");
    assert!(
        events[2]["detail"]
            .as_str()
            .is_some_and(|d| d.starts_with("firing: attempt 1, ")),
        "{body}"
    );
    assert!(events[4]["actor"].is_string(), "who acknowledged: {body}");
    let times: Vec<std::time::SystemTime> = events.iter().map(|e| parse_time(&e["at"])).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "in order: {body}");
}
