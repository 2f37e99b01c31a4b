//! A schedule's shifts ahead as a person reads them, and covering one of those shifts: an
//! override for exactly that shift, checked as every override is ([`Relay::add_override`]).

use super::{OverrideError, Relay};
use crate::domain::Timestamp;
use crate::engine::oncall::{Schedule, Shift};
use crate::engine::Override;
use crate::store::StoreError;

/// One schedule from now on: its shifts and the overrides that shape them.
pub struct ScheduleAhead {
    pub schedule: Schedule,
    /// The shifts overlapping the window, in order (the first may be under way).
    pub shifts: Vec<Shift>,
    /// The overrides in force or ahead, in every schedule (to say whom one replaces, who
    /// made it, and which of them the reader may remove).
    pub overrides: Vec<Override>,
}

/// "I cover this shift": the shift as the page showed it, and who covers it.
#[derive(Debug, Clone)]
pub struct Cover {
    pub schedule: String,
    /// Whose shift it is.
    pub person: String,
    pub starts_at: Timestamp,
    pub ends_at: Timestamp,
    /// Who covers it (and so creates the override).
    pub by: String,
}

impl Relay {
    /// Schedule `name`'s shifts overlapping `[now, until)`, at most `limit`; `None` if the
    /// policy file has no such schedule. Worked out on a blocking thread, as feeds are.
    pub async fn schedule_ahead(
        &self,
        name: &str,
        now: Timestamp,
        until: Timestamp,
        limit: usize,
    ) -> Result<Option<ScheduleAhead>, StoreError> {
        let Some(schedule) = self.runtime().config.schedules.get(name).cloned() else {
            return Ok(None);
        };
        let overrides = self.overrides(now).await?;
        tokio::task::spawn_blocking(move || {
            let shifts = schedule.shifts(now, until, &overrides, limit);
            Some(ScheduleAhead {
                schedule,
                shifts,
                overrides,
            })
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))
    }

    /// `cover.by` takes over one shift: an override from its start to its end, created by
    /// them. The shift must still be as the page showed it (nobody covered it meanwhile, the
    /// policy file did not change); then [`Relay::add_override`] checks the override as the
    /// API's are checked.
    pub async fn cover_shift(
        &self,
        cover: Cover,
        now: Timestamp,
    ) -> Result<Override, OverrideError> {
        let invalid = |why: String| Err(OverrideError::Invalid(why));
        let Some(schedule) = self
            .runtime()
            .config
            .schedules
            .get(&cover.schedule)
            .cloned()
        else {
            // Refused there, with the names of the schedules there are.
            return self.add_override(cover.into_override(None), now).await;
        };
        if cover.person == cover.by {
            return invalid(format!("this shift is {}'s already", cover.by));
        }
        if cover.ends_at <= now {
            return invalid("this shift is over already".into());
        }
        if cover.ends_at.0 - cover.starts_at.0 > super::MAX_OVERRIDE_MS {
            return self.add_override(cover.into_override(None), now).await;
        }
        let overrides = self.overrides(now).await?;
        let (from, to) = (cover.starts_at.max(now), cover.ends_at);
        let found = tokio::task::spawn_blocking(move || schedule.shifts(from, to, &overrides, 2))
            .await
            .map_err(|e| StoreError::Task(e.to_string()))?;
        let shift = match found.as_slice() {
            [s] if s.person == cover.person
                && s.starts_at == cover.starts_at
                && s.ends_at == cover.ends_at =>
            {
                s
            }
            _ => {
                return invalid(
                    "this shift has changed since the page was shown (someone covered it, or \
                     the schedule changed): look at the shifts again and pick it anew"
                        .into(),
                )
            }
        };
        // A rotation's shift is covered in its person's place; one that an override made
        // already is covered whoever is in it (the newest override wins).
        let replaces = shift.override_id.is_none().then(|| shift.person.clone());
        self.add_override(cover.into_override(replaces), now).await
    }
}

impl Cover {
    fn into_override(self, replaces: Option<String>) -> Override {
        Override {
            id: 0,
            schedule: self.schedule,
            person: self.by.clone(),
            replaces,
            starts_at: self.starts_at,
            ends_at: self.ends_at,
            created_by: self.by,
        }
    }
}
