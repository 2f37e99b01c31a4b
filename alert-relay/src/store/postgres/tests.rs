//! The PostgreSQL store on a real server (`RELAY_TEST_DATABASE_URL`, one database per
//! test): the contract, migrations, unreadable rows, and text PostgreSQL cannot hold.

use super::scratch::ScratchDatabase;
use super::*;
use crate::domain::Timestamp;
use crate::store::history::HistoryColumns;
use crate::store::{contract, run, Finish};

const T0: Timestamp = Timestamp(1_800_000_000_000);

#[test]
fn postgres_passes_the_store_contract() {
    let Some(first) = ScratchDatabase::create() else {
        return;
    };
    let databases = std::cell::RefCell::new(vec![first]);
    let used = std::cell::Cell::new(false);
    contract::check_all(&|| {
        // The first database was made to learn whether there is a server at all.
        let db = if used.replace(true) {
            ScratchDatabase::create().expect("a server, as for the first")
        } else {
            databases.borrow_mut().pop().expect("the first database")
        };
        let store = db.open();
        databases.borrow_mut().push(db);
        Box::new(store)
    });
}

#[test]
fn migrations_run_once_and_a_newer_schema_is_refused_with_a_fix() {
    let Some(db) = ScratchDatabase::create() else {
        return;
    };
    drop(db.open());
    // Several relays starting at once: the advisory lock lets one migrate, the others wait
    // and find nothing to do.
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| drop(db.open()));
        }
    });
    let store = db.open();
    let versions = store
        .query(
            "SELECT version FROM schema_migrations ORDER BY version",
            &[],
        )
        .expect("versions");
    let versions: Vec<i32> = versions.iter().map(|r| r.get(0)).collect();
    assert_eq!(
        versions,
        (1..=schema::MIGRATIONS.len() as i32).collect::<Vec<_>>()
    );
    store
        .execute("INSERT INTO schema_migrations (version) VALUES (99)")
        .expect("a newer relay's version");
    drop(store);
    let Err(error) = PostgresStore::open(db.url()) else {
        panic!("a newer schema must be refused")
    };
    assert!(
        error.to_string().contains("newer than this relay knows"),
        "{error}"
    );
}

#[test]
fn an_unreachable_server_is_a_clear_error_without_the_password() {
    let url = DatabaseUrl::parse("postgres://relay:s3cret@127.0.0.1:1/relay").expect("url");
    let Err(error) = PostgresStore::open(&url) else {
        panic!("nothing listens on port 1")
    };
    let error = error.to_string();
    assert!(error.contains("cannot connect to PostgreSQL"), "{error}");
    assert!(
        error.contains("127.0.0.1:1") && !error.contains("s3cret"),
        "{error}"
    );
}

/// Incident 1 and its two pages (targets ntfy.a and ntfy.b), the way a webhook makes them.
fn one_incident(store: &PostgresStore) {
    contract::fire(store, "A", T0).expect("incident 1");
}

#[test]
fn unreadable_rows_are_reported_then_quarantined_and_the_others_go_on() {
    let Some(db) = ScratchDatabase::create() else {
        return;
    };
    let store = db.open();
    one_incident(&store);
    store
        .execute(
            "UPDATE incidents SET machine = '{not json' WHERE id = 1;
             UPDATE outbox SET payload = 'garbage' WHERE target = 'ntfy.a'",
        )
        .expect("damage");
    let bad = run(&store, Mode::Read, |tx| {
        let open = tx.open_incidents(10)?;
        assert!(open.rows.is_empty() && open.bad.len() == 1);
        assert!(matches!(tx.incident(1), Err(StoreError::Undecodable(_))));
        let head = tx.outbox_head(&"ntfy.a".into())?.expect("a row");
        assert!(head.is_err_and(|b| b.table == "outbox"));
        let fine = tx.outbox_head(&"ntfy.b".into())?.expect("a row");
        assert!(fine.is_ok(), "the other target's page reads");
        tx.undecodable()
    })
    .expect("read");
    let tables: Vec<&str> = bad.iter().map(|b| b.table).collect();
    assert_eq!(tables, ["incidents", "outbox"], "{bad:?}");
    run(&store, Mode::Durable, |tx| {
        for row in &bad {
            tx.quarantine(row, T0)?;
        }
        Ok(())
    })
    .expect("quarantine");
    let (quarantined, letters, counts, again) = run(&store, Mode::Read, |tx| {
        Ok((
            tx.quarantined(10)?,
            tx.dead_letters(10)?,
            tx.counts()?,
            tx.undecodable()?,
        ))
    })
    .expect("after");
    assert_eq!(quarantined.len(), 1);
    assert!(
        quarantined[0].reason.contains("machine:"),
        "{quarantined:?}"
    );
    assert_eq!(letters.len(), 1);
    assert!(letters[0].reason.contains("outbox row"), "{letters:?}");
    assert_eq!(counts.open, 0, "the damaged incident is closed");
    assert_eq!(counts.pending, 1, "ntfy.b's page still waits");
    assert!(again.is_empty());
}

#[test]
fn text_with_nul_is_stored_with_a_replacement_character() {
    let Some(db) = ScratchDatabase::create() else {
        return;
    };
    let store = db.open();
    one_incident(&store);
    let head = run(&store, Mode::Relaxed, |tx| tx.outbox_head(&"ntfy.a".into()))
        .expect("head")
        .expect("pending")
        .expect("readable");
    let dead = Finish::Dead {
        error: "400 {\"error\":\"bad\0byte\"}".into(),
    };
    run(&store, Mode::Relaxed, |tx| tx.finish(head.id, &dead, T0)).expect("finish");
    let letters = run(&store, Mode::Read, |tx| tx.dead_letters(1)).expect("letters");
    assert_eq!(letters[0].reason, "400 {\"error\":\"bad\u{FFFD}byte\"}");
}

#[test]
fn a_unit_of_work_that_goes_on_after_a_failed_statement_is_rolled_back_and_reported() {
    let Some(db) = ScratchDatabase::create() else {
        return;
    };
    let store = db.open();
    one_incident(&store);
    let result = run(&store, Mode::Durable, |tx| {
        tx.use_nonce("n", 1, T0)?;
        let mut copy = tx.incident(1)?.expect("incident 1");
        copy.id = 2;
        // A second open incident for the group: refused when the write reaches the server
        // (with the next statement), and the error swallowed.
        tx.insert_incident(&copy, T0)?;
        let refused = tx.counts().is_err();
        assert!(refused);
        Ok(())
    });
    assert!(result.is_err_and(|e| e.to_string().contains("rolled back")));
    let fresh = run(&store, Mode::Durable, |tx| tx.use_nonce("n", 1, T0)).expect("nonce");
    assert!(fresh, "nothing of the failed unit was committed");
}

#[test]
fn group_commit_keeps_the_jobs_around_one_whose_statement_failed() {
    let Some(db) = ScratchDatabase::create() else {
        return;
    };
    let store = db.open();
    one_incident(&store);
    let mut before = |tx: &mut dyn crate::store::Tx| tx.use_nonce("before", 1, T0).map(drop);
    let mut failing = |tx: &mut dyn crate::store::Tx| {
        let mut copy = tx.incident(1)?.expect("incident 1");
        copy.id = 2;
        tx.insert_incident(&copy, T0)
    };
    let mut after = |tx: &mut dyn crate::store::Tx| tx.use_nonce("after", 1, T0).map(drop);
    let results = store
        .transact_each(&mut [&mut before, &mut failing, &mut after])
        .expect("commit");
    assert!(results[0].is_ok() && results[2].is_ok(), "{results:?}");
    let Err(StoreError::Postgres(error)) = &results[1] else {
        panic!("the duplicate incident fails with PostgreSQL's error: {results:?}")
    };
    assert_eq!(error.code(), Some("23505"), "{error}");
    assert!(error.to_string().contains("incidents_one_open"), "{error}");
    let (before, after) = run(&store, Mode::Durable, |tx| {
        Ok((
            tx.use_nonce("before", 1, T0)?,
            tx.use_nonce("after", 1, T0)?,
        ))
    })
    .expect("read");
    assert!(!before && !after, "both other jobs were committed");
}

#[test]
fn the_store_answers_from_threads_inside_and_outside_a_runtime() {
    let Some(db) = ScratchDatabase::create() else {
        return;
    };
    let store = std::sync::Arc::new(db.open());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    // Inside `block_on` (the simulation's checker), and on the blocking pool.
    runtime.block_on(async {
        store.probe().expect("probe inside a runtime");
        let handle = crate::store::StoreHandle::new(store.clone());
        handle.probe().await.expect("probe on the blocking pool");
        let counts = handle
            .run(Mode::Read, |tx| tx.counts())
            .await
            .expect("counts");
        assert_eq!(counts, crate::store::Counts::default());
    });
    std::thread::spawn(move || store.probe().expect("a plain thread"))
        .join()
        .expect("join");
}

#[test]
fn incidents_from_before_the_history_get_its_columns() {
    let Some(db) = ScratchDatabase::create() else {
        return;
    };
    let group = crate::domain::sample_notification(
        "critical",
        "x",
        crate::domain::NotificationKind::Firing,
    )
    .group;
    let name = group.alertname().map(str::to_owned);
    let json = serde_json::to_string(&group)
        .expect("json")
        .replace('\'', "''");
    let version = schema::MIGRATIONS
        .iter()
        .position(|m| *m == schema::HISTORY)
        .expect("a step of the schema")
        + 1;
    // Back to the version before, with rows written then.
    db.open()
        .execute(&format!(
            "ALTER TABLE incidents DROP COLUMN closed_at, DROP COLUMN severity, DROP COLUMN alertname;
             DROP INDEX incident_events_kind_at, outbox_incident, outbox_dead, ack_nonces_incident;
             DELETE FROM schema_migrations WHERE version >= {version};
             INSERT INTO incidents (id, incident_key, policy, group_key, open, machine, alert_group, started_at, updated_at)
             VALUES (1, '', 'critical', '1', false, '{{}}', '{json}', 5, 9),
                    (2, '', 'critical', '2', true, '{{}}', '{json}', 5, 9),
                    (3, '', 'critical', '3', false, '{{}}', '{{', 5, 9);"
        ))
        .expect("the version before");
    let rows = db
        .open()
        .query(
            "SELECT id, closed_at, severity, alertname FROM incidents ORDER BY id",
            &[],
        )
        .expect("rows");
    let rows: Vec<HistoryColumns> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    assert_eq!(
        rows,
        [
            (1, Some(9), Some("critical".into()), name.clone()),
            (2, None, Some("critical".into()), name),
            (3, Some(9), None, None),
        ]
    );
}
