//! An incident's timeline: what happened to it, as events written in the same transaction as
//! the change they record (the store keeps them; the console and the API read them back).
//! The engine says what each transition adds; the application layer adds what only it
//! knows (a vendor's answer to a delivery).

use crate::domain::{NotificationKind, TargetName, Timestamp};

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum EventKind {
    /// A firing webhook started the incident.
    Started,
    /// Alerts joined the group.
    AlertsJoined,
    /// An escalation step fired: who it pages.
    Paged,
    /// A notice (acknowledged, silenced, resolved) queued to those paged.
    Notice,
    /// A notification that can never be sent: its reason (nobody on call, target gone).
    DeadAtOnce,
    Acknowledged,
    Silenced,
    Resolved,
    /// The acknowledgement ran out while the alerts still fire: escalating again.
    AckTimedOut,
    /// Someone fired the next step at once.
    Escalated,
    /// A vendor took a notification.
    Delivered,
    /// A vendor refused or did not answer; it will be tried again.
    Retrying,
    /// Given up on, with the vendor's answer.
    DeadLettered,
}

impl EventKind {
    pub const ALL: [EventKind; 13] = [
        Self::Started,
        Self::AlertsJoined,
        Self::Paged,
        Self::Notice,
        Self::DeadAtOnce,
        Self::Acknowledged,
        Self::Silenced,
        Self::Resolved,
        Self::AckTimedOut,
        Self::Escalated,
        Self::Delivered,
        Self::Retrying,
        Self::DeadLettered,
    ];

    /// The stored name (also the API's).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Started => "started",
            Self::AlertsJoined => "alerts_joined",
            Self::Paged => "paged",
            Self::Notice => "notice",
            Self::DeadAtOnce => "dead_at_once",
            Self::Acknowledged => "acknowledged",
            Self::Silenced => "silenced",
            Self::Resolved => "resolved",
            Self::AckTimedOut => "ack_timed_out",
            Self::Escalated => "escalated",
            Self::Delivered => "delivered",
            Self::Retrying => "retrying",
            Self::DeadLettered => "dead_lettered",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

/// An event to write with a transition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    pub incident_id: i64,
    pub kind: EventKind,
    /// Who did it, when a person or a system did: `alice`, `ack link`, `Alertmanager`.
    pub actor: Option<String>,
    /// The target it concerns, for delivery events.
    pub target: Option<TargetName>,
    /// What a person reads.
    pub detail: String,
}

impl NewEvent {
    pub fn new(incident_id: i64, kind: EventKind, detail: impl Into<String>) -> Self {
        Self {
            incident_id,
            kind,
            actor: None,
            target: None,
            detail: detail.into(),
        }
    }

    pub fn by(mut self, actor: impl Into<String>) -> Self {
        self.actor = Some(actor.into());
        self
    }

    pub fn to(mut self, target: &TargetName) -> Self {
        self.target = Some(target.clone());
        self
    }
}

/// An event as stored, with its time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncidentEvent {
    pub id: i64,
    pub incident_id: i64,
    pub at: Timestamp,
    /// `None` for a kind this relay does not know (written by a newer one).
    pub kind: Option<EventKind>,
    pub kind_name: String,
    pub actor: Option<String>,
    pub target: Option<String>,
    pub detail: String,
}

/// Delivery attempts that get a `retrying` event: the first three, then every tenth (a
/// six-hour vendor outage would otherwise write hundreds per notification).
pub fn retry_is_noted(attempts: u32) -> bool {
    attempts <= 3 || attempts.is_multiple_of(10)
}

/// A delivery event's detail: the notification's kind first (`firing: attempt 1, 80 ms`), so
/// that a page (`firing`) can be told from a notice ([`is_page_delivery`]).
pub fn delivery_detail(kind: NotificationKind, rest: &str) -> String {
    format!("{}: {rest}", kind.as_str())
}

/// What the detail of a delivery event about a page starts with.
pub fn page_delivery_prefix() -> String {
    delivery_detail(NotificationKind::Firing, "")
}

/// Whether a delivery event's detail is about a page (not an acknowledged, silenced or
/// resolved notice).
pub fn is_page_delivery(detail: &str) -> bool {
    detail.starts_with(&page_delivery_prefix())
}

/// Targets as a person reads them: `ntfy.primary, person.alice`.
pub fn list(targets: &[TargetName]) -> String {
    let names: Vec<&str> = targets.iter().map(TargetName::as_str).collect();
    names.join(", ")
}
