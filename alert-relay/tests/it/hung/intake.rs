//! A replica hung (SIGSTOP) inside intake under load — a write transaction open in the
//! database while webhooks wait on it — and the other, given every webhook as by an
//! Alertmanager pair, answers each within 5 s and pages new incidents within 10 s;
//! resumed, the hung one doubles no incident and fires no step twice.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use alert_relay::store::postgres::scratch::ScratchDatabase;

use super::*;
use crate::replicas::all_sent;

/// Alert groups of the load, each sent to both replicas, one group every [`SPACING`].
const GROUPS: usize = 200;
const SPACING: Duration = Duration::from_millis(4);
/// Webhooks for groups the hung replica was handling, and for new groups.
const HANDLING: usize = 6;
const FRESH: usize = 6;
/// Tries to catch the replica inside a write transaction.
const ATTEMPTS: usize = 40;

fn load_group(i: usize) -> String {
    format!("Load{i}")
}

/// The states of A's writing sessions once no statement of theirs still runs (a COMMIT in
/// flight as A stopped ends it; a lock wait may not end: then nothing is counted).
async fn settled_states(observer: &tokio_postgres::Client, name: &str) -> Vec<String> {
    for _ in 0..25 {
        let states = writing_sessions(observer, name).await;
        if !states.iter().any(|s| s.starts_with("active")) {
            return states;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Vec::new()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replica_hung_mid_intake_under_load_the_other_answers_every_webhook_within_5_s_and_pages_within_10_s(
) {
    let Some(db) = ScratchDatabase::create() else {
        return;
    };
    let fakes = [Fake::start(None).await, Fake::start(None).await];
    let dir = tempfile::tempdir().expect("tempdir");
    let url = db.url().to_string();
    let mut replicas = start_replicas(
        &["a", "b"],
        &fakes,
        &[url.clone(), url.clone()],
        dir.path(),
        "1h",
    )
    .await;
    let (a_url, b_url) = (replicas[0].url.clone(), replicas[1].url.clone());
    let observer = observer(&url).await;
    let client = reqwest::Client::new();

    // The load: each group to both replicas; `in_a` are the groups whose webhook A has not
    // answered yet.
    let in_a: Arc<Mutex<BTreeSet<usize>>> = Arc::default();
    let started = Arc::new(AtomicUsize::new(0));
    let mut load = tokio::task::JoinSet::new();
    let pacer = {
        let (client, in_a, started) = (client.clone(), Arc::clone(&in_a), Arc::clone(&started));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(SPACING);
            for i in 0..GROUPS {
                tick.tick().await;
                in_a.lock().expect("in_a").insert(i);
                started.fetch_add(1, Ordering::SeqCst);
                for (base, to_a) in [(a_url.clone(), true), (b_url.clone(), false)] {
                    let (client, in_a) = (client.clone(), Arc::clone(&in_a));
                    load.spawn(async move {
                        let give_up = Instant::now() + Duration::from_secs(60);
                        let each = Duration::from_secs(60);
                        let sent =
                            send_like_alertmanager(&client, &base, &load_group(i), each, give_up)
                                .await;
                        if to_a {
                            in_a.lock().expect("in_a").remove(&i);
                        }
                        (to_a, sent)
                    });
                }
            }
            load
        })
    };
    eventually("the load under way", Duration::from_secs(10), || async {
        (started.load(Ordering::SeqCst) >= GROUPS / 10).then_some(())
    })
    .await;

    let mut caught = None;
    for attempt in 1..=ATTEMPTS {
        replicas[0].stop();
        let writing = settled_states(&observer, &replicas[0].session_name()).await;
        let handling: Vec<usize> = in_a.lock().expect("in_a").iter().copied().collect();
        if !writing.is_empty() && !handling.is_empty() {
            caught = Some((attempt, writing, handling));
            break;
        }
        replicas[0].cont();
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    let (attempt, writing, handling) =
        caught.expect("A caught inside a write transaction while webhooks wait on it");
    let stopped = Instant::now();
    eprintln!(
        "hung mid-intake: a stopped at attempt {attempt}, its sessions {writing:?}, {} webhooks \
         unanswered",
        handling.len()
    );

    let mut probes: Vec<String> = handling
        .iter()
        .rev()
        .take(HANDLING)
        .map(|i| load_group(*i))
        .collect();
    probes.extend((0..FRESH).map(|i| format!("Fresh{i}")));
    let sends = probes.iter().map(|group| {
        send_like_alertmanager(
            &client,
            &replicas[1].url,
            group,
            ANSWER_BUDGET,
            Instant::now() + PAGE_BUDGET,
        )
    });
    let answered = futures_util::future::join_all(sends).await;
    for s in &answered {
        eprintln!(
            "hung mid-intake: {} to b: {} attempts, {} 5xx, slowest answer {:?}, accepted {:?} \
             after the stop",
            s.group,
            s.attempts,
            s.refused,
            s.slowest,
            s.accepted.map(|at| at - stopped)
        );
    }
    let late: Vec<&Sent> = answered
        .iter()
        .filter(|s| s.unanswered > 0 || s.accepted.is_none())
        .collect();
    assert!(
        late.is_empty(),
        "b answers every webhook within {ANSWER_BUDGET:?} and takes it: {late:?}"
    );
    for s in &answered {
        let at = eventually(
            &format!("the page of {} from b", s.group),
            (s.first + PAGE_BUDGET).saturating_duration_since(Instant::now()),
            || async {
                all_pushes(&fakes)
                    .iter()
                    .find(|p| p.alertname() == s.group)
                    .map(|p| p.at)
            },
        )
        .await;
        eprintln!(
            "hung mid-intake: {} paged {:?} after its first webhook",
            s.group,
            at.saturating_duration_since(s.first)
        );
    }

    replicas[0].cont();
    let mut load = pacer.await.expect("the load");
    let mut accepted = BTreeSet::new();
    let mut slowest_b = Duration::ZERO;
    while let Some(done) = load.join_next().await {
        let (to_a, sent) = done.expect("a load webhook");
        if sent.accepted.is_some() {
            accepted.insert(sent.group.clone());
        }
        if !to_a {
            slowest_b = slowest_b.max(sent.slowest);
        }
    }
    eprintln!("hung mid-intake: the load's slowest answer from b: {slowest_b:?}");
    let mut groups: Vec<String> = (0..GROUPS).map(load_group).collect();
    let missing: Vec<&String> = groups.iter().filter(|g| !accepted.contains(*g)).collect();
    assert!(
        missing.is_empty(),
        "groups neither replica took: {missing:?}"
    );
    groups.extend((0..FRESH).map(|i| format!("Fresh{i}")));
    let total = groups.len();
    all_sent(&db, total as i64).await;

    let all = all_pushes(&fakes);
    assert_paged_once_each(&all, &groups, &["oncall-primary"]);
    let open = open_by_group(&replicas[1]).await;
    let doubled: Vec<_> = open.iter().filter(|(_, n)| **n != 1).collect();
    assert!(
        open.len() == total && doubled.is_empty(),
        "one open incident per group ({} groups): {doubled:?}",
        open.len()
    );
    assert_eq!(
        steps_fired(&replicas).await,
        total as f64,
        "step 1 of each incident fired once"
    );
    assert_eq!(
        deliveries_recorded(&replicas).await,
        total as f64,
        "each page recorded as delivered once"
    );
}
