//! The History and Dead letters pages over HTTP, as a person behind the team's
//! authenticating proxy reads them: resolved incidents listed newest first, filtered and a
//! page at a time; who carried the pager, for a known scenario of pages and
//! acknowledgements (API, console and push link); what could not be sent and why; hostile
//! values as text. And retention, driven with an explicit `now`: old closed incidents go
//! with their timelines, open ones stay.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use alert_relay::config::Config;
use alert_relay::domain::Timestamp;
use alert_relay::server::Relay;
use reqwest::StatusCode;
use serde_json::{json, Value};
use wiremock::ResponseTemplate;

use crate::helpers::*;

/// A policy whose critical alerts page alice and warnings page bob, each in `zones`, with
/// people signed in by the proxy's `X-Forwarded-Email` from the loopback address.
fn policy(dir: &Path, ntfy: &str, zones: (&str, &str)) -> PathBuf {
    let text = format!(
        r#"
server:
  public_url: ${{PUBLIC_URL:-http://127.0.0.1:1}}
  webhook_auth:
    bearer_token: "{TOKEN}"
  ack_secret: "an-ack-secret-of-sufficient-length"
  console_auth:
    proxy: {{header: X-Forwarded-Email, trusted_proxies: ["127.0.0.1"]}}
delivery: {{timeout: 2s, initial_backoff: 100ms, max_backoff: 400ms, give_up_after: 1h}}
targets:
  ntfy:
    primary: {{url: "{ntfy}", topic: oncall-primary, token: tk_e2e}}
people:
  alice:
    time_zone: {alice}
    email: alice@example.org
    ntfy: {{url: "{ntfy}", topic: alice-phone, token: tk_e2e}}
  bob:
    time_zone: {bob}
    ntfy: {{url: "{ntfy}", topic: bob-phone, token: tk_e2e}}
policies:
  - name: critical
    matchers: ['severity="critical"']
    steps: [{{after: 0s, notify: [person.alice]}}]
  - name: warning
    matchers: ['severity="warning"']
    steps: [{{after: 0s, notify: [person.bob]}}]
"#,
        alice = zones.0,
        bob = zones.1,
    );
    let path = dir.join("policy.yml");
    std::fs::write(&path, text).expect("write policy");
    path
}

/// A page as `who` sees it through the proxy.
async fn page(relay: &TestRelay, path: &str, who: &str) -> (StatusCode, String) {
    let answer = reqwest::Client::new()
        .get(format!("{}{path}", relay.url))
        .header("x-forwarded-email", who)
        .send()
        .await
        .expect("page");
    let status = answer.status();
    (status, answer.text().await.expect("body"))
}

/// The incidents a page lists, in order.
fn listed(html: &str) -> Vec<i64> {
    html.split("href=\"/incidents/")
        .skip(1)
        .filter_map(|rest| rest.split('"').next()?.parse().ok())
        .collect()
}

/// The link of an anchor with `rel`, as a browser would follow it.
fn link(html: &str, rel: &str) -> Option<String> {
    let at = html.find(&format!("rel=\"{rel}\""))?;
    let start = html[..at].rfind("href=\"")? + 6;
    let end = start + html[start..].find('"')?;
    Some(html[start..end].replace("&#38;", "&").replace("&amp;", "&"))
}

fn alert(name: &str, severity: &str, status: &str) -> Value {
    let mut w = webhook(name, status);
    w["commonLabels"]["severity"] = json!(severity);
    w["alerts"][0]["labels"]["severity"] = json!(severity);
    w
}

async fn incident_id(relay: &TestRelay, name: &str) -> i64 {
    let (_, body) = relay.get("/api/v1/incidents?limit=1000", Some(TOKEN)).await;
    body["incidents"]
        .as_array()
        .and_then(|all| all.iter().find(|i| i["common_labels"]["alertname"] == name))
        .and_then(|i| i["id"].as_i64())
        .unwrap_or_else(|| panic!("{name} is open: {body}"))
}

async fn events(relay: &TestRelay, id: i64) -> Vec<Value> {
    let (_, body) = relay
        .get(&format!("/api/v1/incidents/{id}/events"), Some(TOKEN))
        .await;
    body["events"].as_array().cloned().unwrap_or_default()
}

/// Waits until incident `id`'s page was delivered (and recorded).
async fn delivered(relay: &TestRelay, id: i64) {
    eventually("the page delivered", Duration::from_secs(10), || async {
        events(relay, id)
            .await
            .iter()
            .any(|e| e["kind"] == "delivered")
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn resolved_incidents_are_listed_newest_first_filtered_and_paged() {
    let ntfy = fake_vendor(200).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = policy(dir.path(), &ntfy.uri(), ("UTC", "UTC"));
    let relay = TestRelay::start_self_linked(&policy, &dir.path().join("data")).await;
    for i in 0..52 {
        let name = format!("Alert{i:02}");
        relay.webhook(&alert(&name, "critical", "firing")).await;
        relay.webhook(&alert(&name, "critical", "resolved")).await;
    }
    let mut hostile = alert("<script>alert(1)</script>", "warning", "firing");
    hostile["commonAnnotations"]["summary"] = json!("\"><img src=x onerror=alert(2)>");
    relay.webhook(&hostile).await;
    let hostile_id = incident_id(&relay, "<script>alert(1)</script>").await;
    hostile["status"] = json!("resolved");
    hostile["alerts"][0]["status"] = json!("resolved");
    relay.webhook(&hostile).await;
    relay
        .webhook(&alert("StillFiring", "critical", "firing"))
        .await;
    let open = incident_id(&relay, "StillFiring").await;

    let (status, first) = page(&relay, "/history", "alice").await;
    assert_eq!(status, StatusCode::OK);
    let ids = listed(&first);
    assert_eq!(ids.len(), 50, "a page of 50");
    assert_eq!(ids[0], hostile_id, "the last resolved first");
    assert!(!ids.contains(&open), "an open incident is not history");
    assert!(first.contains("Alert51") && !first.contains("StillFiring"));
    assert!(!first.contains("<script>alert") && !first.contains("<img src=x"));
    assert!(first.contains("&#60;script&#62;alert(1)&#60;/script&#62;"));
    assert!(
        link(&first, "prev").is_none(),
        "nothing newer than the newest"
    );

    let older = link(&first, "next").expect("an older page");
    assert!(
        older.starts_with("/history?") && older.contains("older="),
        "{older}"
    );
    let (_, second) = page(&relay, &older, "alice").await;
    let rest = listed(&second);
    assert_eq!(rest.len(), 3, "53 resolved in all");
    assert!(rest.iter().all(|id| !ids.contains(id)), "no row twice");
    assert!(link(&second, "next").is_none(), "the last page");
    let newer = link(&second, "prev").expect("a newer page");
    let (_, back) = page(&relay, &newer, "alice").await;
    assert_eq!(listed(&back), ids, "back where we were");

    let (_, one) = page(&relay, "/history?alertname=Alert07", "alice").await;
    assert_eq!(listed(&one).len(), 1);
    assert!(one.contains("Alert07"));
    let (_, warning) = page(&relay, "/history?severity=Warning", "alice").await;
    assert_eq!(
        listed(&warning),
        [hostile_id],
        "severity as the relay reads it"
    );
    let (_, none) = page(&relay, "/history?policy=warning&alertname=Alert07", "alice").await;
    assert!(listed(&none).is_empty() && none.contains("match these filters"));
    let tomorrow = jiff::Timestamp::now()
        .to_zoned_datetime(jiff::tz::TimeZone::UTC)
        .date()
        .tomorrow()
        .expect("a date");
    let (_, later) = page(&relay, &format!("/history?from={tomorrow}"), "alice").await;
    assert!(
        listed(&later).is_empty(),
        "nothing resolved from tomorrow on"
    );
    let (status, bad) = page(
        &relay,
        "/history?from=%3Cb%3Ex&alertname=%22%3E%3Cb%3E",
        "alice",
    )
    .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "a bad date is left out, not an error"
    );
    assert!(
        bad.contains("is not a date") && !bad.contains("<b>"),
        "{bad}"
    );
    assert!(
        bad.contains("value=\"&#34;&#62;&#60;b&#62;\""),
        "the filter shown as text"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn who_carried_the_pager_is_counted_per_person() {
    // Alice's zone makes it mid-afternoon for her now, Bob's the middle of the night.
    let hour = i64::from(
        jiff::Timestamp::now()
            .to_zoned_datetime(jiff::tz::TimeZone::UTC)
            .hour(),
    );
    let zone = |local: i64| {
        let offset = (local - hour + 36) % 24 - 12; // -12..=11
        match offset {
            0 => "Etc/GMT".to_owned(),
            o if o > 0 => format!("Etc/GMT-{o}"),
            o => format!("Etc/GMT+{}", -o),
        }
    };
    let (alice_zone, bob_zone) = (zone(14), zone(2));
    let ntfy = fake_vendor(200).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = policy(dir.path(), &ntfy.uri(), (&alice_zone, &bob_zone));
    let relay = TestRelay::start_self_linked(&policy, &dir.path().join("data")).await;
    let mut ids = Vec::new();
    for (name, severity) in [
        ("ByApi", "critical"),
        ("ByConsole", "critical"),
        ("ByLink", "critical"),
        ("BobByApi", "warning"),
        ("BobNotAcked", "warning"),
    ] {
        relay.webhook(&alert(name, severity, "firing")).await;
        let id = incident_id(&relay, name).await;
        delivered(&relay, id).await;
        ids.push(id);
    }
    let ack = |id: i64, by: &'static str| {
        let url = format!("{}/api/v1/incidents/{id}/ack", relay.url);
        async move {
            let answer = reqwest::Client::new()
                .post(url)
                .bearer_auth(TOKEN)
                .header("x-acknowledged-by", by)
                .send()
                .await
                .expect("ack");
            assert_eq!(answer.status(), StatusCode::OK);
        }
    };
    ack(ids[0], "alice@example.org").await;
    ack(ids[3], "bob").await;
    let (_, incident) = page(&relay, &format!("/incidents/{}", ids[1]), "alice").await;
    let at = incident.find("name=\"csrf\" value=\"").expect("a form") + 19;
    let csrf = incident[at..].split('"').next().expect("token");
    let pressed = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
        .post(format!("{}/incidents/{}/ack", relay.url, ids[1]))
        .header("x-forwarded-email", "alice@example.org")
        .header("origin", &relay.url)
        .form(&[("csrf", csrf)])
        .send()
        .await
        .expect("acknowledge in the console");
    assert_eq!(pressed.status(), StatusCode::SEE_OTHER);
    let link_page = pushes(&ntfy)
        .await
        .into_iter()
        .find(|p| p["title"].as_str().is_some_and(|t| t.contains("ByLink")))
        .expect("the ByLink page");
    let ack_link = link_page["actions"][1]["url"].as_str().expect("ack link");
    let linked = reqwest::Client::new()
        .post(ack_link)
        .send()
        .await
        .expect("the link");
    assert_eq!(linked.status(), StatusCode::OK);
    assert_eq!(
        events(&relay, ids[2])
            .await
            .iter()
            .filter(|e| e["actor"] == "ack link")
            .count(),
        1
    );

    let (status, html) = page(&relay, "/history?days=7", "bob").await;
    assert_eq!(status, StatusCode::OK);
    let row = |person: &str, zone: &str| {
        let start = html
            .find(&format!(
                "<th scope=\"row\">{person} <span class=\"muted zone\">{zone}</span></th>"
            ))
            .unwrap_or_else(|| panic!("a row for {person} in {zone}: {html}"));
        let cells: Vec<String> = html[start..]
            .split("<td>")
            .skip(1)
            .take(4)
            .map(|c| c.split("</td>").next().unwrap_or_default().to_owned())
            .collect();
        cells
    };
    let alice = row("alice", &alice_zone);
    assert_eq!(
        alice[..3],
        ["3", "0", "3"],
        "pages, outside hours, acknowledged"
    );
    assert_ne!(alice[3], "—", "a median time to acknowledge");
    let bob = row("bob", &bob_zone);
    assert_eq!(
        bob[..3],
        ["2", "2", "1"],
        "pages, outside hours, acknowledged"
    );
    assert!(
        !html.contains("Not counted for anyone"),
        "every acknowledgement is someone's"
    );
    assert!(html.contains("the last 7 days"));
}

#[tokio::test(flavor = "multi_thread")]
async fn dead_letters_are_listed_with_the_vendors_reason_and_the_targets() {
    let refusing = scripted_vendor(vec![(
        ResponseTemplate::new(400)
            .set_body_string(r#"{"code":40001,"error":"<script>alert(5)</script> bad topic"}"#),
        u64::MAX,
    )])
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = policy(dir.path(), &refusing.uri(), ("UTC", "UTC"));
    let relay = TestRelay::start_self_linked(&policy, &dir.path().join("data")).await;
    relay
        .webhook(&alert("GatewayDown", "critical", "firing"))
        .await;
    let id = incident_id(&relay, "GatewayDown").await;
    relay.wait_dead_letters().await;
    let (status, html) = page(&relay, "/dead-letters", "alice").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        html.contains(&format!("href=\"/incidents/{id}\"")),
        "{html}"
    );
    assert!(
        html.contains("person.alice") && html.contains("ntfy.primary"),
        "{html}"
    );
    assert!(
        html.contains("400") && html.contains("bad topic"),
        "the vendor's reason: {html}"
    );
    assert!(!html.contains("<script>alert(5)"), "the reason is text");
    assert!(html.contains("Not sent (1)"), "{html}");
    let (_, now) = page(&relay, "/", "alice").await;
    assert!(
        now.contains("href=\"/dead-letters\""),
        "in the console's menu"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn retention_prunes_old_closed_incidents_and_keeps_open_ones() {
    let ntfy = fake_vendor(200).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = policy(dir.path(), &ntfy.uri(), ("UTC", "UTC"));
    let text = format!(
        "{}retention: 30d\n",
        std::fs::read_to_string(&path).expect("policy")
    );
    let config = Config::parse(&text, &path, &|_| None).unwrap_or_else(|e| panic!("{e}"));
    let relay = Arc::new(Relay::new(config, &dir.path().join("data")).expect("relay"));
    let client = TestRelay::serve(Arc::clone(&relay)).await;
    client.webhook(&alert("Old", "critical", "firing")).await;
    client.webhook(&alert("Open", "critical", "firing")).await;
    let (old, open) = (
        incident_id(&client, "Old").await,
        incident_id(&client, "Open").await,
    );
    client.webhook(&alert("Old", "critical", "resolved")).await;
    // A closed incident whose resolve notice still waits is not pruned yet.
    eventually(
        "the resolve notice sent",
        Duration::from_secs(10),
        || async {
            events(&client, old)
                .await
                .iter()
                .any(|e| {
                    e["kind"] == "delivered"
                        && e["detail"]
                            .as_str()
                            .is_some_and(|d| d.starts_with("resolved"))
                })
                .then_some(())
        },
    )
    .await;

    let now = Timestamp::now();
    let day = Duration::from_secs(86_400);
    let early = relay.prune(now.plus(day * 29)).await.expect("prune");
    assert_eq!(early.incidents, 0, "closed 29 days ago: kept");
    let pruned = relay.prune(now.plus(day * 31)).await.expect("prune");
    assert_eq!(pruned.incidents, 1, "{pruned:?}");
    assert!(pruned.events >= 3 && pruned.outbox >= 2, "{pruned:?}");
    assert!(
        events(&client, old).await.is_empty(),
        "its timeline went with it"
    );
    assert!(
        !events(&client, open).await.is_empty(),
        "the open one keeps its own"
    );
    assert_eq!(
        incident_id(&client, "Open").await,
        open,
        "never an open incident"
    );
    let again = relay.prune(now.plus(day * 400)).await.expect("prune");
    assert_eq!(
        again.incidents, 0,
        "an open incident is never pruned, however old"
    );
    assert_eq!(
        client
            .metric("relay_pruned_rows_total{table=\"incidents\"}")
            .await,
        Some(1.0)
    );
}
