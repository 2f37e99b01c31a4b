//! Hostile gateway answers stay within the documented limits: checks per target, label
//! length, body size and redirects, each counted when exceeded.

use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get as route_get;
use axum::Router;

use crate::helpers::*;

const MAX_CHECKS: usize = 64;
const MAX_LABEL_BYTES: usize = 128;
const MAX_BODY_BYTES: usize = 1 << 20;

fn ok_version() -> &'static str {
    r#"{"version":"1.0.0","git_commit":"abc","build_date":"2026-11-01T00:00:00Z"}"#
}

fn ok_health() -> &'static str {
    r#"{"status":"healthy","checks":{"database":{"status":"pass"}}}"#
}

/// The exporter probing `gateway` as target `gateway`, its stderr in `log`.
async fn probing(gateway: &str, dir: &Path, log: &Path) -> Proc {
    let stderr: Stdio = std::fs::File::create(log).expect("log").into();
    exporter(gateway, &dir.join("state.json"), stderr).await
}

/// The series of `family` in a scrape.
fn series<'a>(scrape: &'a str, family: &str) -> Vec<&'a str> {
    let prefix = format!("{family}{{");
    scrape.lines().filter(|l| l.starts_with(&prefix)).collect()
}

/// The value of label `name` in a sample line (no escaped quotes inside).
fn label_value<'a>(line: &'a str, name: &str) -> &'a str {
    let start = line.find(&format!("{name}=\"")).expect("label") + name.len() + 2;
    let len = line[start..].find('"').expect("closing quote");
    &line[start..start + len]
}

#[tokio::test(flavor = "multi_thread")]
async fn twenty_thousand_checks_become_a_bounded_number_of_series_and_the_drop_is_counted() {
    let checks: Vec<String> = (0..20_000)
        .map(|i| format!(r#""check-{i:05}":{{"status":"pass"}}"#))
        .chain([r#""zz-database":{"status":"fail"}"#.to_owned()])
        .collect();
    let health = format!(
        r#"{{"status":"degraded","checks":{{{}}}}}"#,
        checks.join(",")
    );
    assert!(health.len() < MAX_BODY_BYTES, "within the body limit");
    let gateway = fake_server(
        Router::new()
            .route("/health", route_get(move || async move { health }))
            .route("/version", route_get(|| async { ok_version() })),
    )
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let exporter = probing(&gateway, dir.path(), &dir.path().join("log")).await;

    let body = scrape(&exporter).await;
    let check_series = series(&body, "app_health_check_status");
    assert_eq!(
        check_series.len(),
        MAX_CHECKS * 3,
        "pass, warn and fail per check"
    );
    assert_eq!(
        sample(
            &body,
            r#"app_health_check_status{check="zz-database",status="fail",target="gateway"}"#
        ),
        Some(1.0),
        "a failing check is never the one dropped"
    );
    let dropped = sample(
        &body,
        r#"exporter_probe_checks_dropped_total{target="gateway"}"#,
    )
    .expect("drop counter");
    let per_probe = (20_001 - MAX_CHECKS) as f64;
    assert!(
        dropped >= per_probe && dropped % per_probe == 0.0,
        "{dropped} is not a whole number of probes' drops"
    );
    assert_eq!(
        sample(
            &body,
            r#"app_health_status{status="degraded",target="gateway"}"#
        ),
        Some(1.0)
    );
    promtool_check_metrics(&body).unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_900_kb_version_becomes_a_bounded_label_and_the_cut_is_counted() {
    let version = format!(
        r#"{{"version":"1.0.0-{}","git_commit":"{}","build_date":"2026-11-01T00:00:00Z"}}"#,
        "x".repeat(900_000),
        "é".repeat(100)
    );
    let long_check = format!(
        r#"{{"status":"healthy","checks":{{"{}":{{"status":"pass"}}}}}}"#,
        "c".repeat(1000)
    );
    let gateway = fake_server(
        Router::new()
            .route("/health", route_get(move || async move { long_check }))
            .route("/version", route_get(move || async move { version })),
    )
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("log");
    let exporter = probing(&gateway, dir.path(), &log).await;

    let body = scrape(&exporter).await;
    let info = series(&body, "app_version_info");
    assert_eq!(info.len(), 1, "{info:?}");
    let shown = label_value(info[0], "version");
    assert!(shown.len() <= MAX_LABEL_BYTES, "{} bytes", shown.len());
    assert!(
        shown.starts_with("1.0.0-xxx") && shown.ends_with('…'),
        "{shown}"
    );
    let commit = label_value(info[0], "commit");
    assert!(commit.len() <= MAX_LABEL_BYTES && commit.ends_with('…'));
    assert!(
        commit.trim_end_matches('…').chars().all(|c| c == 'é'),
        "cut on a char boundary"
    );
    assert_eq!(
        label_value(info[0], "build_date"),
        "2026-11-01T00:00:00Z",
        "short values are untouched"
    );
    let check = label_value(series(&body, "app_health_check_status")[0], "check");
    assert!(check.len() <= MAX_LABEL_BYTES && check.ends_with('…'));
    for label in ["version", "commit", "check"] {
        let counted = sample(
            &body,
            &format!(
                r#"exporter_probe_label_values_truncated_total{{label="{label}",target="gateway"}}"#
            ),
        );
        assert!(counted.is_some_and(|n| n >= 1.0), "{label}: {counted:?}");
    }
    assert_eq!(
        sample(
            &body,
            r#"exporter_probe_label_values_truncated_total{label="build_date",target="gateway"}"#
        ),
        Some(0.0)
    );
    assert!(
        body.len() < 64 * 1024,
        "the scrape stays small: {} bytes",
        body.len()
    );
    promtool_check_metrics(&body).unwrap_or_else(|e| panic!("{e}"));

    // Nor do the log and the state file carry the whole string.
    let state = wait_for_text(&dir.path().join("state.json"), "1.0.0-x").await;
    assert!(state.len() < 4096, "{} bytes", state.len());
    let log = std::fs::read_to_string(&log).expect("log");
    assert!(log.len() < 16 * 1024, "{} bytes of log", log.len());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_redirect_to_another_host_is_not_followed_and_fails_the_probe_with_the_reason() {
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&hits);
    // Another loopback address: another host that would answer if the redirect were followed.
    let elsewhere = fake_server_on(
        "127.0.0.2",
        Router::new().fallback(move || {
            counted.fetch_add(1, Ordering::SeqCst);
            async { ok_version() }
        }),
    )
    .await;
    let away = format!("{elsewhere}/version");
    let gateway = fake_server(
        Router::new()
            .route("/health", route_get(|| async { ok_health() }))
            .route(
                "/version",
                route_get(move || async move { Redirect::temporary(&away) }),
            ),
    )
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("log");
    let exporter = probing(&gateway, dir.path(), &log).await;

    let body = scrape(&exporter).await;
    let version = r#"{endpoint="version",target="gateway"}"#;
    assert_eq!(sample(&body, &format!("probe_success{version}")), Some(0.0));
    assert_eq!(
        sample(&body, &format!("probe_http_status_code{version}")),
        Some(307.0),
        "the redirect is the answer"
    );
    let refused = sample(
        &body,
        r#"exporter_probe_responses_refused_total{endpoint="version",reason="redirect",target="gateway"}"#,
    );
    assert!(refused.is_some_and(|n| n >= 1.0), "{refused:?}");
    assert_eq!(
        sample(
            &body,
            r#"probe_success{endpoint="health",target="gateway"}"#
        ),
        Some(1.0)
    );
    assert!(series(&body, "app_version_info").is_empty());
    let text = wait_for_text(&log, "not followed").await;
    assert!(text.contains(&elsewhere), "names where it pointed: {text}");
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "the other host was never asked"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn redirects_within_the_target_are_followed_a_few_times_only() {
    let gateway = fake_server(
        Router::new()
            // A loop: followed three times, then refused.
            .route("/health", route_get(|| async { Redirect::to("/health") }))
            .route(
                "/version",
                route_get(|| async { Redirect::permanent("/v2/version") }),
            )
            .route("/v2/version", route_get(|| async { ok_version() })),
    )
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("log");
    let exporter = probing(&gateway, dir.path(), &log).await;

    let body = scrape(&exporter).await;
    assert_eq!(
        sample(
            &body,
            r#"probe_success{endpoint="version",target="gateway"}"#
        ),
        Some(1.0),
        "same scheme, host and port: followed"
    );
    assert!(body.contains(r#"version="1.0.0"}"#), "{body}");
    assert_eq!(
        sample(
            &body,
            r#"probe_success{endpoint="health",target="gateway"}"#
        ),
        Some(0.0)
    );
    let refused = sample(
        &body,
        r#"exporter_probe_responses_refused_total{endpoint="health",reason="redirect",target="gateway"}"#,
    );
    assert!(refused.is_some_and(|n| n >= 1.0), "{refused:?}");
    wait_for_text(&log, "redirected more than 3 times").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_oversized_body_fails_the_probe_with_the_reason() {
    // /health declares its length; /version streams without one, valid JSON as it goes.
    let gateway = fake_server(
        Router::new()
            .route(
                "/health",
                route_get(|| async { " ".repeat(2 * MAX_BODY_BYTES) }),
            )
            .route("/version", route_get(|| async { endless_version() })),
    )
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("log");
    let exporter = probing(&gateway, dir.path(), &log).await;

    let body = scrape(&exporter).await;
    for endpoint in ["health", "version"] {
        let labels = format!(r#"{{endpoint="{endpoint}",target="gateway"}}"#);
        assert_eq!(sample(&body, &format!("probe_success{labels}")), Some(0.0));
        assert_eq!(
            sample(&body, &format!("probe_http_status_code{labels}")),
            Some(200.0)
        );
        let refused = sample(
            &body,
            &format!(
                r#"exporter_probe_responses_refused_total{{endpoint="{endpoint}",reason="body_too_large",target="gateway"}}"#
            ),
        );
        assert!(refused.is_some_and(|n| n >= 1.0), "{endpoint}: {refused:?}");
    }
    let text = wait_for_text(&log, "/version body is larger than 1048576 bytes").await;
    assert!(
        text.contains("/health body is larger than 1048576 bytes"),
        "{text}"
    );
    assert_eq!(get(&exporter.url("/health")).await.0, 200, "still serving");
}

/// 4 MiB of a `/version` document in 64 KiB chunks, with no Content-Length.
fn endless_version() -> Response {
    let head = futures_util::stream::once(async {
        Ok::<_, std::io::Error>(String::from(r#"{"version":"1.0.0","padding":""#))
    });
    let padding =
        futures_util::stream::iter((0..64).map(|_| Ok::<_, std::io::Error>("p".repeat(64 * 1024))));
    let tail = futures_util::stream::once(async { Ok::<_, std::io::Error>(String::from("\"}")) });
    use futures_util::StreamExt;
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(head.chain(padding).chain(tail)),
    )
        .into_response()
}
