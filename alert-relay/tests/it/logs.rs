//! The relay's log lines written to a file (as `./scripts/stack` keeps them) are plain text.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread")]
async fn relay_logs_written_to_a_file_carry_no_terminal_colour_codes() {
    let ntfy = fake_vendor(200).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = write_policy(dir.path(), &ntfy.uri(), "1h");
    let log = dir.path().join("relay.log");
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    let mut child = Command::new(env!("CARGO_BIN_EXE_alert-relay"))
        .arg("serve")
        .arg("--config")
        .arg(&policy)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(["--listen", &addr.to_string()])
        .env_remove("LOKI_URL")
        // Colour is decided by stderr alone (a terminal or not), not by the test's shell.
        .env_remove("NO_COLOR")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("start alert-relay");
    let url = format!("http://{addr}");
    wait_ok(&format!("{url}/ready"), Duration::from_secs(10)).await;
    // A refused webhook adds a warning to the info lines.
    let refused = reqwest::Client::new()
        .post(format!("{url}/webhook"))
        .bearer_auth(TOKEN)
        .body("{}")
        .send()
        .await
        .expect("webhook");
    assert_eq!(refused.status(), 400);
    let text = eventually("the warning logged", Duration::from_secs(10), || async {
        let text = std::fs::read_to_string(&log).ok()?;
        text.contains("webhook refused").then_some(text)
    })
    .await;
    let _ = child.kill();
    let _ = child.wait();
    assert!(text.contains("INFO") && text.contains("WARN"), "{text}");
    assert!(
        !text.contains('\u{1b}'),
        "escape codes in a log file: {:?}",
        text.lines().find(|l| l.contains('\u{1b}'))
    );
}
