//! Alertmanager's webhook payload (v4): private wire types, tolerant of unknown fields, and
//! their conversion into a domain `AlertGroup` at the boundary.

use std::collections::BTreeMap;

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::domain::{Alert, AlertGroup, AlertStatus, Fingerprint, GroupKey, Labels};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Payload {
    version: Option<String>,
    group_key: String,
    #[serde(default)]
    truncated_alerts: u64,
    status: AlertStatus,
    #[serde(default)]
    receiver: String,
    #[serde(default)]
    group_labels: Labels,
    #[serde(default)]
    common_labels: Labels,
    #[serde(default)]
    common_annotations: Labels,
    #[serde(rename = "externalURL", default)]
    external_url: Option<String>,
    alerts: Vec<WireAlert>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireAlert {
    status: AlertStatus,
    #[serde(default)]
    labels: Labels,
    #[serde(default)]
    annotations: Labels,
    starts_at: Option<String>,
    ends_at: Option<String>,
    #[serde(rename = "generatorURL", default)]
    generator_url: Option<String>,
    #[serde(default)]
    fingerprint: Option<String>,
}

/// Parses a webhook body; the error says what is wrong and where.
pub fn parse(body: &[u8]) -> Result<AlertGroup, String> {
    let payload: Payload =
        serde_json::from_slice(body).map_err(|e| format!("invalid Alertmanager webhook: {e}"))?;
    if let Some(version) = payload.version.as_deref().filter(|v| *v != "4") {
        return Err(format!(
            "unsupported webhook version {version:?}: only version \"4\" is understood"
        ));
    }
    if payload.group_key.is_empty() {
        return Err("invalid Alertmanager webhook: groupKey is empty".into());
    }
    if payload.alerts.is_empty() {
        return Err("invalid Alertmanager webhook: alerts is empty".into());
    }
    let alerts = payload
        .alerts
        .into_iter()
        .map(|a| {
            // Old Alertmanagers send no fingerprint: derive a stable one from the labels.
            let fingerprint = a
                .fingerprint
                .filter(|f| !f.is_empty())
                .unwrap_or_else(|| label_hash(&a.labels));
            Alert {
                status: a.status,
                labels: a.labels,
                annotations: a.annotations,
                starts_at: instant(a.starts_at),
                // Alertmanager's zero time means "still firing".
                ends_at: instant(a.ends_at).filter(|e| !e.starts_with("0001-")),
                generator_url: a.generator_url.filter(|u| !u.is_empty()),
                fingerprint: Fingerprint(fingerprint),
            }
        })
        .collect();
    Ok(AlertGroup {
        group_key: GroupKey(payload.group_key),
        status: payload.status,
        receiver: payload.receiver,
        group_labels: payload.group_labels,
        common_labels: payload.common_labels,
        common_annotations: payload.common_annotations,
        external_url: payload.external_url,
        truncated_alerts: payload.truncated_alerts,
        alerts,
    })
}

/// A time as RFC 3339 in UTC, or `None` when it is missing or not a time: a bad timestamp
/// is dropped at the boundary (and the alert kept), never passed on to a vendor.
fn instant(text: Option<String>) -> Option<String> {
    let text = text?;
    match text.parse::<jiff::Timestamp>() {
        Ok(t) => Some(if text.ends_with('Z') {
            text
        } else {
            t.to_string()
        }),
        Err(_) => {
            tracing::warn!(value = ?text.chars().take(64).collect::<String>(), "webhook timestamp is not RFC 3339; left out");
            None
        }
    }
}

fn label_hash(labels: &BTreeMap<String, String>) -> String {
    let mut hasher = Sha256::new();
    for (k, v) in labels {
        hasher.update(k.as_bytes());
        hasher.update([0]);
        hasher.update(v.as_bytes());
        hasher.update([0]);
    }
    hasher.finalize()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_v4_payload_with_unknown_fields_parses() {
        let body = br#"{"version":"4","groupKey":"{}:{alertname=\"X\"}","truncatedAlerts":0,"status":"firing",
            "receiver":"relay","groupLabels":{"alertname":"X"},"commonLabels":{"alertname":"X","severity":"critical"},
            "commonAnnotations":{},"externalURL":"http://am:9093","notification_reason":"new","routeLabels":{},
            "alerts":[{"status":"firing","labels":{"alertname":"X"},"annotations":{},"startsAt":"2026-11-01T00:00:00Z",
            "endsAt":"0001-01-01T00:00:00Z","generatorURL":"http://prom/graph","fingerprint":"abc"}]}"#;
        let group = parse(body).expect("valid");
        assert_eq!(group.alerts[0].fingerprint.as_str(), "abc");
        assert_eq!(
            group.alerts[0].ends_at, None,
            "the zero time means still firing"
        );
    }

    #[test]
    fn timestamps_are_parsed_at_the_boundary() {
        let body = br#"{"version":"4","groupKey":"k","status":"firing","alerts":[
            {"status":"firing","startsAt":"NaN","endsAt":"tomorrow"},
            {"status":"firing","startsAt":"2026-11-01T05:00:00+02:00","endsAt":"0001-01-01T00:00:00Z"},
            {"status":"resolved","startsAt":"2026-11-01T03:00:00.123456789Z","endsAt":"2026-11-01T03:20:00Z"}]}"#;
        let group = parse(body).expect("a bad timestamp never refuses the alert");
        assert_eq!(group.alerts.len(), 3);
        assert_eq!(
            (
                group.alerts[0].starts_at.as_deref(),
                group.alerts[0].ends_at.as_deref()
            ),
            (None, None)
        );
        assert_eq!(
            group.alerts[1].starts_at.as_deref(),
            Some("2026-11-01T03:00:00Z"),
            "to UTC"
        );
        assert_eq!(group.alerts[1].ends_at, None);
        assert_eq!(
            group.alerts[2].starts_at.as_deref(),
            Some("2026-11-01T03:00:00.123456789Z")
        );
    }

    #[test]
    fn malformed_payloads_say_what_is_wrong() {
        let error = parse(b"{\"version\":\"4\"").expect_err("truncated");
        assert!(
            error.starts_with("invalid Alertmanager webhook: EOF"),
            "{error}"
        );
        let error = parse(br#"{"version":"4","groupKey":"k","status":"burning","alerts":[]}"#)
            .expect_err("status");
        assert!(error.contains("unknown variant `burning`"), "{error}");
        let error = parse(br#"{"version":"3","groupKey":"k","status":"firing","alerts":[]}"#)
            .expect_err("version");
        assert!(error.contains("unsupported webhook version"), "{error}");
        let error = parse(br#"{"groupKey":"k","status":"firing","alerts":[]}"#).expect_err("empty");
        assert!(error.contains("alerts is empty"), "{error}");
        assert!(parse(&[0xff, 0xfe, 0x00]).is_err());
    }
}
