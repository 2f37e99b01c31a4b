//! Several relays on one database (two stores on one scratch database stand for two
//! replicas): one delivers a target at a time, a dead one's claims are free at once, due
//! incidents are shared out, and the same webhook on both starts one incident.

use std::sync::Arc;
use std::time::Duration;

use super::scratch::ScratchDatabase;
use super::*;
use crate::domain::Timestamp;
use crate::engine::IngestOutcome;
use crate::store::{contract, run, Claim};

const T0: Timestamp = Timestamp(1_800_000_000_000);

#[test]
fn one_relay_at_a_time_delivers_a_target_and_a_release_hands_it_over() {
    let Some(db) = ScratchDatabase::create() else {
        return;
    };
    let (a, b) = (db.open(), db.open());
    let (t, u) = (TargetName::from("ntfy.a"), TargetName::from("ntfy.b"));
    assert_eq!(a.claim_target(&t).expect("a"), Claim::Ours);
    assert_eq!(b.claim_target(&t).expect("b"), Claim::Theirs);
    assert_eq!(
        a.claim_target(&t).expect("a again"),
        Claim::Theirs,
        "a second worker of the same relay waits too"
    );
    assert_eq!(b.claim_target(&u).expect("another target"), Claim::Ours);
    a.release_target(&t).expect("release");
    assert_eq!(b.claim_target(&t).expect("b after"), Claim::Ours);
    assert_eq!(a.claim_target(&t).expect("a after"), Claim::Theirs);
}

#[test]
fn the_claims_of_a_relay_that_died_are_free_at_once() {
    let Some(db) = ScratchDatabase::create() else {
        return;
    };
    let (a, b) = (db.open(), db.open());
    let t = TargetName::from("ntfy.a");
    assert_eq!(a.claim_target(&t).expect("a"), Claim::Ours);
    assert_eq!(b.claim_target(&t).expect("b"), Claim::Theirs);
    // The process ends: its connections close, and the server drops its locks.
    drop(a);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        match b.claim_target(&t).expect("b") {
            Claim::Ours => break,
            _ if std::time::Instant::now() > deadline => {
                panic!("the dead relay's claim is still held after 5 s")
            }
            _ => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

#[test]
fn due_incidents_another_relay_is_firing_are_skipped_not_waited_for() {
    let Some(db) = ScratchDatabase::create() else {
        return;
    };
    let (a, b) = (db.open(), Arc::new(db.open()));
    contract::fire(&a, "A", T0).expect("incident 1");
    contract::fire(&a, "B", T0).expect("incident 2");
    let due = Timestamp(T0.0 + 60_000);
    run(&a, Mode::Durable, |tx| {
        let mine = tx.due_incidents(due, 1)?.rows;
        assert_eq!(mine.len(), 1, "a takes the first due incident");
        let b = Arc::clone(&b);
        let (send, answer) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = send.send(run(b.as_ref(), Mode::Durable, |tx| {
                Ok(tx.due_incidents(due, 10)?.rows)
            }));
        });
        let theirs = answer
            .recv_timeout(Duration::from_secs(10))
            .expect("b answers while a holds its incident, without waiting for it")
            .expect("b's read");
        let ids: Vec<i64> = theirs.iter().map(|i| i.id).collect();
        assert_eq!(ids, [mine[0].id % 2 + 1], "b gets the other one only");
        Ok(())
    })
    .expect("a's pass");
}

#[test]
fn the_same_webhook_on_several_relays_at_once_starts_one_incident() {
    let Some(db) = ScratchDatabase::create() else {
        return;
    };
    const RELAYS: usize = 6;
    const GROUPS: usize = 5;
    let stores: Vec<PostgresStore> = (0..RELAYS).map(|_| db.open()).collect();
    let start = std::sync::Barrier::new(RELAYS);
    // Every relay gets each group's webhook at the same moment.
    let outcomes: Vec<Vec<Result<IngestOutcome, StoreError>>> = std::thread::scope(|s| {
        let handles: Vec<_> = stores
            .iter()
            .map(|store| {
                let start = &start;
                s.spawn(move || {
                    (0..GROUPS)
                        .map(|g| {
                            start.wait();
                            contract::fire(store, &format!("G{g}"), T0)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("join"))
            .collect()
    });
    for g in 0..GROUPS {
        let group: Vec<&Result<IngestOutcome, StoreError>> =
            outcomes.iter().map(|o| &o[g]).collect();
        let started = group
            .iter()
            .filter(|o| matches!(o, Ok(IngestOutcome::Started)))
            .count();
        let refreshed = group
            .iter()
            .filter(|o| matches!(o, Ok(IngestOutcome::Refreshed)))
            .count();
        assert_eq!(
            (started, refreshed),
            (1, RELAYS - 1),
            "group {g}: {group:?}"
        );
    }
    let counts = run(&stores[0], Mode::Read, |tx| tx.counts()).expect("counts");
    assert_eq!(counts.open, GROUPS as i64);
}
