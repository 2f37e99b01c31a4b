//! Rotation arithmetic across daylight-saving changes in both directions and across year
//! ends, overrides, layers and gaps.

use super::*;

fn utc(text: &str) -> Timestamp {
    let t: jiff::Timestamp = text.parse().expect("RFC 3339");
    Timestamp(t.as_millisecond())
}

fn schedule(zone: &str, rotations: Vec<Rotation>) -> Schedule {
    Schedule {
        name: "primary".into(),
        time_zone: TimeZone::get(zone).expect("zone"),
        zone_name: zone.into(),
        rotations,
        handoff_notices: true,
    }
}

fn weekly(people: &[&str], first: &str) -> Rotation {
    Rotation {
        people: people.iter().map(|p| (*p).to_owned()).collect(),
        shift: ShiftLength::Days(7),
        first: first.parse().expect("civil datetime"),
    }
}

fn who(s: &Schedule, at: &str) -> Option<String> {
    s.on_call(utc(at), &[]).map(|shift| shift.person)
}

#[test]
fn the_rotation_example_across_the_switch_to_summer_time() {
    // Monday 09:00 Europe/Berlin; Europe switches to summer time on Sunday 2027-03-28.
    let s = schedule(
        "Europe/Berlin",
        vec![weekly(&["alice", "bob", "carol"], "2027-03-01T09:00")],
    );
    assert_eq!(
        who(&s, "2027-03-01T07:59:00Z"),
        None,
        "before the first shift: a gap"
    );
    assert_eq!(
        who(&s, "2027-03-01T08:00:00Z").as_deref(),
        Some("alice"),
        "09:00 CET"
    );
    assert_eq!(who(&s, "2027-03-08T07:59:00Z").as_deref(), Some("alice"));
    assert_eq!(who(&s, "2027-03-08T08:00:00Z").as_deref(), Some("bob"));
    assert_eq!(who(&s, "2027-03-22T08:00:00Z").as_deref(), Some("alice"));
    // 09:00 CEST is 07:00Z: the handoff keeps its local time.
    assert_eq!(who(&s, "2027-03-29T06:59:00Z").as_deref(), Some("alice"));
    assert_eq!(who(&s, "2027-03-29T07:00:00Z").as_deref(), Some("bob"));
    assert_eq!(who(&s, "2027-03-29T07:30:00Z").as_deref(), Some("bob"));
    let shift = s.on_call(utc("2027-03-25T12:00:00Z"), &[]).expect("alice");
    assert_eq!(
        shift.ends_at,
        utc("2027-03-29T07:00:00Z"),
        "a week one hour short"
    );
    assert_eq!(
        shift.ends_at.0 - shift.starts_at.0,
        (7 * 24 - 1) * 3_600_000
    );
}

#[test]
fn the_switch_back_to_winter_time_makes_a_week_an_hour_longer() {
    // Europe returns to winter time on Sunday 2027-10-31.
    let s = schedule(
        "Europe/Berlin",
        vec![weekly(&["alice", "bob"], "2027-10-25T09:00")],
    );
    let shift = s.on_call(utc("2027-10-28T12:00:00Z"), &[]).expect("alice");
    assert_eq!(shift.person, "alice");
    assert_eq!(shift.starts_at, utc("2027-10-25T07:00:00Z"), "09:00 CEST");
    assert_eq!(shift.ends_at, utc("2027-11-01T08:00:00Z"), "09:00 CET");
    assert_eq!(who(&s, "2027-11-01T07:59:00Z").as_deref(), Some("alice"));
    assert_eq!(who(&s, "2027-11-01T08:00:00Z").as_deref(), Some("bob"));
}

#[test]
fn new_york_handoffs_stay_at_local_time_both_ways() {
    let daily = Rotation {
        people: vec!["a".into(), "b".into()],
        shift: ShiftLength::Days(1),
        first: "2027-03-13T08:00".parse().expect("dt"),
    };
    let s = schedule("America/New_York", vec![daily]);
    // DST starts 2027-03-14 in the US: 08:00 EST is 13:00Z, 08:00 EDT is 12:00Z.
    assert_eq!(who(&s, "2027-03-14T11:59:00Z").as_deref(), Some("a"));
    assert_eq!(who(&s, "2027-03-14T12:00:00Z").as_deref(), Some("b"));
    // And back on 2027-11-07.
    assert!(who(&s, "2027-11-07T12:59:00Z").is_some());
    let before = s
        .on_call(utc("2027-11-06T20:00:00Z"), &[])
        .expect("someone");
    assert_eq!(before.ends_at, utc("2027-11-07T13:00:00Z"), "a 25-hour day");
    assert_eq!(before.ends_at.0 - before.starts_at.0, 25 * 3_600_000);
}

#[test]
fn a_handoff_inside_the_spring_gap_moves_to_the_later_valid_time() {
    // 02:30 does not exist in Berlin on 2027-03-28.
    let daily = Rotation {
        people: vec!["a".into(), "b".into()],
        shift: ShiftLength::Days(1),
        first: "2027-03-27T02:30".parse().expect("dt"),
    };
    let s = schedule("Europe/Berlin", vec![daily]);
    let shift = s.on_call(utc("2027-03-27T12:00:00Z"), &[]).expect("a");
    assert_eq!(shift.ends_at, utc("2027-03-28T01:30:00Z"), "03:30 CEST");
}

#[test]
fn rotations_carry_on_across_the_year_end() {
    let s = schedule(
        "Pacific/Auckland",
        vec![weekly(&["a", "b", "c"], "2026-12-21T09:00")],
    );
    // Week 0 a, week 1 (Dec 28) b, week 2 (Jan 4) c, week 3 (Jan 11) a.
    assert_eq!(who(&s, "2027-01-01T00:00:00Z").as_deref(), Some("b"));
    assert_eq!(
        who(&s, "2027-01-04T00:00:00Z").as_deref(),
        Some("c"),
        "Jan 4 13:00 NZDT"
    );
    assert_eq!(who(&s, "2027-01-11T00:00:00Z").as_deref(), Some("a"));
    let hourly = Rotation {
        people: vec!["x".into(), "y".into()],
        shift: ShiftLength::Hours(12),
        first: "2026-12-31T00:00".parse().expect("dt"),
    };
    let s = schedule("UTC", vec![hourly]);
    assert_eq!(who(&s, "2026-12-31T23:59:00Z").as_deref(), Some("y"));
    assert_eq!(who(&s, "2027-01-01T00:00:00Z").as_deref(), Some("x"));
    assert_eq!(
        who(&s, "2028-06-15T13:00:00Z").as_deref(),
        Some("y"),
        "far ahead"
    );
}

#[test]
fn an_override_wins_over_the_rotation_for_its_time_only() {
    let s = schedule(
        "Europe/Berlin",
        vec![weekly(&["alice", "bob", "carol"], "2027-03-01T09:00")],
    );
    let cover = Override {
        id: 1,
        schedule: "primary".into(),
        person: "carol".into(),
        replaces: Some("bob".into()),
        starts_at: utc("2027-03-09T00:00:00Z"),
        ends_at: utc("2027-03-10T00:00:00Z"),
        created_by: "bob".into(),
    };
    let on = |at: &str, overrides: &[Override]| s.on_call(utc(at), overrides).map(|x| x.person);
    let list = [cover.clone()];
    assert_eq!(on("2027-03-09T12:00:00Z", &list).as_deref(), Some("carol"));
    assert_eq!(
        on("2027-03-10T00:00:00Z", &list).as_deref(),
        Some("bob"),
        "it ended"
    );
    assert_eq!(
        on("2027-03-02T12:00:00Z", &list).as_deref(),
        Some("alice"),
        "only in bob's place"
    );
    let everyone = Override {
        id: 2,
        replaces: None,
        person: "dave".into(),
        starts_at: utc("2027-03-02T00:00:00Z"),
        ends_at: utc("2027-03-03T00:00:00Z"),
        ..cover
    };
    assert_eq!(
        on("2027-03-02T12:00:00Z", &[everyone]).as_deref(),
        Some("dave")
    );
}

#[test]
fn a_later_layer_wins_where_it_has_begun() {
    let s = schedule(
        "UTC",
        vec![
            weekly(&["old"], "2027-01-04T09:00"),
            weekly(&["new-a", "new-b"], "2027-02-01T09:00"),
        ],
    );
    assert_eq!(who(&s, "2027-01-20T00:00:00Z").as_deref(), Some("old"));
    assert_eq!(who(&s, "2027-02-02T00:00:00Z").as_deref(), Some("new-a"));
}

#[test]
fn shifts_list_what_a_calendar_shows() {
    let s = schedule(
        "Europe/Berlin",
        vec![weekly(&["alice", "bob", "carol"], "2027-03-01T09:00")],
    );
    let cover = Override {
        id: 7,
        schedule: "primary".into(),
        person: "carol".into(),
        replaces: None,
        starts_at: utc("2027-03-10T00:00:00Z"),
        ends_at: utc("2027-03-11T00:00:00Z"),
        created_by: "x".into(),
    };
    let shifts = s.shifts(
        utc("2027-02-20T00:00:00Z"),
        utc("2027-03-22T08:00:00Z"),
        &[cover],
        50,
    );
    let people: Vec<&str> = shifts.iter().map(|s| s.person.as_str()).collect();
    assert_eq!(people, vec!["alice", "bob", "carol", "bob", "carol"]);
    assert_eq!(shifts[0].starts_at, utc("2027-03-01T08:00:00Z"));
    assert_eq!(shifts[2].key, "primary-override-7");
    assert!(shifts.windows(2).all(|w| w[0].ends_at <= w[1].starts_at));
    assert_eq!(
        s.local(utc("2027-03-29T07:00:00Z")),
        "Mon 2027-03-29 09:00 Europe/Berlin"
    );
}

fn cover(id: i64, person: &str, replaces: Option<&str>, from: &str, to: &str) -> Override {
    Override {
        id,
        schedule: "primary".into(),
        person: person.into(),
        replaces: replaces.map(str::to_owned),
        starts_at: utc(from),
        ends_at: utc(to),
        created_by: "test".into(),
    }
}

#[test]
fn a_shift_around_an_override_says_when_it_really_starts_and_ends() {
    let s = schedule(
        "Europe/Berlin",
        vec![weekly(&["alice", "bob", "carol"], "2027-03-01T09:00")],
    );
    let list = [cover(
        1,
        "carol",
        None,
        "2027-03-10T00:00:00Z",
        "2027-03-11T00:00:00Z",
    )];
    let before = s.on_call(utc("2027-03-09T00:00:00Z"), &list).expect("bob");
    assert_eq!(before.person, "bob");
    assert_eq!(
        before.ends_at,
        utc("2027-03-10T00:00:00Z"),
        "until carol covers, not until his week ends"
    );
    let after = s.on_call(utc("2027-03-12T00:00:00Z"), &list).expect("bob");
    assert_eq!(after.person, "bob");
    assert_eq!(
        after.starts_at,
        utc("2027-03-11T00:00:00Z"),
        "back from the cover"
    );
    assert_eq!(after.ends_at, utc("2027-03-15T08:00:00Z"));
    // An override for someone else's shift does not cut bob's.
    let other = [cover(
        2,
        "dave",
        Some("alice"),
        "2027-03-10T00:00:00Z",
        "2027-03-11T00:00:00Z",
    )];
    let bob = s.on_call(utc("2027-03-09T00:00:00Z"), &other).expect("bob");
    assert_eq!(bob.ends_at, utc("2027-03-15T08:00:00Z"));
}

#[test]
fn a_handoff_is_due_once_the_person_changes_and_only_within_the_window() {
    let s = schedule(
        "Europe/Berlin",
        vec![weekly(&["alice", "bob", "carol"], "2027-03-01T09:00")],
    );
    let hour = 3_600_000;
    let due = |at: &str, overrides: &[Override]| {
        s.handoff(utc(at), hour, overrides)
            .map(|x| (x.person, x.starts_at))
    };
    assert_eq!(
        due("2027-03-08T08:00:00Z", &[]),
        Some(("bob".into(), utc("2027-03-08T08:00:00Z")))
    );
    assert_eq!(
        due("2027-03-08T08:59:00Z", &[]),
        Some(("bob".into(), utc("2027-03-08T08:00:00Z"))),
        "still within the hour (a relay that was restarted)"
    );
    assert_eq!(
        due("2027-03-08T09:01:00Z", &[]),
        None,
        "too late to be news"
    );
    assert_eq!(due("2027-03-07T12:00:00Z", &[]), None, "mid-shift");
    assert_eq!(
        due("2027-03-01T08:00:00Z", &[]),
        Some(("alice".into(), utc("2027-03-01T08:00:00Z"))),
        "the first shift after a gap"
    );
    // A cover and the return from it are handoffs too; a cover by the same person is not.
    let list = [cover(
        1,
        "carol",
        None,
        "2027-03-10T00:00:00Z",
        "2027-03-11T00:00:00Z",
    )];
    assert_eq!(
        due("2027-03-10T00:00:00Z", &list).map(|x| x.0).as_deref(),
        Some("carol")
    );
    assert_eq!(
        due("2027-03-11T00:00:00Z", &list).map(|x| x.0).as_deref(),
        Some("bob")
    );
    let same = [cover(
        2,
        "bob",
        None,
        "2027-03-10T00:00:00Z",
        "2027-03-11T00:00:00Z",
    )];
    assert_eq!(due("2027-03-10T00:00:00Z", &same), None);
    assert_eq!(
        s.next_handoff(utc("2027-03-09T00:00:00Z"), &list),
        Some(utc("2027-03-10T00:00:00Z"))
    );
    assert_eq!(
        s.next_handoff(utc("2027-02-01T00:00:00Z"), &[]),
        Some(utc("2027-03-01T08:00:00Z")),
        "before the first shift: its start"
    );
}

#[test]
fn a_report_names_who_is_on_call_and_who_comes_next() {
    let s = schedule(
        "Europe/Berlin",
        vec![weekly(&["alice", "bob", "carol"], "2027-03-01T09:00")],
    );
    let r = s.report(utc("2027-03-29T07:30:00Z"), &[], 2);
    assert_eq!(r.now.as_ref().map(|x| x.person.as_str()), Some("bob"));
    assert_eq!(
        r.now.as_ref().map(|x| x.ends_at),
        Some(utc("2027-04-05T07:00:00Z"))
    );
    let next: Vec<&str> = r.next.iter().map(|x| x.person.as_str()).collect();
    assert_eq!(next, vec!["carol", "alice"]);
    let gap = s.report(utc("2027-02-01T00:00:00Z"), &[], 1);
    assert_eq!(gap.now, None);
    assert_eq!(gap.next[0].person, "alice");
}

#[test]
fn back_to_back_shifts_of_one_person_read_as_one() {
    let alone = schedule(
        "UTC",
        vec![Rotation {
            people: vec!["carol".into()],
            shift: ShiftLength::Minutes(1),
            first: "2027-01-01T00:00".parse().expect("civil"),
        }],
    );
    let r = alone.report(utc("2027-01-01T00:00:30Z"), &[], 1);
    let now = r.now.expect("carol");
    assert_eq!(now.person, "carol");
    assert_eq!(now.starts_at, utc("2027-01-01T00:00:00Z"));
    assert_eq!(
        now.ends_at.0 - now.starts_at.0,
        MAX_WALK as i64 * 60_000,
        "a walk of bounded length, not one minute"
    );
    // An override across the rotation's handoff is one shift of the person covering.
    let s = schedule(
        "UTC",
        vec![Rotation {
            people: vec!["alice".into(), "bob".into()],
            shift: ShiftLength::Days(1),
            first: "2027-01-01T00:00".parse().expect("civil"),
        }],
    );
    let list = [cover(
        3,
        "dave",
        None,
        "2027-01-01T12:00:00Z",
        "2027-01-02T12:00:00Z",
    )];
    let r = s.report(utc("2027-01-01T13:00:00Z"), &list, 2);
    let now = r.now.expect("dave");
    assert_eq!(
        (now.person.as_str(), now.starts_at, now.ends_at),
        (
            "dave",
            utc("2027-01-01T12:00:00Z"),
            utc("2027-01-02T12:00:00Z")
        )
    );
    let next: Vec<(&str, Timestamp)> = r
        .next
        .iter()
        .map(|x| (x.person.as_str(), x.starts_at))
        .collect();
    assert_eq!(
        next,
        vec![
            ("bob", utc("2027-01-02T12:00:00Z")),
            ("alice", utc("2027-01-03T00:00:00Z"))
        ]
    );
}

#[test]
fn an_override_beside_the_persons_own_shifts_stays_an_override() {
    // alice covers bob's week between two weeks of her own: three shifts, the middle one
    // the override, not one long shift of alice's that hides who was covered.
    let s = schedule(
        "UTC",
        vec![weekly(
            &["alice", "bob", "alice", "carol"],
            "2027-03-01T09:00",
        )],
    );
    let list = [cover(
        4,
        "alice",
        Some("bob"),
        "2027-03-08T09:00:00Z",
        "2027-03-15T09:00:00Z",
    )];
    let shifts = s.shifts(
        utc("2027-03-01T09:00:00Z"),
        utc("2027-03-22T09:00:00Z"),
        &list,
        10,
    );
    let seen: Vec<(&str, Option<i64>, Timestamp)> = shifts
        .iter()
        .map(|x| (x.person.as_str(), x.override_id, x.starts_at))
        .collect();
    assert_eq!(
        seen,
        vec![
            ("alice", None, utc("2027-03-01T09:00:00Z")),
            ("alice", Some(4), utc("2027-03-08T09:00:00Z")),
            ("alice", None, utc("2027-03-15T09:00:00Z")),
        ]
    );
    // Still no handoff between them: the person does not change.
    assert!(s
        .handoff(utc("2027-03-08T09:00:00Z"), 60_000, &list)
        .is_none());
}

#[test]
fn back_from_a_newer_override_inside_an_older_one_is_a_handoff() {
    // Alice's week; bob covers two days, carol half a day inside them (a newer override).
    let s = schedule(
        "Europe/Berlin",
        vec![weekly(&["alice", "bob", "carol"], "2027-03-01T09:00")],
    );
    let list = [
        cover(
            1,
            "bob",
            None,
            "2027-03-03T00:00:00Z",
            "2027-03-05T00:00:00Z",
        ),
        cover(
            2,
            "carol",
            None,
            "2027-03-03T12:00:00Z",
            "2027-03-04T00:00:00Z",
        ),
    ];
    let bob = s.on_call(utc("2027-03-04T00:30:00Z"), &list).expect("bob");
    assert_eq!(bob.person, "bob");
    assert_eq!(
        bob.starts_at,
        utc("2027-03-04T00:00:00Z"),
        "back from carol's cover, not since his own began"
    );
    let due = s
        .handoff(utc("2027-03-04T00:30:00Z"), 3_600_000, &list)
        .map(|x| (x.person, x.starts_at));
    assert_eq!(due, Some(("bob".into(), utc("2027-03-04T00:00:00Z"))));
    // Before carol's cover, bob's shift began with his own override.
    let first = s.on_call(utc("2027-03-03T06:00:00Z"), &list).expect("bob");
    assert_eq!(first.starts_at, utc("2027-03-03T00:00:00Z"));
    // What a calendar lists: no overlap, and bob's two stretches start apart (their UIDs).
    let listed: Vec<(String, Timestamp, Timestamp)> = s
        .shifts(
            utc("2027-03-02T00:00:00Z"),
            utc("2027-03-06T00:00:00Z"),
            &list,
            10,
        )
        .into_iter()
        .map(|x| (x.person, x.starts_at, x.ends_at))
        .collect();
    let at = |p: &str, from: &str, to: &str| (p.to_owned(), utc(from), utc(to));
    assert_eq!(
        listed,
        vec![
            at("alice", "2027-03-01T08:00:00Z", "2027-03-03T00:00:00Z"),
            at("bob", "2027-03-03T00:00:00Z", "2027-03-03T12:00:00Z"),
            at("carol", "2027-03-03T12:00:00Z", "2027-03-04T00:00:00Z"),
            at("bob", "2027-03-04T00:00:00Z", "2027-03-05T00:00:00Z"),
            at("alice", "2027-03-05T00:00:00Z", "2027-03-08T08:00:00Z"),
        ]
    );
}

#[test]
fn instants_at_the_ends_of_time_answer_without_panicking_or_spinning() {
    let s = schedule(
        "Europe/Berlin",
        vec![weekly(&["alice", "bob", "carol"], "2027-03-01T09:00")],
    );
    for at in [
        "9999-12-30T00:00:00Z",
        "9999-01-01T00:00:00Z",
        "0001-01-01T00:00:00Z",
        "1969-12-31T23:59:59Z",
    ] {
        let t = utc(at);
        let r = s.report(t, &[], 50);
        // Far ahead someone is on call (or the arithmetic ends at the calendar's edge);
        // before the first shift nobody is.
        if t < utc("2027-03-01T08:00:00Z") {
            assert_eq!(r.now, None, "{at}");
        }
        let _ = s.handoff(t, HANDOFF_WINDOW_MS, &[]);
        let _ = s.next_handoff(t, &[]);
        let _ = s.local(t);
    }
    let minutes = schedule(
        "UTC",
        vec![Rotation {
            people: vec!["a".into(), "b".into()],
            shift: ShiftLength::Minutes(1),
            first: "2027-01-01T00:00".parse().expect("civil"),
        }],
    );
    let r = minutes.report(utc("9999-12-30T00:00:00Z"), &[], 50);
    assert!(r.next.len() <= 50);
}
