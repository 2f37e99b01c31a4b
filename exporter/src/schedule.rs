//! The timer of the background loops (host sampling, gateway probes).

use std::time::Duration;

use tokio::sync::{oneshot, watch};
use tokio::time::{Interval, MissedTickBehavior};

/// Ticks at once and then every `interval` (a late tick is delayed, never bunched with the
/// next) until the stop channel changes. Signals `first` once the first round of work is done
/// (when the loop asks for its second tick), so that readiness means data.
pub(crate) struct Every {
    ticker: Interval,
    stop: watch::Receiver<bool>,
    first: Option<oneshot::Sender<()>>,
    rounds: u64,
}

impl Every {
    pub(crate) fn new(
        interval: Duration,
        stop: watch::Receiver<bool>,
        first: oneshot::Sender<()>,
    ) -> Self {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Self {
            ticker,
            stop,
            first: Some(first),
            rounds: 0,
        }
    }

    /// Waits for the next tick: true when it is time to work, false once asked to stop.
    pub(crate) async fn tick(&mut self) -> bool {
        if self.rounds > 0 {
            if let Some(first) = self.first.take() {
                // Nobody waiting for readiness is not an error.
                let _ = first.send(());
            }
        }
        self.rounds += 1;
        tokio::select! {
            _ = self.ticker.tick() => true,
            _ = self.stop.changed() => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn ticks_at_once_then_every_interval_and_ends_on_stop() {
        let (stop_tx, stop_rx) = watch::channel(false);
        let (first_tx, mut first_rx) = oneshot::channel();
        let mut every = Every::new(Duration::from_secs(5), stop_rx, first_tx);
        let start = tokio::time::Instant::now();
        assert!(every.tick().await);
        assert_eq!(start.elapsed(), Duration::ZERO);
        assert!(
            first_rx.try_recv().is_err(),
            "the first round is still running"
        );
        assert!(every.tick().await);
        assert_eq!(start.elapsed(), Duration::from_secs(5));
        assert!(first_rx.try_recv().is_ok(), "the first round is done");
        stop_tx.send(true).expect("the loop holds the receiver");
        assert!(!every.tick().await);
    }
}
