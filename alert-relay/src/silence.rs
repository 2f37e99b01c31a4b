//! Silence and inhibition awareness: Alertmanager sends no resolve for an alert silenced after
//! it fired, so before each escalation step the relay asks Alertmanager whether the incident's
//! alerts still page (active, not silenced, not inhibited).

use std::time::Duration;

use serde::Deserialize;
use url::Url;

use crate::domain::{AlertGroup, AlertStatus};

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
    pub async fn still_paging(&self, group: &AlertGroup) -> Result<bool, String> {
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
                query.append_pair(
                    "filter",
                    &format!("{name}=\"{}\"", value.replace('"', "\\\"")),
                );
            }
        }
        let response = self
            .client
            .get(url)
            .timeout(Duration::from_secs(3))
            .send()
            .await
            .map_err(|e| crate::sinks::describe(&e))?;
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
