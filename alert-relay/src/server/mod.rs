//! The HTTP transport: routes that authenticate (one layer, `auth`), parse at the boundary
//! ([`webhook`]), call one use case of the application layer and map its result to HTTP.
//! [`api`] renders the read side; [`pages`] are what a person opens in a browser (the
//! acknowledge link). `run` serves until shutdown with the background loops.
//!
//! Alertmanager retries 5xx only: a store failure is 503, input that can never succeed 4xx.

pub mod api;
mod auth;
pub mod calendar;
pub mod oncall;
pub mod pages;
pub mod runbooks;
pub mod webhook;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use tokio::net::TcpListener;

pub use crate::app::Relay;
use crate::app::{Clock, IngestError, SystemClock};
use crate::domain::Timestamp;
use crate::engine::{AckOutcome, IngestOutcome};
pub use auth::authorized;

type Shared = Arc<Relay>;

pub fn router(relay: Shared) -> Router {
    // The body limit is fixed at start; reloads do not change it.
    let limit = relay.runtime().config.server.max_body_bytes;
    let protected = Router::new()
        .route("/webhook", post(webhook_default))
        .route("/webhook/{policy}", post(webhook_named))
        .route("/api/v1/incidents", get(api::incidents))
        .route("/api/v1/incidents/{id}/ack", post(ack_api))
        .route("/api/v1/incidents/{id}/events", get(api::events))
        .route("/api/v1/dead-letters", get(api::dead_letters))
        .route("/api/v1/oncall", get(oncall::on_call))
        .route("/api/v1/calendars", get(calendar::list))
        .route("/api/v1/overrides", get(oncall::list).post(oncall::create))
        .route(
            "/api/v1/overrides/{id}",
            axum::routing::delete(oncall::remove),
        )
        .route("/-/reload", post(reload))
        .route_layer(axum::middleware::from_fn_with_state(
            Arc::clone(&relay),
            auth::require,
        ));
    Router::new()
        .merge(protected)
        .merge(pages::router())
        .merge(crate::console::router(&relay))
        .route("/calendar/{feed}", get(calendar::feed))
        .route("/health", get(|| async { "ok\n" }))
        .route("/ready", get(ready))
        .route(
            "/metrics",
            get(exporter::layer::metrics_handler(
                relay.metrics().registry.clone(),
            )),
        )
        .layer(DefaultBodyLimit::max(limit))
        .with_state(relay)
}

/// A JSON error answer; the detail is logged by the caller, never a secret.
fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({"error": message.into()}))).into_response()
}

fn ok(body: serde_json::Value) -> Response {
    (StatusCode::OK, Json(body)).into_response()
}

async fn webhook_default(
    State(relay): State<Shared>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    intake(relay, None, body).await
}

async fn webhook_named(
    State(relay): State<Shared>,
    UrlPath(policy): UrlPath<String>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    intake(relay, Some(policy), body).await
}

async fn intake(
    relay: Shared,
    policy: Option<String>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let timer = relay.metrics().webhook_seconds.start_timer();
    let count = |outcome: &str| relay.metrics().webhooks.with_label_values(&[outcome]).inc();
    let body = match body {
        Ok(body) => body,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            count("too_large");
            let limit = relay.runtime().config.server.max_body_bytes;
            tracing::warn!(limit, "webhook refused: body too large");
            return error(StatusCode::PAYLOAD_TOO_LARGE, format!("body larger than {limit} bytes (server.max_body_bytes); lower max_alerts in Alertmanager"));
        }
        Err(rejection) => {
            count("bad_request");
            return error(StatusCode::BAD_REQUEST, rejection.body_text());
        }
    };
    let group = match webhook::parse(&body) {
        Ok(group) => group,
        Err(message) => {
            count("bad_request");
            tracing::warn!(error = %message, "webhook refused");
            return error(StatusCode::BAD_REQUEST, message);
        }
    };
    let key = group.group_key.clone();
    let result = relay
        .ingest(policy.as_deref(), group, Timestamp::now())
        .await;
    timer.observe_duration();
    match result {
        Ok(ingested) => {
            let Some(outcome) = ingested.outcome else {
                count("accepted");
                tracing::info!(group = %key, "no policy matches; nothing to escalate");
                return ok(json!({"status": "no_policy"}));
            };
            let policy = ingested.policy.map(|p| p.0).unwrap_or_default();
            let fresh = matches!(outcome, IngestOutcome::Started | IngestOutcome::Resolved);
            count(if fresh { "accepted" } else { "duplicate" });
            if fresh {
                tracing::info!(%policy, group = %key, ?outcome, queued = ingested.queued, "webhook stored");
            } else {
                tracing::debug!(%policy, group = %key, ?outcome, "webhook stored");
            }
            let status = format!("{outcome:?}").to_ascii_lowercase();
            ok(json!({"status": status}))
        }
        Err(IngestError::UnknownPolicy { name, known }) => {
            count("bad_request");
            error(
                StatusCode::NOT_FOUND,
                format!("no policy named `{name}` (defined: {known})"),
            )
        }
        Err(IngestError::Store(e)) => {
            // 5xx: Alertmanager keeps the notification and retries.
            count("store_error");
            tracing::error!(error = %e, "webhook not stored; Alertmanager will retry");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "could not store the webhook; retry later",
            )
        }
    }
}

async fn ack_api(
    State(relay): State<Shared>,
    UrlPath(id): UrlPath<i64>,
    headers: HeaderMap,
) -> Response {
    let by = headers
        .get("x-acknowledged-by")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("api")
        .to_owned();
    // The relay's own marks of where an acknowledgement came from are not for callers to
    // claim: an API call naming "alice (console)" would be counted as alice's in the console.
    if by.ends_with(crate::app::load::CONSOLE_SUFFIX) || by.trim() == crate::app::load::LINK_ACTOR {
        return error(
            StatusCode::BAD_REQUEST,
            "X-Acknowledged-By: this form is how the relay marks acknowledgements in the console \
             and through push links; name the person (alice, or alice@example.org)",
        );
    }
    match relay.acknowledge(id, by.clone(), Timestamp::now()).await {
        Ok(outcome) => acknowledged(id, &by, outcome),
        Err(e) => not_stored(&e),
    }
}

fn not_stored(e: &crate::store::StoreError) -> Response {
    tracing::error!(error = %e, "acknowledge not stored");
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "could not store the acknowledgement; retry",
    )
}

fn acknowledged(id: i64, by: &str, outcome: AckOutcome) -> Response {
    match outcome {
        AckOutcome::Acknowledged => {
            tracing::info!(incident = id, %by, "incident acknowledged; escalation stopped");
            ok(json!({"status": "acknowledged", "incident": id}))
        }
        AckOutcome::NotEscalating => ok(json!({"status": "not_escalating", "incident": id})),
        AckOutcome::UnknownIncident => error(StatusCode::NOT_FOUND, format!("no incident {id}")),
        AckOutcome::Replayed => {
            tracing::warn!(incident = id, "acknowledge link replayed; refused");
            error(
                StatusCode::CONFLICT,
                "this acknowledge link was used already",
            )
        }
    }
}

async fn reload(State(relay): State<Shared>) -> Response {
    let outcome = tokio::task::spawn_blocking({
        let relay = Arc::clone(&relay);
        move || relay.reload()
    })
    .await
    .unwrap_or_else(|e| Err(format!("reload task failed: {e}")));
    match outcome {
        Ok(()) => {
            tracing::info!("policy reloaded");
            ok(json!({"status": "reloaded"}))
        }
        Err(errors) => {
            tracing::error!(%errors, "policy reload rejected; the previous policy stays in force");
            error(StatusCode::BAD_REQUEST, errors)
        }
    }
}

async fn ready(State(relay): State<Shared>) -> Response {
    match relay.ready().await {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "not ready: store not writable");
            (StatusCode::SERVICE_UNAVAILABLE, "store not writable\n").into_response()
        }
    }
}

/// What the HTTP side serves besides the relay's own routes.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `docs/runbooks/`, served at `/runbooks/<AlertName>`.
    pub runbooks: Option<std::path::PathBuf>,
}

/// Serves `relay` (owned, or shared with a caller that drives its use cases too) until
/// `shutdown`, then lets deliveries in progress finish and returns.
pub async fn run(
    listener: TcpListener,
    relay: impl Into<Arc<Relay>>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    run_with(listener, relay, Options::default(), shutdown).await
}

/// [`run`] with [`Options`].
pub async fn run_with(
    listener: TcpListener,
    relay: impl Into<Arc<Relay>>,
    options: Options,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let relay: Arc<Relay> = relay.into();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let runtime = relay.runtime();
    let mut tasks = crate::background::spawn_all(&relay, &clock, &stop_rx);
    for (target, why) in &runtime.config.disabled_targets {
        tracing::info!(%target, reason = %why, "target switched off");
    }
    tracing::info!(
        address = %listener.local_addr()?,
        targets = runtime.sinks.len(),
        policies = runtime.config.policies.len(),
        "alert-relay listening"
    );
    let timeout = runtime.config.delivery.timeout;
    drop(runtime);
    // Header, body and idle timeouts and a connection limit that sheds half-sent requests
    // first: slow or stuck clients cannot starve Alertmanager's webhooks.
    let mut app = router(Arc::clone(&relay));
    if let Some(dir) = options.runbooks {
        tracing::info!(dir = %dir.display(), "serving runbooks at /runbooks/<AlertName>");
        app = app.merge(runbooks::router(dir));
    }
    exporter::serve::serve(listener, app, exporter::serve::Limits::default(), shutdown).await?;
    let _ = stop_tx.send(true);
    let deadline = timeout + Duration::from_secs(1);
    if tokio::time::timeout(deadline, async {
        while tasks.join_next().await.is_some() {}
    })
    .await
    .is_err()
    {
        tracing::warn!(
            "deliveries still running at shutdown were cut; they will be retried after restart"
        );
    }
    tracing::info!("alert-relay stopped");
    Ok(())
}
