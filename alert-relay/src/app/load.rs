//! Who carried the pager, worked out from timeline rows (pure: no clock, no I/O): per person
//! over a period, the pages they received, those outside 08:00–20:00 in their own time zone,
//! and their median time to acknowledge.
//!
//! - A **page** is a `delivered` event of a page (`firing`, not a notice) to `person.<name>`,
//!   counted by quarter hour ([`buckets`]; the store counts them the same way).
//! - **Time to acknowledge** runs from the first page of the escalation round (the incident's
//!   first `paged` or page `delivered` event, or the first after its acknowledgement ran out)
//!   to the `acknowledged` event.
//! - **Who acknowledged**: the actor `<name>` (the API's `X-Acknowledged-By`, the CLI's `--by`;
//!   a name or e-mail address of someone in `people:`) or `<name> (console)`. An
//!   acknowledgement through a push's link (`ack link`) names nobody: it counts for the one
//!   person who had been paged for that incident before it, and when several had been, for
//!   nobody (shown apart as not known).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::domain::Timestamp;
use crate::engine::events::is_page_delivery;
use crate::engine::{EventKind, IncidentEvent};
use crate::store::{PageBucket, BUCKET_MS};

/// The actor of an acknowledgement through a push's link.
pub const LINK_ACTOR: &str = "ack link";
/// What follows the person's name in the actor of an acknowledgement in the console.
pub const CONSOLE_SUFFIX: &str = " (console)";
/// Pages count as outside working hours before this hour and from [`DAY_ENDS`] on.
pub const DAY_STARTS: i8 = 8;
pub const DAY_ENDS: i8 = 20;

/// One person's share of the pager over the period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonLoad {
    pub person: String,
    /// The zone "outside hours" is reckoned in (theirs, else UTC).
    pub zone: String,
    pub pages: u32,
    pub pages_outside_hours: u32,
    /// Acknowledgements counted for them.
    pub acks: u32,
    /// Over their acknowledgements whose first page is known.
    pub median_ack: Option<Duration>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Load {
    /// Everyone in `people:`, and anyone else paged in the period, by name.
    pub people: Vec<PersonLoad>,
    /// Acknowledgements that cannot be put to a person (a link when several were paged, an
    /// API call naming nobody known).
    pub unattributed: u32,
    pub unattributed_median: Option<Duration>,
}

/// The people of the policy file as the numbers need them: each one's zone, and who an
/// actor's name or e-mail address is.
pub trait People {
    /// Everyone, with their time zone (`None`: UTC).
    fn zones(&self) -> Vec<(String, Option<String>)>;
    /// The person `who` names, if any.
    fn named(&self, who: &str) -> Option<String>;
}

/// The numbers over `from` ≤ t < `until`, from the page deliveries in the period counted
/// by target and quarter hour (as [`buckets`] counts them) and the escalation rows
/// (`store::history::ESCALATION_KINDS`) of the incidents acknowledged in it, by incident in
/// order.
pub fn load(
    people: &dyn People,
    (from, until): (Timestamp, Timestamp),
    pages: &[PageBucket],
    timelines: &[IncidentEvent],
) -> Load {
    let mut rows: BTreeMap<String, (Option<String>, Tally)> = people
        .zones()
        .into_iter()
        .map(|(name, zone)| (name, (zone, Tally::default())))
        .collect();
    let prefix = crate::engine::oncall::person_target("");
    let mut zones: BTreeMap<Option<String>, jiff::tz::TimeZone> = BTreeMap::new();
    for bucket in pages {
        let Some(person) = bucket.target.strip_prefix(prefix.as_str()) else {
            continue;
        };
        let (zone, tally) = rows.entry(person.to_owned()).or_default();
        let tz = zones
            .entry(zone.clone())
            .or_insert_with(|| time_zone(zone.as_deref()));
        tally.pages += bucket.pages;
        if outside_hours_in(bucket.start, tz) {
            tally.outside += bucket.pages;
        }
    }
    let mut unattributed = Tally::default();
    for ack in acknowledgements(timelines) {
        if !(from <= ack.at && ack.at < until) {
            continue;
        }
        let tally = match attribute(people, ack.actor, &ack.paged_before) {
            Some(person) => &mut rows.entry(person).or_default().1,
            None => &mut unattributed,
        };
        tally.acks += 1;
        tally.took.extend(ack.took());
    }
    Load {
        people: rows
            .into_iter()
            .map(|(person, (zone, mut tally))| PersonLoad {
                person,
                zone: zone.unwrap_or_else(|| "UTC".into()),
                pages: tally.pages,
                pages_outside_hours: tally.outside,
                acks: tally.acks,
                median_ack: median(&mut tally.took),
            })
            .collect(),
        unattributed: unattributed.acks,
        unattributed_median: median(&mut unattributed.took),
    }
}

#[derive(Debug, Default)]
struct Tally {
    pages: u32,
    outside: u32,
    acks: u32,
    /// How long each acknowledgement took, where known.
    took: Vec<Duration>,
}

/// The page deliveries among `events` at `from` ≤ at < `until`, counted by target and
/// quarter hour, by target and in time order: what `Tx::page_buckets` answers from the store.
pub fn buckets((from, until): (Timestamp, Timestamp), events: &[IncidentEvent]) -> Vec<PageBucket> {
    let mut counts: BTreeMap<(&str, i64), u32> = BTreeMap::new();
    for e in events {
        if from <= e.at && e.at < until && paged_person(e).is_some() {
            if let Some(target) = e.target.as_deref() {
                *counts
                    .entry((target, e.at.0 / BUCKET_MS * BUCKET_MS))
                    .or_default() += 1;
            }
        }
    }
    counts
        .into_iter()
        .map(|((target, start), pages)| PageBucket {
            target: target.to_owned(),
            start: Timestamp(start),
            pages,
        })
        .collect()
}

/// The person a page delivery went to, if it is a page to a person.
fn paged_person(e: &IncidentEvent) -> Option<&str> {
    if e.kind != Some(EventKind::Delivered) || !is_page_delivery(&e.detail) {
        return None;
    }
    let prefix = crate::engine::oncall::person_target("");
    e.target.as_deref()?.strip_prefix(prefix.as_str())
}

/// Whether `at` falls outside 08:00–20:00 in `zone` (UTC when unset or unknown).
pub fn outside_hours(at: Timestamp, zone: Option<&str>) -> bool {
    outside_hours_in(at, &time_zone(zone))
}

fn time_zone(zone: Option<&str>) -> jiff::tz::TimeZone {
    zone.and_then(|z| jiff::tz::TimeZone::get(z).ok())
        .unwrap_or(jiff::tz::TimeZone::UTC)
}

fn outside_hours_in(at: Timestamp, tz: &jiff::tz::TimeZone) -> bool {
    let Ok(t) = jiff::Timestamp::from_millisecond(at.0) else {
        return false;
    };
    let hour = t.to_zoned_datetime(tz.clone()).hour();
    !(DAY_STARTS..DAY_ENDS).contains(&hour)
}

/// An acknowledgement, with the start of its round and who had been paged before it.
struct Ack<'a> {
    at: Timestamp,
    actor: Option<&'a str>,
    round_paged: Option<Timestamp>,
    paged_before: BTreeSet<&'a str>,
}

impl Ack<'_> {
    fn took(&self) -> Option<Duration> {
        let first = self.round_paged?;
        Some(Duration::from_millis(
            u64::try_from(self.at.0 - first.0).unwrap_or(0),
        ))
    }
}

/// Every acknowledgement in `timelines` (rows by incident, in order).
fn acknowledgements(timelines: &[IncidentEvent]) -> Vec<Ack<'_>> {
    let mut out = Vec::new();
    let mut incident = None;
    let mut round_paged: Option<Timestamp> = None;
    let mut paged: BTreeSet<&str> = BTreeSet::new();
    for e in timelines {
        if incident != Some(e.incident_id) {
            incident = Some(e.incident_id);
            round_paged = None;
            paged.clear();
        }
        match e.kind {
            Some(EventKind::Paged) => {
                round_paged.get_or_insert(e.at);
            }
            Some(EventKind::Delivered) if is_page_delivery(&e.detail) => {
                round_paged.get_or_insert(e.at);
                paged.extend(paged_person(e));
            }
            Some(EventKind::AckTimedOut) => round_paged = None,
            Some(EventKind::Acknowledged) => out.push(Ack {
                at: e.at,
                actor: e.actor.as_deref(),
                round_paged,
                paged_before: paged.clone(),
            }),
            _ => {}
        }
    }
    out
}

/// The person an acknowledgement counts for (see the module's rules).
fn attribute(people: &dyn People, actor: Option<&str>, paged: &BTreeSet<&str>) -> Option<String> {
    let actor = actor?.trim();
    if actor == LINK_ACTOR {
        let mut only = paged.iter();
        return match (only.next(), only.next()) {
            (Some(person), None) => Some((*person).to_owned()),
            _ => None,
        };
    }
    people.named(actor.strip_suffix(CONSOLE_SUFFIX).unwrap_or(actor))
}

/// The median (the mean of the middle two for an even count).
pub fn median(values: &mut [Duration]) -> Option<Duration> {
    values.sort_unstable();
    let n = values.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(values[n / 2]),
        _ => Some((values[n / 2 - 1] + values[n / 2]) / 2),
    }
}

#[cfg(test)]
#[path = "load_tests.rs"]
mod tests;
