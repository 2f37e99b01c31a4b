//! The acknowledge link opened in a browser: a page that names the incident and offers the
//! button without acknowledging, the form's answer as a page, clear pages for bad links, the
//! JSON answer kept for API clients, and the security headers on all of them.

use std::time::Duration;

use alert_relay::ack::AckKey;
use alert_relay::domain::{IncidentKey, Timestamp};
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use reqwest::Response;
use serde_json::Value;

use crate::helpers::*;

/// What a browser sends with a navigation.
const BROWSER_ACCEPT: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";

/// A paging relay linking to itself, and the ack link of the first page of an alert whose
/// summary is hostile HTML.
async fn paged() -> (TestRelay, String, wiremock::MockServer, tempfile::TempDir) {
    let ntfy = fake_vendor(200).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = write_policy(dir.path(), &ntfy.uri(), "1h");
    let relay = TestRelay::start_self_linked(&policy, &dir.path().join("data")).await;
    let mut payload = webhook("GatewayDown", "firing");
    payload["commonAnnotations"]["summary"] =
        r#"<script>alert(1)</script> & "quoted" <b>bold</b>"#.into();
    relay.webhook(&payload).await;
    let page = wait_pushes(&ntfy, 1).await.remove(0);
    let link = page["actions"][1]["url"]
        .as_str()
        .expect("ack url")
        .to_owned();
    (relay, link, ntfy, dir)
}

async fn browse(url: &str) -> Response {
    reqwest::Client::new()
        .get(url)
        .header(ACCEPT, BROWSER_ACCEPT)
        .send()
        .await
        .expect("GET")
}

/// What the page's form sends.
async fn press_acknowledge(url: &str) -> Response {
    reqwest::Client::new()
        .post(url)
        .header(ACCEPT, BROWSER_ACCEPT)
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body("")
        .send()
        .await
        .expect("POST")
}

/// The page's status and text, after checking what every page carries.
async fn page(response: Response) -> (u16, String) {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("no {name} header"))
            .to_owned()
    };
    assert_eq!(header("content-type"), "text/html; charset=utf-8");
    let csp = header("content-security-policy");
    assert!(csp.starts_with("default-src 'self'"), "{csp}");
    assert!(
        !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
        "{csp}"
    );
    assert_eq!(header("x-frame-options"), "DENY");
    assert_eq!(header("referrer-policy"), "same-origin");
    assert_eq!(header("x-content-type-options"), "nosniff");
    assert_eq!(header("cache-control"), "no-store");
    let text = response.text().await.expect("body");
    assert!(text.starts_with("<!doctype html>"), "{text}");
    for inline in ["<script", "<style", "style=", "onclick", "javascript:"] {
        assert!(!text.contains(inline), "{inline} in the page: {text}");
    }
    (status, text)
}

async fn state(relay: &TestRelay) -> Value {
    let (_, listing) = relay.get("/api/v1/incidents", Some(TOKEN)).await;
    listing["incidents"][0]["state"].clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn opening_an_ack_link_shows_the_incident_and_a_button_and_acknowledges_nothing() {
    let (relay, link, ntfy, _dir) = paged().await;
    for _ in 0..2 {
        // A person, then a chat's link preview: neither acknowledges.
        let (status, text) = page(browse(&link).await).await;
        assert_eq!(status, 200, "{text}");
        assert!(text.contains("<h1>Acknowledge GatewayDown?</h1>"), "{text}");
        assert!(
            text.contains("&#60;script&#62;alert(1)&#60;/script&#62; &#38; &#34;quoted&#34; &#60;b&#62;bold&#60;/b&#62;")
                || text.contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;quoted&quot; &lt;b&gt;bold&lt;/b&gt;"),
            "the summary, escaped: {text}"
        );
        assert!(text.contains("<form method=\"post\">"), "{text}");
        assert!(
            text.contains("<button type=\"submit\">Acknowledge</button>"),
            "{text}"
        );
        assert!(text.contains("href=\"../assets/relay.css\""), "{text}");
    }
    assert_eq!(state(&relay).await, "escalating");
    assert_eq!(pushes(&ntfy).await.len(), 1, "no acknowledgement notice");

    let css = reqwest::get(format!("{}/assets/relay.css", relay.url))
        .await
        .expect("stylesheet");
    assert_eq!(css.status(), 200);
    assert_eq!(css.headers()["content-type"], "text/css; charset=utf-8");
}

#[tokio::test(flavor = "multi_thread")]
async fn pressing_acknowledge_answers_a_page_and_the_used_link_then_says_so() {
    let (relay, link, ntfy, _dir) = paged().await;
    let (status, text) = page(press_acknowledge(&link).await).await;
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("<h1>Acknowledged</h1>"), "{text}");
    assert!(text.contains("GatewayDown"), "names the incident: {text}");
    assert!(!text.contains("<form"), "{text}");
    assert_eq!(state(&relay).await, "acknowledged");
    let notice = wait_pushes(&ntfy, 2).await.remove(1);
    assert!(notice["title"].as_str().expect("title").starts_with("ACK "));

    let (status, text) = page(browse(&link).await).await;
    assert_eq!(status, 409, "{text}");
    assert!(text.contains("<h1>Link already used</h1>"), "{text}");
    assert!(text.contains("acknowledged by ack link"), "{text}");
    assert!(!text.contains("<form"), "{text}");
    let (status, text) = page(press_acknowledge(&link).await).await;
    assert_eq!(status, 409, "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_api_client_posting_the_ack_link_keeps_the_json_answer() {
    let (_relay, link, _ntfy, _dir) = paged().await;
    let answer = reqwest::Client::new()
        .post(&link)
        .send()
        .await
        .expect("POST");
    assert_eq!(answer.status(), 200);
    assert!(answer.headers()["content-type"]
        .to_str()
        .expect("type")
        .starts_with("application/json"));
    let body: Value = answer.json().await.expect("json");
    assert_eq!(
        body,
        serde_json::json!({"status": "acknowledged", "incident": 1})
    );
    let replay = reqwest::Client::new()
        .post(&link)
        .header(ACCEPT, "application/json")
        .send()
        .await
        .expect("replay");
    assert_eq!(replay.status(), 409);
    let body: Value = replay.json().await.expect("json");
    assert_eq!(body["error"], "this acknowledge link was used already");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_invalid_or_expired_ack_link_shows_a_clear_page_with_its_status() {
    let (relay, link, _ntfy, _dir) = paged().await;
    let (base, token) = link.split_once("/ack/").expect("an ack link");
    let forged = format!("{base}/ack/{}", token.replace('A', "B").replace('a', "b"));
    let (status, text) = page(browse(&forged).await).await;
    assert_eq!(status, 403, "{text}");
    assert!(text.contains("<h1>Invalid link</h1>"), "{text}");
    let (status, text) = page(browse(&format!("{}/ack/not-a-token", relay.url)).await).await;
    assert_eq!(status, 403, "{text}");
    assert!(text.contains("<h1>Invalid link</h1>"), "{text}");

    // Signed with the relay's key, but its time ran out an hour ago.
    let key = AckKey::new(b"an-ack-secret-of-sufficient-length");
    let an_hour_ago = Timestamp(Timestamp::now().0 - 3_600_000);
    let expired = key.sign(1, IncidentKey([0; 16]), an_hour_ago, [7; 12]);
    let url = format!("{}/ack/{expired}", relay.url);
    let (status, text) = page(browse(&url).await).await;
    assert_eq!(status, 410, "{text}");
    assert!(text.contains("<h1>Link expired</h1>"), "{text}");
    let (status, text) = page(press_acknowledge(&url).await).await;
    assert_eq!(status, 410, "{text}");
    assert!(text.contains("<h1>Link expired</h1>"), "{text}");

    // A link for an incident this relay does not have (its store was reset since).
    let elsewhere = key.sign(
        99,
        IncidentKey([5; 16]),
        Timestamp(Timestamp::now().0 + 3_600_000),
        [8; 12],
    );
    let (status, text) = page(browse(&format!("{}/ack/{elsewhere}", relay.url)).await).await;
    assert_eq!(status, 404, "{text}");
    assert!(text.contains("<h1>No such incident</h1>"), "{text}");
    assert_eq!(state(&relay).await, "escalating");
    tokio::time::timeout(Duration::from_secs(5), relay.shutdown())
        .await
        .expect("clean shutdown");
}
