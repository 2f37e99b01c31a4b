//! `GET /api/cheap` behind axum-prometheus's `PrometheusMetricLayer`, `/metrics` exposed.

use axum::routing::get;
use axum::Router;
use axum_prometheus::PrometheusMetricLayer;

#[tokio::main]
async fn main() {
    let listen = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:18081".into());
    let (layer, handle) = PrometheusMetricLayer::pair();
    let app = Router::new()
        .route("/api/cheap", get(|| async { "ok" }))
        .route("/metrics", get(move || async move { handle.render() }))
        .layer(layer);
    let listener = tokio::net::TcpListener::bind(&listen).await.expect("bind");
    axum::serve(listener, app).await.expect("serve");
}
