//! The console over HTTP, as a browser without JavaScript uses it: sign in by a link pushed
//! to one's own phone (read from the fake ntfy), see the incident, acknowledge it; what is
//! refused (an unknown name answered like a known one, a used link, a form without its token
//! or from another site, the proxy's header from an untrusted address); hostile alert
//! content shown as text; the security headers.

use std::path::Path;

use reqwest::redirect::Policy;
use reqwest::StatusCode;
use serde_json::{json, Value};
use wiremock::MockServer;

use crate::helpers::*;

/// The test policy, with two people reachable through the fake ntfy, and `console_auth`.
pub(crate) fn console_policy(
    dir: &Path,
    ntfy: &MockServer,
    console_auth: &str,
) -> std::path::PathBuf {
    let mut text = policy_yaml(&ntfy.uri(), "1h");
    text = text.replace(
        "  max_body_bytes: 65536\n",
        &format!("  max_body_bytes: 65536\n{console_auth}"),
    );
    text.push_str(&format!(
        r#"people:
  alice:
    time_zone: Europe/Berlin
    email: alice@example.org
    ntfy: {{url: "{0}", topic: alice-phone, token: tk_e2e}}
  bob:
    ntfy: {{url: "{0}", topic: bob-phone, token: tk_e2e}}
"#,
        ntfy.uri()
    ));
    let path = dir.join("policy.yml");
    std::fs::write(&path, text).expect("write policy");
    path
}

pub(crate) fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .expect("client")
}

/// The sign-in links pushed to `topic` so far.
pub(crate) async fn links(ntfy: &MockServer, topic: &str) -> Vec<String> {
    pushes(ntfy)
        .await
        .iter()
        .filter(|p| p["topic"] == topic)
        .filter_map(|p| p["click"].as_str().map(str::to_owned))
        .collect()
}

/// Signs `name` in by push and returns the session cookie (`relay_session=…`).
pub(crate) async fn sign_in(
    relay: &TestRelay,
    ntfy: &MockServer,
    name: &str,
    topic: &str,
) -> String {
    let client = browser();
    let before = links(ntfy, topic).await.len();
    let answer = client
        .post(format!("{}/signin", relay.url))
        .form(&[("name", name)])
        .send()
        .await
        .expect("sign-in request");
    assert_eq!(answer.status(), StatusCode::OK);
    let link = eventually(
        "the pushed link",
        std::time::Duration::from_secs(5),
        || async { links(ntfy, topic).await.get(before).cloned() },
    )
    .await;
    assert!(
        link.starts_with(&format!("{}/signin/", relay.url)),
        "{link}"
    );
    let page = client.get(&link).send().await.expect("the link");
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.expect("page");
    assert!(html.contains("Sign in on this device"), "{html}");
    let done = client.post(&link).send().await.expect("sign in");
    assert_eq!(done.status(), StatusCode::SEE_OTHER);
    let cookie = done
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .expect("a session cookie")
        .to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
    // Used once: the same link again is refused.
    let again = client.post(&link).send().await.expect("again");
    assert_eq!(again.status(), StatusCode::GONE);
    cookie.split(';').next().expect("name=value").to_owned()
}

pub(crate) async fn page(relay: &TestRelay, path: &str, cookie: &str) -> (StatusCode, String) {
    let answer = browser()
        .get(format!("{}{path}", relay.url))
        .header("cookie", cookie)
        .send()
        .await
        .expect("page");
    let status = answer.status();
    (status, answer.text().await.expect("body"))
}

/// The form token in a page.
pub(crate) fn csrf(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a form token") + 19;
    html[at..].split('"').next().expect("token").to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn sign_in_by_push_see_the_incident_and_acknowledge_it() {
    let ntfy = fake_vendor(200).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = console_policy(dir.path(), &ntfy, "");
    let relay = TestRelay::start_self_linked(&policy, &dir.path().join("data")).await;

    let anonymous = browser()
        .get(format!("{}/", relay.url))
        .send()
        .await
        .expect("now");
    assert_eq!(anonymous.status(), StatusCode::SEE_OTHER, "not signed in");
    assert_eq!(anonymous.headers()["location"], "/signin");

    relay.webhook(&webhook("GatewayDown", "firing")).await;
    let cookie = sign_in(&relay, &ntfy, "Alice@Example.org", "alice-phone").await;
    let (status, now) = page(&relay, "/", &cookie).await;
    assert_eq!(status, StatusCode::OK);
    assert!(now.contains("GatewayDown"), "{now}");
    assert!(now.contains("Paging: step 1 of 2"), "{now}");
    assert!(now.contains("Times in Europe/Berlin"), "{now}");

    let (_, body) = relay.get("/api/v1/incidents", Some(TOKEN)).await;
    let id = body["incidents"][0]["id"].as_i64().expect("id");
    let (status, incident) = page(&relay, &format!("/incidents/{id}"), &cookie).await;
    assert_eq!(status, StatusCode::OK);
    assert!(incident.contains("Timeline"), "{incident}");
    let token = csrf(&incident);
    let ack = |csrf: String, origin: String| {
        let (url, cookie) = (format!("{}/incidents/{id}/ack", relay.url), cookie.clone());
        async move {
            browser()
                .post(url)
                .header("cookie", cookie)
                .header("origin", origin)
                .form(&[("csrf", csrf)])
                .send()
                .await
                .expect("ack")
                .status()
        }
    };
    assert_eq!(
        ack(String::new(), relay.url.clone()).await,
        StatusCode::FORBIDDEN,
        "no token"
    );
    assert_eq!(
        ack(token.clone(), "https://evil.example".into()).await,
        StatusCode::FORBIDDEN,
        "another site"
    );
    assert_eq!(ack(token, relay.url.clone()).await, StatusCode::SEE_OTHER);
    let (_, body) = relay
        .get(&format!("/api/v1/incidents/{id}/events"), Some(TOKEN))
        .await;
    let acked = body["events"]
        .as_array()
        .expect("events")
        .iter()
        .find(|e| e["kind"] == "acknowledged")
        .cloned()
        .unwrap_or(Value::Null);
    assert_eq!(acked["actor"], "alice (console)", "{body}");
    let (_, incident) = page(&relay, &format!("/incidents/{id}"), &cookie).await;
    assert!(
        incident.contains("Acknowledged by alice in the console"),
        "{incident}"
    );
    assert!(!incident.contains(">Acknowledge<"), "no button any more");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_name_gets_the_same_answer_and_nothing_is_sent() {
    let ntfy = fake_vendor(200).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = console_policy(dir.path(), &ntfy, "");
    let relay = TestRelay::start_self_linked(&policy, &dir.path().join("data")).await;
    let ask = |name: &'static str| {
        let url = format!("{}/signin", relay.url);
        async move {
            let answer = browser()
                .post(url)
                .form(&[("name", name)])
                .send()
                .await
                .expect("ask");
            (answer.status(), answer.text().await.expect("body"))
        }
    };
    let (known_status, known) = ask("bob").await;
    let (unknown_status, unknown) = ask("mallory").await;
    assert_eq!(
        (known_status, unknown_status),
        (StatusCode::OK, StatusCode::OK)
    );
    assert_eq!(known, unknown, "the same page for a name that is nobody's");
    eventually("bob's link", std::time::Duration::from_secs(5), || async {
        (!links(&ntfy, "bob-phone").await.is_empty()).then_some(())
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let topics: Vec<Value> = pushes(&ntfy)
        .await
        .iter()
        .map(|p| p["topic"].clone())
        .collect();
    assert_eq!(topics, [json!("bob-phone")], "only bob's own phone");
    // Rate-limited per name: the sixth request within the window is refused (bob asked once).
    for _ in 0..4 {
        assert_eq!(ask("bob").await.0, StatusCode::OK);
    }
    assert_eq!(ask("bob").await.0, StatusCode::TOO_MANY_REQUESTS);
    // A made-up link signs nobody in.
    let fake = browser()
        .post(format!("{}/signin/not-a-real-token", relay.url))
        .send()
        .await
        .expect("fake link");
    assert_eq!(fake.status(), StatusCode::GONE);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_session_outlives_a_restart_of_the_relay() {
    let ntfy = fake_vendor(200).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = console_policy(dir.path(), &ntfy, "");
    let data = dir.path().join("data");
    let relay = TestRelay::start_self_linked(&policy, &data).await;
    let cookie = sign_in(&relay, &ntfy, "alice", "alice-phone").await;
    relay.shutdown().await;
    let again = TestRelay::start_self_linked(&policy, &data).await;
    let (status, html) = page(&again, "/", &cookie).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(html.contains("alice"), "signed in as alice: {html}");
    again.shutdown().await;
}

/// Two relays on one PostgreSQL (the HA setup): a session made on one works on the other,
/// and signing out on the other ends it on both.
#[tokio::test(flavor = "multi_thread")]
async fn a_session_works_on_every_replica() {
    use alert_relay::store::postgres::scratch::ScratchDatabase;
    let Some(db) = ScratchDatabase::create() else {
        return;
    };
    let ntfy = fake_vendor(200).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = console_policy(dir.path(), &ntfy, "");
    let mut replicas = Vec::new();
    for name in ["a", "b"] {
        let store: std::sync::Arc<dyn alert_relay::store::Store> = std::sync::Arc::new(db.open());
        replicas.push(
            TestRelay::start_self_linked_on(
                &policy,
                &dir.path().join(name),
                alert_relay::server::Options::default(),
                Some(store),
            )
            .await,
        );
    }
    let cookie = sign_in(&replicas[0], &ntfy, "alice", "alice-phone").await;
    let (status, html) = page(&replicas[1], "/", &cookie).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(html.contains("alice"), "signed in as alice on b: {html}");
    let answer = browser()
        .post(format!("{}/signout", replicas[1].url))
        .header("cookie", &cookie)
        .header("origin", &replicas[1].url)
        .form(&[("csrf", csrf(&html).as_str())])
        .send()
        .await
        .expect("sign out");
    assert_eq!(answer.status(), StatusCode::SEE_OTHER);
    for relay in &replicas {
        assert_eq!(
            page(relay, "/", &cookie).await.0,
            StatusCode::SEE_OTHER,
            "ended on {}",
            relay.url
        );
    }
    for relay in replicas {
        relay.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sign_out_everywhere_ends_every_session() {
    let ntfy = fake_vendor(200).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = console_policy(dir.path(), &ntfy, "");
    let relay = TestRelay::start_self_linked(&policy, &dir.path().join("data")).await;
    let phone = sign_in(&relay, &ntfy, "alice", "alice-phone").await;
    let laptop = sign_in(&relay, &ntfy, "alice", "alice-phone").await;
    let (_, now) = page(&relay, "/", &laptop).await;
    let answer = browser()
        .post(format!("{}/signout", relay.url))
        .header("cookie", &laptop)
        .form(&[("csrf", csrf(&now).as_str()), ("everywhere", "1")])
        .send()
        .await
        .expect("sign out");
    assert_eq!(answer.status(), StatusCode::SEE_OTHER);
    for cookie in [&phone, &laptop] {
        assert_eq!(page(&relay, "/", cookie).await.0, StatusCode::SEE_OTHER);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_proxys_header_counts_only_from_a_trusted_address() {
    let ntfy = fake_vendor(200).await;
    for (trusted, expected) in [
        ("127.0.0.1", StatusCode::OK),
        ("10.0.0.0/8", StatusCode::FORBIDDEN),
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let auth = format!(
            "  console_auth:\n    proxy: {{header: X-Forwarded-Email, trusted_proxies: [\"{trusted}\"]}}\n"
        );
        let policy = console_policy(dir.path(), &ntfy, &auth);
        let relay = TestRelay::start_self_linked(&policy, &dir.path().join("data")).await;
        let answer = browser()
            .get(format!("{}/", relay.url))
            .header("x-forwarded-email", "alice@example.org")
            .send()
            .await
            .expect("now");
        assert_eq!(answer.status(), expected, "trusted: {trusted}");
        let nobody = browser()
            .get(format!("{}/", relay.url))
            .header("x-forwarded-email", "mallory@example.org")
            .send()
            .await
            .expect("now");
        assert_eq!(nobody.status(), StatusCode::FORBIDDEN);
        relay.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_alert_content_is_text_and_pages_carry_the_security_headers() {
    let ntfy = fake_vendor(200).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = console_policy(dir.path(), &ntfy, "");
    let relay = TestRelay::start_self_linked(&policy, &dir.path().join("data")).await;
    let mut hostile = webhook("<script>alert(1)</script>", "firing");
    hostile["commonAnnotations"]["summary"] = json!("\"><img src=x onerror=alert(2)>");
    hostile["commonAnnotations"]["runbook_url"] = json!("javascript:alert(3)");
    hostile["alerts"][0]["generatorURL"] = json!("data:text/html,<script>alert(4)</script>");
    hostile["alerts"][0]["labels"]["note"] = json!(format!("\u{202e}{}", "x".repeat(10_000)));
    relay.webhook(&hostile).await;
    let cookie = sign_in(&relay, &ntfy, "alice", "alice-phone").await;
    let (_, body) = relay.get("/api/v1/incidents", Some(TOKEN)).await;
    let id = body["incidents"][0]["id"].as_i64().expect("id");
    for path in ["/".to_owned(), format!("/incidents/{id}")] {
        let answer = browser()
            .get(format!("{}{path}", relay.url))
            .header("cookie", &cookie)
            .send()
            .await
            .expect("page");
        let h = answer.headers().clone();
        assert!(h["content-security-policy"].to_str().is_ok_and(|v| v
            .starts_with("default-src 'self'")
            && v.contains("frame-ancestors 'none'")));
        assert_eq!(h["x-frame-options"], "DENY");
        assert_eq!(h["referrer-policy"], "same-origin");
        assert_eq!(h["x-content-type-options"], "nosniff");
        let html = answer.text().await.expect("html");
        assert!(
            !html.contains("<script>alert"),
            "{path}: a script from a label"
        );
        assert!(
            !html.contains("<img src=x"),
            "{path}: markup from an annotation"
        );
        assert!(
            !html.contains("href=\"javascript:"),
            "{path}: a javascript: link"
        );
        assert!(!html.contains("href=\"data:"), "{path}: a data: link");
        assert!(
            html.contains("&#60;script&#62;alert(1)&#60;/script&#62;"),
            "{path}: shown as text"
        );
    }
}
