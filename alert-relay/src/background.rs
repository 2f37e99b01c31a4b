//! Every long-running loop of the relay, each until the stop signal: the scheduler, one
//! delivery worker per target (restarted as a set on reload), target healthchecks, the
//! heartbeat watch, retention, and reload on SIGHUP. Loops only read the clock, sleep, and call one use
//! case of the application layer; every decision is made there.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify};

use crate::app::{Clock, Relay, Step, Worker};
use crate::domain::{TargetName, Timestamp};
use crate::metrics::RelayMetrics;
use crate::sinks::{Health, Sink};

/// Starts every loop; they end when `stop` turns true.
pub fn spawn_all(
    relay: &Arc<Relay>,
    clock: &Arc<dyn Clock>,
    stop: &watch::Receiver<bool>,
) -> tokio::task::JoinSet<()> {
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(scheduler(
        Arc::clone(relay),
        Arc::clone(clock),
        stop.clone(),
    ));
    tasks.spawn(heartbeats(
        Arc::clone(relay),
        Arc::clone(clock),
        stop.clone(),
    ));
    tasks.spawn(deliveries(
        Arc::clone(relay),
        Arc::clone(clock),
        stop.clone(),
    ));
    tasks.spawn(handoffs(Arc::clone(relay), Arc::clone(clock), stop.clone()));
    tasks.spawn(retention(
        Arc::clone(relay),
        Arc::clone(clock),
        stop.clone(),
    ));
    tasks.spawn(reload_on_sighup(Arc::clone(relay), stop.clone()));
    tasks
}

/// Sleeps `wait`, or until `wake` or the stop signal; `false` when stopping.
async fn pause(wait: Duration, wake: &Notify, stop: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(wait) => true,
        _ = wake.notified() => true,
        _ = stop.changed() => false,
    }
}

fn until(at: Timestamp, now: Timestamp) -> Duration {
    Duration::from_millis(u64::try_from(at.0 - now.0).unwrap_or(0))
}

/// Fires due escalation steps, sleeping until the next is due (at most a second, which keeps
/// the gauges fresh).
async fn scheduler(relay: Arc<Relay>, clock: Arc<dyn Clock>, mut stop: watch::Receiver<bool>) {
    let wake = Arc::clone(&relay.wakers().scheduler);
    while !*stop.borrow() {
        let wait = match relay.fire_due(clock.now()).await {
            Ok(next) => next.map_or(Duration::from_secs(1), |at| {
                until(at, clock.now()).min(Duration::from_secs(1))
            }),
            Err(error) => {
                relay.metrics().store_error(&error);
                tracing::error!(%error, "cannot read due escalation steps; retrying in 1s");
                Duration::from_secs(1)
            }
        };
        if !pause(wait, &wake, &mut stop).await {
            return;
        }
    }
}

/// Tells the incoming person at each handoff: wakes at the next handoff (at most a minute
/// later, and whenever an override or a reload changes who is on call).
async fn handoffs(relay: Arc<Relay>, clock: Arc<dyn Clock>, mut stop: watch::Receiver<bool>) {
    let wake = Arc::clone(&relay.wakers().handoffs);
    while !*stop.borrow() {
        if let Err(error) = relay.announce_handoffs(clock.now()).await {
            tracing::error!(%error, "cannot record handoff notices; retrying in 10s");
        }
        let wait = match relay.next_handoff(clock.now()).await {
            Ok(Some(at)) => until(at, clock.now()).min(Duration::from_secs(60)),
            Ok(None) => Duration::from_secs(60),
            Err(_) => Duration::from_secs(10),
        };
        if !pause(wait, &wake, &mut stop).await {
            return;
        }
    }
}

/// How often closed incidents past `retention` are pruned; the first prune comes this long
/// after the start too (a restart loop does not prune in a loop).
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
const FIRST_PRUNE: Duration = Duration::from_secs(60);

/// Prunes closed incidents past `retention` hourly.
async fn retention(relay: Arc<Relay>, clock: Arc<dyn Clock>, mut stop: watch::Receiver<bool>) {
    let never = Notify::new();
    let mut wait = FIRST_PRUNE;
    while pause(wait, &never, &mut stop).await {
        wait = PRUNE_EVERY;
        if let Err(error) = relay.prune(clock.now()).await {
            relay.metrics().store_error(&error);
            tracing::error!(%error, "retention: cannot prune old incidents; trying again in an hour");
        }
    }
}

/// Checks the heartbeat policies each second, or when a heartbeat arrives.
async fn heartbeats(relay: Arc<Relay>, clock: Arc<dyn Clock>, mut stop: watch::Receiver<bool>) {
    while !*stop.borrow() {
        relay.check_heartbeats(clock.now()).await;
        if !pause(Duration::from_secs(1), relay.heartbeat_arrived(), &mut stop).await {
            return;
        }
    }
}

/// Runs one delivery worker per target of the current runtime, and its healthchecks; on
/// reload, lets them finish their attempt and starts the new set.
async fn deliveries(relay: Arc<Relay>, clock: Arc<dyn Clock>, mut stop: watch::Receiver<bool>) {
    let mut generation = relay.generation();
    loop {
        relay.forget_removed_targets(clock.now()).await;
        let runtime = relay.runtime();
        let (set_stop_tx, set_stop) = watch::channel(false);
        let mut workers = tokio::task::JoinSet::new();
        // Series of targets a reload removed must not linger.
        relay.metrics().target_healthy.reset();
        workers.spawn(target_health(
            runtime.sinks.clone(),
            runtime.config.delivery.healthcheck_interval,
            runtime.config.delivery.timeout,
            relay.metrics().clone(),
            set_stop.clone(),
        ));
        drop(runtime);
        for worker in relay.workers() {
            let wake = relay.wakers().register_delivery();
            workers.spawn(delivery(
                Arc::clone(&relay),
                worker,
                wake,
                Arc::clone(&clock),
                set_stop.clone(),
            ));
        }
        let stopping = tokio::select! {
            _ = stop.changed() => true,
            changed = generation.changed() => changed.is_err(),
        };
        let _ = set_stop_tx.send(true);
        while workers.join_next().await.is_some() {}
        relay.wakers().clear_delivery();
        if stopping {
            return;
        }
    }
}

/// Drains one target's outbox until `stop`; finishes the attempt in progress first.
async fn delivery(
    relay: Arc<Relay>,
    worker: Worker,
    wake: Arc<Notify>,
    clock: Arc<dyn Clock>,
    mut stop: watch::Receiver<bool>,
) {
    while !*stop.borrow() {
        let wait = match relay.deliver_next(&worker, clock.now()).await {
            Ok(Step::Delivered | Step::Retrying(_) | Step::DeadLettered) => continue,
            Ok(Step::Deferred(at)) => until(at, clock.now()),
            Ok(Step::Empty) => relay.idle_poll(),
            Err(error) => {
                relay.metrics().store_error(&error);
                tracing::error!(target = %worker.target, %error, "outbox unavailable; retrying in 1s");
                Duration::from_secs(1)
            }
        };
        if !pause(wait, &wake, &mut stop).await {
            return;
        }
    }
}

/// Checks every target at once (start or reload), then every `every`: sets
/// `relay_target_healthy` and logs the first result and each change, so that a wrong token or
/// URL shows before the first page needs it. Each check is cut after `limit`; none ever
/// blocks delivery.
async fn target_health(
    sinks: BTreeMap<TargetName, Arc<dyn Sink>>,
    every: Option<Duration>,
    limit: Duration,
    metrics: RelayMetrics,
    mut stop: watch::Receiver<bool>,
) {
    let mut known: BTreeMap<TargetName, Option<bool>> = BTreeMap::new();
    loop {
        let report = tokio::select! {
            report = crate::sinks::check_all(&sinks, limit) => report,
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

async fn reload_on_sighup(relay: Arc<Relay>, mut stop: watch::Receiver<bool>) {
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
