//! High availability when a replica hangs or loses the database, with real PostgreSQL and
//! real `alert-relay serve` processes: the issue's promise is that whatever happens to one
//! replica — hung (SIGSTOP), cut off from the database (a [`Proxy`] that black-holes or
//! refuses), or the database restarted — every page still leaves from another within 10 s
//! of when it was due, and none is doubled except a re-send with the same ntfy sequence id.
//!
//! Each replica pages its own fake ntfy (its own policy file), so an arrival tells which
//! replica sent it; the fakes record when each push arrived. "Recorded once" and "fired
//! once" are read from the replicas' own counters (`relay_notifications_total` delivered,
//! `relay_escalation_steps_total`), summed over the replicas; incidents from
//! `GET /api/v1/incidents`; sessions from `pg_stat_activity` by `application_name`.
//! The delivered counter is read as "recorded": it counts a delivery once its record is
//! committed, so a hung or cut-off sender whose late answer is fenced off counts nothing.
//! Measured times are printed (`--no-capture`) for docs/benchmarks.md.
//!
//! `send`: hung mid-send; `intake`: hung mid-intake under load; `partition`: cut off from
//! the database (black-holed, refused); `restart`: the database restarted under load.
//!
//! [`Proxy`]: crate::proxy::Proxy

mod intake;
mod partition;
mod restart;
mod send;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::fakes::StrictNtfy;
use crate::helpers::*;
use crate::replicas::Replica;

/// The issue's bound: a page leaves within this of when it was due.
const PAGE_BUDGET: Duration = Duration::from_secs(10);
/// The issue's bound: a webhook is answered within this.
const ANSWER_BUDGET: Duration = Duration::from_secs(5);
/// How long a fake holds its answer to the first page ([`HoldFirst`]): the test hangs or
/// cuts its sender well before.
const HOLD: Duration = Duration::from_millis(1500);
/// The policy's delivery timeout, longer than any hang here: the hung sender's request
/// ends with the fake's answer, not its own timeout, when it resumes — a page the vendor
/// took, which it must not record over the other replica's re-send.
const DELIVERY_TIMEOUT: &str = "30s";

/// One push a fake ntfy took, and when it arrived.
#[derive(Debug, Clone)]
pub struct Push {
    pub at: Instant,
    pub topic: String,
    pub sequence_id: String,
    pub title: String,
}

impl Push {
    /// (topic, sequence id): one escalation step of one incident.
    pub fn key(&self) -> (String, String) {
        (self.topic.clone(), self.sequence_id.clone())
    }

    /// The alert group's name, from the default title `[critical] <alertname>`.
    pub fn alertname(&self) -> &str {
        self.title.rsplit("] ").next().unwrap_or("")
    }
}

/// Shared by fakes: the first push any of them receives is answered only after a while,
/// so that its sender is inside the request when the test hangs or cuts it.
#[derive(Clone, Default)]
pub struct HoldFirst(Arc<AtomicBool>);

struct Recorder {
    pushes: Arc<Mutex<Vec<Push>>>,
    hold: Option<(HoldFirst, Duration)>,
}

impl Respond for Recorder {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let at = Instant::now();
        let answer = StrictNtfy.respond(request);
        if let Ok(body) = serde_json::from_slice::<Value>(&request.body) {
            let text = |k: &str| body[k].as_str().unwrap_or("").to_owned();
            self.pushes.lock().expect("pushes").push(Push {
                at,
                topic: text("topic"),
                sequence_id: text("sequence_id"),
                title: text("title"),
            });
        }
        match &self.hold {
            Some((first, hold)) if !first.0.swap(true, Ordering::SeqCst) => answer.set_delay(*hold),
            _ => answer,
        }
    }
}

/// A fake ntfy as strict as ntfy, recording each push with its arrival time.
pub struct Fake {
    server: MockServer,
    pushes: Arc<Mutex<Vec<Push>>>,
}

impl Fake {
    pub async fn start(hold: Option<(HoldFirst, Duration)>) -> Self {
        let server = MockServer::start().await;
        let pushes = Arc::new(Mutex::new(Vec::new()));
        Mock::given(method("POST"))
            .respond_with(Recorder {
                pushes: Arc::clone(&pushes),
                hold,
            })
            .mount(&server)
            .await;
        Self { server, pushes }
    }

    pub fn uri(&self) -> String {
        self.server.uri()
    }

    pub fn pushes(&self) -> Vec<Push> {
        self.pushes.lock().expect("pushes").clone()
    }
}

/// Replicas named `names`, each paging its own fake (`fakes[i]`) by the shared policy
/// (`second_after`: when step 2 fires), on the database at `urls[i]`.
pub async fn start_replicas(
    names: &[&'static str],
    fakes: &[Fake],
    urls: &[String],
    dir: &Path,
    second_after: &str,
) -> Vec<Replica> {
    let mut replicas = Vec::new();
    for ((name, fake), url) in names.iter().zip(fakes).zip(urls) {
        let policy = policy_for(dir, name, &fake.uri(), second_after);
        replicas.push(Replica::start_at(name, &policy, dir, url).await);
    }
    replicas
}

fn policy_for(dir: &Path, name: &str, ntfy: &str, second_after: &str) -> PathBuf {
    let path = dir.join(format!("policy-{name}.yml"));
    let policy = policy_yaml(ntfy, second_after).replace(
        "  timeout: 2s\n",
        &format!("  timeout: {DELIVERY_TIMEOUT}\n"),
    );
    assert!(
        policy.contains(DELIVERY_TIMEOUT),
        "the delivery timeout set"
    );
    std::fs::write(&path, policy).expect("write policy");
    path
}

/// Every push of every fake, oldest first.
pub fn all_pushes(fakes: &[Fake]) -> Vec<Push> {
    let mut all: Vec<Push> = fakes.iter().flat_map(Fake::pushes).collect();
    all.sort_by_key(|p| p.at);
    all
}

/// The replica whose fake took the first push (held by [`HoldFirst`]), and that push.
pub async fn first_page(fakes: &[Fake]) -> (usize, Push) {
    eventually(
        "the first page on its way",
        Duration::from_secs(20),
        || async {
            fakes
                .iter()
                .enumerate()
                .find_map(|(i, f)| f.pushes().first().map(|p| (i, p.clone())))
        },
    )
    .await
}

/// How many pushes each (topic, sequence id) got.
pub fn by_key(pushes: &[Push]) -> BTreeMap<(String, String), usize> {
    let mut keys = BTreeMap::new();
    for p in pushes {
        *keys.entry(p.key()).or_insert(0) += 1;
    }
    keys
}

/// Waits until a push matching `wanted` arrives at `fake`, at most until `deadline`;
/// returns its arrival.
pub async fn arrival(
    what: &str,
    fake: &Fake,
    deadline: Instant,
    wanted: impl Fn(&Push) -> bool,
) -> Instant {
    let limit = deadline.saturating_duration_since(Instant::now());
    eventually(what, limit, || async {
        fake.pushes().iter().find(|p| wanted(p)).map(|p| p.at)
    })
    .await
}

/// Each alert group's sequence ids over all pushes: two ids for one group are two
/// incidents for it.
pub fn incidents_by_group(pushes: &[Push]) -> BTreeMap<String, BTreeSet<String>> {
    let mut groups: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for p in pushes {
        groups
            .entry(p.alertname().to_owned())
            .or_default()
            .insert(p.sequence_id.clone());
    }
    groups
}

/// Asserts that each group of `groups` had one incident, paged on every topic of `topics`,
/// and that no other group was paged.
pub fn assert_paged_once_each(pushes: &[Push], groups: &[String], topics: &[&str]) {
    let by_group = incidents_by_group(pushes);
    let doubled: Vec<_> = by_group.iter().filter(|(_, ids)| ids.len() > 1).collect();
    assert!(
        doubled.is_empty(),
        "a group paged as two incidents: {doubled:?}"
    );
    let paged: BTreeSet<&String> = by_group.keys().collect();
    let wanted: BTreeSet<&String> = groups.iter().collect();
    assert_eq!(paged, wanted, "the groups paged");
    let keys: BTreeSet<(String, String)> = pushes.iter().map(Push::key).collect();
    assert_eq!(
        keys.len(),
        groups.len() * topics.len(),
        "every step of every incident paged: {keys:?}"
    );
}

/// Open incidents by group name, from a replica's `GET /api/v1/incidents`.
pub async fn open_by_group(replica: &Replica) -> BTreeMap<String, usize> {
    let incidents = replica.incidents().await.expect("the open incidents");
    let mut groups = BTreeMap::new();
    for i in &incidents {
        let name = i["group_labels"]["alertname"]
            .as_str()
            .unwrap_or("")
            .to_owned();
        *groups.entry(name).or_insert(0) += 1;
    }
    groups
}

/// A counter summed over the replicas, once it holds still: a relay counts what it
/// committed just after the commit, so a sum read the moment the database shows the commit
/// may lag by one. Read until two reads 200 ms apart agree (at most 5 s).
async fn settled_sum(replicas: &[Replica], family: &str, filter: &str) -> f64 {
    let read = || async {
        let mut sum = 0.0;
        for r in replicas {
            sum += r.metric_sum(family, filter).await;
        }
        sum
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut last = read().await;
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = read().await;
        if now == last || std::time::Instant::now() > deadline {
            return now;
        }
        last = now;
    }
}

/// Escalation steps fired, summed over the replicas (each counts the steps it committed).
pub async fn steps_fired(replicas: &[Replica]) -> f64 {
    settled_sum(replicas, "relay_escalation_steps_total", "").await
}

/// Deliveries recorded, summed over the replicas (each counts the deliveries it recorded).
pub async fn deliveries_recorded(replicas: &[Replica]) -> f64 {
    settled_sum(
        replicas,
        "relay_notifications_total",
        r#"outcome="delivered""#,
    )
    .await
}

/// Waits until no open incident has a page waiting or a step to come, asking `replica`.
pub async fn settled(replica: &Replica, limit: Duration) {
    eventually("nothing left to send", limit, || async {
        replica.settled().await.then_some(())
    })
    .await;
}

/// A plain connection to the database at `url` for the test's own questions.
pub async fn observer(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("the observer's connection");
    tokio::spawn(connection);
    client
}

/// The state of the sessions of `application_name` that are inside a transaction that
/// wrote or locked something (a transaction id, a row lock or a transaction-level
/// advisory lock): what another replica's intake may have to wait for. Empty: none.
pub async fn writing_sessions(db: &tokio_postgres::Client, application_name: &str) -> Vec<String> {
    let rows = db
        .query(
            "SELECT a.state || ' for ' || \
                    round(extract(epoch FROM clock_timestamp() - a.xact_start) * 1000) || ' ms' \
             FROM pg_stat_activity a \
             WHERE a.application_name = $1 AND a.xact_start IS NOT NULL \
               AND (a.backend_xid IS NOT NULL OR EXISTS ( \
                    SELECT 1 FROM pg_locks l WHERE l.pid = a.pid AND l.granted \
                    AND (l.locktype IN ('tuple', 'transactionid') \
                         OR (l.locktype = 'advisory' AND l.objsubid = 1))))",
            &[&application_name],
        )
        .await
        .expect("pg_stat_activity");
    rows.iter().map(|r| r.get::<_, String>(0)).collect()
}

/// How webhooks to one relay went, sent as Alertmanager does: again after a 5xx or no
/// answer, until a 2xx.
#[derive(Debug, Clone)]
pub struct Sent {
    pub group: String,
    pub first: Instant,
    /// When a 2xx came; `None` if none came before giving up.
    pub accepted: Option<Instant>,
    pub attempts: u32,
    /// Answers other than 2xx, and attempts without an answer in time.
    pub refused: u32,
    pub unanswered: u32,
    /// The longest an attempt waited for its answer.
    pub slowest: Duration,
}

/// Posts the firing webhook of `group` to the relay at `base` until it answers 2xx: each
/// attempt waits at most `each`, the next follows 200 ms after a failure, none starts after
/// `give_up`.
pub async fn send_like_alertmanager(
    client: &reqwest::Client,
    base: &str,
    group: &str,
    each: Duration,
    give_up: Instant,
) -> Sent {
    let payload = webhook(group, "firing").to_string();
    let mut sent = Sent {
        group: group.to_owned(),
        first: Instant::now(),
        accepted: None,
        attempts: 0,
        refused: 0,
        unanswered: 0,
        slowest: Duration::ZERO,
    };
    while Instant::now() < give_up {
        let started = Instant::now();
        sent.attempts += 1;
        let answer = client
            .post(format!("{base}/webhook"))
            .bearer_auth(TOKEN)
            .body(payload.clone())
            .timeout(each)
            .send()
            .await;
        sent.slowest = sent.slowest.max(started.elapsed());
        match answer.map(|a| a.status()) {
            Ok(status) if status.is_success() => {
                sent.accepted = Some(Instant::now());
                return sent;
            }
            Ok(status) if status.is_client_error() => {
                sent.refused += 1;
                return sent;
            }
            Ok(_) => sent.refused += 1,
            Err(_) => sent.unanswered += 1,
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    sent
}
