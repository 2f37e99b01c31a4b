//! The Schedules pages' view models: every schedule with who is on call, and one schedule's
//! next two weeks (overrides marked, with whom they replace), with what the viewer may do.

use askama::Template;

use super::{local, Chrome};
use crate::app::ScheduleAhead;
use crate::domain::Timestamp;
use crate::engine::oncall::{Schedule, Shift};

#[derive(Template)]
#[template(path = "console/schedules.html")]
pub struct SchedulesPage {
    pub chrome: Chrome,
    /// The viewer's zone, which every time is in.
    pub zone: String,
    pub schedules: Vec<ScheduleSummary>,
}

/// One schedule in the list.
pub struct ScheduleSummary {
    pub name: String,
    pub zone: String,
    /// Who is on call now, and until when; `None`: nobody (a gap).
    pub now: Option<(String, String)>,
    /// Who comes next, and from when.
    pub next: Option<(String, String)>,
    /// The viewer is on call in it now.
    pub yours: bool,
}

#[derive(Template)]
#[template(path = "console/schedule.html")]
pub struct SchedulePage {
    pub chrome: Chrome,
    pub name: String,
    /// The viewer's zone, which every time is in.
    pub zone: String,
    /// The schedule's own zone, its times shown beside when it differs.
    pub schedule_zone: String,
    pub same_zone: bool,
    pub days: i64,
    /// The shift under way (also first in `shifts`); `None`: nobody is on call now.
    pub now: Option<ShiftView>,
    pub shifts: Vec<ShiftView>,
    /// More shifts than shown fall in the window.
    pub truncated: bool,
    /// What went wrong with the viewer's last action.
    pub error: Option<String>,
    /// What the viewer's last action did.
    pub notice: Option<&'static str>,
    /// The overrides in this schedule that the viewer made (theirs to remove).
    pub yours: Vec<OverrideView>,
    pub schedule_feed: String,
    pub my_feed: String,
}

/// One shift as the page shows it.
#[derive(Clone)]
pub struct ShiftView {
    pub person: String,
    /// In the viewer's zone.
    pub starts: String,
    pub ends: String,
    /// In the schedule's zone.
    pub starts_there: String,
    pub ends_there: String,
    pub current: bool,
    /// The viewer's own shift.
    pub yours: bool,
    /// The override that puts this person here, if any.
    pub override_id: Option<i64>,
    /// Whom the override replaces (the rotation's people then).
    pub replaces: Option<String>,
    pub created_by: Option<String>,
    /// The shift as the cover form sends it back (milliseconds since the epoch).
    pub start_ms: i64,
    pub end_ms: i64,
    pub can_cover: bool,
}

/// One of the viewer's overrides.
pub struct OverrideView {
    pub id: i64,
    pub person: String,
    pub replaces: Option<String>,
    pub starts: String,
    pub ends: String,
    /// In force now.
    pub current: bool,
}

/// The shifts of `ahead` as `viewer` (reading times in `zone`) sees them at `now`.
pub fn shift_views(
    ahead: &ScheduleAhead,
    viewer: &str,
    zone: &str,
    now: Timestamp,
) -> Vec<ShiftView> {
    let schedule = &ahead.schedule;
    ahead
        .shifts
        .iter()
        .map(|shift: &Shift| {
            let by_override = shift
                .override_id
                .and_then(|id| ahead.overrides.iter().find(|o| o.id == id));
            let replaces = by_override.and_then(|o| {
                o.replaces.clone().or_else(|| {
                    let from = shift.starts_at.max(now);
                    let people = rotation_people(schedule, from, shift.ends_at, &shift.person);
                    (!people.is_empty()).then(|| people.join(", "))
                })
            });
            ShiftView {
                person: shift.person.clone(),
                starts: local(shift.starts_at, zone),
                ends: local(shift.ends_at, zone),
                starts_there: local(shift.starts_at, &schedule.zone_name),
                ends_there: local(shift.ends_at, &schedule.zone_name),
                current: shift.starts_at <= now && now < shift.ends_at,
                yours: shift.person == viewer,
                override_id: shift.override_id,
                replaces,
                created_by: by_override.map(|o| o.created_by.clone()),
                start_ms: shift.starts_at.0,
                end_ms: shift.ends_at.0,
                can_cover: shift.person != viewer && shift.ends_at > now,
            }
        })
        .collect()
}

/// Whom the rotations put on call in `[from, to)`, in order, but `except` (an override
/// that replaces whoever is on call may span a handoff); a few at most.
fn rotation_people(
    schedule: &Schedule,
    from: Timestamp,
    to: Timestamp,
    except: &str,
) -> Vec<String> {
    let mut people: Vec<String> = Vec::new();
    let mut t = from;
    for _ in 0..MAX_REPLACED {
        let Some(shift) = schedule.rotation_shift(t) else {
            break;
        };
        if shift.person != except && !people.contains(&shift.person) {
            people.push(shift.person);
        }
        if shift.ends_at >= to || shift.ends_at <= t {
            break;
        }
        t = shift.ends_at;
    }
    people
}

/// How many rotation shifts [`rotation_people`] walks at most.
const MAX_REPLACED: usize = 8;

/// The overrides of `ahead`'s schedule that `viewer` made.
pub fn yours(ahead: &ScheduleAhead, viewer: &str, zone: &str, now: Timestamp) -> Vec<OverrideView> {
    ahead
        .overrides
        .iter()
        .filter(|o| o.schedule == ahead.schedule.name && o.created_by == viewer)
        .map(|o| OverrideView {
            id: o.id,
            person: o.person.clone(),
            replaces: o.replaces.clone(),
            starts: local(o.starts_at, zone),
            ends: local(o.ends_at, zone),
            current: o.starts_at <= now && now < o.ends_at,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::oncall::{Rotation, ShiftLength};

    #[test]
    fn an_override_for_whoever_is_on_call_replaces_everyone_it_spans() {
        let schedule = Schedule {
            name: "primary".into(),
            time_zone: jiff::tz::TimeZone::UTC,
            zone_name: "UTC".into(),
            rotations: vec![Rotation {
                people: vec!["alice".into(), "bob".into(), "carol".into()],
                shift: ShiftLength::Days(1),
                first: jiff::civil::date(2020, 1, 1).at(0, 0, 0, 0),
            }],
            handoff_notices: false,
        };
        let day = 86_400_000;
        let noon = Timestamp(1_577_836_800_000 + day / 2); // 2020-01-01T12:00Z: alice's
        let later = Timestamp(noon.0 + 2 * day);
        assert_eq!(
            rotation_people(&schedule, noon, later, "dave"),
            ["alice", "bob", "carol"]
        );
        assert_eq!(
            rotation_people(&schedule, noon, later, "bob"),
            ["alice", "carol"]
        );
        assert_eq!(
            rotation_people(&schedule, noon, Timestamp(noon.0 + 1), "dave"),
            ["alice"]
        );
    }
}
