//! What the relay runs with from one version of the policy file: the config, link settings,
//! templates, one sink per target and the Alertmanager client. Built whole and swapped
//! atomically on reload; a running incident keeps the plan it started with.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use crate::ack::AckKey;
use crate::config::Config;
use crate::domain::TargetName;
use crate::engine::Links;
use crate::silence::{AlertmanagerClient, SilenceOracle};
use crate::sinks::{self, Sink};
use crate::templates::Templates;

/// The services the relay talks to: the vendors behind each target and Alertmanager.
/// Production builds HTTP clients; the simulation passes fakes.
pub trait Peers: Send + Sync {
    fn sinks(&self, config: &Config) -> BTreeMap<TargetName, Arc<dyn Sink>>;
    fn silences(&self, config: &Config) -> Option<Arc<dyn SilenceOracle>>;
}

/// The real vendors and Alertmanager over HTTP, sharing one client (built once at start, so
/// the first page does not pay for TLS set-up).
pub struct HttpPeers {
    client: reqwest::Client,
}

impl HttpPeers {
    pub fn new() -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .user_agent(concat!("alert-relay/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(std::time::Duration::from_secs(5))
            // A redirect is a URL to fix, never followed: following one turns a POST into a
            // body-less GET (a 200 from it would count as delivered) and sends custom
            // credential headers on to another host.
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self { client })
    }
}

impl Peers for HttpPeers {
    fn sinks(&self, config: &Config) -> BTreeMap<TargetName, Arc<dyn Sink>> {
        sinks::build(&config.targets, &self.client)
    }

    fn silences(&self, config: &Config) -> Option<Arc<dyn SilenceOracle>> {
        let url = config.server.alertmanager_url.clone()?;
        Some(Arc::new(AlertmanagerClient::new(url, self.client.clone())))
    }
}

/// Everything derived from one version of the policy file.
pub struct Runtime {
    pub config: Config,
    /// People's Slack member ids, by name.
    pub slack_members: BTreeMap<String, String>,
    pub links: Links,
    /// The targets configured now (a plan may name targets a reload removed since).
    pub configured: BTreeSet<TargetName>,
    pub templates: Arc<Templates>,
    pub sinks: BTreeMap<TargetName, Arc<dyn Sink>>,
    pub silences: Option<Arc<dyn SilenceOracle>>,
}

impl Runtime {
    pub fn build(config: Config, data_dir: &Path, peers: &dyn Peers) -> Result<Self, String> {
        let slack_members = config
            .people
            .iter()
            .filter_map(|(name, p)| Some((name.clone(), p.slack_member_id.clone()?)))
            .collect();
        let key = AckKey::load_or_create(config.server.ack_secret.as_ref(), data_dir)?;
        let sinks = peers.sinks(&config);
        Ok(Self {
            links: Links {
                public_url: config.server.public_url.clone(),
                key,
                ttl: config.server.ack_link_ttl,
                alertmanager_url: config.server.alertmanager_url.clone(),
                grafana_url: config.server.grafana_url.clone(),
                console: config.server.console.is_some(),
            },
            configured: sinks.keys().cloned().collect(),
            templates: Arc::new(Templates::new(&config)),
            silences: peers.silences(&config),
            sinks,
            slack_members,
            config,
        })
    }

    /// The secret URL of calendar feed `feed` (`schedule-<name>`, `person-<name>`): absolute
    /// under `server.public_url` when set, else a path on this relay.
    pub fn feed_url(&self, feed: &str) -> String {
        let path = format!(
            "calendar/{feed}.ics?token={}",
            self.links.key.feed_token(feed)
        );
        match &self.links.public_url {
            Some(base) => base.join(&path).map_or(path.clone(), |u| u.to_string()),
            None => format!("/{path}"),
        }
    }

    /// Whether `policy` is a heartbeat policy (its incident is open by design).
    pub fn is_heartbeat(&self, policy: &str) -> bool {
        self.config
            .policies
            .iter()
            .any(|p| p.name.as_str() == policy && p.heartbeat_missing_after.is_some())
    }
}
