//! The database restarted (`pg_ctl stop -m fast`, then start) under load, two replicas given
//! every webhook: each webhook is taken (2xx) in the end, sent again after a 5xx as
//! Alertmanager does, within 60 s; every incident pages once per step, within 10 s of due;
//! no group gets two incidents, no step fires twice.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::pg_server::Server;

const GROUPS: usize = 100;
/// One group every this: four seconds of load; the server stopped after one, started
/// again [`DOWN`] later.
const SPACING: Duration = Duration::from_millis(40);
/// How long the server stays down: long enough for webhooks and a due step to meet it.
const DOWN: Duration = Duration::from_secs(2);
const STEP_2: Duration = Duration::from_secs(2);
/// How long Alertmanager goes on sending a webhook that gets 5xx, in this test.
const GIVE_UP: Duration = Duration::from_secs(60);

fn group(i: usize) -> String {
    format!("Restart{i}")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_database_restarted_under_load_every_webhook_is_taken_and_every_step_pages_once() {
    let server = Arc::new(Server::start());
    let fakes = [Fake::start(None).await, Fake::start(None).await];
    let dir = tempfile::tempdir().expect("tempdir");
    let url = server.url();
    let replicas = start_replicas(&["a", "b"], &fakes, &[url.clone(), url], dir.path(), "2s").await;
    let client = reqwest::Client::new();

    let mut load = tokio::task::JoinSet::new();
    let mut tick = tokio::time::interval(SPACING);
    let mut restart = None;
    for i in 0..GROUPS {
        tick.tick().await;
        for r in &replicas {
            let (client, base) = (client.clone(), r.url.clone());
            load.spawn(async move {
                let each = Duration::from_secs(10);
                let give_up = Instant::now() + GIVE_UP;
                send_like_alertmanager(&client, &base, &group(i), each, give_up).await
            });
        }
        if i == GROUPS / 4 {
            let server = Arc::clone(&server);
            // pg_ctl waits for the server: on a thread of its own, while the load goes on.
            restart = Some(tokio::task::spawn_blocking(move || {
                let started = Instant::now();
                server.down();
                let down = started.elapsed();
                std::thread::sleep(DOWN);
                server.up();
                (started, down, started.elapsed())
            }));
        }
    }
    let (restarted, down, took) = restart.expect("a restart").await.expect("the restart");
    eprintln!(
        "database restart under load: stopped (-m fast) in {down:?}, up again after {took:?}"
    );

    // Each group's first 2xx from either replica: when its step 1 was due.
    let mut due: BTreeMap<String, Instant> = BTreeMap::new();
    let (mut refused, mut slowest, mut latest) = (0, Duration::ZERO, Duration::ZERO);
    while let Some(done) = load.join_next().await {
        let sent = done.expect("a load webhook");
        let accepted = sent
            .accepted
            .unwrap_or_else(|| panic!("a webhook never taken within {GIVE_UP:?}: {sent:?}"));
        refused += sent.refused + sent.unanswered;
        slowest = slowest.max(sent.slowest);
        latest = latest.max(accepted - sent.first);
        let first = due.entry(sent.group.clone()).or_insert(accepted);
        *first = (*first).min(accepted);
    }
    eprintln!(
        "database restart under load: {} webhooks, {refused} attempts refused or unanswered, \
         slowest answer {slowest:?}, longest until taken {latest:?}",
        2 * GROUPS
    );

    let groups: Vec<String> = (0..GROUPS).map(group).collect();
    let topics = ["oncall-primary", "oncall-secondary"];
    let last_due = due.values().max().copied().unwrap_or(restarted) + STEP_2;
    eventually(
        "every step of every incident paged",
        last_due.saturating_duration_since(Instant::now()) + PAGE_BUDGET,
        || async {
            let keys: BTreeSet<(String, String)> =
                all_pushes(&fakes).iter().map(Push::key).collect();
            (keys.len() >= GROUPS * topics.len()).then_some(())
        },
    )
    .await;
    settled(&replicas[0], Duration::from_secs(10)).await;

    let all = all_pushes(&fakes);
    assert_paged_once_each(&all, &groups, &topics);
    let mut worst = Duration::ZERO;
    for p in &all {
        let step_due = due[p.alertname()]
            + if p.topic == topics[1] {
                STEP_2
            } else {
                Duration::ZERO
            };
        worst = worst.max(p.at.saturating_duration_since(step_due));
    }
    eprintln!("database restart under load: the latest page left {worst:?} after it was due");
    assert!(
        worst <= PAGE_BUDGET,
        "every page within {PAGE_BUDGET:?} of due, the latest {worst:?}"
    );
    let open = open_by_group(&replicas[1]).await;
    let doubled: Vec<_> = open.iter().filter(|(_, n)| **n != 1).collect();
    assert!(
        open.len() == GROUPS && doubled.is_empty(),
        "one open incident per group ({} groups): {doubled:?}",
        open.len()
    );
    // A commit whose answer the restart cut off is not counted: at most, never more.
    let fired = steps_fired(&replicas).await;
    assert!(
        fired <= (GROUPS * topics.len()) as f64,
        "no step fired twice: {fired} counted"
    );
    let recorded = deliveries_recorded(&replicas).await;
    assert!(
        recorded <= (GROUPS * topics.len()) as f64,
        "no page recorded twice: {recorded} counted"
    );
}
