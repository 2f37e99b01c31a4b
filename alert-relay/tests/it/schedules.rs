//! Schedules by behaviour: the shipped rotation example through the real binary, a step that
//! pages whoever is on call (with and without an override made through the API), handoff
//! notices, and who is on call through the API and the CLI.

use std::time::Duration;

use serde_json::{json, Value};
use wiremock::MockServer;

use crate::helpers::*;

const EXAMPLE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../monitoring/alert-relay/examples/rotation.yml"
);

fn example_command(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_alert-relay"))
        .args(args)
        .env("RELAY_WEBHOOK_TOKEN", TOKEN)
        .env("NTFY_TOPIC_ALICE", "alice-topic")
        .env("NTFY_TOPIC_BOB", "bob-topic")
        .env("NTFY_TOPIC_CAROL", "carol-topic")
        .env_remove("NTFY_TOPIC_MANAGER")
        .output()
        .expect("run alert-relay")
}

#[test]
fn the_shipped_rotation_example_names_who_is_on_call() {
    let text = success_stdout(&example_command(&["check-config", EXAMPLE]));
    assert!(text.contains("valid"), "{text}");
    assert!(
        text.contains("schedule primary (Europe/Berlin)")
            && text.contains("Mon 2027-03-01 09:00 Europe/Berlin → alice"),
        "check-config shows the next handoffs: {text}"
    );
    let at = |when: &str, schedule: &str| {
        success_stdout(&example_command(&[
            "oncall",
            "--config",
            EXAMPLE,
            "--at",
            when,
            "--schedule",
            schedule,
        ]))
    };
    // The week after the switch to summer time: bob, whose shift ends at 09:00 CEST.
    assert!(
        at("2027-03-29T07:30:00Z", "primary")
            .starts_with("primary: bob until Mon 2027-04-05 09:00 Europe/Berlin; then carol"),
        "{}",
        at("2027-03-29T07:30:00Z", "primary")
    );
    // A minute before 09:00 CET on the second Monday: still alice.
    assert!(at("2027-03-08T07:59:00Z", "primary")
        .starts_with("primary: alice until Mon 2027-03-08 09:00 Europe/Berlin; then bob"));
    assert!(at("2027-03-01T08:00:00Z", "secondary").starts_with("secondary: bob until"));
    assert!(at("2027-02-01T00:00:00Z", "primary").starts_with("primary: NOBODY"));
    // simulate names who each step pages when it fires: the 15-minute step falls after the
    // 09:00 CEST handoff, so the secondary is already next week's.
    let timeline = success_stdout(&example_command(&[
        "simulate",
        "--config",
        EXAMPLE,
        "--labels",
        "severity=critical",
        "--at",
        "2027-03-29T06:50:00Z",
    ]));
    assert!(
        timeline.contains("+0s       step 1: schedule.primary (alice), log.audit\n")
            && timeline.contains("+15m      step 2: schedule.secondary (carol)\n"),
        "{timeline}"
    );
    let wrong = example_command(&["oncall", "--config", EXAMPLE, "--schedule", "tertiary"]);
    assert_eq!(wrong.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&wrong.stderr)
        .contains("no schedule `tertiary` (known: primary, secondary)"));
    let bad_time = example_command(&["oncall", "--config", EXAMPLE, "--at", "next monday"]);
    assert_eq!(bad_time.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad_time.stderr).contains("is not an instant"));
}

/// Two people swap daily at 00:00 UTC from 2020-01-01 (alice first): who is on call today,
/// counted without the relay's code.
/// (Within a minute of midnight it waits for the new day, so the test does not straddle it.)
fn on_call_today() -> (&'static str, &'static str) {
    let secs = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs()
    };
    let left = 86_400 - secs() % 86_400;
    if left < 60 {
        std::thread::sleep(Duration::from_secs(left + 1));
    }
    let days = secs() / 86_400;
    let since_start = days - 18_262; // 2020-01-01
    if since_start.is_multiple_of(2) {
        ("alice", "bob")
    } else {
        ("bob", "alice")
    }
}

fn policy(ntfy: &str) -> String {
    format!(
        r#"
server:
  webhook_auth:
    bearer_token: "{TOKEN}"
  ack_secret: "an-ack-secret-of-sufficient-length"
delivery:
  timeout: 2s
  initial_backoff: 100ms
  max_backoff: 400ms
people:
  alice: {{ntfy: {{url: "{ntfy}", topic: topic-alice}}}}
  bob: {{ntfy: {{url: "{ntfy}", topic: topic-bob}}}}
  carol: {{ntfy: {{url: "{ntfy}", topic: topic-carol}}}}
  dave: {{ntfy: {{url: "{ntfy}", topic: topic-dave}}}}
schedules:
  primary:
    time_zone: UTC
    handoff_notices: false
    rotations:
      - {{people: [alice, bob], shift: 1d, handoff: {{time: "00:00"}}, start: 2020-01-01}}
  drill:
    time_zone: UTC
    rotations:
      - {{people: [carol], shift: 1m, handoff: {{time: "00:00"}}, start: 2020-01-01}}
policies:
  - name: critical
    matchers: ['severity="critical"']
    steps:
      - after: 0s
        notify: [schedule.primary]
      - after: 1h
        notify: [schedule.drill]
"#
    )
}

fn topic_pushes(all: &[Value], topic: &str) -> Vec<Value> {
    all.iter()
        .filter(|p| p["topic"] == topic)
        .cloned()
        .collect()
}

async fn wait_topic(ntfy: &MockServer, topic: &str, n: usize) -> Vec<Value> {
    eventually(
        &format!("{n} push(es) to {topic}"),
        Duration::from_secs(10),
        || async {
            let sent = topic_pushes(&pushes(ntfy).await, topic);
            (sent.len() >= n).then_some(sent)
        },
    )
    .await
}

async fn api(
    relay: &TestRelay,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .request(method, format!("{}{path}", relay.url))
        .bearer_auth(TOKEN);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn rfc3339(offset: Duration, later: bool) -> String {
    let now = std::time::SystemTime::now();
    let t = if later { now + offset } else { now - offset };
    humantime::format_rfc3339_seconds(t).to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_step_pages_whoever_is_on_call_and_an_override_made_through_the_api_wins() {
    let ntfy = fake_vendor(200).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("policy.yml");
    std::fs::write(&file, policy(&ntfy.uri())).expect("write");
    let relay = TestRelay::start(&file, &dir.path().join("data"), None).await;
    let (on, off) = on_call_today();

    // Without an override: today's person, by name in the page and in the API.
    assert_eq!(relay.webhook(&webhook("FirstAlert", "firing")).await.0, 200);
    let first = wait_topic(&ntfy, &format!("topic-{on}"), 1).await;
    assert!(
        first[0]["message"]
            .as_str()
            .is_some_and(|m| m.contains(&format!("paging {on}"))),
        "{}",
        first[0]
    );
    let (_, listing) = relay.get("/api/v1/incidents", Some(TOKEN)).await;
    assert_eq!(
        listing["incidents"][0]["notified"],
        json!([format!("person.{on}")])
    );
    assert_eq!(
        listing["incidents"][0]["next_step"]["targets"],
        json!(["schedule.drill"])
    );
    assert_eq!(
        listing["incidents"][0]["next_step"]["on_call_now"],
        json!({"schedule.drill": "carol"}),
        "who the next step would page now"
    );

    let (status, oncall) = api(&relay, reqwest::Method::GET, "/api/v1/oncall", None).await;
    assert_eq!(status, 200);
    let primary = oncall["schedules"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["schedule"] == "primary"))
        .expect("primary");
    assert_eq!(primary["on_call"]["person"], on);
    assert_eq!(primary["next"][0]["person"], off);

    // The other person covers from now on: the next page goes to them.
    let (status, created) = api(
        &relay,
        reqwest::Method::POST,
        "/api/v1/overrides",
        Some(json!({
            "schedule": "primary", "person": off, "replaces": on,
            "start": rfc3339(Duration::from_secs(60), false),
            "end": rfc3339(Duration::from_secs(3600), true),
            "created_by": "test"
        })),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let id = created["override"]["id"].as_i64().expect("id");
    assert_eq!(
        relay.webhook(&webhook("SecondAlert", "firing")).await.0,
        200
    );
    let covered = wait_topic(&ntfy, &format!("topic-{off}"), 1).await;
    assert!(covered[0]["title"]
        .as_str()
        .is_some_and(|t| t.contains("SecondAlert")));
    assert_eq!(
        topic_pushes(&pushes(&ntfy).await, &format!("topic-{on}")).len(),
        1,
        "the covered person is not paged again"
    );
    let (_, oncall) = api(&relay, reqwest::Method::GET, "/api/v1/oncall", None).await;
    let primary = oncall["schedules"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["schedule"] == "primary"))
        .expect("primary")
        .clone();
    assert_eq!(primary["on_call"]["person"], off);
    assert_eq!(primary["on_call"]["override_id"], id);

    // The CLI through the API shows the override; then removes it.
    let url = relay.url.clone();
    let cli = move |args: Vec<String>| {
        let url = url.clone();
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_alert-relay"))
                .args(&args)
                .env("RELAY_URL", url)
                .env("RELAY_WEBHOOK_TOKEN", TOKEN)
                .output()
                .expect("run alert-relay")
        })
    };
    let text = success_stdout(
        &cli(vec!["oncall".into(), "--schedule".into(), "primary".into()])
            .await
            .expect("join"),
    );
    assert!(
        text.starts_with(&format!("primary: {off} until ")) && text.contains("(override)"),
        "{text}"
    );
    let listed = success_stdout(
        &cli(vec!["override".into(), "list".into()])
            .await
            .expect("join"),
    );
    assert!(
        listed.contains(&format!("#{id} primary: {off} covers {on}")),
        "{listed}"
    );
    let removed = cli(vec!["override".into(), "remove".into(), id.to_string()])
        .await
        .expect("join");
    assert_eq!(success_stdout(&removed), format!("override {id} removed\n"));
    let again = cli(vec!["override".into(), "remove".into(), id.to_string()])
        .await
        .expect("join");
    assert_eq!(again.status.code(), Some(1), "no such override any more");
    let (_, oncall) = api(&relay, reqwest::Method::GET, "/api/v1/oncall", None).await;
    assert!(oncall["schedules"].as_array().is_some_and(|s| s
        .iter()
        .any(|s| s["schedule"] == "primary" && s["on_call"]["person"] == on)));
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_override_that_cannot_be_is_refused_with_the_reason() {
    let ntfy = fake_vendor(200).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("policy.yml");
    std::fs::write(&file, policy(&ntfy.uri())).expect("write");
    let relay = TestRelay::start(&file, &dir.path().join("data"), None).await;
    let later = rfc3339(Duration::from_secs(3600), true);
    let now = rfc3339(Duration::ZERO, true);
    let cases = [
        (
            json!({"schedule": "tertiary", "person": "bob", "start": now, "end": later, "created_by": "t"}),
            "no schedule `tertiary`",
        ),
        (
            json!({"schedule": "primary", "person": "mallory", "start": now, "end": later, "created_by": "t"}),
            "no person `mallory`",
        ),
        (
            json!({"schedule": "primary", "person": "bob", "replaces": "bob", "start": now, "end": later, "created_by": "t"}),
            "cannot cover for themselves",
        ),
        (
            json!({"schedule": "primary", "person": "bob", "start": later, "end": now, "created_by": "t"}),
            "ends before it starts",
        ),
        (
            json!({"schedule": "primary", "person": "bob", "start": "2020-01-01T00:00:00Z", "end": "2020-01-02T00:00:00Z", "created_by": "t"}),
            "over already",
        ),
        (
            json!({"schedule": "primary", "person": "bob", "start": now, "end": "2099-01-01T00:00:00Z", "created_by": "t"}),
            "at most 366 days",
        ),
        (
            json!({"schedule": "primary", "person": "bob", "start": "tomorrow", "end": later, "created_by": "t"}),
            "is not an instant",
        ),
        (
            json!({"schedule": "primary", "person": "bob", "start": now, "end": later, "created_by": "line\nbreak"}),
            "printable",
        ),
        (
            json!({"schedule": "primary", "person": "bob", "start": now, "end": later}),
            "created_by",
        ),
    ];
    for (body, why) in cases {
        let (status, answer) = api(
            &relay,
            reqwest::Method::POST,
            "/api/v1/overrides",
            Some(body.clone()),
        )
        .await;
        assert_eq!(status, 400, "{body} → {answer}");
        assert!(
            answer["error"].as_str().is_some_and(|e| e.contains(why)),
            "{body}: expected `{why}` in {answer}"
        );
    }
    let (_, listed) = api(&relay, reqwest::Method::GET, "/api/v1/overrides", None).await;
    assert_eq!(listed["overrides"], json!([]), "nothing was stored");
    // Without credentials: refused like the webhook.
    let anonymous = reqwest::Client::new()
        .post(format!("{}/api/v1/overrides", relay.url))
        .json(&json!({}))
        .send()
        .await
        .expect("request");
    assert_eq!(anonymous.status().as_u16(), 401);
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_incoming_person_is_told_at_a_handoff_once() {
    let ntfy = fake_vendor(200).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("policy.yml");
    std::fs::write(&file, policy(&ntfy.uri())).expect("write");
    let data = dir.path().join("data");
    let relay = TestRelay::start(&file, &data, None).await;
    // carol holds the drill alone (a new one-minute shift each minute, no change of person:
    // no notice); dave covering is a handoff, and so is his override's removal.
    let (status, created) = api(
        &relay,
        reqwest::Method::POST,
        "/api/v1/overrides",
        Some(json!({
            "schedule": "drill", "person": "dave",
            "start": rfc3339(Duration::ZERO, false),
            "end": rfc3339(Duration::from_secs(7200), true),
            "created_by": "test"
        })),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let notice = wait_topic(&ntfy, "topic-dave", 1).await;
    assert_eq!(notice[0]["title"], "On call: drill");
    let message = notice[0]["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("You are on call for drill until ")
            && message.contains("then carol")
            && message.contains("An override"),
        "{message}"
    );
    assert!(
        notice[0]["actions"].as_array().is_none_or(|a| a.is_empty()),
        "nothing to acknowledge: {}",
        notice[0]
    );
    assert_eq!(
        relay
            .metric("relay_handoff_notices_total{schedule=\"drill\"}")
            .await,
        Some(1.0)
    );
    assert_eq!(
        relay
            .metric("relay_schedule_gaps_total{schedule=\"primary\"}")
            .await,
        Some(0.0),
        "series exist from the start"
    );
    // The override removed while in force: carol is back, and told so.
    let id = created["override"]["id"].as_i64().expect("id");
    let (status, _) = api(
        &relay,
        reqwest::Method::DELETE,
        &format!("/api/v1/overrides/{id}"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let back = wait_topic(&ntfy, "topic-carol", 1).await;
    let message = back[0]["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("You are on call for drill until ") && message.contains("was removed"),
        "{message}"
    );
    // Restarted, the relay tells nobody again.
    relay.shutdown().await;
    let relay = TestRelay::start(&file, &data, None).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    relay.settled(Duration::from_millis(300)).await;
    let all = pushes(&ntfy).await;
    assert_eq!(
        topic_pushes(&all, "topic-dave").len(),
        1,
        "once, restarts included"
    );
    assert_eq!(topic_pushes(&all, "topic-carol").len(), 1);
    relay.shutdown().await;
}

/// Parses an iCalendar text with Python's `icalendar` (installed by the test command) and
/// returns its events as JSON: what a calendar app would read.
fn parse_ical(text: &str) -> Value {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("feed.ics");
    std::fs::write(&file, text).expect("write");
    let script = r#"
import json, sys
import icalendar
cal = icalendar.Calendar.from_ical(open(sys.argv[1], 'rb').read())
events = []
for e in cal.walk('VEVENT'):
    events.append({
        'uid': str(e['UID']),
        'summary': str(e['SUMMARY']),
        'description': str(e['DESCRIPTION']),
        'start': e.decoded('DTSTART').isoformat(),
        'end': e.decoded('DTEND').isoformat(),
        'seconds': (e.decoded('DTEND') - e.decoded('DTSTART')).total_seconds(),
    })
print(json.dumps({'name': str(cal.get('X-WR-CALNAME', cal.get('NAME', ''))), 'version': str(cal['VERSION']), 'events': events}))
"#;
    let output = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(&file)
        .output()
        .expect("python3");
    assert!(
        output.status.success(),
        "the feed does not parse as iCalendar (is python3-icalendar installed? the test command installs it): {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("json")
}

#[tokio::test(flavor = "multi_thread")]
async fn calendar_feeds_parse_and_need_their_own_token() {
    let ntfy = fake_vendor(200).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("policy.yml");
    std::fs::write(&file, policy(&ntfy.uri())).expect("write");
    let relay = TestRelay::start(&file, &dir.path().join("data"), None).await;
    let (status, listed) = api(&relay, reqwest::Method::GET, "/api/v1/calendars", None).await;
    assert_eq!(status, 200);
    let url_of = |feed: &str| {
        listed["calendars"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["feed"] == feed))
            .and_then(|c| c["url"].as_str())
            .unwrap_or_else(|| panic!("{feed} in {listed}"))
            .to_owned()
    };
    let primary = url_of("schedule-primary");
    let alice = url_of("person-alice");
    let get = |path: String| {
        let url = format!("{}{path}", relay.url);
        async move {
            let r = reqwest::get(url).await.expect("request");
            let status = r.status().as_u16();
            let kind = r
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            (status, kind, r.text().await.unwrap_or_default())
        }
    };
    // The token is the feed's own: none, a wrong one or another feed's are refused.
    let (token_alice, path_primary) = (
        alice.split("token=").nth(1).expect("token").to_owned(),
        primary.split('?').next().expect("path").to_owned(),
    );
    assert_eq!(get(path_primary.clone()).await.0, 403);
    assert_eq!(get(format!("{path_primary}?token=abc")).await.0, 403);
    assert_eq!(
        get(format!("{path_primary}?token={token_alice}")).await.0,
        403
    );
    assert_eq!(
        get(format!("/calendar/schedule-nope.ics?token={token_alice}"))
            .await
            .0,
        404
    );

    let (status, kind, text) = get(primary.clone()).await;
    assert_eq!(status, 200);
    assert_eq!(kind, "text/calendar; charset=utf-8");
    assert!(text.contains("\r\n"), "lines end in CRLF");
    assert!(
        text.lines().all(|l| l.len() <= 75),
        "content lines are folded at 75 octets"
    );
    let cal = parse_ical(&text);
    assert_eq!(cal["version"], "2.0");
    let events = cal["events"].as_array().expect("events");
    // 30 days back and 90 ahead of daily shifts.
    assert!(
        (120..=122).contains(&events.len()),
        "{} events",
        events.len()
    );
    assert!(
        events.iter().all(|e| e["seconds"] == 86_400.0),
        "one day each"
    );
    assert!(events.iter().all(|e| e["start"]
        .as_str()
        .is_some_and(|s| s.ends_with("T00:00:00+00:00"))));
    let people: Vec<&str> = events
        .iter()
        .map(|e| e["summary"].as_str().unwrap_or_default())
        .collect();
    assert!(people
        .windows(2)
        .all(|w| w[0] != w[1] && w[0].starts_with("On call: ") && w[0].ends_with("(primary)")));
    let uids: std::collections::BTreeSet<&str> =
        events.iter().filter_map(|e| e["uid"].as_str()).collect();
    assert_eq!(uids.len(), events.len(), "a UID per shift");
    let again = parse_ical(&get(primary).await.2);
    assert_eq!(
        again["events"][0]["uid"], events[0]["uid"],
        "UIDs are stable"
    );

    // Alice's own feed: every other day, in each schedule she is in.
    let (status, _, text) = get(alice).await;
    assert_eq!(status, 200);
    let mine = parse_ical(&text);
    let mine = mine["events"].as_array().expect("events");
    assert!((60..=61).contains(&mine.len()), "{} events", mine.len());
    assert!(mine.iter().all(|e| e["summary"] == "On call: primary"));

    // An override shows in the covering person's feed.
    let (status, _) = api(
        &relay,
        reqwest::Method::POST,
        "/api/v1/overrides",
        Some(json!({
            "schedule": "primary", "person": "dave",
            "start": rfc3339(Duration::from_secs(24 * 3600), true),
            "end": rfc3339(Duration::from_secs(26 * 3600), true),
            "created_by": "test"
        })),
    )
    .await;
    assert_eq!(status, 201);
    let cover = parse_ical(&get(url_of("person-dave")).await.2);
    let cover = cover["events"].as_array().expect("events");
    assert_eq!(cover.len(), 1);
    assert_eq!(cover[0]["seconds"], 7200.0);
    assert!(cover[0]["description"]
        .as_str()
        .is_some_and(|d| d.contains("An override")));
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn overrides_in_force_are_bounded() {
    let ntfy = fake_vendor(200).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("policy.yml");
    std::fs::write(&file, policy(&ntfy.uri())).expect("write");
    let relay = TestRelay::start(&file, &dir.path().join("data"), None).await;
    let body = json!({
        "schedule": "primary", "person": "carol",
        "start": rfc3339(Duration::ZERO, true),
        "end": rfc3339(Duration::from_secs(3600), true),
        "created_by": "flood"
    });
    for i in 0..alert_relay::app::MAX_LIVE_OVERRIDES {
        let (status, answer) = api(
            &relay,
            reqwest::Method::POST,
            "/api/v1/overrides",
            Some(body.clone()),
        )
        .await;
        assert_eq!(status, 201, "override {i}: {answer}");
    }
    let (status, answer) = api(
        &relay,
        reqwest::Method::POST,
        "/api/v1/overrides",
        Some(body),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        answer["error"]
            .as_str()
            .is_some_and(|e| e.contains("remove some")),
        "{answer}"
    );
    // Steps still page (through the most recent override) with a full list.
    assert_eq!(
        relay
            .webhook(&webhook("WithManyOverrides", "firing"))
            .await
            .0,
        200
    );
    wait_topic(&ntfy, "topic-carol", 1).await;
    relay.shutdown().await;
}
