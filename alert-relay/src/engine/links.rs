//! Link composition: the notification an action asks for, with its signed acknowledge link
//! and Alertmanager silence link. Pure: the ack nonce is derived from the notification, not
//! drawn at random, so the same inputs always give the same notification.

use std::time::Duration;

use sha2::{Digest, Sha256};
use url::Url;

use super::IncidentRecord;
use crate::ack::AckKey;
use crate::domain::{
    equality_matcher, Notification, NotificationKind, TargetName, Timestamp, OWN_RECEIVER,
};

/// What links are built from (the policy file's `server` section and the ack key).
#[derive(Debug, Clone)]
pub struct Links {
    /// Where phones reach the relay; no acknowledge links without it.
    pub public_url: Option<Url>,
    pub key: AckKey,
    pub ttl: Duration,
    /// Used for silence links when the webhook carried no `externalURL`.
    pub alertmanager_url: Option<Url>,
    /// When set, silence links open Grafana's alerting UI for the Alertmanager data source
    /// `alertmanager` instead of Alertmanager's own.
    pub grafana_url: Option<Url>,
}

impl Links {
    /// The notification for `target` of `incident`, step `step`, created at `now`.
    pub fn compose(
        &self,
        incident: &IncidentRecord,
        target: &TargetName,
        step: usize,
        kind: NotificationKind,
        now: Timestamp,
    ) -> Notification {
        let ack_url = (kind == NotificationKind::Firing)
            .then_some(self.public_url.as_ref())
            .flatten()
            .and_then(|base| {
                let nonce = nonce(incident, target, step, now);
                let token = self
                    .key
                    .sign(incident.id, incident.key, now.plus(self.ttl), nonce);
                base.join(&format!("ack/{token}")).ok()
            })
            .map(String::from);
        Notification {
            incident_id: incident.id,
            policy: incident.machine.plan.policy.clone(),
            target: target.clone(),
            kind,
            step,
            group: incident.group.clone(),
            sequence_id: format!("relay-{}", incident.id),
            incident_started_at: incident.machine.started_at,
            ack_url,
            silence_url: self.silence_url(incident),
            created_at: now,
            acknowledged_by: (kind == NotificationKind::Acknowledged)
                .then(|| incident.machine.acknowledged_by.clone())
                .flatten(),
            silence_note: (kind == NotificationKind::Silenced)
                .then(|| incident.machine.silence_note.clone())
                .flatten(),
            note: (kind == NotificationKind::Firing)
                .then(|| incident.machine.notice.clone())
                .flatten(),
            person: target.as_str().strip_prefix("person.").map(str::to_owned),
            mentions: Vec::new(),
            console_url: None,
        }
    }

    /// Alertmanager's silence form pre-filled with the group's labels. Alertmanager's own
    /// external URL (what browsers reach) first; `alertmanager_url` may be an internal address.
    fn silence_url(&self, incident: &IncidentRecord) -> Option<String> {
        let group = &incident.group;
        if group.receiver == OWN_RECEIVER {
            return None;
        }
        let labels = if group.group_labels.is_empty() {
            &group.common_labels
        } else {
            &group.group_labels
        };
        if let Some(grafana) = &self.grafana_url {
            // Grafana's form takes one `matcher` per label (name, operator, quoted value).
            let mut url = grafana.join("alerting/silence/new").ok()?;
            {
                let mut query = url.query_pairs_mut();
                query.append_pair("alertmanager", "alertmanager");
                for (name, value) in labels {
                    query.append_pair("matcher", &equality_matcher(name, value));
                }
            }
            return Some(url.to_string());
        }
        let base = group
            .external_url
            .clone()
            .filter(|u| !u.is_empty())
            .or_else(|| self.alertmanager_url.as_ref().map(|u| u.to_string()))?;
        let filter = labels
            .iter()
            .map(|(name, value)| equality_matcher(name, value))
            .collect::<Vec<_>>()
            .join(",");
        let encoded: String =
            url::form_urlencoded::byte_serialize(format!("{{{filter}}}").as_bytes()).collect();
        Some(format!(
            "{}/#/silences/new?filter={}",
            base.trim_end_matches('/'),
            encoded.replace('+', "%20")
        ))
    }
}

/// Distinct per link: one notification per (incident, target, step) at a given time.
fn nonce(incident: &IncidentRecord, target: &TargetName, step: usize, now: Timestamp) -> [u8; 12] {
    let mut hash = Sha256::new();
    hash.update(incident.key.0);
    hash.update(incident.id.to_be_bytes());
    hash.update(target.as_str().as_bytes());
    hash.update([0]);
    hash.update((step as u64).to_be_bytes());
    hash.update(now.0.to_be_bytes());
    let mut nonce = [0u8; 12];
    nonce.copy_from_slice(&hash.finalize()[..12]);
    nonce
}
