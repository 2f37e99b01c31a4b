//! The exporter probing a demo gateway (and broken ones), scraped like Prometheus would.

use std::process::Stdio;
use std::time::Duration;

use axum::routing::get as route_get;
use axum::Router;

use crate::helpers::*;

const GW: &str = r#"target="gateway""#;
const VERSION_PROBE_DURATION: &str =
    r#"probe_duration_seconds{endpoint="version",target="gateway"}"#;

#[tokio::test(flavor = "multi_thread")]
async fn scrapes_of_exporter_and_gateway_pass_promtool() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gateway = demo_gateway("1.0.0").await;
    for path in [
        "/api/orders/1",
        "/api/orders/2",
        "/api/cheap",
        "/nope/../../etc/passwd",
    ] {
        get(&gateway.url(path)).await;
    }
    let exporter = exporter(
        &gateway.url(""),
        &dir.path().join("state.json"),
        Stdio::null(),
    )
    .await;
    // CPU ratios appear from the second host sample on.
    let body = wait_for(&exporter.url("/metrics"), |_, b| {
        b.contains("host_cpu_usage_ratio ")
    })
    .await;

    promtool_check_metrics(&body).unwrap_or_else(|e| panic!("exporter scrape: {e}\n{body}"));
    let gateway_scrape = get(&gateway.url("/metrics")).await.1;
    promtool_check_metrics(&gateway_scrape).unwrap_or_else(|e| panic!("gateway scrape: {e}"));

    let response = reqwest::get(exporter.url("/metrics"))
        .await
        .expect("scrape");
    assert_eq!(
        response.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    for family in [
        "host_memory_total_bytes",
        "host_filesystem_avail_bytes",
        "host_network_receive_bytes_total",
        "host_load1",
        "host_boot_time_seconds",
        "process_resident_memory_bytes",
        "exporter_build_info",
    ] {
        assert!(body.contains(&format!("\n{family}")), "{family} missing");
    }
    assert_eq!(
        sample(
            &body,
            &format!(r#"probe_success{{endpoint="health",{GW}}}"#)
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &body,
            &format!(r#"probe_http_status_code{{endpoint="version",{GW}}}"#)
        ),
        Some(200.0)
    );
    assert!(
        body.contains(r#"app_version_info{build_date="2026-11-01T00:00:00Z",color="blue",commit="#)
    );
    assert_eq!(
        sample(&body, &format!(r#"app_active_color{{color="blue",{GW}}}"#)),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &body,
            &format!(r#"app_health_status{{status="healthy",{GW}}}"#)
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(&body, &format!(r#"deployment_changes_total{{{GW}}}"#)),
        Some(0.0)
    );
    assert!(
        gateway_scrape.contains(r#"route="unmatched""#),
        "raw paths must fold into `unmatched`"
    );
    assert!(!gateway_scrape.contains("passwd"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deployment_and_a_rollback_move_the_counters_and_survive_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state.json");
    let gateway = demo_gateway("1.0.0").await;
    let mut first = exporter(&gateway.url(""), &state, Stdio::null()).await;

    let (status, _) = post_json(&gateway.url("/admin/version"), r#"{"version":"1.1.0"}"#).await;
    assert_eq!(status, 200);
    let body = wait_sample(&first, &format!(r#"deployment_changes_total{{{GW}}}"#), 1.0).await;
    assert_eq!(
        sample(&body, &format!(r#"deployment_rollbacks_total{{{GW}}}"#)),
        Some(0.0)
    );
    assert!(
        body.contains(r#"color="green",commit="#) && body.contains(r#"version="1.1.0"}"#),
        "{body}"
    );
    assert_eq!(
        sample(&body, &format!(r#"app_active_color{{color="green",{GW}}}"#)),
        Some(1.0)
    );
    assert!(
        !body.contains(r#"version="1.0.0""#),
        "the old build's info series is removed"
    );
    let changed_at = sample(
        &body,
        &format!(r#"deployment_last_change_timestamp_seconds{{{GW}}}"#),
    )
    .expect("ts");
    assert!(changed_at > 1.7e9);

    post_json(&gateway.url("/admin/version"), r#"{"version":"1.0.0"}"#).await;
    let body = wait_sample(
        &first,
        &format!(r#"deployment_rollbacks_total{{{GW}}}"#),
        1.0,
    )
    .await;
    assert_eq!(
        sample(&body, &format!(r#"deployment_changes_total{{{GW}}}"#)),
        Some(2.0)
    );

    // Deploying 1.1.0 again after rolling back from it is a roll forward, not a rollback.
    post_json(&gateway.url("/admin/version"), r#"{"version":"1.1.0"}"#).await;
    let body = wait_sample(&first, &format!(r#"deployment_changes_total{{{GW}}}"#), 3.0).await;
    assert_eq!(
        sample(&body, &format!(r#"deployment_rollbacks_total{{{GW}}}"#)),
        Some(1.0)
    );
    assert!(first.terminate().success(), "graceful exit on SIGTERM");

    // A restart neither resets the history nor counts as a deployment.
    let second = exporter(&gateway.url(""), &state, Stdio::null()).await;
    wait_probe_rounds(&second, VERSION_PROBE_DURATION, 3).await;
    let body = scrape(&second).await;
    assert_eq!(
        sample(&body, &format!(r#"deployment_changes_total{{{GW}}}"#)),
        Some(3.0)
    );
    assert_eq!(
        sample(&body, &format!(r#"deployment_rollbacks_total{{{GW}}}"#)),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &body,
            &format!(r#"deployment_last_change_timestamp_seconds{{{GW}}}"#)
        )
        .map(|t| t > changed_at),
        Some(true)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn health_checks_are_reported_per_check() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gateway = demo_gateway("1.0.0").await;
    let exporter = exporter(&gateway.url(""), &dir.path().join("s.json"), Stdio::null()).await;
    post_json(
        &gateway.url("/admin/faults"),
        r#"{"failing_check":"database"}"#,
    )
    .await;
    let body = wait_sample(
        &exporter,
        &format!(r#"app_health_check_status{{check="database",status="fail",{GW}}}"#),
        1.0,
    )
    .await;
    assert_eq!(
        sample(
            &body,
            &format!(r#"app_health_status{{status="degraded",{GW}}}"#)
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &body,
            &format!(r#"app_health_check_status{{check="cache",status="pass",{GW}}}"#)
        ),
        Some(1.0)
    );

    post_json(&gateway.url("/admin/faults"), r#"{"unhealthy":true}"#).await;
    let body = wait_sample(
        &exporter,
        &format!(r#"app_health_status{{status="unhealthy",{GW}}}"#),
        1.0,
    )
    .await;
    // 503 with a valid document: reachable but unhealthy, so the probe itself failed.
    assert_eq!(
        sample(
            &body,
            &format!(r#"probe_success{{endpoint="health",{GW}}}"#)
        ),
        Some(0.0)
    );
    assert_eq!(
        sample(
            &body,
            &format!(r#"probe_http_status_code{{endpoint="health",{GW}}}"#)
        ),
        Some(503.0)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_gateway_gives_probe_success_0_and_a_clear_log_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("exporter.log");
    let dead = format!("http://{}", free_addr());
    let mut exporter = exporter(
        &dead,
        &dir.path().join("s.json"),
        std::fs::File::create(&log).expect("log").into(),
    )
    .await;
    let body = scrape(&exporter).await;
    for endpoint in ["health", "version"] {
        let labels = format!(r#"{{endpoint="{endpoint}",{GW}}}"#);
        assert_eq!(sample(&body, &format!("probe_success{labels}")), Some(0.0));
        assert_eq!(
            sample(&body, &format!("probe_http_status_code{labels}")),
            Some(0.0)
        );
    }
    assert!(!body.contains("app_version_info{"), "no version known");
    promtool_check_metrics(&body).expect("still a clean scrape");
    wait_probe_rounds(&exporter, VERSION_PROBE_DURATION, 3).await;
    assert!(exporter.terminate().success());
    let log = std::fs::read_to_string(&log).expect("log");
    let failures: Vec<&str> = log.lines().filter(|l| l.contains("probe failed")).collect();
    assert_eq!(
        failures.len(),
        2,
        "one line per endpoint, not one per probe:\n{log}"
    );
    assert!(failures[0].contains("connection failed"), "{log}");
    assert!(!log.contains("panicked"));
}

#[tokio::test(flavor = "multi_thread")]
async fn garbage_and_slow_answers_are_failed_probes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let garbage = fake_server(
        Router::new()
            .route(
                "/health",
                route_get(|| async { "<html>502 Bad Gateway</html>" }),
            )
            .route("/version", route_get(|| async { r#"{"version": 42}"# })),
    )
    .await;
    let slow = fake_server(Router::new().route(
        "/{*any}",
        route_get(|| async {
            tokio::time::sleep(Duration::from_secs(30)).await;
            "{}"
        }),
    ))
    .await;
    let config = dir.path().join("targets.yml");
    std::fs::write(
        &config,
        format!(
            "targets:\n  - name: garbage\n    url: {garbage}\n  - name: slow\n    url: {slow}\n"
        ),
    )
    .expect("write");

    let addr = free_addr();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_exporter"))
        .args([
            "--listen",
            &addr.to_string(),
            "--probe-interval",
            "200ms",
            "--probe-timeout",
            "300ms",
        ])
        .arg("--config")
        .arg(&config)
        .arg("--state-file")
        .arg(dir.path().join("s.json"))
        .stderr(Stdio::null())
        .spawn()
        .expect("start");
    let exporter = Proc { child, addr };
    let body = wait_for(&exporter.url("/ready"), |s, _| s == 200).await;
    assert!(body.contains("ready"));
    let body = scrape(&exporter).await;
    for target in ["garbage", "slow"] {
        for endpoint in ["health", "version"] {
            let series = format!(r#"probe_success{{endpoint="{endpoint}",target="{target}"}}"#);
            assert_eq!(sample(&body, &series), Some(0.0), "{series}");
        }
    }
    let garbage_status = r#"probe_http_status_code{endpoint="health",target="garbage"}"#;
    assert_eq!(
        sample(&body, garbage_status),
        Some(200.0),
        "answered, but not JSON"
    );
    let slow_duration = sample(
        &body,
        r#"probe_duration_seconds{endpoint="version",target="slow"}"#,
    )
    .expect("duration");
    assert!(
        (0.25..2.0).contains(&slow_duration),
        "cut at the timeout: {slow_duration}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_invalid_config_is_refused_with_its_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("targets.yml");
    std::fs::write(
        &config,
        "targets:\n  - name: a\n    url: http://x\n    colour: blue\n",
    )
    .expect("write");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_exporter"))
        .arg("--config")
        .arg(&config)
        .output()
        .expect("run");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("line 4") && stderr.contains("unknown field `colour`"),
        "{stderr}"
    );

    let output = std::process::Command::new(env!("CARGO_BIN_EXE_exporter"))
        .arg("--help")
        .output()
        .expect("run");
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).contains("--gateway-url"));
}

/// `--healthcheck` is the container healthcheck of images without a shell: exit 0 while the
/// server answers /health, non-zero with the address in the message when nothing listens.
#[tokio::test(flavor = "multi_thread")]
async fn healthcheck_flag_reports_the_server_state() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gateway = demo_gateway("1.0.0").await;
    let exporter = exporter(
        &gateway.url(""),
        &dir.path().join("state.json"),
        Stdio::null(),
    )
    .await;
    let check = |listen: String| {
        std::process::Command::new(env!("CARGO_BIN_EXE_exporter"))
            .args(["--healthcheck", "--listen", &listen])
            .output()
            .expect("run exporter --healthcheck")
    };

    let up = check(exporter.addr.to_string());
    assert!(
        up.status.success(),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );

    let nobody = free_addr();
    let down = check(nobody.to_string());
    assert!(!down.status.success());
    let stderr = String::from_utf8_lossy(&down.stderr);
    assert!(
        stderr.contains(&format!("no answer from http://{nobody}/health")),
        "{stderr}"
    );
}

/// With `--loki-url`, log lines are pushed to Loki's push API (snappy-compressed protobuf)
/// with the `service` label, and the last ones are flushed on SIGTERM.
#[tokio::test(flavor = "multi_thread")]
async fn logs_reach_loki_with_their_labels_and_are_flushed_on_exit() {
    use axum::body::Bytes;
    use axum::http::HeaderMap;
    use std::sync::{Arc, Mutex};

    /// Content type and decompressed body of each push.
    type Pushes = Arc<Mutex<Vec<(String, Vec<u8>)>>>;
    let pushes: Pushes = Arc::default();
    let recorded = Arc::clone(&pushes);
    let loki = fake_server(Router::new().route(
        "/loki/api/v1/push",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let recorded = Arc::clone(&recorded);
            async move {
                let kind = headers
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                let text = snap::raw::Decoder::new()
                    .decompress_vec(&body)
                    .expect("a snappy-compressed push");
                recorded.lock().expect("lock").push((kind, text));
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    ))
    .await;

    let dir = tempfile::tempdir().expect("tempdir");
    let addr = free_addr();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_exporter"))
        .args(["--listen", &addr.to_string(), "--loki-url", &loki])
        .arg("--state-file")
        .arg(dir.path().join("state.json"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start exporter");
    let mut exporter = Proc { child, addr };
    wait_for(&exporter.url("/ready"), |s, _| s == 200).await;
    assert!(exporter.terminate().success(), "graceful exit on SIGTERM");

    let pushes = pushes.lock().expect("lock").clone();
    assert!(!pushes.is_empty(), "no push reached the fake Loki");
    assert!(pushes
        .iter()
        .all(|(kind, _)| kind == "application/x-protobuf"));
    let all: Vec<u8> = pushes.into_iter().flat_map(|(_, body)| body).collect();
    let text = String::from_utf8_lossy(&all);
    for expected in [
        "service=\"exporter\"",
        "exporter listening",
        "exporter stopped",
    ] {
        assert!(text.contains(expected), "`{expected}` not pushed: {text}");
    }
}
