//! The command line: `serve`, `check-config`, `simulate`, `test-notify`, `incidents`, `ack`,
//! `healthcheck`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Parser, Subcommand};
use exporter::telemetry::LogFormat;
use url::Url;

use crate::config::Config;
use crate::domain::{sample_notification, Labels, NotificationKind, TargetName, Timestamp};
use crate::engine::{Action, Event, Incident};
use crate::sinks::Health;
use crate::store::DatabaseUrl;
use crate::templates::Templates;

/// Relays Alertmanager webhooks to ntfy (and more), escalating along a policy until someone
/// acknowledges, the alert resolves or it is silenced.
#[derive(Debug, Parser)]
#[command(version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the relay.
    Serve(ServeArgs),
    /// Validate a policy file and print a summary (exit 1 with every error otherwise).
    CheckConfig {
        /// The escalation-policy YAML.
        file: PathBuf,
        /// Also ask each target whether it is reachable and accepts its credentials (ntfy:
        /// server health and account; log: file writable), notifying nobody. Exit 1 if one
        /// fails.
        #[arg(long)]
        probe: bool,
    },
    /// Print which policy matches some labels and the escalation timeline, sending nothing.
    Simulate {
        #[arg(long, env = "RELAY_CONFIG")]
        config: PathBuf,
        /// Labels of the alert, e.g. severity=critical,alertname=HighErrorRate.
        #[arg(long)]
        labels: String,
        /// When the alert starts firing (RFC 3339; default now): steps that notify a schedule
        /// show who its rotations put on call when each step fires.
        #[arg(long)]
        at: Option<String>,
    },
    /// Send a clearly marked test notification to one target and report its answer.
    TestNotify {
        #[arg(long, env = "RELAY_CONFIG")]
        config: PathBuf,
        /// Target name, e.g. ntfy.primary.
        target: String,
    },
    /// List a running relay's open incidents: who was paged, who is next.
    Incidents {
        #[command(flatten)]
        relay: crate::oncall::RelayClient,
        /// Print the API's JSON instead of lines.
        #[arg(long)]
        json: bool,
    },
    /// Acknowledge an incident of a running relay (stops its escalation, like the push's button).
    Ack {
        /// The incident's number (`alert-relay incidents` lists them).
        id: i64,
        /// Who acknowledges (recorded and logged).
        #[arg(long, env = "USER", default_value = "cli")]
        by: String,
        #[command(flatten)]
        relay: crate::oncall::RelayClient,
    },
    /// Who is on call in each schedule, until when, and who comes next: from a running relay
    /// (overrides included), or from a policy file alone with --config.
    Oncall {
        /// Read the schedules from this policy file instead of asking a relay (no overrides).
        #[arg(long)]
        config: Option<PathBuf>,
        /// An RFC 3339 instant, e.g. 2027-03-29T07:30:00Z (default: now).
        #[arg(long)]
        at: Option<String>,
        /// Only this schedule.
        #[arg(long)]
        schedule: Option<String>,
        /// Print the API's JSON instead of lines (with a relay).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        relay: crate::oncall::RelayClient,
    },
    /// Create, list or remove overrides ("alice covers bob") on a running relay.
    Override {
        #[command(subcommand)]
        action: OverrideAction,
    },
    /// Exit 0 if a relay answers /health on --listen (for container healthchecks).
    Healthcheck {
        #[arg(long, env = "RELAY_LISTEN", default_value = "127.0.0.1:9465")]
        listen: SocketAddr,
    },
}

#[derive(Debug, Subcommand)]
pub enum OverrideAction {
    /// PERSON covers SCHEDULE (in place of --replaces only, or whoever is on call).
    Add {
        /// The schedule, as named under schedules: in the policy file.
        #[arg(long)]
        schedule: String,
        /// Who covers.
        #[arg(long)]
        person: String,
        /// Cover only this person's shifts (default: whoever is on call).
        #[arg(long)]
        replaces: Option<String>,
        /// From this RFC 3339 instant (default: now).
        #[arg(long)]
        from: Option<String>,
        /// Until this instant, or for this long after the start (8h, 3d).
        #[arg(long)]
        until: String,
        /// Who creates it (recorded and logged).
        #[arg(long, env = "USER", default_value = "cli")]
        by: String,
        #[command(flatten)]
        relay: crate::oncall::RelayClient,
    },
    /// The overrides that have not ended.
    List {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        relay: crate::oncall::RelayClient,
    },
    /// Removes an override by its number.
    Remove {
        id: i64,
        #[command(flatten)]
        relay: crate::oncall::RelayClient,
    },
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// The escalation-policy YAML.
    #[arg(
        long,
        env = "RELAY_CONFIG",
        default_value = "monitoring/alert-relay/escalation-policy.yml"
    )]
    pub config: PathBuf,
    /// Address for webhooks, acknowledge links, /health, /ready and /metrics.
    #[arg(long, env = "RELAY_LISTEN", default_value = "127.0.0.1:9465")]
    pub listen: SocketAddr,
    /// Directory of the durable state (SQLite) and the generated ack key.
    #[arg(long, env = "RELAY_DATA_DIR", default_value = "relay-data")]
    pub data_dir: PathBuf,
    /// Keep the state in PostgreSQL instead of SQLite in --data-dir (which then holds only
    /// the generated ack key): postgres://USER@HOST:PORT/DATABASE, or
    /// postgres://USER@%2Frun%2Fpostgresql/DATABASE for a unix socket. TLS as libpq:
    /// ?sslmode=verify-full&sslrootcert=/path/ca.pem (or disable, prefer, require, verify-ca).
    #[arg(long, env = "RELAY_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// A file whose first line is the database password (a mounted secret), so that it
    /// never sits in the URL.
    #[arg(long, env = "RELAY_DATABASE_PASSWORD_FILE", requires = "database_url")]
    pub database_password_file: Option<PathBuf>,
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Loki base URL to ship logs to (e.g. http://loki:3100).
    #[arg(long, env = "LOKI_URL")]
    pub loki_url: Option<Url>,
    /// A directory of runbooks (`<AlertName>.md`, the bundle's `docs/runbooks/`) to serve at
    /// `/runbooks/<AlertName>` for the Runbook buttons of pages.
    #[arg(long, env = "RELAY_RUNBOOKS_DIR")]
    pub runbooks: Option<PathBuf>,
}

impl ServeArgs {
    /// The PostgreSQL database to keep the state in, checked and with its password read;
    /// `None`: SQLite in the data directory.
    pub fn database(&self) -> Result<Option<DatabaseUrl>, String> {
        let Some(text) = &self.database_url else {
            return Ok(None);
        };
        let url = DatabaseUrl::parse(text).map_err(|e| format!("--database-url {e}"))?;
        match &self.database_password_file {
            Some(file) => url.with_password_file(file).map(Some),
            None => Ok(Some(url)),
        }
    }
}

/// `check-config`: the summary of a valid policy file, printed on success.
pub fn check_config(file: &Path, config: &Config) -> String {
    check_config_at(file, config, Timestamp::now())
}

/// `check-config` as of `now` (the next handoffs are counted from it).
pub fn check_config_at(file: &Path, config: &Config, now: Timestamp) -> String {
    let templates = Templates::new(config);
    let mut out = format!("{}: valid\n", file.display());
    out.push_str(&format!(
        "targets: {}\n",
        config
            .targets
            .keys()
            .map(TargetName::as_str)
            .collect::<Vec<_>>()
            .join(", ")
    ));
    for (name, why) in &config.disabled_targets {
        out.push_str(&format!("switched off: {name} ({why})\n"));
    }
    if config.server.public_url.is_none() {
        // Whether the rules' links name a host is Prometheus' business; say what follows.
        out.push_str(
            "warning: server.public_url is not set: pushes carry no Acknowledge button, and \
             runbook links without a host (rules in a Prometheus without the runbook_base \
             external label give /<AlertName>) are left out rather than resolved to \
             <public_url>/runbooks/<AlertName>\n",
        );
    }
    out.push_str(&schedules_summary(config, now));
    for policy in &config.policies {
        let matchers: Vec<&str> = policy.matchers.iter().map(|m| m.as_str()).collect();
        out.push_str(&format!(
            "policy {} [{}]: {} step(s){}\n",
            policy.name,
            if matchers.is_empty() {
                "everything".to_owned()
            } else {
                matchers.join(", ")
            },
            policy.plan.steps.len(),
            if policy.plan.send_resolved {
                ", announces resolves"
            } else {
                ""
            }
        ));
        for kind in [NotificationKind::Firing, NotificationKind::Resolved] {
            let mut sample = sample_notification(policy.name.as_str(), "sample", kind);
            // The sample alert carries the labels the policy requires (its severity, say).
            for matcher in &policy.matchers {
                if let Some(value) = matcher.required_value() {
                    let group = &mut sample.group;
                    for labels in std::iter::once(&mut group.common_labels)
                        .chain(group.alerts.iter_mut().map(|a| &mut a.labels))
                    {
                        labels.insert(matcher.name.clone(), value.to_owned());
                    }
                }
            }
            let rendered = templates.render(&sample);
            out.push_str(&format!("  sample {kind:?}: {}\n", rendered.title));
            let mut empty = std::collections::BTreeSet::new();
            for target in policy.plan.steps.iter().flat_map(|s| &s.targets) {
                sample.target = target.clone();
                empty.extend(templates.empty_renders(&sample));
            }
            for name in empty {
                out.push_str(&format!(
                    "  warning: template {name} renders to nothing for the sample {kind:?}: the default text is sent instead\n"
                ));
            }
        }
        if let Some(after) = policy.heartbeat_missing_after {
            let labels: Labels = [
                ("alertname", crate::app::heartbeat::MISSING_ALERT),
                ("severity", "critical"),
                ("heartbeat", policy.name.as_str()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
            match config.policy_for(&labels) {
                Some(pages) => out.push_str(&format!(
                    "  heartbeat: none for {} raises {} (policy {})\n",
                    humantime::format_duration(after),
                    crate::app::heartbeat::MISSING_ALERT,
                    pages.name
                )),
                None => out.push_str(&format!(
                    "  warning: heartbeat: no policy matches {} (severity=critical): nobody would be told that heartbeats stopped\n",
                    crate::app::heartbeat::MISSING_ALERT
                )),
            }
        }
    }
    out
}

pub fn parse_labels(text: &str) -> Result<Labels, String> {
    text.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|pair| {
            let (k, v) = pair
                .split_once('=')
                .ok_or_else(|| format!("`{pair}` is not name=value"))?;
            Ok((k.trim().to_owned(), v.trim().trim_matches('"').to_owned()))
        })
        .collect()
}

/// Each schedule's next handoffs, and warnings: a gap now or soon, a schedule no step names.
fn schedules_summary(config: &Config, now: Timestamp) -> String {
    let mut out = String::new();
    let named: std::collections::BTreeSet<&str> = config
        .policies
        .iter()
        .flat_map(|p| p.plan.steps.iter().flat_map(|s| &s.targets))
        .filter_map(|t| t.as_str().strip_prefix("schedule."))
        .collect();
    for schedule in config.schedules.values() {
        let four_weeks = Timestamp(now.0 + 28 * 86_400_000);
        let shifts = schedule.shifts(now, Timestamp(now.0 + 366 * 86_400_000), &[], 4);
        let handoffs: Vec<String> = shifts
            .iter()
            .filter(|s| s.starts_at > now)
            .take(3)
            .map(|s| format!("{} → {}", schedule.local(s.starts_at), s.person))
            .collect();
        let current = schedule.on_call(now, &[]);
        out.push_str(&format!(
            "schedule {} ({}): {}; next handoffs: {}{}\n",
            schedule.name,
            schedule.zone_name,
            current.as_ref().map_or_else(
                || "nobody on call now".to_owned(),
                |s| format!("{} on call until {}", s.person, schedule.local(s.ends_at))
            ),
            if handoffs.is_empty() {
                "none".to_owned()
            } else {
                handoffs.join(", ")
            },
            if schedule.handoff_notices {
                " (each announced by a push)"
            } else {
                ""
            }
        ));
        match shifts.first() {
            None => out.push_str(&format!(
                "  warning: nobody is on call in {} within a year: steps naming it page the next step at once\n",
                schedule.name
            )),
            Some(first) if first.starts_at > now => out.push_str(&format!(
                "  warning: nobody is on call in {} until {}{}: until then steps naming it page the next step at once\n",
                schedule.name,
                schedule.local(first.starts_at),
                if first.starts_at > four_weeks { " (more than four weeks away)" } else { "" }
            )),
            Some(_) => {}
        }
        if !named.contains(schedule.name.as_str()) {
            out.push_str(&format!(
                "  warning: no step notifies schedule.{}: it pages nobody\n",
                schedule.name
            ));
        }
    }
    out
}

/// `oncall --config`: who the policy file's rotations put on call at `at` (overrides live in
/// a relay's store and are not known here).
pub fn on_call_from_config(
    config: &Config,
    at: Option<&str>,
    schedule: Option<&str>,
) -> Result<String, String> {
    let at = match at {
        Some(text) => Timestamp::parse(text)?,
        None => Timestamp::now(),
    };
    let views = config
        .schedules
        .values()
        .map(|s| crate::server::oncall::OnCallView::new(s, &s.report(at, &[], 3)))
        .collect();
    let views = crate::oncall::only(views, schedule)?;
    Ok(crate::oncall::render_on_call(&views, false))
}

/// `simulate`: which policy, then who is notified when (first 24 hours).
pub fn simulate(config: &Config, labels: &Labels, at: Timestamp) -> String {
    let Some(policy) = config.policy_for(labels) else {
        return "no policy matches these labels: nothing would be sent\n".into();
    };
    let mut out = format!("policy: {}\n", policy.name);
    let start = at;
    let (mut incident, mut actions) = Incident::start(policy.plan.clone(), start);
    let mut now = start;
    let horizon = Timestamp(start.0 + 24 * 3600 * 1000);
    // A repeat without end is shown a few times, then said in words.
    let mut repeats_shown = 0;
    loop {
        if incident.steps_fired == policy.plan.steps.len() && incident.repeats_fired > 3 {
            repeats_shown += 1;
        }
        if repeats_shown > 0 {
            if let Some(repeat) = &policy.plan.repeat {
                let every = humantime::format_duration(Duration::from_millis(repeat.every_ms));
                match repeat.times {
                    None => out.push_str(&format!(
                        "  … step {} repeats every {every}, without end\n",
                        policy.plan.steps.len()
                    )),
                    Some(times) => out.push_str(&format!(
                        "  … step {} repeats every {every}, {times} times in all\n",
                        policy.plan.steps.len()
                    )),
                }
            }
            break;
        }
        for action in &actions {
            if let Action::Notify { step, targets, .. } = action {
                let who: Vec<String> = targets
                    .iter()
                    .map(|t| match t.as_str().strip_prefix("schedule.") {
                        Some(name) => {
                            match config.schedules.get(name).and_then(|s| s.on_call(now, &[])) {
                                Some(shift) => format!("{t} ({})", shift.person),
                                None => {
                                    format!("{t} (NOBODY on call: the next step is paged at once)")
                                }
                            }
                        }
                        None => t.as_str().to_owned(),
                    })
                    .collect();
                let at = humantime::format_duration(Duration::from_millis(
                    u64::try_from(now.0 - start.0).unwrap_or(0),
                ))
                .to_string();
                out.push_str(&format!(
                    "  +{at:<8} step {}: {}\n",
                    step + 1,
                    if who.is_empty() {
                        "(no enabled target)".to_owned()
                    } else {
                        who.join(", ")
                    }
                ));
            }
        }
        match incident.next_due() {
            Some(due) if due <= horizon => {
                now = due;
                actions = incident.handle(Event::Due, now);
            }
            _ => break,
        }
    }
    out.push_str("stops on resolve, acknowledge or silence");
    if let Some(timeout) = policy.plan.ack_timeout_ms {
        out.push_str(&format!(
            "; an acknowledgement still firing after {} pages the chain again",
            humantime::format_duration(Duration::from_millis(timeout))
        ));
    }
    out.push_str(if policy.plan.send_resolved {
        "; resolves are announced\n"
    } else {
        "\n"
    });
    out
}

/// `check-config --probe`: each target's healthcheck, one line each; `Err` with the same
/// report when one failed.
pub async fn probe_targets(config: &Config) -> Result<String, String> {
    let client = reqwest::Client::builder()
        .timeout(config.delivery.timeout)
        .build()
        .map_err(|e| e.to_string())?;
    let sinks = crate::sinks::build(&config.targets, &client);
    let report = crate::sinks::check_all(&sinks, config.delivery.timeout).await;
    let mut out = String::from("probe (nothing is sent):\n");
    let mut failed = false;
    for (target, health) in report {
        let line = match health {
            Health::Ok(why) => format!("  {target}: ok: {why}\n"),
            Health::Failed(why) => {
                failed = true;
                format!("  {target}: FAILED: {why}\n")
            }
            Health::Unchecked(why) => format!("  {target}: not checked: {why}\n"),
        };
        out.push_str(&line);
    }
    if failed {
        Err(out)
    } else {
        Ok(out)
    }
}

/// `test-notify`: one marked notification to one target, with the vendor's answer.
pub async fn test_notify(config: &Config, target: &str) -> Result<String, String> {
    let name = TargetName::from(target);
    if config.disabled_targets.contains_key(&name) {
        return Err(format!(
            "{target} is switched off: {}",
            config.disabled_targets[&name]
        ));
    }
    let Some(kind) = config.targets.get(&name) else {
        let known: Vec<&str> = config.targets.keys().map(TargetName::as_str).collect();
        return Err(format!(
            "unknown target `{target}` (defined: {})",
            known.join(", ")
        ));
    };
    let client = reqwest::Client::builder()
        .timeout(config.delivery.timeout)
        .build()
        .map_err(|e| e.to_string())?;
    let sink = kind.sink(&client);
    // Visibly a test, of its own identity (no real incident's dedup key or sequence id), at
    // info severity (no high-urgency PagerDuty page).
    let now = Timestamp::now();
    let mut n = sample_notification("test", target, NotificationKind::Firing);
    n.ack_url = None;
    n.silence_url = None;
    n.incident_id = 0;
    n.incident_started_at = now;
    n.created_at = now;
    n.sequence_id = format!("relay-test-{}", now.0);
    for labels in std::iter::once(&mut n.group.common_labels)
        .chain(n.group.alerts.iter_mut().map(|a| &mut a.labels))
    {
        labels.insert("severity".into(), "info".into());
        labels.insert("alertname".into(), "AlertRelayTest".into());
    }
    let text = crate::templates::Rendered {
        title: "TEST from alert-relay".into(),
        body: format!(
            "This is a test notification for {target}. If you see it, this target works."
        ),
    };
    match sink.send(&n, &text).await {
        crate::sinks::Outcome::Delivered => {}
        crate::sinks::Outcome::Retry { reason, .. } => {
            return Err(format!("{target}: failed, would be retried: {reason}"))
        }
        crate::sinks::Outcome::Permanent { reason } => {
            return Err(format!("{target}: refused: {reason}"))
        }
    }
    let mut out = format!("{target}: delivered ({})", kind.describe());
    // PagerDuty keeps a trigger open (and its escalation paging) until resolved: clean up.
    if matches!(kind, crate::config::TargetConfig::PagerDuty(_)) {
        n.kind = NotificationKind::Resolved;
        let resolved = crate::templates::Rendered {
            title: "TEST from alert-relay (resolved)".into(),
            body: "The test is over.".into(),
        };
        match sink.send(&n, &resolved).await {
            crate::sinks::Outcome::Delivered => out.push_str("; the test incident is resolved"),
            crate::sinks::Outcome::Retry { reason, .. }
            | crate::sinks::Outcome::Permanent { reason } => {
                return Err(format!(
                "{out}, but resolving the test incident failed: {reason}; resolve it in PagerDuty"
            ))
            }
        }
    }
    Ok(out)
}
