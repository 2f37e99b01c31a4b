//! Which of two releases is older: by semver precedence, else by build date, else by whether
//! the new build was served before.

use std::cmp::Ordering;
use std::time::{Duration, SystemTime};

use super::Build;

/// The rule that decided the direction of a change (logged with it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Basis {
    /// Both versions are semver (a leading `v` tolerated) of different precedence.
    Semver,
    /// Both builds carry an RFC 3339 `build_date`, and the dates differ.
    BuildDate,
    /// Neither rule decided: a return to a build served before is a rollback.
    History,
}

impl Basis {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Semver => "semver",
            Self::BuildDate => "build_date",
            Self::History => "history",
        }
    }
}

/// The direction of a change of build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Step {
    pub older: bool,
    pub basis: Basis,
}

/// How the move from `from` to `to` goes; `seen_before` says whether `to` was served before.
/// Equal precedence (`1.5.0` with another commit, or differing only in `+build` metadata) or
/// equal dates leave the decision to the next rule.
pub(super) fn step(from: &Build, to: &Build, seen_before: bool) -> Step {
    if let (Some(from), Some(to)) = (semver(&from.version), semver(&to.version)) {
        if let Some(step) = decided(to.cmp_precedence(&from), Basis::Semver) {
            return step;
        }
    }
    if let (Some(from), Some(to)) = (build_date(&from.build_date), build_date(&to.build_date)) {
        if let Some(step) = decided(to.cmp(&from), Basis::BuildDate) {
            return step;
        }
    }
    Step {
        older: seen_before,
        basis: Basis::History,
    }
}

fn decided(to_vs_from: Ordering, basis: Basis) -> Option<Step> {
    match to_vs_from {
        Ordering::Less => Some(Step { older: true, basis }),
        Ordering::Greater => Some(Step {
            older: false,
            basis,
        }),
        Ordering::Equal => None,
    }
}

/// A semver version, tolerating a leading `v` or `V` (`v1.5.0`).
pub(super) fn semver(version: &str) -> Option<semver::Version> {
    let bare = version.strip_prefix(['v', 'V']).unwrap_or(version);
    semver::Version::parse(bare).ok()
}

/// An RFC 3339 date-time (`2026-11-01T12:00:00Z`, `2026-11-01T14:00:00.5+02:00`).
/// humantime reads UTC only (`Z` or `+00:00`), so another offset is applied here.
pub(super) fn build_date(text: &str) -> Option<SystemTime> {
    if let Some((local, offset)) = text
        .len()
        .checked_sub(6)
        .and_then(|at| text.split_at_checked(at))
    {
        if let Some(east) = offset_seconds(offset) {
            let local = humantime::parse_rfc3339(&format!("{local}Z")).ok()?;
            // Local time is UTC plus the offset east of UTC.
            let shift = Duration::from_secs(east.unsigned_abs());
            return if east >= 0 {
                local.checked_sub(shift)
            } else {
                local.checked_add(shift)
            };
        }
    }
    humantime::parse_rfc3339(text).ok()
}

/// `+hh:mm` or `-hh:mm` as seconds east of UTC.
fn offset_seconds(offset: &str) -> Option<i64> {
    let b = offset.as_bytes();
    let [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] = *b else {
        return None;
    };
    let digit = |c: u8| c.is_ascii_digit().then(|| i64::from(c - b'0'));
    let hours = digit(h1)? * 10 + digit(h2)?;
    let minutes = digit(m1)? * 10 + digit(m2)?;
    if hours > 23 || minutes > 59 {
        return None;
    }
    let seconds = hours * 3600 + minutes * 60;
    Some(if sign == b'-' { -seconds } else { seconds })
}
