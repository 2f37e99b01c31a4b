//! The per-person numbers, by rule: what counts as a page and when it is outside hours, how
//! long an acknowledgement took, and whom it counts for.

use super::*;

/// 2027-01-15T00:00:00Z.
const DAY: i64 = 1_800_000_000_000 - 8 * 3_600_000;

fn t(hh: i64, mm: i64) -> Timestamp {
    Timestamp(DAY + hh * 3_600_000 + mm * 60_000)
}

struct Team;

impl People for Team {
    fn zones(&self) -> Vec<(String, Option<String>)> {
        vec![
            ("alice".into(), Some("Europe/Berlin".into())),
            ("bob".into(), None),
            ("carol".into(), Some("America/New_York".into())),
        ]
    }

    fn named(&self, who: &str) -> Option<String> {
        match who {
            "alice" | "alice@example.org" => Some("alice".into()),
            "bob" | "carol" => Some(who.into()),
            _ => None,
        }
    }
}

fn event(incident: i64, at: Timestamp, kind: EventKind) -> IncidentEvent {
    IncidentEvent {
        id: 0,
        incident_id: incident,
        at,
        kind: Some(kind),
        kind_name: kind.as_str().into(),
        actor: None,
        target: None,
        detail: String::new(),
    }
}

fn page(incident: i64, at: Timestamp, person: &str) -> IncidentEvent {
    IncidentEvent {
        target: Some(format!("person.{person}")),
        detail: "firing: attempt 1, 80 ms".into(),
        ..event(incident, at, EventKind::Delivered)
    }
}

fn ack(incident: i64, at: Timestamp, by: &str) -> IncidentEvent {
    IncidentEvent {
        actor: Some(by.into()),
        ..event(incident, at, EventKind::Acknowledged)
    }
}

fn whole_day() -> (Timestamp, Timestamp) {
    (t(0, 0), t(24, 0))
}

fn row<'a>(load: &'a Load, person: &str) -> &'a PersonLoad {
    load.people
        .iter()
        .find(|p| p.person == person)
        .unwrap_or_else(|| panic!("{person} in {load:?}"))
}

#[test]
fn pages_are_counted_per_person_and_outside_hours_in_their_own_zone() {
    let notice = IncidentEvent {
        detail: "resolved: attempt 1, 80 ms".into(),
        ..page(1, t(12, 0), "alice")
    };
    let to_a_topic = IncidentEvent {
        target: Some("ntfy.primary".into()),
        ..page(1, t(12, 0), "alice")
    };
    let pages = [
        page(1, t(6, 30), "alice"),  // 07:30 in Berlin: outside
        page(2, t(12, 0), "alice"),  // 13:00: inside
        page(3, t(19, 30), "alice"), // 20:30: outside
        page(3, t(19, 30), "bob"),   // 19:30 UTC: inside
        page(4, t(7, 59), "bob"),    // 07:59 UTC: outside
        page(5, t(23, 0), "carol"),  // 18:00 in New York: inside
        page(6, t(12, 0), "dave"),   // no longer in the policy file
        notice,
        to_a_topic,
    ];
    let load = load(&Team, whole_day(), &buckets(whole_day(), &pages), &[]);
    let got: Vec<(&str, &str, u32, u32)> = load
        .people
        .iter()
        .map(|p| {
            (
                p.person.as_str(),
                p.zone.as_str(),
                p.pages,
                p.pages_outside_hours,
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("alice", "Europe/Berlin", 3, 2),
            ("bob", "UTC", 2, 1),
            ("carol", "America/New_York", 1, 0),
            ("dave", "UTC", 1, 0),
        ]
    );
}

#[test]
fn the_edges_of_the_day_are_08_00_inside_and_20_00_outside() {
    assert!(!outside_hours(t(8, 0), None));
    assert!(outside_hours(t(7, 59), None));
    assert!(!outside_hours(t(19, 59), None));
    assert!(outside_hours(t(20, 0), None));
    assert!(
        outside_hours(t(12, 0), Some("Asia/Tokyo")),
        "21:00 in Tokyo"
    );
    assert!(!outside_hours(t(12, 0), Some("Not/AZone")), "unknown: UTC");
}

#[test]
fn time_to_acknowledge_runs_from_the_first_page_and_its_median_is_per_person() {
    let mut rows = Vec::new();
    for (incident, mins, by) in [
        (1, 1, "alice"),
        (2, 2, "alice@example.org"),
        (3, 10, "alice (console)"),
        (4, 1, "bob (console)"),
        (5, 3, "bob"),
    ] {
        rows.push(event(incident, t(3, 0), EventKind::Paged));
        rows.push(page(incident, t(3, 0), "alice"));
        // A later step pages someone else: the clock still runs from the first page.
        rows.push(event(
            incident,
            t(3, 0).plus(Duration::from_secs(30)),
            EventKind::Paged,
        ));
        rows.push(ack(incident, t(3, mins), by));
    }
    let load = load(&Team, whole_day(), &[], &rows);
    let alice = row(&load, "alice");
    assert_eq!(
        (alice.acks, alice.median_ack),
        (3, Some(Duration::from_secs(120)))
    );
    let bob = row(&load, "bob");
    assert_eq!(
        (bob.acks, bob.median_ack),
        (2, Some(Duration::from_secs(120))),
        "the mean of the middle two"
    );
    assert_eq!(
        (row(&load, "carol").acks, row(&load, "carol").median_ack),
        (0, None)
    );
    assert_eq!(load.unattributed, 0);
}

#[test]
fn a_link_counts_for_the_one_person_paged_and_for_nobody_when_several_were() {
    let rows = [
        event(1, t(3, 0), EventKind::Paged),
        page(1, t(3, 0), "bob"),
        ack(1, t(3, 4), LINK_ACTOR),
        event(2, t(3, 0), EventKind::Paged),
        page(2, t(3, 0), "bob"),
        page(2, t(3, 15), "carol"),
        ack(2, t(3, 20), LINK_ACTOR),
        event(3, t(3, 0), EventKind::Paged),
        ack(3, t(3, 6), "api"),
    ];
    let load = load(&Team, whole_day(), &[], &rows);
    let bob = row(&load, "bob");
    assert_eq!(
        (bob.acks, bob.median_ack),
        (1, Some(Duration::from_secs(240)))
    );
    assert_eq!(row(&load, "carol").acks, 0);
    assert_eq!(
        load.unattributed, 2,
        "the link when two were paged, and `api`"
    );
    assert_eq!(load.unattributed_median, Some(Duration::from_secs(13 * 60)));
}

#[test]
fn after_an_acknowledgement_runs_out_the_clock_starts_again_with_the_new_round() {
    let rows = [
        event(1, t(2, 0), EventKind::Paged),
        ack(1, t(2, 1), "alice"),
        event(1, t(3, 0), EventKind::AckTimedOut),
        event(1, t(3, 0), EventKind::Paged),
        page(1, t(3, 0), "bob"),
        ack(1, t(3, 5), "bob"),
    ];
    let load = load(&Team, whole_day(), &[], &rows);
    assert_eq!(
        row(&load, "alice").median_ack,
        Some(Duration::from_secs(60))
    );
    assert_eq!(row(&load, "bob").median_ack, Some(Duration::from_secs(300)));
}

#[test]
fn only_what_falls_in_the_period_counts() {
    let rows = [
        event(1, t(1, 0), EventKind::Paged),
        ack(1, t(1, 2), "alice"), // before the period, same incident
        event(2, t(9, 0), EventKind::Paged),
        ack(2, t(9, 2), "alice"),
    ];
    let pages = [page(1, t(1, 0), "alice"), page(2, t(9, 0), "alice")];
    let period = (t(8, 0), t(10, 0));
    let load = load(&Team, period, &buckets(period, &pages), &rows);
    let alice = row(&load, "alice");
    assert_eq!((alice.pages, alice.acks), (1, 1));
}

#[test]
fn an_acknowledgement_without_a_page_counts_with_no_time() {
    let rows = [ack(1, t(3, 0), "alice")];
    let load = load(&Team, whole_day(), &[], &rows);
    let alice = row(&load, "alice");
    assert_eq!((alice.acks, alice.median_ack), (1, None));
}

#[test]
fn the_median_of_nothing_is_none() {
    assert_eq!(median(&mut []), None);
    let mut odd = [3, 1, 2].map(Duration::from_secs);
    assert_eq!(median(&mut odd), Some(Duration::from_secs(2)));
}
