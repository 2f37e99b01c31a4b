//! The application layer: one method per use case — ingest a webhook ([`Relay::ingest`]),
//! acknowledge ([`Relay::acknowledge`], [`Relay::acknowledge_link`], shown first by
//! [`Relay::preview_ack_link`]), stop silenced incidents
//! and fire due steps ([`Relay::fire_due`]), deliver and record the outcome
//! ([`Relay::deliver_next`]), forget removed targets, watch heartbeats, reload. Each loads the
//! rows it needs, calls the pure engine, commits the result in one store transaction and
//! applies the effects (metrics, wakers). Transports, loops and the CLI only call these.
//!
//! - [`runtime`]: what one version of the policy file builds (sinks, templates, links).
//! - [`heartbeat`]: the dead man's switch's bookkeeping and its synthetic alert.
//! - `intake`, `incidents`, `ack_link`, `delivery`, `oncall`, `shifts`, `console`, `manual`,
//!   `history` (with retention): the use cases, by what they touch; [`load`]: who carried the
//!   pager (pure).

mod ack_link;
pub mod console;
mod delivery;
pub mod heartbeat;
mod history;
mod incidents;
mod intake;
pub mod load;
mod manual;
mod oncall;
pub mod runtime;
mod shifts;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};
use tokio::sync::{watch, Notify};

use crate::config::Config;
use crate::domain::{IncidentKey, Timestamp};
use crate::engine::{Effects, Inputs, Override};
use crate::metrics::RelayMetrics;
use crate::store::{SqliteStore, Store, StoreHandle};

pub use ack_link::{AckLinkError, LinkAck, LinkPreview};
pub use delivery::{Step, Worker};
pub use history::HistoryPage;
pub use incidents::OpenIncident;
pub use intake::{IngestError, Ingested};
pub use manual::ManualError;
pub use oncall::{OverrideError, MAX_LIVE_OVERRIDES, MAX_OVERRIDE_MS};
pub use runtime::{HttpPeers, Peers, Runtime};
pub use shifts::{Cover, ScheduleAhead};

/// The wall clock, injectable: loops read it, use cases take `now` as an argument.
pub trait Clock: Send + Sync {
    fn now(&self) -> Timestamp;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// Wakes sleeping loops when there may be new work. `Notify::notify_one` keeps a permit, so
/// a wake sent while a loop is busy is not lost.
#[derive(Clone, Default)]
pub struct Wakers {
    pub scheduler: Arc<Notify>,
    /// The handoff loop: an override was created or removed, or the policy reloaded.
    pub handoffs: Arc<Notify>,
    delivery: Arc<RwLock<Vec<Arc<Notify>>>>,
}

impl Wakers {
    /// A wake handle for one more delivery worker.
    pub fn register_delivery(&self) -> Arc<Notify> {
        let notify = Arc::new(Notify::new());
        self.delivery
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(Arc::clone(&notify));
        notify
    }

    /// Forgets the wake handles of delivery workers that stopped (after a reload).
    pub fn clear_delivery(&self) {
        self.delivery
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    pub fn wake_delivery(&self) {
        for notify in self
            .delivery
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            notify.notify_one();
        }
    }
}

pub struct Relay {
    store: StoreHandle,
    writer: intake::IngestWriter,
    runtime: RwLock<Arc<Runtime>>,
    /// Bumped on every successful reload: delivery workers restart with the new targets.
    generation: watch::Sender<u64>,
    peers: Arc<dyn Peers>,
    metrics: RelayMetrics,
    wakers: Wakers,
    heartbeats: heartbeat::Heartbeats,
    /// Console sign-in requests, for their rate limits.
    signins: console::Attempts,
    /// Incident keys and retry jitter; seeded in the simulation.
    rng: Mutex<StdRng>,
    data_dir: PathBuf,
    /// The policy file reloads read; `None` when built from a `Config` in memory.
    config_path: Option<PathBuf>,
}

/// How a [`Relay`] is put together; every part has a production default.
pub struct Builder {
    config: Config,
    data_dir: PathBuf,
    store: Option<Arc<dyn Store>>,
    peers: Option<Arc<dyn Peers>>,
    seed: Option<u64>,
    started: Option<Timestamp>,
    config_path: Option<PathBuf>,
}

impl Builder {
    /// The store to use instead of SQLite in the data directory.
    pub fn store(mut self, store: Arc<dyn Store>) -> Self {
        self.store = Some(store);
        self
    }

    /// The vendors and Alertmanager to talk to instead of the real ones.
    pub fn peers(mut self, peers: Arc<dyn Peers>) -> Self {
        self.peers = Some(peers);
        self
    }

    /// A fixed seed for incident keys and jitter (the simulation replays exactly).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// When the relay started (heartbeats count from then); default: now.
    pub fn started(mut self, at: Timestamp) -> Self {
        self.started = Some(at);
        self
    }

    /// The file that `reload` reads.
    pub fn config_path(mut self, path: &Path) -> Self {
        self.config_path = Some(path.to_owned());
        self
    }

    pub fn build(self) -> anyhow::Result<Relay> {
        let store = match self.store {
            Some(store) => store,
            None => Arc::new(SqliteStore::open(&self.data_dir)?),
        };
        let peers = match self.peers {
            Some(peers) => peers,
            None => Arc::new(HttpPeers::new()?),
        };
        let metrics = RelayMetrics::new()?;
        let runtime = Runtime::build(self.config, &self.data_dir, peers.as_ref())
            .map_err(anyhow::Error::msg)?;
        for target in runtime.sinks.keys() {
            metrics.init_target(target.as_str());
        }
        for schedule in runtime.config.schedules.keys() {
            metrics.init_schedule(schedule);
        }
        let rng = match self.seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_os_rng(),
        };
        // Rows that cannot be read are taken out of service before anything else runs.
        let now = self.started.unwrap_or_else(Timestamp::now);
        let bad = crate::store::run(store.as_ref(), crate::store::Mode::Durable, |tx| {
            let bad = tx.undecodable()?;
            for row in &bad {
                tx.quarantine(row, now)?;
            }
            Ok(bad)
        })?;
        let relay = Relay {
            writer: intake::IngestWriter::start(
                Arc::clone(&store),
                metrics.store_timeouts.clone(),
            )?,
            store: StoreHandle::new(store),
            runtime: RwLock::new(Arc::new(runtime)),
            generation: watch::channel(0).0,
            peers,
            metrics,
            wakers: Wakers::default(),
            heartbeats: heartbeat::Heartbeats::new(self.started.unwrap_or_else(Timestamp::now)),
            rng: Mutex::new(rng),
            signins: console::Attempts::default(),
            data_dir: self.data_dir,
            config_path: self.config_path,
        };
        relay.quarantined(&bad);
        Ok(relay)
    }
}

impl Relay {
    pub fn builder(config: Config, data_dir: &Path) -> Builder {
        Builder {
            config,
            data_dir: data_dir.to_owned(),
            store: None,
            peers: None,
            seed: None,
            started: None,
            config_path: None,
        }
    }

    /// The production relay: SQLite in `data_dir`, real vendors.
    pub fn new(config: Config, data_dir: &Path) -> anyhow::Result<Self> {
        Self::builder(config, data_dir).build()
    }

    /// Remembers the file that `reload` reads.
    pub fn with_config_path(mut self, path: &Path) -> Self {
        self.config_path = Some(path.to_owned());
        self
    }

    /// The current runtime (cheap: an `Arc` clone).
    pub fn runtime(&self) -> Arc<Runtime> {
        Arc::clone(&self.runtime.read().unwrap_or_else(|e| e.into_inner()))
    }

    pub fn metrics(&self) -> &RelayMetrics {
        &self.metrics
    }

    pub fn wakers(&self) -> &Wakers {
        &self.wakers
    }

    /// Notified when a heartbeat arrives.
    pub fn heartbeat_arrived(&self) -> &Notify {
        &self.heartbeats.arrived
    }

    pub fn generation(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    /// How long a delivery worker with an empty queue sleeps before it looks again (unless
    /// woken): soon when other relays share the store (they queue work this relay's wakers do
    /// not hear of, and take over the queues of a relay that died), else rarely.
    pub fn idle_poll(&self) -> std::time::Duration {
        if self.store.store().shared() {
            std::time::Duration::from_secs(1)
        } else {
            std::time::Duration::from_secs(5)
        }
    }

    /// Whether the store accepts a write now (for `/ready`).
    pub async fn ready(&self) -> Result<(), String> {
        self.store.probe().await.map_err(|e| e.to_string())
    }

    /// Re-reads the policy file. A file that fails validation is rejected, its errors are
    /// returned (and logged by the caller), and the running policy stays in force.
    pub fn reload(&self) -> Result<(), String> {
        let Some(path) = &self.config_path else {
            return Err("no policy file to reload (started from a configuration in memory)".into());
        };
        let result = Config::load(path)
            .map_err(|e| e.to_string())
            .and_then(|config| self.apply(config));
        let outcome = if result.is_ok() { "success" } else { "failure" };
        self.metrics
            .config_reloads
            .with_label_values(&[outcome])
            .inc();
        self.metrics
            .config_last_reload_successful
            .set(i64::from(result.is_ok()));
        result
    }

    /// Installs a new validated configuration.
    pub fn apply(&self, config: Config) -> Result<(), String> {
        let runtime = Runtime::build(config, &self.data_dir, self.peers.as_ref())?;
        for target in runtime.sinks.keys() {
            self.metrics.init_target(target.as_str());
        }
        for schedule in runtime.config.schedules.keys() {
            self.metrics.init_schedule(schedule);
        }
        *self.runtime.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(runtime);
        self.generation.send_modify(|g| *g += 1);
        self.wakers.scheduler.notify_one();
        self.wakers.handoffs.notify_one();
        self.wakers.wake_delivery();
        Ok(())
    }

    fn new_key(&self) -> IncidentKey {
        let mut key = [0u8; 16];
        self.rng
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .fill_bytes(&mut key);
        IncidentKey(key)
    }

    /// Records what a committed transition did and wakes whoever has new work.
    fn apply_effects(&self, effects: &Effects) {
        self.metrics.record_effects(effects);
        if effects.reschedule {
            self.wakers.scheduler.notify_one();
        }
        if effects.queued > 0 {
            self.wakers.wake_delivery();
        }
    }
}

/// The engine's inputs from a runtime and the overrides in force at `now`.
fn inputs<'a>(runtime: &'a Runtime, overrides: &'a [Override], now: Timestamp) -> Inputs<'a> {
    Inputs {
        links: &runtime.links,
        configured: &runtime.configured,
        schedules: &runtime.config.schedules,
        overrides,
        slack_members: &runtime.slack_members,
        now,
    }
}
