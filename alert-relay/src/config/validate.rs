//! The pure validation step: raw structs in, a `Config` or every problem out. Each error names
//! its path (`policies[0].steps[1].notify[0]`) and how to fix it. Secret files are the only
//! I/O here (read once, their contents never appear in messages).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use url::Url;

use super::env::expand;
use super::raw::{EnvString, RawAuth, RawConfig, RawNtfy, RawPolicy};
use super::*;
use crate::escalation::{PlannedStep, Repeat};

const DEFAULT_MAX_BODY: u64 = 1 << 20;

struct Checker<'a> {
    env: &'a dyn Fn(&str) -> Option<String>,
    errors: Vec<ConfigError>,
}

impl Checker<'_> {
    fn error(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.errors.push(ConfigError::new(path, message));
    }

    fn expand(&mut self, path: &str, value: &EnvString) -> Option<String> {
        match expand(&value.0, self.env) {
            Ok(v) => Some(v),
            Err(e) => {
                self.error(path, e);
                None
            }
        }
    }

    /// A secret given inline (`key`) or as a file (`key_file`), at most one of them.
    fn secret(
        &mut self,
        path: &str,
        inline: Option<&EnvString>,
        file: Option<&EnvString>,
    ) -> Option<Secret> {
        match (inline, file) {
            (Some(_), Some(_)) => {
                self.error(
                    path,
                    "set either the value or the `_file` variant, not both",
                );
                None
            }
            (Some(v), None) => self.expand(path, v).map(Secret),
            (None, Some(f)) => {
                let file_path = format!("{path}_file");
                let name = self.expand(&file_path, f)?;
                match std::fs::read_to_string(&name) {
                    Ok(s) => Some(Secret(s.trim_end_matches(['\n', '\r']).to_owned())),
                    Err(e) => {
                        self.error(file_path, format!("cannot read secret file {name}: {e}"));
                        None
                    }
                }
            }
            (None, None) => None,
        }
    }

    fn duration(&mut self, path: &str, text: Option<&str>, default: Duration) -> Duration {
        let Some(text) = text else { return default };
        match parse_duration(text) {
            Ok(d) => d,
            Err(e) => {
                self.error(path, e);
                default
            }
        }
    }

    fn url(&mut self, path: &str, value: &str) -> Option<Url> {
        match Url::parse(value) {
            Ok(url) if matches!(url.scheme(), "http" | "https") => Some(url),
            Ok(_) => {
                self.error(path, format!("`{value}` must be an http or https URL"));
                None
            }
            Err(e) => {
                self.error(
                    path,
                    format!("`{value}` is not a URL ({e}); write it like https://ntfy.example.com"),
                );
                None
            }
        }
    }
}

/// Durations like `0m`, `15m`, `1h30m`, `45s`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    if trimmed.starts_with('-') {
        return Err(format!(
            "`{text}` is negative: delays count from the incident's start, use 0m or more"
        ));
    }
    if trimmed == "0" {
        return Ok(Duration::ZERO);
    }
    humantime::parse_duration(trimmed)
        .map_err(|e| format!("`{text}` is not a duration ({e}); write it like 0m, 15m, 1h30m"))
}

pub fn validate(
    raw: RawConfig,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, Vec<ConfigError>> {
    let mut c = Checker {
        env,
        errors: Vec::new(),
    };
    let server = server(&mut c, &raw);
    let delivery = delivery(&mut c, &raw);
    let (targets, disabled) = targets(&mut c, &raw);
    let target_templates = target_templates(&mut c, &raw);
    let defined: BTreeSet<TargetName> = targets.keys().chain(disabled.keys()).cloned().collect();
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
            policies,
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
    if !(1024..=64 << 20).contains(&max_body) {
        c.error(
            "server.max_body_bytes",
            "must be between 1024 and 67108864 bytes",
        );
    }
    ServerConfig {
        public_url,
        webhook_auth,
        ack_secret,
        ack_link_ttl,
        alertmanager_url,
        max_body_bytes: usize::try_from(max_body).unwrap_or(usize::MAX),
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
    };
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

fn target_templates(c: &mut Checker<'_>, raw: &RawConfig) -> BTreeMap<TargetName, TargetTemplates> {
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

fn targets(c: &mut Checker<'_>, raw: &RawConfig) -> Targets {
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

fn policy(
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
            if let Err(e) = handlebars::Template::compile(text) {
                c.error(
                    format!("{path}.templates.{field}"),
                    format!("invalid template: {e}"),
                );
            }
        }
    }
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
        },
        title_template: raw.templates.title.clone(),
        body_template: raw.templates.body.clone(),
        heartbeat_missing_after,
    })
}
