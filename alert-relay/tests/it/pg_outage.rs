//! A PostgreSQL outage under a running relay: webhooks get a 5xx (Alertmanager retries those)
//! and `/ready` says so while the server is down; when it is back the relay reconnects by
//! itself, takes the retried webhook and fires the step that fell due meanwhile. Runs a
//! private server of its own (Debian's postgresql, installed by the test command), since
//! the test stops and starts it.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::helpers::*;
use crate::pg_server::Server;

struct RelayProcess(Child);

impl Drop for RelayProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn post_webhook(url: &str, alertname: &str) -> u16 {
    reqwest::Client::new()
        .post(format!("{url}/webhook"))
        .bearer_auth(TOKEN)
        .body(webhook(alertname, "firing").to_string())
        .timeout(Duration::from_secs(15))
        .send()
        .await
        .map_or(0, |r| r.status().as_u16())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_database_outage_is_a_5xx_and_the_relay_reconnects_by_itself() {
    let server = Server::start();
    let ntfy = fake_vendor(200).await;
    let dir = tempfile::tempdir().expect("tempdir");
    // The second step falls due while the database is down.
    let policy = write_policy(dir.path(), &ntfy.uri(), "3s");
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    let url = format!("http://{addr}");
    let _relay = RelayProcess(
        Command::new(env!("CARGO_BIN_EXE_alert-relay"))
            .arg("serve")
            .arg("--config")
            .arg(&policy)
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["--listen", &addr.to_string()])
            .env("RELAY_DATABASE_URL", server.url())
            .env_remove("LOKI_URL")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start alert-relay"),
    );
    wait_ok(&format!("{url}/ready"), Duration::from_secs(20)).await;
    assert_eq!(post_webhook(&url, "BeforeTheOutage").await, 200);
    wait_pushes(&ntfy, 1).await;

    server.down();
    let status = post_webhook(&url, "DuringTheOutage").await;
    assert!(
        (500..600).contains(&status),
        "a webhook the relay cannot store is a 5xx (Alertmanager retries it), not {status}"
    );
    let ready = reqwest::get(format!("{url}/ready"))
        .await
        .map_or(0, |r| r.status().as_u16());
    assert_eq!(ready, 503, "/ready says the relay cannot take pages now");
    // Past the second step's due time while the server is down.
    tokio::time::sleep(Duration::from_secs(4)).await;

    server.up();
    wait_ok(&format!("{url}/ready"), Duration::from_secs(30)).await;
    // Alertmanager's retry of the refused webhook.
    assert_eq!(post_webhook(&url, "DuringTheOutage").await, 200);
    let sent = eventually(
        "the retried webhook's page and the step that fell due in the outage",
        Duration::from_secs(30),
        || async {
            let sent = pushes(&ntfy).await;
            let titled = |t: &str| {
                sent.iter()
                    .any(|p| p["title"].as_str().is_some_and(|x| x.contains(t)))
            };
            let second_step = sent.iter().any(|p| {
                p["topic"] == "oncall-secondary"
                    && p["title"]
                        .as_str()
                        .is_some_and(|x| x.contains("BeforeTheOutage"))
            });
            (titled("DuringTheOutage") && second_step).then_some(sent)
        },
    )
    .await;
    let first_pages = sent
        .iter()
        .filter(|p| {
            p["topic"] == "oncall-primary"
                && p["title"]
                    .as_str()
                    .is_some_and(|x| x.contains("BeforeTheOutage"))
        })
        .count();
    assert_eq!(first_pages, 1, "the first step was not sent again");
}
