//! The reference model: what the relay must have done, written from the policy as a person
//! reads it (steps at fixed delays from the start, repeats of the last step, a stop ends
//! escalation), independently of the engine. The checker compares the relay's rows and the
//! vendors' requests with it.

use std::collections::{BTreeMap, BTreeSet};

use alert_relay::domain::{NotificationKind, Timestamp};

pub const MIN: i64 = 60_000;

/// One policy as the model knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub steps: Vec<(i64, Vec<&'static str>)>,
    /// Repeat the last step every `.0` ms, at most `.1` times.
    pub repeat: Option<(i64, u32)>,
    pub send_resolved: bool,
    /// An acknowledgement holds this long while firing; then the chain starts again.
    pub ack_timeout: Option<i64>,
}

/// One version of the policy file.
pub struct Variant {
    pub name: &'static str,
    pub targets: &'static [&'static str],
    pub critical: Plan,
    pub warning: Plan,
}

const ALL: &[&str] = &[
    "ntfy.primary",
    "ntfy.secondary",
    "ntfy.manager",
    "slack.ops",
    "pagerduty.cto",
];

pub fn variants() -> Vec<Variant> {
    let warning = Plan {
        steps: vec![(0, vec!["slack.ops"])],
        repeat: None,
        send_resolved: false,
        ack_timeout: None,
    };
    vec![
        Variant {
            name: "shipped-like",
            targets: ALL,
            critical: Plan {
                steps: vec![
                    (0, vec!["ntfy.primary", "slack.ops"]),
                    (15 * MIN, vec!["ntfy.secondary"]),
                    (30 * MIN, vec!["ntfy.manager"]),
                    (45 * MIN, vec!["pagerduty.cto"]),
                ],
                repeat: Some((30 * MIN, 2)),
                send_resolved: true,
                ack_timeout: Some(30 * MIN),
            },
            warning: warning.clone(),
        },
        Variant {
            name: "faster",
            targets: ALL,
            critical: Plan {
                steps: vec![
                    (0, vec!["ntfy.primary"]),
                    (5 * MIN, vec!["ntfy.secondary", "slack.ops"]),
                    (10 * MIN, vec!["pagerduty.cto"]),
                ],
                repeat: None,
                send_resolved: true,
                ack_timeout: None,
            },
            warning: warning.clone(),
        },
        Variant {
            name: "fewer-targets",
            targets: &["ntfy.primary", "ntfy.secondary", "slack.ops"],
            critical: Plan {
                steps: vec![
                    (0, vec!["ntfy.primary"]),
                    (15 * MIN, vec!["ntfy.secondary"]),
                ],
                repeat: Some((20 * MIN, 1)),
                send_resolved: false,
                ack_timeout: Some(10 * MIN),
            },
            warning,
        },
    ]
}

/// The policy file of a variant, as the relay reads it.
pub fn yaml(v: &Variant) -> String {
    let target = |name: &str| {
        let (kind, short) = name.split_once('.').unwrap_or((name, ""));
        match kind {
            "ntfy" => format!("    {short}: {{url: \"http://ntfy.sim\", topic: {short}}}\n"),
            "slack" => format!("    {short}: {{webhook_url: \"http://slack.sim/hook\"}}\n"),
            _ => format!("    {short}: {{routing_key: \"0123456789abcdef0123456789abcdef\"}}\n"),
        }
    };
    let mut out = String::from(
        "server:\n  public_url: http://relay.sim/\n  webhook_auth: {none: true}\n  ack_secret: sim-ack-secret-of-enough-length\n  alertmanager_url: http://am.sim/\n\
         delivery:\n  timeout: 2s\n  initial_backoff: 1s\n  max_backoff: 5m\n  give_up_after: 2h\n  healthcheck_interval: 0s\ntargets:\n",
    );
    for kind in ["ntfy", "slack", "pagerduty"] {
        let names: Vec<&&str> = v
            .targets
            .iter()
            .filter(|t| t.starts_with(&format!("{kind}.")))
            .collect();
        if !names.is_empty() {
            out.push_str(&format!("  {kind}:\n"));
            for name in names {
                out.push_str(&target(name));
            }
        }
    }
    out.push_str("policies:\n");
    for (name, severity, plan) in [
        ("critical", "critical", &v.critical),
        ("warning", "warning", &v.warning),
    ] {
        out.push_str(&format!(
            "  - name: {name}\n    matchers: ['severity=\"{severity}\"']\n    send_resolved: {}\n    steps:\n",
            plan.send_resolved
        ));
        for (after, targets) in &plan.steps {
            out.push_str(&format!(
                "      - after: {}s\n        notify: [{}]\n",
                after / 1000,
                targets.join(", ")
            ));
        }
        if let Some(timeout) = plan.ack_timeout {
            out.push_str(&format!("    ack_timeout: {}s\n", timeout / 1000));
        }
        if let Some((every, times)) = plan.repeat {
            out.push_str(&format!(
                "    repeat: {{every: {}s, times: {times}}}\n",
                every / 1000
            ));
        }
    }
    out
}

/// A notification the relay must have queued (identified as the relay's row is).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Key {
    pub incident: i64,
    pub target: String,
    pub kind: Kind,
    pub step: usize,
    pub created_at: i64,
    /// A page that says why it goes out besides its step (new alerts joined an acknowledged
    /// incident; an acknowledgement ran out).
    pub news: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Firing,
    Resolved,
    Acknowledged,
    Silenced,
    Handoff,
}

impl From<NotificationKind> for Kind {
    fn from(kind: NotificationKind) -> Self {
        match kind {
            NotificationKind::Firing => Kind::Firing,
            NotificationKind::Resolved => Kind::Resolved,
            NotificationKind::Acknowledged => Kind::Acknowledged,
            NotificationKind::Silenced => Kind::Silenced,
            NotificationKind::Handoff => Kind::Handoff,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Escalating,
    /// Acknowledged or silenced at that time; waiting for the resolve.
    Stopped(Timestamp, bool),
    Closed(Timestamp),
}

#[derive(Debug, Clone)]
pub struct Incident {
    pub id: i64,
    pub policy: &'static str,
    pub group: String,
    pub plan: Plan,
    pub start: Timestamp,
    /// When the current round started (the start, or the expiry of an acknowledgement).
    pub round_start: Timestamp,
    /// How many alerts of the group it has seen firing.
    pub seen: usize,
    /// Every stop (acknowledge, silence, resolve), with the model's row count at that time:
    /// rows queued before a stop are superseded by it.
    pub stops: Vec<(Timestamp, usize)>,
    pub fired: usize,
    pub repeats: u32,
    pub last_fired: Option<Timestamp>,
    pub notified: Vec<&'static str>,
    pub phase: Phase,
}

impl Incident {
    pub fn open(&self) -> bool {
        !matches!(self.phase, Phase::Closed(_))
    }

    pub fn escalating(&self) -> bool {
        self.phase == Phase::Escalating
    }

    /// When escalation stopped (any reason), if it did.
    pub fn stopped_at(&self) -> Option<Timestamp> {
        match self.phase {
            Phase::Escalating => None,
            Phase::Stopped(at, _) | Phase::Closed(at) => Some(at),
        }
    }

    /// When an acknowledgement runs out (acknowledged, not silenced, with a timeout).
    pub fn ack_expires(&self) -> Option<i64> {
        match (self.phase, self.plan.ack_timeout) {
            (Phase::Stopped(at, false), Some(timeout)) => Some(at.0 + timeout),
            _ => None,
        }
    }

    pub fn next_due(&self) -> Option<i64> {
        if let Some(at) = self.ack_expires() {
            return Some(at);
        }
        if !self.escalating() {
            return None;
        }
        if let Some((after, _)) = self.plan.steps.get(self.fired) {
            return Some(self.round_start.0 + after);
        }
        let (every, times) = self.plan.repeat?;
        (self.repeats < times).then(|| self.last_fired.map_or(i64::MAX, |t| t.0 + every))
    }
}

/// Expected rows and the model's incidents.
#[derive(Default)]
pub struct Model {
    pub incidents: BTreeMap<i64, Incident>,
    pub expected: BTreeMap<Key, Expectation>,
    /// The order in which rows were owed (to tell rows queued before a stop from after it).
    pub order: BTreeMap<Key, usize>,
    /// Set while the rows being owed are news (see `Key::news`).
    news: bool,
}

/// How an expected row must end up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expectation {
    /// Its target existed when it was queued: delivered, dead-lettered or superseded.
    Deliver,
    /// Its target was not configured: dead-lettered at once.
    DeadAtOnce,
}

impl Model {
    pub fn open_for(&self, policy: &str, group: &str) -> Option<&Incident> {
        self.incidents
            .values()
            .find(|i| i.policy == policy && i.group == group && i.open())
    }

    fn expect(
        &mut self,
        incident: i64,
        targets: &[&'static str],
        kind: Kind,
        step: usize,
        now: Timestamp,
        configured: &BTreeSet<&str>,
    ) {
        for target in targets {
            let key = Key {
                incident,
                target: (*target).to_owned(),
                kind,
                step,
                created_at: now.0,
                news: self.news,
            };
            let how = if configured.contains(target) {
                Expectation::Deliver
            } else {
                Expectation::DeadAtOnce
            };
            let seq = self.order.len();
            self.order.entry(key.clone()).or_insert(seq);
            self.expected.insert(key, how);
        }
    }

    fn stop_now(&mut self, id: i64, now: Timestamp) {
        let seq = self.order.len();
        if let Some(i) = self.incidents.get_mut(&id) {
            i.stops.push((now, seq));
        }
    }

    /// Whether row `key` was queued before one of its incident's stops: `Some(that stop)`.
    pub fn stopped_after(&self, key: &Key) -> Option<Timestamp> {
        let seq = *self.order.get(key)?;
        let incident = self.incidents.get(&key.incident)?;
        incident
            .stops
            .iter()
            .find(|(_, at_seq)| seq < *at_seq)
            .map(|(at, _)| *at)
    }

    /// A new incident at `now`: its first steps fire if due.
    pub fn start(&mut self, incident: Incident, configured: &BTreeSet<&str>) {
        let id = incident.id;
        let now = incident.start;
        self.incidents.insert(id, incident);
        self.fire(id, now, configured);
    }

    /// Fires what is due at `now`: every step whose time has come, else at most one repeat.
    pub fn fire(&mut self, id: i64, now: Timestamp, configured: &BTreeSet<&str>) {
        let Some(mut i) = self.incidents.get(&id).cloned() else {
            return;
        };
        if !i.escalating() {
            return;
        }
        let mut fired_any = false;
        while let Some((after, targets)) = i.plan.steps.get(i.fired).cloned() {
            if i.round_start.0 + after > now.0 {
                break;
            }
            self.expect(id, &targets, Kind::Firing, i.fired, now, configured);
            remember(&mut i.notified, &targets);
            i.fired += 1;
            i.last_fired = Some(now);
            fired_any = true;
        }
        if !fired_any && i.next_due().is_some_and(|due| due <= now.0) {
            let last = i.plan.steps.len() - 1;
            let targets = i.plan.steps[last].1.clone();
            self.expect(id, &targets, Kind::Firing, last, now, configured);
            i.repeats += 1;
            i.last_fired = Some(now);
        }
        self.incidents.insert(id, i);
    }

    pub fn acknowledge(&mut self, id: i64, now: Timestamp, configured: &BTreeSet<&str>) -> bool {
        let Some(i) = self.incidents.get_mut(&id) else {
            return false;
        };
        if !i.escalating() {
            return false;
        }
        i.phase = Phase::Stopped(now, false);
        let (notified, step) = (i.notified.clone(), i.fired.saturating_sub(1));
        self.stop_now(id, now);
        self.expect(id, &notified, Kind::Acknowledged, step, now, configured);
        true
    }

    /// The acknowledgement ran out: the chain starts again from the first step.
    pub fn expire_ack(&mut self, id: i64, now: Timestamp, configured: &BTreeSet<&str>) {
        let Some(i) = self.incidents.get_mut(&id) else {
            return;
        };
        i.phase = Phase::Escalating;
        i.round_start = now;
        i.fired = 0;
        i.repeats = 0;
        i.last_fired = None;
        self.news = true;
        self.fire(id, now, configured);
        self.news = false;
    }

    /// A repeat with `alerts` alerts firing: new ones joining an acknowledged incident are
    /// paged to everyone notified.
    pub fn refresh(&mut self, id: i64, alerts: usize, now: Timestamp, configured: &BTreeSet<&str>) {
        let Some(i) = self.incidents.get_mut(&id) else {
            return;
        };
        let new = alerts > i.seen;
        i.seen = i.seen.max(alerts);
        if new && matches!(i.phase, Phase::Stopped(_, false)) && !i.notified.is_empty() {
            let (notified, step) = (i.notified.clone(), i.fired.saturating_sub(1));
            self.news = true;
            self.expect(id, &notified, Kind::Firing, step, now, configured);
            self.news = false;
        }
    }

    /// Alertmanager reports it silenced: escalation stops, and those paged are told.
    pub fn silence(&mut self, id: i64, now: Timestamp, configured: &BTreeSet<&str>) {
        let Some(i) = self.incidents.get_mut(&id) else {
            return;
        };
        if let Phase::Stopped(at, false) = i.phase {
            // Acknowledged, then silenced: nobody is told; the silence wins over the timeout.
            i.phase = Phase::Stopped(at, true);
            return;
        }
        if !i.escalating() {
            return;
        }
        i.phase = Phase::Stopped(now, true);
        let (notified, step) = (i.notified.clone(), i.fired.saturating_sub(1));
        self.stop_now(id, now);
        self.expect(id, &notified, Kind::Silenced, step, now, configured);
    }

    pub fn resolve(&mut self, id: i64, now: Timestamp, configured: &BTreeSet<&str>) {
        let Some(i) = self.incidents.get_mut(&id) else {
            return;
        };
        let stopped = i.stopped_at().unwrap_or(now);
        i.phase = Phase::Closed(stopped);
        let notices = (i.plan.send_resolved && !i.notified.is_empty())
            .then(|| (i.notified.clone(), i.fired.saturating_sub(1)));
        self.stop_now(id, now);
        if let Some((notified, step)) = notices {
            self.expect(id, &notified, Kind::Resolved, step, now, configured);
        }
    }

    /// A silenced incident that fires again is over; the firing starts a new one.
    pub fn close_silenced(&mut self, id: i64, now: Timestamp) {
        if let Some(i) = self.incidents.get_mut(&id) {
            let at = i.stopped_at().unwrap_or(now);
            i.phase = Phase::Closed(at);
        }
    }
}

fn remember(notified: &mut Vec<&'static str>, targets: &[&'static str]) {
    for t in targets {
        if !notified.contains(t) {
            notified.push(t);
        }
    }
}
