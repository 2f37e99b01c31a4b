//! The escalation state machine, driven with explicit times.

use super::*;

const MIN: i64 = 60_000;

fn t(minutes: i64) -> Timestamp {
    Timestamp(1_000_000 + minutes * MIN)
}

fn targets(names: &[&str]) -> Vec<TargetName> {
    names.iter().map(|n| TargetName::from(*n)).collect()
}

/// The on-call chain: 0 primary, 15 secondary, 30 manager, 45 CTO.
fn chain() -> Plan {
    Plan {
        policy: "critical".into(),
        steps: [
            (0, "primary"),
            (15, "secondary"),
            (30, "manager"),
            (45, "cto"),
        ]
        .iter()
        .map(|(after, who)| PlannedStep {
            after_ms: (*after as u64) * 60_000,
            targets: targets(&[who]),
        })
        .collect(),
        repeat: None,
        send_resolved: true,
        ack_timeout_ms: None,
    }
}

fn notify(step: usize, kind: NotificationKind, who: &[&str]) -> Action {
    Action::Notify {
        step,
        kind,
        targets: targets(who),
    }
}

fn firing(step: usize, who: &[&str]) -> Action {
    notify(step, NotificationKind::Firing, who)
}

#[test]
fn first_step_fires_at_once() {
    let (incident, actions) = Incident::start(chain(), t(0));
    assert_eq!(actions, vec![firing(0, &["primary"])]);
    assert_eq!(incident.next_due(), Some(t(15)));
}

#[test]
fn each_later_step_fires_on_time_and_not_before() {
    let (mut incident, _) = Incident::start(chain(), t(0));
    assert!(incident.handle(Event::Due, t(14)).is_empty(), "too early");
    assert_eq!(
        incident.handle(Event::Due, t(15)),
        vec![firing(1, &["secondary"])]
    );
    assert_eq!(incident.next_due(), Some(t(30)));
    assert_eq!(
        incident.handle(Event::Due, t(30)),
        vec![firing(2, &["manager"])]
    );
    assert_eq!(
        incident.handle(Event::Due, t(45)),
        vec![firing(3, &["cto"])]
    );
    assert_eq!(incident.next_due(), None, "chain exhausted, no repeat");
    assert!(incident.handle(Event::Due, t(100)).is_empty());
}

#[test]
fn steps_missed_while_down_fire_at_once_in_order() {
    let (mut incident, _) = Incident::start(chain(), t(0));
    let actions = incident.handle(Event::Due, t(31));
    assert_eq!(
        actions,
        vec![firing(1, &["secondary"]), firing(2, &["manager"])]
    );
    assert_eq!(incident.next_due(), Some(t(45)));
}

#[test]
fn resolve_stops_escalation_and_tells_everyone_paged() {
    let (mut incident, _) = Incident::start(chain(), t(0));
    incident.handle(Event::Due, t(15));
    let actions = incident.handle(Event::Resolved, t(20));
    assert_eq!(
        actions,
        vec![
            notify(1, NotificationKind::Resolved, &["primary", "secondary"]),
            Action::Stopped(StopReason::Resolved)
        ]
    );
    assert!(incident.is_closed());
    assert_eq!(incident.next_due(), None);
    assert!(
        incident.handle(Event::Due, t(30)).is_empty(),
        "the manager is not paged"
    );
    assert!(
        incident.handle(Event::Resolved, t(31)).is_empty(),
        "duplicate resolve"
    );
}

#[test]
fn resolve_is_silent_when_the_policy_says_so() {
    let mut plan = chain();
    plan.send_resolved = false;
    let (mut incident, _) = Incident::start(plan, t(0));
    assert_eq!(
        incident.handle(Event::Resolved, t(1)),
        vec![Action::Stopped(StopReason::Resolved)]
    );
}

#[test]
fn acknowledge_stops_escalation_until_resolve() {
    let (mut incident, _) = Incident::start(chain(), t(0));
    let actions = incident.handle(Event::Acknowledged { by: "alice".into() }, t(5));
    assert_eq!(
        actions,
        vec![
            notify(0, NotificationKind::Acknowledged, &["primary"]),
            Action::Stopped(StopReason::Acknowledged)
        ]
    );
    assert_eq!(incident.next_due(), None);
    assert!(
        incident.handle(Event::Due, t(15)).is_empty(),
        "secondary not paged"
    );
    assert!(
        incident
            .handle(Event::Acknowledged { by: "bob".into() }, t(6))
            .is_empty(),
        "second ack"
    );
    assert!(!incident.is_closed(), "still firing");
    // The resolve still clears the push on the primary's phone.
    assert_eq!(
        incident.handle(Event::Resolved, t(40)),
        vec![notify(0, NotificationKind::Resolved, &["primary"])]
    );
    assert!(incident.is_closed());
}

#[test]
fn silence_stops_escalation_and_tells_those_paged() {
    let (mut incident, _) = Incident::start(chain(), t(0));
    let note = "silenced by alice until 12:00".to_owned();
    assert_eq!(
        incident.handle(Event::Silenced { note: note.clone() }, t(3)),
        vec![
            notify(0, NotificationKind::Silenced, &["primary"]),
            Action::Stopped(StopReason::Silenced)
        ]
    );
    assert_eq!(incident.silence_note, Some(note));
    assert!(incident.handle(Event::Due, t(15)).is_empty());
}

#[test]
fn the_last_step_repeats_as_configured() {
    let mut plan = chain();
    plan.steps.truncate(2);
    plan.repeat = Some(Repeat {
        every_ms: 10 * 60_000,
        times: Some(2),
    });
    let (mut incident, _) = Incident::start(plan, t(0));
    incident.handle(Event::Due, t(15));
    assert_eq!(incident.next_due(), Some(t(25)));
    assert_eq!(
        incident.handle(Event::Due, t(25)),
        vec![firing(1, &["secondary"])]
    );
    assert_eq!(
        incident.handle(Event::Due, t(35)),
        vec![firing(1, &["secondary"])]
    );
    assert_eq!(incident.next_due(), None, "two repeats done");
    assert!(incident.handle(Event::Due, t(60)).is_empty());
}

#[test]
fn a_late_repeat_fires_once_not_for_every_missed_period() {
    let mut plan = chain();
    plan.steps.truncate(1);
    plan.repeat = Some(Repeat {
        every_ms: 60_000,
        times: None,
    });
    let (mut incident, _) = Incident::start(plan, t(0));
    assert_eq!(
        incident.handle(Event::Due, t(30)),
        vec![firing(0, &["primary"])]
    );
    assert_eq!(incident.next_due(), Some(t(31)));
}

#[test]
fn several_targets_in_a_step_and_zero_delays_fire_together() {
    let plan = Plan {
        policy: "p".into(),
        steps: vec![
            PlannedStep {
                after_ms: 0,
                targets: targets(&["ntfy.primary", "log.audit"]),
            },
            PlannedStep {
                after_ms: 0,
                targets: targets(&["slack.ops"]),
            },
        ],
        repeat: None,
        send_resolved: true,
        ack_timeout_ms: None,
    };
    let (mut incident, actions) = Incident::start(plan, t(0));
    assert_eq!(
        actions,
        vec![
            firing(0, &["ntfy.primary", "log.audit"]),
            firing(1, &["slack.ops"])
        ]
    );
    assert_eq!(
        incident.handle(Event::Resolved, t(1))[0],
        notify(
            1,
            NotificationKind::Resolved,
            &["ntfy.primary", "log.audit", "slack.ops"]
        )
    );
}

#[test]
fn an_incident_follows_the_plan_it_started_with() {
    let (incident, _) = Incident::start(chain(), t(0));
    // What the store keeps; the policy file may change meanwhile.
    let stored = serde_json::to_string(&incident).expect("serialize");
    let mut new_policy = chain();
    new_policy.steps[1].after_ms = 60_000;
    new_policy.steps[1].targets = targets(&["somebody-else"]);
    let mut restored: Incident = serde_json::from_str(&stored).expect("deserialize");
    assert_eq!(restored, incident);
    assert!(
        restored.handle(Event::Due, t(1)).is_empty(),
        "old timing still applies"
    );
    assert_eq!(
        restored.handle(Event::Due, t(15)),
        vec![firing(1, &["secondary"])]
    );
}

#[test]
fn the_engine_is_deterministic_for_any_event_order() {
    // Every short sequence of events leaves a consistent incident: no step twice, no step
    // after a stop, and next_due never in the past of the last event handled.
    let events = [
        Event::Due,
        Event::Resolved,
        Event::Acknowledged { by: "x".into() },
        Event::Silenced { note: "x".into() },
    ];
    for a in &events {
        for b in &events {
            for c in &events {
                let (mut incident, mut all) = Incident::start(chain(), t(0));
                for (i, e) in [a, b, c].into_iter().enumerate() {
                    all.extend(incident.handle(e.clone(), t(16 * (i as i64 + 1))));
                }
                let mut steps: Vec<usize> = all
                    .iter()
                    .filter_map(|a| match a {
                        Action::Notify {
                            step,
                            kind: NotificationKind::Firing,
                            ..
                        } => Some(*step),
                        _ => None,
                    })
                    .collect();
                let len = steps.len();
                steps.dedup();
                assert_eq!(steps.len(), len, "a step fired twice: {all:?}");
                let stops = all
                    .iter()
                    .filter(|a| matches!(a, Action::Stopped(_)))
                    .count();
                assert!(stops <= 1, "stopped twice: {all:?}");
                if let Some(due) = incident.next_due() {
                    assert!(incident.is_escalating() && due > t(0));
                }
            }
        }
    }
}

#[test]
fn the_next_step_names_its_targets_then_the_repeat_of_the_last() {
    let mut plan = chain();
    plan.repeat = Some(Repeat {
        every_ms: 10 * 60_000,
        times: Some(1),
    });
    let (mut incident, _) = Incident::start(plan, t(0));
    assert_eq!(
        incident.next_step(),
        Some((t(15), targets(&["secondary"]).as_slice()))
    );
    incident.handle(Event::Due, t(45));
    assert_eq!(
        incident.next_step(),
        Some((t(55), targets(&["cto"]).as_slice())),
        "the repeat of the last step"
    );
    incident.handle(Event::Due, t(55));
    assert_eq!(incident.next_step(), None, "the one repeat is done");
    let (mut acked, _) = Incident::start(chain(), t(0));
    acked.handle(Event::Acknowledged { by: "alice".into() }, t(1));
    assert_eq!(acked.next_step(), None);
}

fn with_ack_timeout(minutes: u64) -> Plan {
    let mut plan = chain();
    plan.ack_timeout_ms = Some(minutes * 60_000);
    plan
}

#[test]
fn a_forgotten_acknowledgement_runs_out_and_the_chain_pages_again_from_the_start() {
    let (mut incident, _) = Incident::start(with_ack_timeout(30), t(0));
    incident.handle(Event::Due, t(15));
    incident.handle(Event::Acknowledged { by: "alice".into() }, t(20));
    assert_eq!(
        incident.next_step(),
        Some((t(50), targets(&["primary"]).as_slice()))
    );
    assert!(
        incident.handle(Event::Due, t(49)).is_empty(),
        "the ack still holds"
    );
    assert_eq!(
        incident.handle(Event::Due, t(50)),
        vec![firing(0, &["primary"])]
    );
    assert!(incident.is_escalating());
    assert_eq!(
        incident.notice.as_deref(),
        Some("Acknowledged by alice 30m ago and still firing: escalating again.")
    );
    // The steps count from the new round; the identity stays the first start.
    assert_eq!(incident.next_due(), Some(t(65)));
    assert_eq!(incident.started_at, t(0));
    assert!(incident
        .handle(Event::Due, t(65))
        .iter()
        .any(|a| *a == firing(1, &["secondary"])));
    assert_eq!(incident.notice, None, "the next page is an ordinary one");
}

#[test]
fn without_an_ack_timeout_an_acknowledgement_holds_until_the_resolve() {
    let (mut incident, _) = Incident::start(chain(), t(0));
    incident.handle(Event::Acknowledged { by: "alice".into() }, t(1));
    assert_eq!(incident.next_due(), None);
    assert!(incident.handle(Event::Due, t(10_000)).is_empty());
}

#[test]
fn a_silence_after_an_acknowledgement_wins_over_its_timeout() {
    let (mut incident, _) = Incident::start(with_ack_timeout(30), t(0));
    incident.handle(Event::Acknowledged { by: "alice".into() }, t(1));
    let actions = incident.handle(
        Event::Silenced {
            note: "by bob".into(),
        },
        t(31),
    );
    assert!(actions.is_empty(), "those paged know someone took it");
    assert_eq!(incident.phase, Phase::Stopped(StopReason::Silenced));
    assert_eq!(incident.next_due(), None);
    assert!(incident.handle(Event::Due, t(40)).is_empty());
}

#[test]
fn new_alerts_joining_an_acknowledged_incident_are_news_for_those_paged() {
    let (mut incident, _) = Incident::start(chain(), t(0));
    incident.seen = vec!["a".into()];
    incident.handle(Event::Due, t(15));
    assert!(
        incident.alerts_joined(&["a".into(), "b".into()]).is_empty(),
        "while escalating, the next step carries them"
    );
    incident.handle(Event::Acknowledged { by: "alice".into() }, t(16));
    assert!(
        incident.alerts_joined(&["a".into(), "b".into()]).is_empty(),
        "nothing new"
    );
    assert_eq!(
        incident.alerts_joined(&["a".into(), "c".into(), "d".into()]),
        vec![firing(1, &["primary", "secondary"])]
    );
    assert_eq!(
        incident.notice.as_deref(),
        Some("2 new alerts joined since alice acknowledged.")
    );
    assert_eq!(
        incident.phase,
        Phase::Stopped(StopReason::Acknowledged),
        "no restart"
    );
}
