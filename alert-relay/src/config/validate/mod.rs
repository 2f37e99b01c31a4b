//! The pure validation step: raw structs in, a `Config` or every problem out. Each error names
//! its path (`policies[0].steps[1].notify[0]`) and how to fix it. Secret files are the only
//! I/O here (read once, their contents never appear in messages).

use std::collections::BTreeSet;
use std::time::Duration;

use super::raw::{RawAuth, RawConfig};
use super::*;
use crate::validation::Checker;

mod console;
mod policy;
mod retention;
mod schedules;

use policy::policy;
pub use schedules::{person_target, Person};

/// Alertmanager sends a whole group in one webhook (up to `max_alerts`, or all of it): a
/// 10,000-alert group is about 20 MB. Credentials are checked before a body is read, so only
/// an authenticated client can send this much.
const DEFAULT_MAX_BODY: u64 = 32 << 20;
const MAX_MAX_BODY: u64 = 256 << 20;

pub fn validate(
    raw: RawConfig,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, Vec<ConfigError>> {
    let mut c = Checker::new(env);
    let server = server(&mut c, &raw);
    let delivery = delivery(&mut c, &raw);
    let retention = retention::retention(&mut c, raw.retention.as_deref());
    let crate::sinks::Targets {
        enabled: mut targets,
        disabled,
        templates: target_templates,
    } = crate::sinks::validate_targets(&mut c, &raw.targets);
    let (people, person_targets, schedules) = schedules::people_and_schedules(&mut c, &raw);
    targets.extend(person_targets);
    // Steps may name a target, a person (person.<name>) or a schedule (schedule.<name>:
    // whoever is on call when the step fires).
    let defined: BTreeSet<TargetName> = targets
        .keys()
        .chain(disabled.keys())
        .cloned()
        .chain(
            raw.schedules
                .keys()
                .map(|s| TargetName(format!("schedule.{s}"))),
        )
        .collect();
    let mut policies = Vec::new();
    let mut names = BTreeSet::new();
    if raw.policies.is_empty() {
        c.error(
            "policies",
            "no policy defined: add at least one with its steps",
        );
    }
    for (i, policy) in raw.policies.iter().enumerate() {
        let path = format!("policies[{i}]");
        if !names.insert(policy.name.clone()) {
            c.error(
                format!("{path}.name"),
                format!(
                    "policy name `{}` is used twice; names must be unique",
                    policy.name
                ),
            );
        }
        if let Some(p) = self::policy(&mut c, &path, policy, &defined, &disabled) {
            policies.push(p);
        }
    }
    if c.errors.is_empty() {
        Ok(Config {
            server,
            delivery,
            targets,
            disabled_targets: disabled,
            target_templates,
            people,
            schedules,
            policies,
            retention,
        })
    } else {
        Err(c.errors)
    }
}

fn server(c: &mut Checker<'_>, raw: &RawConfig) -> ServerConfig {
    let s = &raw.server;
    let public_url = s
        .public_url
        .as_ref()
        .and_then(|v| c.expand("server.public_url", v))
        .filter(|v| !v.is_empty())
        .and_then(|v| c.url("server.public_url", &v));
    let alertmanager_url = s
        .alertmanager_url
        .as_ref()
        .and_then(|v| c.expand("server.alertmanager_url", v))
        .filter(|v| !v.is_empty())
        .and_then(|v| c.url("server.alertmanager_url", &v));
    let grafana_url = s
        .grafana_url
        .as_ref()
        .and_then(|v| c.expand("server.grafana_url", v))
        .filter(|v| !v.is_empty())
        .and_then(|v| c.url("server.grafana_url", &v));
    let webhook_auth = match &s.webhook_auth {
        None => {
            c.error("server.webhook_auth", "missing: set bearer_token (e.g. ${RELAY_WEBHOOK_TOKEN}), basic, or `none: true` for a loopback demo");
            WebhookAuth::None
        }
        Some(auth) => webhook_auth(c, auth),
    };
    let ack_secret = c
        .secret(
            "server.ack_secret",
            s.ack_secret.as_ref(),
            s.ack_secret_file.as_ref(),
        )
        .filter(|s| !s.0.is_empty());
    if ack_secret.as_ref().is_some_and(|s| s.0.len() < 16) {
        c.error(
            "server.ack_secret",
            "too short: use at least 16 random characters (e.g. `openssl rand -hex 32`)",
        );
    }
    let ack_link_ttl = c.duration(
        "server.ack_link_ttl",
        s.ack_link_ttl.as_deref(),
        Duration::from_secs(24 * 3600),
    );
    let max_body = s.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY);
    if !(1024..=MAX_MAX_BODY).contains(&max_body) {
        c.error(
            "server.max_body_bytes",
            format!("must be between 1024 and {MAX_MAX_BODY} bytes"),
        );
    }
    ServerConfig {
        public_url,
        webhook_auth,
        ack_secret,
        ack_link_ttl,
        alertmanager_url,
        grafana_url,
        max_body_bytes: usize::try_from(max_body).unwrap_or(usize::MAX),
        console: console::console(c, s),
    }
}

fn webhook_auth(c: &mut Checker<'_>, auth: &RawAuth) -> WebhookAuth {
    let path = "server.webhook_auth";
    let bearer = c.secret(
        &format!("{path}.bearer_token"),
        auth.bearer_token.as_ref(),
        auth.bearer_token_file.as_ref(),
    );
    let bearer_given = auth.bearer_token.is_some() || auth.bearer_token_file.is_some();
    let kinds =
        usize::from(bearer_given) + usize::from(auth.basic.is_some()) + usize::from(auth.none);
    if kinds != 1 {
        c.error(
            path,
            "set exactly one of bearer_token (or bearer_token_file), basic, none",
        );
        return WebhookAuth::None;
    }
    if bearer_given {
        // An unreadable file or unset variable was reported already.
        let Some(token) = bearer else {
            return WebhookAuth::None;
        };
        if token.0.len() < 16 {
            c.error(
                format!("{path}.bearer_token"),
                "too short: use at least 16 random characters (e.g. `openssl rand -hex 32`)",
            );
        }
        return WebhookAuth::Bearer(token);
    }
    if let Some(basic) = &auth.basic {
        let username = c
            .expand(&format!("{path}.basic.username"), &basic.username)
            .unwrap_or_default();
        let password = c.secret(
            &format!("{path}.basic.password"),
            basic.password.as_ref(),
            basic.password_file.as_ref(),
        );
        let Some(password) = password.filter(|p| !p.0.is_empty()) else {
            c.error(
                format!("{path}.basic.password"),
                "missing: set password or password_file",
            );
            return WebhookAuth::None;
        };
        return WebhookAuth::Basic { username, password };
    }
    WebhookAuth::None
}

fn delivery(c: &mut Checker<'_>, raw: &RawConfig) -> DeliveryConfig {
    let d = &raw.delivery;
    let default = DeliveryConfig::default();
    let config = DeliveryConfig {
        timeout: c.duration("delivery.timeout", d.timeout.as_deref(), default.timeout),
        initial_backoff: c.duration(
            "delivery.initial_backoff",
            d.initial_backoff.as_deref(),
            default.initial_backoff,
        ),
        max_backoff: c.duration(
            "delivery.max_backoff",
            d.max_backoff.as_deref(),
            default.max_backoff,
        ),
        give_up_after: c.duration(
            "delivery.give_up_after",
            d.give_up_after.as_deref(),
            default.give_up_after,
        ),
        healthcheck_interval: Some(c.duration(
            "delivery.healthcheck_interval",
            d.healthcheck_interval.as_deref(),
            default.healthcheck_interval.unwrap_or_default(),
        ))
        .filter(|every| !every.is_zero()),
    };
    if config
        .healthcheck_interval
        .is_some_and(|every| every < Duration::from_secs(1))
    {
        c.error(
            "delivery.healthcheck_interval",
            "must be at least 1s (minutes suit vendors' rate limits), or 0s to check only at start and reload",
        );
    }
    if config.timeout.is_zero() {
        c.error("delivery.timeout", "must be greater than 0s");
    }
    if config.initial_backoff.is_zero() || config.initial_backoff > config.max_backoff {
        c.error(
            "delivery.initial_backoff",
            "must be greater than 0s and at most max_backoff",
        );
    }
    if config.give_up_after < config.max_backoff {
        c.error(
            "delivery.give_up_after",
            "must be at least max_backoff, or nothing would be retried",
        );
    }
    config
}
