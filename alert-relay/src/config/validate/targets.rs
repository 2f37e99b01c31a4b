//! Targets (ntfy topics, Slack, PagerDuty, log) and their templates.

use std::collections::BTreeMap;

use url::Url;

use super::Checker;
use crate::config::raw::{RawConfig, RawNtfy};
use crate::config::*;

pub(super) fn target_templates(
    c: &mut Checker<'_>,
    raw: &RawConfig,
) -> BTreeMap<TargetName, TargetTemplates> {
    let t = &raw.targets;
    let all = t
        .ntfy
        .iter()
        .map(|(n, x)| (format!("ntfy.{n}"), &x.templates))
        .chain(
            t.slack
                .iter()
                .map(|(n, x)| (format!("slack.{n}"), &x.templates)),
        )
        .chain(
            t.pagerduty
                .iter()
                .map(|(n, x)| (format!("pagerduty.{n}"), &x.templates)),
        );
    let mut out = BTreeMap::new();
    for (name, templates) in all {
        let (kind, short) = name.split_once('.').unwrap_or((&name, ""));
        for (field, template) in [("title", &templates.title), ("body", &templates.body)] {
            if let Some(text) = template {
                if let Err(e) = handlebars::Template::compile(text) {
                    c.error(
                        format!("targets.{kind}.{short}.templates.{field}"),
                        format!("invalid template: {e}"),
                    );
                }
            }
        }
        if templates.title.is_some() || templates.body.is_some() {
            out.insert(
                TargetName(name.clone()),
                TargetTemplates {
                    title: templates.title.clone(),
                    body: templates.body.clone(),
                },
            );
        }
    }
    out
}

type Targets = (
    BTreeMap<TargetName, TargetConfig>,
    BTreeMap<TargetName, String>,
);

pub(super) fn targets(c: &mut Checker<'_>, raw: &RawConfig) -> Targets {
    let mut enabled = BTreeMap::new();
    let mut disabled = BTreeMap::new();
    for (name, ntfy) in &raw.targets.ntfy {
        let path = format!("targets.ntfy.{name}");
        let target = TargetName(format!("ntfy.{name}"));
        match self::ntfy(c, &path, ntfy) {
            Some(Ok(config)) => {
                enabled.insert(target, TargetConfig::Ntfy(config));
            }
            Some(Err(why)) => {
                disabled.insert(target, why);
            }
            None => {}
        }
    }
    for (name, slack) in &raw.targets.slack {
        let path = format!("targets.slack.{name}.webhook_url");
        let Some(url) = c.secret(
            &path,
            slack.webhook_url.as_ref(),
            slack.webhook_url_file.as_ref(),
        ) else {
            if slack.webhook_url.is_none() && slack.webhook_url_file.is_none() {
                c.error(
                    path,
                    "missing: set webhook_url (e.g. ${SLACK_WEBHOOK_URL}) or webhook_url_file",
                );
            }
            continue;
        };
        let target = TargetName(format!("slack.{name}"));
        if url.0.is_empty() {
            disabled.insert(
                target,
                "its webhook_url is empty (set the environment variable to enable it)".into(),
            );
            continue;
        }
        // Checked without echoing the URL: it is the credential.
        match Url::parse(&url.0) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => {
                enabled.insert(
                    target,
                    TargetConfig::Slack(SlackConfig { webhook_url: url }),
                );
            }
            _ => c.error(
                path,
                "not an http(s) URL; copy the incoming-webhook URL from Slack's app settings",
            ),
        }
    }
    for (name, pd) in &raw.targets.pagerduty {
        let path = format!("targets.pagerduty.{name}");
        let key_path = format!("{path}.routing_key");
        let Some(key) = c.secret(
            &key_path,
            pd.routing_key.as_ref(),
            pd.routing_key_file.as_ref(),
        ) else {
            if pd.routing_key.is_none() && pd.routing_key_file.is_none() {
                c.error(
                    key_path,
                    "missing: set routing_key (e.g. ${PAGERDUTY_ROUTING_KEY}) or routing_key_file",
                );
            }
            continue;
        };
        let target = TargetName(format!("pagerduty.{name}"));
        if key.0.is_empty() {
            disabled.insert(
                target,
                "its routing_key is empty (set the environment variable to enable it)".into(),
            );
            continue;
        }
        if key.0.len() != 32 || !key.0.chars().all(|ch| ch.is_ascii_alphanumeric()) {
            c.error(
                key_path,
                "a PagerDuty integration key is 32 letters and digits (Events API v2 integration)",
            );
            continue;
        }
        let url = match &pd.url {
            Some(u) => c.expand(&format!("{path}.url"), u),
            None => Some("https://events.pagerduty.com/v2/enqueue".to_owned()),
        };
        let Some(url) = url.and_then(|u| c.url(&format!("{path}.url"), &u)) else {
            continue;
        };
        enabled.insert(
            target,
            TargetConfig::PagerDuty(PagerDutyConfig {
                routing_key: key,
                url,
                source: pd.source.clone(),
            }),
        );
    }
    for (name, log) in &raw.targets.log {
        let path = format!("targets.log.{name}.path");
        let Some(value) = c.expand(&path, &log.path) else {
            continue;
        };
        let path = match value.as_str() {
            "-" | "" => None,
            file => Some(std::path::PathBuf::from(file)),
        };
        enabled.insert(
            TargetName(format!("log.{name}")),
            TargetConfig::Log(LogConfig { path }),
        );
    }
    (enabled, disabled)
}

/// `None` on errors (recorded), `Some(Err(why))` for a target switched off by an empty topic.
fn ntfy(c: &mut Checker<'_>, path: &str, raw: &RawNtfy) -> Option<Result<NtfyConfig, String>> {
    let topic = c.expand(&format!("{path}.topic"), &raw.topic)?;
    let server = match &raw.url {
        Some(url) => c.expand(&format!("{path}.url"), url)?,
        None => "https://ntfy.sh".to_owned(),
    };
    let server = c.url(&format!("{path}.url"), &server)?;
    if topic.is_empty() {
        return Some(Err(
            "its topic is empty (set the topic's environment variable to enable it)".into(),
        ));
    }
    if !topic
        .chars()
        .all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == '-')
        || topic.len() > 64
    {
        c.error(
            format!("{path}.topic"),
            "ntfy topics are 1-64 letters, digits, `_` or `-`",
        );
    }
    let token = c
        .secret(
            &format!("{path}.token"),
            raw.token.as_ref(),
            raw.token_file.as_ref(),
        )
        .filter(|t| !t.0.is_empty());
    let username = raw
        .username
        .as_ref()
        .and_then(|u| c.expand(&format!("{path}.username"), u))
        .filter(|u| !u.is_empty());
    let password = raw
        .password
        .as_ref()
        .and_then(|p| c.expand(&format!("{path}.password"), p))
        .map(Secret);
    let auth = match (token, username, password) {
        (Some(_), Some(_), _) => {
            c.error(path, "set either token or username/password, not both");
            NtfyAuth::None
        }
        (Some(token), None, _) => NtfyAuth::Token(token),
        (None, Some(username), Some(password)) => NtfyAuth::Basic { username, password },
        (None, Some(_), None) => {
            c.error(
                format!("{path}.password"),
                "username is set but password is missing",
            );
            NtfyAuth::None
        }
        (None, None, _) => NtfyAuth::None,
    };
    let mut priorities = [5, 4, 3];
    for (severity, priority) in &raw.priorities {
        let slot = match severity.as_str() {
            "critical" => 0,
            "warning" => 1,
            "info" => 2,
            other => {
                c.error(
                    format!("{path}.priorities.{other}"),
                    "severities are critical, warning and info",
                );
                continue;
            }
        };
        if !(1..=5).contains(priority) {
            c.error(
                format!("{path}.priorities.{severity}"),
                "ntfy priorities go from 1 (min) to 5 (max)",
            );
        }
        priorities[slot] = *priority;
    }
    Some(Ok(NtfyConfig {
        server,
        topic,
        auth,
        priorities,
        tags: raw.tags.clone(),
    }))
}
