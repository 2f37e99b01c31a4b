//! `deliver_next` driven one step at a time under Tokio's paused clock: timeouts, retries and
//! dead letters without a real wait and without a server.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use alert_relay::app::{Peers, Relay, Step};
use alert_relay::config::Config;
use alert_relay::domain::{Notification, Rendered, TargetName, Timestamp};
use alert_relay::silence::SilenceOracle;
use alert_relay::sinks::{Health, HealthFuture, Outcome, SendFuture, Sink};
use alert_relay::store::SqliteStore;

use crate::helpers::webhook;

const T0: Timestamp = Timestamp(1_800_000_000_000);

/// How the fake vendor answers each attempt, in order; then `Delivered`.
#[derive(Clone, Copy)]
enum Answer {
    Hang,
    Retry(Option<u64>),
    Refuse,
    /// Takes the page, and the disk fills up as it answers.
    TakeThenDiskFull,
}

#[derive(Clone, Default)]
struct Script(Arc<Mutex<(Vec<Answer>, usize)>>, Option<Arc<SqliteStore>>);

impl Script {
    fn new(answers: Vec<Answer>) -> Self {
        Self(Arc::new(Mutex::new((answers, 0))), None)
    }

    fn attempts(&self) -> usize {
        self.0.lock().expect("script").1
    }
}

struct Scripted(Script);

impl Sink for Scripted {
    fn send<'a>(&'a self, _: &'a Notification, _: &'a Rendered) -> SendFuture<'a> {
        let answer = {
            let mut s = self.0 .0.lock().expect("script");
            s.1 += 1;
            let n = s.1 - 1;
            s.0.get(n).copied()
        };
        Box::pin(async move {
            match answer {
                None => Outcome::Delivered,
                Some(Answer::Hang) => std::future::pending().await,
                Some(Answer::Retry(after)) => Outcome::Retry {
                    after: after.map(Duration::from_secs),
                    reason: "503 Service Unavailable".into(),
                },
                Some(Answer::Refuse) => Outcome::Permanent {
                    reason: "400 Bad Request".into(),
                },
                Some(Answer::TakeThenDiskFull) => {
                    if let Some(store) = &self.0 .1 {
                        writes(store, false);
                    }
                    Outcome::Delivered
                }
            }
        })
    }

    fn healthcheck(&self) -> HealthFuture<'_> {
        Box::pin(async { Health::Unchecked("scripted".into()) })
    }
}

impl Peers for Script {
    fn sinks(&self, config: &Config) -> BTreeMap<TargetName, Arc<dyn Sink>> {
        config
            .targets
            .keys()
            .map(|t| (t.clone(), Arc::new(Scripted(self.clone())) as Arc<dyn Sink>))
            .collect()
    }

    fn silences(&self, _: &Config) -> Option<Arc<dyn SilenceOracle>> {
        None
    }
}

const POLICY: &str = r#"
server:
  webhook_auth: {none: true}
  ack_secret: "an-ack-secret-of-sufficient-length"
delivery:
  timeout: 10s
  initial_backoff: 1s
  max_backoff: 4s
  give_up_after: 30s
  healthcheck_interval: 0s
targets:
  log:
    audit: {path: "-"}
policies:
  - name: critical
    steps:
      - after: 0s
        notify: [log.audit]
"#;

/// Makes every write of `store` fail (as on a full disk) or work again.
fn writes(store: &SqliteStore, work: bool) {
    store
        .with_connections(|main, delivery| {
            main.pragma_update(None, "query_only", !work)?;
            delivery.pragma_update(None, "query_only", !work)?;
            Ok(())
        })
        .expect("pragma");
}

async fn relay_with(script: &Script, dir: &Path) -> Relay {
    let config =
        Config::parse(POLICY, Path::new("steps.yml"), &|_| None).unwrap_or_else(|e| panic!("{e}"));
    let mut builder = Relay::builder(config, dir);
    if let Some(store) = &script.1 {
        builder = builder.store(Arc::clone(store) as _);
    }
    let relay = builder
        .peers(Arc::new(script.clone()))
        .seed(1)
        .started(T0)
        .build()
        .expect("relay");
    let group = alert_relay::server::webhook::parse(
        webhook("GatewayDown", "firing").to_string().as_bytes(),
    )
    .expect("webhook");
    relay.ingest(None, group, T0).await.expect("ingest");
    relay
}

fn at(secs: u64) -> Timestamp {
    T0.plus(Duration::from_secs(secs))
}

#[tokio::test(start_paused = true)]
async fn a_vendor_that_never_answers_is_cut_at_the_timeout_and_retried_later() {
    let dir = tempfile::tempdir().expect("tempdir");
    let script = Script::new(vec![Answer::Hang]);
    let relay = relay_with(&script, dir.path()).await;
    let worker = relay.workers().remove(0);
    let started = tokio::time::Instant::now();
    let step = relay.deliver_next(&worker, at(0)).await.expect("step");
    assert_eq!(
        tokio::time::Instant::now() - started,
        Duration::from_secs(10),
        "cut at delivery.timeout, on the paused clock"
    );
    let Step::Retrying(next) = step else {
        panic!("{step:?}")
    };
    assert!(
        next > at(0) && next <= at(1),
        "first backoff is at most 1s: {next:?}"
    );
    assert_eq!(
        relay.deliver_next(&worker, at(0)).await.expect("step"),
        Step::Deferred(next),
        "never re-sent before its retry time"
    );
    assert_eq!(
        relay.deliver_next(&worker, at(1)).await.expect("step"),
        Step::Delivered
    );
    assert_eq!(
        relay.deliver_next(&worker, at(1)).await.expect("step"),
        Step::Empty
    );
    assert_eq!(script.attempts(), 2);
}

#[tokio::test(start_paused = true)]
async fn retry_after_wins_over_backoff_and_the_page_is_given_up_after_its_age() {
    let dir = tempfile::tempdir().expect("tempdir");
    let script = Script::new(vec![
        Answer::Retry(Some(20)),
        Answer::Retry(None),
        Answer::Retry(None),
    ]);
    let relay = relay_with(&script, dir.path()).await;
    let worker = relay.workers().remove(0);
    assert_eq!(
        relay.deliver_next(&worker, at(0)).await.expect("step"),
        Step::Retrying(at(20)),
        "the vendor's Retry-After"
    );
    let Step::Retrying(next) = relay.deliver_next(&worker, at(20)).await.expect("step") else {
        panic!("a second retry")
    };
    assert!(
        next <= at(22),
        "backoff after two attempts is at most 2s: {next:?}"
    );
    assert_eq!(
        relay.deliver_next(&worker, at(31)).await.expect("step"),
        Step::DeadLettered,
        "older than give_up_after (30s)"
    );
    assert_eq!(
        relay.deliver_next(&worker, at(31)).await.expect("step"),
        Step::Empty
    );
    let (letters, _) = relay.dead_letters(10).await.expect("letters");
    assert_eq!(letters.len(), 1);
    assert!(
        letters[0].reason.starts_with("gave up after 3 attempts"),
        "{}",
        letters[0].reason
    );
}

#[tokio::test(start_paused = true)]
async fn a_permanent_refusal_is_dead_lettered_at_once_with_the_vendors_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let script = Script::new(vec![Answer::Refuse]);
    let relay = relay_with(&script, dir.path()).await;
    let worker = relay.workers().remove(0);
    assert_eq!(
        relay.deliver_next(&worker, at(0)).await.expect("step"),
        Step::DeadLettered
    );
    assert_eq!(
        relay.deliver_next(&worker, at(0)).await.expect("step"),
        Step::Empty
    );
    assert_eq!(script.attempts(), 1, "not retried");
    let (letters, _) = relay.dead_letters(10).await.expect("letters");
    assert_eq!(letters[0].reason, "400 Bad Request");
}

#[tokio::test(start_paused = true)]
async fn a_delivery_the_disk_cannot_record_is_kept_and_never_sent_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(SqliteStore::open(&dir.path().join("data")).expect("store"));
    let mut script = Script::new(vec![Answer::TakeThenDiskFull]);
    script.1 = Some(Arc::clone(&store));
    let relay = relay_with(&script, &dir.path().join("data")).await;
    let worker = relay.workers().remove(0);
    let Step::Deferred(first) = relay.deliver_next(&worker, at(0)).await.expect("step") else {
        panic!("the outcome could not be written: the queue waits")
    };
    // Ten seconds of a full disk: tried on the backoff, never re-sent.
    let mut now = at(0);
    let mut tries = 0;
    while now < at(10) {
        now = now.plus(Duration::from_millis(500));
        if let Step::Deferred(_) = relay.deliver_next(&worker, now).await.expect("step") {
            tries += 1;
        }
    }
    assert_eq!(script.attempts(), 1, "the vendor got the page once");
    assert!(first > at(0) && tries >= 1);
    writes(&store, true);
    assert_eq!(
        relay.deliver_next(&worker, at(20)).await.expect("step"),
        Step::Empty,
        "recorded, then nothing left"
    );
    assert_eq!(script.attempts(), 1);
}
