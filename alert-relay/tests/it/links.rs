//! Runbook links as every vendor gets them: a relative one resolved against the relay's
//! public URL (and opening its runbook page), left out without one, and a link that is no
//! http(s) link never made one.

use std::path::Path;
use std::time::Duration;

use alert_relay::server;
use serde_json::Value;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer};

use crate::helpers::*;

const PD_KEY: &str = "0123456789abcdef0123456789abcdef";

/// Every vendor in one step; `public_url` from `PUBLIC_URL`, none when it is empty.
fn policy(ntfy: &str, slack: &str, pagerduty: &str, log: &Path) -> String {
    format!(
        r#"
server:
  public_url: ${{PUBLIC_URL:-}}
  webhook_auth:
    bearer_token: "{TOKEN}"
  ack_secret: "an-ack-secret-of-sufficient-length"
delivery:
  initial_backoff: 100ms
  max_backoff: 400ms
targets:
  ntfy:
    primary: {{url: "{ntfy}", topic: oncall-primary}}
  slack:
    oncall: {{webhook_url: "{slack}/services/T1/B1/SECRET"}}
  pagerduty:
    prod: {{routing_key: "{PD_KEY}", url: "{pagerduty}/v2/enqueue"}}
  log:
    audit: {{path: "{}"}}
policies:
  - name: critical
    steps:
      - after: 0s
        notify: [ntfy.primary, slack.oncall, pagerduty.prod, log.audit]
"#,
        log.display()
    )
}

/// The fakes of every vendor and the log file, and the policy file that names them.
struct Vendors {
    ntfy: MockServer,
    slack: MockServer,
    pagerduty: MockServer,
    log: std::path::PathBuf,
    policy: std::path::PathBuf,
}

impl Vendors {
    async fn start(dir: &Path) -> Self {
        let ntfy = fake_vendor(200).await;
        let slack = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/services/T1/B1/SECRET"))
            .respond_with(crate::fakes::StrictSlack)
            .mount(&slack)
            .await;
        let pagerduty = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/v2/enqueue"))
            .respond_with(crate::fakes::StrictPagerDuty)
            .mount(&pagerduty)
            .await;
        let log = dir.join("audit.log");
        let policy = dir.join("policy.yml");
        let text = policy_text(&ntfy, &slack, &pagerduty, &log);
        std::fs::write(&policy, text).expect("policy");
        Self {
            ntfy,
            slack,
            pagerduty,
            log,
            policy,
        }
    }

    /// The links each vendor got for the first page: (vendor, label, url).
    async fn links(&self) -> Vec<(&'static str, String, String)> {
        let push = wait_pushes(&self.ntfy, 1).await.remove(0);
        let slack = wait_pushes(&self.slack, 1).await.remove(0);
        let event = wait_pushes(&self.pagerduty, 1).await.remove(0);
        let line: Value = eventually("the log line", Duration::from_secs(5), || async {
            let text = std::fs::read_to_string(&self.log).ok()?;
            serde_json::from_str(text.lines().next()?).ok()
        })
        .await;
        let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
        let mut links = Vec::new();
        if let Some(click) = push["click"].as_str() {
            links.push(("ntfy", "click".to_owned(), click.to_owned()));
        }
        for action in push["actions"].as_array().into_iter().flatten() {
            links.push(("ntfy", text(&action["label"]), text(&action["url"])));
        }
        let blocks = slack["attachments"][0]["blocks"]
            .as_array()
            .expect("blocks");
        for block in blocks.iter().filter(|b| b["type"] == "actions") {
            for button in block["elements"].as_array().into_iter().flatten() {
                links.push(("slack", text(&button["text"]["text"]), text(&button["url"])));
            }
        }
        for link in event["links"].as_array().into_iter().flatten() {
            links.push(("pagerduty", text(&link["text"]), text(&link["href"])));
        }
        if let Some(client) = event["client_url"].as_str() {
            links.push(("pagerduty", "client".to_owned(), client.to_owned()));
        }
        if let Some(runbook) = line["runbook_url"].as_str() {
            links.push(("log", "Runbook".to_owned(), runbook.to_owned()));
        }
        links
    }
}

fn policy_text(ntfy: &MockServer, slack: &MockServer, pd: &MockServer, log: &Path) -> String {
    policy(&ntfy.uri(), &slack.uri(), &pd.uri(), log)
}

/// A firing GatewayHighErrorRate whose rule wrote `runbook_url`.
fn alert_with_runbook(runbook_url: &str) -> Value {
    let mut payload = webhook("GatewayHighErrorRate", "firing");
    payload["commonAnnotations"]["runbook_url"] = runbook_url.into();
    payload
}

fn runbooks() -> server::Options {
    server::Options {
        runbooks: Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/runbooks")),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_relative_runbook_link_opens_the_relays_runbook_page_from_every_vendor() {
    let dir = tempfile::tempdir().expect("tempdir");
    let vendors = Vendors::start(dir.path()).await;
    let relay =
        TestRelay::start_self_linked_with(&vendors.policy, &dir.path().join("data"), runbooks())
            .await;
    // What rules give in a Prometheus without the bundle's `runbook_base` external label.
    relay
        .webhook(&alert_with_runbook("/GatewayHighErrorRate"))
        .await;

    let expected = format!("{}/runbooks/GatewayHighErrorRate", relay.url);
    let links = vendors.links().await;
    let runbook_links: Vec<_> = links
        .iter()
        .filter(|(_, label, _)| label == "Runbook")
        .collect();
    let vendors_linked: Vec<&str> = runbook_links.iter().map(|(v, _, _)| *v).collect();
    assert_eq!(
        vendors_linked,
        ["ntfy", "slack", "pagerduty", "log"],
        "{links:?}"
    );
    // Tapping the push opens the incident's page in the console.
    let click: Vec<_> = links
        .iter()
        .filter(|(_, label, _)| label == "click")
        .collect();
    assert_eq!(click.len(), 1, "{links:?}");
    assert!(click[0].2.ends_with("/incidents/1"), "{links:?}");
    let console: Vec<(&str, &str)> = links
        .iter()
        .filter(|(_, _, url)| url == &click[0].2)
        .map(|(vendor, label, _)| (*vendor, label.as_str()))
        .collect();
    assert_eq!(
        console,
        [
            ("ntfy", "click"),
            ("slack", "Open in the console"),
            ("pagerduty", "On-call console")
        ],
        "every vendor links the incident's console page"
    );
    for (vendor, label, url) in &runbook_links {
        assert_eq!(url, &expected, "{vendor} {label}");
    }

    // And the link opens the runbook.
    let page = reqwest::get(&expected).await.expect("runbook page");
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
    assert!(page
        .text()
        .await
        .expect("body")
        .contains("GatewayHighErrorRate"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_relative_runbook_link_without_public_url_is_left_out_rather_than_sent_broken() {
    let dir = tempfile::tempdir().expect("tempdir");
    let vendors = Vendors::start(dir.path()).await;
    let relay = TestRelay::start(&vendors.policy, &dir.path().join("data"), None).await;
    relay
        .webhook(&alert_with_runbook("/GatewayHighErrorRate"))
        .await;

    let links = vendors.links().await;
    assert!(
        links.iter().all(|(_, label, _)| label != "Runbook"),
        "{links:?}"
    );
    for (vendor, label, url) in &links {
        assert!(url.starts_with("http://"), "{vendor} {label}: {url}");
    }
    // The push still opens something: the alert's source.
    let push = wait_pushes(&vendors.ntfy, 1).await.remove(0);
    assert_eq!(push["click"], "http://prometheus.test:9090/graph");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_runbook_or_source_link_that_is_no_http_link_is_never_made_a_link() {
    let dir = tempfile::tempdir().expect("tempdir");
    let vendors = Vendors::start(dir.path()).await;
    let relay = TestRelay::start(
        &vendors.policy,
        &dir.path().join("data"),
        Some("https://relay.test/"),
    )
    .await;
    let mut payload = alert_with_runbook("javascript:alert(document.cookie)");
    payload["alerts"][0]["generatorURL"] = "data:text/html,<script>alert(1)</script>".into();
    payload["externalURL"] = "javascript:alert(2)".into();
    relay.webhook(&payload).await;

    let links = vendors.links().await;
    assert!(!links.is_empty(), "the ack link at least");
    for (vendor, label, url) in &links {
        assert!(
            url.starts_with("https://relay.test/ack/") || url == "https://relay.test/incidents/1",
            "only the relay's own acknowledge and console links: {vendor} {label}: {url}"
        );
    }
}

#[test]
fn check_config_warns_that_relative_runbook_links_need_a_public_url() {
    let dir = tempfile::tempdir().expect("tempdir");
    let with = dir.path().join("with.yml");
    let without = dir.path().join("without.yml");
    let text = policy_yaml("http://127.0.0.1:9", "1h");
    std::fs::write(&with, &text).expect("write");
    let unset = text.replace("  public_url: ${PUBLIC_URL:-http://127.0.0.1:1}\n", "");
    assert_ne!(unset, text);
    std::fs::write(&without, unset).expect("write");

    let summary = success_stdout(&relay_command([
        "check-config".as_ref(),
        without.as_os_str(),
    ]));
    assert!(
        summary.contains("warning: server.public_url is not set")
            && summary.contains("runbook links without a host"),
        "{summary}"
    );
    let summary = success_stdout(&relay_command(["check-config".as_ref(), with.as_os_str()]));
    assert!(!summary.contains("public_url"), "{summary}");
}
