//! The real binary killed with SIGKILL mid-escalation and mid-retry, then restarted.

use std::ffi::OsStr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use alert_relay::store::{self, Mode, SqliteStore};
use wiremock::matchers::method;
use wiremock::{Mock, ResponseTemplate};

use crate::helpers::*;

struct Relay {
    child: Child,
    url: String,
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start(policy: &std::path::Path, data: &std::path::Path) -> Relay {
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    let child = Command::new(env!("CARGO_BIN_EXE_alert-relay"))
        .arg("serve")
        .arg("--config")
        .arg(policy)
        .arg("--data-dir")
        .arg(data)
        .args(["--listen", &addr.to_string()])
        .env_remove("LOKI_URL")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start alert-relay");
    let url = format!("http://{addr}");
    wait_ok(&format!("{url}/ready"), Duration::from_secs(10)).await;
    Relay { child, url }
}

/// Waits until the store holds no pending notification: from then on nothing more is sent,
/// so counting what the vendor received is final.
async fn wait_outbox_drained(data: &std::path::Path) {
    // The file, not the directory: the running relay holds the directory's lock.
    let store =
        SqliteStore::open_file(&data.join("relay.db")).expect("open the relay's store beside it");
    eventually("an empty outbox", Duration::from_secs(10), || async {
        store::run(&store, Mode::Read, |tx| tx.counts())
            .ok()
            .filter(|counts| counts.pending == 0)
            .map(|_| ())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn resumes_after_kill_9_without_losing_or_repeating_a_step() {
    let ntfy = fake_vendor(503).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = write_policy(dir.path(), &ntfy.uri(), "2s");
    let data = dir.path().join("data");

    let mut relay = start(&policy, &data).await;
    let answer = reqwest::Client::new()
        .post(format!("{}/webhook", relay.url))
        .bearer_auth(TOKEN)
        .body(webhook("GatewayDown", "firing").to_string())
        .send()
        .await
        .expect("webhook");
    assert_eq!(answer.status(), 200, "acknowledged only once stored");
    let sent = std::time::Instant::now();
    wait_pushes(&ntfy, 1).await; // the first attempt failed with 503: a retry is pending
    relay.child.kill().expect("SIGKILL"); // Child::kill sends SIGKILL
    relay.child.wait().expect("reaped");

    // ntfy recovers while the relay is down, and the secondary's step comes due meanwhile.
    ntfy.reset().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&ntfy)
        .await;
    // The relay stays dead past the secondary's time (2s after the webhook): not a wait for
    // something to happen, but the clock passing a threshold while nothing runs.
    tokio::time::sleep_until(tokio::time::Instant::from_std(
        sent + Duration::from_millis(2200),
    ))
    .await;

    let relay = start(&policy, &data).await;
    let pushed = wait_pushes(&ntfy, 2).await;
    let mut topics: Vec<&str> = pushed
        .iter()
        .map(|p| p["topic"].as_str().expect("topic"))
        .collect();
    topics.sort_unstable();
    assert_eq!(topics, vec!["oncall-primary", "oncall-secondary"]);
    wait_outbox_drained(&data).await;
    assert_eq!(
        pushes(&ntfy).await.len(),
        2,
        "nothing sent twice after the restart"
    );
    assert!(pushed.iter().all(|p| p["sequence_id"] == "relay-1"));
    drop(relay);
}

#[tokio::test(flavor = "multi_thread")]
async fn pagerduty_gets_one_incident_across_a_kill_9_mid_retry() {
    // PagerDuty fails (500) until the relay has been killed with a retry pending.
    let pd = fake_vendor(500).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = dir.path().join("policy.yml");
    std::fs::write(
        &policy,
        format!(
            r#"
server:
  webhook_auth: {{bearer_token: "{TOKEN}"}}
  ack_secret: "an-ack-secret-of-sufficient-length"
delivery: {{initial_backoff: 100ms, max_backoff: 400ms}}
targets:
  pagerduty:
    prod: {{routing_key: "0123456789abcdef0123456789abcdef", url: "{}/v2/enqueue"}}
policies:
  - name: critical
    steps:
      - {{after: 0s, notify: [pagerduty.prod]}}
"#,
            pd.uri()
        ),
    )
    .expect("write");
    let data = dir.path().join("data");
    let send = |url: String, status: &'static str| async move {
        let answer = reqwest::Client::new()
            .post(format!("{url}/webhook"))
            .bearer_auth(TOKEN)
            .body(webhook("GatewayDown", status).to_string())
            .send()
            .await
            .expect("webhook");
        assert_eq!(answer.status(), 200);
    };

    let mut relay = start(&policy, &data).await;
    send(relay.url.clone(), "firing").await;
    wait_pushes(&pd, 2).await; // two failed attempts: a retry is pending
    relay.child.kill().expect("SIGKILL");
    relay.child.wait().expect("reaped");
    let failed = pushes(&pd).await;

    pd.reset().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(202).set_body_json(serde_json::json!({"status": "success"})),
        )
        .mount(&pd)
        .await;
    let relay = start(&policy, &data).await;
    let delivered = wait_pushes(&pd, 1).await;
    wait_outbox_drained(&data).await;
    assert_eq!(pushes(&pd).await.len(), 1, "one accepted trigger, not two");
    let key = &delivered[0]["dedup_key"];
    assert_eq!(delivered[0]["event_action"], "trigger");
    assert!(
        key.as_str().is_some_and(|k| k.starts_with("alert-relay-")),
        "{key}"
    );
    assert!(failed.len() >= 2);
    assert!(
        failed.iter().all(|f| &f["dedup_key"] == key),
        "every attempt, before and after the kill, carries one dedup_key"
    );

    // The resolve closes that same PagerDuty incident.
    send(relay.url.clone(), "resolved").await;
    let all = wait_pushes(&pd, 2).await;
    assert_eq!(all[1]["event_action"], "resolve");
    assert_eq!(&all[1]["dedup_key"], key);
    drop(relay);
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_stops_cleanly_and_check_config_reports_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = write_policy(dir.path(), "http://127.0.0.1:9", "1h");
    let relay = start(&policy, &dir.path().join("data")).await;
    let pid = relay.child.id().to_string();
    Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    let mut relay = relay;
    let status = eventually("exit", Duration::from_secs(10), || {
        let done = relay.child.try_wait().expect("wait");
        async move { done }
    })
    .await;
    assert!(status.success(), "{status:?}");

    let summary = success_stdout(&relay_command([
        OsStr::new("check-config"),
        policy.as_os_str(),
    ]));
    assert!(
        summary.contains("policy critical [severity=\"critical\"]: 2 step(s)"),
        "{summary}"
    );

    std::fs::write(
        &policy,
        std::fs::read_to_string(&policy)
            .expect("read")
            .replace("[ntfy.secondary]", "[ntfy.tertiary]"),
    )
    .expect("write");
    let output = relay_command([OsStr::new("check-config"), policy.as_os_str()]);
    assert_eq!(output.status.code(), Some(1));
    let errors = String::from_utf8_lossy(&output.stderr);
    assert!(errors.contains("policies[0].steps[1].notify[0]: unknown target `ntfy.tertiary` (defined: ntfy.primary, ntfy.secondary)"), "{errors}");

    let missing = dir.path().join("missing.yml");
    let output = relay_command([
        OsStr::new("simulate"),
        OsStr::new("--labels"),
        OsStr::new("severity=critical,alertname=X"),
        OsStr::new("--config"),
        missing.as_os_str(),
    ]);
    assert_eq!(output.status.code(), Some(1));
}
