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
