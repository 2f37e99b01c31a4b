//! Deployments and rollbacks by semver, build date and history; the state file.

use super::order::build_date;
use super::*;

fn build(version: &str) -> Build {
    dated(version, "")
}

fn dated(version: &str, build_date: &str) -> Build {
    Build {
        version: version.into(),
        commit: format!("c-{version}"),
        build_date: build_date.into(),
    }
}

/// Observes `versions` in order and returns each change after the first.
fn walk(builds: &[Build]) -> Vec<Change> {
    let mut history = History::default();
    let changes = builds
        .iter()
        .enumerate()
        .map(|(i, b)| history.observe(b.clone(), i as f64))
        .collect::<Vec<_>>();
    assert_eq!(changes[0], Change::First);
    changes[1..].to_vec()
}

#[test]
fn first_sighting_is_not_a_deployment() {
    let mut history = History::default();
    assert_eq!(history.observe(build("1.0"), 10.0), Change::First);
    assert_eq!(history.observe(build("1.0"), 20.0), Change::Unchanged);
    assert_eq!(
        (history.changes, history.rollbacks, history.last_change),
        (0, 0, None)
    );
}

#[test]
fn rolling_forward_again_after_a_rollback_is_a_deployment() {
    let mut history = History::default();
    history.observe(build("1.4.0"), 1.0);
    assert_eq!(
        history.observe(build("1.5.0"), 2.0),
        Change::Deployed(Basis::Semver)
    );
    assert_eq!(
        history.observe(build("1.4.0"), 3.0),
        Change::RolledBack(Basis::Semver)
    );
    assert_eq!(
        history.observe(build("1.5.0"), 4.0),
        Change::Deployed(Basis::Semver),
        "1.5.0 was served before, but it is newer: a roll forward"
    );
    assert_eq!((history.changes, history.rollbacks), (3, 1));
    assert_eq!(history.last_change, Some(4.0));
}

#[test]
fn an_older_semver_never_seen_is_a_rollback() {
    assert_eq!(
        walk(&[build("1.5.0"), build("1.3.0")]),
        [Change::RolledBack(Basis::Semver)]
    );
}

#[test]
fn a_leading_v_is_still_semver() {
    assert_eq!(
        walk(&[build("v1.5.0"), build("1.4.9"), build("V1.6.0")]),
        [
            Change::RolledBack(Basis::Semver),
            Change::Deployed(Basis::Semver)
        ]
    );
}

#[test]
fn a_release_after_its_pre_release_is_forward_and_back_to_the_pre_release_is_a_rollback() {
    assert_eq!(
        walk(&[
            build("1.5.0-rc.1"),
            build("1.5.0"),
            build("1.5.0-rc.2"),
            build("1.6.0-alpha")
        ]),
        [
            Change::Deployed(Basis::Semver),
            Change::RolledBack(Basis::Semver),
            Change::Deployed(Basis::Semver)
        ]
    );
}

#[test]
fn semver_wins_over_build_dates() {
    assert_eq!(
        walk(&[
            dated("1.5.0", "2026-03-01T00:00:00Z"),
            dated("1.4.1", "2026-04-01T00:00:00Z")
        ]),
        [Change::RolledBack(Basis::Semver)],
        "a backported patch built later is still an older release"
    );
}

#[test]
fn non_semver_versions_are_ordered_by_build_date() {
    assert_eq!(
        walk(&[
            dated("blue-42", "2026-03-02T10:00:00Z"),
            dated("blue-41", "2026-03-01T10:00:00Z"),
            dated("blue-42", "2026-03-02T10:00:00Z"),
            dated("blue-43", "2026-03-03T10:00:00Z"),
        ]),
        [
            Change::RolledBack(Basis::BuildDate),
            Change::Deployed(Basis::BuildDate),
            Change::Deployed(Basis::BuildDate)
        ],
        "an older build never seen is a rollback; a newer one seen before is not"
    );
}

#[test]
fn the_same_semver_with_another_commit_is_ordered_by_date_then_history() {
    let hotfix = |commit: &str, date: &str| Build {
        version: "1.5.0".into(),
        commit: commit.into(),
        build_date: date.into(),
    };
    assert_eq!(
        walk(&[
            hotfix("a", "2026-03-01T00:00:00Z"),
            hotfix("b", "2026-03-02T00:00:00Z"),
            hotfix("a", "2026-03-01T00:00:00Z"),
        ]),
        [
            Change::Deployed(Basis::BuildDate),
            Change::RolledBack(Basis::BuildDate)
        ]
    );
    assert_eq!(
        walk(&[hotfix("a", ""), hotfix("b", ""), hotfix("a", "")]),
        [
            Change::Deployed(Basis::History),
            Change::RolledBack(Basis::History)
        ]
    );
}

#[test]
fn without_semver_or_dates_a_return_to_an_earlier_build_is_a_rollback() {
    let mut history = History::default();
    history.observe(build("1.0"), 10.0);
    let by_history = |rollback| {
        if rollback {
            Change::RolledBack(Basis::History)
        } else {
            Change::Deployed(Basis::History)
        }
    };
    assert_eq!(history.observe(build("1.1"), 20.0), by_history(false));
    assert_eq!(history.observe(build("1.0"), 30.0), by_history(true));
    assert_eq!(history.observe(build("1.1"), 40.0), by_history(true));
    assert_eq!(history.observe(build("1.2"), 50.0), by_history(false));
    assert_eq!((history.changes, history.rollbacks), (4, 2));
    assert_eq!(history.last_change, Some(50.0));
    assert_eq!(history.previous, vec![build("1.0"), build("1.1")]);
}

#[test]
fn one_semver_and_one_not_falls_back_to_dates_or_history() {
    assert_eq!(
        walk(&[build("1.5.0"), build("nightly"), build("1.5.0")]),
        [
            Change::Deployed(Basis::History),
            Change::RolledBack(Basis::History)
        ]
    );
    assert_eq!(
        walk(&[
            dated("1.5.0", "2026-03-02T00:00:00Z"),
            dated("nightly", "2026-03-01T00:00:00Z")
        ]),
        [Change::RolledBack(Basis::BuildDate)]
    );
}

#[test]
fn a_build_date_that_does_not_parse_is_ignored() {
    assert_eq!(
        walk(&[
            dated("a", "2026-03-02T00:00:00Z"),
            dated("b", "yesterday"),
            dated("a", "2026-03-02T00:00:00Z")
        ]),
        [
            Change::Deployed(Basis::History),
            Change::RolledBack(Basis::History)
        ]
    );
}

#[test]
fn build_dates_are_read_as_rfc_3339_with_any_offset() {
    let utc = build_date("2026-03-01T10:00:00Z").expect("utc");
    assert_eq!(build_date("2026-03-01T10:00:00+00:00"), Some(utc));
    assert_eq!(build_date("2026-03-01T12:00:00+02:00"), Some(utc));
    assert_eq!(build_date("2026-03-01T05:30:00-04:30"), Some(utc));
    assert!(build_date("2026-03-01T10:00:00.250Z").is_some_and(|t| t > utc));
    for bad in [
        "",
        "2026-03-01",
        "2026-03-01 10:00:00",
        "2026-13-01T10:00:00Z",
        "2026-03-01T10:00:00+25:00",
        "2026-03-01T10:00:00ü+02:0",
        "éééééééééééééééééééé",
    ] {
        assert_eq!(build_date(bad), None, "{bad:?}");
    }
}

#[test]
fn a_new_commit_of_the_same_version_is_a_deployment() {
    let mut history = History::default();
    history.observe(build("1.0"), 1.0);
    let hotfix = Build {
        commit: "other".into(),
        ..build("1.0")
    };
    assert_eq!(
        history.observe(hotfix, 2.0),
        Change::Deployed(Basis::History)
    );
}

#[test]
fn a_new_build_date_alone_is_not_a_change() {
    let mut history = History::default();
    history.observe(dated("1.0", "2026-03-01T00:00:00Z"), 1.0);
    assert_eq!(
        history.observe(dated("1.0", "2026-03-02T00:00:00Z"), 2.0),
        Change::Unchanged
    );
}

#[test]
fn memory_of_old_versions_is_bounded() {
    let mut history = History::default();
    for i in 0..200 {
        history.observe(build(&i.to_string()), f64::from(i));
    }
    assert_eq!(history.previous.len(), REMEMBERED_VERSIONS);
    assert_eq!(
        history.observe(build("0"), 999.0),
        Change::Deployed(Basis::History),
        "forgotten"
    );
    assert_eq!(
        history.observe(build("150"), 1000.0),
        Change::RolledBack(Basis::History)
    );
}

#[test]
fn state_round_trips_through_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("nested/state.json");
    let (empty, recovery) = State::load(&path, 1);
    assert_eq!(empty, State::default());
    assert!(recovery.is_none(), "a missing file is a new history");
    let mut state = State::default();
    let history = state.targets.entry("gateway".into()).or_default();
    history.observe(dated("1.0", "2026-03-01T00:00:00Z"), 1.0);
    history.observe(build("2.0"), 2.0);
    state.save(&path).expect("save");
    let (loaded, recovery) = State::load(&path, 2);
    assert_eq!(loaded, state);
    assert!(recovery.is_none());
}

#[test]
fn a_state_file_without_build_dates_still_loads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("state.json");
    std::fs::write(
        &path,
        r#"{"targets":{"gateway":{"current":{"version":"1.0","commit":"a"},"previous":[{"version":"0.9"}],"changes":1}}}"#,
    )
    .expect("write");
    let (state, recovery) = State::load(&path, 1);
    assert!(recovery.is_none());
    let history = &state.targets["gateway"];
    assert_eq!(
        history.current.as_ref().map(|b| b.build_date.as_str()),
        Some("")
    );
    assert_eq!(history.previous[0].commit, "");
}

#[test]
fn a_corrupt_state_file_is_set_aside_and_the_history_starts_empty() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("state.json");
    std::fs::write(&path, "{not json").expect("write");
    let (state, recovery) = State::load(&path, 1_700_000_000);
    assert_eq!(state, State::default());
    let Some(Recovery::SetAside { error, moved_to }) = recovery else {
        panic!("not set aside: {recovery:?}");
    };
    assert!(error.to_string().contains("line 1"), "{error}");
    assert_eq!(moved_to, dir.path().join("state.json.corrupt-1700000000"));
    assert_eq!(
        std::fs::read_to_string(&moved_to).expect("kept"),
        "{not json"
    );
    assert!(!path.exists());

    std::fs::write(&path, r#"{"targets": 5}"#).expect("write");
    let (_, recovery) = State::load(&path, 1_700_000_000);
    let Some(Recovery::SetAside { moved_to, .. }) = recovery else {
        panic!("not set aside: {recovery:?}");
    };
    assert_eq!(
        moved_to,
        dir.path().join("state.json.corrupt-1700000000-1"),
        "the first corrupt file is not overwritten"
    );
}

#[test]
fn an_unreadable_state_file_is_left_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("state.json");
    std::fs::create_dir(&path).expect("a directory where the file should be");
    let (state, recovery) = State::load(&path, 1);
    assert_eq!(state, State::default());
    assert!(
        matches!(recovery, Some(Recovery::Unreadable { .. })),
        "{recovery:?}"
    );
    assert!(path.is_dir());
}

#[test]
fn a_failed_save_is_an_error_and_leaves_no_temporary_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("state.json");
    std::fs::create_dir(&path).expect("a directory where the file should be");
    let error = State::default()
        .save(&path)
        .expect_err("cannot replace a directory");
    assert!(
        error.to_string().contains("cannot write state file"),
        "{error}"
    );
    assert!(!dir.path().join("state.json.tmp").exists());
}
