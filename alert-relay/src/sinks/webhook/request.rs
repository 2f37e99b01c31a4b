//! The pure request builder: a notification, its text and the send time in, the exact bytes
//! and headers of a signed Standard Webhooks request out
//! (<https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md>).
//! The body is the relay's own JSON, version `1`, at most [`Budget::NORMAL`]'s 256 KiB for
//! any input: values are cut with a visible `…(N more)`, map entries and whole alerts left out
//! and counted.

use std::collections::BTreeMap;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use http::{HeaderName, HeaderValue};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::config::{SigningKey, WebhookConfig};
use crate::domain::{web_link, Alert, Labels, Notification, NotificationKind, Rendered};
use crate::sinks::fit;

/// How large a body may grow, and its parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// The whole body, in bytes.
    pub total: usize,
    /// The title and each note, as JSON string contents.
    text: usize,
    /// The rendered body.
    body: usize,
    /// One label or annotation value.
    value: usize,
    /// One map of labels or annotations, keys and values.
    map: usize,
}

impl Budget {
    /// What every request is built within: 256 KiB.
    pub const NORMAL: Budget = Budget {
        total: 256 * 1024,
        text: 1024,
        body: 16 * 1024,
        value: 4096,
        map: 16 * 1024,
    };
    /// Sent at once when the receiver refused the first with 413: 32 KiB.
    pub const SMALL: Budget = Budget {
        total: 32 * 1024,
        text: 256,
        body: 2048,
        value: 512,
        map: 2048,
    };
}

/// Links longer than this are left out (a cut URL is a broken link).
const MAX_URL_BYTES: usize = 2000;

/// One request, ready to send: `headers` are all of them (the three `webhook-*`,
/// `content-type` and the target's own); the signature covers exactly `body`.
#[derive(Debug, Clone)]
pub struct SignedRequest {
    pub id: String,
    pub timestamp: i64,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Vec<u8>,
}

/// The signed request for `n`, sent at `now_secs` (Unix seconds, the time of this attempt:
/// receivers refuse a timestamp more than a few minutes off, so each retry is signed anew,
/// under the same `webhook-id`).
pub fn build(
    config: &WebhookConfig,
    n: &Notification,
    text: &Rendered,
    now_secs: i64,
    budget: Budget,
) -> SignedRequest {
    let id = message_id(n);
    let body = body_within(n, text, budget);
    let signature = sign(&config.key, &id, now_secs, &body);
    let mut headers = vec![
        (
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        ),
        (HeaderName::from_static("webhook-id"), header_value(&id)),
        (
            HeaderName::from_static("webhook-timestamp"),
            HeaderValue::from(now_secs),
        ),
        (
            HeaderName::from_static("webhook-signature"),
            header_value(&signature),
        ),
    ];
    headers.extend(config.headers.iter().cloned());
    SignedRequest {
        id,
        timestamp: now_secs,
        headers,
        body,
    }
}

/// ASCII built here (hex, base64, digits): always a valid header value.
fn header_value(text: &str) -> HeaderValue {
    HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

/// `webhook-id`: the same for every attempt of one notification (retries, restarts, another
/// relay taking over) and different for every other one, so that a receiver can drop
/// duplicates. Derived from what the outbox stores of it: the incident (its sequence id, id
/// and start), the target, the kind, the step and when it was queued.
pub fn message_id(n: &Notification) -> String {
    let mut hash = Sha256::new();
    for part in [
        n.sequence_id.as_str(),
        &n.incident_id.to_string(),
        &n.incident_started_at.0.to_string(),
        n.target.as_str(),
        n.kind.as_str(),
        &n.step.to_string(),
        &n.created_at.0.to_string(),
        n.person.as_deref().unwrap_or(""),
    ] {
        hash.update(part.as_bytes());
        // A separator no part holds: ("ab","c") and ("a","bc") differ.
        hash.update([0]);
    }
    let digest = hash.finalize();
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("msg_{hex}")
}

/// `v1,<base64 of HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`.
pub fn sign(key: &SigningKey, id: &str, timestamp: i64, body: &[u8]) -> String {
    // HMAC takes a key of any length: `new_from_slice` cannot fail for it.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&key.0) else {
        return String::new();
    };
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let tag = mac.finalize().into_bytes();
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(tag)
    )
}

#[derive(Debug, Serialize)]
struct Payload<'a> {
    version: &'static str,
    #[serde(rename = "type")]
    event_type: &'static str,
    timestamp: String,
    data: Data<'a>,
}

#[derive(Debug, Serialize)]
struct Data<'a> {
    kind: &'static str,
    incident: Option<Incident<'a>>,
    step: usize,
    target: &'a str,
    person: Option<&'a str>,
    title: String,
    body: String,
    note: Option<String>,
    acknowledged_by: Option<String>,
    silence_note: Option<String>,
    group: Group<'a>,
    alerts: Vec<AlertOut<'a>>,
    alerts_total: u64,
    alerts_firing: usize,
    alerts_omitted: u64,
    entries_omitted: u64,
    links: Links<'a>,
}

#[derive(Debug, Serialize)]
struct Incident<'a> {
    id: i64,
    sequence_id: &'a str,
    policy: &'a str,
    group_key: String,
    status: &'static str,
    started_at: String,
}

#[derive(Debug, Serialize)]
struct Group<'a> {
    status: crate::domain::AlertStatus,
    receiver: String,
    group_labels: BTreeMap<&'a str, String>,
    common_labels: BTreeMap<&'a str, String>,
    common_annotations: BTreeMap<&'a str, String>,
}

#[derive(Debug, Serialize)]
struct AlertOut<'a> {
    status: crate::domain::AlertStatus,
    fingerprint: String,
    starts_at: Option<String>,
    ends_at: Option<String>,
    labels: BTreeMap<&'a str, String>,
    annotations: BTreeMap<&'a str, String>,
    generator_url: Option<&'a str>,
}

#[derive(Debug, Default, Serialize)]
struct Links<'a> {
    runbook: Option<&'a str>,
    acknowledge: Option<&'a str>,
    silence: Option<&'a str>,
    source: Option<&'a str>,
    incident: Option<&'a str>,
    alertmanager: Option<&'a str>,
}

/// `event type` and the incident's status after this notification.
fn kind_names(kind: NotificationKind) -> (&'static str, &'static str) {
    match kind {
        NotificationKind::Firing => ("incident.firing", "open"),
        NotificationKind::Acknowledged => ("incident.acknowledged", "acknowledged"),
        NotificationKind::Resolved => ("incident.resolved", "resolved"),
        NotificationKind::Silenced => ("incident.silenced", "silenced"),
        NotificationKind::Handoff => ("oncall.handoff", "none"),
    }
}

fn link(url: Option<&str>) -> Option<&str> {
    fit::url(url.and_then(web_link), MAX_URL_BYTES)
}

/// The JSON body, at most `budget.total` bytes.
pub fn body_within<'a>(n: &'a Notification, text: &Rendered, budget: Budget) -> Vec<u8> {
    let mut omitted_entries = 0;
    let mut map = |labels: &'a Labels| -> BTreeMap<&'a str, String> {
        let (kept, left_out) = cut_map(labels, budget);
        omitted_entries += left_out;
        kept
    };
    let group = &n.group;
    let data_group = Group {
        status: group.status,
        receiver: fit::json_bytes(&group.receiver, budget.text),
        group_labels: map(&group.group_labels),
        common_labels: map(&group.common_labels),
        common_annotations: map(&group.common_annotations),
    };
    let alerts: Vec<AlertOut<'a>> = group
        .alerts
        .iter()
        .map(|a| alert(a, &mut map, budget))
        .collect();
    let (event_type, status) = kind_names(n.kind);
    let note = |t: &Option<String>| t.as_deref().map(|t| fit::json_bytes(t, budget.text));
    let mut payload = Payload {
        version: "1",
        event_type,
        timestamp: n.created_at.to_rfc3339(),
        data: Data {
            kind: n.kind.as_str(),
            incident: (n.kind != NotificationKind::Handoff).then(|| Incident {
                id: n.incident_id,
                sequence_id: &n.sequence_id,
                policy: n.policy.as_str(),
                group_key: fit::json_bytes(group.group_key.as_str(), budget.value),
                status,
                started_at: n.incident_started_at.to_rfc3339(),
            }),
            step: n.step,
            target: n.target.as_str(),
            person: n.person.as_deref(),
            title: fit::json_bytes(&text.title, budget.text),
            body: fit::json_bytes(&text.body, budget.body),
            note: note(&n.note),
            acknowledged_by: note(&n.acknowledged_by),
            silence_note: note(&n.silence_note),
            group: data_group,
            alerts: Vec::new(),
            alerts_total: group.alerts.len() as u64 + group.truncated_alerts,
            alerts_firing: group.firing_count(),
            alerts_omitted: 0,
            entries_omitted: omitted_entries,
            links: Links {
                runbook: link(n.runbook_url()),
                acknowledge: link(n.ack_url.as_deref()),
                silence: link(n.silence_url.as_deref()),
                source: link(n.generator_url()),
                incident: link(n.console_url.as_deref()),
                alertmanager: link(group.external_url.as_deref()),
            },
        },
    };
    fill_alerts(&mut payload, alerts, group.truncated_alerts, budget.total)
}

/// A label or annotation map within `budget.map` bytes of JSON: values cut to
/// `budget.value`, entries kept in order while they fit; the number left out.
fn cut_map(labels: &Labels, budget: Budget) -> (BTreeMap<&str, String>, u64) {
    let mut used = 2;
    let mut kept = BTreeMap::new();
    let mut left_out = 0;
    for (key, value) in labels {
        let value = fit::json_bytes(value, budget.value);
        // "key":"value", with quotes, colon and comma.
        let size = fit::json_len(key) + fit::json_len(&value) + 6;
        if used + size <= budget.map {
            used += size;
            kept.insert(key.as_str(), value);
        } else {
            left_out += 1;
        }
    }
    (kept, left_out)
}

fn alert<'a>(
    a: &'a Alert,
    map: &mut impl FnMut(&'a Labels) -> BTreeMap<&'a str, String>,
    budget: Budget,
) -> AlertOut<'a> {
    // Instants are parsed at the boundary; cut anyway, they are only strings here.
    let short = |t: &Option<String>| t.as_deref().map(|t| fit::json_bytes(t, 64));
    AlertOut {
        status: a.status,
        fingerprint: fit::json_bytes(a.fingerprint.as_str(), budget.text),
        starts_at: short(&a.starts_at),
        ends_at: short(&a.ends_at),
        labels: map(&a.labels),
        annotations: map(&a.annotations),
        generator_url: link(a.generator_url.as_deref()),
    }
}

fn size(payload: &Payload<'_>) -> usize {
    serde_json::to_vec(payload).map_or(usize::MAX, |v| v.len())
}

/// Adds alerts in order while the body stays within `total`, counts the rest; should the
/// group itself be too large (only with a tiny budget), its maps and links give way.
fn fill_alerts<'a>(
    payload: &mut Payload<'a>,
    alerts: Vec<AlertOut<'a>>,
    truncated_by_alertmanager: u64,
    total: usize,
) -> Vec<u8> {
    let count = alerts.len() as u64;
    // Sized with the largest count it could say: the real one has no more digits.
    payload.data.alerts_omitted = count + truncated_by_alertmanager;
    let mut used = size(payload);
    let mut kept = 0;
    for alert in alerts {
        let one = serde_json::to_vec(&alert).map_or(usize::MAX, |v| v.len());
        // A comma between alerts.
        let extra = one.saturating_add(usize::from(kept > 0));
        if used.saturating_add(extra) > total {
            break;
        }
        used += extra;
        kept += 1;
        payload.data.alerts.push(alert);
    }
    payload.data.alerts_omitted = count - kept + truncated_by_alertmanager;
    let shrinks: [fn(&mut Data<'_>); 4] = [
        |d| d.alerts.clear(),
        |d| {
            d.entries_omitted += d.group.common_annotations.len() as u64;
            d.group.common_annotations.clear();
        },
        |d| {
            let g = &mut d.group;
            d.entries_omitted += (g.common_labels.len() + g.group_labels.len()) as u64;
            g.common_labels.clear();
            g.group_labels.clear();
        },
        |d| d.links = Links::default(),
    ];
    for shrink in shrinks {
        if size(payload) <= total {
            break;
        }
        shrink(&mut payload.data);
        payload.data.alerts_omitted = count + truncated_by_alertmanager;
    }
    serde_json::to_vec(payload).unwrap_or_default()
}
