//! A realistic notification, for `check-config`, `test-notify` and tests.

use super::{
    Alert, AlertGroup, AlertStatus, Fingerprint, GroupKey, Labels, Notification, NotificationKind,
    PolicyName, TargetName, Timestamp,
};

/// A realistic notification (a critical gateway alert), for `check-config`, `test-notify`
/// and tests.
pub fn sample_notification(policy: &str, target: &str, kind: NotificationKind) -> Notification {
    let labels: Labels = [
        ("alertname", "GatewayHighErrorRate"),
        ("severity", "critical"),
        ("service", "gateway"),
        ("target", "gateway"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    let annotations: Labels = [
        (
            "summary",
            "The gateway answers more than 5% of requests with 5xx.",
        ),
        (
            "description",
            "12.5% of requests to the gateway failed over the last 5 minutes.",
        ),
        (
            "runbook_url",
            "https://example.com/docs/runbooks/GatewayHighErrorRate.md",
        ),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    let status = if kind == NotificationKind::Resolved {
        AlertStatus::Resolved
    } else {
        AlertStatus::Firing
    };
    let alert = Alert {
        status,
        labels: labels.clone(),
        annotations: annotations.clone(),
        starts_at: Some("2026-11-01T03:00:00Z".into()),
        ends_at: None,
        generator_url: Some(
            "http://prometheus:9090/graph?g0.expr=job%3Ahttp_request_errors%3Aratio_rate5m".into(),
        ),
        fingerprint: Fingerprint::from("0123456789abcdef"),
    };
    Notification {
        incident_id: 1,
        policy: PolicyName::from(policy),
        target: TargetName::from(target),
        kind,
        step: 0,
        group: AlertGroup {
            group_key: GroupKey::from("{}:{alertname=\"GatewayHighErrorRate\", service=\"gateway\"}"),
            status,
            receiver: "relay".into(),
            group_labels: [("alertname".to_owned(), "GatewayHighErrorRate".to_owned())].into(),
            common_labels: labels,
            common_annotations: annotations,
            external_url: Some("http://alertmanager:9093".into()),
            truncated_alerts: 0,
            alerts: vec![alert],
        },
        sequence_id: "relay-1".into(),
        incident_started_at: Timestamp(1_793_502_000_000),
        ack_url: Some("https://relay.example.com/ack/TOKEN".into()),
        silence_url: Some("http://alertmanager:9093/#/silences/new?filter=%7Balertname%3D%22GatewayHighErrorRate%22%7D".into()),
        created_at: Timestamp(1_793_502_000_000 + 17 * 60_000),
        acknowledged_by: (kind == NotificationKind::Acknowledged).then(|| "alice".to_owned()),
        silence_note: (kind == NotificationKind::Silenced)
            .then(|| "silenced by alice until 2026-11-01T06:00:00Z: disk replaced".to_owned()),
        note: None,
        person: None,
        mentions: Vec::new(),
        runbook_link: None,
        console_url: None,
        incident_url: None,
    }
}
