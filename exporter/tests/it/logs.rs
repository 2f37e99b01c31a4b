//! Log lines written to a file (as `./scripts/stack` keeps them) are plain text.

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread")]
async fn logs_written_to_a_file_carry_no_terminal_colour_codes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("exporter.log");
    let file = std::fs::File::create(&log).expect("log file");
    // Nothing answers here: the probe failures add warnings to the info lines.
    let unreachable = format!("http://{}", free_addr());
    let mut exporter = exporter(&unreachable, &dir.path().join("state.json"), file.into()).await;
    wait_for_text(&log, "exporter listening").await;
    exporter.terminate();
    let text = std::fs::read_to_string(&log).expect("read log");
    assert!(text.contains("INFO"), "{text}");
    assert!(
        !text.contains('\u{1b}'),
        "escape codes in a log file: {:?}",
        text.lines().find(|l| l.contains('\u{1b}'))
    );
}
