//! Deterministic simulation of the application layer, in the manner of FoundationDB's and
//! TigerBeetle's: one seed decides a schedule over virtual time of webhooks (firing, repeats,
//! new alerts joining a group, resolves), acknowledgements, silences, policy reloads, vendor
//! answers (2xx, 429 with Retry-After, 5xx, 4xx, timeouts, accepted-but-unanswered),
//! crashes (every in-memory structure dropped, the store reopened), and on-call schedules:
//! steps that page `schedule.<name>` (a gap before a rotation begins, a later layer, a
//! schedule gone after a reload), overrides created and removed at random, and the handoff
//! loop's notices. After every step the invariants in [`check`] are checked against the
//! reference [`model`]. It runs on SQLite, and on PostgreSQL (a database per seed;
//! `RELAY_TEST_DATABASE_URL`), where a crash drops the relay and its pool and opens a new
//! store on the same database.
//!
//! `SIM_SEEDS=N` runs N seeds (default 1000; `SIM_PG_SEEDS`, default 50, on PostgreSQL),
//! `SIM_SEED=S` replays one exactly, `SIM_STEPS` sets the steps per seed (default 60). A
//! failure prints its seed and its trace.

mod check;
mod faults;
mod model;
mod replicas;
mod world;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use alert_relay::app::{OverrideError, Relay, Step};
use alert_relay::config::Config;
use alert_relay::domain::{
    Alert, AlertGroup, AlertStatus, Fingerprint, GroupKey, Labels, TargetName, Timestamp,
};
use alert_relay::engine::Override;
use alert_relay::engine::{AckOutcome, IngestOutcome};
use alert_relay::store::postgres::scratch::ScratchDatabase;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use model::{Cover, Incident, Model, Phase, Variant, MIN, PEOPLE, T0};
use replicas::{Faults, Replica};
use world::{Mode, World};

const GROUPS: usize = 6;
/// Delivery attempts per target per pass at most; more means a queue that never drains.
const MAX_ATTEMPTS: usize = 400;

struct Sim {
    rng: StdRng,
    dir: PathBuf,
    world: World,
    variants: Vec<Variant>,
    variant: usize,
    /// One relay on SQLite; two on one PostgreSQL database.
    replicas: Vec<Replica>,
    /// The replica a stall is armed for (one fault at a time).
    armed: Option<usize>,
    /// Replica faults this seed reached.
    faults: Faults,
    /// The vendor request (index in `received`) and replica of an attempt a stall left
    /// unrecorded, until it is recorded or abandoned.
    in_flight: Option<(usize, usize)>,
    /// Lets a transaction stalled by the seed go on.
    releases: Vec<std::sync::mpsc::Sender<()>>,
    /// Until then, time passes a second at a time (after a fault or a crash on PostgreSQL,
    /// when a lease may hold a target up: each second is a pass of the relays' loops).
    fine_until: Timestamp,
    model: Model,
    now: Timestamp,
    /// Alerts currently in each group (new ones join over time).
    alerts: Vec<usize>,
    trace: Vec<String>,
    observer: Option<check::Observer>,
    /// The PostgreSQL database the relay keeps its state in; `None`: SQLite in `dir`.
    database: Option<Arc<ScratchDatabase>>,
    /// The relay's handoff loop has been woken: time passed, an override changed, the policy
    /// reloaded, the relay (re)started.
    handoffs_woken: bool,
}

fn group_key(g: usize) -> String {
    format!("{{}}:{{alertname=\"Alert{g}\"}}")
}

fn policy_of(g: usize) -> &'static str {
    if g == GROUPS - 1 {
        "warning"
    } else {
        "critical"
    }
}

impl Sim {
    fn new(seed: u64, dir: &Path, database: Option<Arc<ScratchDatabase>>) -> Self {
        let mut sim = Sim {
            rng: StdRng::seed_from_u64(seed),
            dir: dir.to_owned(),
            world: World::default(),
            variants: model::variants(),
            variant: 0,
            replicas: Vec::new(),
            armed: None,
            faults: Faults::default(),
            in_flight: None,
            releases: Vec::new(),
            fine_until: T0,
            model: Model::default(),
            now: T0,
            alerts: vec![1; GROUPS],
            trace: Vec::new(),
            observer: None,
            database,
            handoffs_woken: true,
        };
        sim.world.state().now = T0;
        sim.model.schedules = sim.variants[0].schedules.clone();
        let replicas = if sim.database.is_some() { 2 } else { 1 };
        for r in 0..replicas {
            let replica = sim.boot(r);
            sim.replicas.push(replica);
        }
        sim.observer = Some(match &sim.database {
            Some(db) => check::Observer::postgres(db.open()),
            None => check::Observer::open(dir),
        });
        sim
    }

    fn config(&self) -> Config {
        let text = model::yaml(&self.variants[self.variant]);
        Config::parse(&text, Path::new("sim.yml"), &|_| None).unwrap_or_else(|e| panic!("{e}"))
    }

    fn configured(&self) -> BTreeSet<&'static str> {
        self.variants[self.variant]
            .targets
            .iter()
            .copied()
            .collect()
    }

    /// Starts (or restarts after a crash) replica `r` on the same directory or database.
    fn boot(&mut self, r: usize) -> Replica {
        let seed = self.rng.random();
        // Replicas share the data directory (the acknowledge key) but not the state.
        let mut builder = Relay::builder(self.config(), &self.dir)
            .peers(Arc::new(self.world.for_replica(r)))
            .seed(seed)
            .started(self.now);
        let mut store = None;
        if let Some(db) = &self.database {
            let opened = alert_relay::store::PostgresStore::open_with(db.url(), replicas::limits())
                .unwrap_or_else(|e| panic!("cannot open the store: {e}"));
            let faulty = Arc::new(faults::FaultyStore::new(opened));
            builder = builder.store(faulty.clone());
            store = Some(faulty);
        }
        let relay = Arc::new(builder.build().expect("relay"));
        Replica {
            workers: relay.workers(),
            relay,
            store,
            fault: None,
            stale_config: false,
        }
    }

    /// A running relay (the first): for what any replica answers alike.
    fn relay(&self) -> &Relay {
        let r = self.running()[0];
        &self.replicas[r].relay
    }

    fn group(&self, g: usize, status: AlertStatus) -> AlertGroup {
        let severity = if policy_of(g) == "warning" {
            "warning"
        } else {
            "critical"
        };
        let labels: Labels = [
            ("alertname", format!("Alert{g}")),
            ("severity", severity.into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let alerts = (0..self.alerts[g])
            .map(|a| {
                let mut labels = labels.clone();
                labels.insert("instance".into(), format!("host-{a}"));
                Alert {
                    status,
                    labels,
                    annotations: Labels::new(),
                    starts_at: Some(T0.to_rfc3339()),
                    ends_at: None,
                    generator_url: None,
                    fingerprint: Fingerprint(format!("fp-{g}-{a}")),
                }
            })
            .collect();
        AlertGroup {
            group_key: GroupKey(group_key(g)),
            status,
            receiver: "relay".into(),
            group_labels: [("alertname".to_owned(), format!("Alert{g}"))].into(),
            common_labels: labels,
            common_annotations: Labels::new(),
            external_url: None,
            truncated_alerts: 0,
            alerts,
        }
    }

    async fn webhook(&mut self, g: usize, status: AlertStatus) -> Result<(), String> {
        let policy = policy_of(g);
        let key = group_key(g);
        if status == AlertStatus::Firing {
            // Alertmanager sends no firing webhook while a silence holds: it has expired.
            self.world.state().silenced.remove(&key);
        }
        let open = self.model.open_for(policy, &key).cloned();
        let r = self.pick();
        let ingested = self.replicas[r]
            .relay
            .ingest(None, self.group(g, status), self.now)
            .await
            .map_err(|e| format!("ingest failed on replica {r}: {e}"))?;
        let outcome = ingested.outcome;
        let configured = self.configured();
        let silenced = open
            .as_ref()
            .is_some_and(|i| matches!(i.phase, Phase::Stopped(_, true)));
        let expected = match (&open, status) {
            (Some(_), AlertStatus::Firing) if !silenced => IngestOutcome::Refreshed,
            (_, AlertStatus::Firing) => IngestOutcome::Started,
            (Some(_), AlertStatus::Resolved) => IngestOutcome::Resolved,
            (None, AlertStatus::Resolved) => IngestOutcome::Ignored,
        };
        if outcome != Some(expected) {
            return Err(format!(
                "webhook {status:?} for group {g}: {outcome:?}, the model says {expected:?}"
            ));
        }
        match expected {
            IngestOutcome::Started => {
                if let Some(old) = &open {
                    self.model.close_silenced(old.id, self.now);
                }
                // The id the store gave it (a sequence on PostgreSQL may skip one that a
                // transaction ended by the server had taken).
                let id = self
                    .observer
                    .as_ref()
                    .expect("observer")
                    .open_incidents()
                    .into_iter()
                    .find(|(_, p, k)| p == policy && *k == key)
                    .map(|(id, _, _)| id)
                    .ok_or_else(|| format!("started, but no open incident for group {g}"))?;
                let v = &self.variants[self.variant];
                let plan = if policy == "warning" {
                    v.warning.clone()
                } else {
                    v.critical.clone()
                };
                self.model.start(
                    Incident {
                        id,
                        policy,
                        group: key,
                        plan,
                        start: self.now,
                        round_start: self.now,
                        seen: self.alerts[g],
                        stops: Vec::new(),
                        fired: 0,
                        repeats: 0,
                        last_fired: None,
                        notified: Vec::new(),
                        phase: Phase::Escalating,
                    },
                    &configured,
                );
            }
            IngestOutcome::Resolved => {
                if let Some(i) = &open {
                    self.model.resolve(i.id, self.now, &configured);
                }
            }
            IngestOutcome::Refreshed => {
                if let Some(i) = &open {
                    self.model
                        .refresh(i.id, self.alerts[g], self.now, &configured);
                }
            }
            IngestOutcome::Ignored => {}
        }
        self.duplicate(r, g, status).await
    }

    /// On several replicas, the other Alertmanager of a pair may send the same webhook to
    /// another replica: it finds what the first stored (a refresh, or nothing to resolve).
    async fn duplicate(
        &mut self,
        first: usize,
        g: usize,
        status: AlertStatus,
    ) -> Result<(), String> {
        let others: Vec<usize> = self.running().into_iter().filter(|r| *r != first).collect();
        if others.is_empty() || !self.rng.random_bool(0.25) {
            return Ok(());
        }
        let r = others[self.rng.random_range(0..others.len())];
        self.trace.push(format!("  and to replica {r}"));
        let ingested = self.replicas[r]
            .relay
            .ingest(None, self.group(g, status), self.now)
            .await
            .map_err(|e| format!("ingest failed on replica {r}: {e}"))?;
        let expected = match status {
            AlertStatus::Firing => IngestOutcome::Refreshed,
            AlertStatus::Resolved => IngestOutcome::Ignored,
        };
        if ingested.outcome != Some(expected) {
            return Err(format!(
                "the same webhook again on replica {r}: {:?}, expected {expected:?}",
                ingested.outcome
            ));
        }
        Ok(())
    }

    async fn acknowledge(&mut self, id: i64) -> Result<(), String> {
        let r = self.pick();
        let outcome = self.replicas[r]
            .relay
            .acknowledge(id, "sim".into(), self.now)
            .await
            .map_err(|e| format!("acknowledge failed: {e}"))?;
        let configured = self.configured();
        let expected = match self.model.incidents.get(&id) {
            None => AckOutcome::UnknownIncident,
            Some(i) if i.escalating() => AckOutcome::Acknowledged,
            Some(_) => AckOutcome::NotEscalating,
        };
        if outcome != expected {
            return Err(format!(
                "acknowledge {id}: {outcome:?}, the model says {expected:?}"
            ));
        }
        if expected == AckOutcome::Acknowledged {
            self.model.acknowledge(id, self.now, &configured);
        }
        Ok(())
    }

    /// What the scheduler and the delivery workers do at `now`.
    async fn pump(&mut self) -> Result<(), String> {
        self.world.state().now = self.now;
        // The model first: silences stop due incidents, then due steps fire.
        let configured = self.configured();
        let (silenced, am_down) = {
            let s = self.world.state();
            (s.silenced.clone(), s.alertmanager_down)
        };
        let due: Vec<i64> = self
            .model
            .incidents
            .values()
            .filter(|i| i.next_due().is_some_and(|d| d <= self.now.0))
            .map(|i| i.id)
            .collect();
        for id in due {
            let group = self.model.incidents[&id].group.clone();
            let acknowledged = self.model.incidents[&id].ack_expires().is_some();
            if !am_down && silenced.contains(&group) {
                self.model.silence(id, self.now, &configured);
            } else if acknowledged {
                self.model.expire_ack(id, self.now, &configured);
            } else {
                self.model.fire(id, self.now, &configured);
            }
        }
        // Every replica that is not stalled takes its loops' pass; one cut off from the
        // database fails in each (and must send nothing).
        let mut order = self.passing();
        let passing = order.len();
        if passing > 1 {
            order.rotate_left(self.rng.random_range(0..passing));
        }
        let sent_before = self.world.state().received.len();
        let cut = (0..self.replicas.len())
            .find(|r| matches!(self.replicas[*r].fault, Some(replicas::Fault::Cut)));
        for &r in &order {
            let fired = self.replicas[r].relay.fire_due(self.now).await;
            if let (Err(e), true) = (fired, self.replicas[r].running()) {
                return Err(format!("fire_due failed on replica {r}: {e}"));
            }
        }
        // The handoff loop's pass, when something woke it.
        if std::mem::take(&mut self.handoffs_woken) {
            self.model.announce(self.now, &configured);
            for &r in &order {
                let announced = self.replicas[r].relay.announce_handoffs(self.now).await;
                if let (Err(e), true) = (announced, self.replicas[r].running()) {
                    return Err(format!("announce_handoffs failed on replica {r}: {e}"));
                }
            }
        }
        for r in order {
            if !self.replicas[r].running() {
                if let Err(e) = self.deliveries(r).await {
                    self.trace.push(format!("  replica {r}, cut off: {e}"));
                }
                continue;
            }
            self.deliveries(r).await?;
        }
        if let Some(r) = cut {
            let s = self.world.state();
            if let Some(got) = s.received[sent_before..].iter().find(|g| g.replica == r) {
                return Err(format!(
                    "a replica cut off from the database sent a page: {got:?}"
                ));
            }
        }
        Ok(())
    }

    /// Replica `r`'s delivery workers, each until its queue is empty or waits.
    async fn deliveries(&mut self, r: usize) -> Result<(), String> {
        // A worker whose queue is empty has nothing to do (it would answer `Empty`).
        let pending = self.observer.as_mut().map(check::Observer::pending_targets);
        let mut i = 0;
        while i < self.replicas[r].workers.len() {
            let worker = self.replicas[r].workers[i].clone();
            if pending
                .as_ref()
                .is_some_and(|p| !p.contains(worker.target.as_str()))
            {
                i += 1;
                continue;
            }
            let mut attempts = 0;
            loop {
                let Some(step) = self.deliver(r, &worker).await? else {
                    // Stalled: it takes no step until it resumes.
                    return Ok(());
                };
                if std::mem::take(&mut self.world.state().crash_requested) {
                    self.trace
                        .push(format!("  crash after {} accepted a page", worker.target));
                    self.crash_replica(r).await;
                    break;
                }
                match step {
                    Step::Delivered | Step::Retrying(_) | Step::DeadLettered => attempts += 1,
                    Step::Deferred(_) | Step::Empty => break,
                }
                if attempts > MAX_ATTEMPTS {
                    return Err(format!("{}'s queue does not drain", worker.target));
                }
            }
            i += 1;
        }
        Ok(())
    }

    /// Replica `r` dies and starts again on the same directory or database: everything in
    /// its memory is lost (a lease it held runs out by itself).
    async fn crash_replica(&mut self, r: usize) {
        self.handoffs_woken = true;
        if self.replicas.len() > 1 {
            self.fine_until = self.now.plus(std::time::Duration::from_secs(20));
        }
        // The old one goes first: its data directory (SQLite) is free only then.
        drop(self.replicas.remove(r));
        let replica = self.boot(r);
        self.replicas.insert(r, replica);
        self.replicas[r]
            .relay
            .forget_removed_targets(self.now)
            .await;
    }

    async fn step(&mut self) -> Result<(), String> {
        // No two events share a millisecond (Alertmanager's webhooks for a group are seconds
        // apart); the order of events within one is the schedule's.
        self.now = Timestamp(self.now.0 + 1);
        // Replica faults only where there are replicas (SQLite's seeds run as before).
        let rolls = if self.replicas.len() > 1 { 112 } else { 106 };
        let roll = self.rng.random_range(0..rolls);
        let g = self.rng.random_range(0..GROUPS);
        match roll {
            0..=19 => {
                if self.rng.random_bool(0.3) {
                    self.alerts[g] = (self.alerts[g] + 1).min(4);
                }
                self.trace
                    .push(format!("fire group {g} ({} alerts)", self.alerts[g]));
                self.webhook(g, AlertStatus::Firing).await?;
            }
            20..=27 => {
                self.trace.push(format!("resolve group {g}"));
                self.webhook(g, AlertStatus::Resolved).await?;
                self.alerts[g] = 1;
            }
            28..=33 => {
                let last = self
                    .model
                    .incidents
                    .keys()
                    .next_back()
                    .copied()
                    .unwrap_or(0);
                let id = self.rng.random_range(1..=last + 1);
                self.trace.push(format!("acknowledge incident {id}"));
                self.acknowledge(id).await?;
            }
            34 => {
                let forget = self.rng.random_bool(0.5);
                self.trace.push(format!(
                    "alertmanager {} group {g}",
                    if forget { "forgets" } else { "remembers" }
                ));
                let mut s = self.world.state();
                if forget {
                    s.forgotten.insert(group_key(g));
                } else {
                    s.forgotten.remove(&group_key(g));
                }
            }
            35..=38 => {
                let silence = self.rng.random_bool(0.7);
                self.trace.push(format!(
                    "{} group {g}",
                    if silence { "silence" } else { "unsilence" }
                ));
                let mut s = self.world.state();
                if silence {
                    s.silenced.insert(group_key(g));
                } else {
                    s.silenced.remove(&group_key(g));
                }
            }
            39..=46 => {
                let targets = self.variants[0].targets;
                let target = targets[self.rng.random_range(0..targets.len())];
                let mode = match self.rng.random_range(0..12) {
                    0..=3 => Mode::Healthy,
                    4 => Mode::Down,
                    5 => Mode::RateLimited(self.rng.random_range(1..=600)),
                    6 => Mode::Refusing,
                    7 => Mode::Timeout,
                    8 => Mode::AcceptThenTimeout,
                    9 => Mode::AcceptThenCrash,
                    _ => Mode::Flaky,
                };
                self.trace.push(format!("{target} becomes {mode:?}"));
                self.world
                    .state()
                    .modes
                    .insert(TargetName::from(target), mode);
            }
            47..=48 => {
                let mut s = self.world.state();
                s.alertmanager_down = !s.alertmanager_down;
                self.trace
                    .push(format!("alertmanager down: {}", s.alertmanager_down));
            }
            49..=51 => {
                self.variant = self.rng.random_range(0..self.variants.len());
                self.trace
                    .push(format!("reload to {}", self.variants[self.variant].name));
                self.model.schedules = self.variants[self.variant].schedules.clone();
                for r in 0..self.replicas.len() {
                    if !self.replicas[r].running() {
                        // A stalled replica reloads when it resumes (SIGHUP waits too).
                        self.replicas[r].stale_config = true;
                        continue;
                    }
                    self.replicas[r]
                        .relay
                        .apply(self.config())
                        .map_err(|e| format!("reload refused: {e}"))?;
                    self.replicas[r].workers = self.replicas[r].relay.workers();
                    self.replicas[r]
                        .relay
                        .forget_removed_targets(self.now)
                        .await;
                }
                self.handoffs_woken = true;
                self.compare_on_call().await?;
            }
            52..=54 => {
                let r = self.pick();
                self.trace.push(format!("crash and restart replica {r}"));
                self.crash_replica(r).await;
            }
            106..=111 => self.fault(roll, g).await?,
            96..=99 => self.by_hand(roll).await?,
            100..=103 => {
                self.add_override().await?;
                self.handoffs_woken = true;
                self.compare_on_call().await?;
            }
            104..=105 => {
                let id = self
                    .rng
                    .random_range(1..=self.model.covers.len() as i64 + 1);
                self.trace.push(format!("remove override {id}"));
                let removed = self
                    .relay()
                    .remove_override(id, self.now)
                    .await
                    .map_err(|e| format!("remove_override failed: {e}"))?;
                let configured = self.configured();
                let expected = self.model.remove_cover(id, self.now, &configured);
                self.handoffs_woken = true;
                self.compare_on_call().await?;
                if removed != expected {
                    return Err(format!(
                        "remove override {id}: {removed}, the model says {expected}"
                    ));
                }
            }
            _ => {
                let dt = match self.rng.random_range(0..20) {
                    0..=9 => self.rng.random_range(1_000..60_000),
                    10..=16 => self.rng.random_range(MIN..20 * MIN),
                    _ => self.rng.random_range(20 * MIN..120 * MIN),
                };
                let fine = self.now < self.fine_until || self.faulty().is_some();
                let dt = if fine { 1_000 } else { dt };
                self.now = Timestamp(self.now.0 + dt);
                self.handoffs_woken = true;
                self.trace.push(format!("advance {}s", dt / 1000));
            }
        }
        self.pump().await
    }

    /// Someone escalates (96, 97) or resolves (98, 99) an incident by hand, from the console.
    async fn by_hand(&mut self, roll: usize) -> Result<(), String> {
        let last = self
            .model
            .incidents
            .keys()
            .next_back()
            .copied()
            .unwrap_or(0);
        let id = self.rng.random_range(1..=last + 1);
        let escalate = roll <= 97;
        self.trace.push(format!(
            "{} incident {id} by hand",
            if escalate { "escalate" } else { "resolve" }
        ));
        let r = self.pick();
        let relay = &self.replicas[r].relay;
        let done = if escalate {
            relay.escalate_now(id, "sim", self.now).await
        } else {
            relay.resolve_by_hand(id, "sim", self.now).await
        };
        let configured = self.configured();
        let known = self.model.incidents.contains_key(&id);
        let expected = match (known, escalate) {
            (false, _) => None,
            (true, true) => Some(self.model.escalate_now(id, self.now, &configured)),
            (true, false) => {
                let open = self.model.incidents[&id].open();
                if open {
                    self.model.resolve(id, self.now, &configured);
                }
                Some(open)
            }
        };
        use alert_relay::app::ManualError;
        use alert_relay::engine::ManualOutcome;
        match (done, expected) {
            (Err(ManualError::Unknown(_)), None) => Ok(()),
            (Ok(ManualOutcome::Done), Some(true)) | (Ok(ManualOutcome::Nothing), Some(false)) => {
                Ok(())
            }
            (got, want) => Err(format!(
                "by hand on incident {id}: {got:?}, the model says done: {want:?}"
            )),
        }
    }

    /// Someone covers a schedule (for everyone, or in place of one person) over a window
    /// around now.
    async fn add_override(&mut self) -> Result<(), String> {
        let schedule = ["primary", "night"][self.rng.random_range(0..2)];
        let person = PEOPLE[self.rng.random_range(0..PEOPLE.len())];
        let replaces = self
            .rng
            .random_bool(0.3)
            .then(|| PEOPLE[self.rng.random_range(0..PEOPLE.len())])
            .filter(|r| *r != person);
        let start = self.now.0 + self.rng.random_range(-90 * MIN..60 * MIN);
        let end = start + self.rng.random_range(5 * MIN..150 * MIN);
        self.trace.push(format!(
            "override: {person} covers {schedule}{} from {}s to {}s",
            replaces.map_or(String::new(), |r| format!(" for {r}")),
            (start - self.now.0) / 1000,
            (end - self.now.0) / 1000
        ));
        let created = self
            .relay()
            .add_override(
                Override {
                    id: 0,
                    schedule: schedule.into(),
                    person: person.into(),
                    replaces: replaces.map(str::to_owned),
                    starts_at: Timestamp(start),
                    ends_at: Timestamp(end),
                    created_by: "sim".into(),
                },
                self.now,
            )
            .await;
        let expected = self.model.add_cover(
            Cover {
                id: 0,
                schedule,
                person,
                replaces,
                start,
                end,
                removed: false,
            },
            self.now,
        );
        match (created, expected) {
            (Ok(o), Some(id)) if o.id == id => Ok(()),
            (Err(OverrideError::Invalid(_)), None) => Ok(()),
            (got, expected) => Err(format!(
                "add override: {got:?}, the model says {expected:?}"
            )),
        }
    }

    /// Who the relay says is on call in each schedule now (its API) is who the model has.
    async fn compare_on_call(&self) -> Result<(), String> {
        let reports = self
            .relay()
            .on_call(self.now, 0)
            .await
            .map_err(|e| format!("on_call failed: {e}"))?;
        if reports.len() != self.model.schedules.len() {
            return Err(format!(
                "{} schedules on call, the model has {}",
                reports.len(),
                self.model.schedules.len()
            ));
        }
        for r in reports {
            let got = r.now.map(|s| s.person);
            let want = self.model.who(&r.schedule, self.now);
            if got.as_deref() != want {
                return Err(format!(
                    "on call in {} now: {got:?}, the model says {want:?}",
                    r.schedule
                ));
            }
        }
        Ok(())
    }

    fn check(&mut self, final_: bool) -> Result<(), String> {
        self.settle_in_flight();
        // Leases of these are held by relays that take their steps; any other's (a stalled
        // replica's, or a crashed one's earlier run) may hold a target up until it runs out.
        let running: BTreeSet<String> = self
            .replicas
            .iter()
            .filter(|r| r.running())
            .filter_map(Replica::holder)
            .collect();
        let observer = self.observer.as_mut().expect("observer");
        let world = self.world.0.lock().unwrap_or_else(|e| e.into_inner());
        check::invariants(&self.model, observer, &world, self.now, &running, final_)
    }

    /// Heals the world and lets time pass until nothing is pending (at most two days).
    async fn drain(&mut self) -> Result<(), String> {
        {
            let mut s = self.world.state();
            s.modes.clear();
            s.alertmanager_down = false;
        }
        self.trace.push("heal every vendor; let time pass".into());
        self.heal().await?;
        for _ in 0..48 * 12 {
            self.now = Timestamp(self.now.0 + 5 * MIN);
            self.handoffs_woken = true;
            self.pump().await?;
            let observer = self.observer.as_mut().expect("observer");
            if observer.pending() == 0 {
                return Ok(());
            }
        }
        Ok(())
    }
}

/// What seeds exercised of the schedules, summed: a generator that stops reaching a case
/// fails a full run.
#[derive(Debug, Default, Clone, Copy)]
struct Coverage {
    faults: Faults,
    handoffs: usize,
    gaps: usize,
    schedule_pages: usize,
    override_pages: usize,
    overrides: usize,
    removed: usize,
}

impl Coverage {
    fn of(m: &Model) -> Self {
        Coverage {
            handoffs: m
                .expected
                .keys()
                .filter(|k| k.kind == model::Kind::Handoff)
                .count(),
            gaps: m
                .expected
                .values()
                .filter(|e| matches!(e, model::Expectation::NobodyOnCall(_)))
                .count(),
            schedule_pages: m
                .resolutions
                .values()
                .map(|r| r.schedules.iter().filter(|(_, p)| p.is_some()).count())
                .sum(),
            override_pages: m.overridden_pages,
            overrides: m.covers.len(),
            removed: m.covers.iter().filter(|c| c.removed).count(),
            faults: Faults::default(),
        }
    }

    fn add(&mut self, o: Coverage) {
        self.faults.add(&o.faults);
        self.handoffs += o.handoffs;
        self.gaps += o.gaps;
        self.schedule_pages += o.schedule_pages;
        self.override_pages += o.override_pages;
        self.overrides += o.overrides;
        self.removed += o.removed;
    }
}

/// Runs one seed; `Err` holds the violation and the trace.
fn run_seed(
    seed: u64,
    steps: usize,
    runtime: &tokio::runtime::Runtime,
    base: &Path,
    database: Option<ScratchDatabase>,
) -> Result<Coverage, String> {
    let dir = tempfile::tempdir_in(base).expect("tempdir");
    let replay = if database.is_some() {
        "sim::the_paging_invariants_hold_on_postgres"
    } else {
        "sim::"
    };
    let mut sim = Sim::new(seed, dir.path(), database.map(Arc::new));
    let result = runtime.block_on(async {
        for i in 0..steps {
            sim.step().await.map_err(|e| format!("step {i}: {e}"))?;
            sim.check(false)
                .map_err(|e| format!("after step {i}: {e}"))?;
        }
        sim.drain().await?;
        sim.check(true).map_err(|e| format!("at the end: {e}"))
    });
    let faults = sim.faults;
    result
        .map(|()| Coverage {
            faults,
            ..Coverage::of(&sim.model)
        })
        .map_err(|violation| {
        format!(
            "simulation seed {seed} failed: {violation}\nreplay: SIM_SEED={seed} cargo nextest run -p alert-relay {replay}\ntrace:\n  {}",
            sim.trace.join("\n  ")
        )
    })
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Seeds `part` of `parts` (by residue), or the one `SIM_SEED` names; on PostgreSQL if
/// `postgres` (a database per seed).
fn run_part(part: u64, parts: u64, postgres: bool) {
    let steps = env_number("SIM_STEPS", 60) as usize;
    let count = if postgres {
        env_number("SIM_PG_SEEDS", 50)
    } else {
        env_number("SIM_SEEDS", 1000)
    };
    let seeds: Vec<u64> = match std::env::var("SIM_SEED").ok().and_then(|s| s.parse().ok()) {
        Some(seed) if seed % parts == part => vec![seed],
        Some(_) => Vec::new(),
        None => (0..count).filter(|s| s % parts == part).collect(),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    // tmpfs when there is one: the simulation is about logic, not the disk.
    let base = Path::new("/dev/shm");
    let base = if base.is_dir() {
        base.to_owned()
    } else {
        std::env::temp_dir()
    };
    let mut coverage = Coverage::default();
    let many = seeds.len() >= 100 && steps >= 60;
    for seed in seeds {
        let database = if postgres {
            match ScratchDatabase::create() {
                Some(db) => Some(db),
                None => return,
            }
        } else {
            None
        };
        match run_seed(seed, steps, &runtime, &base, database) {
            Ok(c) => coverage.add(c),
            Err(report) => panic!("{report}"),
        }
    }
    if postgres && count >= 20 && steps >= 60 && std::env::var("SIM_SEED").is_err() {
        let f = coverage.faults;
        let reached = [
            f.stall_send,
            f.stall_recording,
            f.stall_intake,
            f.cut,
            f.taken_over,
        ];
        assert!(
            reached.iter().all(|n| *n > 0),
            "the seeds no longer reach every replica fault: {f:?}"
        );
        eprintln!("replica faults reached: {f:?}");
    }
    if many {
        let c = coverage;
        let reached = [
            c.handoffs,
            c.gaps,
            c.schedule_pages,
            c.override_pages,
            c.overrides,
            c.removed,
        ];
        assert!(
            reached.iter().all(|n| *n > 0),
            "the seeds no longer reach every schedule case: {c:?}"
        );
    }
}

#[test]
fn the_paging_invariants_hold_for_every_seed_part_0_of_2() {
    run_part(0, 2, false);
}

#[test]
fn the_paging_invariants_hold_for_every_seed_part_1_of_2() {
    run_part(1, 2, false);
}

/// The same invariants with the state in PostgreSQL: a crash reopens the store on the same
/// database, as a relay restarted on it would.
#[test]
fn the_paging_invariants_hold_on_postgres() {
    run_part(0, 1, true);
}

#[test]
fn a_seed_replays_exactly() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let base = std::env::temp_dir();
    let record = |seed| {
        let dir = tempfile::tempdir_in(&base).expect("tempdir");
        let mut sim = Sim::new(seed, dir.path(), None);
        runtime.block_on(async {
            for _ in 0..80 {
                sim.step().await.expect("step");
            }
        });
        let received: Vec<String> = sim
            .world
            .state()
            .received
            .iter()
            .map(|r| format!("{r:?}"))
            .collect();
        (sim.trace, received)
    };
    let (trace, received) = record(7);
    assert!(received.len() > 5, "the seed pages someone: {trace:?}");
    assert_eq!(record(7), (trace, received), "same seed, same run");
}
