//! High availability on PostgreSQL with the real binary: several `serve` processes on one
//! database, each given every webhook (as each Alertmanager of a pair sends to each relay),
//! page once per escalation step; one killed with SIGKILL mid-escalation or mid-retry leaves
//! the rest to its survivor, which re-sends at most with the same ntfy sequence id.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use alert_relay::store::postgres::scratch::ScratchDatabase;
use serde_json::Value;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, Respond, ResponseTemplate};

use crate::fakes::Recovering;
use crate::helpers::*;
use crate::replicas::{all_sent, by_step, to_all, Replica};

/// The process holding a live delivery lease on `target` now, by pid, if one does: the
/// leases are rows of `delivery_claims` whose holder is `host:pid:random`
/// (`store::postgres::leases`). (Other targets' leases may be held by the other replica.)
async fn claim_holder(db: &ScratchDatabase, target: &str) -> Option<u32> {
    let (client, connection) =
        tokio_postgres::connect(&db.url().to_string(), tokio_postgres::NoTls)
            .await
            .ok()?;
    tokio::spawn(connection);
    let now = alert_relay::domain::Timestamp::now().0;
    let rows = client
        .query(
            "SELECT holder FROM delivery_claims WHERE target = $1 AND NOT released AND expires_at > $2",
            &[&target, &now],
        )
        .await
        .ok()?;
    let mut holders: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    assert!(holders.len() <= 1, "one lease per target: {holders:?}");
    holders.pop()?.split(':').nth(1)?.parse().ok()
}

async fn wait_topic(ntfy: &MockServer, topic: &str, limit: Duration) -> Vec<Value> {
    eventually(&format!("a push to {topic}"), limit, || async {
        let got = pushes(ntfy).await;
        got.iter().any(|p| p["topic"] == topic).then_some(got)
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn three_replicas_given_every_webhook_page_each_step_once() {
    let Some(db) = ScratchDatabase::create() else {
        return;
    };
    let ntfy = fake_vendor(200).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = write_policy(dir.path(), &ntfy.uri(), "2s");
    let mut replicas = Vec::new();
    for name in ["a", "b", "c"] {
        replicas.push(Replica::start(name, &policy, dir.path(), &db).await);
    }
    const INCIDENTS: usize = 4;
    for i in 0..INCIDENTS {
        to_all(&replicas, &webhook(&format!("Alert{i}"), "firing")).await;
    }
    // Both steps of every incident: each at most once is checked below.
    eventually(
        "both steps of every incident",
        Duration::from_secs(30),
        || async { (pushes(&ntfy).await.len() >= 2 * INCIDENTS).then_some(()) },
    )
    .await;
    all_sent(&db, INCIDENTS as i64).await;
    eventually("no step left to fire", Duration::from_secs(10), || async {
        replicas[0].settled().await.then_some(())
    })
    .await;
    let pushes = pushes(&ntfy).await;
    let steps = by_step(&pushes);
    let topics = |t: &str| steps.keys().filter(|(topic, _)| topic == t).count();
    assert_eq!(
        (
            pushes.len(),
            topics("oncall-primary"),
            topics("oncall-secondary")
        ),
        (2 * INCIDENTS, INCIDENTS, INCIDENTS),
        "each step of each incident once: {steps:?}"
    );
    let mut titles: Vec<(&str, &str)> = pushes
        .iter()
        .map(|p| {
            (
                p["topic"].as_str().unwrap_or(""),
                p["title"].as_str().unwrap_or(""),
            )
        })
        .collect();
    titles.sort_unstable();
    titles.dedup();
    assert_eq!(
        titles.len(),
        2 * INCIDENTS,
        "one page per incident and step: {titles:?}"
    );
}

/// Two replicas, steps at 0 s and 3 s; the one that delivered the first page (or the
/// other) is killed with SIGKILL before the second is due: the survivor fires it, once.
async fn killed_mid_escalation(kill_the_sender: bool) {
    let Some(db) = ScratchDatabase::create() else {
        return;
    };
    let ntfy = fake_vendor(200).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = write_policy(dir.path(), &ntfy.uri(), "3s");
    let mut replicas = vec![
        Replica::start("a", &policy, dir.path(), &db).await,
        Replica::start("b", &policy, dir.path(), &db).await,
    ];
    let sent = Instant::now();
    to_all(&replicas, &webhook("GatewayDown", "firing")).await;
    wait_topic(&ntfy, "oncall-primary", Duration::from_secs(20)).await;
    let sender = eventually(
        "the log of the first page",
        Duration::from_secs(10),
        || async {
            replicas
                .iter()
                .position(|r| r.logged("notification delivered", "ntfy.primary") > 0)
        },
    )
    .await;
    let victim = if kill_the_sender { sender } else { 1 - sender };
    replicas[victim].kill_9();
    let killed = Instant::now();
    let due = sent + Duration::from_secs(3);
    assert!(killed < due, "killed before the second step was due");
    wait_topic(&ntfy, "oncall-secondary", Duration::from_secs(30)).await;
    let pushed = Instant::now();
    println!(
        "failover: replica {} killed ({}), kill -> second step pushed in {:?}, \
         {:?} after it was due (3 s after the webhook was sent)",
        replicas[victim].name,
        if kill_the_sender {
            "the sender of step 1"
        } else {
            "not the sender of step 1"
        },
        pushed - killed,
        pushed.saturating_duration_since(due),
    );
    let survivor = &replicas[1 - victim];
    all_sent(&db, 1).await;
    eventually("no step left to fire", Duration::from_secs(10), || async {
        survivor.settled().await.then_some(())
    })
    .await;
    let pushes = pushes(&ntfy).await;
    let steps = by_step(&pushes);
    let ids = |t: &str| steps.keys().filter(|(topic, _)| topic == t).count();
    assert_eq!(
        (ids("oncall-primary"), ids("oncall-secondary")),
        (1, 1),
        "every step, re-sent if at all with the same sequence id: {steps:?}"
    );
    assert_eq!(
        steps.get(&(
            "oncall-secondary".into(),
            steps_id(&steps, "oncall-secondary")
        )),
        Some(&1),
        "the second step pushed once: {steps:?}"
    );
    assert!(
        survivor.logged("notification delivered", "ntfy.secondary") == 1,
        "the survivor sent the second step:\n{}",
        survivor.log()
    );
}

fn steps_id(steps: &BTreeMap<(String, String), usize>, topic: &str) -> String {
    steps
        .keys()
        .find(|(t, _)| t == topic)
        .map(|(_, id)| id.clone())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_replica_that_sent_step_one_killed_the_survivor_sends_step_two_once() {
    killed_mid_escalation(true).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_other_replica_killed_the_sender_sends_step_two_once() {
    killed_mid_escalation(false).await;
}

/// [`Recovering`] that counts the pushes it accepted.
#[derive(Clone, Default)]
struct CountedRecovering {
    switch: Recovering,
    accepted: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Respond for CountedRecovering {
    fn respond(&self, request: &wiremock::Request) -> ResponseTemplate {
        let answer = self.switch.respond(request);
        if self.switch.0.load(std::sync::atomic::Ordering::SeqCst) {
            self.accepted
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        answer
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_replica_retrying_a_page_killed_the_survivor_delivers_it_with_its_sequence_id() {
    let Some(db) = ScratchDatabase::create() else {
        return;
    };
    let ntfy = MockServer::start().await;
    let ntfy_state = CountedRecovering::default();
    Mock::given(method("POST"))
        .respond_with(ntfy_state.clone())
        .mount(&ntfy)
        .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = write_policy(dir.path(), &ntfy.uri(), "1h");
    let mut replicas = vec![
        Replica::start("a", &policy, dir.path(), &db).await,
        Replica::start("b", &policy, dir.path(), &db).await,
    ];
    to_all(&replicas, &webhook("GatewayDown", "firing")).await;
    let retrying = eventually("a replica retrying", Duration::from_secs(20), || async {
        replicas
            .iter()
            .position(|r| r.logged("will retry", "ntfy.primary") >= 2)
    })
    .await;
    let retries: Vec<usize> = replicas
        .iter()
        .map(|r| r.logged("will retry", "ntfy.primary"))
        .collect();
    replicas[retrying].kill_9();
    let killed = Instant::now();
    let survivor = &replicas[1 - retrying];
    let before = posts(&ntfy).await.len();
    // The survivor takes the retries over while ntfy still fails...
    eventually("the survivor retrying", Duration::from_secs(20), || async {
        (survivor.logged("will retry", "ntfy.primary") > 0 && posts(&ntfy).await.len() > before)
            .then_some(())
    })
    .await;
    println!(
        "retries logged by a, b before {} was killed: {retries:?}; the survivor retried {:?} \
         after the kill",
        replicas[retrying].name,
        killed.elapsed()
    );
    ntfy_state.switch.recover();
    all_sent(&db, 1).await;
    let pushes = pushes(&ntfy).await;
    let steps = by_step(&pushes);
    assert_eq!(steps.len(), 1, "one page, one sequence id: {steps:?}");
    assert_eq!(
        ntfy_state
            .accepted
            .load(std::sync::atomic::Ordering::SeqCst),
        1,
        "accepted once after ntfy recovered: {steps:?}"
    );
    assert_eq!(
        survivor.logged("notification delivered", "ntfy.primary"),
        1,
        "the survivor delivered it:\n{}",
        survivor.log()
    );
}

/// A real Alertmanager gossiping with its peer on loopback; killed when dropped.
struct ClusteredAlertmanager {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for ClusteredAlertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

impl ClusteredAlertmanager {
    /// Alertmanager with `config`, gossiping on `cluster` with the peer on `peer`; short
    /// gossip and peer timeouts so that the pair settles and hands over within seconds.
    fn spawn(config: &str, cluster: u16, peer: u16) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("am.yml");
        std::fs::write(&file, config).expect("write");
        let web = free_port();
        let child = Command::new("prometheus-alertmanager")
            .arg(format!("--config.file={}", file.display()))
            .arg(format!("--storage.path={}", dir.path().display()))
            .arg(format!("--web.listen-address=127.0.0.1:{web}"))
            .arg(format!("--cluster.listen-address=127.0.0.1:{cluster}"))
            .arg(format!("--cluster.peer=127.0.0.1:{peer}"))
            .arg("--cluster.gossip-interval=50ms")
            .arg("--cluster.pushpull-interval=1s")
            .arg("--cluster.peer-timeout=2s")
            .arg("--cluster.settle-timeout=5s")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus-alertmanager (installed by the test command)");
        Self {
            child,
            url: format!("http://127.0.0.1:{web}"),
            _dir: dir,
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_alertmanager_pair_sending_to_two_relays_pages_once_per_step() {
    let Some(db) = ScratchDatabase::create() else {
        return;
    };
    let ntfy = fake_vendor(200).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = write_policy(dir.path(), &ntfy.uri(), "2s");
    let replicas = vec![
        Replica::start("a", &policy, dir.path(), &db).await,
        Replica::start("b", &policy, dir.path(), &db).await,
    ];
    let hooks: String = replicas
        .iter()
        .map(|r| {
            format!(
                "      - url: {}/webhook\n        http_config:\n          authorization: {{type: Bearer, credentials: {TOKEN}}}\n",
                r.url
            )
        })
        .collect();
    let config = format!(
        "route:\n  receiver: relays\n  group_by: [alertname]\n  group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1h\nreceivers:\n  - name: relays\n    webhook_configs:\n{hooks}"
    );
    let (p1, p2) = (free_port(), free_port());
    let pair = [
        ClusteredAlertmanager::spawn(&config, p1, p2),
        ClusteredAlertmanager::spawn(&config, p2, p1),
    ];
    for am in &pair {
        wait_ok(&format!("{}/-/ready", am.url), Duration::from_secs(20)).await;
    }
    eventually("the pair gossiping", Duration::from_secs(20), || async {
        let status: Value = reqwest::get(format!("{}/api/v2/status", pair[0].url))
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        (status["cluster"]["peers"].as_array()?.len() == 2).then_some(())
    })
    .await;
    // Prometheus sends every alert to both Alertmanagers.
    let alert = serde_json::json!([{
        "labels": {"alertname": "GatewayDown", "severity": "critical", "service": "gateway"},
        "annotations": {"summary": "The gateway answers too many requests with 5xx."},
    }]);
    for am in &pair {
        let answer = reqwest::Client::new()
            .post(format!("{}/api/v2/alerts", am.url))
            .json(&alert)
            .send()
            .await
            .expect("post the alert");
        assert!(answer.status().is_success(), "{answer:?}");
    }
    wait_topic(&ntfy, "oncall-secondary", Duration::from_secs(30)).await;
    all_sent(&db, 1).await;
    eventually("no step left to fire", Duration::from_secs(10), || async {
        replicas[0].settled().await.then_some(())
    })
    .await;
    let mut webhooks = 0.0;
    for r in &replicas {
        let text = reqwest::get(format!("{}/metrics", r.url))
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text");
        webhooks += text
            .lines()
            .filter(|l| {
                l.starts_with(r#"relay_webhooks_received_total{outcome="accepted"}"#)
                    || l.starts_with(r#"relay_webhooks_received_total{outcome="duplicate"}"#)
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>();
    }
    assert!(webhooks >= 2.0, "each relay given the webhook: {webhooks}");
    let pushes = pushes(&ntfy).await;
    let steps = by_step(&pushes);
    let topics: Vec<&str> = pushes
        .iter()
        .map(|p| p["topic"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        topics,
        ["oncall-primary", "oncall-secondary"],
        "one page per step, in order, from {webhooks} webhooks: {steps:?}"
    );
    println!("an Alertmanager pair, two relays: {webhooks} webhooks stored, 2 pages");
}

/// ntfy answering pushes to `oncall-secondary` only after a while (within the policy's 2 s
/// delivery timeout): a page is on its way.
struct SlowSecondary(Duration);

impl Respond for SlowSecondary {
    fn respond(&self, request: &wiremock::Request) -> ResponseTemplate {
        let answer = crate::fakes::StrictNtfy.respond(request);
        let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
        if body["topic"] == "oncall-secondary" {
            answer.set_delay(self.0)
        } else {
            answer
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_replica_killed_while_its_page_is_on_the_way_the_survivor_sends_it_again_with_its_sequence_id(
) {
    let Some(db) = ScratchDatabase::create() else {
        return;
    };
    let ntfy = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(SlowSecondary(Duration::from_millis(1500)))
        .mount(&ntfy)
        .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = write_policy(dir.path(), &ntfy.uri(), "1s");
    let mut replicas = vec![
        Replica::start("a", &policy, dir.path(), &db).await,
        Replica::start("b", &policy, dir.path(), &db).await,
    ];
    to_all(&replicas, &webhook("GatewayDown", "firing")).await;
    let first = wait_topic(&ntfy, "oncall-secondary", Duration::from_secs(20)).await;
    let holder = eventually("the sender's claim", Duration::from_secs(2), || async {
        claim_holder(&db, "ntfy.secondary").await
    })
    .await;
    let victim = replicas
        .iter()
        .position(|r| r.pid() == holder)
        .expect("a replica's claim");
    replicas[victim].kill_9();
    let killed = Instant::now();
    let again = eventually("the page sent again", Duration::from_secs(30), || async {
        let got = pushes(&ntfy).await;
        (got.iter()
            .filter(|p| p["topic"] == "oncall-secondary")
            .count()
            >= 2)
            .then_some(got)
    })
    .await;
    println!(
        "failover: replica {} killed while sending, kill -> the page sent again in {:?}",
        replicas[victim].name,
        killed.elapsed()
    );
    let survivor = &replicas[1 - victim];
    all_sent(&db, 1).await;
    let pushes = pushes(&ntfy).await;
    let steps = by_step(&pushes);
    assert_eq!(
        steps.len(),
        2,
        "re-sent with the sequence id of the first send: {steps:?}"
    );
    assert_eq!(
        pushes
            .iter()
            .filter(|p| p["topic"] == "oncall-secondary")
            .count(),
        2,
        "sent by the killed replica and once by the survivor: {steps:?}"
    );
    assert!(first.len() < again.len());
    assert_eq!(
        survivor.logged("notification delivered", "ntfy.secondary"),
        1,
        "the survivor delivered it:\n{}",
        survivor.log()
    );
}
