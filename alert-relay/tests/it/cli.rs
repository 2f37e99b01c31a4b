//! The operator's commands: simulate and test-notify, through the real binary.

use serde_json::{json, Value};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::*;

#[test]
fn simulate_prints_the_policy_and_the_timeline() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write_policy(dir.path(), "http://127.0.0.1:9", "15m");
    let critical = "severity=critical,alertname=GatewayDown";
    let file = file.to_str().expect("utf-8 path");
    let text = success_stdout(&relay_command([
        "simulate", "--labels", critical, "--config", file,
    ]));
    assert_eq!(
        text,
        "policy: critical\n  +0s       step 1: ntfy.primary\n  +15m      step 2: ntfy.secondary\nstops on resolve, acknowledge or silence; resolves are announced\n"
    );
    let output = relay_command(["simulate", "--labels", "severity=info", "--config", file]);
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "no policy matches these labels: nothing would be sent\n"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn test_notify_sends_one_marked_message_and_reports_the_answer() {
    let ntfy = fake_vendor(200).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write_policy(dir.path(), &ntfy.uri(), "1h");
    let run = |target: &'static str, file: std::path::PathBuf| {
        tokio::task::spawn_blocking(move || {
            relay_command([
                "test-notify".as_ref(),
                "--config".as_ref(),
                file.as_os_str(),
                target.as_ref(),
            ])
        })
    };
    let output = run("ntfy.primary", file.clone()).await.expect("join");
    assert!(success_stdout(&output).starts_with("ntfy.primary: delivered"));
    let sent = pushes(&ntfy).await;
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["title"], "TEST from alert-relay");
    assert_eq!(sent[0]["topic"], "oncall-primary");

    let output = run("ntfy.nope", file).await.expect("join");
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("unknown target `ntfy.nope`"));
}

#[tokio::test(flavor = "multi_thread")]
async fn healthcheck_exits_0_while_the_relay_answers_and_1_when_nothing_listens() {
    let ntfy = fake_vendor(200).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let relay = TestRelay::paging(&ntfy, dir.path()).await;
    let listen = relay.url.trim_start_matches("http://").to_owned();
    let up = tokio::task::spawn_blocking(move || {
        relay_command(["healthcheck", "--listen", listen.as_str()])
    })
    .await
    .expect("join");
    success_stdout(&up);

    let nobody = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .to_string();
    let down = relay_command(["healthcheck", "--listen", nobody.as_str()]);
    assert_eq!(down.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&down.stderr);
    assert!(
        stderr.contains(&format!("no answer from http://{nobody}/health")),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn check_config_probe_reports_each_target_and_fails_on_a_broken_one() {
    let ntfy = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/health"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"healthy": true})))
        .mount(&ntfy)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/account"))
        .and(header("authorization", "Bearer tk_e2e"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&ntfy)
        .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write_policy(dir.path(), &ntfy.uri(), "1h");
    let probe = |file: std::path::PathBuf| {
        tokio::task::spawn_blocking(move || {
            relay_command([
                "check-config".as_ref(),
                file.as_os_str(),
                "--probe".as_ref(),
            ])
        })
    };

    let output = probe(file.clone()).await.expect("join");
    let report = success_stdout(&output);
    for target in ["ntfy.primary", "ntfy.secondary"] {
        assert!(
            report.contains(&format!("  {target}: ok: "))
                && report.contains("accepts the credentials"),
            "{report}"
        );
    }

    std::fs::write(&file, policy_with_dead_secondary(&ntfy.uri(), "1h")).expect("write");
    let output = probe(file).await.expect("join");
    assert_eq!(output.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stdout.contains(": valid"),
        "the summary comes first: {stdout}"
    );
    assert!(stderr.contains("  ntfy.primary: ok: "), "{stderr}");
    assert!(stderr.contains("  ntfy.secondary: FAILED: "), "{stderr}");
    assert!(posts(&ntfy).await.is_empty(), "a probe notifies nobody");
}

#[test]
fn check_config_summarises_the_shipped_policy_with_samples_that_match_each_policy() {
    let shipped = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../monitoring/alert-relay/escalation-policy.yml"
    );
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_alert-relay"))
        .args(["check-config", shipped])
        // Only the webhook token: no topic, Slack or PagerDuty variable from the caller's shell.
        .env_clear()
        .env("RELAY_WEBHOOK_TOKEN", TOKEN)
        .output()
        .expect("run alert-relay");
    let summary = success_stdout(&output);
    for expected in [
        "targets: log.audit\n",
        "switched off: ntfy.primary (its topic is empty",
        "policy critical [severity=\"critical\"]: 4 step(s), announces resolves\n  sample Firing: [critical] GatewayHighErrorRate\n",
        "policy warning [severity=\"warning\"]: 2 step(s), announces resolves\n  sample Firing: [warning] GatewayHighErrorRate\n",
        "heartbeat: none for 10m raises HeartbeatMissing",
    ] {
        assert!(summary.contains(expected), "`{expected}` missing from:\n{summary}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn incidents_and_ack_from_a_terminal() {
    let ntfy = fake_vendor(200).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let relay = TestRelay::paging(&ntfy, dir.path()).await;
    let url = relay.url.clone();
    // The relay's credentials come from the environment or a file, never from argv.
    let run = move |args: Vec<String>, token: Option<&'static str>| {
        let url = url.clone();
        tokio::task::spawn_blocking(move || {
            let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_alert-relay"));
            command.args(&args).env_clear().env("RELAY_URL", url);
            if let Some(token) = token {
                command.env("RELAY_WEBHOOK_TOKEN", token);
            }
            command.output().expect("run alert-relay")
        })
    };
    let args = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();

    let none = run(args(&["incidents"]), None).await.expect("join");
    assert_eq!(none.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&none.stderr).contains("no credentials"));
    let wrong = run(args(&["incidents"]), Some("wrong-token-0123456789"))
        .await
        .expect("join");
    assert_eq!(wrong.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("refused the credentials"));
    let empty = run(args(&["incidents"]), Some(TOKEN)).await.expect("join");
    assert_eq!(success_stdout(&empty), "no open incidents\n");

    relay.webhook(&webhook("GatewayDown", "firing")).await;
    wait_pushes(&ntfy, 1).await;
    let listed = success_stdout(&run(args(&["incidents"]), Some(TOKEN)).await.expect("join"));
    assert!(
        listed.starts_with("#1 [critical] alertname=GatewayDown — escalating for "),
        "{listed}"
    );
    assert!(
        listed.contains("    notified: ntfy.primary; next: ntfy.secondary in 59m"),
        "{listed}"
    );

    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).expect("write");
    let acked = run(
        args(&[
            "ack",
            "1",
            "--by",
            "alice",
            "--token-file",
            token_file.to_str().expect("utf-8"),
        ]),
        None,
    )
    .await
    .expect("join");
    assert_eq!(
        success_stdout(&acked),
        "incident 1 acknowledged by alice; escalation stopped\n"
    );
    let listed = success_stdout(&run(args(&["incidents"]), Some(TOKEN)).await.expect("join"));
    assert!(listed.contains("— acknowledged for "), "{listed}");
    assert!(listed.contains("no further step"), "{listed}");

    let unknown = run(args(&["ack", "99"]), Some(TOKEN)).await.expect("join");
    assert_eq!(unknown.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no incident 99"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_password_in_a_vendor_url_never_reaches_the_probe_report() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("policy.yml");
    // Nothing listens on port 9: the report names the URL, without its password.
    let text = policy_yaml("http://relay:hunter2-secret@127.0.0.1:9", "1h");
    std::fs::write(&file, text).expect("write");
    let output = tokio::task::spawn_blocking(move || {
        relay_command([
            "check-config".as_ref(),
            file.as_os_str(),
            "--probe".as_ref(),
        ])
    })
    .await
    .expect("join");
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(all.contains("FAILED"), "{all}");
    assert!(all.contains("relay:***@127.0.0.1:9"), "{all}");
    assert!(!all.contains("hunter2"), "{all}");
}

#[test]
fn check_config_warns_about_a_template_that_renders_to_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("policy.yml");
    let text = policy_yaml("http://127.0.0.1:9", "1h").replace(
        "    matchers: ['severity=\"critical\"']\n",
        "    matchers: ['severity=\"critical\"']\n    templates:\n      title: \"{{#if nothing}}x{{/if}}\"\n",
    );
    std::fs::write(&file, text).expect("write");
    let summary = success_stdout(&relay_command(["check-config".as_ref(), file.as_os_str()]));
    assert!(
        summary
            .contains("warning: template critical/title renders to nothing for the sample Firing"),
        "{summary}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn test_notify_to_pagerduty_is_an_info_test_that_resolves_itself() {
    let pd = crate::fakes::strict(crate::fakes::StrictPagerDuty).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("policy.yml");
    std::fs::write(
        &file,
        policy_yaml("http://127.0.0.1:9", "1h").replace(
            "targets:\n",
            &format!(
                "targets:\n  pagerduty:\n    prod: {{routing_key: \"0123456789abcdef0123456789abcdef\", url: \"{}/v2/enqueue\"}}\n",
                pd.uri()
            ),
        ),
    )
    .expect("write");
    let output = tokio::task::spawn_blocking(move || {
        relay_command([
            "test-notify".as_ref(),
            "--config".as_ref(),
            file.as_os_str(),
            "pagerduty.prod".as_ref(),
        ])
    })
    .await
    .expect("join");
    let report = success_stdout(&output);
    assert!(report.contains("the test incident is resolved"), "{report}");
    let events: Vec<Value> = posts(&pd)
        .await
        .iter()
        .map(|r| serde_json::from_slice(&r.body).expect("json"))
        .collect();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0]["event_action"], "trigger");
    assert_eq!(
        events[0]["payload"]["severity"], "info",
        "no high-urgency page"
    );
    assert!(events[0]["payload"]["summary"]
        .as_str()
        .is_some_and(|s| s.starts_with("TEST")));
    assert_eq!(events[1]["event_action"], "resolve");
    assert_eq!(events[1]["dedup_key"], events[0]["dedup_key"]);
    assert!(
        events[0]["dedup_key"]
            .as_str()
            .is_some_and(|k| k.starts_with("alert-relay-0-")),
        "its own key"
    );
}
