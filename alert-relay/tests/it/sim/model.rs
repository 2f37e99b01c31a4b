//! The reference model: what the relay must have done, written from the policy as a person
//! reads it (steps at fixed delays from the start, repeats of the last step, a stop ends
//! escalation), independently of the engine. Who is on call is plain arithmetic on UTC
//! shifts of fixed length (shift `k = (t - first) / length`, person `k mod n`), with the
//! model's own list of overrides on top (the newest that covers `t` wins; one that replaces
//! someone applies only while they are the rotation's person). The checker compares the
//! relay's rows and the vendors' requests with it.

use std::collections::{BTreeMap, BTreeSet};

use alert_relay::domain::{Notification, NotificationKind, Timestamp};

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
    /// Vendor targets and people (`person.<name>`, each with an ntfy topic of their own).
    pub targets: &'static [&'static str],
    pub schedules: Vec<Sched>,
    pub critical: Plan,
    pub warning: Plan,
}

/// The simulation's start (2027-01-15 08:00 UTC): rotations are placed relative to it.
pub const T0: Timestamp = Timestamp(1_800_000_000_000);
pub const HOUR: i64 = 60 * MIN;

/// One rotation of a schedule in UTC: `people` take turns of `shift` ms from `first` on.
#[derive(Debug, Clone)]
pub struct Layer {
    pub people: &'static [&'static str],
    pub first: i64,
    pub shift: i64,
}

/// A schedule as the model knows it: UTC, fixed-length shifts, layers (a later one that has
/// begun wins), handoff notices or not.
#[derive(Debug, Clone)]
pub struct Sched {
    pub name: &'static str,
    pub layers: Vec<Layer>,
    pub notices: bool,
}

/// An override as the model keeps it.
#[derive(Debug, Clone)]
pub struct Cover {
    pub id: i64,
    pub schedule: &'static str,
    pub person: &'static str,
    pub replaces: Option<&'static str>,
    pub start: i64,
    pub end: i64,
    pub removed: bool,
}

pub const PEOPLE: &[&str] = &["alice", "bob", "carol"];

/// The target that reaches a person.
pub fn person(name: &str) -> &'static str {
    match name {
        "alice" => "person.alice",
        "bob" => "person.bob",
        "carol" => "person.carol",
        other => panic!("no person {other} in the simulation"),
    }
}

impl Sched {
    /// Whom the rotations put on call at `t`, and when that shift began: plain arithmetic,
    /// `k = (t - first) / shift`, person `k mod n`, for the last layer that has begun.
    fn rotation(&self, t: i64) -> Option<(&'static str, i64)> {
        self.layers.iter().rev().find_map(|l| {
            (t >= l.first).then(|| {
                let k = (t - l.first) / l.shift;
                (
                    l.people[(k as usize) % l.people.len()],
                    l.first + k * l.shift,
                )
            })
        })
    }

    /// Who is on call at `t` and since when their shift counts (an override: from its start,
    /// or the rotation shift's start, or the end of a newer override inside it, whichever is
    /// latest; a rotation shift: from its start, or the end of
    /// an override that covered its beginning), seeing the overrides not removed that end
    /// after `visible_from` (what the relay loads).
    pub fn on_call(
        &self,
        t: i64,
        covers: &[Cover],
        visible_from: i64,
    ) -> Option<(&'static str, i64)> {
        let visible = || {
            covers
                .iter()
                .filter(move |c| !c.removed && c.schedule == self.name && c.end > visible_from)
        };
        let base = self.rotation(t);
        let applies = |c: &Cover, who: Option<&str>| c.replaces.is_none_or(|r| Some(r) == who);
        let covering = visible()
            .filter(|c| c.start <= t && t < c.end && applies(c, base.map(|b| b.0)))
            .max_by_key(|c| c.id);
        if let Some(c) = covering {
            // Back from a newer override that won over this one for a while.
            let back = visible()
                .filter(|p| p.id > c.id && p.end > c.start && p.end <= t)
                .filter(|p| applies(p, self.rotation(p.end - 1).map(|b| b.0)))
                .map(|p| p.end)
                .max()
                .unwrap_or(c.start);
            return Some((
                c.person,
                base.map_or(c.start, |b| b.1).max(c.start).max(back),
            ));
        }
        let (who, mut since) = base?;
        for c in visible() {
            if applies(c, Some(who)) && c.end > since && c.end <= t {
                since = since.max(c.end);
            }
        }
        Some((who, since))
    }

    /// The override that decides who is on call at `t`, if one does (the newest covering one
    /// that applies), seeing those that end after `visible_from`.
    pub fn winner(&self, t: i64, covers: &[Cover], visible_from: i64) -> Option<i64> {
        let base = self.rotation(t).map(|b| b.0);
        covers
            .iter()
            .filter(|c| !c.removed && c.schedule == self.name && c.end > visible_from)
            .filter(|c| c.start <= t && t < c.end)
            .filter(|c| c.replaces.is_none_or(|r| Some(r) == base))
            .map(|c| c.id)
            .max()
    }

    /// The handoff to announce at `now`: the shift under way began within the last hour and
    /// someone else (or nobody) was on call just before it.
    pub fn handoff(&self, now: i64, covers: &[Cover]) -> Option<(&'static str, i64)> {
        let visible_from = now - HOUR;
        let (who, since) = self.on_call(now, covers, visible_from)?;
        if since < now - HOUR {
            return None;
        }
        let before = self.on_call(since - 1, covers, visible_from).map(|b| b.0);
        (before != Some(who)).then_some((who, since))
    }
}

const ALL: &[&str] = &[
    "ntfy.primary",
    "ntfy.secondary",
    "ntfy.manager",
    "slack.ops",
    "pagerduty.cto",
    "person.alice",
    "person.bob",
    "person.carol",
];

pub fn variants() -> Vec<Variant> {
    let warning = Plan {
        steps: vec![(0, vec!["slack.ops"])],
        repeat: None,
        send_resolved: false,
        ack_timeout: None,
    };
    let t0 = T0.0;
    vec![
        Variant {
            name: "shipped-like",
            targets: ALL,
            schedules: vec![
                Sched {
                    name: "primary",
                    layers: vec![Layer {
                        people: &["alice", "bob", "carol"],
                        first: t0,
                        shift: 30 * MIN,
                    }],
                    notices: true,
                },
                // Nobody on call for the first three hours: a gap.
                Sched {
                    name: "night",
                    layers: vec![Layer {
                        people: &["carol", "alice"],
                        first: t0 + 3 * HOUR,
                        shift: HOUR,
                    }],
                    notices: true,
                },
            ],
            critical: Plan {
                steps: vec![
                    (0, vec!["schedule.primary", "slack.ops"]),
                    (15 * MIN, vec!["schedule.night", "ntfy.secondary"]),
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
            schedules: vec![
                // A second layer takes over four hours in.
                Sched {
                    name: "primary",
                    layers: vec![
                        Layer {
                            people: &["bob", "carol", "alice"],
                            first: t0,
                            shift: HOUR,
                        },
                        Layer {
                            people: &["carol", "alice"],
                            first: t0 + 4 * HOUR,
                            shift: 45 * MIN,
                        },
                    ],
                    notices: true,
                },
                Sched {
                    name: "night",
                    layers: vec![Layer {
                        people: &["alice", "bob"],
                        first: t0 + 2 * HOUR,
                        shift: 2 * HOUR,
                    }],
                    notices: false,
                },
            ],
            critical: Plan {
                steps: vec![
                    // In the gap, the next step (a schedule itself) is paged at once.
                    (0, vec!["schedule.night"]),
                    (5 * MIN, vec!["schedule.primary", "slack.ops"]),
                    (10 * MIN, vec!["pagerduty.cto"]),
                ],
                repeat: None,
                send_resolved: true,
                ack_timeout: None,
            },
            warning: warning.clone(),
        },
        Variant {
            name: "primary-only",
            targets: &[
                "ntfy.primary",
                "ntfy.secondary",
                "slack.ops",
                "person.alice",
                "person.bob",
                "person.carol",
            ],
            schedules: vec![Sched {
                name: "primary",
                layers: vec![Layer {
                    people: &["carol", "bob", "alice"],
                    first: t0 + 30 * MIN,
                    shift: 20 * MIN,
                }],
                notices: true,
            }],
            critical: Plan {
                steps: vec![
                    (0, vec!["schedule.primary"]),
                    (10 * MIN, vec!["ntfy.secondary", "slack.ops"]),
                ],
                repeat: Some((15 * MIN, 1)),
                send_resolved: true,
                ack_timeout: Some(20 * MIN),
            },
            warning: warning.clone(),
        },
        Variant {
            name: "fewer-targets",
            targets: &["ntfy.primary", "ntfy.secondary", "slack.ops"],
            schedules: Vec::new(),
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
    let people: Vec<&str> = v
        .targets
        .iter()
        .filter_map(|t| t.strip_prefix("person."))
        .collect();
    if !people.is_empty() {
        out.push_str("people:\n");
        for p in people {
            out.push_str(&format!(
                "  {p}: {{ntfy: {{url: \"http://ntfy.sim\", topic: phone-{p}}}}}\n"
            ));
        }
    }
    if !v.schedules.is_empty() {
        out.push_str("schedules:\n");
        for s in &v.schedules {
            out.push_str(&format!(
                "  {}:\n    time_zone: UTC\n    handoff_notices: {}\n    rotations:\n",
                s.name, s.notices
            ));
            for l in &s.layers {
                // Every rotation begins on the simulation's first day.
                let minutes = (l.first - T0.0) / MIN + 8 * 60;
                assert!(minutes < 24 * 60, "a rotation begins on 2027-01-15");
                out.push_str(&format!(
                    "      - people: [{}]\n        shift: {}m\n        handoff: {{time: \"{:02}:{:02}\"}}\n        start: 2027-01-15\n",
                    l.people.join(", "),
                    l.shift / MIN,
                    minutes / 60,
                    minutes % 60
                ));
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
    /// A handoff notice: its schedule and the start of the shift it announces.
    pub shift: Option<(String, i64)>,
}

impl Key {
    /// The key of a notification as the relay composed it.
    pub fn of(n: &Notification) -> Self {
        Key {
            incident: n.incident_id,
            target: n.target.0.clone(),
            kind: n.kind.into(),
            step: n.step,
            created_at: n.created_at.0,
            news: n.note.is_some(),
            shift: (n.kind == NotificationKind::Handoff).then(|| {
                let schedule = n.policy.0.strip_prefix("schedule.").unwrap_or(&n.policy.0);
                (schedule.to_owned(), n.incident_started_at.0)
            }),
        }
    }

    /// The idempotency key the relay must send it with.
    pub fn sequence_id(&self) -> String {
        match &self.shift {
            Some((schedule, start)) => {
                format!("relay-handoff-{schedule}-{}", start.div_euclid(1000))
            }
            None => format!("relay-{}", self.incident),
        }
    }
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

/// How a firing step that named schedules was resolved at one instant: each schedule's
/// person (`None`: nobody, a gap or a schedule gone), and the next step's targets paged
/// instead when someone was missing.
#[derive(Debug, Clone, Default)]
pub struct Resolution {
    pub schedules: Vec<(&'static str, Option<&'static str>)>,
    pub fallback: Vec<&'static str>,
}

/// Expected rows and the model's incidents.
#[derive(Default)]
pub struct Model {
    pub incidents: BTreeMap<i64, Incident>,
    /// The schedules of the policy file in force.
    pub schedules: Vec<Sched>,
    /// Every override created, removed ones marked.
    pub covers: Vec<Cover>,
    /// Handoffs announced: (schedule, person, shift start).
    pub announced: BTreeSet<(&'static str, &'static str, i64)>,
    /// Notices that an override in force was removed: they tell the person back on call
    /// again, even if their shift was announced when it began.
    pub removal_notices: BTreeSet<Key>,
    /// (incident, step, created at) → how its schedules were resolved.
    pub resolutions: BTreeMap<(i64, usize, i64), Resolution>,
    /// Schedule pages that went to someone other than the rotation's person (an override).
    pub overridden_pages: usize,
    pub expected: BTreeMap<Key, Expectation>,
    /// The order in which rows were owed (to tell rows queued before a stop from after it).
    pub order: BTreeMap<Key, usize>,
    /// Acknowledgements that stopped an incident, by incident (its timeline names each).
    pub acknowledgements: BTreeMap<i64, usize>,
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
    /// A schedule step while nobody was on call in it: dead-lettered at once, saying so.
    NobodyOnCall(&'static str),
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
            let key = self.key(incident, target, kind, step, now);
            let how = if configured.contains(target) {
                Expectation::Deliver
            } else {
                Expectation::DeadAtOnce
            };
            self.owe(key, how);
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

    /// Who is on call in schedule `name` at `now` (`None`: a gap, or no such schedule).
    pub fn who(&self, name: &str, now: Timestamp) -> Option<&'static str> {
        let s = self.schedules.iter().find(|s| s.name == name)?;
        s.on_call(now.0, &self.covers, now.0).map(|(who, _)| who)
    }

    /// A firing step's targets with each `schedule.<name>` turned into the person on call
    /// now; nobody on call: a dead row for the schedule, and the next step's targets (also
    /// resolved, those with nobody left out) instead. Each target once.
    fn page(
        &mut self,
        i: &Incident,
        step: usize,
        targets: &[&'static str],
        now: Timestamp,
    ) -> Vec<&'static str> {
        if !targets.iter().any(|t| t.starts_with("schedule.")) {
            return targets.to_vec();
        }
        let who = |t: &'static str| match t.strip_prefix("schedule.") {
            Some(name) => self.who(name, now).map(person),
            None => Some(t),
        };
        let found: Vec<Option<&'static str>> = targets.iter().map(|t| who(t)).collect();
        let fallback: Vec<&'static str> = i
            .plan
            .steps
            .get(step + 1)
            .map(|(_, next)| next.iter().filter_map(|t| who(t)).collect())
            .unwrap_or_default();
        let mut resolution = Resolution::default();
        let mut out: Vec<&'static str> = Vec::new();
        for (target, person) in targets.iter().zip(found) {
            if let Some(name) = target.strip_prefix("schedule.") {
                let rotation = self
                    .schedules
                    .iter()
                    .find(|s| s.name == name)
                    .and_then(|s| s.rotation(now.0))
                    .map(|(who, _)| self::person(who));
                if person.is_some() && person != rotation {
                    self.overridden_pages += 1;
                }
                resolution
                    .schedules
                    .push((name, person.and_then(|p| p.strip_prefix("person."))));
            }
            match person {
                Some(p) => out.push(p),
                None => {
                    let name = target.strip_prefix("schedule.").expect("a schedule");
                    let key = self.key(i.id, target, Kind::Firing, step, now);
                    self.owe(key, Expectation::NobodyOnCall(name));
                    resolution.fallback.extend(fallback.iter().copied());
                    out.extend(fallback.iter().copied());
                }
            }
        }
        self.resolutions.insert((i.id, step, now.0), resolution);
        let mut unique = Vec::new();
        remember(&mut unique, &out);
        unique
    }

    /// The handoff notices due at `now` that were not sent before (the scheduler's pass).
    pub fn announce(&mut self, now: Timestamp, configured: &BTreeSet<&str>) {
        let due: Vec<(&'static str, &'static str, i64)> = self
            .schedules
            .iter()
            .filter(|s| s.notices)
            .filter_map(|s| {
                s.handoff(now.0, &self.covers)
                    .map(|(p, at)| (s.name, p, at))
            })
            .collect();
        for (schedule, who, since) in due {
            if !self.announced.insert((schedule, who, since)) {
                continue;
            }
            let target = person(who);
            let key = Key {
                incident: 0,
                target: target.to_owned(),
                kind: Kind::Handoff,
                step: 0,
                created_at: now.0,
                news: true,
                shift: Some((schedule.to_owned(), since)),
            };
            let how = if configured.contains(target) {
                Expectation::Deliver
            } else {
                Expectation::DeadAtOnce
            };
            self.owe(key, how);
        }
    }

    /// Whether an override may be created now (the relay checks it against the policy file).
    pub fn add_cover(&mut self, mut cover: Cover, now: Timestamp) -> Option<i64> {
        let known = self.schedules.iter().any(|s| s.name == cover.schedule);
        if !known || cover.end <= now.0 || cover.end <= cover.start {
            return None;
        }
        if cover.replaces == Some(cover.person) {
            return None;
        }
        cover.id = self.covers.len() as i64 + 1;
        let id = cover.id;
        self.covers.push(cover);
        Some(id)
    }

    /// Removes an override; whether there was one by that id. An override in force when it
    /// is removed is a handoff: the person the rotation puts back is told at once (under that
    /// shift's sequence id), and that shift counts as announced.
    pub fn remove_cover(&mut self, id: i64, now: Timestamp, configured: &BTreeSet<&str>) -> bool {
        let Some(index) = self.covers.iter().position(|c| c.id == id && !c.removed) else {
            return false;
        };
        let cover = self.covers[index].clone();
        let schedule = self
            .schedules
            .iter()
            .find(|s| s.name == cover.schedule)
            .cloned();
        let in_force = schedule
            .as_ref()
            .is_some_and(|s| s.winner(now.0, &self.covers, now.0) == Some(id));
        self.covers[index].removed = true;
        let Some(schedule) = schedule.filter(|s| s.notices && in_force) else {
            return true;
        };
        let Some((who, since)) = schedule.on_call(now.0, &self.covers, now.0) else {
            return true;
        };
        if who == cover.person {
            return true;
        }
        self.announced.insert((schedule.name, who, since));
        let target = person(who);
        let key = Key {
            incident: 0,
            target: target.to_owned(),
            kind: Kind::Handoff,
            step: 0,
            created_at: now.0,
            news: true,
            shift: Some((schedule.name.to_owned(), since)),
        };
        self.removal_notices.insert(key.clone());
        let how = if configured.contains(target) {
            Expectation::Deliver
        } else {
            Expectation::DeadAtOnce
        };
        self.owe(key, how);
        true
    }

    fn key(&self, incident: i64, target: &str, kind: Kind, step: usize, now: Timestamp) -> Key {
        Key {
            incident,
            target: target.to_owned(),
            kind,
            step,
            created_at: now.0,
            news: self.news,
            shift: None,
        }
    }

    fn owe(&mut self, key: Key, how: Expectation) {
        let seq = self.order.len();
        self.order.entry(key.clone()).or_insert(seq);
        self.expected.insert(key, how);
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
            let targets = self.page(&i, i.fired, &targets, now);
            self.expect(id, &targets, Kind::Firing, i.fired, now, configured);
            remember(&mut i.notified, &targets);
            i.fired += 1;
            i.last_fired = Some(now);
            fired_any = true;
        }
        if !fired_any && i.next_due().is_some_and(|due| due <= now.0) {
            let last = i.plan.steps.len() - 1;
            let targets = i.plan.steps[last].1.clone();
            let targets = self.page(&i, last, &targets, now);
            self.expect(id, &targets, Kind::Firing, last, now, configured);
            remember(&mut i.notified, &targets);
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
        *self.acknowledgements.entry(id).or_default() += 1;
        self.stop_now(id, now);
        self.expect(id, &notified, Kind::Acknowledged, step, now, configured);
        true
    }

    /// Someone fires the next step now: the plan is pulled forward so that it is due now
    /// (the steps after it keep their spacing); past the last step, a repeat now if one is
    /// left. `false`: nothing to do (not escalating, or nothing more planned).
    pub fn escalate_now(&mut self, id: i64, now: Timestamp, configured: &BTreeSet<&str>) -> bool {
        let Some(i) = self.incidents.get_mut(&id) else {
            return false;
        };
        if !i.escalating() {
            return false;
        }
        if let Some((after, _)) = i.plan.steps.get(i.fired) {
            i.round_start = Timestamp(now.0 - after);
        } else {
            match (i.plan.repeat, i.last_fired) {
                (Some((every, times)), Some(_)) if i.repeats < times => {
                    i.last_fired = Some(Timestamp(now.0 - every));
                }
                _ => return false,
            }
        }
        self.fire(id, now, configured);
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
