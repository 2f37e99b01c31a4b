//! The escalation state machine: `(incident, event, now) -> actions`. No I/O, no clock.
//!
//! - `Plan`: a snapshot of the policy taken when the incident starts (stored with it, so a
//!   policy reload never changes a running incident).
//! - `Incident::start(plan, now) -> (Incident, Vec<Action>)`,
//!   `Incident::handle(&mut self, event, now) -> Vec<Action>`,
//!   `Incident::next_due()`: when the driver must send `Event::Due`.

use serde::{Deserialize, Serialize};

pub use crate::domain::NotificationKind;
use crate::domain::{PolicyName, TargetName, Timestamp};

/// Snapshot of the policy an incident follows for its whole life.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub policy: PolicyName,
    pub steps: Vec<PlannedStep>,
    /// Repeat the last step every `every_ms` after it, at most `times` times (`None` = forever).
    pub repeat: Option<Repeat>,
    pub send_resolved: bool,
    /// An acknowledged incident still firing this long after the acknowledgement escalates
    /// again from the first step (a forgotten ack). `None`: an ack holds until the resolve.
    #[serde(default)]
    pub ack_timeout_ms: Option<u64>,
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
    /// Alertmanager says the alerts are silenced or inhibited; `note` says by whom and until
    /// when, as Alertmanager tells it.
    Silenced { note: String },
    /// Someone asked for the next step now (the console's "Escalate now"): it fires at once,
    /// and the steps after it keep their spacing from it.
    EscalateNow,
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

impl StopReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Resolved => "resolved",
            Self::Acknowledged => "acknowledged",
            Self::Silenced => "silenced",
        }
    }
}

/// Where an incident stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Escalating: more steps (or repeats) may come.
    Escalating,
    /// A human acknowledged or Alertmanager silenced it: no more steps, waiting for resolve.
    Stopped(StopReason),
    /// Over: resolved. A new firing starts a new incident.
    Closed,
}

/// One incident's escalation state; serialised into the store between events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    pub plan: Plan,
    pub started_at: Timestamp,
    pub phase: Phase,
    /// Steps fired so far (the next step to fire is `steps_fired`).
    pub steps_fired: usize,
    /// Repeats of the last step fired so far, and when the last one fired.
    pub repeats_fired: u32,
    pub last_fired_at: Option<Timestamp>,
    /// Every target notified so far, in order, without repeats: who hears the resolve.
    pub notified: Vec<TargetName>,
    /// When escalation stopped (acknowledged, silenced or resolved), and who acknowledged.
    #[serde(default)]
    pub stopped_at: Option<Timestamp>,
    #[serde(default)]
    pub acknowledged_by: Option<String>,
    /// Who silenced it and until when, as Alertmanager said.
    #[serde(default)]
    pub silence_note: Option<String>,
    /// When the current round of escalation started: the start, or the expiry of an
    /// acknowledgement (steps count from here; the identity stays `started_at`).
    #[serde(default)]
    pub round_started_at: Option<Timestamp>,
    /// Fingerprints of every alert that fired in this incident: a new one joining an
    /// acknowledged incident is news for those paged.
    #[serde(default)]
    pub seen: Vec<String>,
    /// What the notifications of the last event should say besides the alerts (set by the
    /// event that produced them, cleared by the next).
    #[serde(default)]
    pub notice: Option<String>,
}

impl Incident {
    /// Starts escalating at `now`: step 0 fires at once when its delay is 0.
    pub fn start(plan: Plan, now: Timestamp) -> (Incident, Vec<Action>) {
        let mut incident = Incident {
            plan,
            started_at: now,
            phase: Phase::Escalating,
            steps_fired: 0,
            repeats_fired: 0,
            last_fired_at: None,
            notified: Vec::new(),
            stopped_at: None,
            acknowledged_by: None,
            silence_note: None,
            round_started_at: None,
            seen: Vec::new(),
            notice: None,
        };
        let actions = incident.fire_due(now);
        (incident, actions)
    }

    pub fn is_escalating(&self) -> bool {
        self.phase == Phase::Escalating
    }

    /// Resolved: a new firing of the same group starts a new incident.
    pub fn is_closed(&self) -> bool {
        self.phase == Phase::Closed
    }

    /// When the next step (or repeat) is due, while escalating.
    pub fn next_due(&self) -> Option<Timestamp> {
        self.next_step().map(|(at, _)| at)
    }

    /// When the next step fires and whom it notifies: the next step of the plan, or past the
    /// last one, its repeat. `None` once nothing more is planned or escalation stopped.
    pub fn next_step(&self) -> Option<(Timestamp, &[TargetName])> {
        if let Some(at) = self.ack_expires() {
            return Some((at, &self.plan.steps.first()?.targets));
        }
        if !self.is_escalating() {
            return None;
        }
        if let Some(step) = self.plan.steps.get(self.steps_fired) {
            return Some((self.at(step.after_ms), &step.targets));
        }
        let repeat = self.plan.repeat.as_ref()?;
        let last_step = self.plan.steps.last()?;
        if repeat.times.is_some_and(|t| self.repeats_fired >= t) {
            return None;
        }
        let last = self.last_fired_at?;
        let at = Timestamp(last.0.saturating_add(ms(repeat.every_ms)));
        Some((at, &last_step.targets))
    }

    /// When an acknowledgement runs out, if the incident is acknowledged and the policy has an
    /// `ack_timeout`.
    fn ack_expires(&self) -> Option<Timestamp> {
        if self.phase != Phase::Stopped(StopReason::Acknowledged) {
            return None;
        }
        let timeout = self.plan.ack_timeout_ms?;
        Some(Timestamp(self.stopped_at?.0.saturating_add(ms(timeout))))
    }

    pub fn handle(&mut self, event: Event, now: Timestamp) -> Vec<Action> {
        self.notice = None;
        match event {
            Event::Due => {
                if self.ack_expires().is_some_and(|at| at <= now) {
                    return self.escalate_again(now);
                }
                if self.is_escalating() {
                    self.fire_due(now)
                } else {
                    Vec::new()
                }
            }
            Event::Resolved => {
                if self.is_closed() {
                    return Vec::new();
                }
                let was_escalating = self.is_escalating();
                self.phase = Phase::Closed;
                self.stopped_at.get_or_insert(now);
                let mut actions = Vec::new();
                if self.plan.send_resolved && !self.notified.is_empty() {
                    actions.push(Action::Notify {
                        step: self.steps_fired.saturating_sub(1),
                        kind: NotificationKind::Resolved,
                        targets: self.notified.clone(),
                    });
                }
                if was_escalating {
                    actions.push(Action::Stopped(StopReason::Resolved));
                }
                actions
            }
            Event::Acknowledged { by } => {
                let actions = self.stop(StopReason::Acknowledged, now);
                if !actions.is_empty() {
                    self.acknowledged_by = Some(by);
                }
                actions
            }
            Event::EscalateNow => self.escalate_now(now),
            Event::Silenced { note } => {
                if self.phase == Phase::Stopped(StopReason::Acknowledged) {
                    // Acknowledged, then silenced: the silence wins over an ack timeout. Those
                    // paged know someone took it; nothing more to tell.
                    self.phase = Phase::Stopped(StopReason::Silenced);
                    self.silence_note = Some(note);
                    return Vec::new();
                }
                let actions = self.stop(StopReason::Silenced, now);
                if !actions.is_empty() {
                    self.silence_note = Some(note);
                }
                actions
            }
        }
    }

    /// Pulls the plan forward so that the next step is due now, and fires it; past the last
    /// step, a repeat now if the policy repeats. Nothing while not escalating, or when
    /// nothing more is planned.
    fn escalate_now(&mut self, now: Timestamp) -> Vec<Action> {
        if !self.is_escalating() {
            return Vec::new();
        }
        if let Some(step) = self.plan.steps.get(self.steps_fired) {
            self.round_started_at = Some(Timestamp(now.0.saturating_sub(ms(step.after_ms))));
            return self.fire_due(now);
        }
        let Some(repeat) = &self.plan.repeat else {
            return Vec::new();
        };
        if repeat.times.is_some_and(|t| self.repeats_fired >= t) || self.last_fired_at.is_none() {
            return Vec::new();
        }
        self.last_fired_at = Some(Timestamp(now.0.saturating_sub(ms(repeat.every_ms))));
        self.fire_due(now)
    }

    /// The acknowledgement ran out and the alerts still fire: the chain starts again from the
    /// first step, saying why.
    fn escalate_again(&mut self, now: Timestamp) -> Vec<Action> {
        let by = self
            .acknowledged_by
            .take()
            .unwrap_or_else(|| "someone".into());
        // Whole minutes (seconds under a minute) read well on a phone.
        let since = self.stopped_at.map_or(String::new(), |at| {
            let secs = u64::try_from((now.0 - at.0) / 1000).unwrap_or(0);
            let secs = if secs >= 60 { secs - secs % 60 } else { secs };
            humantime::format_duration(std::time::Duration::from_secs(secs)).to_string()
        });
        self.phase = Phase::Escalating;
        self.round_started_at = Some(now);
        self.steps_fired = 0;
        self.repeats_fired = 0;
        self.last_fired_at = None;
        self.stopped_at = None;
        let actions = self.fire_due(now);
        self.notice = Some(format!(
            "Acknowledged by {by} {since} ago and still firing: escalating again."
        ));
        actions
    }

    /// Notes the alerts of a repeat webhook. New alerts joining an acknowledged incident are
    /// news: everyone paged hears of them (the chain does not restart; an ack timeout, if the
    /// policy has one, still runs).
    pub fn alerts_joined(&mut self, firing: &[String]) -> Vec<Action> {
        self.notice = None;
        let legacy = self.seen.is_empty();
        let new: Vec<&String> = firing.iter().filter(|f| !self.seen.contains(f)).collect();
        let count = new.len();
        let fresh: Vec<String> = new.into_iter().cloned().collect();
        self.seen.extend(fresh);
        // An incident stored before fingerprints were kept learns them without a page.
        if legacy
            || count == 0
            || self.phase != Phase::Stopped(StopReason::Acknowledged)
            || self.notified.is_empty()
        {
            return Vec::new();
        }
        let by = self.acknowledged_by.as_deref().unwrap_or("someone");
        self.notice = Some(format!(
            "{count} new alert{} joined since {by} acknowledged.",
            if count == 1 { "" } else { "s" }
        ));
        vec![Action::Notify {
            step: self.steps_fired.saturating_sub(1),
            kind: NotificationKind::Firing,
            targets: self.notified.clone(),
        }]
    }

    /// Closes an incident without telling anyone: a silenced one that fires again is over, and
    /// the new firing starts a new incident.
    pub fn close(&mut self, now: Timestamp) {
        self.phase = Phase::Closed;
        self.stopped_at.get_or_insert(now);
    }

    fn stop(&mut self, reason: StopReason, now: Timestamp) -> Vec<Action> {
        if !self.is_escalating() {
            return Vec::new();
        }
        self.phase = Phase::Stopped(reason);
        self.stopped_at = Some(now);
        let mut actions = Vec::new();
        if !self.notified.is_empty() {
            // Everyone paged so far learns that someone is on it, or that it was silenced
            // (and PagerDuty closes its incident: Alertmanager sends no resolve for a silence).
            let kind = match reason {
                StopReason::Silenced => NotificationKind::Silenced,
                _ => NotificationKind::Acknowledged,
            };
            actions.push(Action::Notify {
                step: self.steps_fired.saturating_sub(1),
                kind,
                targets: self.notified.clone(),
            });
        }
        actions.push(Action::Stopped(reason));
        actions
    }

    /// Fires every step due at `now` (several when the relay was down past their times) and
    /// at most one repeat.
    fn fire_due(&mut self, now: Timestamp) -> Vec<Action> {
        let mut actions = Vec::new();
        while let Some(step) = self.plan.steps.get(self.steps_fired) {
            if self.at(step.after_ms) > now {
                return actions;
            }
            let targets = step.targets.clone();
            self.steps_fired += 1;
            self.last_fired_at = Some(now);
            self.remember(&targets);
            actions.push(Action::Notify {
                step: self.steps_fired - 1,
                kind: NotificationKind::Firing,
                targets,
            });
        }
        if actions.is_empty() && self.next_due().is_some_and(|due| due <= now) {
            let step = self.plan.steps.len() - 1;
            let targets = self.plan.steps[step].targets.clone();
            self.repeats_fired += 1;
            self.last_fired_at = Some(now);
            actions.push(Action::Notify {
                step,
                kind: NotificationKind::Firing,
                targets,
            });
        }
        actions
    }

    fn remember(&mut self, targets: &[TargetName]) {
        for target in targets {
            if !self.notified.contains(target) {
                self.notified.push(target.clone());
            }
        }
    }

    fn at(&self, after_ms: u64) -> Timestamp {
        let base = self.round_started_at.unwrap_or(self.started_at);
        Timestamp(base.0.saturating_add(ms(after_ms)))
    }
}

fn ms(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests;
