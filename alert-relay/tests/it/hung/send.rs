//! A replica hung (SIGSTOP) inside a send, its page's request in flight: the other sends
//! the page again with the same sequence id within 10 s and pages a new incident on the
//! same target within 10 s; resumed (SIGCONT), the hung one sends nothing of what the other
//! took over and records nothing twice; every step of every incident fires once.

use std::time::{Duration, Instant};

use alert_relay::store::postgres::scratch::ScratchDatabase;

use super::*;
use crate::replicas::{all_sent, to_all};

/// Step 2 of the policy.
const STEP_2: Duration = Duration::from_secs(3);

#[tokio::test(flavor = "multi_thread")]
async fn a_replica_hung_mid_send_the_other_sends_it_again_with_its_sequence_id_and_pages_new_incidents(
) {
    let Some(db) = ScratchDatabase::create() else {
        return;
    };
    let first = HoldFirst::default();
    let fakes = [
        Fake::start(Some((first.clone(), HOLD))).await,
        Fake::start(Some((first, HOLD))).await,
    ];
    let dir = tempfile::tempdir().expect("tempdir");
    let url = db.url().to_string();
    let mut replicas =
        start_replicas(&["a", "b"], &fakes, &[url.clone(), url], dir.path(), "3s").await;
    let sent = Instant::now();
    to_all(&replicas, &webhook("HungSend", "firing")).await;
    let (sender, held) = first_page(&fakes).await;
    replicas[sender].stop();
    let stopped = Instant::now();
    assert!(
        stopped < held.at + HOLD,
        "stopped before the fake answered: inside the request"
    );
    let other = 1 - sender;
    let (hung, healthy) = (replicas[sender].name, replicas[other].name);

    let resent = arrival(
        "the page sent again by the other replica",
        &fakes[other],
        stopped + PAGE_BUDGET,
        |p| p.key() == held.key(),
    )
    .await;
    eprintln!(
        "hung mid-send: {hung} stopped inside its send of {:?}; stop -> {healthy} sent it again \
         with the same sequence id in {:?}",
        held.key(),
        resent - stopped
    );

    // A new incident while the sender hangs: the same target pages it.
    let answer = replicas[other]
        .webhook_within(&webhook("HungSendNew", "firing"), ANSWER_BUDGET)
        .await;
    assert_eq!(answer, Some(200), "{healthy} takes a new incident at once");
    let accepted = Instant::now();
    let paged = arrival(
        "the new incident's page",
        &fakes[other],
        accepted + PAGE_BUDGET,
        |p| p.alertname() == "HungSendNew" && p.topic == "oncall-primary",
    )
    .await;
    eprintln!(
        "hung mid-send: a new incident on {healthy} while {hung} hangs: accepted -> paged in {:?}",
        paged - accepted
    );
    for (group, due) in [
        ("HungSend", sent + STEP_2),
        ("HungSendNew", accepted + STEP_2),
    ] {
        let at = arrival(
            &format!("step 2 of {group}"),
            &fakes[other],
            due + PAGE_BUDGET,
            |p| p.alertname() == group && p.topic == "oncall-secondary",
        )
        .await;
        eprintln!(
            "hung mid-send: step 2 of {group} from {healthy}, {:?} after it was due",
            at.saturating_duration_since(due)
        );
    }
    settled(&replicas[other], Duration::from_secs(10)).await;
    all_sent(&db, 2).await;

    // Resumed: its request ends, and what it does next must not double anything. A third
    // incident to both, paged and settled, is the proof that it has run on well past that.
    let mut before_resume = fakes[sender].pushes();
    before_resume.retain(|p| p.at > held.at);
    assert!(
        before_resume.is_empty(),
        "a stopped process sent: {before_resume:?}"
    );
    replicas[sender].cont();
    let resumed = Instant::now();
    wait_ok(
        &format!("{}/ready", replicas[sender].url),
        Duration::from_secs(30),
    )
    .await;
    eprintln!(
        "hung mid-send: {hung} resumed, ready again in {:?}",
        resumed.elapsed()
    );
    to_all(&replicas, &webhook("AfterResume", "firing")).await;
    eventually(
        "both steps of the incident after the resume",
        STEP_2 + PAGE_BUDGET,
        || async {
            let all = all_pushes(&fakes);
            let topics: std::collections::BTreeSet<&str> = all
                .iter()
                .filter(|p| p.alertname() == "AfterResume")
                .map(|p| p.topic.as_str())
                .collect();
            (topics.len() == 2).then_some(())
        },
    )
    .await;
    settled(&replicas[other], Duration::from_secs(10)).await;
    all_sent(&db, 3).await;

    let from_hung: Vec<Push> = fakes[sender]
        .pushes()
        .into_iter()
        .filter(|p| p.at > held.at && p.key() != held.key() && p.alertname() != "AfterResume")
        .collect();
    assert!(
        from_hung.is_empty(),
        "resumed, {hung} sent pages other than its held one again: {from_hung:?}"
    );
    let all = all_pushes(&fakes);
    let groups = ["HungSend", "HungSendNew", "AfterResume"].map(String::from);
    assert_paged_once_each(&all, &groups, &["oncall-primary", "oncall-secondary"]);
    let steps = by_key(&all);
    let held_key = held.key();
    for (key, n) in &steps {
        if *key == held_key {
            assert!(*n >= 2, "the held page sent again: {steps:?}");
        } else {
            assert_eq!(*n, 1, "{key:?} sent once: {steps:?}");
        }
    }
    assert_eq!(
        steps_fired(&replicas).await,
        6.0,
        "each of the 6 steps fired once, by one replica"
    );
    assert_eq!(
        deliveries_recorded(&replicas).await,
        6.0,
        "each of the 6 pages recorded as delivered once (the hung sender's late answer is not \
         recorded over the re-send)"
    );
}
