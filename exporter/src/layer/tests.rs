//! Behaviour of `HttpMetricsLayer` through a real axum router.

use std::time::Duration;

use axum::body::Body;
use axum::routing::get;
use axum::Router;
use futures_util::FutureExt;
use http::{Request, StatusCode};
use prometheus::proto::MetricFamily;
use prometheus::Registry;
use rand::Rng;
use tower::ServiceExt;

use super::*;

fn app(registry: &Registry) -> Router {
    let layer = HttpMetricsLayer::new(registry).expect("register");
    Router::new()
        .route(
            "/api/orders/{id}",
            get(|| async { "order" }).post(|| async { StatusCode::CREATED }),
        )
        .route("/boom", get(|| async { StatusCode::SERVICE_UNAVAILABLE }))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                "late"
            }),
        )
        .layer(layer)
}

async fn send(app: &Router, method: &str, uri: &str) -> StatusCode {
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .body(Body::empty())
        .expect("request");
    app.clone()
        .oneshot(request)
        .await
        .expect("infallible")
        .status()
}

fn family(registry: &Registry, name: &str) -> Option<MetricFamily> {
    registry.gather().into_iter().find(|f| f.name() == name)
}

fn counter(registry: &Registry, labels: &[(&str, &str)]) -> f64 {
    let Some(family) = family(registry, "http_requests_total") else {
        return 0.0;
    };
    family
        .get_metric()
        .iter()
        .find(|m| {
            labels.iter().all(|(k, v)| {
                m.get_label()
                    .iter()
                    .any(|l| l.name() == *k && l.value() == *v)
            })
        })
        .map_or(0.0, |m| m.get_counter().get_value())
}

fn series_count(registry: &Registry, name: &str) -> usize {
    family(registry, name).map_or(0, |f| f.get_metric().len())
}

fn in_flight(registry: &Registry) -> i64 {
    family(registry, "http_requests_in_flight")
        .expect("gauge")
        .get_metric()[0]
        .get_gauge()
        .get_value() as i64
}

#[tokio::test]
async fn counts_requests_by_method_route_and_status() {
    let registry = Registry::new();
    let app = app(&registry);
    assert_eq!(send(&app, "GET", "/api/orders/1").await, StatusCode::OK);
    assert_eq!(send(&app, "GET", "/api/orders/2").await, StatusCode::OK);
    assert_eq!(
        send(&app, "POST", "/api/orders/3").await,
        StatusCode::CREATED
    );
    assert_eq!(
        send(&app, "GET", "/boom").await,
        StatusCode::SERVICE_UNAVAILABLE
    );

    let route = ("route", "/api/orders/{id}");
    assert_eq!(
        counter(&registry, &[("method", "GET"), route, ("status", "200")]),
        2.0
    );
    assert_eq!(
        counter(&registry, &[("method", "POST"), route, ("status", "201")]),
        1.0
    );
    assert_eq!(
        counter(
            &registry,
            &[("method", "GET"), ("route", "/boom"), ("status", "503")]
        ),
        1.0
    );

    let histogram = family(&registry, "http_request_duration_seconds").expect("histogram");
    let get_orders = histogram
        .get_metric()
        .iter()
        .find(|m| {
            m.get_label().iter().any(|l| l.value() == "GET")
                && m.get_label()
                    .iter()
                    .any(|l| l.value() == "/api/orders/{id}")
        })
        .expect("GET orders series");
    assert_eq!(get_orders.get_histogram().get_sample_count(), 2);
    assert_eq!(in_flight(&registry), 0);
}

#[tokio::test]
async fn random_paths_and_methods_create_a_handful_of_series() {
    let registry = Registry::new();
    let app = app(&registry);
    let mut rng = rand::rng();
    for _ in 0..10_000 {
        let path: String = (0..rng.random_range(1..40))
            .map(|_| rng.random_range('a'..='z'))
            .collect();
        let status = send(&app, "GET", &format!("/{path}?q={}", rng.random::<u32>())).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
    for method in ["PROPFIND", "BREW", "MKCOL"] {
        send(&app, method, "/api/orders/7").await;
    }
    assert_eq!(
        counter(&registry, &[("route", UNMATCHED_ROUTE), ("status", "404")]),
        10_000.0
    );
    // GET unmatched 404, and the three odd methods folded into one `other` series.
    let requests = series_count(&registry, "http_requests_total");
    assert!(requests <= 3, "{requests} request series");
    assert_eq!(
        counter(
            &registry,
            &[("method", "other"), ("route", "/api/orders/{id}")]
        ),
        3.0
    );
    assert!(series_count(&registry, "http_request_duration_seconds") <= 2);
}

#[tokio::test]
async fn in_flight_drops_when_a_request_is_cancelled() {
    let registry = Registry::new();
    let app = app(&registry);
    let request = Request::builder()
        .uri("/slow")
        .body(Body::empty())
        .expect("request");
    let mut pending = Box::pin(app.clone().oneshot(request));
    assert!(
        (&mut pending).now_or_never().is_none(),
        "the slow handler must still be running"
    );
    assert_eq!(in_flight(&registry), 1);
    drop(pending);
    assert_eq!(in_flight(&registry), 0);
    // A cancelled request sent no response: it is not counted as one.
    assert_eq!(series_count(&registry, "http_requests_total"), 0);
}

#[tokio::test]
async fn custom_buckets_are_used() {
    let registry = Registry::new();
    let layer = HttpMetricsLayer::builder()
        .buckets(vec![0.5, 1.0])
        .register(&registry)
        .expect("register");
    let app = Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(layer);
    send(&app, "GET", "/").await;
    let histogram = family(&registry, "http_request_duration_seconds").expect("histogram");
    let bounds: Vec<f64> = histogram.get_metric()[0]
        .get_histogram()
        .get_bucket()
        .iter()
        .map(|b| b.upper_bound())
        .collect();
    assert_eq!(bounds, vec![0.5, 1.0]);
}

#[test]
fn invalid_buckets_are_refused() {
    let registry = Registry::new();
    assert!(HttpMetricsLayer::builder()
        .buckets(vec![1.0, 0.5])
        .register(&registry)
        .is_err());
}

#[test]
fn registering_twice_in_one_registry_fails_clearly() {
    let registry = Registry::new();
    HttpMetricsLayer::new(&registry).expect("first");
    assert!(HttpMetricsLayer::new(&registry).is_err());
}

#[tokio::test]
async fn metrics_handler_serves_the_text_format() {
    let registry = Registry::new();
    let layer = HttpMetricsLayer::new(&registry).expect("register");
    let app = Router::new()
        .route("/metrics", get(metrics_handler(registry.clone())))
        .layer(layer);
    send(&app, "GET", "/metrics").await;
    let response = app
        .oneshot(
            Request::builder()
                .uri("/metrics")
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("infallible");
    assert_eq!(
        response.headers()[http::header::CONTENT_TYPE],
        TEXT_CONTENT_TYPE
    );
    let body = http_body_util::BodyExt::collect(response.into_body())
        .await
        .expect("body")
        .to_bytes();
    let text = String::from_utf8(body.to_vec()).expect("utf-8");
    assert!(
        text.contains(r#"http_requests_total{method="GET",route="/metrics",status="200"} 1"#),
        "{text}"
    );
    assert!(text.contains("# TYPE http_request_duration_seconds histogram"));
}

#[tokio::test]
async fn durations_land_in_their_bucket_with_count_and_sum() {
    let registry = Registry::new();
    let layer = HttpMetricsLayer::builder()
        .buckets(vec![0.1, 1.0, 10.0, f64::INFINITY])
        .register(&registry)
        .expect("register");
    let app = Router::new()
        .route(
            "/wait/{ms}",
            get(
                |axum::extract::Path(ms): axum::extract::Path<u64>| async move {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                },
            ),
        )
        .layer(layer);
    // Waits of 0 ms take microseconds (first bucket); one of 200 ms lands in the second.
    for _ in 0..3 {
        send(&app, "GET", "/wait/0").await;
    }
    send(&app, "GET", "/wait/200").await;
    let family = family(&registry, "http_request_duration_seconds").expect("histogram");
    let histogram = family.get_metric()[0].get_histogram();
    let cumulative: Vec<u64> = histogram
        .get_bucket()
        .iter()
        .map(|b| b.cumulative_count())
        .collect();
    assert_eq!(cumulative, vec![3, 4, 4], "+Inf is implied, not a bucket");
    assert_eq!(histogram.get_sample_count(), 4);
    let sum = histogram.get_sample_sum();
    assert!((0.2..1.0).contains(&sum), "sum {sum}");
}

#[tokio::test]
async fn every_status_gets_its_series_beyond_the_fast_slots() {
    let registry = Registry::new();
    let app = Router::new()
        .route(
            "/status/{code}",
            get(
                |axum::extract::Path(code): axum::extract::Path<u16>| async move {
                    StatusCode::from_u16(code).expect("code")
                },
            ),
        )
        .layer(HttpMetricsLayer::new(&registry).expect("register"));
    let codes = [
        200, 201, 204, 301, 304, 400, 401, 403, 404, 409, 429, 500, 502, 503,
    ];
    for (i, code) in codes.iter().enumerate() {
        for _ in 0..=i {
            send(&app, "GET", &format!("/status/{code}")).await;
        }
    }
    for (i, code) in codes.iter().enumerate() {
        assert_eq!(
            counter(&registry, &[("status", &code.to_string())]),
            (i + 1) as f64,
            "status {code}"
        );
    }
    assert_eq!(series_count(&registry, "http_requests_total"), codes.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_on_many_threads_are_all_counted() {
    let registry = Registry::new();
    let app = app(&registry);
    let tasks: Vec<_> = (0..16)
        .map(|task| {
            let app = app.clone();
            tokio::spawn(async move {
                for i in 0..500 {
                    send(&app, "GET", &format!("/api/orders/{}", task * 1000 + i)).await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("task");
    }
    assert_eq!(
        counter(
            &registry,
            &[
                ("method", "GET"),
                ("route", "/api/orders/{id}"),
                ("status", "200")
            ]
        ),
        8000.0
    );
    assert_eq!(in_flight(&registry), 0);
}

#[test]
fn bucket_errors_say_what_is_wrong() {
    for (buckets, expected) in [
        (vec![1.0, 0.5], "strictly increasing: 1 is followed by 0.5"),
        (vec![], "must not be empty"),
        (vec![0.1, f64::NAN], "must be finite"),
    ] {
        let error = HttpMetricsLayer::builder()
            .buckets(buckets)
            .register(&Registry::new())
            .expect_err("refused");
        assert!(error.to_string().contains(expected), "{error}");
    }
}
