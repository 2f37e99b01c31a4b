//! Use cases of the console's people: sign in by a one-time link pushed to their own contact,
//! sessions (kept in the store, so any replica serves them and they survive restarts),
//! signing out, and the pages a person received. Tokens are random; the store keeps only their
//! SHA-256.

use std::collections::{BTreeMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};

use super::Relay;
use crate::domain::{sample_notification, NotificationKind, Rendered, Timestamp};
use crate::engine::{EventKind, IncidentEvent, IncidentRecord};
use crate::store::{ConsoleSession, Mode, StoreError};

/// Sign-in requests per name, and per client address, within [`WINDOW`].
const PER_NAME: usize = 5;
const PER_CLIENT: usize = 20;
const WINDOW: Duration = Duration::from_secs(15 * 60);
/// Names and addresses remembered at most (a flood of made-up names cannot grow memory).
const REMEMBERED: usize = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum SigninError {
    #[error("too many sign-in requests; wait a few minutes")]
    RateLimited,
    #[error("the console is switched off")]
    Off,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A new session: the cookie's value (shown once) and what the store keeps.
pub struct NewSession {
    pub token: String,
    pub session: ConsoleSession,
}

/// A page a person received: its delivery to them, and the incident it was about (`None` if
/// it is gone, or cannot be read).
pub struct ReceivedPage {
    pub event: IncidentEvent,
    pub incident: Option<IncidentRecord>,
}

/// Sign-in attempts, by name and by client, in this replica's memory.
#[derive(Default)]
pub struct Attempts(Mutex<BTreeMap<String, VecDeque<Timestamp>>>);

impl Attempts {
    /// Counts an attempt under `key`; `false` if the key is over `limit` in the window.
    fn admit(&self, key: String, limit: usize, now: Timestamp) -> bool {
        let mut seen = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let since = Timestamp(now.0 - i64::try_from(WINDOW.as_millis()).unwrap_or(i64::MAX));
        if seen.len() >= REMEMBERED {
            seen.retain(|_, times| times.back().is_some_and(|t| *t > since));
            if seen.len() >= REMEMBERED {
                return false;
            }
        }
        let times = seen.entry(key).or_default();
        while times.front().is_some_and(|t| *t <= since) {
            times.pop_front();
        }
        if times.len() >= limit {
            return false;
        }
        times.push_back(now);
        true
    }
}

/// A token: 32 random bytes, URL-safe.
fn token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// What the store keeps of a token.
pub fn token_hash(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

impl Relay {
    /// Someone asks to sign in as `name` (a person's name or e-mail address) from `client`.
    /// The answer is the same whether or not such a person exists: the link goes out in the
    /// background, to the person's own contact, and only there. Rate-limited per name and
    /// per client.
    pub async fn request_signin(
        &self,
        name: &str,
        client: IpAddr,
        now: Timestamp,
    ) -> Result<(), SigninError> {
        let runtime = self.runtime();
        let Some(console) = runtime.config.server.console.clone() else {
            return Err(SigninError::Off);
        };
        let name = name.trim().to_lowercase();
        let per_name = self.signins.admit(format!("name:{name}"), PER_NAME, now);
        let per_client = self
            .signins
            .admit(format!("client:{client}"), PER_CLIENT, now);
        if !per_name || !per_client {
            tracing::warn!(%client, "console sign-in refused: too many requests");
            return Err(SigninError::RateLimited);
        }
        let person = runtime.config.person_named(&name).map(str::to_owned);
        let (Some(person), Some(base), true) = (
            person,
            runtime.config.server.public_url.clone(),
            console.sign_in_by_push,
        ) else {
            tracing::info!(%client, "console sign-in asked for a name that is no one's (or no public URL): nothing sent");
            return Ok(());
        };
        let Some(sink) = runtime
            .sinks
            .get(&crate::engine::person_target(&person))
            .cloned()
        else {
            return Ok(());
        };
        let link_token = token();
        let expires = now.plus(console.link_ttl);
        let (hash, who) = (token_hash(&link_token), person.clone());
        self.store
            .run(Mode::Durable, move |tx| {
                tx.insert_signin(&hash, &who, expires, now)
            })
            .await?;
        let link = base
            .join(&format!("signin/{link_token}"))
            .map(|u| u.to_string())
            .unwrap_or_default();
        let mut n = sample_notification("console", "person", NotificationKind::Handoff);
        n.incident_id = 0;
        n.target = crate::engine::person_target(&person);
        n.person = Some(person.clone());
        n.sequence_id = format!("signin-{}", &token_hash(&link_token)[..12]);
        // Nothing of the sample's alert: a log line of it names no alert, and links nothing
        // but the sign-in page.
        n.group.common_labels.clear();
        n.group.group_labels.clear();
        n.group.common_annotations.clear();
        n.group.alerts.clear();
        n.group.external_url = None;
        (n.ack_url, n.silence_url) = (None, None);
        n.console_url = Some(link);
        n.created_at = now;
        let text = Rendered {
            title: "Sign in to the on-call console".into(),
            body: format!(
                "Open this within {} on the device to sign in on. Didn't ask? Ignore it.",
                humantime::format_duration(console.link_ttl)
            ),
        };
        let timeout = runtime.config.delivery.timeout;
        tokio::spawn(async move {
            match tokio::time::timeout(timeout, sink.send(&n, &text)).await {
                Ok(crate::sinks::Outcome::Delivered) => {
                    tracing::info!(person = %person, "console sign-in link pushed")
                }
                Ok(other) => {
                    tracing::warn!(person = %person, outcome = ?other, "console sign-in link not delivered")
                }
                Err(_) => tracing::warn!(person = %person, "console sign-in link: no answer"),
            }
        });
        Ok(())
    }

    /// Opens a session with a sign-in link's token; `None` if the link is unknown, used or
    /// expired.
    pub async fn complete_signin(
        &self,
        link_token: &str,
        user_agent: &str,
        now: Timestamp,
    ) -> Result<Option<NewSession>, SigninError> {
        let Some(console) = self.runtime().config.server.console.clone() else {
            return Err(SigninError::Off);
        };
        let hash = token_hash(link_token);
        let session_token = token();
        let session = ConsoleSession {
            id_hash: token_hash(&session_token),
            person: String::new(),
            created_at: now,
            expires_at: now.plus(console.session_ttl),
            user_agent: user_agent.chars().take(200).collect(),
        };
        let opened = session.clone();
        let person = self
            .store
            .run(Mode::Durable, move |tx| {
                let Some(person) = tx.use_signin(&hash, now)? else {
                    return Ok(None);
                };
                tx.insert_session(&ConsoleSession {
                    person: person.clone(),
                    ..opened.clone()
                })?;
                Ok(Some(person))
            })
            .await?;
        Ok(person.map(|person| {
            tracing::info!(%person, "signed in to the console");
            NewSession {
                token: session_token,
                session: ConsoleSession { person, ..session },
            }
        }))
    }

    /// The live session a cookie names, if any.
    pub async fn console_session(
        &self,
        session_token: &str,
        now: Timestamp,
    ) -> Result<Option<ConsoleSession>, StoreError> {
        let hash = token_hash(session_token);
        self.store
            .run(Mode::Read, move |tx| tx.session(&hash, now))
            .await
    }

    /// A person's live sessions, newest first.
    pub async fn sessions_of(
        &self,
        person: &str,
        now: Timestamp,
    ) -> Result<Vec<ConsoleSession>, StoreError> {
        let person = person.to_owned();
        self.store
            .run(Mode::Read, move |tx| tx.sessions_of(&person, now))
            .await
    }

    /// Ends one of a person's sessions (`only`, by its hash), or all of them.
    pub async fn sign_out(
        &self,
        person: &str,
        only: Option<String>,
        now: Timestamp,
    ) -> Result<usize, StoreError> {
        let person = person.to_owned();
        let ended = self
            .store
            .run(Mode::Durable, move |tx| {
                tx.revoke_sessions(&person, only.as_deref(), now)
            })
            .await?;
        Ok(ended)
    }

    /// The pages delivered to `person` (their own target, `person.<name>`) since `since`,
    /// newest first, at most `limit`, from the incidents' timelines.
    pub async fn pages_received(
        &self,
        person: &str,
        since: Timestamp,
        limit: u32,
    ) -> Result<Vec<ReceivedPage>, StoreError> {
        let target = crate::engine::person_target(person);
        self.store
            .run(Mode::Read, move |tx| {
                let events =
                    tx.events_for_target(target.as_str(), EventKind::Delivered, since, limit)?;
                let mut ids: Vec<i64> = events.iter().map(|e| e.incident_id).collect();
                ids.sort_unstable();
                ids.dedup();
                // An unreadable one is listed with the dead letters; the page is still one
                // received.
                let incidents: BTreeMap<i64, _> = tx
                    .incidents_among(&ids)?
                    .rows
                    .into_iter()
                    .map(|r| (r.id, r))
                    .collect();
                Ok(events
                    .into_iter()
                    .map(|event| ReceivedPage {
                        incident: incidents.get(&event.incident_id).cloned(),
                        event,
                    })
                    .collect())
            })
            .await
    }
}
