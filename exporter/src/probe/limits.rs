//! The bounds on what a gateway's answers can put into series, logs and the state file:
//! a hostile or broken gateway costs at most a known number of series of a known size.
//! Every limit is listed in `docs/operations.md`.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashSet};

use super::wire::{CheckDoc, CheckStatus};

/// Largest `/health` or `/version` body read; a larger one fails the probe unread.
/// Large enough for the bodies the other limits exist for (thousands of checks, a
/// 900 KB version string), small enough that a probe never holds much memory.
pub const MAX_BODY_BYTES: usize = 1 << 20;
/// Health checks exported per target; the others are dropped (failing checks kept first).
pub const MAX_CHECKS: usize = 64;
/// Longest label value taken from an answer (version, commit, build date, colour, check name),
/// in bytes, marker included.
pub const MAX_LABEL_BYTES: usize = 128;
/// Redirects followed within the target's scheme, host and port; none to anywhere else.
pub const MAX_REDIRECTS: usize = 3;
/// Longest probe error kept for the log (serde quotes what it could not parse).
pub const MAX_ERROR_BYTES: usize = 512;

/// Marks where a value was cut.
const MARKER: &str = "…";

/// `value` if it has at most `max` bytes, else its longest prefix ending on a char boundary
/// followed by the marker, `max` bytes at most in all.
pub fn cut(value: &str, max: usize) -> Cow<'_, str> {
    if value.len() <= max {
        return Cow::Borrowed(value);
    }
    let mut end = max.saturating_sub(MARKER.len());
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!("{}{MARKER}", &value[..end]))
}

/// A label value from an answer, and whether it was cut.
pub fn label(value: &str) -> (String, bool) {
    let bounded = cut(value, MAX_LABEL_BYTES);
    let was_cut = matches!(bounded, Cow::Owned(_));
    (bounded.into_owned(), was_cut)
}

/// The checks of one `/health` answer that are exported.
#[derive(Debug, Default, PartialEq)]
pub struct Checks {
    /// At most [`MAX_CHECKS`], names cut to [`MAX_LABEL_BYTES`].
    pub kept: BTreeMap<String, CheckStatus>,
    /// Checks left out: beyond [`MAX_CHECKS`], or whose cut name equals a kept one.
    pub dropped: u64,
    /// Kept checks whose name was cut.
    pub cut_names: u64,
}

/// Keeps at most [`MAX_CHECKS`] checks, failing ones first, then warning ones, then by name,
/// so that a failure is never the check that is dropped.
pub fn checks(all: &BTreeMap<String, CheckDoc>) -> Checks {
    let mut ranked: Vec<(&String, CheckStatus)> =
        all.iter().map(|(name, doc)| (name, doc.status)).collect();
    // Stable: equal severities keep the map's name order.
    ranked.sort_by_key(|(_, status)| severity_rank(*status));
    let mut out = Checks::default();
    let mut names = HashSet::new();
    for (name, status) in ranked {
        if out.kept.len() == MAX_CHECKS {
            out.dropped += 1;
            continue;
        }
        let (name, was_cut) = label(name);
        if !names.insert(name.clone()) {
            out.dropped += 1;
            continue;
        }
        out.cut_names += u64::from(was_cut);
        out.kept.insert(name, status);
    }
    out
}

fn severity_rank(status: CheckStatus) -> u8 {
    match status {
        CheckStatus::Fail => 0,
        CheckStatus::Warn => 1,
        CheckStatus::Pass => 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn health(
        checks: impl IntoIterator<Item = (String, CheckStatus)>,
    ) -> BTreeMap<String, CheckDoc> {
        checks
            .into_iter()
            .map(|(name, status)| (name, CheckDoc { status }))
            .collect()
    }

    #[test]
    fn short_values_are_kept_as_they_are() {
        assert_eq!(label("1.5.0"), ("1.5.0".to_owned(), false));
        let exact = "x".repeat(MAX_LABEL_BYTES);
        assert_eq!(label(&exact), (exact.clone(), false));
    }

    #[test]
    fn long_values_are_cut_on_a_char_boundary_with_a_marker() {
        let (cut, was_cut) = label(&"é".repeat(1000));
        assert!(was_cut);
        assert!(cut.len() <= MAX_LABEL_BYTES, "{}", cut.len());
        assert!(cut.ends_with('…'));
        assert!(cut.trim_end_matches('…').chars().all(|c| c == 'é'));
        let (cut, _) = label(&"v".repeat(900_000));
        assert_eq!(cut.len(), MAX_LABEL_BYTES);
    }

    #[test]
    fn checks_beyond_the_limit_are_dropped_and_failures_kept() {
        let mut all: Vec<(String, CheckStatus)> = (0..20_000)
            .map(|i| (format!("check-{i:05}"), CheckStatus::Pass))
            .collect();
        all.push(("zz-database".into(), CheckStatus::Fail));
        all.push(("zz-cache".into(), CheckStatus::Warn));
        let bounded = checks(&health(all));
        assert_eq!(bounded.kept.len(), MAX_CHECKS);
        assert_eq!(bounded.dropped, 20_002 - MAX_CHECKS as u64);
        assert_eq!(bounded.kept["zz-database"], CheckStatus::Fail);
        assert_eq!(bounded.kept["zz-cache"], CheckStatus::Warn);
        assert!(bounded.kept.contains_key("check-00000"));
        assert!(!bounded.kept.contains_key("check-19999"));
    }

    #[test]
    fn long_check_names_that_cut_to_the_same_label_count_as_dropped() {
        let long = "n".repeat(300);
        let bounded = checks(&health([
            (format!("{long}-a"), CheckStatus::Pass),
            (format!("{long}-b"), CheckStatus::Fail),
            ("short".into(), CheckStatus::Pass),
        ]));
        assert_eq!(bounded.kept.len(), 2);
        assert_eq!((bounded.dropped, bounded.cut_names), (1, 1));
        let (name, status) = bounded
            .kept
            .iter()
            .find(|(n, _)| n.ends_with('…'))
            .expect("the cut name");
        assert!(name.len() <= MAX_LABEL_BYTES);
        assert_eq!(*status, CheckStatus::Fail, "the failing one is kept");
    }
}
