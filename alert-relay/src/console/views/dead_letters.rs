//! The Dead letters page's view model: what could not be sent and why, the incident rows
//! taken out of service, and each target's health.

use askama::Template;

use super::{local, Chrome, TargetRow};
use crate::store::{DeadLetter, Quarantined};

#[derive(Template)]
#[template(path = "console/dead_letters.html")]
pub struct DeadLettersView {
    pub chrome: Chrome,
    pub zone: String,
    pub targets: Vec<TargetHealth>,
    pub letters: Vec<LetterRow>,
    pub quarantined: Vec<QuarantinedRow>,
    /// The most listed (older ones are counted in the metrics and the API).
    pub limit: u32,
}

pub struct TargetHealth {
    pub target: TargetRow,
    /// Dead letters of this target among those listed.
    pub dead: usize,
}

pub struct LetterRow {
    pub id: i64,
    /// `None` for a notice that belongs to no incident (a handoff notice).
    pub incident: Option<i64>,
    pub target: String,
    pub attempts: u32,
    pub reason: String,
    pub queued: String,
    pub given_up: String,
}

pub struct QuarantinedRow {
    pub id: i64,
    pub reason: String,
    pub at: String,
}

pub fn letter_row(d: &DeadLetter, zone: &str) -> LetterRow {
    LetterRow {
        id: d.id,
        incident: (d.incident_id > 0).then_some(d.incident_id),
        target: d.target.clone(),
        attempts: d.attempts,
        reason: if d.reason.is_empty() {
            "no reason recorded".to_owned()
        } else {
            d.reason.clone()
        },
        queued: local(d.created_at, zone),
        given_up: local(d.dead_at, zone),
    }
}

pub fn quarantined_row(q: &Quarantined, zone: &str) -> QuarantinedRow {
    QuarantinedRow {
        id: q.id,
        reason: q.reason.clone(),
        at: local(q.at, zone),
    }
}

/// Each target's health, with how many of the listed dead letters are its.
pub fn target_health(targets: Vec<TargetRow>, letters: &[DeadLetter]) -> Vec<TargetHealth> {
    targets
        .into_iter()
        .map(|target| TargetHealth {
            dead: letters.iter().filter(|d| d.target == target.name).count(),
            target,
        })
        .collect()
}
