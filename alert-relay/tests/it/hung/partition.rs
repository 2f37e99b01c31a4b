//! A replica cut off from the database while its page is on the way, each replica reaching
//! PostgreSQL through a proxy of its own: black-holed (nothing forwarded, nothing closed —
//! what TCP keepalives do not notice) or refused (every connection closed). The cut one
//! says so on `/ready` within ~5 s and starts no send; the other takes its page over with
//! the same sequence id, pages a new incident and the step that falls due, each within
//! 10 s of due; healed, the cut one is ready again by itself and nothing is doubled.

use std::time::{Duration, Instant};

use alert_relay::store::postgres::scratch::ScratchDatabase;

use super::*;
use crate::proxy::{Mode, Proxy};
use crate::replicas::{all_sent, to_all};

const STEP_2: Duration = Duration::from_secs(3);
/// `/ready` of a replica cut off answers something other than 200 within this ("within a
/// few seconds": ~5 s, and the answer's own trip).
const READY_BUDGET: Duration = Duration::from_secs(6);
/// A send that began as the path was cut may still arrive this long after it.
const GRACE: Duration = Duration::from_secs(1);
/// Healed, a replica is ready again by itself within this.
const HEAL_LIMIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread")]
async fn a_replica_whose_database_path_black_holes_stops_paging_and_the_other_takes_over_within_10_s(
) {
    cut_off(Mode::Blackhole).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replica_whose_database_connections_are_closed_stops_paging_and_the_other_takes_over_within_10_s(
) {
    cut_off(Mode::Refuse).await;
}

/// Waits until `/ready` answers something other than 200; fails at `deadline`, and on a
/// request still unanswered then (a hung `/ready` is not an answer).
async fn unready_by(replica: &Replica, deadline: Instant) -> Instant {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match replica.ready_within(left).await {
            Some(200) if !left.is_zero() => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Some(status) if status != 200 => return Instant::now(),
            answer => panic!(
                "/ready of {} answered {answer:?} at the end of {READY_BUDGET:?} after the cut, \
                 not a status other than 200",
                replica.name
            ),
        }
    }
}

async fn cut_off(mode: Mode) {
    let Some(db) = ScratchDatabase::create() else {
        return;
    };
    let url = db.url().to_string();
    let proxies = [
        Proxy::to_database(&url).await,
        Proxy::to_database(&url).await,
    ];
    let urls = [proxies[0].url_for(&url), proxies[1].url_for(&url)];
    let first = HoldFirst::default();
    let fakes = [
        Fake::start(Some((first.clone(), HOLD))).await,
        Fake::start(Some((first, HOLD))).await,
    ];
    let dir = tempfile::tempdir().expect("tempdir");
    let replicas = start_replicas(&["a", "b"], &fakes, &urls, dir.path(), "3s").await;
    let sent = Instant::now();
    to_all(&replicas, &webhook("Partitioned", "firing")).await;
    let (victim, held) = first_page(&fakes).await;
    proxies[victim].set(mode);
    let cut = Instant::now();
    assert!(cut < held.at + HOLD, "cut while the page was on its way");
    let other = 1 - victim;
    let (cut_one, healthy) = (replicas[victim].name, replicas[other].name);
    let label = format!("{mode:?}");

    let unready = unready_by(&replicas[victim], cut + READY_BUDGET).await;
    eprintln!(
        "partition ({label}): {cut_one} cut while sending; cut -> its /ready not 200 in {:?}",
        unready - cut
    );
    let resent = arrival(
        "the page sent again by the other replica",
        &fakes[other],
        cut + PAGE_BUDGET,
        |p| p.key() == held.key(),
    )
    .await;
    eprintln!(
        "partition ({label}): cut -> {healthy} sent the page again with its sequence id in {:?}",
        resent - cut
    );
    let answer = replicas[other]
        .webhook_within(&webhook("PartitionedNew", "firing"), ANSWER_BUDGET)
        .await;
    assert_eq!(answer, Some(200), "{healthy} takes a new incident at once");
    let accepted = Instant::now();
    let paged = arrival(
        "the new incident's page",
        &fakes[other],
        accepted + PAGE_BUDGET,
        |p| p.alertname() == "PartitionedNew" && p.topic == "oncall-primary",
    )
    .await;
    eprintln!(
        "partition ({label}): a new incident on {healthy}: accepted -> paged in {:?}",
        paged - accepted
    );
    for (group, due) in [
        ("Partitioned", sent + STEP_2),
        ("PartitionedNew", accepted + STEP_2),
    ] {
        let at = arrival(
            &format!("step 2 of {group}"),
            &fakes[other],
            due + PAGE_BUDGET,
            |p| p.alertname() == group && p.topic == "oncall-secondary",
        )
        .await;
        eprintln!(
            "partition ({label}): step 2 of {group} from {healthy}, {:?} after it was due",
            at.saturating_duration_since(due)
        );
    }
    settled(&replicas[other], Duration::from_secs(10)).await;
    let cut_off_sends: Vec<Push> = fakes[victim]
        .pushes()
        .into_iter()
        .filter(|p| p.at > cut + GRACE && p.key() != held.key())
        .collect();
    assert!(
        cut_off_sends.is_empty(),
        "{cut_one} sent while cut off from the database: {cut_off_sends:?}"
    );

    proxies[victim].set(Mode::Forward);
    let healed = Instant::now();
    wait_ok(&format!("{}/ready", replicas[victim].url), HEAL_LIMIT).await;
    eprintln!(
        "partition ({label}): healed -> {cut_one} ready again in {:?}",
        healed.elapsed()
    );
    // Back in service: it takes a webhook alone, and the incident is paged.
    let answer = replicas[victim]
        .webhook_within(&webhook("AfterHeal", "firing"), ANSWER_BUDGET)
        .await;
    assert_eq!(answer, Some(200), "{cut_one} takes webhooks again");
    let accepted = Instant::now();
    eventually(
        "both steps of the incident after healing",
        STEP_2 + PAGE_BUDGET,
        || async {
            let topics: BTreeSet<String> = all_pushes(&fakes)
                .into_iter()
                .filter(|p| p.alertname() == "AfterHeal")
                .map(|p| p.topic)
                .collect();
            (topics.len() == 2).then_some(())
        },
    )
    .await;
    eprintln!(
        "partition ({label}): after healing, a webhook to {cut_one}: both steps in {:?}",
        accepted.elapsed()
    );
    settled(&replicas[victim], Duration::from_secs(10)).await;
    all_sent(&db, 3).await;

    let all = all_pushes(&fakes);
    let groups = ["Partitioned", "PartitionedNew", "AfterHeal"].map(String::from);
    assert_paged_once_each(&all, &groups, &["oncall-primary", "oncall-secondary"]);
    let open = open_by_group(&replicas[other]).await;
    assert!(
        open.len() == 3 && open.values().all(|n| *n == 1),
        "one open incident per group: {open:?}"
    );
    assert_eq!(steps_fired(&replicas).await, 6.0, "each step fired once");
    assert_eq!(
        deliveries_recorded(&replicas).await,
        6.0,
        "each page recorded as delivered once (the cut one's late answer not over the re-send)"
    );
}
