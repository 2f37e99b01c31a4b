//! The contract of the history and of retention, with real rows written the way the relay
//! writes them: closed incidents a page at a time and filtered, the timeline rows the
//! per-person numbers read, and the prune.

use super::{fire, run, webhook, Mode, Store, T0};
use crate::domain::{NotificationKind, TargetName, Timestamp};
use crate::engine::{EventKind, NewEvent};
use crate::store::{
    ConsoleSession, Cursor, HistoryFilter, HistoryQuery, PageBucket, Pruned, Seek, BUCKET_MS,
};

fn at(secs: i64) -> Timestamp {
    Timestamp(T0.0 + secs * 1000)
}

fn resolve(store: &dyn Store, alertname: &str, now: Timestamp) {
    webhook(store, alertname, NotificationKind::Resolved, now).expect("resolve");
}

pub(super) fn check_all(fresh: &dyn Fn() -> Box<dyn Store>) {
    closed_incidents_page_newest_first_by_keyset_and_filter(fresh().as_ref());
    the_timeline_rows_of_pages_and_acknowledgements_are_read_by_period(fresh().as_ref());
    a_prune_deletes_old_closed_incidents_with_their_rows_and_keeps_the_rest(fresh().as_ref());
    ended_console_sessions_and_expired_signin_links_are_pruned(fresh().as_ref());
    an_incident_id_never_comes_back_after_a_prune(fresh().as_ref());
}

fn an_incident_id_never_comes_back_after_a_prune(store: &dyn Store) {
    for name in ["A", "B"] {
        fire(store, name, T0).expect("fire");
        resolve(store, name, at(10));
    }
    run(store, Mode::Relaxed, |tx| {
        for target in ["ntfy.a", "ntfy.b"] {
            tx.dead_letter_target(&target.into(), "gone", at(20))?;
        }
        Ok(())
    })
    .expect("nothing pending");
    let pruned = run(store, Mode::Relaxed, |tx| {
        tx.prune_closed(at(1_000_000), 10)
    })
    .expect("prune");
    assert!(pruned.incidents >= 1, "{pruned:?}");
    fire(store, "C", at(2_000_000)).expect("C");
    let open = run(store, Mode::Read, |tx| tx.open_incidents(10)).expect("open");
    assert_eq!(open.rows.len(), 1);
    assert!(
        open.rows[0].id > 2,
        "a new id, not one used before: {}",
        open.rows[0].id
    );
}

fn page(store: &dyn Store, filter: HistoryFilter, seek: Seek, limit: u32) -> Vec<i64> {
    let q = HistoryQuery {
        filter,
        seek,
        limit,
    };
    let loaded = run(store, Mode::Read, |tx| tx.closed_incidents(&q)).expect("history");
    assert!(loaded.bad.is_empty(), "{:?}", loaded.bad);
    loaded.rows.iter().map(|c| c.record.id).collect()
}

fn closed_incidents_page_newest_first_by_keyset_and_filter(store: &dyn Store) {
    for name in ["A", "B", "C", "D"] {
        fire(store, name, T0).expect("fire");
    }
    // B closes last but started second: the history reads by when incidents closed.
    resolve(store, "A", at(10));
    resolve(store, "C", at(20));
    resolve(store, "B", at(30));
    let any = HistoryFilter::default;
    assert_eq!(page(store, any(), Seek::Newest, 10), [2, 3, 1], "D is open");
    let first = page(store, any(), Seek::Newest, 2);
    assert_eq!(first, [2, 3]);
    let c = Cursor {
        closed_at: at(20),
        id: 3,
    };
    assert_eq!(page(store, any(), Seek::Older(c), 2), [1]);
    let a = Cursor {
        closed_at: at(10),
        id: 1,
    };
    assert_eq!(
        page(store, any(), Seek::Newer(a), 2),
        [2, 3],
        "the page above, shown newest first"
    );
    assert_eq!(page(store, any(), Seek::Newer(a), 1), [3], "the nearest");
    let q = HistoryQuery {
        filter: any(),
        seek: Seek::Newest,
        limit: 1,
    };
    let newest = run(store, Mode::Read, |tx| tx.closed_incidents(&q)).expect("newest");
    assert_eq!(newest.rows[0].closed_at, at(30));
    assert_eq!(
        newest.rows[0].cursor(),
        Cursor {
            closed_at: at(30),
            id: 2
        }
    );
    let filtered = |f: HistoryFilter| page(store, f, Seek::Newest, 10);
    assert_eq!(
        filtered(HistoryFilter {
            alertname: Some("C".into()),
            ..any()
        }),
        [3]
    );
    assert_eq!(
        filtered(HistoryFilter {
            severity: Some("critical".into()),
            policy: Some("critical".into()),
            ..any()
        }),
        [2, 3, 1]
    );
    assert!(filtered(HistoryFilter {
        severity: Some("warning".into()),
        ..any()
    })
    .is_empty());
    assert!(filtered(HistoryFilter {
        policy: Some("critical' OR '1'='1".into()),
        ..any()
    })
    .is_empty());
    assert_eq!(
        filtered(HistoryFilter {
            closed_from: Some(at(20)),
            closed_until: Some(at(30)),
            ..any()
        }),
        [3],
        "from is inclusive, until exclusive"
    );
}

fn the_timeline_rows_of_pages_and_acknowledgements_are_read_by_period(store: &dyn Store) {
    fire(store, "A", T0).expect("A"); // started and paged at T0
    fire(store, "B", T0).expect("B");
    let alice = TargetName::from("person.alice");
    let event = |incident, kind, detail: &str| NewEvent::new(incident, kind, detail);
    let writes = [
        (
            at(2),
            event(1, EventKind::Delivered, "firing: attempt 1, 5 ms").to(&alice),
        ),
        (
            at(2),
            event(2, EventKind::Delivered, "firing: attempt 1, 5 ms").to(&"ntfy.a".into()),
        ),
        (
            at(5),
            event(2, EventKind::Delivered, "firing: attempt 1, 5 ms").to(&alice),
        ),
        (
            at(60),
            event(1, EventKind::Acknowledged, "acknowledged").by("alice (console)"),
        ),
        (
            at(61),
            event(1, EventKind::Delivered, "acknowledged: attempt 1, 5 ms").to(&alice),
        ),
        (
            at(3600),
            event(2, EventKind::Delivered, "firing: attempt 1, 5 ms").to(&alice),
        ),
    ];
    run(store, Mode::Relaxed, |tx| {
        for (now, e) in &writes {
            tx.insert_event(e, *now)?;
        }
        Ok(())
    })
    .expect("events");
    let pages = run(store, Mode::Read, |tx| {
        tx.page_buckets((T0, at(3600)), "person.", "firing: ", 100)
    })
    .expect("pages");
    assert_eq!(
        pages,
        [PageBucket {
            target: "person.alice".into(),
            start: Timestamp(T0.0 / BUCKET_MS * BUCKET_MS),
            pages: 2,
        }],
        "a person's pages in the period only, counted by quarter hour"
    );
    let all = run(store, Mode::Read, |tx| {
        tx.events_for_target("person.alice", EventKind::Delivered, T0, 100)
    })
    .expect("events");
    assert_eq!(
        crate::app::load::buckets((T0, at(3600)), &all),
        pages,
        "the store counts as the pure function does"
    );
    let timelines = run(store, Mode::Read, |tx| {
        tx.acknowledged_timelines((at(30), at(90)), 100)
    })
    .expect("timelines");
    let kinds: Vec<(i64, &str, Timestamp)> = timelines
        .iter()
        .map(|e| (e.incident_id, e.kind_name.as_str(), e.at))
        .collect();
    assert_eq!(
        kinds,
        [
            (1, "paged", T0),
            (1, "delivered", at(2)),
            (1, "acknowledged", at(60)),
            (1, "delivered", at(61)),
        ],
        "the acknowledged incident's escalation, in order; not its start, not B"
    );
    assert_eq!(timelines[2].actor.as_deref(), Some("alice (console)"));
    let none = run(store, Mode::Read, |tx| {
        tx.acknowledged_timelines((at(61), at(3600)), 100)
    })
    .expect("none");
    assert!(none.is_empty(), "{none:?}");
}

fn a_prune_deletes_old_closed_incidents_with_their_rows_and_keeps_the_rest(store: &dyn Store) {
    for name in ["A", "B", "C"] {
        fire(store, name, T0).expect("fire");
    }
    resolve(store, "A", at(10));
    resolve(store, "B", at(20));
    run(store, Mode::Durable, |tx| {
        tx.use_nonce("link-of-a", 1, at(5))?;
        tx.use_nonce("link-of-c", 3, at(5))
    })
    .expect("nonces");
    let prune = |before, limit| {
        run(store, Mode::Relaxed, |tx| tx.prune_closed(before, limit)).expect("prune")
    };
    assert_eq!(
        prune(at(1_000_000), 10),
        Pruned::default(),
        "their resolve notices still wait for delivery"
    );
    run(store, Mode::Relaxed, |tx| {
        for target in ["ntfy.a", "ntfy.b"] {
            tx.dead_letter_target(&target.into(), "gone", at(30))?;
        }
        Ok(())
    })
    .expect("nothing pending");
    assert_eq!(
        prune(at(10), 10),
        Pruned::default(),
        "closed at 10 s, not before"
    );
    let first = prune(at(1_000_000), 1);
    assert_eq!(first.incidents, 1, "one at a time: {first:?}");
    let rest = prune(at(1_000_000), 10);
    assert_eq!(rest.incidents, 1, "{rest:?}");
    assert_eq!(prune(at(1_000_000), 10), Pruned::default(), "done");
    let (a, b, c, events_a, events_c, letters, nonce_a, nonce_c) = run(store, Mode::Read, |tx| {
        Ok((
            tx.incident(1)?,
            tx.incident(2)?,
            tx.incident(3)?,
            tx.events(1, 100)?,
            tx.events(3, 100)?,
            tx.dead_letters(100)?,
            tx.nonce_used("link-of-a")?,
            tx.nonce_used("link-of-c")?,
        ))
    })
    .expect("read");
    assert!(
        a.is_none() && b.is_none(),
        "A and B pruned, the oldest first"
    );
    assert!(c.is_some(), "C is open: never pruned");
    assert!(events_a.is_empty());
    assert!(!events_c.is_empty());
    assert!(letters.iter().all(|l| l.incident_id == 3), "{letters:?}");
    assert!(!nonce_a && nonce_c);
    let total = {
        let mut t = first;
        t.add(rest);
        t
    };
    assert_eq!(total.incidents, 2);
    assert_eq!(total.nonces, 1);
    assert!(total.events >= 6 && total.outbox >= 4, "{total:?}");
}

fn ended_console_sessions_and_expired_signin_links_are_pruned(store: &dyn Store) {
    let session = |id: &str, expires| ConsoleSession {
        id_hash: id.into(),
        person: "alice".into(),
        created_at: T0,
        expires_at: expires,
        user_agent: "a browser".into(),
    };
    run(store, Mode::Durable, |tx| {
        tx.insert_session(&session("expired", at(100)))?;
        tx.insert_session(&session("revoked", at(10_000)))?;
        tx.insert_session(&session("live", at(10_000)))?;
        tx.revoke_sessions("alice", Some("revoked"), at(50))?;
        tx.insert_signin("old-link", "alice", at(100), T0)?;
        tx.insert_signin("new-link", "alice", at(10_000), T0)
    })
    .expect("sessions and links");
    let prune = |before| run(store, Mode::Relaxed, |tx| tx.prune_console(before)).expect("prune");
    assert_eq!(prune(at(40)), (0, 0), "nothing has ended before 40 s");
    assert_eq!(
        prune(at(200)),
        (2, 1),
        "the expired and the revoked, the old link"
    );
    assert_eq!(prune(at(200)), (0, 0), "done");
    let (live, revoked, new_link) = run(store, Mode::Durable, |tx| {
        Ok((
            tx.session("live", at(200))?,
            tx.session("revoked", at(200))?,
            tx.use_signin("new-link", at(200))?,
        ))
    })
    .expect("read");
    assert!(live.is_some(), "a live session stays");
    assert!(revoked.is_none());
    assert_eq!(
        new_link.as_deref(),
        Some("alice"),
        "a live link still works"
    );
}
