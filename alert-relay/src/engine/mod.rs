//! The pure engine: (incident rows, event, inputs, now) → (new rows, outbox rows, effects).
//! No I/O, no clock, no SQL: the application layer loads the rows, calls a function here and
//! commits the [`Transition`] it returns in one store transaction.
//!
//! - [`escalation`]: the incident state machine (`Incident::start`, `handle(event, now)`).
//! - [`links`]: the notification an action asks for, with its acknowledge and silence links.
//! - here: what each event does to the rows — [`webhook`], [`acknowledge`], [`silenced`],
//!   [`due`] — and the [`Transition`] they return.

pub mod escalation;
pub mod events;
pub mod links;
pub mod oncall;

use std::collections::{BTreeMap, BTreeSet};

pub use escalation::{
    Action, Event, Incident, NotificationKind, Phase, Plan, PlannedStep, Repeat, StopReason,
};
pub use events::{EventKind, IncidentEvent, NewEvent};
pub use links::Links;
pub use oncall::{person_target, OnCall, Override, Schedule, Shift};

use crate::domain::{
    AlertGroup, AlertStatus, GroupKey, IncidentKey, Notification, PolicyName, TargetName, Timestamp,
};

/// An incident as stored: its identity, the alerts as last received, its escalation state.
#[derive(Debug, Clone, PartialEq)]
pub struct IncidentRecord {
    pub id: i64,
    /// Random, never repeats: acknowledge links are bound to it.
    pub key: IncidentKey,
    pub group_key: GroupKey,
    pub group: AlertGroup,
    pub machine: Incident,
}

impl IncidentRecord {
    pub fn policy(&self) -> &PolicyName {
        &self.machine.plan.policy
    }
}

/// A notification to queue for its target; `dead` when it can never be sent (its target is
/// no longer configured), with the reason.
#[derive(Debug, Clone, PartialEq)]
pub struct NewOutbox {
    pub notification: Notification,
    pub dead: Option<String>,
}

/// A row change for an incident.
#[derive(Debug, Clone, PartialEq)]
pub enum IncidentWrite {
    Insert(IncidentRecord),
    Update(IncidentRecord),
}

/// Everything one event changes, to be committed together.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Transition {
    pub incidents: Vec<IncidentWrite>,
    pub outbox: Vec<NewOutbox>,
    /// Incidents whose escalation stopped: their firing notifications still waiting for
    /// delivery are superseded (nobody is paged after an acknowledge, silence or resolve).
    pub supersede: Vec<(i64, String)>,
    /// What the incidents' timelines gain.
    pub events: Vec<NewEvent>,
    pub effects: Effects,
}

/// What the caller reports (metrics) and whom it wakes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Effects {
    pub queued: usize,
    /// Notifications dead-lettered at once: their target is no longer configured.
    pub unconfigured: Vec<TargetName>,
    /// One entry per escalation step fired, by policy.
    pub steps: Vec<PolicyName>,
    pub stopped: Vec<StopReason>,
    /// An incident started or changed its next due time: the scheduler must look again.
    pub reschedule: bool,
    /// Schedules a step named while nobody was on call.
    pub nobody_on_call: Vec<String>,
}

impl Effects {
    pub fn merge(&mut self, other: Effects) {
        self.queued += other.queued;
        self.unconfigured.extend(other.unconfigured);
        self.steps.extend(other.steps);
        self.stopped.extend(other.stopped);
        self.reschedule |= other.reschedule;
        self.nobody_on_call.extend(other.nobody_on_call);
    }
}

impl Transition {
    pub fn merge(&mut self, other: Transition) {
        self.incidents.extend(other.incidents);
        self.outbox.extend(other.outbox);
        self.supersede.extend(other.supersede);
        self.events.extend(other.events);
        self.effects.merge(other.effects);
    }
}

/// Why a notification for a target missing from the current policy file is dead-lettered.
pub const UNCONFIGURED: &str =
    "target is no longer configured (removed or renamed in the policy file since the incident started)";

/// What the engine needs besides the rows: how links are built, which targets exist now, and
/// the time of the event.
pub struct Inputs<'a> {
    pub links: &'a Links,
    pub configured: &'a BTreeSet<TargetName>,
    /// The schedules a step may notify (`schedule.<name>`), and the overrides in force.
    pub schedules: &'a BTreeMap<String, Schedule>,
    pub overrides: &'a [Override],
    /// People's Slack member ids, by name: a step's Slack messages mention those it pages.
    pub slack_members: &'a BTreeMap<String, String>,
    pub now: Timestamp,
}

/// What a webhook did, for the answer and the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IngestOutcome {
    /// A new incident started escalating.
    Started,
    /// An open incident got the latest alerts (Alertmanager repeats, HA duplicates).
    Refreshed,
    Resolved,
    /// A resolve for no open incident (already resolved, or never seen).
    Ignored,
}

/// What an acknowledge did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckOutcome {
    Acknowledged,
    /// Already acknowledged, silenced or resolved: nothing changed.
    NotEscalating,
    UnknownIncident,
    /// The link's nonce was used before.
    Replayed,
}

/// Identity for the incident a webhook may start (loaded or drawn by the caller).
#[derive(Debug, Clone, Copy)]
pub struct Fresh {
    pub id: i64,
    pub key: IncidentKey,
}

/// Whether [`webhook`] starts a new incident for `group` (and so needs a fresh id): a firing
/// group with no open incident, or whose open incident was stopped by a silence.
pub fn starts_incident(open: Option<&IncidentRecord>, group: &AlertGroup) -> bool {
    group.status == AlertStatus::Firing
        && open.is_none_or(|i| i.machine.phase == Phase::Stopped(StopReason::Silenced))
}

/// A webhook for `plan`'s policy: `open` is that policy's open incident for the group.
pub fn webhook(
    open: Option<IncidentRecord>,
    plan: &Plan,
    group: AlertGroup,
    fresh: Fresh,
    inputs: &Inputs<'_>,
) -> (IngestOutcome, Transition) {
    let mut t = Transition::default();
    let firing = group.status == AlertStatus::Firing;
    let outcome = match (open, firing) {
        (Some(mut incident), true)
            if incident.machine.phase != Phase::Stopped(StopReason::Silenced) =>
        {
            let known = incident.machine.seen.len();
            let actions = incident.machine.alerts_joined(&firing_fingerprints(&group));
            let joined = incident.machine.seen.len() - known;
            if joined > 0 && known > 0 {
                let detail = format!(
                    "{joined} new alert{} joined ({} firing)",
                    if joined == 1 { "" } else { "s" },
                    incident.machine.seen.len()
                );
                t.events
                    .push(NewEvent::new(incident.id, EventKind::AlertsJoined, detail));
            }
            incident.group = group;
            apply(incident, actions, inputs, &mut t);
            IngestOutcome::Refreshed
        }
        (Some(mut silenced), true) => {
            // Alertmanager sends no firing webhook for silenced alerts: the silence is over,
            // so this is a new incident that pages from the first step.
            silenced.machine.close(inputs.now);
            t.incidents.push(IncidentWrite::Update(silenced));
            start(plan, group, fresh, inputs, &mut t);
            IngestOutcome::Started
        }
        (None, true) => {
            start(plan, group, fresh, inputs, &mut t);
            IngestOutcome::Started
        }
        (Some(mut incident), false) => {
            incident.group = group;
            if !incident.machine.is_closed() {
                t.events.push(
                    NewEvent::new(incident.id, EventKind::Resolved, "the alerts resolved")
                        .by("Alertmanager"),
                );
            }
            let actions = incident.machine.handle(Event::Resolved, inputs.now);
            apply(incident, actions, inputs, &mut t);
            IngestOutcome::Resolved
        }
        (None, false) => IngestOutcome::Ignored,
    };
    (outcome, t)
}

/// The fingerprints of a group's firing alerts.
fn firing_fingerprints(group: &AlertGroup) -> Vec<String> {
    group
        .alerts
        .iter()
        .filter(|a| a.status == AlertStatus::Firing)
        .map(|a| a.fingerprint.0.clone())
        .collect()
}

fn start(plan: &Plan, group: AlertGroup, fresh: Fresh, inputs: &Inputs<'_>, t: &mut Transition) {
    let (mut machine, actions) = Incident::start(plan.clone(), inputs.now);
    machine.seen = firing_fingerprints(&group);
    let mut incident = IncidentRecord {
        id: fresh.id,
        key: fresh.key,
        group_key: group.group_key.clone(),
        group,
        machine,
    };
    let firing = incident.machine.seen.len();
    t.events.push(NewEvent::new(
        incident.id,
        EventKind::Started,
        format!(
            "{firing} alert{} firing, policy {}",
            if firing == 1 { "" } else { "s" },
            incident.policy()
        ),
    ));
    let actions = resolve_schedules(&mut incident, actions, inputs, t);
    t.incidents.push(IncidentWrite::Insert(incident.clone()));
    t.effects.reschedule = true;
    let (_, notes) = notifications(&incident, actions, inputs);
    t.merge(notes);
}

/// A human acknowledged `incident` (ack link, API or CLI).
pub fn acknowledge(
    incident: IncidentRecord,
    by: String,
    inputs: &Inputs<'_>,
) -> (AckOutcome, Transition) {
    if !incident.machine.is_escalating() {
        return (AckOutcome::NotEscalating, Transition::default());
    }
    let mut incident = incident;
    let actions = incident
        .machine
        .handle(Event::Acknowledged { by }, inputs.now);
    let mut t = Transition::default();
    apply(incident, actions, inputs, &mut t);
    (AckOutcome::Acknowledged, t)
}

/// What asking to escalate or resolve by hand did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManualOutcome {
    Done,
    /// Not escalating (acknowledged, silenced, closed), or nothing more planned.
    Nothing,
}

/// Someone fires the incident's next step now (`by`: who).
pub fn escalate_now(
    incident: IncidentRecord,
    by: &str,
    inputs: &Inputs<'_>,
) -> (ManualOutcome, Transition) {
    let mut incident = incident;
    let actions = incident.machine.handle(Event::EscalateNow, inputs.now);
    if actions.is_empty() {
        return (ManualOutcome::Nothing, Transition::default());
    }
    let mut t = Transition::default();
    t.events.push(
        NewEvent::new(
            incident.id,
            EventKind::Escalated,
            "the next step fired at once",
        )
        .by(by),
    );
    apply(incident, actions, inputs, &mut t);
    (ManualOutcome::Done, t)
}

/// Someone resolves the incident by hand (alerts Alertmanager no longer sends): it closes,
/// those paged are told as for a resolve. If the alerts still fire, the next webhook starts
/// a new incident.
pub fn resolve_by(
    incident: IncidentRecord,
    by: &str,
    inputs: &Inputs<'_>,
) -> (ManualOutcome, Transition) {
    if incident.machine.is_closed() {
        return (ManualOutcome::Nothing, Transition::default());
    }
    let mut incident = incident;
    let mut t = Transition::default();
    t.events
        .push(NewEvent::new(incident.id, EventKind::Resolved, "resolved by hand").by(by));
    let actions = incident.machine.handle(Event::Resolved, inputs.now);
    apply(incident, actions, inputs, &mut t);
    (ManualOutcome::Done, t)
}

/// Alertmanager reports the incident's alerts silenced or inhibited (`note`: by whom, until
/// when).
pub fn silenced(incident: IncidentRecord, note: String, inputs: &Inputs<'_>) -> Transition {
    let mut incident = incident;
    let before = incident.machine.phase;
    let actions = incident
        .machine
        .handle(Event::Silenced { note }, inputs.now);
    let mut t = Transition::default();
    // An acknowledged incident turns silenced without telling anyone: still written.
    if actions.is_empty() && incident.machine.phase != before {
        t.events.push(silence_event(&incident));
    }
    if !actions.is_empty() || incident.machine.phase != before {
        apply(incident, actions, inputs, &mut t);
    }
    t
}

/// The incident's next step may be due at `inputs.now`.
pub fn due(incident: IncidentRecord, inputs: &Inputs<'_>) -> Transition {
    let mut incident = incident;
    let before = incident.machine.next_due();
    let acknowledged = incident.machine.phase == Phase::Stopped(StopReason::Acknowledged);
    let actions = incident.machine.handle(Event::Due, inputs.now);
    let mut t = Transition::default();
    if acknowledged && incident.machine.is_escalating() {
        let detail = incident
            .machine
            .notice
            .clone()
            .unwrap_or_else(|| "the acknowledgement ran out: escalating again".into());
        t.events
            .push(NewEvent::new(incident.id, EventKind::AckTimedOut, detail));
    }
    // Written even when nothing fired, so that a stale due time is not picked again.
    let moved = incident.machine.next_due() != before;
    if !actions.is_empty() || moved {
        apply(incident, actions, inputs, &mut t);
    }
    t
}

/// Why a step that names a schedule reaches nobody through it.
fn nobody_on_call(schedule: &str, inputs: &Inputs<'_>, fallback: &[TargetName]) -> String {
    let when = inputs
        .schedules
        .get(schedule)
        .map_or_else(|| inputs.now.to_rfc3339(), |s| s.local(inputs.now));
    let next = if fallback.is_empty() {
        "there is no next step to page instead".to_owned()
    } else {
        let names: Vec<&str> = fallback.iter().map(TargetName::as_str).collect();
        format!(
            "the next step's targets were paged at once instead: {}",
            names.join(", ")
        )
    };
    format!("nobody is on call in schedule {schedule} at {when} (a gap, or the schedule is gone): {next}")
}

/// Turns each `schedule.<name>` of a firing step into whoever is on call now. Nobody on call
/// (a gap): a dead letter that says so, and the next step's targets at once (also resolved),
/// so that the page still reaches someone. `notified` learns the people, not the schedules.
fn resolve_schedules(
    incident: &mut IncidentRecord,
    actions: Vec<Action>,
    inputs: &Inputs<'_>,
    t: &mut Transition,
) -> Vec<Action> {
    let who = |target: &TargetName| -> Result<TargetName, String> {
        let Some(name) = target.as_str().strip_prefix("schedule.") else {
            return Ok(target.clone());
        };
        inputs
            .schedules
            .get(name)
            .and_then(|s| s.on_call(inputs.now, inputs.overrides))
            .map(|shift| person_target(&shift.person))
            .ok_or_else(|| name.to_owned())
    };
    let mut out = Vec::with_capacity(actions.len());
    for action in actions {
        let Action::Notify {
            step,
            kind: NotificationKind::Firing,
            targets,
        } = action
        else {
            out.push(action);
            continue;
        };
        if !targets.iter().any(|t| t.as_str().starts_with("schedule.")) {
            out.push(Action::Notify {
                step,
                kind: NotificationKind::Firing,
                targets,
            });
            continue;
        }
        let mut resolved: Vec<TargetName> = Vec::new();
        for target in &targets {
            match who(target) {
                Ok(person) => resolved.push(person),
                Err(schedule) => {
                    let fallback: Vec<TargetName> = incident
                        .machine
                        .plan
                        .steps
                        .get(step + 1)
                        .map(|s| s.targets.iter().filter_map(|t| who(t).ok()).collect())
                        .unwrap_or_default();
                    let reason = nobody_on_call(&schedule, inputs, &fallback);
                    let notification = inputs.links.compose(
                        incident,
                        target,
                        step,
                        NotificationKind::Firing,
                        inputs.now,
                    );
                    t.events.push(
                        NewEvent::new(incident.id, EventKind::DeadAtOnce, reason.clone())
                            .to(target),
                    );
                    t.outbox.push(NewOutbox {
                        notification,
                        dead: Some(reason),
                    });
                    t.effects.nobody_on_call.push(schedule);
                    resolved.extend(fallback);
                }
            }
        }
        let mut unique: Vec<TargetName> = Vec::new();
        for r in resolved {
            if !unique.contains(&r) {
                unique.push(r);
            }
        }
        let notified = &mut incident.machine.notified;
        notified.retain(|n| !n.as_str().starts_with("schedule."));
        for r in &unique {
            if !notified.contains(r) {
                notified.push(r.clone());
            }
        }
        out.push(Action::Notify {
            step,
            kind: NotificationKind::Firing,
            targets: unique,
        });
    }
    out
}

/// Persists the incident and queues what its actions ask for.
fn apply(
    mut incident: IncidentRecord,
    actions: Vec<Action>,
    inputs: &Inputs<'_>,
    t: &mut Transition,
) {
    let actions = resolve_schedules(&mut incident, actions, inputs, t);
    let (stopped, notes) = notifications(&incident, actions, inputs);
    // A resolve supersedes too when escalation had stopped before (pages about new alerts
    // that joined an acknowledged incident may still wait).
    let stopped = stopped.or(incident.machine.is_closed().then_some(StopReason::Resolved));
    if let Some(reason) = stopped {
        t.supersede
            .push((incident.id, superseded_reason(&incident, reason)));
    }
    t.incidents.push(IncidentWrite::Update(incident));
    t.merge(notes);
}

/// The outbox rows and effects of `actions`; the stop reason if escalation stopped.
fn notifications(
    incident: &IncidentRecord,
    actions: Vec<Action>,
    inputs: &Inputs<'_>,
) -> (Option<StopReason>, Transition) {
    let mut t = Transition::default();
    let mut stopped = None;
    for action in actions {
        match action {
            Action::Notify {
                step,
                kind,
                targets,
            } => {
                if kind == NotificationKind::Firing {
                    t.effects.steps.push(incident.policy().clone());
                }
                t.events
                    .push(notify_event(incident, step, kind, &targets, inputs));
                // The people this step pages, for Slack to mention.
                let mentions: Vec<String> = targets
                    .iter()
                    .filter_map(|t| t.as_str().strip_prefix("person."))
                    .filter_map(|p| inputs.slack_members.get(p).cloned())
                    .collect();
                for target in targets {
                    let mut notification = inputs
                        .links
                        .compose(incident, &target, step, kind, inputs.now);
                    if kind == NotificationKind::Firing && target.as_str().starts_with("slack.") {
                        notification.mentions = mentions.clone();
                    }
                    let configured = inputs.configured.contains(&target);
                    if configured {
                        t.effects.queued += 1;
                    } else {
                        t.effects.unconfigured.push(target);
                    }
                    t.outbox.push(NewOutbox {
                        notification,
                        dead: (!configured).then(|| UNCONFIGURED.to_owned()),
                    });
                }
            }
            Action::Stopped(reason) => {
                t.effects.stopped.push(reason);
                stopped = Some(reason);
                match reason {
                    StopReason::Acknowledged => {
                        let by = incident.machine.acknowledged_by.as_deref();
                        t.events.push(
                            NewEvent::new(incident.id, EventKind::Acknowledged, "acknowledged")
                                .by(by.unwrap_or("someone")),
                        );
                    }
                    StopReason::Silenced => t.events.push(silence_event(incident)),
                    // Written with the webhook that resolved it.
                    StopReason::Resolved => {}
                }
            }
        }
    }
    t.effects.reschedule |= !t.outbox.is_empty();
    (stopped, t)
}

/// The timeline's entry for a step or a notice: whom it reaches, and who it cannot.
fn notify_event(
    incident: &IncidentRecord,
    step: usize,
    kind: NotificationKind,
    targets: &[TargetName],
    inputs: &Inputs<'_>,
) -> NewEvent {
    let (ok, gone): (Vec<TargetName>, Vec<TargetName>) = targets
        .iter()
        .cloned()
        .partition(|t| inputs.configured.contains(t));
    let whom = match (ok.is_empty(), gone.is_empty()) {
        (false, true) => events::list(&ok),
        (false, false) => format!(
            "{}; not configured: {}",
            events::list(&ok),
            events::list(&gone)
        ),
        (true, _) => format!("nobody (not configured: {})", events::list(&gone)),
    };
    let mut detail = match kind {
        NotificationKind::Firing => format!("step {} → {whom}", step + 1),
        other => format!("{} notice → {whom}", other.as_str()),
    };
    if let Some(notice) = incident.machine.notice.as_deref() {
        detail.push_str(&format!(" ({notice})"));
    }
    let kind = match kind {
        NotificationKind::Firing => EventKind::Paged,
        _ => EventKind::Notice,
    };
    NewEvent::new(incident.id, kind, detail)
}

fn silence_event(incident: &IncidentRecord) -> NewEvent {
    let note = incident
        .machine
        .silence_note
        .as_deref()
        .unwrap_or("silenced");
    NewEvent::new(incident.id, EventKind::Silenced, note).by("Alertmanager")
}

fn superseded_reason(incident: &IncidentRecord, reason: StopReason) -> String {
    let at = incident
        .machine
        .stopped_at
        .map(Timestamp::to_rfc3339)
        .unwrap_or_default();
    match (&incident.machine.acknowledged_by, reason) {
        (Some(by), StopReason::Acknowledged) => {
            format!("not sent: acknowledged by {by} at {at} before it could be delivered")
        }
        _ => format!(
            "not sent: the incident was {} at {at} before it could be delivered",
            reason.as_str()
        ),
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod timeline_tests;
