//! Use cases of schedules: who is on call (the rotations of the policy file and the
//! overrides in the store), overrides created and removed at run time, and handoff notices.

use super::Relay;
use crate::domain::Timestamp;
use crate::engine::oncall::{
    handoff_key, handoff_notice, OnCall, Schedule, Shift, HANDOFF_WINDOW_MS,
};
use crate::engine::{NewOutbox, Override, UNCONFIGURED};
use crate::store::{Mode, StoreError};

/// Overrides in force or ahead at most: each step that fires reads them all.
pub const MAX_LIVE_OVERRIDES: usize = 1000;

/// The longest override: a cover is for days or weeks; a year is a rotation, not a cover.
pub const MAX_OVERRIDE_MS: i64 = 366 * 86_400_000;

#[derive(Debug, thiserror::Error)]
pub enum OverrideError {
    /// The request names something the policy file does not have, or times that make no
    /// sense: the caller's mistake, said so that it can be fixed.
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Relay {
    /// Each schedule's person on call at `at` (overrides included) and the next `upcoming`
    /// shifts.
    pub async fn on_call(&self, at: Timestamp, upcoming: usize) -> Result<Vec<OnCall>, StoreError> {
        let runtime = self.runtime();
        let overrides = self
            .store
            .run(Mode::Read, move |tx| tx.overrides(at))
            .await?;
        Ok(runtime
            .config
            .schedules
            .values()
            .map(|s| s.report(at, &overrides, upcoming))
            .collect())
    }

    /// Overrides not removed that have not ended at `now`, oldest first.
    pub async fn overrides(&self, now: Timestamp) -> Result<Vec<Override>, StoreError> {
        self.store
            .run(Mode::Read, move |tx| tx.overrides(now))
            .await
    }

    /// Records an override after checking it against the policy file; it takes effect at once
    /// (steps that fire from now on page the person it puts on call).
    /// `new.id` is ignored: the store gives it one.
    pub async fn add_override(
        &self,
        new: Override,
        now: Timestamp,
    ) -> Result<Override, OverrideError> {
        let runtime = self.runtime();
        let config = &runtime.config;
        let invalid = |why: String| Err(OverrideError::Invalid(why));
        if !config.schedules.contains_key(&new.schedule) {
            let known: Vec<&str> = config.schedules.keys().map(String::as_str).collect();
            return invalid(format!(
                "no schedule `{}` (the policy file has: {})",
                new.schedule,
                if known.is_empty() {
                    "none".into()
                } else {
                    known.join(", ")
                }
            ));
        }
        for who in std::iter::once(&new.person).chain(new.replaces.as_ref()) {
            if !config.people.contains_key(who) {
                let known: Vec<&str> = config.people.keys().map(String::as_str).collect();
                return invalid(format!(
                    "no person `{who}` (the policy file has: {})",
                    if known.is_empty() {
                        "none".into()
                    } else {
                        known.join(", ")
                    }
                ));
            }
        }
        if new.replaces.as_ref() == Some(&new.person) {
            return invalid(format!("{} cannot cover for themselves", new.person));
        }
        if new.ends_at <= new.starts_at {
            return invalid("the override ends before it starts".into());
        }
        if new.ends_at <= now {
            return invalid("the override is over already".into());
        }
        if new.ends_at.0 - new.starts_at.0 > MAX_OVERRIDE_MS {
            return invalid(
                "an override lasts at most 366 days: change the rotation in the policy file instead"
                    .into(),
            );
        }
        if self.overrides(now).await?.len() >= MAX_LIVE_OVERRIDES {
            return invalid(format!(
                "{MAX_LIVE_OVERRIDES} overrides are in force or ahead already: remove some (alert-relay override list)"
            ));
        }
        let by = new.created_by.trim();
        if by.is_empty() || by.len() > 200 || by.chars().any(char::is_control) {
            return invalid(
                "who creates the override: a name of 1 to 200 printable characters".into(),
            );
        }
        let mut row = Override {
            created_by: by.to_owned(),
            ..new
        };
        let insert = row.clone();
        row.id = self
            .store
            .run(Mode::Durable, move |tx| tx.insert_override(&insert, now))
            .await?;
        tracing::info!(
            id = row.id,
            schedule = %row.schedule,
            person = %row.person,
            replaces = row.replaces.as_deref().unwrap_or("anyone"),
            from = %row.starts_at.to_rfc3339(),
            until = %row.ends_at.to_rfc3339(),
            by = %row.created_by,
            "override created"
        );
        self.wakers.handoffs.notify_one();
        Ok(row)
    }

    /// Removes an override; `false` if there is none by that id. When it was in force, the
    /// person the rotation puts back on call is told, as at a handoff.
    pub async fn remove_override(&self, id: i64, now: Timestamp) -> Result<bool, StoreError> {
        let runtime = self.runtime();
        let (removed, queued) = self
            .store
            .run(Mode::Durable, move |tx| {
                let before = tx.overrides(now)?;
                if !tx.remove_override(id, now)? {
                    return Ok((false, None));
                }
                let after = tx.overrides(now)?;
                let Some(o) = before.iter().find(|o| o.id == id) else {
                    return Ok((true, None));
                };
                let Some(schedule) = runtime.config.schedules.get(&o.schedule) else {
                    return Ok((true, None));
                };
                let covering = schedule
                    .on_call(now, &before)
                    .is_some_and(|s| s.override_id == Some(id));
                if !covering || !schedule.handoff_notices {
                    return Ok((true, None));
                }
                let report = schedule.report(now, &after, 1);
                let Some(shift) = report.now.filter(|s| s.person != o.person) else {
                    return Ok((true, None));
                };
                // Told once: the handoff loop must not announce the same shift again.
                tx.mark_handoff(&handoff_key(schedule, &shift), now)?;
                // The shift's own sequence id: on the phone it replaces that shift's first
                // notice, if there was one, with this up-to-date one.
                let mut notification = handoff_notice(schedule, &shift, report.next.first(), now);
                notification.note = notification
                    .note
                    .map(|n| format!("{n} (Override {id}, {} covering, was removed.)", o.person));
                let configured = queue(tx, &runtime, notification, now)?;
                Ok((true, configured.then(|| schedule.name.clone())))
            })
            .await?;
        if removed {
            tracing::info!(id, "override removed");
            self.wakers.handoffs.notify_one();
        }
        if let Some(schedule) = queued {
            self.metrics
                .handoff_notices
                .with_label_values(&[schedule.as_str()])
                .inc();
            self.wakers.wake_delivery();
        }
        Ok(removed)
    }

    /// Queues a notice for each schedule whose person changed within the last hour and has
    /// not been told (recorded in the same transaction, so a notice goes out once, after a
    /// restart too). Returns how many were queued.
    pub async fn announce_handoffs(&self, now: Timestamp) -> Result<usize, StoreError> {
        let runtime = self.runtime();
        if !runtime.config.schedules.values().any(|s| s.handoff_notices) {
            return Ok(0);
        }
        let queued = self
            .store
            .run(Mode::Durable, move |tx| {
                let overrides = tx.overrides(Timestamp(now.0 - HANDOFF_WINDOW_MS))?;
                let mut queued = Vec::new();
                for schedule in runtime.config.schedules.values() {
                    if !schedule.handoff_notices {
                        continue;
                    }
                    let Some(shift) = schedule.handoff(now, HANDOFF_WINDOW_MS, &overrides) else {
                        continue;
                    };
                    if !tx.mark_handoff(&handoff_key(schedule, &shift), now)? {
                        continue;
                    }
                    // Until the person changes, and who comes then.
                    let report = schedule.report(now, &overrides, 1);
                    let shift = report.now.unwrap_or(shift);
                    let notification = handoff_notice(schedule, &shift, report.next.first(), now);
                    tracing::info!(
                        schedule = %schedule.name,
                        person = %shift.person,
                        until = %schedule.local(shift.ends_at),
                        "handoff: the incoming person is told"
                    );
                    if queue(tx, &runtime, notification, now)? {
                        queued.push(schedule.name.clone());
                    }
                }
                Ok(queued)
            })
            .await?;
        for schedule in &queued {
            self.metrics
                .handoff_notices
                .with_label_values(&[schedule.as_str()])
                .inc();
        }
        if !queued.is_empty() {
            self.wakers.wake_delivery();
        }
        Ok(queued.len())
    }

    /// The shifts of a calendar feed (`schedule-<name>`: everyone's in it; `person-<name>`:
    /// theirs in every schedule) overlapping `window`, at most `limit` per schedule, in order.
    /// Worked out on a blocking thread: a year of short shifts is real work.
    pub async fn feed_shifts(
        &self,
        feed: &str,
        window: (Timestamp, Timestamp),
        limit: usize,
    ) -> Result<Vec<(Schedule, Shift)>, StoreError> {
        let runtime = self.runtime();
        let overrides = self.overrides(window.0).await?;
        let feed = feed.to_owned();
        tokio::task::spawn_blocking(move || {
            let (schedule, person) =
                match (feed.strip_prefix("schedule-"), feed.strip_prefix("person-")) {
                    (Some(s), _) => (Some(s), None),
                    (_, Some(p)) => (None, Some(p)),
                    _ => return Vec::new(),
                };
            let mut out = Vec::new();
            for s in runtime.config.schedules.values() {
                if schedule.is_some_and(|name| name != s.name) {
                    continue;
                }
                for shift in s.shifts(window.0, window.1, &overrides, limit) {
                    if person.is_none_or(|p| p == shift.person) {
                        out.push((s.clone(), shift));
                    }
                }
            }
            out.sort_by_key(|(_, shift)| shift.starts_at);
            out
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))
    }

    /// When the person on call may next change in a schedule that announces handoffs.
    pub async fn next_handoff(&self, now: Timestamp) -> Result<Option<Timestamp>, StoreError> {
        let runtime = self.runtime();
        if !runtime.config.schedules.values().any(|s| s.handoff_notices) {
            return Ok(None);
        }
        let overrides = self.overrides(now).await?;
        Ok(runtime
            .config
            .schedules
            .values()
            .filter(|s| s.handoff_notices)
            .filter_map(|s| s.next_handoff(now, &overrides))
            .min())
    }
}

/// Queues a handoff notice (dead at once if the person's target is switched off); whether it
/// will be delivered.
fn queue(
    tx: &mut dyn crate::store::Tx,
    runtime: &super::Runtime,
    notification: crate::domain::Notification,
    now: Timestamp,
) -> Result<bool, StoreError> {
    let configured = runtime.configured.contains(&notification.target);
    tx.insert_outbox(
        &NewOutbox {
            notification,
            dead: (!configured).then(|| UNCONFIGURED.to_owned()),
        },
        now,
    )?;
    Ok(configured)
}
