//! The on-call commands, `incidents`, `ack`, `oncall` and `override`: clients of a running relay's API for the
//! engineer at a terminal. Credentials come from the environment or a file, never from the
//! command line (where `ps` would show them).

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use serde::Deserialize;

use crate::server::oncall::OnCallView;
use url::Url;

/// Where the relay is and how to authenticate (the webhook's credentials).
#[derive(Debug, Clone, clap::Args)]
pub struct RelayClient {
    /// The relay's base URL.
    #[arg(long, env = "RELAY_URL", default_value = "http://127.0.0.1:9465")]
    pub url: Url,
    /// A file holding the bearer token (default: the RELAY_WEBHOOK_TOKEN variable).
    #[arg(long, env = "RELAY_WEBHOOK_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// Basic-auth user, for a relay configured with `basic`; the password comes from the
    /// RELAY_WEBHOOK_PASSWORD variable or --password-file.
    #[arg(long, env = "RELAY_WEBHOOK_USER")]
    pub user: Option<String>,
    /// A file holding the basic-auth password.
    #[arg(long, env = "RELAY_WEBHOOK_PASSWORD_FILE")]
    pub password_file: Option<PathBuf>,
}

enum Credentials {
    Bearer(String),
    Basic { user: String, password: String },
}

fn secret(file: Option<&PathBuf>, variable: &str) -> Result<Option<String>, String> {
    match file {
        Some(path) => crate::config::read_secret_file(path)
            .map(Some)
            .map_err(|e| format!("cannot read {}: {e}", path.display())),
        None => Ok(std::env::var(variable).ok().filter(|v| !v.is_empty())),
    }
}

impl RelayClient {
    fn credentials(&self) -> Result<Credentials, String> {
        if let Some(user) = &self.user {
            let password = secret(self.password_file.as_ref(), "RELAY_WEBHOOK_PASSWORD")?
                .ok_or("--user needs RELAY_WEBHOOK_PASSWORD or --password-file")?;
            return Ok(Credentials::Basic {
                user: user.clone(),
                password,
            });
        }
        secret(self.token_file.as_ref(), "RELAY_WEBHOOK_TOKEN")?
            .map(Credentials::Bearer)
            .ok_or_else(|| {
                "no credentials: set RELAY_WEBHOOK_TOKEN (or --token-file, or --user with a password)"
                    .to_owned()
            })
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        by: Option<&str>,
    ) -> Result<(reqwest::StatusCode, String), String> {
        self.call_with(method, path, by, None).await
    }

    async fn call_with(
        &self,
        method: reqwest::Method,
        path: &str,
        by: Option<&str>,
        json: Option<&serde_json::Value>,
    ) -> Result<(reqwest::StatusCode, String), String> {
        let url = self
            .url
            .join(path)
            .map_err(|e| format!("{}{path}: {e}", self.url))?;
        let mut request = reqwest::Client::new()
            .request(method, url.clone())
            .timeout(Duration::from_secs(10));
        request = match self.credentials()? {
            Credentials::Bearer(token) => request.bearer_auth(token),
            Credentials::Basic { user, password } => request.basic_auth(user, Some(password)),
        };
        if let Some(by) = by {
            request = request.header("x-acknowledged-by", by);
        }
        if let Some(json) = json {
            request = request.json(json);
        }
        let response = request
            .send()
            .await
            .map_err(|e| format!("no answer from {url}: {}", crate::sinks::describe(&e)))?;
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        if status == reqwest::StatusCode::UNAUTHORIZED {
            return Err(format!(
                "{url} refused the credentials (use the webhook's token)"
            ));
        }
        Ok((status, body))
    }
}

#[derive(Deserialize)]
struct Listing {
    now: String,
    incidents: Vec<IncidentLine>,
}

#[derive(Deserialize)]
struct IncidentLine {
    id: i64,
    policy: String,
    state: String,
    started_at: String,
    group_labels: std::collections::BTreeMap<String, String>,
    summary: Option<String>,
    alerts_firing: usize,
    notified: Vec<String>,
    #[serde(default)]
    waiting: Vec<String>,
    next_step: Option<NextStepLine>,
}

#[derive(Deserialize)]
struct NextStepLine {
    at: String,
    targets: Vec<String>,
    #[serde(default)]
    on_call_now: std::collections::BTreeMap<String, Option<String>>,
}

fn parse_time(text: &str) -> Option<SystemTime> {
    humantime::parse_rfc3339(text).ok()
}

/// `12m`, `1h5m`: the whole minutes (or seconds under a minute) between two instants.
fn span(from: Option<SystemTime>, to: Option<SystemTime>) -> String {
    let Some(d) = from.zip(to).and_then(|(f, t)| t.duration_since(f).ok()) else {
        return "?".into();
    };
    let secs = d.as_secs();
    let rounded = if secs < 60 { secs } else { secs - secs % 60 };
    humantime::format_duration(Duration::from_secs(rounded)).to_string()
}

/// The open incidents as lines a human reads at 3 a.m.
fn render(listing: &Listing) -> String {
    if listing.incidents.is_empty() {
        return "no open incidents\n".into();
    }
    let now = parse_time(&listing.now);
    let mut out = String::new();
    for i in &listing.incidents {
        let labels: Vec<String> = i
            .group_labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        out.push_str(&format!(
            "#{} [{}] {} — {} for {} ({} firing)\n",
            i.id,
            i.policy,
            labels.join(" "),
            i.state,
            span(parse_time(&i.started_at), now),
            i.alerts_firing,
        ));
        if let Some(summary) = &i.summary {
            out.push_str(&format!("    {summary}\n"));
        }
        let notified = if i.notified.is_empty() {
            "nobody yet".to_owned()
        } else {
            i.notified.join(", ")
        };
        let next = match &i.next_step {
            Some(step) => format!(
                "next: {} in {} ({})",
                if step.targets.is_empty() {
                    "a step with no enabled target".to_owned()
                } else {
                    step.targets
                        .iter()
                        .map(|t| match step.on_call_now.get(t) {
                            Some(Some(person)) => format!("{t} ({person} now)"),
                            Some(None) => format!("{t} (nobody now)"),
                            None => t.clone(),
                        })
                        .collect::<Vec<_>>()
                        .join(", ")
                },
                span(now, parse_time(&step.at)),
                step.at
            ),
            None => "no further step".into(),
        };
        out.push_str(&format!("    notified: {notified}; {next}\n"));
        if !i.waiting.is_empty() {
            out.push_str(&format!(
                "    still being delivered to: {} (retrying; see the relay's log)\n",
                i.waiting.join(", ")
            ));
        }
    }
    out
}

/// `alert-relay incidents`: the open incidents of a running relay.
pub async fn incidents(client: &RelayClient, json: bool) -> Result<String, String> {
    let (status, body) = client
        .call(reqwest::Method::GET, "api/v1/incidents?limit=1000", None)
        .await?;
    if !status.is_success() {
        return Err(format!("the relay answered {status}: {body}"));
    }
    if json {
        return Ok(body + "\n");
    }
    let listing: Listing = serde_json::from_str(&body)
        .map_err(|e| format!("unexpected answer from the relay ({e}): {body}"))?;
    Ok(render(&listing))
}

/// `alert-relay ack ID`: acknowledges an incident, stopping its escalation.
pub async fn ack(client: &RelayClient, id: i64, by: &str) -> Result<String, String> {
    let path = format!("api/v1/incidents/{id}/ack");
    let (status, body) = client.call(reqwest::Method::POST, &path, Some(by)).await?;
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    match (status.as_u16(), answer["status"].as_str()) {
        (200, Some("acknowledged")) => Ok(format!(
            "incident {id} acknowledged by {by}; escalation stopped\n"
        )),
        (200, _) => Ok(format!(
            "incident {id} was not escalating (already acknowledged, silenced or resolved)\n"
        )),
        (404, _) => Err(format!(
            "no incident {id} (alert-relay incidents lists them)"
        )),
        _ => Err(format!("the relay answered {status}: {body}")),
    }
}

/// Each schedule as a line: who is on call until when, and who comes next.
pub fn render_on_call(views: &[OnCallView], overrides_known: bool) -> String {
    if views.is_empty() {
        return "no schedules in the policy file\n".into();
    }
    let mut out = String::new();
    for v in views {
        let now = match &v.on_call {
            Some(s) => format!(
                "{} until {}{}",
                s.person,
                s.end_local,
                if s.override_id.is_some() {
                    " (override)"
                } else {
                    ""
                }
            ),
            None => "NOBODY (a gap: steps naming it page the next step at once)".into(),
        };
        let next: Vec<&str> = v.next.iter().map(|s| s.person.as_str()).collect();
        out.push_str(&format!("{}: {now}", v.schedule));
        if !next.is_empty() {
            out.push_str(&format!("; then {}", next.join(", ")));
        }
        out.push('\n');
    }
    if !overrides_known {
        out.push_str("(from the policy file alone: overrides are not shown; ask a running relay without --config)\n");
    }
    out
}

/// The views of `schedule` only (all when `None`); an unknown name is an error that lists
/// the known ones.
pub fn only(views: Vec<OnCallView>, schedule: Option<&str>) -> Result<Vec<OnCallView>, String> {
    let Some(name) = schedule else {
        return Ok(views);
    };
    let known: Vec<String> = views.iter().map(|v| v.schedule.clone()).collect();
    let picked: Vec<OnCallView> = views.into_iter().filter(|v| v.schedule == name).collect();
    if picked.is_empty() {
        return Err(format!(
            "no schedule `{name}` (known: {})",
            if known.is_empty() {
                "none".to_owned()
            } else {
                known.join(", ")
            }
        ));
    }
    Ok(picked)
}

#[derive(Deserialize)]
struct OnCallListing {
    schedules: Vec<OnCallView>,
}

/// `alert-relay oncall` against a running relay: overrides included.
pub async fn on_call(
    client: &RelayClient,
    at: Option<&str>,
    schedule: Option<&str>,
    json: bool,
) -> Result<String, String> {
    let mut path = "api/v1/oncall?upcoming=3".to_owned();
    if let Some(at) = at {
        let at = crate::domain::Timestamp::parse(at)?;
        path.push_str(&format!("&at={}", at.to_rfc3339()));
    }
    let (status, body) = client.call(reqwest::Method::GET, &path, None).await?;
    if !status.is_success() {
        return Err(format!("the relay answered {status}: {body}"));
    }
    if json {
        return Ok(body + "\n");
    }
    let listing: OnCallListing = serde_json::from_str(&body)
        .map_err(|e| format!("unexpected answer from the relay ({e}): {body}"))?;
    Ok(render_on_call(&only(listing.schedules, schedule)?, true))
}

/// `alert-relay override add`: `person` covers `schedule` from `from` (default now) until
/// `until` (an instant, or a length such as `8h` after the start).
pub async fn override_add(
    client: &RelayClient,
    schedule: &str,
    person: &str,
    replaces: Option<&str>,
    from: Option<&str>,
    until: &str,
    by: &str,
) -> Result<String, String> {
    let start = match from {
        Some(text) => crate::domain::Timestamp::parse(text)?,
        None => crate::domain::Timestamp::now(),
    };
    let end = match crate::domain::Timestamp::parse(until) {
        Ok(end) => end,
        Err(_) => match humantime::parse_duration(until) {
            Ok(length) => start.plus(length),
            Err(_) => {
                return Err(format!(
                    "--until `{until}` is neither an instant (2027-03-10T18:00:00Z) nor a length (8h, 3d)"
                ))
            }
        },
    };
    let request = serde_json::json!({
        "schedule": schedule, "person": person, "replaces": replaces,
        "start": start.to_rfc3339(), "end": end.to_rfc3339(), "created_by": by,
    });
    let (status, body) = client
        .call_with(
            reqwest::Method::POST,
            "api/v1/overrides",
            None,
            Some(&request),
        )
        .await?;
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    match status.as_u16() {
        201 => Ok(format!(
            "override {}: {person} covers {schedule}{} from {} until {}\n",
            answer["override"]["id"],
            replaces
                .map(|r| format!(" in place of {r}"))
                .unwrap_or_default(),
            start.to_rfc3339(),
            end.to_rfc3339()
        )),
        400 => Err(format!(
            "refused: {}",
            answer["error"].as_str().unwrap_or(&body)
        )),
        _ => Err(format!("the relay answered {status}: {body}")),
    }
}

/// `alert-relay override list`.
pub async fn override_list(client: &RelayClient, json: bool) -> Result<String, String> {
    let (status, body) = client
        .call(reqwest::Method::GET, "api/v1/overrides", None)
        .await?;
    if !status.is_success() {
        return Err(format!("the relay answered {status}: {body}"));
    }
    if json {
        return Ok(body + "\n");
    }
    let answer: serde_json::Value = serde_json::from_str(&body)
        .map_err(|e| format!("unexpected answer from the relay ({e}): {body}"))?;
    let list = answer["overrides"].as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        return Ok("no overrides\n".into());
    }
    let mut out = String::new();
    for o in list {
        let text = |k: &str| o[k].as_str().unwrap_or("?").to_owned();
        out.push_str(&format!(
            "#{} {}: {} covers {} from {} until {} (by {})\n",
            o["id"],
            text("schedule"),
            text("person"),
            o["replaces"].as_str().unwrap_or("whoever is on call"),
            text("start"),
            text("end"),
            text("created_by"),
        ));
    }
    Ok(out)
}

/// `alert-relay override remove ID`.
pub async fn override_remove(client: &RelayClient, id: i64) -> Result<String, String> {
    let (status, body) = client
        .call(
            reqwest::Method::DELETE,
            &format!("api/v1/overrides/{id}"),
            None,
        )
        .await?;
    match status.as_u16() {
        200 => Ok(format!("override {id} removed\n")),
        404 => Err(format!(
            "no override {id} (alert-relay override list shows them)"
        )),
        _ => Err(format!("the relay answered {status}: {body}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incidents_read_as_who_was_paged_and_who_is_next() {
        let listing: Listing = serde_json::from_value(serde_json::json!({
            "now": "2026-11-23T05:12:40.000Z",
            "incidents": [{
                "id": 7, "policy": "critical", "state": "escalating",
                "started_at": "2026-11-23T05:02:31.402Z",
                "group_labels": {"alertname": "GatewayDown"},
                "common_labels": {"alertname": "GatewayDown", "severity": "critical"},
                "summary": "The gateway does not answer its health check.",
                "alerts_firing": 1, "steps_fired": 1, "steps_total": 4,
                "notified": ["ntfy.primary"],
                "next_step": {"at": "2026-11-23T05:17:31.402Z", "targets": ["ntfy.secondary"]}
            }, {
                "id": 8, "policy": "warning", "state": "acknowledged",
                "started_at": "2026-11-23T05:12:10.000Z",
                "group_labels": {"alertname": "HostDiskAlmostFull", "service": "host"},
                "common_labels": {}, "summary": null,
                "alerts_firing": 2, "steps_fired": 1, "steps_total": 2,
                "notified": [], "next_step": null
            }]
        }))
        .expect("the API's shape");
        assert_eq!(
            render(&listing),
            "#7 [critical] alertname=GatewayDown — escalating for 10m (1 firing)\n\
             \x20   The gateway does not answer its health check.\n\
             \x20   notified: ntfy.primary; next: ntfy.secondary in 4m (2026-11-23T05:17:31.402Z)\n\
             #8 [warning] alertname=HostDiskAlmostFull service=host — acknowledged for 30s (2 firing)\n\
             \x20   notified: nobody yet; no further step\n"
        );
        let empty = Listing {
            now: listing.now.clone(),
            incidents: vec![],
        };
        assert_eq!(render(&empty), "no open incidents\n");
    }

    #[test]
    fn a_next_step_without_an_enabled_target_says_so() {
        let listing: Listing = serde_json::from_value(serde_json::json!({
            "now": "2026-11-23T05:00:00Z",
            "incidents": [{
                "id": 3, "policy": "critical", "state": "escalating",
                "started_at": "2026-11-23T05:00:00Z",
                "group_labels": {"alertname": "GatewayDown"}, "summary": null,
                "alerts_firing": 1, "notified": ["log.audit"],
                "next_step": {"at": "2026-11-23T05:15:00Z", "targets": []}
            }]
        }))
        .expect("the API's shape");
        assert!(render(&listing).contains(
            "notified: log.audit; next: a step with no enabled target in 15m (2026-11-23T05:15:00Z)"
        ));
    }
}
