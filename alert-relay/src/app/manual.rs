//! What a person does to an incident by hand, from the console: escalate now, resolve (for
//! alerts Alertmanager no longer sends), silence for a while (a silence created in
//! Alertmanager with the person as its creator; the escalation stops at once). Each is one
//! engine transition committed with its timeline event.

use super::{inputs, Relay};
use crate::domain::Timestamp;
use crate::engine::{self, IncidentRecord, ManualOutcome, Transition};
use crate::silence::NewSilence;
use crate::store::{self, Mode, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum ManualError {
    #[error("there is no incident {0}")]
    Unknown(i64),
    #[error("no Alertmanager to silence in (server.alertmanager_url is not set)")]
    NoAlertmanager,
    #[error("Alertmanager refused the silence: {0}")]
    Alertmanager(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Relay {
    /// Fires incident `id`'s next step now, for `by`.
    pub async fn escalate_now(
        &self,
        id: i64,
        by: &str,
        now: Timestamp,
    ) -> Result<ManualOutcome, ManualError> {
        let by = by.to_owned();
        self.manual(id, now, move |incident, inputs| {
            engine::escalate_now(incident, &by, inputs)
        })
        .await
    }

    /// Resolves incident `id` by hand, for `by`.
    pub async fn resolve_by_hand(
        &self,
        id: i64,
        by: &str,
        now: Timestamp,
    ) -> Result<ManualOutcome, ManualError> {
        let by = by.to_owned();
        self.manual(id, now, move |incident, inputs| {
            engine::resolve_by(incident, &by, inputs)
        })
        .await
    }

    /// Silences incident `id`'s alerts in Alertmanager until `until`, created by `by`; the
    /// escalation stops now (the notice says by whom and until when).
    pub async fn silence_incident(
        &self,
        id: i64,
        by: &str,
        until: Timestamp,
        now: Timestamp,
    ) -> Result<ManualOutcome, ManualError> {
        let runtime = self.runtime();
        let oracle = runtime
            .silences
            .clone()
            .ok_or(ManualError::NoAlertmanager)?;
        let record = self
            .store
            .run(Mode::Read, move |tx| tx.incident(id))
            .await?
            .ok_or(ManualError::Unknown(id))?;
        if record.machine.is_closed() {
            return Ok(ManualOutcome::Nothing);
        }
        let silence = NewSilence {
            ends_at: until,
            created_by: by.to_owned(),
            comment: format!("from the on-call console (incident {id})"),
        };
        let silence_id = oracle
            .create(&record.group, silence)
            .await
            .map_err(ManualError::Alertmanager)?;
        tracing::info!(incident = id, person = by, silence = %silence_id, until = %until.to_rfc3339(), "silenced from the console");
        let note = format!("silenced by {by} until {}", until.to_rfc3339());
        self.manual(id, now, move |incident, inputs| {
            let t = engine::silenced(incident, note.clone(), inputs);
            let done = if t == Transition::default() {
                ManualOutcome::Nothing
            } else {
                ManualOutcome::Done
            };
            (done, t)
        })
        .await
    }

    /// Loads incident `id` for writing, applies `act`, commits, applies the effects.
    async fn manual<F>(&self, id: i64, now: Timestamp, act: F) -> Result<ManualOutcome, ManualError>
    where
        F: Fn(IncidentRecord, &engine::Inputs<'_>) -> (ManualOutcome, Transition) + Send + 'static,
    {
        let runtime = self.runtime();
        let found = self
            .store
            .run(Mode::Durable, move |tx| {
                let Some(incident) = tx.incident(id)? else {
                    return Ok(None);
                };
                let (outcome, t) = act(incident, &inputs(&runtime, &tx.overrides(now)?, now));
                store::commit(tx, &t, now)?;
                Ok(Some((outcome, t.effects)))
            })
            .await?;
        let (outcome, effects) = found.ok_or(ManualError::Unknown(id))?;
        self.apply_effects(&effects);
        Ok(outcome)
    }
}
