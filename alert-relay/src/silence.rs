//! Silence and inhibition awareness: Alertmanager sends no resolve for an alert silenced after
//! it fired, so before each escalation step the relay asks Alertmanager whether the incident's
//! alerts still page (active, not silenced, not inhibited).

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use serde::Deserialize;
use url::Url;

use crate::domain::{equality_matcher, AlertGroup, AlertStatus};

pub type SilenceFuture<'a> = Pin<Box<dyn Future<Output = Result<bool, String>> + Send + 'a>>;

/// Asks whether an incident's alerts still page. The relay asks Alertmanager; the simulation
/// answers from its own model.
pub trait SilenceOracle: Send + Sync {
    /// `Ok(true)`: at least one firing alert is active, unsilenced and uninhibited.
    /// `Err`: unknown (the caller escalates anyway, failing safe toward paging).
    fn still_paging<'a>(&'a self, group: &'a AlertGroup) -> SilenceFuture<'a>;
}

pub struct AlertmanagerClient {
    base: Url,
    client: reqwest::Client,
}

#[derive(Deserialize)]
struct ApiAlert {
    fingerprint: String,
}

impl AlertmanagerClient {
    pub fn new(base: Url, client: reqwest::Client) -> Self {
        Self { base, client }
    }

    /// Whether any firing alert of `group` is still active, unsilenced and uninhibited.
    /// An error means "unknown": the caller escalates anyway (failing safe toward paging).
    async fn ask(&self, group: &AlertGroup) -> Result<bool, String> {
        let mut url = self
            .base
            .join("api/v2/alerts")
            .map_err(|e| format!("bad Alertmanager URL: {e}"))?;
        {
            let mut query = url.query_pairs_mut();
            query.append_pair("active", "true");
            query.append_pair("silenced", "false");
            query.append_pair("inhibited", "false");
            for (name, value) in &group.group_labels {
                query.append_pair("filter", &equality_matcher(name, value));
            }
        }
        let response = self
            .client
            .get(url)
            .timeout(Duration::from_secs(3))
            .send()
            .await
            .map_err(|e| crate::sinks::http::describe(&e))?;
        if !response.status().is_success() {
            return Err(format!("Alertmanager answered {}", response.status()));
        }
        let alerts: Vec<ApiAlert> = response
            .json()
            .await
            .map_err(|e| format!("unreadable answer from Alertmanager: {e}"))?;
        Ok(group
            .alerts
            .iter()
            .filter(|a| a.status == AlertStatus::Firing)
            .any(|a| {
                alerts
                    .iter()
                    .any(|b| b.fingerprint == a.fingerprint.as_str())
            }))
    }
}

impl SilenceOracle for AlertmanagerClient {
    fn still_paging<'a>(&'a self, group: &'a AlertGroup) -> SilenceFuture<'a> {
        Box::pin(self.ask(group))
    }
}
