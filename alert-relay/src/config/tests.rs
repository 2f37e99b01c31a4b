//! Loading policy files: the shipped one, valid ones, and every kind of mistake.

use std::path::Path;

use super::*;

const TOKEN: &str = "a-webhook-token-of-32-characters";

fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
    move |name| {
        pairs
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| (*v).to_owned())
    }
}

fn parse(text: &str) -> Result<Config, ConfigErrors> {
    Config::parse(text, Path::new("policy.yml"), &env(&[("TOKEN", TOKEN)]))
}

fn errors(text: &str) -> String {
    parse(text).expect_err("invalid").to_string()
}

const VALID: &str = r#"
server:
  webhook_auth:
    bearer_token: ${TOKEN}
targets:
  ntfy:
    primary:
      url: http://127.0.0.1:1
      topic: oncall
  log:
    audit:
      path: "-"
policies:
  - name: critical
    matchers: ['severity="critical"']
    steps:
      - after: 0m
        notify: [ntfy.primary]
      - after: 15m
        notify: [log.audit]
"#;

fn shipped_path() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../monitoring/alert-relay/escalation-policy.yml")
}

#[test]
fn the_shipped_policy_loads_with_only_the_webhook_token() {
    let text = std::fs::read_to_string(shipped_path()).expect("shipped policy");
    let config = Config::parse(
        &text,
        &shipped_path(),
        &env(&[("RELAY_WEBHOOK_TOKEN", TOKEN)]),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let critical = config.policy_named("critical").expect("critical policy");
    let delays: Vec<u64> = critical
        .plan
        .steps
        .iter()
        .map(|s| s.after_ms / 60_000)
        .collect();
    assert_eq!(delays, vec![0, 15, 30, 45]);
    // Without topics the ntfy targets are off, and only the log target is notified.
    assert_eq!(config.disabled_targets.len(), 6);
    assert_eq!(
        critical.plan.steps[0].targets,
        vec![TargetName::from("log.audit")]
    );
    assert!(config.policy_named("warning").is_some());
    let labels = [("severity".to_owned(), "critical".to_owned())].into();
    assert_eq!(
        config.policy_for(&labels).map(|p| p.name.as_str()),
        Some("critical")
    );
    let watchdog = [
        ("alertname".to_owned(), "Watchdog".to_owned()),
        ("severity".to_owned(), "info".to_owned()),
    ]
    .into();
    assert_eq!(
        config.policy_for(&watchdog).map(|p| p.name.as_str()),
        Some("heartbeat")
    );
    // Ten minutes without a Watchdog page through the critical policy.
    let heartbeat = config.policy_named("heartbeat").expect("heartbeat policy");
    assert_eq!(
        heartbeat.heartbeat_missing_after,
        Some(std::time::Duration::from_secs(600))
    );
    let missing = [
        ("alertname".to_owned(), "HeartbeatMissing".to_owned()),
        ("severity".to_owned(), "critical".to_owned()),
        ("heartbeat".to_owned(), "heartbeat".to_owned()),
    ]
    .into();
    assert_eq!(
        config.policy_for(&missing).map(|p| p.name.as_str()),
        Some("critical")
    );
}

#[test]
fn a_heartbeat_needs_a_sensible_duration() {
    let with = |after: &str| {
        VALID.replace(
            "  - name: critical\n",
            &format!("  - name: critical\n    heartbeat: {{missing_after: {after}}}\n"),
        )
    };
    let zero = errors(&with("0s"));
    assert!(
        zero.contains("policies[0].heartbeat.missing_after: must be at least 1s"),
        "{zero}"
    );
    let garbage = errors(&with("often"));
    assert!(garbage.contains("`often` is not a duration"), "{garbage}");
    let unknown = errors(&VALID.replace(
        "  - name: critical\n",
        "  - name: critical\n    heartbeat: {every: 1m}\n",
    ));
    assert!(unknown.contains("unknown field `every`"), "{unknown}");
}

#[test]
fn the_shipped_policy_pages_the_whole_chain_when_topics_are_set() {
    let text = std::fs::read_to_string(shipped_path()).expect("shipped policy");
    let config = Config::parse(
        &text,
        &shipped_path(),
        &env(&[
            ("RELAY_WEBHOOK_TOKEN", TOKEN),
            ("NTFY_URL", "http://127.0.0.1:8090"),
            ("NTFY_TOPIC_PRIMARY", "primary"),
            ("NTFY_TOPIC_SECONDARY", "secondary"),
            ("NTFY_TOPIC_MANAGER", "manager"),
            ("NTFY_TOPIC_CTO", "cto"),
            ("NTFY_TOKEN", "tk_secret"),
        ]),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let off: Vec<&str> = config
        .disabled_targets
        .keys()
        .map(TargetName::as_str)
        .collect();
    assert_eq!(
        off,
        vec!["pagerduty.prod", "slack.oncall"],
        "no Slack or PagerDuty credentials given"
    );
    let Some(TargetConfig::Ntfy(ntfy)) = config.targets.get(&TargetName::from("ntfy.cto")) else {
        panic!("ntfy.cto missing")
    };
    assert_eq!(ntfy.server.as_str(), "http://127.0.0.1:8090/");
    assert_eq!(ntfy.auth, NtfyAuth::Token(Secret("tk_secret".into())));
    let critical = config.policy_named("critical").expect("critical");
    assert_eq!(
        critical.plan.steps[3].targets,
        vec![TargetName::from("ntfy.cto")]
    );
}

#[test]
fn a_valid_file_builds_a_config() {
    let config = parse(VALID).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        config.server.webhook_auth,
        WebhookAuth::Bearer(Secret(TOKEN.into()))
    );
    assert_eq!(config.server.max_body_bytes, 32 << 20);
    assert_eq!(config.policies[0].plan.steps[1].after_ms, 15 * 60_000);
}

#[test]
fn an_unknown_target_names_path_line_and_the_defined_ones() {
    let text = VALID.replace("notify: [log.audit]", "notify: [pd.prod]");
    let message = errors(&text);
    assert_eq!(
        message,
        "policy.yml:20: policies[0].steps[1].notify[0]: unknown target `pd.prod` (defined: log.audit, ntfy.primary)"
    );
}

#[test]
fn unordered_negative_and_malformed_delays_are_refused() {
    let unordered = errors(
        &VALID
            .replace("after: 15m", "after: 0s")
            .replace("after: 0m", "after: 5m"),
    );
    assert!(
        unordered.contains("policies[0].steps[1].after: 0s comes before the previous step's 5m"),
        "{unordered}"
    );
    let negative = errors(&VALID.replace("after: 15m", "after: -5m"));
    assert!(
        negative.contains(":19: policies[0].steps[1].after: `-5m` is negative"),
        "{negative}"
    );
    let garbage = errors(&VALID.replace("after: 15m", "after: soon"));
    assert!(garbage.contains("`soon` is not a duration"), "{garbage}");
}

#[test]
fn empty_steps_bad_matchers_and_duplicates_are_each_reported() {
    let text = r#"
server:
  webhook_auth: {bearer_token: "${TOKEN}"}
targets:
  log:
    audit: {path: "-"}
policies:
  - name: a
    matchers: ['severity']
    steps: []
  - name: a
    steps:
      - after: 0m
        notify: []
"#;
    let message = errors(text);
    assert!(
        message.contains("policy.yml:9: policies[0].matchers[0]: `severity` has no operator"),
        "{message}"
    );
    assert!(message.contains("policies[0].steps: no steps"), "{message}");
    assert!(
        message.contains("policies[1].name: policy name `a` is used twice"),
        "{message}"
    );
    assert!(
        message.contains("policies[1].steps[0].notify: empty"),
        "{message}"
    );
}

#[test]
fn unknown_fields_are_refused_with_their_line() {
    let message = errors(&VALID.replace(
        "    steps:\n      - after: 0m",
        "    stepz:\n      - after: 0m",
    ));
    assert!(message.starts_with("policy.yml:16: "), "{message}");
    assert!(message.contains("unknown field `stepz`"), "{message}");
}

#[test]
fn missing_secrets_are_named_and_values_never_echoed() {
    let text = VALID.replace("${TOKEN}", "${RELAY_WEBHOOK_TOKEN}");
    let message = errors(&text);
    assert!(
        message.contains(
            "server.webhook_auth.bearer_token: environment variable RELAY_WEBHOOK_TOKEN is not set"
        ),
        "{message}"
    );
    let short =
        Config::parse(VALID, Path::new("p.yml"), &env(&[("TOKEN", "hunter2")])).expect_err("short");
    assert!(short.to_string().contains("too short"));
    assert!(
        !short.to_string().contains("hunter2"),
        "a secret leaked: {short}"
    );
    let config = parse(VALID).expect("valid");
    assert!(
        !format!("{config:?}").contains(TOKEN),
        "Debug shows a secret"
    );
}

#[test]
fn secrets_can_come_from_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("token");
    std::fs::write(&file, format!("{TOKEN}\n")).expect("write");
    let text = VALID.replace(
        "bearer_token: ${TOKEN}",
        &format!("bearer_token_file: {}", file.display()),
    );
    let config = parse(&text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        config.server.webhook_auth,
        WebhookAuth::Bearer(Secret(TOKEN.into()))
    );
    let missing = errors(&VALID.replace(
        "bearer_token: ${TOKEN}",
        "bearer_token_file: /nonexistent/token",
    ));
    assert_eq!(
        missing,
        "policy.yml:4: server.webhook_auth.bearer_token_file: cannot read secret file /nonexistent/token: No such file or directory (os error 2)"
    );
}

#[test]
fn a_broken_template_is_refused() {
    let text = VALID.replace(
        "    steps:\n      - after: 0m",
        "    templates:\n      title: \"{{#if x}}unclosed\"\n    steps:\n      - after: 0m",
    );
    let message = errors(&text);
    assert!(
        message.contains("policies[0].templates.title: invalid template"),
        "{message}"
    );
}

#[test]
fn yaml_syntax_errors_carry_their_line() {
    let message = errors("server:\n  webhook_auth: [unclosed\npolicies: []\n");
    assert!(message.starts_with("policy.yml:"), "{message}");
}

#[test]
fn target_healthchecks_run_every_5m_unless_changed_or_switched_off() {
    let config = parse(VALID).expect("valid");
    assert_eq!(
        config.delivery.healthcheck_interval,
        Some(Duration::from_secs(300))
    );
    let with = |every: &str| {
        VALID.replace(
            "targets:\n",
            &format!("delivery:\n  healthcheck_interval: {every}\ntargets:\n"),
        )
    };
    let off = parse(&with("0s")).expect("0s switches it off");
    assert_eq!(off.delivery.healthcheck_interval, None);
    let hourly = parse(&with("1h")).expect("valid");
    assert_eq!(
        hourly.delivery.healthcheck_interval,
        Some(Duration::from_secs(3600))
    );
    let hasty = errors(&with("500ms"));
    assert!(
        hasty.contains("delivery.healthcheck_interval: must be at least 1s"),
        "{hasty}"
    );
}

const PEOPLE: &str = r#"
server:
  webhook_auth:
    bearer_token: ${TOKEN}
people:
  alice:
    time_zone: Europe/Berlin
    ntfy: {url: http://127.0.0.1:1, topic: alice}
    slack_member_id: U024BE7LH
  bob:
    ntfy: {url: http://127.0.0.1:1, topic: bob}
schedules:
  primary:
    time_zone: Europe/Berlin
    rotations:
      - people: [alice, bob]
        shift: 1w
        handoff: {weekday: monday, time: "09:00"}
        start: 2027-03-01
policies:
  - name: critical
    steps:
      - after: 0m
        notify: [schedule.primary]
      - after: 15m
        notify: [person.bob]
"#;

#[test]
fn people_and_schedules_build_targets_and_rotations() {
    let config = parse(PEOPLE).expect("valid");
    assert!(config
        .targets
        .contains_key(&TargetName::from("person.alice")));
    assert_eq!(
        config.people["alice"].slack_member_id.as_deref(),
        Some("U024BE7LH")
    );
    let primary = &config.schedules["primary"];
    assert_eq!(primary.rotations[0].people, vec!["alice", "bob"]);
    assert_eq!(
        primary.rotations[0].first,
        "2027-03-01T09:00"
            .parse::<jiff::civil::DateTime>()
            .expect("civil")
    );
}

#[test]
fn schedule_mistakes_are_each_reported_with_path_line_and_fix() {
    let cases = [
        (
            PEOPLE.replace("people: [alice, bob]", "people: [alice, mallory]"),
            "policy.yml:16: schedules.primary.rotations[0].people[1]: unknown person `mallory` (defined under people: alice, bob)",
        ),
        (
            PEOPLE.replace("    time_zone: Europe/Berlin\n    rotations", "    time_zone: Europe/Berln\n    rotations"),
            "schedules.primary.time_zone: `Europe/Berln` is not an IANA time zone",
        ),
        (
            PEOPLE.replace("shift: 1w", "shift: 1 week"),
            "schedules.primary.rotations[0].shift: `1 week` is not a shift length; write it like 12h, 1d or 1w",
        ),
        (
            PEOPLE.replace("{weekday: monday, time: \"09:00\"}", "{time: \"09:00\"}"),
            "schedules.primary.rotations[0].handoff.weekday: missing: a weekly shift hands off on a weekday",
        ),
        (
            PEOPLE.replace("time: \"09:00\"", "time: \"9am\""),
            "schedules.primary.rotations[0].handoff.time: `9am` is not a time of day",
        ),
        (
            PEOPLE.replace("start: 2027-03-01", "start: 2027-02-30"),
            "schedules.primary.rotations[0].start: `2027-02-30` is not a date",
        ),
        (
            PEOPLE.replace("people: [alice, bob]", "people: []"),
            "schedules.primary.rotations[0].people: empty",
        ),
        (
            PEOPLE.replace("slack_member_id: U024BE7LH", "slack_member_id: \"@alice\""),
            "people.alice.slack_member_id: `@alice` is not a Slack member id",
        ),
        (
            PEOPLE.replace("notify: [schedule.primary]", "notify: [schedule.oncall]"),
            "unknown target `schedule.oncall`",
        ),
        (
            PEOPLE.replace("    ntfy: {url: http://127.0.0.1:1, topic: bob}\n", "    time_zone: UTC\n"),
            "people.bob.ntfy: missing: how to reach them",
        ),
    ];
    for (text, expected) in cases {
        let message = errors(&text);
        assert!(
            message.contains(expected),
            "expected `{expected}` in:\n{message}"
        );
    }
}
