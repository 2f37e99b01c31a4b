//! What each transition adds to the incident's timeline.

use super::tests::{all, at, configured, group, inputs_at, links, plan, started, FRESH};
use super::*;

fn kinds(t: &Transition) -> Vec<EventKind> {
    t.events.iter().map(|e| e.kind).collect()
}

#[test]
fn a_start_records_the_alerts_and_the_first_page() {
    let (links, targets) = (links(), all());
    let (_, t) = webhook(
        None,
        &plan(),
        group(AlertStatus::Firing),
        FRESH,
        &inputs_at(&links, &targets, at(0)),
    );
    assert_eq!(kinds(&t), [EventKind::Started, EventKind::Paged]);
    assert!(t.events.iter().all(|e| e.incident_id == FRESH.id));
    assert!(
        t.events[0].detail.contains("policy critical"),
        "{:?}",
        t.events
    );
    assert_eq!(t.events[1].detail, "step 1 → ntfy.primary");
}

#[test]
fn a_plain_repeat_adds_nothing_and_new_alerts_are_noted() {
    let (links, targets) = (links(), all());
    let (_, t) = webhook(
        Some(started()),
        &plan(),
        group(AlertStatus::Firing),
        FRESH,
        &inputs_at(&links, &targets, at(1)),
    );
    assert!(t.events.is_empty(), "{:?}", t.events);
    let mut more = group(AlertStatus::Firing);
    let mut extra = more.alerts[0].clone();
    extra.fingerprint = crate::domain::Fingerprint("another".into());
    more.alerts.push(extra);
    let (_, t) = webhook(
        Some(started()),
        &plan(),
        more,
        FRESH,
        &inputs_at(&links, &targets, at(1)),
    );
    assert_eq!(kinds(&t), [EventKind::AlertsJoined]);
    assert!(
        t.events[0].detail.starts_with("1 new alert joined"),
        "{:?}",
        t.events
    );
}

#[test]
fn an_acknowledge_names_who_and_the_notice_sent() {
    let (links, targets) = (links(), all());
    let (_, t) = acknowledge(
        started(),
        "alice".into(),
        &inputs_at(&links, &targets, at(2)),
    );
    assert_eq!(kinds(&t), [EventKind::Notice, EventKind::Acknowledged]);
    assert_eq!(t.events[0].detail, "acknowledged notice → ntfy.primary");
    assert_eq!(t.events[1].actor.as_deref(), Some("alice"));
}

#[test]
fn a_resolve_is_recorded_once_with_the_notice() {
    let (links, targets) = (links(), all());
    let (_, t) = webhook(
        Some(started()),
        &plan(),
        group(AlertStatus::Resolved),
        FRESH,
        &inputs_at(&links, &targets, at(3)),
    );
    assert_eq!(kinds(&t), [EventKind::Resolved, EventKind::Notice]);
    assert_eq!(t.events[0].actor.as_deref(), Some("Alertmanager"));
}

#[test]
fn a_silence_records_alertmanagers_note() {
    let (links, targets) = (links(), all());
    let t = silenced(
        started(),
        "silenced by bob until 10:00".into(),
        &inputs_at(&links, &targets, at(4)),
    );
    assert_eq!(kinds(&t), [EventKind::Notice, EventKind::Silenced]);
    assert_eq!(t.events[1].detail, "silenced by bob until 10:00");
}

#[test]
fn an_acknowledgement_that_runs_out_is_recorded_before_the_new_pages() {
    let (links, targets) = (links(), all());
    let mut p = plan();
    p.ack_timeout_ms = Some(10 * 60_000);
    let (_, t) = webhook(
        None,
        &p,
        group(AlertStatus::Firing),
        FRESH,
        &inputs_at(&links, &targets, at(0)),
    );
    let Some(IncidentWrite::Insert(record)) = t.incidents.into_iter().next() else {
        panic!("an insert")
    };
    let (_, t) = acknowledge(record, "alice".into(), &inputs_at(&links, &targets, at(1)));
    let Some(IncidentWrite::Update(record)) = t.incidents.into_iter().next() else {
        panic!("an update")
    };
    let t = due(record, &inputs_at(&links, &targets, at(12)));
    assert_eq!(kinds(&t), [EventKind::AckTimedOut, EventKind::Paged]);
    assert!(
        t.events[0].detail.contains("Acknowledged by alice"),
        "{:?}",
        t.events
    );
}

#[test]
fn a_step_to_a_target_gone_says_so() {
    let links = links();
    let targets = configured(&["ntfy.primary"]);
    let t = due(started(), &inputs_at(&links, &targets, at(15)));
    assert_eq!(kinds(&t), [EventKind::Paged]);
    assert_eq!(
        t.events[0].detail,
        "step 2 → nobody (not configured: ntfy.secondary, slack.ops)"
    );
}

#[test]
fn every_kind_round_trips_by_name() {
    for kind in EventKind::ALL {
        assert_eq!(EventKind::parse(kind.as_str()), Some(kind));
    }
    assert_eq!(EventKind::parse("from_a_newer_relay"), None);
}

#[test]
fn escalate_now_fires_the_next_step_at_once_and_keeps_the_spacing_after_it() {
    let (links, targets) = (links(), all());
    let (outcome, t) = escalate_now(started(), "alice", &inputs_at(&links, &targets, at(2)));
    assert_eq!(outcome, ManualOutcome::Done);
    assert_eq!(kinds(&t), [EventKind::Escalated, EventKind::Paged]);
    assert_eq!(t.events[0].actor.as_deref(), Some("alice"));
    assert!(
        t.events[1].detail.starts_with("step 2 → "),
        "{:?}",
        t.events
    );
    let Some(IncidentWrite::Update(record)) = t.incidents.into_iter().next() else {
        panic!("an update")
    };
    assert_eq!(record.machine.steps_fired, 2);
    assert_eq!(record.machine.next_due(), None, "the plan has two steps");
    let (again, t) = escalate_now(record, "alice", &inputs_at(&links, &targets, at(3)));
    assert_eq!((again, t), (ManualOutcome::Nothing, Transition::default()));
}

#[test]
fn escalate_now_on_an_acknowledged_incident_does_nothing() {
    let (links, targets) = (links(), all());
    let (_, t) = acknowledge(started(), "bob".into(), &inputs_at(&links, &targets, at(1)));
    let Some(IncidentWrite::Update(record)) = t.incidents.into_iter().next() else {
        panic!("an update")
    };
    let (outcome, t) = escalate_now(record, "alice", &inputs_at(&links, &targets, at(2)));
    assert_eq!(
        (outcome, t),
        (ManualOutcome::Nothing, Transition::default())
    );
}

#[test]
fn a_resolve_by_hand_closes_tells_those_paged_and_names_who() {
    let (links, targets) = (links(), all());
    let (outcome, t) = resolve_by(started(), "alice", &inputs_at(&links, &targets, at(5)));
    assert_eq!(outcome, ManualOutcome::Done);
    assert_eq!(kinds(&t), [EventKind::Resolved, EventKind::Notice]);
    assert_eq!(t.events[0].actor.as_deref(), Some("alice"));
    assert!(!t.supersede.is_empty(), "pending pages are superseded");
    let Some(IncidentWrite::Update(record)) = t.incidents.into_iter().next() else {
        panic!("an update")
    };
    assert!(record.machine.is_closed());
    let (again, _) = resolve_by(record, "alice", &inputs_at(&links, &targets, at(6)));
    assert_eq!(again, ManualOutcome::Nothing);
}

#[test]
fn a_page_delivery_is_told_from_a_notice_by_its_detail() {
    use crate::domain::NotificationKind;
    let page = events::delivery_detail(NotificationKind::Firing, "attempt 1, 80 ms");
    assert_eq!(page, "firing: attempt 1, 80 ms");
    assert!(events::is_page_delivery(&page));
    for notice in [
        NotificationKind::Acknowledged,
        NotificationKind::Resolved,
        NotificationKind::Silenced,
    ] {
        assert!(!events::is_page_delivery(&events::delivery_detail(
            notice,
            "attempt 1, 80 ms"
        )));
    }
}
