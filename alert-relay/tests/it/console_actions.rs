//! The console's actions on an incident by hand: Escalate now pages the next step at once;
//! Resolve closes it and tells those paged; Silence creates a silence in a real Alertmanager,
//! created by the signed-in person, and stops the escalation at once.

use reqwest::StatusCode;
use serde_json::Value;

use crate::console::{browser, console_policy, csrf, page, sign_in};
use crate::helpers::*;

async fn act(
    relay: &TestRelay,
    cookie: &str,
    id: i64,
    action: &str,
    extra: &[(&str, &str)],
) -> StatusCode {
    let (_, html) = page(relay, &format!("/incidents/{id}"), cookie).await;
    let token = csrf(&html);
    let mut form: Vec<(&str, &str)> = vec![("csrf", token.as_str())];
    form.extend_from_slice(extra);
    browser()
        .post(format!("{}/incidents/{id}/{action}", relay.url))
        .header("cookie", cookie)
        .header("origin", &relay.url)
        .form(&form)
        .send()
        .await
        .expect("action")
        .status()
}

async fn event_kinds(relay: &TestRelay, id: i64) -> Vec<(String, Value)> {
    let (_, body) = relay
        .get(&format!("/api/v1/incidents/{id}/events"), Some(TOKEN))
        .await;
    body["events"]
        .as_array()
        .map(|all| {
            all.iter()
                .map(|e| {
                    (
                        e["kind"].as_str().unwrap_or("").to_owned(),
                        e["actor"].clone(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

async fn first_incident(relay: &TestRelay) -> i64 {
    let (_, body) = relay.get("/api/v1/incidents", Some(TOKEN)).await;
    body["incidents"][0]["id"]
        .as_i64()
        .expect("an open incident")
}

#[tokio::test(flavor = "multi_thread")]
async fn escalate_now_pages_the_next_step_and_resolve_closes_it() {
    let ntfy = fake_vendor(200).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = console_policy(dir.path(), &ntfy, "");
    let relay = TestRelay::start_self_linked(&policy, &dir.path().join("data")).await;
    relay.webhook(&webhook("GatewayDown", "firing")).await;
    let cookie = sign_in(&relay, &ntfy, "bob", "bob-phone").await;
    let id = first_incident(&relay).await;
    wait_pushes(&ntfy, 2).await; // the sign-in link and step 1
    assert_eq!(
        act(&relay, &cookie, id, "escalate", &[]).await,
        StatusCode::SEE_OTHER
    );
    let pushed = eventually(
        "step 2, an hour early",
        std::time::Duration::from_secs(5),
        || async {
            let got = pushes(&ntfy).await;
            got.iter()
                .any(|p| p["topic"] == "oncall-secondary")
                .then_some(got)
        },
    )
    .await;
    assert_eq!(
        pushed
            .iter()
            .filter(|p| p["topic"] == "oncall-secondary")
            .count(),
        1
    );
    assert!(event_kinds(&relay, id)
        .await
        .contains(&("escalated".into(), Value::from("bob"))));
    // Nothing more planned: a second press changes nothing, and the page has no button.
    let (_, html) = page(&relay, &format!("/incidents/{id}"), &cookie).await;
    assert!(!html.contains(">Escalate now<"), "{html}");

    assert_eq!(
        act(&relay, &cookie, id, "resolve", &[]).await,
        StatusCode::SEE_OTHER
    );
    let kinds = event_kinds(&relay, id).await;
    assert!(
        kinds.contains(&("resolved".into(), Value::from("bob"))),
        "{kinds:?}"
    );
    let (_, body) = relay.get("/api/v1/incidents", Some(TOKEN)).await;
    assert_eq!(
        body["incidents"].as_array().map(Vec::len),
        Some(0),
        "closed"
    );
    // Those paged hear of it (the resolved notice to both steps' topics).
    eventually(
        "the resolved notices",
        std::time::Duration::from_secs(5),
        || async {
            let resolved = pushes(&ntfy)
                .await
                .iter()
                .filter(|p| {
                    p["tags"]
                        .as_array()
                        .is_some_and(|t| t.iter().any(|x| x == "white_check_mark"))
                })
                .count();
            (resolved == 2).then_some(())
        },
    )
    .await;
    // Without the form token, nothing happens.
    let refused = browser()
        .post(format!("{}/incidents/{id}/escalate", relay.url))
        .header("cookie", &cookie)
        .form(&[("csrf", "forged")])
        .send()
        .await
        .expect("forged");
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
}

#[tokio::test(flavor = "multi_thread")]
async fn silence_for_an_hour_creates_it_in_alertmanager_as_the_person_and_stops_paging() {
    let am = start_alertmanager("route:\n  receiver: none\nreceivers:\n  - name: none\n").await;
    let ntfy = fake_vendor(200).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = console_policy(
        dir.path(),
        &ntfy,
        &format!("  alertmanager_url: {}\n", am.url),
    );
    let relay = TestRelay::start_self_linked(&policy, &dir.path().join("data")).await;
    relay.webhook(&webhook("GatewayDown", "firing")).await;
    let cookie = sign_in(&relay, &ntfy, "alice", "alice-phone").await;
    let id = first_incident(&relay).await;
    assert_eq!(
        act(&relay, &cookie, id, "silence", &[("for", "1h")]).await,
        StatusCode::SEE_OTHER
    );
    let silences: Vec<Value> = reqwest::get(format!("{}/api/v2/silences", am.url))
        .await
        .expect("silences")
        .json()
        .await
        .expect("json");
    assert_eq!(silences.len(), 1, "{silences:?}");
    let s = &silences[0];
    assert_eq!(s["createdBy"], "alice");
    assert_eq!(s["status"]["state"], "active");
    let matchers = s["matchers"].as_array().expect("matchers");
    assert!(
        matchers.iter().any(|m| m["name"] == "alertname"
            && m["value"] == "GatewayDown"
            && m["isEqual"] == true),
        "{matchers:?}"
    );
    let kinds = event_kinds(&relay, id).await;
    assert!(kinds.iter().any(|(k, _)| k == "silenced"), "{kinds:?}");
    let (_, body) = relay.get("/api/v1/incidents", Some(TOKEN)).await;
    assert_eq!(body["incidents"][0]["state"], "silenced");
    assert!(
        body["incidents"][0]["next_step"].is_null(),
        "no step to come"
    );
    // An end in the past is refused with a reason, and makes no silence.
    let status = act(
        &relay,
        &cookie,
        id,
        "silence",
        &[("for", "until"), ("until", "2001-01-01T00:00")],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}
