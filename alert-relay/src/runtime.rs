//! What the relay runs with: the store and metrics (for its whole life) and a [`Runtime`]
//! built from the policy file, swapped atomically on reload (SIGHUP or `POST /-/reload`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::watch;

use crate::ack::AckKey;
use crate::config::Config;
use crate::domain::TargetName;
use crate::metrics::RelayMetrics;
use crate::silence::AlertmanagerClient;
use crate::sinks::{self, Sink};
use crate::store::Store;
use crate::templates::Templates;
use crate::worker::{LinkComposer, Wakers};
use crate::writer::IngestWriter;

/// Everything derived from one version of the policy file.
pub struct Runtime {
    pub config: Config,
    pub composer: Arc<LinkComposer>,
    pub templates: Arc<Templates>,
    pub sinks: BTreeMap<TargetName, Arc<dyn Sink>>,
    pub alertmanager: Option<AlertmanagerClient>,
}

impl Runtime {
    fn build(config: Config, data_dir: &Path, client: &reqwest::Client) -> anyhow::Result<Self> {
        let key = AckKey::load_or_create(config.server.ack_secret.as_ref(), data_dir)?;
        let sinks = sinks::build(&config, client);
        Ok(Self {
            composer: Arc::new(LinkComposer {
                public_url: config.server.public_url.clone(),
                key,
                ttl: config.server.ack_link_ttl,
                alertmanager_url: config.server.alertmanager_url.clone(),
                targets: sinks.keys().cloned().collect(),
            }),
            templates: Arc::new(Templates::new(&config)),
            sinks,
            alertmanager: config
                .server
                .alertmanager_url
                .clone()
                .map(|url| AlertmanagerClient::new(url, client.clone())),
            config,
        })
    }
}

pub struct Relay {
    runtime: RwLock<Arc<Runtime>>,
    pub store: Store,
    /// Stores webhooks with group commit.
    pub writer: IngestWriter,
    pub metrics: RelayMetrics,
    pub wakers: Wakers,
    /// Heartbeat policies: when their webhooks were last seen.
    pub heartbeats: crate::heartbeat::Heartbeats,
    client: reqwest::Client,
    data_dir: PathBuf,
    /// The policy file reloads read; `None` when built from a `Config` in memory.
    config_path: Option<PathBuf>,
    /// Bumped on every successful reload: delivery workers restart with the new targets.
    generation: watch::Sender<u64>,
}

impl Relay {
    /// Opens the store in `data_dir` and builds the runtime from `config`.
    pub fn new(config: Config, data_dir: &Path) -> anyhow::Result<Self> {
        let store = Store::open(data_dir)?;
        let client = reqwest::Client::builder()
            .user_agent(concat!("alert-relay/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(5))
            .build()?;
        let metrics = RelayMetrics::new()?;
        let runtime = Runtime::build(config, data_dir, &client)?;
        for target in runtime.sinks.keys() {
            metrics.init_target(target.as_str());
        }
        Ok(Self {
            runtime: RwLock::new(Arc::new(runtime)),
            writer: IngestWriter::start(store.clone())?,
            store,
            metrics,
            wakers: Wakers::default(),
            heartbeats: Default::default(),
            client,
            data_dir: data_dir.to_owned(),
            config_path: None,
            generation: watch::channel(0).0,
        })
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

    pub fn generation(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    /// Re-reads the policy file. A file that fails validation is rejected, its errors are
    /// returned (and logged by the caller), and the running policy stays in force.
    pub fn reload(&self) -> Result<(), String> {
        let Some(path) = &self.config_path else {
            return Err("no policy file to reload (started from a configuration in memory)".into());
        };
        let result = Config::load(path)
            .map_err(|e| e.to_string())
            .and_then(|config| self.apply(config).map_err(|e| format!("{e:#}")));
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
    pub fn apply(&self, config: Config) -> anyhow::Result<()> {
        let runtime = Runtime::build(config, &self.data_dir, &self.client)?;
        for target in runtime.sinks.keys() {
            self.metrics.init_target(target.as_str());
        }
        *self.runtime.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(runtime);
        self.generation.send_modify(|g| *g += 1);
        self.wakers.wake_all();
        Ok(())
    }
}
