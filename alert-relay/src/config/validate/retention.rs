//! `retention`: how long closed incidents and their timelines are kept before the background
//! prune deletes them.

use std::time::Duration;

use crate::validation::Checker;

const DAY: u64 = 24 * 3600;
pub const DEFAULT: Duration = Duration::from_secs(90 * DAY);
/// Shorter would empty the history's week and the reviews of last week's incidents.
const MIN: Duration = Duration::from_secs(7 * DAY);
const MAX: Duration = Duration::from_secs(3650 * DAY);

pub(super) fn retention(c: &mut Checker<'_>, text: Option<&str>) -> Duration {
    let retention = c.duration("retention", text, DEFAULT);
    if !(MIN..=MAX).contains(&retention) {
        c.error(
            "retention",
            "between 7d and 3650d: how long closed incidents and their timelines are kept (default 90d)",
        );
    }
    retention
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::Config;

    const POLICY: &str = r#"
server:
  webhook_auth: {none: true}
targets:
  log:
    audit: {path: "-"}
policies:
  - name: all
    steps: [{after: 0m, notify: [log.audit]}]
"#;

    fn parse(extra: &str) -> Result<Config, String> {
        Config::parse(
            &format!("{POLICY}{extra}"),
            Path::new("policy.yml"),
            &|_| None,
        )
        .map_err(|e| e.to_string())
    }

    #[test]
    fn closed_incidents_are_kept_90_days_unless_set() {
        assert_eq!(parse("").expect("valid").retention, DEFAULT);
        let year = parse("retention: 365d\n").expect("valid");
        assert_eq!(year.retention, Duration::from_secs(365 * DAY));
    }

    #[test]
    fn a_retention_too_short_or_not_a_duration_is_refused_with_its_line() {
        let short = parse("retention: 1h\n").expect_err("too short");
        assert!(
            short.contains(":10: retention: between 7d and 3650d"),
            "{short}"
        );
        let bad = parse("retention: forever\n").expect_err("not a duration");
        assert!(
            bad.contains("retention: `forever` is not a duration"),
            "{bad}"
        );
    }
}
