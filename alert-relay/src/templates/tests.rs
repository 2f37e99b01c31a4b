//! Default and custom templates, and the fallback when one breaks.

use std::path::Path;

use super::*;
use crate::domain::sample_notification;

fn config(title: Option<&str>) -> Config {
    let mut text = String::from(
        "server:\n  webhook_auth: {none: true}\ntargets:\n  log:\n    audit: {path: \"-\"}\npolicies:\n  - name: critical\n",
    );
    if let Some(title) = title {
        text.push_str(&format!("    templates:\n      title: {title:?}\n"));
    }
    text.push_str("    steps:\n      - after: 0m\n        notify: [log.audit]\n");
    Config::parse(&text, Path::new("t.yml"), &|_| None).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn defaults_read_well_on_a_lock_screen() {
    let templates = Templates::new(&config(None));
    let firing = templates.render(&sample_notification(
        "critical",
        "log.audit",
        NotificationKind::Firing,
    ));
    assert_eq!(firing.title, "[critical] GatewayHighErrorRate");
    assert_eq!(
        firing.body,
        "The gateway answers more than 5% of requests with 5xx.\n12.5% of requests to the gateway failed over the last 5 minutes.\nFiring for 17m (step 1, policy critical)."
    );
    let resolved = templates.render(&sample_notification(
        "critical",
        "log.audit",
        NotificationKind::Resolved,
    ));
    assert_eq!(resolved.title, "RESOLVED [critical] GatewayHighErrorRate");
    assert!(
        resolved.body.ends_with("Resolved after 17m."),
        "{}",
        resolved.body
    );
    let ack = templates.render(&sample_notification(
        "critical",
        "log.audit",
        NotificationKind::Acknowledged,
    ));
    assert!(ack.title.starts_with("ACK "));
}

#[test]
fn a_policy_template_overrides_the_default() {
    let templates = Templates::new(&config(Some(
        "{{alertname}} on {{labels.service}} ({{count}})",
    )));
    let rendered = templates.render(&sample_notification(
        "critical",
        "log.audit",
        NotificationKind::Firing,
    ));
    assert_eq!(rendered.title, "GatewayHighErrorRate on gateway (1)");
    assert!(
        rendered.body.contains("Firing for"),
        "the body keeps the default"
    );
}

#[test]
fn a_template_failing_at_render_time_falls_back_to_the_default() {
    // Compiles, but fails when rendered: an unknown helper.
    let templates = Templates::new(&config(Some("{{shout alertname}}")));
    let rendered = templates.render(&sample_notification(
        "critical",
        "log.audit",
        NotificationKind::Firing,
    ));
    assert_eq!(rendered.title, "[critical] GatewayHighErrorRate");
}

#[test]
fn text_is_not_html_escaped() {
    let mut n = sample_notification("critical", "log.audit", NotificationKind::Firing);
    n.group
        .common_annotations
        .insert("summary".into(), "p99 > 1s & <rising>".into());
    let rendered = Templates::new(&config(None)).render(&n);
    assert!(
        rendered.body.starts_with("p99 > 1s & <rising>"),
        "{}",
        rendered.body
    );
}

#[test]
fn a_template_that_renders_to_nothing_falls_back_and_is_reported() {
    let templates = Templates::new(&config(Some("{{#if nothing}}x{{/if}}  ")));
    let n = sample_notification("critical", "log.audit", NotificationKind::Firing);
    assert_eq!(
        templates.render(&n).title,
        "[critical] GatewayHighErrorRate"
    );
    assert_eq!(
        templates.empty_renders(&n),
        vec!["critical/title".to_owned()]
    );
    let fine = Templates::new(&config(None));
    assert!(fine.empty_renders(&n).is_empty());
}

#[test]
fn alerts_left_out_by_alertmanager_are_shown_in_the_page() {
    let templates = Templates::new(&config(None));
    let mut n = sample_notification("critical", "log.audit", NotificationKind::Firing);
    n.group.truncated_alerts = 40;
    let text = templates.render(&n);
    assert_eq!(
        text.title,
        "[critical] GatewayHighErrorRate (41 alerts, 1 shown)"
    );
    assert!(
        text.body
            .contains("41 alerts, 1 shown: Alertmanager left 40 out (max_alerts)."),
        "{}",
        text.body
    );
}

#[test]
fn the_acknowledge_notice_says_who() {
    let templates = Templates::new(&config(None));
    let n = sample_notification("critical", "log.audit", NotificationKind::Acknowledged);
    let text = templates.render(&n);
    assert!(
        text.body.contains("Acknowledged by alice;"),
        "{}",
        text.body
    );
}
