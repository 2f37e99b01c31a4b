//! The operator's commands: simulate and test-notify, through the real binary.

use std::process::Command;

use crate::helpers::*;

#[test]
fn simulate_prints_the_policy_and_the_timeline() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write_policy(dir.path(), "http://127.0.0.1:9", "15m");
    let output = Command::new(env!("CARGO_BIN_EXE_alert-relay"))
        .args([
            "simulate",
            "--labels",
            "severity=critical,alertname=GatewayDown",
            "--config",
        ])
        .arg(&file)
        .output()
        .expect("run");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        text,
        "policy: critical\n  +0s       step 1: ntfy.primary\n  +15m      step 2: ntfy.secondary\nstops on resolve, acknowledge or silence; resolves are announced\n"
    );
    let output = Command::new(env!("CARGO_BIN_EXE_alert-relay"))
        .args(["simulate", "--labels", "severity=info", "--config"])
        .arg(&file)
        .output()
        .expect("run");
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
            Command::new(env!("CARGO_BIN_EXE_alert-relay"))
                .args(["test-notify", "--config"])
                .arg(&file)
                .arg(target)
                .output()
                .expect("run")
        })
    };
    let output = run("ntfy.primary", file.clone()).await.expect("join");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).starts_with("ntfy.primary: delivered"));
    let sent = pushes(&ntfy).await;
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["title"], "TEST from alert-relay");
    assert_eq!(sent[0]["topic"], "oncall-primary");

    let output = run("ntfy.nope", file).await.expect("join");
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("unknown target `ntfy.nope`"));
}
