//! Silence and inhibition awareness: Alertmanager sends no resolve for an alert silenced after
//! it fired, so before each escalation step the relay asks Alertmanager what it knows of the
//! incident's alerts. Three answers, kept apart: some still page (escalate), all are silenced
//! or inhibited (stop, saying by whom and until when), or Alertmanager knows none of them
//! (the relay's own `HeartbeatMissing`, or an Alertmanager that lost its state): escalate,
//! since "unknown" is no reason to stop paging.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use serde::Deserialize;
use url::Url;

use crate::domain::{equality_matcher, AlertGroup, AlertStatus};

/// What Alertmanager says about an incident's firing alerts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// At least one is active, unsilenced and uninhibited.
    Paging,
    /// All it knows are silenced or inhibited; `note` says by whom and until when.
    Suppressed { note: String },
    /// It knows none of them.
    Unknown,
}

pub type SilenceFuture<'a> = Pin<Box<dyn Future<Output = Result<Verdict, String>> + Send + 'a>>;
pub type CreateFuture<'a> = Pin<Box<dyn Future<Output = Result<String, String>> + Send + 'a>>;

/// A silence to create in Alertmanager for an incident's alerts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSilence {
    pub ends_at: crate::domain::Timestamp,
    pub created_by: String,
    pub comment: String,
}

/// Asks whether an incident's alerts still page. The relay asks Alertmanager; the simulation
/// answers from its own model. `Err`: Alertmanager could not be asked (the caller escalates
/// anyway, failing safe toward paging).
pub trait SilenceOracle: Send + Sync {
    fn still_paging<'a>(&'a self, group: &'a AlertGroup) -> SilenceFuture<'a>;

    /// Silences the group's alerts (exact matchers on its group labels); the silence's id.
    fn create<'a>(&'a self, group: &'a AlertGroup, silence: NewSilence) -> CreateFuture<'a> {
        let _ = (group, silence);
        Box::pin(async { Err("this Alertmanager cannot create silences".to_owned()) })
    }
}

/// The labels a silence for `group` matches on: its group labels, else (a group by
/// nothing) the labels all its alerts share; `None` when that would match everything.
pub fn silence_labels(group: &AlertGroup) -> Option<&crate::domain::Labels> {
    [&group.group_labels, &group.common_labels]
        .into_iter()
        .find(|labels| !labels.is_empty())
}

pub struct AlertmanagerClient {
    base: Url,
    client: reqwest::Client,
}

#[derive(Deserialize)]
struct ApiAlert {
    fingerprint: String,
    status: ApiStatus,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ApiStatus {
    state: String,
    #[serde(default)]
    silenced_by: Vec<String>,
    #[serde(default)]
    inhibited_by: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ApiSilence {
    #[serde(default)]
    created_by: String,
    #[serde(default)]
    ends_at: String,
    #[serde(default)]
    comment: String,
}

const TIMEOUT: Duration = Duration::from_secs(3);

impl AlertmanagerClient {
    pub fn new(base: Url, client: reqwest::Client) -> Self {
        Self { base, client }
    }

    async fn get<T: for<'de> Deserialize<'de>>(&self, url: Url) -> Result<T, String> {
        let response = self
            .client
            .get(url)
            .timeout(TIMEOUT)
            .send()
            .await
            .map_err(|e| crate::sinks::http::describe(&e))?;
        if !response.status().is_success() {
            return Err(format!("Alertmanager answered {}", response.status()));
        }
        response
            .json()
            .await
            .map_err(|e| format!("unreadable answer from Alertmanager: {e}"))
    }

    async fn ask(&self, group: &AlertGroup) -> Result<Verdict, String> {
        let mut url = self
            .base
            .join("api/v2/alerts")
            .map_err(|e| format!("bad Alertmanager URL: {e}"))?;
        {
            // Every state (active, silenced, inhibited, unprocessed): "gone" must be told apart
            // from "silenced". Matchers quoted so that any label value reads back the same.
            let mut query = url.query_pairs_mut();
            for (name, value) in &group.group_labels {
                query.append_pair("filter", &equality_matcher(name, value));
            }
        }
        let known: Vec<ApiAlert> = self.get(url).await?;
        let firing: Vec<&ApiAlert> = group
            .alerts
            .iter()
            .filter(|a| a.status == AlertStatus::Firing)
            .filter_map(|a| {
                known
                    .iter()
                    .find(|k| k.fingerprint == a.fingerprint.as_str())
            })
            .collect();
        if firing.is_empty() {
            return Ok(Verdict::Unknown);
        }
        if firing.iter().any(|a| a.status.state != "suppressed") {
            return Ok(Verdict::Paging);
        }
        Ok(Verdict::Suppressed {
            note: self.describe(&firing).await,
        })
    }

    /// "silenced by alice until 2026-11-01T06:00:00Z: disk replaced", or "inhibited by
    /// another alert"; what can be learnt without failing the stop.
    async fn describe(&self, alerts: &[&ApiAlert]) -> String {
        let silence = alerts.iter().find_map(|a| a.status.silenced_by.first());
        if let Some(id) = silence {
            let url = self.base.join(&format!("api/v2/silence/{id}"));
            if let Ok(silence) = match url {
                Ok(url) => self.get::<ApiSilence>(url).await,
                Err(e) => Err(e.to_string()),
            } {
                let mut note = format!(
                    "silenced by {} until {}",
                    silence.created_by, silence.ends_at
                );
                if !silence.comment.is_empty() {
                    note.push_str(&format!(": {}", silence.comment));
                }
                return note;
            }
            return format!("silenced (silence {id})");
        }
        if alerts.iter().any(|a| !a.status.inhibited_by.is_empty()) {
            return "inhibited by another alert".into();
        }
        "suppressed".into()
    }
}

impl AlertmanagerClient {
    async fn post_silence(
        &self,
        group: &AlertGroup,
        silence: NewSilence,
    ) -> Result<String, String> {
        let labels = silence_labels(group)
            .ok_or("the incident's alerts share no label to silence them by")?;
        let matchers: Vec<serde_json::Value> = labels
            .iter()
            .map(|(name, value)| {
                serde_json::json!({"name": name, "value": value, "isRegex": false, "isEqual": true})
            })
            .collect();
        let body = serde_json::json!({
            "matchers": matchers,
            "startsAt": crate::domain::Timestamp::now().to_rfc3339(),
            "endsAt": silence.ends_at.to_rfc3339(),
            "createdBy": silence.created_by,
            "comment": silence.comment,
        });
        let url = self
            .base
            .join("api/v2/silences")
            .map_err(|e| format!("bad Alertmanager URL: {e}"))?;
        let response = self
            .client
            .post(url)
            .timeout(TIMEOUT)
            .json(&body)
            .send()
            .await
            .map_err(|e| crate::sinks::http::describe(&e))?;
        let status = response.status();
        if !status.is_success() {
            let text = response.text().await.unwrap_or_default();
            return Err(format!(
                "Alertmanager answered {status}: {}",
                text.chars().take(300).collect::<String>()
            ));
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Created {
            #[serde(rename = "silenceID")]
            silence_id: String,
        }
        let created: Created = response
            .json()
            .await
            .map_err(|e| format!("unreadable answer from Alertmanager: {e}"))?;
        Ok(created.silence_id)
    }
}

impl SilenceOracle for AlertmanagerClient {
    fn still_paging<'a>(&'a self, group: &'a AlertGroup) -> SilenceFuture<'a> {
        Box::pin(self.ask(group))
    }

    fn create<'a>(&'a self, group: &'a AlertGroup, silence: NewSilence) -> CreateFuture<'a> {
        Box::pin(self.post_silence(group, silence))
    }
}
