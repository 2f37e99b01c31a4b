//! The console's Schedules and Me pages over HTTP, as a browser without JavaScript uses them:
//! who is on call with overrides marked; covering a shift (then a step pages the covering
//! person, through the fake ntfy); forms refused without their token or from another site;
//! someone else's override not removable; the pages one received and one's sessions, ending
//! one of them only ([`me`]); hostile values (override creators, browsers, alert names) shown
//! as text.

mod me;

use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use wiremock::MockServer;

use crate::console::{browser, csrf, links, page};
use crate::helpers::*;

pub(super) const HOSTILE: &str = "<script>alert(1)</script>";

/// alice (Berlin), bob and carol, reachable through the fake ntfy; schedule `primary` (UTC)
/// whose daily rotation is `rotation`; every critical alert pages `schedule.primary`.
pub(super) fn policy(dir: &Path, ntfy: &MockServer, rotation: &str) -> PathBuf {
    let text = format!(
        r#"
server:
  public_url: ${{PUBLIC_URL:-http://127.0.0.1:1}}
  webhook_auth:
    bearer_token: "{TOKEN}"
  ack_secret: "an-ack-secret-of-sufficient-length"
delivery:
  timeout: 2s
  initial_backoff: 100ms
  max_backoff: 400ms
people:
  alice:
    time_zone: Europe/Berlin
    ntfy: {{url: "{0}", topic: alice-phone, token: tk_e2e}}
  bob: {{ntfy: {{url: "{0}", topic: bob-phone, token: tk_e2e}}}}
  carol: {{ntfy: {{url: "{0}", topic: carol-phone, token: tk_e2e}}}}
schedules:
  primary:
    time_zone: UTC
    handoff_notices: false
    rotations:
      - {{people: {rotation}, shift: 1d, handoff: {{time: "00:00"}}, start: 2020-01-01}}
policies:
  - name: critical
    matchers: ['severity="critical"']
    steps:
      - after: 0s
        notify: [schedule.primary]
"#,
        ntfy.uri()
    );
    let path = dir.join("policy.yml");
    std::fs::write(&path, text).expect("write policy");
    path
}

/// Signs `name` in by the link pushed to `topic`, from a browser calling itself `agent`;
/// returns the session cookie (`relay_session=…`).
pub(super) async fn sign_in(
    relay: &TestRelay,
    ntfy: &MockServer,
    name: &str,
    topic: &str,
    agent: &str,
) -> String {
    let before = links(ntfy, topic).await.len();
    let asked = browser()
        .post(format!("{}/signin", relay.url))
        .form(&[("name", name)])
        .send()
        .await
        .expect("sign-in request");
    assert_eq!(asked.status(), StatusCode::OK);
    let link = eventually("the pushed link", Duration::from_secs(5), || async {
        links(ntfy, topic).await.get(before).cloned()
    })
    .await;
    let done = browser()
        .post(&link)
        .header("user-agent", agent)
        .send()
        .await
        .expect("sign in");
    assert_eq!(done.status(), StatusCode::SEE_OTHER);
    let cookie = done.headers()["set-cookie"].to_str().expect("cookie");
    cookie.split(';').next().expect("name=value").to_owned()
}

/// Posts a console form as a browser on `origin` would; the status, the redirect and the page.
pub(super) async fn submit(
    relay: &TestRelay,
    path: &str,
    cookie: &str,
    origin: &str,
    fields: &[(&str, &str)],
) -> (StatusCode, String, String) {
    let answer = browser()
        .post(format!("{}{path}", relay.url))
        .header("cookie", cookie)
        .header("origin", origin)
        .form(fields)
        .send()
        .await
        .expect("form");
    let status = answer.status();
    let location = answer
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (status, location, answer.text().await.expect("body"))
}

/// The value of the first `name` field after `from` in `html`.
pub(super) fn field(html: &str, from: usize, name: &str) -> String {
    let key = format!("name=\"{name}\" value=\"");
    let at = html[from..].find(&key).expect("the field") + from + key.len();
    html[at..].split('"').next().expect("value").to_owned()
}

/// The fields (person, start, end) of each "Cover this shift" form of schedule `primary`.
fn cover_forms(html: &str) -> Vec<[String; 3]> {
    html.match_indices("action=\"/schedules/primary/cover\"")
        .map(|(at, _)| ["person", "start", "end"].map(|name| field(html, at, name)))
        .collect()
}

async fn overrides(relay: &TestRelay) -> Vec<Value> {
    let (status, body) = relay.get("/api/v1/overrides", Some(TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    body["overrides"].as_array().cloned().unwrap_or_default()
}

/// The pages pushed to `topic` whose title names `alertname` (not sign-in links).
pub(super) async fn paged(ntfy: &MockServer, topic: &str, alertname: &str) -> usize {
    pushes(ntfy)
        .await
        .iter()
        .filter(|p| p["topic"] == topic)
        .filter(|p| p["title"].as_str().is_some_and(|t| t.contains(alertname)))
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn covering_a_shift_puts_you_on_call_and_the_next_page_is_yours() {
    let ntfy = fake_vendor(200).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = policy(dir.path(), &ntfy, "[bob]");
    let relay = TestRelay::start_self_linked(&policy, &dir.path().join("data")).await;
    let alice = sign_in(&relay, &ntfy, "alice", "alice-phone", "Firefox").await;

    let (status, list) = page(&relay, "/schedules", &alice).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        list.contains("href=\"/schedules/primary\"") && list.contains("Now: <strong>bob</strong>"),
        "{list}"
    );
    let (status, before) = page(&relay, "/schedules/primary", &alice).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        before.contains("On call now: <strong>bob</strong>"),
        "{before}"
    );
    assert!(
        before.contains("Times in Europe/Berlin (yours); the schedule runs in UTC"),
        "{before}"
    );
    assert!(
        before.contains(&format!(
            "href=\"{}/calendar/schedule-primary.ics?token=",
            relay.url
        )),
        "{before}"
    );
    assert!(
        before.contains(&format!(
            "href=\"{}/calendar/person-alice.ics?token=",
            relay.url
        )),
        "{before}"
    );
    let [person, start, end] = cover_forms(&before)
        .into_iter()
        .next()
        .expect("a shift to cover");
    assert_eq!(person, "bob");
    let token = csrf(&before);
    let fields = |csrf: &str| -> Vec<(&'static str, String)> {
        vec![
            ("csrf", csrf.to_owned()),
            ("person", person.clone()),
            ("start", start.clone()),
            ("end", end.clone()),
        ]
    };
    let cover = |fields: Vec<(&'static str, String)>, origin: String| {
        let (relay, alice) = (&relay, &alice);
        async move {
            let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
            submit(relay, "/schedules/primary/cover", alice, &origin, &fields).await
        }
    };
    let (status, _, _) = cover(fields(""), relay.url.clone()).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "no form token");
    let (status, _, _) = cover(fields(&token), "https://evil.example".into()).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "another site");
    assert!(
        overrides(&relay).await.is_empty(),
        "nothing created by a refused form"
    );

    let (status, location, _) = cover(fields(&token), relay.url.clone()).await;
    assert_eq!(
        (status, location.as_str()),
        (StatusCode::SEE_OTHER, "/schedules/primary?done=covered")
    );
    let made = overrides(&relay).await;
    assert_eq!(made.len(), 1, "{made:?}");
    assert_eq!(
        (
            &made[0]["person"],
            &made[0]["replaces"],
            &made[0]["created_by"],
            &made[0]["schedule"]
        ),
        (
            &json!("alice"),
            &json!("bob"),
            &json!("alice"),
            &json!("primary")
        )
    );
    let (_, after) = page(&relay, "/schedules/primary?done=covered", &alice).await;
    assert!(after.contains("Done: you cover that shift"), "{after}");
    assert!(
        after.contains("On call now: <strong>alice</strong>"),
        "{after}"
    );
    assert!(
        after.contains(&format!("override {}", made[0]["id"])),
        "the shift is marked: {after}"
    );
    assert!(after.contains("In place of bob, made by alice."), "{after}");
    assert!(after.contains("Remove this override"), "{after}");
    // The same form again: the shift is alice's now, and the page says why nothing happened.
    let (status, _, again) = cover(fields(&token), relay.url.clone()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        again.contains("role=\"alert\"") && again.contains("has changed since the page was shown"),
        "{again}"
    );
    assert_eq!(overrides(&relay).await.len(), 1);

    // A step to the schedule now pages alice, not bob.
    assert_eq!(
        relay.webhook(&webhook("GatewayDown", "firing")).await.0,
        200
    );
    eventually("alice paged", Duration::from_secs(10), || async {
        (paged(&ntfy, "alice-phone", "GatewayDown").await == 1).then_some(())
    })
    .await;
    assert_eq!(
        paged(&ntfy, "bob-phone", "GatewayDown").await,
        0,
        "bob is covered"
    );

    // Removing her own override puts bob back.
    let id = made[0]["id"].as_i64().expect("id");
    let (status, location, _) = submit(
        &relay,
        &format!("/schedules/primary/overrides/{id}/remove"),
        &alice,
        &relay.url,
        &[("csrf", token.as_str())],
    )
    .await;
    assert_eq!(
        (status, location.as_str()),
        (StatusCode::SEE_OTHER, "/schedules/primary?done=removed")
    );
    assert!(overrides(&relay).await.is_empty());
    let (_, back) = page(&relay, "/schedules/primary", &alice).await;
    assert!(back.contains("On call now: <strong>bob</strong>"), "{back}");
}

#[tokio::test(flavor = "multi_thread")]
async fn someone_elses_override_is_marked_as_text_and_cannot_be_removed() {
    let ntfy = fake_vendor(200).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = policy(dir.path(), &ntfy, "[bob]");
    let relay = TestRelay::start_self_linked(&policy, &dir.path().join("data")).await;
    let now = std::time::SystemTime::now();
    let at = |t: std::time::SystemTime| humantime::format_rfc3339_seconds(t).to_string();
    let creator = format!("{HOSTILE}{}", "y".repeat(170));
    let answer = reqwest::Client::new()
        .post(format!("{}/api/v1/overrides", relay.url))
        .bearer_auth(TOKEN)
        .json(&json!({
            "schedule": "primary", "person": "carol", "replaces": "bob",
            "start": at(now - Duration::from_secs(60)),
            "end": at(now + Duration::from_secs(3600)),
            "created_by": creator,
        }))
        .send()
        .await
        .expect("create an override");
    assert_eq!(answer.status(), StatusCode::CREATED);
    let created: Value = answer.json().await.expect("json");
    let id = created["override"]["id"].as_i64().expect("id");
    let alice = sign_in(&relay, &ntfy, "alice", "alice-phone", "Firefox").await;

    let (_, html) = page(&relay, "/schedules/primary", &alice).await;
    assert!(
        html.contains("On call now: <strong>carol</strong>"),
        "{html}"
    );
    assert!(html.contains(&format!("override {id}")), "{html}");
    assert!(
        html.contains("In place of bob, made by &#60;script&#62;alert(1)&#60;/script&#62;yyy"),
        "{html}"
    );
    assert!(!html.contains(HOSTILE), "markup from an override's creator");
    assert!(
        html.contains("You have made no override in this schedule"),
        "not alice's: {html}"
    );
    assert!(!html.contains("Remove this override"));

    let token = csrf(&html);
    let remove = |id: i64| {
        let (relay, alice, token) = (&relay, &alice, token.clone());
        async move {
            submit(
                relay,
                &format!("/schedules/primary/overrides/{id}/remove"),
                alice,
                &relay.url,
                &[("csrf", &token)],
            )
            .await
        }
    };
    let (status, _, refused) = remove(id).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        refused.contains("You can remove only the overrides you made."),
        "{refused}"
    );
    assert_eq!(overrides(&relay).await.len(), 1, "still there");
    let (status, _, _) = remove(id + 100).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // A form without its token is refused before anything is looked at.
    let (status, _, _) = submit(
        &relay,
        &format!("/schedules/primary/overrides/{id}/remove"),
        &alice,
        &relay.url,
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = page(&relay, "/schedules/nope", &alice).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
