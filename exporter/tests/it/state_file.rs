//! A state file that is corrupt, unreadable or unwritable never stops the exporter: it starts,
//! serves every metric, and says what happened in the log and in a counter.

use std::path::Path;
use std::process::Stdio;

use crate::helpers::*;

const CHANGES: &str = r#"deployment_changes_total{target="gateway"}"#;
const CORRUPT: &str = "exporter_state_file_corrupt_total";
const READ_ERRORS: &str = r#"exporter_state_file_errors_total{operation="read"}"#;
const WRITE_ERRORS: &str = r#"exporter_state_file_errors_total{operation="write"}"#;

fn log_to(path: &Path) -> Stdio {
    std::fs::File::create(path).expect("log file").into()
}

/// Files in `dir` whose name starts with `prefix`.
fn files_starting(dir: &Path, prefix: &str) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(prefix))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_corrupt_state_file_is_set_aside_and_the_exporter_starts_with_an_empty_history() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state.json");
    let log = dir.path().join("exporter.log");
    std::fs::write(&state, b"{\"targets\": {\"gateway\": \x00\xff garbage").expect("write");
    let gateway = demo_gateway("1.0.0").await;

    // `exporter` returns only once /ready answers 200.
    let exporter = exporter(&gateway.url(""), &state, log_to(&log)).await;
    let body = scrape(&exporter).await;
    assert_eq!(sample(&body, CORRUPT), Some(1.0));
    assert_eq!(sample(&body, CHANGES), Some(0.0), "an empty history");
    assert!(
        body.contains("\nhost_memory_total_bytes"),
        "host metrics served"
    );
    assert_eq!(
        sample(
            &body,
            r#"probe_success{endpoint="version",target="gateway"}"#
        ),
        Some(1.0)
    );
    promtool_check_metrics(&body).unwrap_or_else(|e| panic!("{e}\n{body}"));

    let aside = files_starting(dir.path(), "state.json.corrupt-");
    assert_eq!(aside.len(), 1, "{aside:?}");
    let kept = std::fs::read(&aside[0]).expect("read the file set aside");
    assert!(kept.ends_with(b"garbage"), "kept as it was");

    let text = wait_for_text(&log, "state file is corrupt").await;
    let line = text
        .lines()
        .find(|l| l.contains("state file is corrupt"))
        .expect("the warning");
    assert!(line.contains("WARN"), "{line}");
    assert!(
        line.contains(&aside[0].display().to_string()),
        "names where the file went: {line}"
    );
    assert!(line.contains("line 1 column"), "the parse error: {line}");

    // The first version seen is saved into a new, valid state file.
    let saved = wait_for_text(&state, r#""version": "1.0.0""#).await;
    serde_json::from_str::<serde_json::Value>(&saved).expect("valid JSON");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unwritable_state_file_is_logged_and_probing_goes_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state_dir = dir.path().join("state");
    let state = state_dir.join("state.json");
    let log = dir.path().join("exporter.log");
    let gateway = demo_gateway("1.0.0").await;
    let exporter = exporter(&gateway.url(""), &state, log_to(&log)).await;
    wait_for_text(&state, "1.0.0").await;

    // Tests run as root, for whom permissions do not stop a write: make the state file's
    // directory a plain file instead.
    std::fs::remove_dir_all(&state_dir).expect("remove");
    std::fs::write(&state_dir, "not a directory").expect("write");

    for (i, version) in ["1.1.0", "1.2.0"].into_iter().enumerate() {
        let (status, _) = post_json(
            &gateway.url("/admin/version"),
            &format!(r#"{{"version":"{version}"}}"#),
        )
        .await;
        assert_eq!(status, 200);
        let changes = (i + 1) as f64;
        let body = wait_sample(&exporter, WRITE_ERRORS, changes).await;
        assert_eq!(sample(&body, CHANGES), Some(changes), "still probing");
    }
    let text = wait_for_text(&log, "version history not saved").await;
    assert!(text.contains("cannot write state file"), "{text}");
    assert!(!text.contains("panicked"), "{text}");
    assert_eq!(get(&exporter.url("/ready")).await.0, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreadable_state_file_does_not_stop_the_exporter() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state.json");
    std::fs::create_dir(&state).expect("a directory where the file should be");
    let log = dir.path().join("exporter.log");
    let gateway = demo_gateway("1.0.0").await;

    let exporter = exporter(&gateway.url(""), &state, log_to(&log)).await;
    let body = scrape(&exporter).await;
    assert_eq!(sample(&body, READ_ERRORS), Some(1.0));
    assert_eq!(sample(&body, CORRUPT), Some(0.0));
    assert!(state.is_dir(), "left as it was");
    wait_for_text(&log, "cannot read the state file").await;
}
