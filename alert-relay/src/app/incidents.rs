//! Use cases on incidents: acknowledge (link or API), stop those Alertmanager reports
//! silenced, fire due steps, and the read side (open incidents, dead letters).

use super::{inputs, Relay};
use crate::ack::AckClaim;
use crate::domain::{TargetName, Timestamp, OWN_RECEIVER};
use crate::engine::{self, AckOutcome, IncidentEvent, IncidentRecord};
use crate::silence::Verdict;
use crate::store::{self, BadRow, DeadLetter, Mode, Quarantined, StoreError};

/// Incidents looked at per scheduler pass at most (the rest in the next pass, at once).
const DUE_BATCH: u32 = 500;

/// An open incident for the on-call view, with the targets whose notifications still wait.
#[derive(Debug, Clone)]
pub struct OpenIncident {
    pub record: IncidentRecord,
    pub waiting: Vec<TargetName>,
}

impl Relay {
    /// Acknowledges incident `id` for `by` (the API and the CLI).
    pub async fn acknowledge(
        &self,
        id: i64,
        by: String,
        now: Timestamp,
    ) -> Result<AckOutcome, StoreError> {
        Ok(self.stop_acknowledged(id, None, by, now).await?.0)
    }

    /// Acknowledges `id` for `by`, using the link's nonce when it came through a link.
    /// Returns the outcome and the incident as it was before (for the answer to name it).
    pub(super) async fn stop_acknowledged(
        &self,
        id: i64,
        claim: Option<AckClaim>,
        by: String,
        now: Timestamp,
    ) -> Result<(AckOutcome, Option<IncidentRecord>), StoreError> {
        let runtime = self.runtime();
        let (outcome, before, effects) = self
            .store
            .run(Mode::Durable, move |tx| {
                if let Some(claim) = &claim {
                    if !tx.use_nonce(&claim.nonce, id, now)? {
                        let incident = tx.incident(id)?.filter(|i| claim.fits(i.key));
                        return Ok((AckOutcome::Replayed, incident, Default::default()));
                    }
                }
                let Some(incident) = tx.incident(id)? else {
                    return Ok((AckOutcome::UnknownIncident, None, Default::default()));
                };
                // A link for an incident that has this id in another database (reset or
                // restored since) is not for this incident.
                if claim.as_ref().is_some_and(|c| !c.fits(incident.key)) {
                    return Ok((AckOutcome::UnknownIncident, None, Default::default()));
                }
                let before = incident.clone();
                let (outcome, t) = engine::acknowledge(
                    incident,
                    by.clone(),
                    &inputs(&runtime, &tx.overrides(now)?, now),
                );
                store::commit(tx, &t, now)?;
                Ok((outcome, Some(before), t.effects))
            })
            .await?;
        self.apply_effects(&effects);
        Ok((outcome, before))
    }

    /// One scheduler pass at `now`: asks Alertmanager about the incidents due and stops those
    /// it reports silenced or inhibited, then fires every due step. Returns when the next step
    /// is due.
    pub async fn fire_due(&self, now: Timestamp) -> Result<Option<Timestamp>, StoreError> {
        self.stop_silenced(now).await;
        let runtime = self.runtime();
        let (effects, next, counts) = self
            .store
            .run(Mode::Durable, move |tx| {
                let mut effects = engine::Effects::default();
                let due = tx.due_incidents(now, DUE_BATCH)?;
                let overrides = tx.overrides(now)?;
                // One unreadable row never holds up the others.
                for bad in &due.bad {
                    tx.quarantine(bad, now)?;
                }
                for incident in due.rows {
                    let t = engine::due(incident, &inputs(&runtime, &overrides, now));
                    store::commit(tx, &t, now)?;
                    effects.merge(t.effects);
                }
                Ok(((effects, due.bad), tx.next_due()?, tx.counts()?))
            })
            .await?;
        let (effects, bad) = effects;
        self.quarantined(&bad);
        self.apply_effects(&effects);
        self.metrics.outbox_depth.set(counts.pending);
        self.metrics.incidents_open.set(counts.open);
        Ok(next)
    }

    /// Unreachable Alertmanager: escalate anyway (fail safe toward paging).
    async fn stop_silenced(&self, now: Timestamp) {
        let runtime = self.runtime();
        let Some(oracle) = runtime.silences.clone() else {
            return;
        };
        let due = match self
            .store
            .run(Mode::Read, move |tx| {
                Ok(tx.due_incidents(now, DUE_BATCH)?.rows)
            })
            .await
        {
            Ok(due) => due,
            Err(error) => {
                tracing::error!(%error, "cannot read due incidents");
                return;
            }
        };
        let checks = &self.metrics.silence_checks;
        // The relay's own alerts are unknown to Alertmanager: not asked, never "silenced".
        let due = due.into_iter().filter(|i| i.group.receiver != OWN_RECEIVER);
        for incident in due {
            match oracle.still_paging(&incident.group).await {
                Ok(Verdict::Paging) => checks.with_label_values(&["paging"]).inc(),
                Ok(Verdict::Unknown) => {
                    checks.with_label_values(&["unknown"]).inc();
                    tracing::debug!(
                        incident = incident.id,
                        "Alertmanager does not know these alerts; escalating"
                    );
                }
                Ok(Verdict::Suppressed { note }) => {
                    checks.with_label_values(&["silenced"]).inc();
                    let (id, group) = (incident.id, incident.group_key.clone());
                    match self.stop_silenced_one(incident, note.clone(), now).await {
                        Ok(()) => {
                            tracing::info!(incident = id, %group, %note, "escalation stopped: Alertmanager reports the alerts silenced or inhibited")
                        }
                        Err(error) => {
                            tracing::error!(%error, incident = id, "cannot record the silence")
                        }
                    }
                }
                Err(error) => {
                    checks.with_label_values(&["error"]).inc();
                    tracing::warn!(incident = incident.id, %error, "cannot ask Alertmanager about silences; escalating anyway");
                    // One failure per pass is enough: the others would wait for the same timeout.
                    return;
                }
            }
        }
    }

    async fn stop_silenced_one(
        &self,
        seen: IncidentRecord,
        note: String,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let runtime = self.runtime();
        let effects = self
            .store
            .run(Mode::Durable, move |tx| {
                // Reloaded in the transaction: it may have been acknowledged meanwhile.
                let Some(incident) = tx.incident(seen.id)? else {
                    return Ok(Default::default());
                };
                let t = engine::silenced(
                    incident,
                    note.clone(),
                    &inputs(&runtime, &tx.overrides(now)?, now),
                );
                store::commit(tx, &t, now)?;
                Ok(t.effects)
            })
            .await?;
        self.apply_effects(&effects);
        Ok(())
    }

    /// Open incidents (escalating, or stopped and waiting for the resolve), oldest first.
    /// Heartbeat policies' incidents (the always-firing Watchdog's) are left out: they are
    /// open by design.
    pub async fn open_incidents(&self, limit: u32) -> Result<Vec<OpenIncident>, StoreError> {
        let runtime = self.runtime();
        self.store
            .run(Mode::Read, move |tx| {
                let open: Vec<_> = tx
                    .open_incidents(limit)?
                    .rows
                    .into_iter()
                    .filter(|r| !runtime.is_heartbeat(r.policy().as_str()))
                    .collect();
                let ids: Vec<i64> = open.iter().map(|r| r.id).collect();
                let mut waiting = tx.waiting_targets_of(&ids)?;
                Ok(open
                    .into_iter()
                    .map(|record| OpenIncident {
                        waiting: waiting.remove(&record.id).unwrap_or_default(),
                        record,
                    })
                    .collect())
            })
            .await
    }

    /// One incident, open or not, with the targets whose notifications still wait.
    pub async fn incident(&self, id: i64) -> Result<Option<OpenIncident>, StoreError> {
        self.store
            .run(Mode::Read, move |tx| {
                let Some(record) = tx.incident(id)? else {
                    return Ok(None);
                };
                let waiting = tx.waiting_targets(id)?;
                Ok(Some(OpenIncident { record, waiting }))
            })
            .await
    }

    /// The latest `limit` events of incident `id`'s timeline, oldest first (none: no such
    /// incident, or one from before timelines were kept).
    pub async fn timeline(&self, id: i64, limit: u32) -> Result<Vec<IncidentEvent>, StoreError> {
        self.store
            .run(Mode::Read, move |tx| tx.events(id, limit))
            .await
    }

    /// The latest dead letters, newest first, and the incident rows quarantined.
    pub async fn dead_letters(
        &self,
        limit: u32,
    ) -> Result<(Vec<DeadLetter>, Vec<Quarantined>), StoreError> {
        self.store
            .run(Mode::Read, move |tx| {
                Ok((tx.dead_letters(limit)?, tx.quarantined(limit)?))
            })
            .await
    }

    /// Takes every unreadable open incident and pending notification out of service (at
    /// start: a damaged row found later is quarantined where it is met).
    pub async fn quarantine_undecodable(&self, now: Timestamp) -> Result<usize, StoreError> {
        let bad = self
            .store
            .run(Mode::Durable, move |tx| {
                let bad = tx.undecodable()?;
                for row in &bad {
                    tx.quarantine(row, now)?;
                }
                Ok(bad)
            })
            .await?;
        self.quarantined(&bad);
        Ok(bad.len())
    }

    /// Counts and logs rows just quarantined.
    pub(super) fn quarantined(&self, bad: &[BadRow]) {
        for row in bad {
            self.metrics
                .quarantined
                .with_label_values(&[row.table])
                .inc();
            tracing::error!(table = row.table, id = row.id, error = %row.error, "row cannot be read: quarantined (listed with the dead letters); the others go on");
        }
    }
}
