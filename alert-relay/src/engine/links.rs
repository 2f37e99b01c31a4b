//! Link composition: the notification an action asks for, with its signed acknowledge link,
//! its runbook link (resolved here, once, for every vendor) and Alertmanager silence link.
//! Pure: the ack nonce is derived from the notification, not drawn at random, so the same
//! inputs always give the same notification.

use std::time::Duration;

use sha2::{Digest, Sha256};
use url::Url;

use super::IncidentRecord;
use crate::ack::AckKey;
use crate::domain::{
    equality_matcher, is_runbook_name, web_link, Notification, NotificationKind, TargetName,
    Timestamp, OWN_RECEIVER,
};

/// What links are built from (the policy file's `server` section and the ack key).
#[derive(Debug, Clone)]
pub struct Links {
    /// Where phones reach the relay; no acknowledge links without it.
    pub public_url: Option<Url>,
    pub key: AckKey,
    pub ttl: Duration,
    /// Used for silence links when the webhook carried no `externalURL`.
    pub alertmanager_url: Option<Url>,
    /// When set, silence links open Grafana's alerting UI for the Alertmanager data source
    /// `alertmanager` instead of Alertmanager's own.
    pub grafana_url: Option<Url>,
    /// Whether the console is on (`server.console`): notifications then link the incident's
    /// page in it.
    pub console: bool,
}

impl Links {
    /// The notification for `target` of `incident`, step `step`, created at `now`.
    pub fn compose(
        &self,
        incident: &IncidentRecord,
        target: &TargetName,
        step: usize,
        kind: NotificationKind,
        now: Timestamp,
    ) -> Notification {
        let ack_url = (kind == NotificationKind::Firing)
            .then_some(self.public_url.as_ref())
            .flatten()
            .and_then(|base| {
                let nonce = nonce(incident, target, step, now);
                let token = self
                    .key
                    .sign(incident.id, incident.key, now.plus(self.ttl), nonce);
                under(base, &format!("ack/{token}"))
            })
            .map(String::from);
        Notification {
            incident_id: incident.id,
            policy: incident.machine.plan.policy.clone(),
            target: target.clone(),
            kind,
            step,
            group: incident.group.clone(),
            sequence_id: format!("relay-{}", incident.id),
            incident_started_at: incident.machine.started_at,
            ack_url,
            silence_url: self.silence_url(incident),
            created_at: now,
            acknowledged_by: (kind == NotificationKind::Acknowledged)
                .then(|| incident.machine.acknowledged_by.clone())
                .flatten(),
            silence_note: (kind == NotificationKind::Silenced)
                .then(|| incident.machine.silence_note.clone())
                .flatten(),
            note: (kind == NotificationKind::Firing)
                .then(|| incident.machine.notice.clone())
                .flatten(),
            person: target.as_str().strip_prefix("person.").map(str::to_owned),
            mentions: Vec::new(),
            runbook_link: runbook_link(
                incident.group.runbook_annotation(),
                self.public_url.as_ref(),
            ),
            console_url: None,
            incident_url: self
                .console
                .then_some(self.public_url.as_ref())
                .flatten()
                .and_then(|base| under(base, &format!("incidents/{}", incident.id)))
                .map(String::from),
        }
    }

    /// Alertmanager's silence form pre-filled with the group's labels. Alertmanager's own
    /// external URL (what browsers reach) first; `alertmanager_url` may be an internal address.
    fn silence_url(&self, incident: &IncidentRecord) -> Option<String> {
        let group = &incident.group;
        if group.receiver == OWN_RECEIVER {
            return None;
        }
        let labels = if group.group_labels.is_empty() {
            &group.common_labels
        } else {
            &group.group_labels
        };
        if let Some(grafana) = &self.grafana_url {
            // Grafana's form takes one `matcher` per label (name, operator, quoted value).
            let mut url = grafana.join("alerting/silence/new").ok()?;
            {
                let mut query = url.query_pairs_mut();
                query.append_pair("alertmanager", "alertmanager");
                for (name, value) in labels {
                    query.append_pair("matcher", &equality_matcher(name, value));
                }
            }
            return Some(url.to_string());
        }
        // The webhook's `externalURL` becomes a link: only when it is an http(s) URL.
        let base = group
            .external_url
            .as_deref()
            .and_then(web_link)
            .map(str::to_owned)
            .or_else(|| self.alertmanager_url.as_ref().map(|u| u.to_string()))?;
        let filter = labels
            .iter()
            .map(|(name, value)| equality_matcher(name, value))
            .collect::<Vec<_>>()
            .join(",");
        let encoded: String =
            url::form_urlencoded::byte_serialize(format!("{{{filter}}}").as_bytes()).collect();
        Some(format!(
            "{}/#/silences/new?filter={}",
            base.trim_end_matches('/'),
            encoded.replace('+', "%20")
        ))
    }
}

/// The runbook link of a notification, from the alerts' `runbook_url` annotation:
/// - an absolute http(s) URL: as written;
/// - no scheme (rules evaluated by a Prometheus without the `runbook_base` external label
///   give `/GatewayDown`): the relay's own page of the runbook it names,
///   `<public_url>/runbooks/<name>`, where `<name>` is its last path segment without `.md`
///   (`GatewayDown`, `/GatewayDown`, `/runbooks/GatewayDown` and `docs/runbooks/GatewayDown.md`
///   alike; a `#section` is kept, a query dropped). None without `public_url` (a relative
///   link opens nothing on a phone) or when `<name>` is not a runbook name;
/// - any other scheme (`javascript:`, `data:`, `file:`…) or no URL at all: none, never a link.
pub fn runbook_link(annotation: Option<&str>, public_url: Option<&Url>) -> Option<String> {
    let text = annotation?.trim();
    if let Some(link) = web_link(text) {
        return Some(link.to_owned());
    }
    // Whatever has a scheme (or is malformed) and is not http(s) stays out.
    if Url::parse(text) != Err(url::ParseError::RelativeUrlWithoutBase) {
        return None;
    }
    let base = public_url?;
    let (path, section) = match text.split_once('#') {
        Some((path, section)) => (path, Some(section).filter(|s| !s.is_empty())),
        None => (text, None),
    };
    let path = path.split('?').next().unwrap_or_default();
    let name = path.rsplit('/').find(|segment| !segment.is_empty())?;
    let name = name.strip_suffix(".md").unwrap_or(name);
    if !is_runbook_name(name) {
        return None;
    }
    let mut url = under(base, &format!("runbooks/{name}"))?;
    url.set_fragment(section);
    Some(url.into())
}

/// `path` under `base` taken as a directory: `https://example.com/relay` and
/// `https://example.com/relay/` both give `https://example.com/relay/<path>` (a relay
/// published under a path prefix keeps it in its links).
pub fn under(base: &Url, path: &str) -> Option<Url> {
    let mut dir = base.clone();
    if !dir.path().ends_with('/') {
        let with_slash = format!("{}/", dir.path());
        dir.set_path(&with_slash);
    }
    dir.set_query(None);
    dir.set_fragment(None);
    dir.join(path).ok()
}

/// Distinct per link: one notification per (incident, target, step) at a given time.
fn nonce(incident: &IncidentRecord, target: &TargetName, step: usize, now: Timestamp) -> [u8; 12] {
    let mut hash = Sha256::new();
    hash.update(incident.key.0);
    hash.update(incident.id.to_be_bytes());
    hash.update(target.as_str().as_bytes());
    hash.update([0]);
    hash.update((step as u64).to_be_bytes());
    hash.update(now.0.to_be_bytes());
    let mut nonce = [0u8; 12];
    nonce.copy_from_slice(&hash.finalize()[..12]);
    nonce
}

#[cfg(test)]
mod tests {
    use super::*;

    fn public() -> Url {
        "https://relay.example.com/".parse().expect("url")
    }

    #[test]
    fn a_relative_runbook_link_resolves_to_the_relays_runbook_page() {
        for written in [
            "/GatewayDown",
            "GatewayDown",
            "/runbooks/GatewayDown",
            "runbooks/GatewayDown",
            "docs/runbooks/GatewayDown.md",
            " /GatewayDown ",
            "/GatewayDown?from=rule",
        ] {
            assert_eq!(
                runbook_link(Some(written), Some(&public())).as_deref(),
                Some("https://relay.example.com/runbooks/GatewayDown"),
                "{written:?}"
            );
        }
        assert_eq!(
            runbook_link(Some("/GatewayDown#diagnosis"), Some(&public())).as_deref(),
            Some("https://relay.example.com/runbooks/GatewayDown#diagnosis")
        );
    }

    #[test]
    fn a_runbook_link_keeps_the_path_prefix_of_the_public_url() {
        for base in ["https://example.com/relay", "https://example.com/relay/"] {
            let base: Url = base.parse().expect("url");
            assert_eq!(
                runbook_link(Some("/GatewayDown"), Some(&base)).as_deref(),
                Some("https://example.com/relay/runbooks/GatewayDown")
            );
            assert_eq!(
                under(&base, "ack/TOKEN").map(String::from).as_deref(),
                Some("https://example.com/relay/ack/TOKEN")
            );
        }
    }

    #[test]
    fn an_absolute_runbook_link_is_kept_as_written() {
        let link = "https://wiki.example.com/Runbooks/GatewayDown?x=1#now";
        assert_eq!(
            runbook_link(Some(link), Some(&public())).as_deref(),
            Some(link)
        );
        assert_eq!(runbook_link(Some(link), None).as_deref(), Some(link));
    }

    #[test]
    fn a_relative_runbook_link_without_public_url_is_left_out() {
        assert_eq!(runbook_link(Some("/GatewayDown"), None), None);
    }

    #[test]
    fn a_runbook_link_that_is_no_http_link_is_never_made_one() {
        for written in [
            "javascript:alert(1)",
            " JavaScript:alert(1)",
            "java\tscript:alert(1)",
            "data:text/html,<script>alert(1)</script>",
            "file:///etc/passwd",
            "localhost:9465/runbooks/GatewayDown",
            "/",
            "",
            "/Gateway Down",
            "https://",
        ] {
            assert_eq!(
                runbook_link(Some(written), Some(&public())),
                None,
                "{written:?}"
            );
        }
        assert_eq!(runbook_link(None, Some(&public())), None);
    }
}
