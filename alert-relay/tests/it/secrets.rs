//! No secret appears in logs or error bodies, whatever goes wrong.

use std::process::{Command, Stdio};
use std::time::Duration;

use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread")]
async fn secrets_never_reach_logs_or_answers() {
    // ntfy refuses the token and Slack's URL points nowhere: errors are logged.
    let ntfy = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(401).set_body_string(r#"{"code":40101,"error":"unauthorized"}"#),
        )
        .mount(&ntfy)
        .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let slack_secret = "T000SECRETSLACKPATH";
    let policy = dir.path().join("policy.yml");
    std::fs::write(
        &policy,
        policy_yaml(&ntfy.uri(), "1h")
            .replace("token: tk_e2e}", "token: tk_secret_ntfy_token}")
            .replace("targets:\n", &format!("targets:\n  slack:\n    ops:\n      webhook_url: http://127.0.0.1:9/services/{slack_secret}\n"))
            .replace("notify: [ntfy.primary]", "notify: [ntfy.primary, slack.ops]"),
    )
    .expect("write");
    let written = std::fs::read_to_string(&policy).expect("read back");
    assert!(written.contains("tk_secret_ntfy_token") && written.contains("slack.ops"));
    let log = dir.path().join("relay.log");
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    let mut child = Command::new(env!("CARGO_BIN_EXE_alert-relay"))
        .args([
            "serve",
            "--log-format",
            "json",
            "--listen",
            &addr.to_string(),
            "--config",
        ])
        .arg(&policy)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .env("RUST_LOG", "debug")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("start");
    let url = format!("http://{addr}");
    eventually("ready", Duration::from_secs(10), || async {
        reqwest::get(format!("{url}/ready"))
            .await
            .ok()
            .filter(|r| r.status() == 200)
            .map(|_| ())
    })
    .await;
    let client = reqwest::Client::new();
    let mut answers = String::new();
    // Wrong, near-miss and missing credentials; a good webhook; a bad ack link.
    for token in [
        Some("wrong"),
        Some(&TOKEN[..TOKEN.len() - 1]),
        None,
        Some(TOKEN),
    ] {
        let mut request = client
            .post(format!("{url}/webhook"))
            .body(webhook("GatewayDown", "firing").to_string());
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        answers.push_str(
            &request
                .send()
                .await
                .expect("send")
                .text()
                .await
                .expect("body"),
        );
    }
    answers.push_str(
        &client
            .post(format!("{url}/ack/forged.token"))
            .send()
            .await
            .expect("ack")
            .text()
            .await
            .expect("body"),
    );
    eventually(
        "delivery failures logged",
        Duration::from_secs(10),
        || async {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            (text.contains("dead-lettered") && text.contains("will retry")).then_some(())
        },
    )
    .await;
    let _ = child.kill();
    let _ = child.wait();
    let logged = std::fs::read_to_string(&log).expect("log");
    for secret in [
        TOKEN,
        "tk_secret_ntfy_token",
        slack_secret,
        "an-ack-secret-of-sufficient-length",
    ] {
        assert!(!logged.contains(secret), "secret {secret} in the logs");
        assert!(!answers.contains(secret), "secret {secret} in an answer");
    }
    assert!(
        logged.contains("ntfy answered 401"),
        "the failure itself is logged"
    );
}
