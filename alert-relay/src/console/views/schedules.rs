//! The Schedules pages' view models: every schedule with who is on call, and one schedule's
//! next two weeks (overrides marked, with whom they replace), with what the viewer may do.

use askama::Template;

use super::{local, Chrome};
use crate::app::ScheduleAhead;
use crate::domain::Timestamp;
use crate::engine::oncall::Shift;

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
    /// Whom the override replaces (the rotation's person then).
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
                    schedule
                        .rotation_shift(shift.starts_at.max(now))
                        .map(|s| s.person)
                        .filter(|p| *p != shift.person)
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
