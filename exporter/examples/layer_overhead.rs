//! Nanoseconds that `HttpMetricsLayer` adds to one request, measured in-process (no network):
//! the same router is called without a layer, with a layer that does nothing (what any
//! `Router::layer` costs: axum boxes the wrapped service and its future) and with
//! `HttpMetricsLayer`, interleaved; the medians of several rounds are compared.
//! Run: `cargo run --release --example layer_overhead -p exporter`.

use std::time::Instant;

use axum::body::Body;
use axum::routing::get;
use axum::Router;
use exporter::layer::HttpMetricsLayer;
use http::Request;
use tower::{Service, ServiceExt};

const CALLS: u32 = 200_000;
const ROUNDS: usize = 7;

async fn ns_per_call(app: &mut Router) -> f64 {
    let started = Instant::now();
    for i in 0..CALLS {
        let uri = if i % 2 == 0 {
            "/api/orders/7"
        } else {
            "/api/cheap"
        };
        let request = Request::builder()
            .uri(uri)
            .body(Body::empty())
            .expect("request");
        let response = ServiceExt::<Request<Body>>::ready(&mut *app)
            .await
            .expect("ready")
            .call(request)
            .await
            .expect("infallible");
        std::hint::black_box(response);
    }
    started.elapsed().as_nanos() as f64 / f64::from(CALLS)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let routes = || {
        Router::new()
            .route("/api/orders/{id}", get(|| async { "order" }))
            .route("/api/cheap", get(|| async { "ok" }))
    };
    let registry = prometheus::Registry::new();
    let mut plain = routes();
    let mut noop = routes().layer(tower::layer::layer_fn(|service| service));
    let mut measured = routes().layer(HttpMetricsLayer::new(&registry).expect("register"));
    // Warm-up: creates the route handles once, as in a running service.
    ns_per_call(&mut plain).await;
    ns_per_call(&mut noop).await;
    ns_per_call(&mut measured).await;
    let (mut without, mut with_noop, mut with) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        without.push(ns_per_call(&mut plain).await);
        with_noop.push(ns_per_call(&mut noop).await);
        with.push(ns_per_call(&mut measured).await);
    }
    let (without, with_noop, with) = (median(without), median(with_noop), median(with));
    println!(
        "{{\"bench\":\"layer_overhead\",\"ns_per_request_without\":{without:.0},\
         \"ns_per_request_noop_layer\":{with_noop:.0},\"ns_per_request_with\":{with:.0},\
         \"ns_added\":{:.0},\"ns_added_by_any_axum_layer\":{:.0},\"ns_recording\":{:.0}}}",
        with - without,
        with_noop - without,
        with - with_noop
    );
}
