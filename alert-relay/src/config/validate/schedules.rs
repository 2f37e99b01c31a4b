//! People (each a target `person.<name>` reaching their phone, or a log file) and schedules (rotations in an
//! IANA time zone). What can be known wrong in advance is an error with its path: an unknown
//! zone or person, an empty rotation, a shift of no length, a schedule nobody is on at all.

use std::collections::BTreeMap;

use jiff::civil::Weekday;
use jiff::tz::TimeZone;

use crate::config::raw::{RawConfig, RawPerson, RawRotation};
use crate::config::TargetConfig;
use crate::domain::TargetName;
use crate::engine::oncall::{parse_date, parse_time, Rotation, Schedule, ShiftLength};
use crate::validation::Checker;

/// A person: their target, and the zone they read times in.
#[derive(Debug, Clone, PartialEq)]
pub struct Person {
    pub target: TargetName,
    pub time_zone: Option<String>,
    /// Mentioned in the Slack messages of steps that page them.
    pub slack_member_id: Option<String>,
    /// Their e-mail address (an authenticating proxy may name them by it).
    pub email: Option<String>,
}

pub use crate::engine::oncall::person_target;

/// The people (with the target each one adds) and the schedules.
pub(super) fn people_and_schedules(
    c: &mut Checker<'_>,
    raw: &RawConfig,
) -> (
    BTreeMap<String, Person>,
    BTreeMap<TargetName, TargetConfig>,
    BTreeMap<String, Schedule>,
) {
    let mut people = BTreeMap::new();
    let mut targets = BTreeMap::new();
    for (name, person) in &raw.people {
        let path = format!("people.{name}");
        if !valid_name(name) {
            c.error(&path, "a person's name is letters, digits, `_` or `-` (it names the target person.<name>)");
            continue;
        }
        if let Some(zone) = &person.time_zone {
            zone_of(c, &format!("{path}.time_zone"), zone);
        }
        let slack_member_id = person.slack_member_id.as_ref().and_then(|raw| {
            let field = format!("{path}.slack_member_id");
            let id = c.expand(&field, raw)?;
            if id.is_empty() {
                return None;
            }
            let valid = id.len() <= 32
                && id.starts_with(['U', 'W'])
                && id.chars().all(|ch| ch.is_ascii_uppercase() || ch.is_ascii_digit());
            if !valid {
                c.error(
                    field,
                    format!("`{id}` is not a Slack member id (U or W, then capitals and digits, e.g. U024BE7LH: Slack profile → ⋮ → Copy member ID)"),
                );
                return None;
            }
            Some(id)
        });
        let email = person
            .email
            .as_ref()
            .and_then(|v| c.expand(&format!("{path}.email"), v))
            .filter(|e| !e.is_empty());
        if let Some(e) = &email {
            let (local, domain) = e.split_once('@').unwrap_or_default();
            if local.is_empty() || !domain.contains('.') || e.chars().any(char::is_whitespace) {
                c.error(
                    format!("{path}.email"),
                    format!("`{e}` is not an e-mail address (like alice@example.com)"),
                );
            }
        }
        let Some(contact) = contact(c, &path, name, person) else {
            continue;
        };
        let target = person_target(name);
        targets.insert(target.clone(), contact);
        people.insert(
            name.clone(),
            Person {
                target,
                time_zone: person.time_zone.clone(),
                slack_member_id,
                email,
            },
        );
    }
    let mut schedules = BTreeMap::new();
    for (name, raw_schedule) in &raw.schedules {
        let path = format!("schedules.{name}");
        if !valid_name(name) {
            c.error(
                &path,
                "a schedule's name is letters, digits, `_` or `-` (steps notify schedule.<name>)",
            );
            continue;
        }
        let Some(time_zone) = zone_of(c, &format!("{path}.time_zone"), &raw_schedule.time_zone)
        else {
            continue;
        };
        if raw_schedule.rotations.is_empty() {
            c.error(
                format!("{path}.rotations"),
                "no rotation: add one with people, shift, handoff and start",
            );
            continue;
        }
        let mut rotations = Vec::new();
        for (i, r) in raw_schedule.rotations.iter().enumerate() {
            let rpath = format!("{path}.rotations[{i}]");
            if let Some(rotation) = rotation(c, &rpath, r, &raw.people) {
                rotations.push(rotation);
            }
        }
        if rotations.len() == raw_schedule.rotations.len() {
            schedules.insert(
                name.clone(),
                Schedule {
                    name: name.clone(),
                    time_zone,
                    zone_name: raw_schedule.time_zone.clone(),
                    rotations,
                    handoff_notices: raw_schedule.handoff_notices,
                },
            );
        }
    }
    (people, targets, schedules)
}

/// How a person is reached: their phone (`ntfy`), or a file (`log`: demos and tests, no
/// account anywhere); exactly one.
fn contact(
    c: &mut Checker<'_>,
    path: &str,
    name: &str,
    person: &RawPerson,
) -> Option<TargetConfig> {
    match (&person.ntfy, &person.log) {
        (Some(_), Some(_)) => {
            c.error(
                format!("{path}.log"),
                "one contact per person: ntfy (their phone) or log (a file), not both",
            );
            None
        }
        (Some(ntfy), None) => match crate::sinks::ntfy::validate(c, &format!("{path}.ntfy"), ntfy)?
        {
            Ok(config) => Some(TargetConfig::Ntfy(config)),
            Err(why) => {
                c.error(
                    format!("{path}.ntfy.topic"),
                    format!("{name} could not be paged: {why}"),
                );
                None
            }
        },
        (None, Some(log)) => match crate::sinks::log::validate(c, &format!("{path}.log"), log)? {
            Ok(config) if config.path.is_none() => {
                c.error(
                    format!("{path}.log.path"),
                    "a person's log must be a file: on the relay's own output their console \
                     sign-in links would be readable by whoever reads its logs",
                );
                None
            }
            Ok(config) => Some(TargetConfig::Log(config)),
            Err(why) => {
                c.error(format!("{path}.log.path"), why);
                None
            }
        },
        (None, None) => {
            c.error(
                format!("{path}.ntfy"),
                "missing: how to reach them, e.g. ntfy: {topic: ${NTFY_TOPIC_ALICE}} (or, for a demo, log: {path: alice.log})",
            );
            None
        }
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn zone_of(c: &mut Checker<'_>, path: &str, zone: &str) -> Option<TimeZone> {
    match TimeZone::get(zone) {
        Ok(tz) => Some(tz),
        Err(_) => {
            c.error(
                path,
                format!("`{zone}` is not an IANA time zone; write it like Europe/Berlin or America/New_York"),
            );
            None
        }
    }
}

fn rotation(
    c: &mut Checker<'_>,
    path: &str,
    raw: &RawRotation,
    known: &BTreeMap<String, crate::config::raw::RawPerson>,
) -> Option<Rotation> {
    let before = c.errors.len();
    if raw.people.is_empty() {
        c.error(
            format!("{path}.people"),
            "empty: list who takes turns, e.g. [alice, bob]",
        );
    }
    for (j, person) in raw.people.iter().enumerate() {
        if !known.contains_key(person) {
            let defined: Vec<&str> = known.keys().map(String::as_str).collect();
            c.error(
                format!("{path}.people[{j}]"),
                format!(
                    "unknown person `{person}` (defined under people: {})",
                    if defined.is_empty() {
                        "none".to_owned()
                    } else {
                        defined.join(", ")
                    }
                ),
            );
        }
    }
    let shift = shift_length(c, &format!("{path}.shift"), &raw.shift);
    let time = parse_time(&raw.handoff.time)
        .map_err(|e| c.error(format!("{path}.handoff.time"), e))
        .ok();
    let weekday = raw
        .handoff
        .weekday
        .as_deref()
        .and_then(|w| match weekday(w) {
            Some(day) => Some(day),
            None => {
                c.error(
                    format!("{path}.handoff.weekday"),
                    format!("`{w}` is not a weekday; write monday … sunday"),
                );
                None
            }
        });
    let start = parse_date(&raw.start)
        .map_err(|e| c.error(format!("{path}.start"), e))
        .ok();
    if matches!(shift, Some(ShiftLength::Days(d)) if d % 7 == 0) && raw.handoff.weekday.is_none() {
        c.error(
            format!("{path}.handoff.weekday"),
            "missing: a weekly shift hands off on a weekday, e.g. weekday: monday",
        );
    }
    if c.errors.len() > before {
        return None;
    }
    let (shift, time, mut date) = (shift?, time?, start?);
    if let Some(day) = weekday {
        // The first such weekday on or after the start date.
        while date.weekday() != day {
            date = date.tomorrow().ok()?;
        }
    }
    Some(Rotation {
        people: raw.people.clone(),
        shift,
        first: date.to_datetime(time),
    })
}

fn shift_length(c: &mut Checker<'_>, path: &str, text: &str) -> Option<ShiftLength> {
    let trimmed = text.trim();
    let (number, unit) = trimmed.split_at(trimmed.len().saturating_sub(1));
    let n: Option<u32> = number.parse().ok().filter(|n| *n > 0 && *n <= 9000);
    let length = match (n, unit) {
        (Some(n), "m") => Some(ShiftLength::Minutes(n)),
        (Some(n), "h") => Some(ShiftLength::Hours(n)),
        (Some(n), "d") => Some(ShiftLength::Days(n)),
        (Some(n), "w") => n.checked_mul(7).map(ShiftLength::Days),
        _ => None,
    };
    if length.is_none() {
        c.error(
            path,
            format!("`{text}` is not a shift length; write it like 12h, 1d or 1w (30m for drills)"),
        );
    }
    length
}

fn weekday(text: &str) -> Option<Weekday> {
    Some(match text.to_ascii_lowercase().as_str() {
        "monday" | "mon" => Weekday::Monday,
        "tuesday" | "tue" => Weekday::Tuesday,
        "wednesday" | "wed" => Weekday::Wednesday,
        "thursday" | "thu" => Weekday::Thursday,
        "friday" | "fri" => Weekday::Friday,
        "saturday" | "sat" => Weekday::Saturday,
        "sunday" | "sun" => Weekday::Sunday,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::{Config, LogConfig, TargetConfig};
    use crate::domain::TargetName;

    const POLICY: &str = r#"
server:
  webhook_auth:
    bearer_token: a-webhook-token-of-32-characters
people:
  alice:
    ntfy: {url: http://127.0.0.1:1, topic: alice}
  bob:
    log: {path: /tmp/bob.log}
policies:
  - name: critical
    steps:
      - {after: 0m, notify: [person.bob]}
"#;

    fn parse(text: &str) -> Result<Config, String> {
        Config::parse(text, Path::new("policy.yml"), &|_| None).map_err(|e| e.to_string())
    }

    #[test]
    fn a_person_may_be_reached_through_a_log_file() {
        let config = parse(POLICY).expect("valid");
        assert_eq!(
            config.targets.get(&TargetName::from("person.bob")),
            Some(&TargetConfig::Log(LogConfig {
                path: Some("/tmp/bob.log".into())
            }))
        );
        assert!(matches!(
            config.targets.get(&TargetName::from("person.alice")),
            Some(TargetConfig::Ntfy(_))
        ));
    }

    #[test]
    fn a_person_has_one_contact_said_with_path_and_line() {
        let both = POLICY.replace(
            "    log: {path: /tmp/bob.log}\n",
            "    log: {path: /tmp/bob.log}\n    ntfy: {topic: bob}\n",
        );
        let message = parse(&both).expect_err("two contacts");
        assert!(
            message.contains("policy.yml:9: people.bob.log: one contact per person"),
            "{message}"
        );
        let none = POLICY.replace("    log: {path: /tmp/bob.log}\n", "    time_zone: UTC\n");
        let message = parse(&none).expect_err("no contact");
        assert!(
            message.contains("people.bob.ntfy: missing: how to reach them")
                && message.contains("log: {path: "),
            "{message}"
        );
    }

    #[test]
    fn a_persons_log_is_never_the_relays_own_output() {
        for stdout in ["-", "\"\""] {
            let text = POLICY.replace("{path: /tmp/bob.log}", &format!("{{path: {stdout}}}"));
            let message = parse(&text).expect_err("stdout");
            assert!(
                message.contains("people.bob.log.path: a person's log must be a file"),
                "{message}"
            );
        }
    }
}
