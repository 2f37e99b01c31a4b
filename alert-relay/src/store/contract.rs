//! The contract every backend passes: each check takes a fresh, empty store. Backends run
//! them all from their own tests ([`check_all`]).

mod history;

use std::collections::{BTreeMap, BTreeSet};

use super::{commit, run, Counts, Finish, Mode, Store, StoreError};
use crate::ack::AckKey;
use crate::domain::{sample_notification, IncidentKey, NotificationKind, TargetName, Timestamp};
use crate::engine::{self, Fresh, IngestOutcome, Inputs, Links, Plan, PlannedStep};

const T0: Timestamp = Timestamp(1_800_000_000_000);

fn links() -> Links {
    Links {
        public_url: None,
        key: AckKey::new(b"contract-test-key-of-enough-length"),
        ttl: std::time::Duration::from_secs(3600),
        alertmanager_url: None,
        grafana_url: None,
        console: false,
    }
}

fn plan() -> Plan {
    Plan {
        policy: "critical".into(),
        steps: vec![
            PlannedStep {
                after_ms: 0,
                targets: vec!["ntfy.a".into(), "ntfy.b".into()],
            },
            PlannedStep {
                after_ms: 60_000,
                targets: vec!["ntfy.a".into()],
            },
        ],
        repeat: None,
        send_resolved: true,
        ack_timeout_ms: None,
    }
}

fn targets() -> BTreeSet<TargetName> {
    ["ntfy.a", "ntfy.b"]
        .into_iter()
        .map(TargetName::from)
        .collect()
}

/// Ingests a firing webhook for `alertname` the way the application layer does: the first
/// is incident 1, paging `ntfy.a` and `ntfy.b` at once (for backends' own tests too).
pub fn fire(
    store: &dyn Store,
    alertname: &str,
    now: Timestamp,
) -> Result<IngestOutcome, StoreError> {
    webhook(store, alertname, NotificationKind::Firing, now)
}

/// Ingests a webhook for `alertname`, firing or resolved (`kind`), as [`fire`] does.
pub fn webhook(
    store: &dyn Store,
    alertname: &str,
    kind: NotificationKind,
    now: Timestamp,
) -> Result<IngestOutcome, StoreError> {
    let links = links();
    let configured = targets();
    let mut group = sample_notification("critical", "x", kind).group;
    group.group_key = format!("{{}}:{{alertname=\"{alertname}\"}}")
        .as_str()
        .into();
    group
        .common_labels
        .insert("alertname".into(), alertname.into());
    run(store, Mode::Durable, |tx| {
        let open = tx
            .open_incident(&"critical".into(), &group.group_key)?
            .rows
            .pop();
        let id = if engine::starts_incident(open.as_ref(), &group) {
            tx.next_incident_id()?
        } else {
            0
        };
        let fresh = Fresh {
            id,
            key: IncidentKey([1; 16]),
        };
        let inputs = Inputs {
            links: &links,
            configured: &configured,
            schedules: &BTreeMap::new(),
            overrides: &[],
            slack_members: &BTreeMap::new(),
            now,
        };
        let (outcome, t) = engine::webhook(open, &plan(), group.clone(), fresh, &inputs);
        commit(tx, &t, now)?;
        Ok(outcome)
    })
}

fn counts(store: &dyn Store) -> Counts {
    run(store, Mode::Read, |tx| tx.counts()).expect("counts")
}

/// Every check, each on a store from `fresh`.
pub fn check_all(fresh: &dyn Fn() -> Box<dyn Store>) {
    a_committed_transition_reads_back(fresh().as_ref());
    a_failed_unit_of_work_leaves_nothing(fresh().as_ref());
    group_commit_rolls_back_only_the_failing_job(fresh().as_ref());
    the_outbox_is_first_in_first_out_per_target(fresh().as_ref());
    superseding_touches_only_pending_firing_rows_of_the_incident(fresh().as_ref());
    a_nonce_is_used_once(fresh().as_ref());
    one_open_incident_per_policy_and_group(fresh().as_ref());
    the_timeline_is_written_with_its_change_and_read_in_order(fresh().as_ref());
    a_targets_events_read_across_incidents_newest_first(fresh().as_ref());
    many_incidents_read_at_once_match_one_by_one(fresh().as_ref());
    history::check_all(fresh);
}

fn many_incidents_read_at_once_match_one_by_one(store: &dyn Store) {
    for name in ["A", "B", "C"] {
        fire(store, name, T0).expect("fire");
    }
    let (one_by_one, among, waiting) = run(store, Mode::Read, |tx| {
        let one_by_one = [1, 2, 3]
            .map(|id| tx.waiting_targets(id))
            .into_iter()
            .collect::<Result<Vec<_>, _>>()?;
        Ok((
            one_by_one,
            tx.incidents_among(&[3, 1, 999])?,
            tx.waiting_targets_of(&[1, 2, 3, 999])?,
        ))
    })
    .expect("read");
    let mut ids: Vec<i64> = among.rows.iter().map(|r| r.id).collect();
    ids.sort_unstable();
    assert_eq!(ids, [1, 3], "those that exist, once each");
    assert!(among.bad.is_empty());
    assert!(one_by_one.iter().all(|t| !t.is_empty()), "{one_by_one:?}");
    let expected: std::collections::BTreeMap<i64, _> = (1..=3).zip(one_by_one).collect();
    assert_eq!(waiting, expected, "none for an incident that is not there");
}

fn a_committed_transition_reads_back(store: &dyn Store) {
    assert_eq!(fire(store, "A", T0).expect("fire"), IngestOutcome::Started);
    assert_eq!(
        fire(store, "A", T0).expect("again"),
        IngestOutcome::Refreshed
    );
    let (open, due_now, due_later, next) = run(store, Mode::Read, |tx| {
        Ok((
            tx.open_incidents(10)?.rows,
            tx.due_incidents(T0, 10)?.rows,
            tx.due_incidents(Timestamp(T0.0 + 60_000), 10)?.rows,
            tx.next_due()?,
        ))
    })
    .expect("read");
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].id, 1);
    assert_eq!(open[0].key, IncidentKey([1; 16]));
    assert!(due_now.is_empty(), "the second step is a minute away");
    assert_eq!(due_later.len(), 1);
    assert_eq!(next, Some(Timestamp(T0.0 + 60_000)));
    assert_eq!(
        counts(store),
        Counts {
            pending: 2,
            open: 1
        }
    );
    let id = run(store, Mode::Durable, |tx| tx.next_incident_id()).expect("id");
    assert_eq!(id, 2, "the refresh took no id");
}

fn a_failed_unit_of_work_leaves_nothing(store: &dyn Store) {
    let result: Result<(), StoreError> = run(store, Mode::Durable, |tx| {
        let links = links();
        let configured = targets();
        let inputs = Inputs {
            links: &links,
            configured: &configured,
            schedules: &BTreeMap::new(),
            overrides: &[],
            slack_members: &BTreeMap::new(),
            now: T0,
        };
        let group = sample_notification("critical", "x", NotificationKind::Firing).group;
        let fresh = Fresh {
            id: tx.next_incident_id()?,
            key: IncidentKey::default(),
        };
        let (_, t) = engine::webhook(None, &plan(), group, fresh, &inputs);
        commit(tx, &t, T0)?;
        Err(StoreError::Task("fails after writing".into()))
    });
    assert!(result.is_err());
    assert_eq!(counts(store), Counts::default(), "rolled back whole");
}

fn group_commit_rolls_back_only_the_failing_job(store: &dyn Store) {
    let mut ok = |tx: &mut dyn super::Tx| tx.use_nonce("kept", 1, T0).map(|_| ());
    let mut failing = |tx: &mut dyn super::Tx| {
        tx.use_nonce("dropped", 1, T0)?;
        Err(StoreError::Task("this job fails".into()))
    };
    let results = store
        .transact_each(&mut [&mut ok, &mut failing])
        .expect("commit");
    assert!(results[0].is_ok() && results[1].is_err());
    let (kept, dropped) = run(store, Mode::Durable, |tx| {
        Ok((
            tx.use_nonce("kept", 1, T0)?,
            tx.use_nonce("dropped", 1, T0)?,
        ))
    })
    .expect("read");
    assert!(!kept, "the first job's nonce was committed");
    assert!(dropped, "the failing job's nonce was rolled back");
}

fn the_outbox_is_first_in_first_out_per_target(store: &dyn Store) {
    fire(store, "A", T0).expect("A");
    fire(store, "B", T0).expect("B");
    let a: TargetName = "ntfy.a".into();
    let head = |store: &dyn Store| {
        run(store, Mode::Relaxed, |tx| tx.outbox_head(&a))
            .expect("head")
            .expect("pending")
            .expect("readable")
    };
    let first = head(store);
    assert_eq!(first.notification.incident_id, 1);
    let retry = Finish::Retry {
        next_try: Timestamp(T0.0 + 5000),
        error: "503".into(),
    };
    run(store, Mode::Relaxed, |tx| tx.finish(first.id, &retry, T0)).expect("retry");
    let again = head(store);
    assert_eq!(again.id, first.id, "a retried row stays at the head");
    assert_eq!(
        (again.attempts, again.next_try),
        (1, Timestamp(T0.0 + 5000))
    );
    run(store, Mode::Relaxed, |tx| {
        tx.finish(first.id, &Finish::Delivered, T0)
    })
    .expect("delivered");
    let second = head(store);
    assert_eq!(second.notification.incident_id, 2);
    let dead = Finish::Dead {
        error: "400 bad".into(),
    };
    run(store, Mode::Relaxed, |tx| tx.finish(second.id, &dead, T0)).expect("dead");
    let letters = run(store, Mode::Read, |tx| tx.dead_letters(10)).expect("letters");
    assert_eq!(letters.len(), 1);
    assert_eq!(
        (letters[0].id, letters[0].reason.as_str()),
        (second.id, "400 bad")
    );
    let pending = run(store, Mode::Read, |tx| tx.pending_targets()).expect("targets");
    assert_eq!(pending, vec![TargetName::from("ntfy.b")]);
    let killed = run(store, Mode::Durable, |tx| {
        tx.dead_letter_target(&"ntfy.b".into(), "removed", T0)
    })
    .expect("kill");
    assert_eq!(killed.len(), 2, "{killed:?}");
    assert_eq!(counts(store).pending, 0);
}

fn superseding_touches_only_pending_firing_rows_of_the_incident(store: &dyn Store) {
    fire(store, "A", T0).expect("A");
    fire(store, "B", T0).expect("B");
    let n = run(store, Mode::Durable, |tx| {
        tx.supersede(1, "acknowledged", T0)
    })
    .expect("s");
    assert_eq!(n, 2, "both pages of incident 1");
    assert_eq!(counts(store).pending, 2, "incident 2's pages wait");
    let waiting = run(store, Mode::Read, |tx| tx.waiting_targets(1)).expect("waiting");
    assert!(waiting.is_empty());
}

fn a_nonce_is_used_once(store: &dyn Store) {
    let unused = run(store, Mode::Read, |tx| tx.nonce_used("n")).expect("look");
    let looked_again = run(store, Mode::Read, |tx| tx.nonce_used("n")).expect("look");
    let first = run(store, Mode::Durable, |tx| tx.use_nonce("n", 1, T0)).expect("first");
    let second = run(store, Mode::Durable, |tx| tx.use_nonce("n", 1, T0)).expect("second");
    let used = run(store, Mode::Read, |tx| tx.nonce_used("n")).expect("look");
    assert!(
        !unused && !looked_again,
        "looking at a nonce does not use it"
    );
    assert!(first && !second);
    assert!(used);
}

fn one_open_incident_per_policy_and_group(store: &dyn Store) {
    fire(store, "A", T0).expect("A");
    let duplicate = run(store, Mode::Durable, |tx| {
        let mut copy = tx.incident(1)?.expect("incident 1");
        copy.id = tx.next_incident_id()?;
        tx.insert_incident(&copy, T0)
    });
    assert!(
        duplicate.is_err(),
        "the store refuses a second open incident for the same group"
    );
}

fn the_timeline_is_written_with_its_change_and_read_in_order(store: &dyn Store) {
    use crate::engine::{EventKind, NewEvent};
    fire(store, "A", T0).expect("fire");
    let events = run(store, Mode::Read, |tx| tx.events(1, 100)).expect("events");
    let kinds: Vec<_> = events.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [Some(EventKind::Started), Some(EventKind::Paged)],
        "{events:?}"
    );
    assert!(events.iter().all(|e| e.incident_id == 1 && e.at == T0));
    let later = Timestamp(T0.0 + 1_000);
    run(store, Mode::Relaxed, |tx| {
        for n in 0..3 {
            let event = NewEvent::new(1, EventKind::Delivered, format!("attempt {n}"))
                .to(&TargetName::from("ntfy.a"))
                .by("alice");
            tx.insert_event(&event, later)?;
        }
        Ok(())
    })
    .expect("delivery events");
    let last = run(store, Mode::Read, |tx| tx.events(1, 2)).expect("latest two");
    let details: Vec<&str> = last.iter().map(|e| e.detail.as_str()).collect();
    assert_eq!(
        details,
        ["attempt 1", "attempt 2"],
        "the latest, oldest first"
    );
    assert_eq!(last[1].target.as_deref(), Some("ntfy.a"));
    assert_eq!(last[1].actor.as_deref(), Some("alice"));
    assert_eq!(last[1].kind_name, "delivered");
    // A unit of work that fails leaves no event behind.
    let failed: Result<(), StoreError> = run(store, Mode::Durable, |tx| {
        tx.insert_event(&NewEvent::new(1, EventKind::Resolved, "never"), later)?;
        Err(StoreError::Task("fails after writing".into()))
    });
    assert!(failed.is_err());
    let all = run(store, Mode::Read, |tx| tx.events(1, 100)).expect("events");
    assert_eq!(all.len(), 5, "{all:?}");
    assert!(run(store, Mode::Read, |tx| tx.events(2, 100))
        .expect("none")
        .is_empty());
}

fn a_targets_events_read_across_incidents_newest_first(store: &dyn Store) {
    use crate::engine::{EventKind, NewEvent};
    fire(store, "A", T0).expect("incident 1");
    fire(store, "B", T0).expect("incident 2");
    let alice = TargetName::from("person.alice");
    let at = |secs: i64| Timestamp(T0.0 + secs * 1000);
    run(store, Mode::Relaxed, |tx| {
        let delivered = |incident, n: i64| {
            NewEvent::new(incident, EventKind::Delivered, format!("page {n}")).to(&alice)
        };
        tx.insert_event(&delivered(1, 1), at(1))?;
        tx.insert_event(&delivered(2, 2), at(2))?;
        tx.insert_event(&delivered(1, 3), at(3))?;
        // Not alice's, not a delivery, or not a target at all: never listed.
        let bob = TargetName::from("person.bob");
        tx.insert_event(
            &NewEvent::new(1, EventKind::Delivered, "bob's").to(&bob),
            at(4),
        )?;
        tx.insert_event(
            &NewEvent::new(2, EventKind::Retrying, "retry").to(&alice),
            at(5),
        )?;
        tx.insert_event(&NewEvent::new(2, EventKind::Acknowledged, "ack"), at(6))
    })
    .expect("events");
    let read = |since: Timestamp, limit| {
        run(store, Mode::Read, |tx| {
            tx.events_for_target("person.alice", EventKind::Delivered, since, limit)
        })
        .expect("read")
    };
    let all = read(T0, 10);
    let details: Vec<&str> = all.iter().map(|e| e.detail.as_str()).collect();
    assert_eq!(details, ["page 3", "page 2", "page 1"], "{all:?}");
    assert_eq!(
        all.iter().map(|e| e.incident_id).collect::<Vec<_>>(),
        [1, 2, 1]
    );
    assert!(all.iter().all(
        |e| e.kind == Some(EventKind::Delivered) && e.target.as_deref() == Some("person.alice")
    ));
    let recent: Vec<String> = read(at(2), 10).into_iter().map(|e| e.detail).collect();
    assert_eq!(recent, ["page 3", "page 2"], "from `since` on, inclusive");
    assert_eq!(read(T0, 1).len(), 1, "at most `limit`");
    let nobody = run(store, Mode::Read, |tx| {
        tx.events_for_target("person.carol", EventKind::Delivered, T0, 10)
    })
    .expect("none");
    assert!(nobody.is_empty());
}
