//! Who is on call: rotations in an IANA time zone (shifts of hours, days or weeks, handing off
//! at a local time of day, correct across daylight-saving changes: a weekly 09:00 handoff
//! stays 09:00 local when the offset moves), layered in a schedule, with overrides on top.
//! Pure: the time is an argument, the zone rules come from jiff.

use jiff::civil::{Date, Time};
use jiff::tz::TimeZone;
use jiff::{Span, ZonedDateTime};

use crate::domain::Timestamp;

/// How long one shift lasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShiftLength {
    /// Clock minutes (short shifts in tests and drills).
    Minutes(u32),
    /// Clock hours (a DST change makes a night shift one hour longer or shorter in local time).
    Hours(u32),
    /// Calendar days (a 23- or 25-hour day when the offset moves): the handoff keeps its local
    /// time.
    Days(u32),
}

/// One rotation: people take turns, one shift each, from the first handoff on.
#[derive(Debug, Clone, PartialEq)]
pub struct Rotation {
    pub people: Vec<String>,
    pub shift: ShiftLength,
    /// The first shift starts here (local date and time in the schedule's zone).
    pub first: jiff::civil::DateTime,
}

/// A schedule: rotations as layers (a later one, where it has begun, wins over an earlier).
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    pub name: String,
    pub time_zone: TimeZone,
    pub zone_name: String,
    pub rotations: Vec<Rotation>,
    /// Push a notice to the incoming person at each handoff.
    pub handoff_notices: bool,
}

/// "Alice covers from T1 to T2" (for everyone, or only in place of `replaces`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Override {
    pub id: i64,
    pub schedule: String,
    pub person: String,
    pub replaces: Option<String>,
    pub starts_at: Timestamp,
    pub ends_at: Timestamp,
    pub created_by: String,
}

/// Who is on call in one schedule now, and who comes next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnCall {
    pub schedule: String,
    pub zone: String,
    /// `None`: nobody (a gap).
    pub now: Option<Shift>,
    pub next: Vec<Shift>,
}

/// One shift: who, from when until when, and a key that names it for ever (calendar UIDs,
/// handoff notices).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shift {
    pub person: String,
    pub starts_at: Timestamp,
    pub ends_at: Timestamp,
    pub key: String,
    /// The override that put this person here, if any.
    pub override_id: Option<i64>,
}

fn to_zoned(t: Timestamp, tz: &TimeZone) -> Option<ZonedDateTime> {
    Some(
        jiff::Timestamp::from_millisecond(t.0)
            .ok()?
            .to_zoned_datetime(tz.clone()),
    )
}

fn millis(z: &ZonedDateTime) -> Timestamp {
    Timestamp(z.timestamp().as_millisecond())
}

impl Rotation {
    /// The start of shift `k` (0 = the first).
    fn shift_start(&self, tz: &TimeZone, k: i64) -> Option<ZonedDateTime> {
        let first = self.first.to_zoned_datetime(tz.clone()).ok()?;
        match self.shift {
            ShiftLength::Minutes(m) => first
                .checked_add(Span::new().try_minutes(k * i64::from(m)).ok()?)
                .ok(),
            ShiftLength::Hours(h) => first
                .checked_add(Span::new().try_hours(k * i64::from(h)).ok()?)
                .ok(),
            // Calendar arithmetic on the civil date, then the zone: the handoff keeps its local
            // time across DST (a gap moves it to the later valid time, as RFC 5545 does).
            ShiftLength::Days(d) => {
                let date = self
                    .first
                    .date()
                    .checked_add(Span::new().try_days(k * i64::from(d)).ok()?)
                    .ok()?;
                date.to_datetime(self.first.time())
                    .to_zoned_datetime(tz.clone())
                    .ok()
            }
        }
    }

    fn nominal_ms(&self) -> i64 {
        match self.shift {
            ShiftLength::Minutes(m) => i64::from(m) * 60_000,
            ShiftLength::Hours(h) => i64::from(h) * 3_600_000,
            ShiftLength::Days(d) => i64::from(d) * 86_400_000,
        }
    }

    /// The shift under way at `t`, if the rotation has begun.
    pub fn shift_at(
        &self,
        tz: &TimeZone,
        t: Timestamp,
        layer: usize,
        schedule: &str,
    ) -> Option<Shift> {
        if self.people.is_empty() {
            return None;
        }
        let first = millis(&self.shift_start(tz, 0)?);
        if t < first {
            return None;
        }
        // An estimate from the nominal length, corrected for the hours DST adds or takes.
        let mut k = (t.0 - first.0) / self.nominal_ms().max(1);
        loop {
            let start = millis(&self.shift_start(tz, k)?);
            let end = millis(&self.shift_start(tz, k + 1)?);
            if t < start {
                k -= 1;
            } else if t >= end {
                k += 1;
            } else {
                let n = self.people.len() as i64;
                return Some(Shift {
                    person: self.people[usize::try_from(k.rem_euclid(n)).ok()?].clone(),
                    starts_at: start,
                    ends_at: end,
                    key: format!("{schedule}-{layer}-{k}"),
                    override_id: None,
                });
            }
        }
    }
}

impl Schedule {
    /// Who the rotations put on call at `t` (the last layer that has begun wins).
    pub fn rotation_shift(&self, t: Timestamp) -> Option<Shift> {
        self.rotations
            .iter()
            .enumerate()
            .rev()
            .find_map(|(layer, r)| r.shift_at(&self.time_zone, t, layer, &self.name))
    }

    /// Who is on call at `t`, overrides included; `None`: a gap (nobody).
    pub fn on_call(&self, t: Timestamp, overrides: &[Override]) -> Option<Shift> {
        let base = self.rotation_shift(t);
        let covering = overrides
            .iter()
            .filter(|o| o.schedule == self.name && o.starts_at <= t && t < o.ends_at)
            .filter(|o| match &o.replaces {
                None => true,
                Some(who) => base.as_ref().is_some_and(|s| &s.person == who),
            })
            // The most recent override wins.
            .max_by_key(|o| o.id);
        match (covering, base) {
            (Some(o), base) => Some(Shift {
                person: o.person.clone(),
                starts_at: o
                    .starts_at
                    .max(base.as_ref().map_or(o.starts_at, |b| b.starts_at))
                    // Back from a more recent override that covered part of this one.
                    .max(self.latest_end_of_newer(o, t, overrides)),
                ends_at: o
                    .ends_at
                    .min(base.as_ref().map_or(o.ends_at, |b| b.ends_at)),
                key: format!("{}-override-{}", self.name, o.id),
                override_id: Some(o.id),
            }),
            (None, base) => base.map(|b| self.clipped(b, t, overrides)),
        }
    }

    /// The latest end, at or before `t`, of an override more recent than `o` that won over
    /// it for a while (it ended inside `o`'s window); `o.starts_at` if there is none.
    fn latest_end_of_newer(&self, o: &Override, t: Timestamp, overrides: &[Override]) -> Timestamp {
        overrides
            .iter()
            .filter(|p| p.schedule == self.name && p.id > o.id)
            .filter(|p| p.ends_at > o.starts_at && p.ends_at <= t && p.starts_at < p.ends_at)
            .filter(|p| {
                let covered = Timestamp(p.ends_at.0 - 1);
                p.replaces.as_ref().is_none_or(|who| {
                    self.rotation_shift(covered)
                        .is_some_and(|s| &s.person == who)
                })
            })
            .map(|p| p.ends_at)
            .max()
            .unwrap_or(o.starts_at)
    }

    /// A rotation shift as it really runs around `t`: from the end of an override that covered
    /// its beginning, until an override or a later layer takes over.
    fn clipped(&self, mut shift: Shift, t: Timestamp, overrides: &[Override]) -> Shift {
        let applies = |o: &&Override| {
            o.schedule == self.name && o.replaces.as_ref().is_none_or(|who| *who == shift.person)
        };
        if let Some(end) = overrides
            .iter()
            .filter(applies)
            .map(|o| o.ends_at)
            .filter(|e| *e > shift.starts_at && *e <= t)
            .max()
        {
            shift.starts_at = end;
        }
        let next_override = overrides
            .iter()
            .filter(applies)
            .map(|o| o.starts_at)
            .filter(|s| *s > t && *s < shift.ends_at);
        let next_layer = self
            .rotations
            .iter()
            .filter_map(|r| r.shift_start(&self.time_zone, 0).map(|z| millis(&z)))
            .filter(|s| *s > t && *s < shift.ends_at);
        if let Some(cut) = next_override.chain(next_layer).min() {
            shift.ends_at = cut;
        }
        shift
    }

    /// Who is on call at `at` (until the person changes) and the next `upcoming` shifts
    /// (within a year).
    pub fn report(&self, at: Timestamp, overrides: &[Override], upcoming: usize) -> OnCall {
        let year = Timestamp(at.0 + 366 * 86_400_000);
        let mut shifts = self.shifts(at, year, overrides, upcoming + 1);
        let now = match shifts.first() {
            Some(first) if first.starts_at <= at && at < first.ends_at => Some(shifts.remove(0)),
            _ => None,
        };
        shifts.truncate(upcoming);
        OnCall {
            schedule: self.name.clone(),
            zone: self.zone_name.clone(),
            now,
            next: shifts,
        }
    }

    /// The shift that begins a handoff at or before `now` and not before `now - window`, if
    /// the person changes there (a notice is due unless it was sent).
    pub fn handoff(&self, now: Timestamp, window_ms: i64, overrides: &[Override]) -> Option<Shift> {
        let shift = self.on_call(now, overrides)?;
        if shift.starts_at.0 < now.0 - window_ms {
            return None;
        }
        let before = self.on_call(Timestamp(shift.starts_at.0 - 1), overrides);
        (before.map(|b| b.person) != Some(shift.person.clone())).then_some(shift)
    }

    /// When the person on call may next change after `now`.
    pub fn next_handoff(&self, now: Timestamp, overrides: &[Override]) -> Option<Timestamp> {
        match self.on_call(now, overrides) {
            Some(shift) => Some(shift.ends_at),
            None => self.next_change(now),
        }
    }

    /// The shifts (overrides included) that overlap `[from, to)`, in order, at most `limit`;
    /// back-to-back shifts of one person from one source are one (a person alone in a
    /// rotation, an override across a rotation's handoff). An override stays a shift of its
    /// own beside the person's rotation shifts, so that whoever reads the list sees it was
    /// covered, and by whom. At most [`MAX_WALK`] rotation shifts are walked.
    pub fn shifts(
        &self,
        from: Timestamp,
        to: Timestamp,
        overrides: &[Override],
        limit: usize,
    ) -> Vec<Shift> {
        let mut out: Vec<Shift> = Vec::new();
        let mut t = from;
        let mut walked = 0;
        while t < to && out.len() <= limit && walked < MAX_WALK {
            walked += 1;
            match self.on_call(t, overrides) {
                Some(shift) => {
                    // Boundaries where an override begins inside a shift.
                    let end = overrides
                        .iter()
                        .filter(|o| {
                            o.schedule == self.name
                                && o.starts_at > t
                                && o.starts_at < shift.ends_at
                        })
                        .map(|o| o.starts_at)
                        .min()
                        .unwrap_or(shift.ends_at)
                        .max(Timestamp(t.0 + 1));
                    match out.last_mut() {
                        Some(last)
                            if last.person == shift.person
                                && last.override_id == shift.override_id
                                && last.ends_at == t =>
                        {
                            last.ends_at = end;
                        }
                        _ => out.push(Shift {
                            ends_at: end,
                            ..shift
                        }),
                    }
                    t = end;
                }
                None => {
                    // A gap: look for the next moment someone is on call.
                    let next = self.next_change(t).unwrap_or(to);
                    t = next.max(Timestamp(t.0 + 1));
                }
            }
        }
        out.truncate(limit);
        out
    }

    /// The next instant after `t` at which a rotation begins (for gaps before a start).
    fn next_change(&self, t: Timestamp) -> Option<Timestamp> {
        self.rotations
            .iter()
            .filter_map(|r| r.shift_start(&self.time_zone, 0).map(|z| millis(&z)))
            .filter(|s| *s > t)
            .min()
    }

    /// A time in this schedule's zone, as people read it: `Mon 09:00 Europe/Berlin`.
    pub fn local(&self, t: Timestamp) -> String {
        to_zoned(t, &self.time_zone).map_or_else(
            || t.to_rfc3339(),
            |z| format!("{} {}", z.strftime("%a %Y-%m-%d %H:%M"), self.zone_name),
        )
    }
}

/// How many rotation shifts a listing walks at most (a year of hourly shifts).
pub const MAX_WALK: usize = 10_000;

/// How long after a handoff its notice is still news (a relay restarted within the hour
/// still tells the incoming person; a shift that began long ago is not announced).
pub const HANDOFF_WINDOW_MS: i64 = 3_600_000;

/// The notice that tells the incoming person they are on call, and until when (in the
/// schedule's zone): no incident, its own sequence id, a note as its text.
pub fn handoff_notice(
    schedule: &Schedule,
    shift: &Shift,
    next: Option<&Shift>,
    now: Timestamp,
) -> crate::domain::Notification {
    use crate::domain::{
        AlertGroup, AlertStatus, GroupKey, Notification, NotificationKind, PolicyName,
    };
    let mut note = format!(
        "You are on call for {} until {}",
        schedule.name,
        schedule.local(shift.ends_at)
    );
    match next {
        Some(next) if next.starts_at == shift.ends_at => {
            note.push_str(&format!(", then {}", next.person));
        }
        _ => {}
    }
    note.push('.');
    if shift.override_id.is_some() {
        note.push_str(" (An override: you cover this time.)");
    }
    let labels: crate::domain::Labels = [("schedule".to_owned(), schedule.name.clone())]
        .into_iter()
        .collect();
    Notification {
        incident_id: 0,
        policy: PolicyName(format!("schedule.{}", schedule.name)),
        target: person_target(&shift.person),
        kind: NotificationKind::Handoff,
        step: 0,
        group: AlertGroup {
            group_key: GroupKey(format!("schedule.{}", schedule.name)),
            status: AlertStatus::Firing,
            receiver: String::new(),
            group_labels: labels.clone(),
            common_labels: labels,
            common_annotations: Default::default(),
            external_url: None,
            truncated_alerts: 0,
            alerts: Vec::new(),
        },
        sequence_id: format!(
            "relay-handoff-{}-{}",
            schedule.name,
            shift.starts_at.0.div_euclid(1000)
        ),
        incident_started_at: shift.starts_at,
        ack_url: None,
        silence_url: None,
        created_at: now,
        acknowledged_by: None,
        silence_note: None,
        note: Some(note),
        person: Some(shift.person.clone()),
        mentions: Vec::new(),
        runbook_link: None,
        console_url: None,
        incident_url: None,
    }
}

/// The key under which a handoff's notice is recorded as sent (once per person and start).
pub fn handoff_key(schedule: &Schedule, shift: &Shift) -> String {
    format!("{}:{}:{}", schedule.name, shift.person, shift.starts_at.0)
}

/// The target that reaches `person` (their ntfy topic): `person.<name>`.
pub fn person_target(person: &str) -> crate::domain::TargetName {
    crate::domain::TargetName(format!("person.{person}"))
}

/// Parses `09:00` into a time of day.
pub fn parse_time(text: &str) -> Result<Time, String> {
    text.parse::<Time>()
        .map_err(|e| format!("`{text}` is not a time of day ({e}); write it like 09:00"))
}

/// Parses `2027-03-01` into a date.
pub fn parse_date(text: &str) -> Result<Date, String> {
    text.parse::<Date>()
        .map_err(|e| format!("`{text}` is not a date ({e}); write it like 2027-03-01"))
}

#[cfg(test)]
mod tests;
