//! Acknowledge links opened by a person: what the link would do (shown, never done, on a
//! `GET`: link previews fetch it), and the acknowledgement itself, used once.

use super::Relay;
use crate::ack::AckError;
use crate::domain::Timestamp;
use crate::engine::{AckOutcome, IncidentRecord};
use crate::store::{Mode, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum AckLinkError {
    #[error(transparent)]
    Refused(#[from] AckError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What acknowledging through a link did.
#[derive(Debug, Clone)]
pub struct LinkAck {
    pub id: i64,
    pub outcome: AckOutcome,
    /// The incident as it was before, when the link is for one here.
    pub incident: Option<IncidentRecord>,
}

/// What a valid link stands for, as it is now; nothing was changed.
#[derive(Debug, Clone)]
pub struct LinkPreview {
    pub id: i64,
    /// `None`: no incident here for this link (another database, reset or restored since).
    pub incident: Option<IncidentRecord>,
    /// The link was used already: it can acknowledge nothing any more.
    pub used: bool,
}

impl Relay {
    /// Acknowledges through a signed link from a push: checked, then used once.
    pub async fn acknowledge_link(
        &self,
        token: &str,
        now: Timestamp,
    ) -> Result<LinkAck, AckLinkError> {
        let claim = self.runtime().links.key.verify(token, now)?;
        let id = claim.incident_id;
        let (outcome, incident) = self
            .stop_acknowledged(id, Some(claim), super::load::LINK_ACTOR.into(), now)
            .await?;
        Ok(LinkAck {
            id,
            outcome,
            incident,
        })
    }

    /// What the link would acknowledge, read only: checked as [`Relay::acknowledge_link`]
    /// checks it, its nonce looked at and not used.
    pub async fn preview_ack_link(
        &self,
        token: &str,
        now: Timestamp,
    ) -> Result<LinkPreview, AckLinkError> {
        let claim = self.runtime().links.key.verify(token, now)?;
        let id = claim.incident_id;
        let (incident, used) = self
            .store
            .run(Mode::Read, move |tx| {
                let used = tx.nonce_used(&claim.nonce)?;
                let incident = tx.incident(id)?.filter(|i| claim.fits(i.key));
                Ok((incident, used))
            })
            .await?;
        Ok(LinkPreview { id, incident, used })
    }
}
