//! The relay's long-running tasks besides the scheduler, each until the stop signal: one
//! delivery worker per target (restarted as a set on reload), target healthchecks,
//! dead-lettering for targets a reload removed, and reload on SIGHUP.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::domain::{TargetName, Timestamp};
use crate::metrics::RelayMetrics;
use crate::runtime::Relay;
use crate::sinks::{Backoff, Health, Sink};
use crate::store;
use crate::worker::{self, Delivery};

/// Runs one delivery worker per target of the current runtime; on reload, lets them finish
/// their attempt and starts the new set.
pub async fn supervise_deliveries(relay: Arc<Relay>, mut stop: watch::Receiver<bool>) {
    let mut generation = relay.generation();
    loop {
        let runtime = relay.runtime();
        dead_letter_orphans(&relay, runtime.sinks.keys().cloned().collect()).await;
        let (gen_stop_tx, gen_stop_rx) = watch::channel(false);
        let mut workers = tokio::task::JoinSet::new();
        // Series of targets a reload removed must not linger.
        relay.metrics.target_healthy.reset();
        workers.spawn(watch_target_health(
            runtime.sinks.clone(),
            runtime.config.delivery.healthcheck_interval,
            relay.metrics.clone(),
            gen_stop_rx.clone(),
        ));
        let delivery = &runtime.config.delivery;
        for (target, sink) in &runtime.sinks {
            let worker = Delivery {
                store: relay.store.clone(),
                sink: Arc::clone(sink),
                target: target.clone(),
                templates: Arc::clone(&runtime.templates),
                backoff: Backoff::new(delivery.initial_backoff, delivery.max_backoff),
                timeout: delivery.timeout,
                give_up_after: delivery.give_up_after,
                metrics: relay.metrics.clone(),
            };
            workers.spawn(worker::run_delivery(
                worker,
                relay.wakers.register_delivery(),
                gen_stop_rx.clone(),
            ));
        }
        drop(runtime);
        let stopping = tokio::select! {
            _ = stop.changed() => true,
            changed = generation.changed() => changed.is_err(),
        };
        let _ = gen_stop_tx.send(true);
        while workers.join_next().await.is_some() {}
        relay.wakers.clear_delivery();
        if stopping {
            return;
        }
    }
}

/// Checks every target at once (start or reload), then every `every`: sets
/// `relay_target_healthy` and logs the first result and each change, so that a wrong token or
/// URL shows before the first page needs it. Never blocks delivery.
async fn watch_target_health(
    sinks: BTreeMap<TargetName, Arc<dyn Sink>>,
    every: Option<Duration>,
    metrics: RelayMetrics,
    mut stop: watch::Receiver<bool>,
) {
    let mut known: BTreeMap<TargetName, Option<bool>> = BTreeMap::new();
    loop {
        let report = tokio::select! {
            report = crate::sinks::check_all(&sinks) => report,
            _ = stop.changed() => return,
        };
        for (target, health) in report {
            let healthy = match &health {
                Health::Ok(_) => Some(true),
                Health::Failed(_) => Some(false),
                Health::Unchecked(_) => None,
            };
            if let Some(healthy) = healthy {
                metrics
                    .target_healthy
                    .with_label_values(&[target.as_str()])
                    .set(i64::from(healthy));
            }
            if known.insert(target.clone(), healthy) == Some(healthy) {
                continue;
            }
            match health {
                Health::Ok(detail) => tracing::info!(%target, %detail, "target reachable"),
                Health::Failed(reason) => tracing::warn!(
                    %target,
                    %reason,
                    "target check failed: notifications to it may not arrive"
                ),
                Health::Unchecked(reason) => {
                    tracing::debug!(%target, %reason, "target not checked")
                }
            }
        }
        let Some(every) = every else {
            return;
        };
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => return,
        }
    }
}

/// Dead-letters pending notifications of targets the configuration no longer has (at start
/// and after each reload), so that they neither wait forever nor count as a stuck outbox.
async fn dead_letter_orphans(relay: &Relay, known: Vec<TargetName>) {
    let orphans = relay
        .store
        .run(move |c| store::dead_letter_orphans(c, &known, Timestamp::now()))
        .await;
    match orphans {
        Ok(orphans) => {
            for (target, count) in orphans {
                relay
                    .metrics
                    .dead_letters
                    .with_label_values(&[target.as_str()])
                    .inc_by(count as u64);
                tracing::warn!(
                    %target,
                    count,
                    "pending notifications dead-lettered: the target is no longer configured"
                );
            }
        }
        // Not fatal: they stay pending and are tried again at the next reload or start.
        Err(error) => {
            tracing::error!(%error, "cannot dead-letter notifications of removed targets")
        }
    }
}

pub async fn reload_on_sighup(relay: Arc<Relay>, mut stop: watch::Receiver<bool>) {
    #[cfg(unix)]
    {
        let Ok(mut hangups) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            tracing::warn!("cannot listen for SIGHUP; reload with POST /-/reload");
            return;
        };
        loop {
            tokio::select! {
                _ = hangups.recv() => {}
                _ = stop.changed() => return,
            }
            let relay = Arc::clone(&relay);
            match tokio::task::spawn_blocking(move || relay.reload()).await {
                Ok(Ok(())) => tracing::info!("policy reloaded on SIGHUP"),
                Ok(Err(errors)) => {
                    tracing::error!(%errors, "policy reload rejected; the previous policy stays in force")
                }
                Err(error) => tracing::error!(%error, "reload task failed"),
            }
        }
    }
    #[cfg(not(unix))]
    let _ = (relay, stop.changed().await);
}
