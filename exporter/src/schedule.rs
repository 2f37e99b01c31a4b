//! The timer of the background loops (host sampling, gateway probes).

use std::time::Duration;

use tokio::sync::watch;
use tokio::time::{Interval, MissedTickBehavior};

/// Ticks at once and then every `interval` (a late tick is delayed, never bunched with the
/// next) until the stop channel changes.
pub(crate) struct Every {
    ticker: Interval,
    stop: watch::Receiver<bool>,
}

impl Every {
    pub(crate) fn new(interval: Duration, stop: watch::Receiver<bool>) -> Self {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Self { ticker, stop }
    }

    /// Waits for the next tick: true when it is time to work, false once asked to stop.
    pub(crate) async fn tick(&mut self) -> bool {
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
        let mut every = Every::new(Duration::from_secs(5), stop_rx);
        let start = tokio::time::Instant::now();
        assert!(every.tick().await);
        assert_eq!(start.elapsed(), Duration::ZERO);
        assert!(every.tick().await);
        assert_eq!(start.elapsed(), Duration::from_secs(5));
        stop_tx.send(true).expect("the loop holds the receiver");
        assert!(!every.tick().await);
    }
}
