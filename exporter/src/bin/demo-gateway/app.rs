//! The demo gateway's routes and run-time state (faults and the served build).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use exporter::layer::{metrics_handler, HttpMetricsLayer};
use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Color {
    Blue,
    Green,
}

impl Color {
    fn as_str(self) -> &'static str {
        match self {
            Self::Blue => "blue",
            Self::Green => "green",
        }
    }
}

/// Injected faults; `POST /admin/faults` merges fields, `DELETE /admin/faults` clears.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Faults {
    /// Share (0-1) of `/api/orders` requests answered 500.
    #[serde(default)]
    pub error_ratio: f64,
    /// Latency added to `/api/orders` requests.
    #[serde(default)]
    pub latency_ms: u64,
    /// A health check reported as failing (the gateway is then `degraded`).
    #[serde(default)]
    pub failing_check: Option<String>,
    /// Answer `/health` with 503 `unhealthy`.
    #[serde(default)]
    pub unhealthy: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FaultsPatch {
    error_ratio: Option<f64>,
    latency_ms: Option<u64>,
    failing_check: Option<String>,
    unhealthy: Option<bool>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Build {
    pub version: String,
    pub git_commit: String,
    pub build_date: String,
    pub color: Color,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BuildPatch {
    version: String,
    commit: Option<String>,
    color: Option<Color>,
}

#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    faults: RwLock<Faults>,
    build: RwLock<Build>,
    requests: AtomicU64,
}

/// A stable fake commit per version, so that going back to a version is recognisable.
fn commit_of(version: &str) -> String {
    let hash = version.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    format!("{hash:016x}")[..12].to_owned()
}

impl AppState {
    pub fn new(version: &str, color: Color) -> Self {
        Self {
            inner: Arc::new(Inner {
                faults: RwLock::default(),
                build: RwLock::new(Build {
                    version: version.to_owned(),
                    git_commit: commit_of(version),
                    build_date: "2026-11-01T00:00:00Z".into(),
                    color,
                }),
                requests: AtomicU64::new(0),
            }),
        }
    }

    fn faults(&self) -> Faults {
        self.inner
            .faults
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn build(&self) -> Build {
        self.inner
            .build
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

pub fn router(state: AppState, with_metrics: bool) -> anyhow::Result<Router> {
    let registry = prometheus::Registry::new();
    let app = Router::new()
        .route("/api/orders/{id}", get(order))
        .route("/api/cheap", get(|| async { "ok" }))
        .route("/health", get(health))
        .route("/version", get(version))
        .route("/admin/faults", post(set_faults).delete(clear_faults))
        .route("/admin/version", post(set_version))
        .route("/admin/state", get(admin_state))
        .with_state(state);
    if !with_metrics {
        return Ok(app);
    }
    let layer = HttpMetricsLayer::new(&registry)?;
    Ok(app
        .route("/metrics", get(metrics_handler(registry)))
        .layer(layer))
}

async fn order(State(state): State<AppState>, Path(id): Path<u64>) -> Response {
    let faults = state.faults();
    if faults.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(faults.latency_ms)).await;
    }
    // Deterministic error spread: exactly `error_ratio` of the requests fail.
    let n = state.inner.requests.fetch_add(1, Ordering::Relaxed) as f64;
    let ratio = faults.error_ratio.clamp(0.0, 1.0);
    if ((n + 1.0) * ratio).floor() > (n * ratio).floor() {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({"error": "injected fault"})),
        )
            .into_response();
    }
    Json(json!({"id": id, "status": "shipped", "version": state.build().version})).into_response()
}

async fn health(State(state): State<AppState>) -> Response {
    let faults = state.faults();
    let build = state.build();
    let mut checks = serde_json::Map::new();
    for name in ["database", "cache", "payments"] {
        let failing = faults.failing_check.as_deref() == Some(name);
        let status = if failing { "fail" } else { "pass" };
        checks.insert(name.into(), json!({"status": status}));
    }
    if let Some(other) = faults
        .failing_check
        .as_deref()
        .filter(|c| !checks.contains_key(*c))
    {
        checks.insert(other.into(), json!({"status": "fail"}));
    }
    let (code, status) = if faults.unhealthy {
        (StatusCode::SERVICE_UNAVAILABLE, "unhealthy")
    } else if faults.failing_check.is_some() {
        (StatusCode::OK, "degraded")
    } else {
        (StatusCode::OK, "healthy")
    };
    (
        code,
        Json(json!({"status": status, "version": build.version, "checks": checks})),
    )
        .into_response()
}

async fn version(State(state): State<AppState>) -> Response {
    let build = state.build();
    let mut headers = HeaderMap::new();
    headers.insert(
        "x-deployment-color",
        HeaderValue::from_static(build.color.as_str()),
    );
    (headers, Json(build)).into_response()
}

async fn set_faults(State(state): State<AppState>, Json(patch): Json<FaultsPatch>) -> Response {
    if patch.error_ratio.is_some_and(|r| !(0.0..=1.0).contains(&r)) {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "error_ratio must be between 0 and 1"})),
        )
            .into_response();
    }
    let mut faults = state
        .inner
        .faults
        .write()
        .unwrap_or_else(|e| e.into_inner());
    if let Some(ratio) = patch.error_ratio {
        faults.error_ratio = ratio;
    }
    if let Some(latency) = patch.latency_ms {
        faults.latency_ms = latency;
    }
    if let Some(check) = patch.failing_check {
        faults.failing_check = Some(check).filter(|c| !c.is_empty());
    }
    if let Some(unhealthy) = patch.unhealthy {
        faults.unhealthy = unhealthy;
    }
    tracing::warn!(faults = ?*faults, "faults changed");
    Json(faults.clone()).into_response()
}

async fn clear_faults(State(state): State<AppState>) -> Response {
    *state
        .inner
        .faults
        .write()
        .unwrap_or_else(|e| e.into_inner()) = Faults::default();
    tracing::info!("faults cleared");
    Json(Faults::default()).into_response()
}

async fn set_version(State(state): State<AppState>, Json(patch): Json<BuildPatch>) -> Response {
    if patch.version.trim().is_empty() {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "version must not be empty"})),
        )
            .into_response();
    }
    let mut build = state.inner.build.write().unwrap_or_else(|e| e.into_inner());
    build.git_commit = patch.commit.unwrap_or_else(|| commit_of(&patch.version));
    build.version = patch.version;
    if let Some(color) = patch.color {
        build.color = color;
    } else {
        // A deployment in a blue-green setup goes to the idle colour.
        build.color = match build.color {
            Color::Blue => Color::Green,
            Color::Green => Color::Blue,
        };
    }
    tracing::warn!(version = %build.version, color = build.color.as_str(), "served version changed");
    Json(build.clone()).into_response()
}

async fn admin_state(State(state): State<AppState>) -> Response {
    Json(json!({"faults": state.faults(), "build": state.build()})).into_response()
}
