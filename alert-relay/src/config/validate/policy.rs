//! One policy: matchers, ordered steps, repeat, heartbeat and templates.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::config::raw::RawPolicy;
use crate::config::*;
use crate::engine::{PlannedStep, Repeat};
use crate::validation::Checker;

pub(super) fn policy(
    c: &mut Checker<'_>,
    path: &str,
    raw: &RawPolicy,
    defined: &BTreeSet<TargetName>,
    disabled: &BTreeMap<TargetName, String>,
) -> Option<Policy> {
    let errors_before = c.errors.len();
    if raw.name.trim().is_empty() || raw.name.contains(['/', ' ']) {
        c.error(
            format!("{path}.name"),
            "give the policy a name without spaces or slashes (it is used in /webhook/{name})",
        );
    }
    let mut matchers = Vec::new();
    for (i, text) in raw.matchers.iter().enumerate() {
        match Matcher::parse(text) {
            Ok(m) => matchers.push(m),
            Err(e) => c.error(format!("{path}.matchers[{i}]"), e),
        }
    }
    if raw.steps.is_empty() {
        c.error(
            format!("{path}.steps"),
            "no steps: add at least `- after: 0m` with targets to notify",
        );
    }
    let mut steps = Vec::new();
    let mut previous = Duration::ZERO;
    for (i, step) in raw.steps.iter().enumerate() {
        let step_path = format!("{path}.steps[{i}]");
        let after = c.duration(&format!("{step_path}.after"), Some(&step.after), previous);
        if after < previous {
            c.error(
                format!("{step_path}.after"),
                format!(
                    "{} comes before the previous step's {}: order steps by delay",
                    step.after,
                    humantime::format_duration(previous)
                ),
            );
        }
        previous = previous.max(after);
        if step.notify.is_empty() {
            c.error(
                format!("{step_path}.notify"),
                "empty: list the targets to notify, e.g. [ntfy.primary]",
            );
        }
        let mut targets = Vec::new();
        for (j, name) in step.notify.iter().enumerate() {
            let target = TargetName(name.clone());
            if !defined.contains(&target) {
                let known: Vec<&str> = defined.iter().map(TargetName::as_str).collect();
                c.error(
                    format!("{step_path}.notify[{j}]"),
                    format!(
                        "unknown target `{name}` (defined: {})",
                        if known.is_empty() {
                            "none".to_owned()
                        } else {
                            known.join(", ")
                        }
                    ),
                );
            } else if !disabled.contains_key(&target) {
                targets.push(target);
            }
        }
        steps.push(PlannedStep {
            after_ms: u64::try_from(after.as_millis()).unwrap_or(u64::MAX),
            targets,
        });
    }
    let repeat = raw.repeat.as_ref().map(|r| {
        let every = c.duration(
            &format!("{path}.repeat.every"),
            Some(&r.every),
            Duration::from_secs(3600),
        );
        if every < Duration::from_secs(1) {
            c.error(format!("{path}.repeat.every"), "must be at least 1s");
        }
        if r.times == Some(0) {
            c.error(
                format!("{path}.repeat.times"),
                "0 repeats: remove `repeat` instead",
            );
        }
        Repeat {
            every_ms: u64::try_from(every.as_millis()).unwrap_or(u64::MAX),
            times: r.times,
        }
    });
    for (field, template) in [
        ("title", &raw.templates.title),
        ("body", &raw.templates.body),
    ] {
        if let Some(text) = template {
            c.template(&format!("{path}.templates.{field}"), text);
        }
    }
    let ack_timeout_ms = raw.ack_timeout.as_ref().map(|text| {
        let field = format!("{path}.ack_timeout");
        let after = c.duration(&field, Some(text), Duration::from_secs(1800));
        if after < Duration::from_secs(1) {
            c.error(
                field,
                "must be at least 1s: it is how long an acknowledgement holds before the chain pages again, e.g. 30m",
            );
        }
        u64::try_from(after.as_millis()).unwrap_or(u64::MAX)
    });
    let heartbeat_missing_after = raw.heartbeat.as_ref().map(|h| {
        let field = format!("{path}.heartbeat.missing_after");
        let after = c.duration(&field, Some(&h.missing_after), Duration::from_secs(600));
        if after < Duration::from_secs(1) {
            c.error(
                field,
                "must be at least 1s; give it a few heartbeat intervals, e.g. 10m when Alertmanager repeats the Watchdog every minute",
            );
        }
        after
    });
    (c.errors.len() == errors_before).then(|| Policy {
        name: PolicyName(raw.name.clone()),
        matchers,
        plan: Plan {
            policy: PolicyName(raw.name.clone()),
            steps,
            repeat,
            send_resolved: raw.send_resolved,
            ack_timeout_ms,
        },
        title_template: raw.templates.title.clone(),
        body_template: raw.templates.body.clone(),
        heartbeat_missing_after,
    })
}
