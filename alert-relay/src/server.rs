//! The relay's HTTP side and its `run` entry point: webhook intake, acknowledge links and
//! API (the read side is in [`crate::api`]), `/health`, `/ready`, `/metrics`; starts the
//! scheduler and delivery workers.

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

use crate::ack::AckError;
use crate::background;
use crate::domain::{AlertStatus, Timestamp};
use crate::escalation::Event;
pub use crate::runtime::Relay;
use crate::store::{self, AckOutcome, IngestOutcome};
use crate::worker;

type Shared = Arc<Relay>;

pub fn router(relay: Shared) -> Router {
    // The body limit is fixed at start; reloads do not change it.
    let limit = relay.runtime().config.server.max_body_bytes;
    Router::new()
        .route("/webhook", post(webhook_default))
        .route("/webhook/{policy}", post(webhook_named))
        .route("/ack/{token}", post(ack_link))
        .route("/api/v1/incidents", get(crate::api::incidents))
        .route("/api/v1/incidents/{id}/ack", post(ack_api))
        .route("/api/v1/dead-letters", get(crate::api::dead_letters))
        .route("/-/reload", post(reload))
        .route("/health", get(|| async { "ok\n" }))
        .route("/ready", get(ready))
        .route(
            "/metrics",
            get(exporter::layer::metrics_handler(
                relay.metrics.registry.clone(),
            )),
        )
        .layer(DefaultBodyLimit::max(limit))
        .with_state(relay)
}

/// A JSON error answer; the detail is logged by the caller, never a secret.
fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({"error": message.into()}))).into_response()
}

async fn webhook_default(
    State(relay): State<Shared>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    intake(relay, None, headers, body).await
}

async fn webhook_named(
    State(relay): State<Shared>,
    UrlPath(policy): UrlPath<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    intake(relay, Some(policy), headers, body).await
}

async fn intake(
    relay: Shared,
    policy: Option<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let timer = relay.metrics.webhook_seconds.start_timer();
    let count = |outcome: &str| relay.metrics.webhooks.with_label_values(&[outcome]).inc();
    let runtime = relay.runtime();
    if !crate::intake::authorized(&runtime.config.server.webhook_auth, &headers) {
        count("unauthorized");
        tracing::warn!("webhook refused: missing or wrong credentials");
        let mut response = error(StatusCode::UNAUTHORIZED, "missing or wrong credentials");
        response.headers_mut().insert(
            http::header::WWW_AUTHENTICATE,
            http::HeaderValue::from_static("Bearer"),
        );
        return response;
    }
    let body = match body {
        Ok(body) => body,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            count("too_large");
            let limit = runtime.config.server.max_body_bytes;
            tracing::warn!(limit, "webhook refused: body too large");
            return error(StatusCode::PAYLOAD_TOO_LARGE, format!("body larger than {limit} bytes (server.max_body_bytes); lower max_alerts in Alertmanager"));
        }
        Err(rejection) => {
            count("bad_request");
            return error(StatusCode::BAD_REQUEST, rejection.body_text());
        }
    };
    let group = match crate::intake::parse(&body) {
        Ok(group) => group,
        Err(message) => {
            count("bad_request");
            tracing::warn!(error = %message, "webhook refused");
            return error(StatusCode::BAD_REQUEST, message);
        }
    };
    let chosen = match &policy {
        Some(name) => match runtime.config.policy_named(name) {
            Some(p) => p,
            None => {
                count("bad_request");
                let known: Vec<&str> = runtime
                    .config
                    .policies
                    .iter()
                    .map(|p| p.name.as_str())
                    .collect();
                return error(
                    StatusCode::NOT_FOUND,
                    format!("no policy named `{name}` (defined: {})", known.join(", ")),
                );
            }
        },
        None => match runtime.config.policy_for(group.match_labels()) {
            Some(p) => p,
            None => {
                count("accepted");
                tracing::info!(group = %group.group_key, "no policy matches; nothing to escalate");
                return (StatusCode::OK, Json(json!({"status": "no_policy"}))).into_response();
            }
        },
    };
    if chosen.heartbeat_missing_after.is_some() && group.status == AlertStatus::Firing {
        relay.heartbeats.seen(&chosen.name, &group);
        relay
            .metrics
            .heartbeat_last_seen
            .with_label_values(&[chosen.name.as_str()])
            .set(Timestamp::now().0 as f64 / 1000.0);
    }
    let plan = chosen.plan.clone();
    let composer: Arc<dyn crate::store::Composer + Send + Sync> = runtime.composer.clone();
    let now = Timestamp::now();
    let key = group.group_key.clone();
    let result = relay.writer.ingest(plan, group, composer, now).await;
    timer.observe_duration();
    match result {
        Ok((outcome, effects)) => {
            relay.metrics.record_effects(&effects);
            let label = match outcome {
                IngestOutcome::Started | IngestOutcome::Resolved => "accepted",
                IngestOutcome::Refreshed | IngestOutcome::Ignored => "duplicate",
            };
            count(label);
            if effects.queued > 0 || outcome == IngestOutcome::Started {
                relay.wakers.wake_all();
            }
            if matches!(outcome, IngestOutcome::Started | IngestOutcome::Resolved) {
                tracing::info!(policy = %chosen.name, group = %key, ?outcome, queued = effects.queued, "webhook stored");
            } else {
                tracing::debug!(policy = %chosen.name, group = %key, ?outcome, "webhook stored");
            }
            let status = format!("{outcome:?}").to_ascii_lowercase();
            (StatusCode::OK, Json(json!({"status": status}))).into_response()
        }
        Err(e) => {
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

async fn ack_link(State(relay): State<Shared>, UrlPath(token): UrlPath<String>) -> Response {
    let now = Timestamp::now();
    let claim = match relay.runtime().composer.key.verify(&token, now) {
        Ok(claim) => claim,
        Err(e) => {
            tracing::warn!(error = %e, "acknowledge refused");
            let status = if e == AckError::Expired {
                StatusCode::GONE
            } else {
                StatusCode::FORBIDDEN
            };
            return error(status, e.to_string());
        }
    };
    acknowledge(
        relay,
        claim.incident_id,
        Some(claim.nonce),
        "ack link".into(),
    )
    .await
}

async fn ack_api(
    State(relay): State<Shared>,
    UrlPath(id): UrlPath<i64>,
    headers: HeaderMap,
) -> Response {
    if !crate::intake::authorized(&relay.runtime().config.server.webhook_auth, &headers) {
        return error(StatusCode::UNAUTHORIZED, "missing or wrong credentials");
    }
    let by = headers
        .get("x-acknowledged-by")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("api")
        .to_owned();
    acknowledge(relay, id, None, by).await
}

async fn acknowledge(relay: Shared, id: i64, nonce: Option<String>, by: String) -> Response {
    let composer = Arc::clone(&relay.runtime().composer);
    let now = Timestamp::now();
    let who = by.clone();
    let result = relay
        .store
        .run(move |conn| {
            store::stop(
                conn,
                id,
                Event::Acknowledged { by: who },
                nonce.as_deref(),
                composer.as_ref(),
                now,
            )
        })
        .await;
    match result {
        Ok((AckOutcome::Acknowledged, effects)) => {
            relay.metrics.record_effects(&effects);
            relay.wakers.wake_all();
            tracing::info!(incident = id, %by, "incident acknowledged; escalation stopped");
            (
                StatusCode::OK,
                Json(json!({"status": "acknowledged", "incident": id})),
            )
                .into_response()
        }
        Ok((AckOutcome::NotEscalating, _)) => (
            StatusCode::OK,
            Json(json!({"status": "not_escalating", "incident": id})),
        )
            .into_response(),
        Ok((AckOutcome::UnknownIncident, _)) => {
            error(StatusCode::NOT_FOUND, format!("no incident {id}"))
        }
        Ok((AckOutcome::Replayed, _)) => {
            tracing::warn!(incident = id, "acknowledge link replayed; refused");
            error(
                StatusCode::CONFLICT,
                "this acknowledge link was used already",
            )
        }
        Err(e) => {
            tracing::error!(error = %e, incident = id, "acknowledge not stored");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "could not store the acknowledgement; retry",
            )
        }
    }
}

async fn reload(State(relay): State<Shared>, headers: HeaderMap) -> Response {
    if !crate::intake::authorized(&relay.runtime().config.server.webhook_auth, &headers) {
        return error(StatusCode::UNAUTHORIZED, "missing or wrong credentials");
    }
    let outcome = tokio::task::spawn_blocking({
        let relay = Arc::clone(&relay);
        move || relay.reload()
    })
    .await
    .unwrap_or_else(|e| Err(format!("reload task failed: {e}")));
    match outcome {
        Ok(()) => {
            tracing::info!("policy reloaded");
            (StatusCode::OK, Json(json!({"status": "reloaded"}))).into_response()
        }
        Err(errors) => {
            tracing::error!(%errors, "policy reload rejected; the previous policy stays in force");
            error(StatusCode::BAD_REQUEST, errors)
        }
    }
}

async fn ready(State(relay): State<Shared>) -> Response {
    match relay.store.writable().await {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "not ready: store not writable");
            (StatusCode::SERVICE_UNAVAILABLE, "store not writable\n").into_response()
        }
    }
}

/// Serves until `shutdown`, then lets deliveries in progress finish and returns. Reloads the
/// policy on SIGHUP.
pub async fn run(
    listener: TcpListener,
    relay: Relay,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let relay = Arc::new(relay);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let runtime = relay.runtime();
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(worker::run_scheduler(Arc::clone(&relay), stop_rx.clone()));
    tasks.spawn(crate::heartbeat::run_watch(
        Arc::clone(&relay),
        stop_rx.clone(),
    ));
    tasks.spawn(background::supervise_deliveries(
        Arc::clone(&relay),
        stop_rx.clone(),
    ));
    tasks.spawn(background::reload_on_sighup(
        Arc::clone(&relay),
        stop_rx.clone(),
    ));
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
    axum::serve(listener, router(Arc::clone(&relay)))
        .with_graceful_shutdown(shutdown)
        .await?;
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
