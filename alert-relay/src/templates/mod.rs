//! Titles and bodies with handlebars: defaults that read well on a lock screen, overridable
//! per policy. A template that fails to render falls back to the default (and is logged):
//! a page is never lost to a template mistake.

use handlebars::Handlebars;
use serde_json::{json, Value};

use crate::config::Config;
use crate::domain::{AlertStatus, Notification, NotificationKind};

pub const DEFAULT_TITLE: &str = "{{#if resolved}}RESOLVED {{/if}}{{#if acknowledged}}ACK {{/if}}{{#if silenced}}SILENCED {{/if}}[{{severity}}] {{alertname}}{{#if truncated_count}} ({{total_count}} alerts, {{count}} shown){{else}}{{#if (gt firing_count 1)}} ({{firing_count}} firing){{/if}}{{/if}}";
pub const DEFAULT_BODY: &str = "{{#if note}}{{note}}\n{{/if}}{{#if summary}}{{summary}}\n{{/if}}{{#if description}}{{description}}\n{{/if}}{{#if truncated_count}}{{total_count}} alerts, {{count}} shown: Alertmanager left {{truncated_count}} out (max_alerts).\n{{/if}}{{#if resolved}}Resolved after {{duration}}.{{else}}{{#if acknowledged}}Acknowledged{{#if acknowledged_by}} by {{acknowledged_by}}{{/if}}; escalation stopped after {{duration}}.{{else}}{{#if silenced}}Silenced in Alertmanager{{#if silence_note}} ({{silence_note}}){{/if}}; escalation stopped after {{duration}}.{{else}}Firing for {{duration}} (step {{step}}, policy {{policy}}){{#if person}}, paging {{person}}{{/if}}.{{/if}}{{/if}}{{/if}}";

pub use crate::domain::Rendered;

pub struct Templates {
    registry: Handlebars<'static>,
}

impl Templates {
    /// Compiles the defaults and every policy's templates (validated already by `config`).
    pub fn new(config: &Config) -> Self {
        let mut registry = Handlebars::new();
        registry.register_escape_fn(handlebars::no_escape);
        let mut add = |name: String, text: &str| {
            if let Err(error) = registry.register_template_string(&name, text) {
                tracing::error!(template = %name, %error, "template does not compile; the default is used");
            }
        };
        add("default/title".into(), DEFAULT_TITLE);
        add("default/body".into(), DEFAULT_BODY);
        for (target, templates) in &config.target_templates {
            if let Some(text) = &templates.title {
                add(format!("target/{target}/title"), text);
            }
            if let Some(text) = &templates.body {
                add(format!("target/{target}/body"), text);
            }
        }
        for policy in &config.policies {
            if let Some(text) = &policy.title_template {
                add(format!("{}/title", policy.name), text);
            }
            if let Some(text) = &policy.body_template {
                add(format!("{}/body", policy.name), text);
            }
        }
        Self { registry }
    }

    /// Renders with the policy's template, else the target's, else the default.
    pub fn render(&self, notification: &Notification) -> Rendered {
        if notification.kind == NotificationKind::Handoff {
            return handoff(notification);
        }
        let context = context(notification);
        let policy = notification.policy.as_str();
        let target = notification.target.as_str();
        Rendered {
            title: self.one(policy, target, "title", &context),
            body: self.one(policy, target, "body", &context),
        }
    }

    fn one(&self, policy: &str, target: &str, part: &str, context: &Value) -> String {
        for custom in [
            format!("{policy}/{part}"),
            format!("target/{target}/{part}"),
        ] {
            if !self.registry.has_template(&custom) {
                continue;
            }
            match self.registry.render(&custom, context) {
                Ok(text) if !text.trim().is_empty() => return text.trim().to_owned(),
                // A page never goes out blank: an empty render falls back too.
                Ok(_) => {
                    tracing::warn!(template = %custom, "template rendered to nothing; the default is used");
                }
                Err(error) => {
                    tracing::error!(template = %custom, %error, "template failed to render; the default is used");
                }
            }
        }
        self.registry
            .render(&format!("default/{part}"), context)
            .map(|t| t.trim().to_owned())
            .ok()
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| String::from("alert"))
    }

    /// Which of `policy`'s and `target`'s own templates render to nothing for `n` (for
    /// `check-config`'s warnings): `(template name, part)`.
    pub fn empty_renders(&self, n: &Notification) -> Vec<String> {
        let context = context(n);
        let mut empty = Vec::new();
        for part in ["title", "body"] {
            for custom in [
                format!("{}/{part}", n.policy.as_str()),
                format!("target/{}/{part}", n.target.as_str()),
            ] {
                if self.registry.has_template(&custom)
                    && self
                        .registry
                        .render(&custom, &context)
                        .is_ok_and(|t| t.trim().is_empty())
                {
                    empty.push(custom);
                }
            }
        }
        empty
    }
}

/// A handoff notice is the relay's own message, not an alert's: policies' templates do not
/// apply. Its `note` says for which schedule and until when.
fn handoff(n: &Notification) -> Rendered {
    let schedule = n
        .group
        .common_labels
        .get("schedule")
        .map_or("a schedule", String::as_str);
    Rendered {
        title: format!("On call: {schedule}"),
        body: n
            .note
            .clone()
            .unwrap_or_else(|| format!("You are on call for {schedule}.")),
    }
}

/// What templates can use (documented in docs/configuration.md).
pub fn context(n: &Notification) -> Value {
    let group = &n.group;
    let first = group.alerts.first();
    let label = |name: &str| {
        group
            .common_labels
            .get(name)
            .or_else(|| first.and_then(|a| a.labels.get(name)))
            .cloned()
            .unwrap_or_default()
    };
    let annotation = |name: &str| {
        group
            .common_annotations
            .get(name)
            .or_else(|| first.and_then(|a| a.annotations.get(name)))
            .cloned()
            .unwrap_or_default()
    };
    let firing = group
        .alerts
        .iter()
        .filter(|a| a.status == AlertStatus::Firing)
        .count();
    let seconds = (n.created_at.0 - n.incident_started_at.0).max(0) / 1000;
    let duration = humantime::format_duration(std::time::Duration::from_secs(
        // Minutes are enough on a phone.
        if seconds >= 60 {
            seconds - seconds % 60
        } else {
            seconds
        } as u64,
    ))
    .to_string();
    let severity = Some(label("severity"))
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "none".to_owned());
    json!({
        "kind": match n.kind {
            NotificationKind::Firing => "firing",
            NotificationKind::Resolved => "resolved",
            NotificationKind::Acknowledged => "acknowledged",
            NotificationKind::Silenced => "silenced",
            NotificationKind::Handoff => "handoff",
        },
        "status": if n.kind == NotificationKind::Resolved { "resolved" } else { "firing" },
        "resolved": n.kind == NotificationKind::Resolved,
        "acknowledged": n.kind == NotificationKind::Acknowledged,
        "silenced": n.kind == NotificationKind::Silenced,
        "silence_note": n.silence_note,
        "note": n.note,
        "alertname": label("alertname"),
        "severity": severity,
        "summary": annotation("summary"),
        "description": annotation("description"),
        "labels": group.common_labels,
        "annotations": group.common_annotations,
        "alerts": group.alerts.iter().map(|a| json!({
            "status": a.status,
            "labels": a.labels,
            "annotations": a.annotations,
            "starts_at": a.starts_at,
            "generator_url": a.generator_url,
        })).collect::<Vec<_>>(),
        "count": group.alerts.len(),
        // Alertmanager's `max_alerts` left these out of the webhook.
        "truncated_count": group.truncated_alerts,
        "total_count": group.alerts.len() as u64 + group.truncated_alerts,
        "firing_count": firing,
        "resolved_count": group.alerts.len() - firing,
        "runbook_url": n.runbook_url(),
        "generator_url": n.generator_url(),
        "silence_url": n.silence_url,
        "ack_url": n.ack_url,
        "started_at": n.incident_started_at.0 / 1000,
        "duration": duration,
        "step": n.step + 1,
        "policy": n.policy.as_str(),
        "incident_id": n.incident_id,
        "acknowledged_by": n.acknowledged_by,
        // The person paged (a step naming person.<name>, or whoever a schedule put on call).
        "person": n.person,
        "target": n.target.as_str(),
    })
}

#[cfg(test)]
mod tests;
