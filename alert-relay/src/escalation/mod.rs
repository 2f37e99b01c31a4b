//! The pure escalation state machine: `(incident, event, now) -> actions`. No I/O, no clock.
//!
//! CONTRACT (shared with the I/O side; keep these names and shapes, extend freely):
//! - `Plan`: a snapshot of the policy taken when the incident starts (serde, stored as JSON).
//! - `Incident::start(plan, now) -> (Incident, Vec<Action>)`.
//! - `Incident::handle(&mut self, event, now) -> Vec<Action>`.
//! - `Incident::next_due() -> Option<Timestamp>`: when the driver must send `Event::Due`.
//! - `Incident::is_open()`.

use serde::{Deserialize, Serialize};

pub use crate::domain::NotificationKind;
use crate::domain::{PolicyName, TargetName};

/// Snapshot of the policy an incident follows for its whole life.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub policy: PolicyName,
    pub steps: Vec<PlannedStep>,
    /// Repeat the last step every `every_ms` after it, at most `times` times (`None` = forever).
    pub repeat: Option<Repeat>,
    pub send_resolved: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedStep {
    /// Delay from the incident's start.
    pub after_ms: u64,
    pub targets: Vec<TargetName>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Repeat {
    pub every_ms: u64,
    pub times: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    Resolved,
    Acknowledged,
    Silenced,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    /// `next_due()` was reached.
    Due,
    /// The group resolved (Alertmanager sent `status: resolved`).
    Resolved,
    /// A human acknowledged (ack link or API).
    Acknowledged { by: String },
    /// Alertmanager says the alerts are silenced or inhibited.
    Silenced,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Queue one notification per target (the driver writes outbox rows).
    Notify {
        step: usize,
        kind: NotificationKind,
        targets: Vec<TargetName>,
    },
    /// The escalation ended; the driver records why.
    Stopped(StopReason),
}
