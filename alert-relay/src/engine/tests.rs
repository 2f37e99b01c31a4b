//! What each event does to the rows, checked without a store.

use std::collections::BTreeSet;
use std::time::Duration;

use super::*;
use crate::ack::AckKey;
use crate::domain::{sample_notification, Labels};

static NO_SCHEDULES: std::collections::BTreeMap<String, Schedule> =
    std::collections::BTreeMap::new();
static NO_MEMBERS: std::collections::BTreeMap<String, String> = std::collections::BTreeMap::new();

const T0: Timestamp = Timestamp(1_800_000_000_000);
const MIN: i64 = 60_000;

pub(super) fn at(minutes: i64) -> Timestamp {
    Timestamp(T0.0 + minutes * MIN)
}

pub(super) fn links() -> Links {
    Links {
        public_url: Some("https://relay.test/".parse().expect("url")),
        key: AckKey::new(b"engine-test-key-of-enough-length!"),
        ttl: Duration::from_secs(3600),
        alertmanager_url: None,
        grafana_url: None,
        console: false,
    }
}

pub(super) fn plan() -> Plan {
    Plan {
        policy: "critical".into(),
        steps: vec![
            PlannedStep {
                after_ms: 0,
                targets: vec!["ntfy.primary".into()],
            },
            PlannedStep {
                after_ms: 15 * 60_000,
                targets: vec!["ntfy.secondary".into(), "slack.ops".into()],
            },
        ],
        repeat: None,
        send_resolved: true,
        ack_timeout_ms: None,
    }
}

pub(super) fn configured(names: &[&str]) -> BTreeSet<TargetName> {
    names.iter().map(|n| TargetName::from(*n)).collect()
}

pub(super) fn all() -> BTreeSet<TargetName> {
    configured(&["ntfy.primary", "ntfy.secondary", "slack.ops"])
}

pub(super) fn group(status: AlertStatus) -> AlertGroup {
    let kind = if status == AlertStatus::Firing {
        NotificationKind::Firing
    } else {
        NotificationKind::Resolved
    };
    sample_notification("critical", "x", kind).group
}

pub(super) const FRESH: Fresh = Fresh {
    id: 7,
    key: IncidentKey([9; 16]),
};

/// Starts an incident at `at(0)` and returns its record as committed.
pub(super) fn started() -> IncidentRecord {
    let links = links();
    let targets = all();
    let inputs = Inputs {
        links: &links,
        configured: &targets,
        schedules: &NO_SCHEDULES,
        overrides: &[],
        slack_members: &NO_MEMBERS,
        now: at(0),
    };
    let (_, t) = webhook(None, &plan(), group(AlertStatus::Firing), FRESH, &inputs);
    match t.incidents.into_iter().next() {
        Some(IncidentWrite::Insert(record)) => record,
        other => panic!("expected an insert, got {other:?}"),
    }
}

pub(super) fn inputs_at<'a>(
    links: &'a Links,
    targets: &'a BTreeSet<TargetName>,
    now: Timestamp,
) -> Inputs<'a> {
    Inputs {
        links,
        configured: targets,
        schedules: &NO_SCHEDULES,
        overrides: &[],
        slack_members: &NO_MEMBERS,
        now,
    }
}

fn targets_of(t: &Transition) -> Vec<(&str, NotificationKind)> {
    t.outbox
        .iter()
        .map(|o| (o.notification.target.as_str(), o.notification.kind))
        .collect()
}

#[test]
fn a_first_firing_starts_an_incident_and_queues_the_first_step() {
    let (links, targets) = (links(), all());
    let (outcome, t) = webhook(
        None,
        &plan(),
        group(AlertStatus::Firing),
        FRESH,
        &inputs_at(&links, &targets, at(0)),
    );
    assert_eq!(outcome, IngestOutcome::Started);
    let [IncidentWrite::Insert(record)] = t.incidents.as_slice() else {
        panic!("{:?}", t.incidents)
    };
    assert_eq!((record.id, record.key), (7, IncidentKey([9; 16])));
    assert_eq!(
        targets_of(&t),
        vec![("ntfy.primary", NotificationKind::Firing)]
    );
    assert_eq!(t.outbox[0].notification.sequence_id, "relay-7");
    assert_eq!(t.effects.queued, 1);
    assert_eq!(t.effects.steps, vec![PolicyName::from("critical")]);
    assert!(t.effects.reschedule);
}

#[test]
fn a_repeat_refreshes_the_alerts_and_never_restarts_escalation() {
    let (links, targets) = (links(), all());
    let mut newer = group(AlertStatus::Firing);
    newer.alerts.push(newer.alerts[0].clone());
    let (outcome, t) = webhook(
        Some(started()),
        &plan(),
        newer,
        Fresh { id: 8, ..FRESH },
        &inputs_at(&links, &targets, at(3)),
    );
    assert_eq!(outcome, IngestOutcome::Refreshed);
    let [IncidentWrite::Update(record)] = t.incidents.as_slice() else {
        panic!("{:?}", t.incidents)
    };
    assert_eq!(record.id, 7, "the same incident");
    assert_eq!(record.group.alerts.len(), 2, "with the latest alerts");
    assert_eq!(
        record.machine.started_at,
        at(0),
        "its clock did not restart"
    );
    assert!(t.outbox.is_empty());
}

#[test]
fn firing_after_a_silence_closes_the_old_incident_and_starts_a_new_one() {
    let (links, targets) = (links(), all());
    let inputs = inputs_at(&links, &targets, at(5));
    let t = silenced(started(), "silenced by bob".into(), &inputs);
    let [IncidentWrite::Update(silenced_record)] = t.incidents.as_slice() else {
        panic!("{:?}", t.incidents)
    };
    assert_eq!(
        targets_of(&t),
        vec![("ntfy.primary", NotificationKind::Silenced)],
        "those paged learn of the silence"
    );
    assert_eq!(
        t.outbox[0].notification.silence_note.as_deref(),
        Some("silenced by bob")
    );
    let (outcome, t) = webhook(
        Some(silenced_record.clone()),
        &plan(),
        group(AlertStatus::Firing),
        Fresh { id: 8, ..FRESH },
        &inputs_at(&links, &targets, at(60)),
    );
    assert_eq!(outcome, IngestOutcome::Started);
    match t.incidents.as_slice() {
        [IncidentWrite::Update(old), IncidentWrite::Insert(new)] => {
            assert!(old.machine.is_closed() && old.id == 7);
            assert_eq!((new.id, new.machine.started_at), (8, at(60)));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_resolve_closes_tells_everyone_paged_and_supersedes_pending_pages() {
    let (links, targets) = (links(), all());
    let after_second = due(started(), &inputs_at(&links, &targets, at(15)));
    let IncidentWrite::Update(record) = after_second.incidents[0].clone() else {
        panic!()
    };
    let (outcome, t) = webhook(
        Some(record),
        &plan(),
        group(AlertStatus::Resolved),
        FRESH,
        &inputs_at(&links, &targets, at(20)),
    );
    assert_eq!(outcome, IngestOutcome::Resolved);
    let mut who = targets_of(&t);
    who.sort_by_key(|(target, _)| *target);
    assert_eq!(
        who,
        vec![
            ("ntfy.primary", NotificationKind::Resolved),
            ("ntfy.secondary", NotificationKind::Resolved),
            ("slack.ops", NotificationKind::Resolved),
        ]
    );
    assert_eq!(t.supersede.len(), 1);
    assert!(
        t.supersede[0].1.contains("resolved"),
        "{}",
        t.supersede[0].1
    );
    assert_eq!(t.effects.stopped, vec![StopReason::Resolved]);
}

#[test]
fn a_resolve_for_no_open_incident_changes_nothing() {
    let (links, targets) = (links(), all());
    let (outcome, t) = webhook(
        None,
        &plan(),
        group(AlertStatus::Resolved),
        FRESH,
        &inputs_at(&links, &targets, at(0)),
    );
    assert_eq!(outcome, IngestOutcome::Ignored);
    assert_eq!(t, Transition::default());
}

#[test]
fn an_acknowledge_stops_escalation_names_who_and_happens_once() {
    let (links, targets) = (links(), all());
    let (outcome, t) = acknowledge(
        started(),
        "alice".into(),
        &inputs_at(&links, &targets, at(2)),
    );
    assert_eq!(outcome, AckOutcome::Acknowledged);
    assert_eq!(
        targets_of(&t),
        vec![("ntfy.primary", NotificationKind::Acknowledged)]
    );
    assert!(
        t.supersede[0].1.contains("acknowledged by alice"),
        "{:?}",
        t.supersede
    );
    let IncidentWrite::Update(record) = t.incidents[0].clone() else {
        panic!()
    };
    assert_eq!(record.machine.acknowledged_by.as_deref(), Some("alice"));
    assert_eq!(record.machine.stopped_at, Some(at(2)));
    assert_eq!(record.machine.next_due(), None, "nothing more is planned");
    let (again, t) = acknowledge(record, "bob".into(), &inputs_at(&links, &targets, at(3)));
    assert_eq!(again, AckOutcome::NotEscalating);
    assert_eq!(t, Transition::default());
}

#[test]
fn steps_fire_when_due_and_not_before() {
    let (links, targets) = (links(), all());
    let early = due(started(), &inputs_at(&links, &targets, at(14)));
    assert_eq!(early, Transition::default(), "nothing due yet");
    let on_time = due(started(), &inputs_at(&links, &targets, at(15)));
    assert_eq!(
        targets_of(&on_time),
        vec![
            ("ntfy.secondary", NotificationKind::Firing),
            ("slack.ops", NotificationKind::Firing)
        ]
    );
    assert!(on_time.outbox.iter().all(|o| o.notification.step == 1));
}

#[test]
fn a_step_for_a_target_removed_since_the_start_is_dead_lettered_at_once() {
    let links = links();
    let fewer = configured(&["ntfy.primary", "ntfy.secondary"]);
    let t = due(started(), &inputs_at(&links, &fewer, at(15)));
    let dead: Vec<_> = t
        .outbox
        .iter()
        .filter(|o| o.dead.is_some())
        .map(|o| o.notification.target.as_str())
        .collect();
    assert_eq!(dead, vec!["slack.ops"]);
    assert_eq!(t.outbox[1].dead.as_deref(), Some(UNCONFIGURED));
    assert_eq!((t.effects.queued, t.effects.unconfigured.len()), (1, 1));
}

#[test]
fn an_ack_link_is_bound_to_the_incident_key() {
    let (links, targets) = (links(), all());
    let (_, t) = webhook(
        None,
        &plan(),
        group(AlertStatus::Firing),
        FRESH,
        &inputs_at(&links, &targets, at(0)),
    );
    let url = t.outbox[0]
        .notification
        .ack_url
        .clone()
        .expect("an ack link");
    let token = url.strip_prefix("https://relay.test/ack/").expect("prefix");
    let claim = links.key.verify(token, at(1)).expect("valid");
    assert_eq!(claim.incident_id, 7);
    assert_eq!(claim.incident_key, Some(IncidentKey([9; 16])));
}

#[test]
fn the_same_inputs_give_the_same_transition() {
    let (links, targets) = (links(), all());
    let run = || {
        webhook(
            None,
            &plan(),
            group(AlertStatus::Firing),
            FRESH,
            &inputs_at(&links, &targets, at(0)),
        )
    };
    assert_eq!(run(), run(), "no clock, no randomness inside the engine");
}

#[test]
fn a_silence_link_escapes_backslashes_and_quotes() {
    let (mut links, targets) = (links(), all());
    links.alertmanager_url = Some("http://am.test:9093".parse().expect("url"));
    let mut g = group(AlertStatus::Firing);
    g.external_url = None;
    g.group_labels = Labels::from([("share".to_owned(), r#"\\fileserver\backup "x""#.to_owned())]);
    let (_, t) = webhook(None, &plan(), g, FRESH, &inputs_at(&links, &targets, at(0)));
    let url = t.outbox[0]
        .notification
        .silence_url
        .clone()
        .expect("silence link");
    let filter = url.split("filter=").nth(1).expect("filter");
    let decoded = url::form_urlencoded::parse(format!("f={filter}").as_bytes())
        .next()
        .expect("pair")
        .1
        .into_owned();
    assert_eq!(decoded, r#"{share="\\\\fileserver\\backup \"x\""}"#);
}

#[test]
fn a_silence_link_through_grafana_carries_one_matcher_per_label() {
    let (mut links, targets) = (links(), all());
    links.grafana_url = Some("https://grafana.test/".parse().expect("url"));
    let mut g = group(AlertStatus::Firing);
    g.group_labels = Labels::from([
        ("alertname".to_owned(), "DiskFull".to_owned()),
        ("share".to_owned(), r"\\fs\b".to_owned()),
    ]);
    let (_, t) = webhook(None, &plan(), g, FRESH, &inputs_at(&links, &targets, at(0)));
    let url = url::Url::parse(
        t.outbox[0]
            .notification
            .silence_url
            .as_deref()
            .expect("link"),
    )
    .expect("a URL");
    assert_eq!(url.path(), "/alerting/silence/new");
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| (k.into(), v.into()))
        .collect();
    assert_eq!(
        pairs,
        vec![
            ("alertmanager".into(), "alertmanager".into()),
            ("matcher".into(), r#"alertname="DiskFull""#.into()),
            ("matcher".into(), r#"share="\\\\fs\\b""#.into()),
        ]
    );
}

#[test]
fn the_relays_own_alert_has_no_silence_link() {
    let (mut links, targets) = (links(), all());
    links.alertmanager_url = Some("http://am.test:9093".parse().expect("url"));
    let mut g = group(AlertStatus::Firing);
    g.receiver = crate::domain::OWN_RECEIVER.into();
    let (_, t) = webhook(None, &plan(), g, FRESH, &inputs_at(&links, &targets, at(0)));
    assert_eq!(t.outbox[0].notification.silence_url, None);
}

fn primary_schedule(first: &str) -> std::collections::BTreeMap<String, Schedule> {
    let schedule = Schedule {
        name: "primary".into(),
        time_zone: jiff::tz::TimeZone::UTC,
        zone_name: "UTC".into(),
        rotations: vec![oncall::Rotation {
            people: vec!["alice".into(), "bob".into()],
            shift: oncall::ShiftLength::Hours(1),
            first: first.parse().expect("civil"),
        }],
        handoff_notices: false,
    };
    [("primary".to_owned(), schedule)].into()
}

fn schedule_plan() -> Plan {
    let mut plan = plan();
    plan.steps[0].targets = vec!["schedule.primary".into()];
    plan
}

#[test]
fn a_step_naming_a_schedule_pages_whoever_is_on_call_when_it_fires() {
    let links = links();
    let targets = configured(&["person.alice", "person.bob", "ntfy.secondary", "slack.ops"]);
    // T0 is 2027-01-15T08:00:00Z; alice holds the 08:00 hour, bob the 09:00 one.
    let schedules = primary_schedule("2027-01-15T08:00");
    let mut inputs = inputs_at(&links, &targets, at(0));
    inputs.schedules = &schedules;
    let (_, t) = webhook(
        None,
        &schedule_plan(),
        group(AlertStatus::Firing),
        FRESH,
        &inputs,
    );
    assert_eq!(
        targets_of(&t),
        vec![("person.alice", NotificationKind::Firing)]
    );
    assert_eq!(t.outbox[0].notification.person.as_deref(), Some("alice"));
    let IncidentWrite::Insert(record) = t.incidents[0].clone() else {
        panic!()
    };
    assert_eq!(
        record.machine.notified,
        vec![TargetName::from("person.alice")]
    );
    // An override: carol covers, and is who the next page of the schedule reaches.
    let cover = Override {
        id: 1,
        schedule: "primary".into(),
        person: "bob".into(),
        replaces: Some("alice".into()),
        starts_at: at(0),
        ends_at: at(30),
        created_by: "alice".into(),
    };
    let overrides = [cover];
    inputs.overrides = &overrides;
    let (_, t) = webhook(
        None,
        &schedule_plan(),
        group(AlertStatus::Firing),
        FRESH,
        &inputs,
    );
    assert_eq!(
        targets_of(&t),
        vec![("person.bob", NotificationKind::Firing)]
    );
}

#[test]
fn nobody_on_call_is_a_dead_letter_and_the_next_step_at_once() {
    let links = links();
    let targets = configured(&["person.alice", "person.bob", "ntfy.secondary", "slack.ops"]);
    // The rotation starts tomorrow: a gap now.
    let schedules = primary_schedule("2027-01-16T08:00");
    let mut inputs = inputs_at(&links, &targets, at(0));
    inputs.schedules = &schedules;
    let (_, t) = webhook(
        None,
        &schedule_plan(),
        group(AlertStatus::Firing),
        FRESH,
        &inputs,
    );
    let dead: Vec<_> = t.outbox.iter().filter(|o| o.dead.is_some()).collect();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].notification.target.as_str(), "schedule.primary");
    let reason = dead[0].dead.as_deref().expect("reason");
    assert!(
        reason.contains("nobody is on call in schedule primary"),
        "{reason}"
    );
    assert!(reason.contains("ntfy.secondary, slack.ops"), "{reason}");
    let paged: Vec<&str> = t
        .outbox
        .iter()
        .filter(|o| o.dead.is_none())
        .map(|o| o.notification.target.as_str())
        .collect();
    assert_eq!(
        paged,
        vec!["ntfy.secondary", "slack.ops"],
        "the page still reaches someone"
    );
    assert_eq!(t.effects.nobody_on_call, vec!["primary".to_owned()]);
}

#[test]
fn slack_messages_of_a_step_mention_the_people_it_pages() {
    let links = links();
    let targets = configured(&["person.alice", "person.bob", "slack.ops"]);
    let schedules = primary_schedule("2027-01-15T08:00");
    let members: std::collections::BTreeMap<String, String> =
        [("alice".to_owned(), "U024BE7LH".to_owned())].into();
    let mut inputs = inputs_at(&links, &targets, at(0));
    inputs.schedules = &schedules;
    inputs.slack_members = &members;
    let mut plan = plan();
    plan.steps[0].targets = vec!["schedule.primary".into(), "slack.ops".into()];
    let (_, t) = webhook(None, &plan, group(AlertStatus::Firing), FRESH, &inputs);
    let slack = t
        .outbox
        .iter()
        .find(|r| r.notification.target.as_str() == "slack.ops")
        .expect("a Slack row");
    assert_eq!(slack.notification.mentions, vec!["U024BE7LH".to_owned()]);
    let phone = t
        .outbox
        .iter()
        .find(|r| r.notification.target.as_str() == "person.alice")
        .expect("alice's row");
    assert!(
        phone.notification.mentions.is_empty(),
        "only Slack mentions"
    );
}
