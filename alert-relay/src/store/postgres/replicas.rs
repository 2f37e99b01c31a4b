//! Several relays on one database (two stores on one scratch database stand for two
//! replicas): one delivers a target at a time, under a lease that another takes over when it
//! runs out and that fences its stalled holder; due incidents are shared out; the same
//! webhook on several starts one incident; a relay stalled inside a transaction holds the
//! others up only until the server ends its transaction.

use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::scratch::ScratchDatabase;
use super::*;
use crate::domain::{GroupKey, PolicyName, Timestamp};
use crate::engine::IngestOutcome;
use crate::store::{contract, run, Claim, Lease, LEASE};

const T0: Timestamp = Timestamp(1_800_000_000_000);

fn ours(claim: Claim) -> Lease {
    match claim {
        Claim::Ours(lease) => lease,
        other => panic!("expected the lease, got {other:?}"),
    }
}

/// Limits short enough for a test to wait them out.
fn short() -> Limits {
    Limits {
        idle_in_transaction: Duration::from_millis(400),
        lock_wait: Duration::from_millis(1500),
        statement: Duration::from_millis(2000),
        answer: Duration::from_millis(2500),
        probe: Duration::from_millis(1000),
        pool_wait: Duration::from_millis(2000),
    }
}

#[test]
fn one_relay_at_a_time_delivers_a_target_and_a_release_hands_it_over() {
    let Some(db) = ScratchDatabase::create() else {
        return;
    };
    let (a, b) = (db.open(), db.open());
    let (t, u) = (TargetName::from("ntfy.a"), TargetName::from("ntfy.b"));
    let lease = ours(a.claim_target(&t, T0).expect("a"));
    assert_eq!((lease.fence, lease.expires), (1, T0.plus(LEASE)));
    assert_eq!(lease.taken_from, None);
    assert_eq!(b.claim_target(&t, T0).expect("b"), Claim::Theirs);
    assert_eq!(
        a.claim_target(&t, T0).expect("a again"),
        Claim::Theirs,
        "a second worker of the same relay waits too"
    );
    ours(b.claim_target(&u, T0).expect("another target"));
    a.release_target(&lease).expect("release");
    let handed = ours(b.claim_target(&t, T0).expect("b after"));
    assert_eq!(
        (handed.fence, handed.taken_from),
        (2, None),
        "a release is no take-over"
    );
    assert_eq!(a.claim_target(&t, T0).expect("a after"), Claim::Theirs);
}

#[test]
fn a_lease_that_runs_out_is_taken_over_and_fences_its_old_holder() {
    let Some(db) = ScratchDatabase::create() else {
        return;
    };
    let (a, b) = (db.open(), db.open());
    let t = TargetName::from("ntfy.a");
    let stale = ours(a.claim_target(&t, T0).expect("a"));
    // Renewed while it works: still a's a moment before the renewed lease ends.
    let renewed = a
        .renew(&stale, T0.plus(Duration::from_secs(3)))
        .expect("renew")
        .expect("still a's");
    let before_end = Timestamp(renewed.expires.0 - 1);
    assert_eq!(b.claim_target(&t, before_end).expect("b"), Claim::Theirs);
    // a stalls: at the end of its lease, b takes it over.
    let taken = ours(b.claim_target(&t, renewed.expires).expect("b takes over"));
    assert_eq!(taken.fence, 2);
    assert_eq!(taken.taken_from.as_deref(), Some(a.holder()));
    // a wakes up: it can neither renew nor record under its old lease...
    assert_eq!(a.renew(&renewed, renewed.expires).expect("renew"), None);
    let recorded = run(&a, Mode::Relaxed, |tx| tx.hold(&renewed, renewed.expires)).expect("tx");
    assert!(!recorded, "a record under a lost lease is refused");
    // ...nor release b's.
    a.release_target(&renewed).expect("release");
    assert_eq!(
        a.claim_target(&t, renewed.expires).expect("a"),
        Claim::Theirs
    );
    assert!(b.renew(&taken, renewed.expires).expect("renew").is_some());
}

#[test]
fn a_recording_in_progress_keeps_the_lease_from_being_taken_over() {
    let Some(db) = ScratchDatabase::create() else {
        return;
    };
    let (a, b) = (db.open(), Arc::new(db.open()));
    let t = TargetName::from("ntfy.a");
    let lease = ours(a.claim_target(&t, T0).expect("a"));
    let late = T0.plus(LEASE).plus(Duration::from_secs(1));
    let (send, answer) = mpsc::channel();
    run(&a, Mode::Relaxed, |tx| {
        // a holds (and renews) its lease in the transaction that records, just before b,
        // whose clock says a's first lease ran out, tries to take it.
        assert!(tx.hold(&lease, Timestamp(late.0 - 10))?);
        let (b, t, send) = (Arc::clone(&b), t.clone(), send.clone());
        std::thread::spawn(move || {
            let _ = send.send(b.claim_target(&t, late));
        });
        std::thread::sleep(Duration::from_millis(200));
        Ok(())
    })
    .expect("a records");
    let claim = answer
        .recv_timeout(Duration::from_secs(10))
        .expect("b's claim ends once a commits")
        .expect("b's claim");
    assert_eq!(claim, Claim::Theirs, "the renewal a committed wins");
}

#[test]
fn a_relay_hung_inside_a_transaction_holds_others_up_only_until_the_server_ends_it() {
    let Some(db) = ScratchDatabase::create() else {
        return;
    };
    let a = Arc::new(PostgresStore::open_with(db.url(), short()).expect("a"));
    let b = PostgresStore::open_with(db.url(), short()).expect("b");
    let t = TargetName::from("ntfy.a");
    let lease = ours(a.claim_target(&t, T0).expect("a"));
    let (policy, group) = (
        PolicyName::from("critical"),
        GroupKey::from("{}:{alertname=\"A\"}"),
    );
    let (locked, hung) = (mpsc::channel(), mpsc::channel::<()>());
    let hung_a = {
        let (a, lease, policy, group) =
            (Arc::clone(&a), lease.clone(), policy.clone(), group.clone());
        let (locked, hung) = (locked.0, hung.1);
        std::thread::spawn(move || {
            run(a.as_ref(), Mode::Durable, |tx| {
                tx.hold(&lease, T0)?;
                tx.open_incident(&policy, &group)?;
                let _ = locked.send(());
                // Hung: the transaction sits idle, holding the lease row and the group.
                let _ = hung.recv_timeout(Duration::from_secs(30));
                tx.next_due()
            })
        })
    };
    locked
        .1
        .recv_timeout(Duration::from_secs(10))
        .expect("a holds its locks");
    // Another group's webhook does not wait for a's group.
    let started = Instant::now();
    run(&b, Mode::Durable, |tx| {
        tx.open_incident(&policy, &GroupKey::from("{}:{alertname=\"B\"}"))
    })
    .expect("another group");
    assert!(
        started.elapsed() < Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
    // The same group, and the lease: free once the server ends a's idle transaction.
    run(&b, Mode::Durable, |tx| tx.open_incident(&policy, &group)).expect("the same group");
    let waited = started.elapsed();
    let taken = ours(b.claim_target(&t, T0.plus(LEASE)).expect("the lease"));
    assert!(
        waited < short().lock_wait,
        "b waited {waited:?}: longer than the idle limit lets a hold it"
    );
    assert_eq!(taken.taken_from.as_deref(), Some(a.holder()));
    // a wakes up: its transaction was ended under it, and nothing of it is kept.
    let _ = hung.0.send(());
    let result = hung_a.join().expect("a's thread");
    assert!(result.is_err(), "a's transaction was ended: {result:?}");
    assert_eq!(a.renew(&lease, T0).expect("renew"), None);
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
        let (send, answer) = mpsc::channel();
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
