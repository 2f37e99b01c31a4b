//! One connection's clock: where it is in its request cycle, the read deadline that allows, and
//! whether it may be shed when every slot is taken. Pure: times are arguments.

use std::time::Duration;

use tokio::time::Instant;

/// The read bounds of [`super::Limits`] that the clock applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Timeouts {
    pub(super) header: Duration,
    pub(super) request: Duration,
    pub(super) idle: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for a request head. `since` is the accept, or the end of the previous response;
    /// `first_byte` is when the next head began to arrive on a kept-alive connection.
    AwaitingHead {
        since: Instant,
        first_byte: Option<Instant>,
    },
    /// The head is in and the body is being read; the request began at `started`.
    ReadingBody { started: Instant },
    /// The body is read (or was never wanted): the handler runs, the response is written.
    /// Nothing is read, so nothing is bounded here.
    Responding,
}

/// Which connections go first when every slot is taken (the lower, the sooner).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Shed {
    /// Has not yet sent one complete request head: a half-sent request or a silent client.
    NeverSentAHead,
    /// Between two requests of a kept-alive connection: closing it costs its client a reconnect.
    IdleKeepAlive,
}

/// What a connection is waiting for, in log lines about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Waiting {
    FirstHead,
    NextRequest,
    Head,
    Body,
    Response,
}

impl Waiting {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Self::FirstHead => "the first request head",
            Self::NextRequest => "the next request",
            Self::Head => "a request head",
            Self::Body => "a request body",
            Self::Response => "the handler",
        }
    }
}

/// The clock of one connection.
#[derive(Debug, Clone)]
pub(super) struct ConnClock {
    timeouts: Timeouts,
    phase: Phase,
    /// Request heads received so far.
    requests: u64,
}

impl ConnClock {
    /// A connection accepted at `now`: it has `header` to send its first head.
    pub(super) fn new(timeouts: Timeouts, now: Instant) -> Self {
        Self {
            timeouts,
            phase: Phase::AwaitingHead {
                since: now,
                first_byte: None,
            },
            requests: 0,
        }
    }

    /// Bytes arrived. True when that moved the deadline: the first byte of the next request on
    /// a kept-alive connection ends its idle time and starts its header time.
    pub(super) fn on_bytes(&mut self, now: Instant) -> bool {
        match &mut self.phase {
            Phase::AwaitingHead {
                first_byte: first @ None,
                ..
            } if self.requests > 0 => {
                *first = Some(now);
                true
            }
            _ => false,
        }
    }

    /// A request head was parsed at `now`; `empty_body` when no body follows. A connection's
    /// first request began at its accept, a later one with its first byte.
    pub(super) fn on_head(&mut self, now: Instant, empty_body: bool) {
        let started = match self.phase {
            Phase::AwaitingHead { since, first_byte } if self.requests > 0 => {
                first_byte.unwrap_or(since)
            }
            Phase::AwaitingHead { since, .. } => since,
            Phase::ReadingBody { .. } | Phase::Responding => now,
        };
        self.requests += 1;
        self.phase = if empty_body {
            Phase::Responding
        } else {
            Phase::ReadingBody { started }
        };
    }

    /// The request body was read to its end, or dropped unread. True when the phase changed.
    pub(super) fn on_body_end(&mut self) -> bool {
        if let Phase::ReadingBody { .. } = self.phase {
            self.phase = Phase::Responding;
            true
        } else {
            false
        }
    }

    /// The response was written at `now`; the connection waits for its next request.
    pub(super) fn on_response_end(&mut self, now: Instant) {
        self.phase = Phase::AwaitingHead {
            since: now,
            first_byte: None,
        };
    }

    /// When the connection is to be cut unless it moves on; `None` while the handler runs.
    pub(super) fn deadline(&self) -> Option<Instant> {
        let Timeouts {
            header,
            request,
            idle,
        } = self.timeouts;
        match self.phase {
            Phase::AwaitingHead { since, .. } if self.requests == 0 => Some(since + header),
            Phase::AwaitingHead {
                first_byte: Some(first),
                ..
            } => Some(first + header),
            Phase::AwaitingHead { since, .. } => Some(since + idle),
            Phase::ReadingBody { started } => Some(started + request),
            Phase::Responding => None,
        }
    }

    /// Whether the deadline has passed at `now`.
    pub(super) fn expired(&self, now: Instant) -> bool {
        self.deadline().is_some_and(|deadline| deadline <= now)
    }

    /// Whether the connection may be closed to make room, and how readily; `None` while it is
    /// in a request.
    pub(super) fn shed(&self) -> Option<Shed> {
        match self.phase {
            Phase::AwaitingHead { .. } if self.requests == 0 => Some(Shed::NeverSentAHead),
            Phase::AwaitingHead { .. } => Some(Shed::IdleKeepAlive),
            Phase::ReadingBody { .. } | Phase::Responding => None,
        }
    }

    /// True from a request's head until its response is written: graceful shutdown lets it
    /// finish; any other connection is closed at once.
    pub(super) fn in_request(&self) -> bool {
        self.shed().is_none()
    }

    pub(super) fn waiting(&self) -> Waiting {
        match self.phase {
            Phase::AwaitingHead { .. } if self.requests == 0 => Waiting::FirstHead,
            Phase::AwaitingHead {
                first_byte: None, ..
            } => Waiting::NextRequest,
            Phase::AwaitingHead { .. } => Waiting::Head,
            Phase::ReadingBody { .. } => Waiting::Body,
            Phase::Responding => Waiting::Response,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUTS: Timeouts = Timeouts {
        header: Duration::from_secs(10),
        request: Duration::from_secs(30),
        idle: Duration::from_secs(60),
    };

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn a_new_connection_has_the_header_timeout_from_its_accept_whatever_it_sends() {
        let t0 = Instant::now();
        let mut clock = ConnClock::new(TIMEOUTS, t0);
        assert_eq!(clock.deadline(), Some(t0 + secs(10)));
        assert!(!clock.on_bytes(t0 + secs(9)), "bytes buy no time");
        assert_eq!(clock.deadline(), Some(t0 + secs(10)));
        assert!(!clock.expired(t0 + secs(10) - Duration::from_millis(1)));
        assert!(clock.expired(t0 + secs(10)));
        assert_eq!(clock.shed(), Some(Shed::NeverSentAHead));
    }

    #[test]
    fn a_body_must_arrive_within_the_request_timeout_counted_from_the_accept() {
        let t0 = Instant::now();
        let mut clock = ConnClock::new(TIMEOUTS, t0);
        clock.on_head(t0 + secs(2), false);
        assert_eq!(clock.deadline(), Some(t0 + secs(30)));
        assert_eq!(clock.shed(), None, "a request in flight is never shed");
        assert!(clock.on_body_end());
        assert_eq!(clock.deadline(), None, "the handler is not bounded here");
        assert!(clock.in_request());
    }

    #[test]
    fn a_request_without_body_goes_straight_to_its_handler() {
        let t0 = Instant::now();
        let mut clock = ConnClock::new(TIMEOUTS, t0);
        clock.on_head(t0, true);
        assert_eq!(clock.deadline(), None);
        assert!(!clock.on_body_end());
        assert_eq!(clock.waiting(), Waiting::Response);
    }

    #[test]
    fn a_kept_alive_connection_idles_then_has_the_header_timeout_from_its_first_byte() {
        let t0 = Instant::now();
        let mut clock = ConnClock::new(TIMEOUTS, t0);
        clock.on_head(t0, true);
        clock.on_response_end(t0 + secs(1));
        assert_eq!(clock.deadline(), Some(t0 + secs(61)));
        assert_eq!(clock.shed(), Some(Shed::IdleKeepAlive));
        assert_eq!(clock.waiting(), Waiting::NextRequest);

        assert!(
            clock.on_bytes(t0 + secs(5)),
            "the first byte moves the deadline"
        );
        assert!(!clock.on_bytes(t0 + secs(6)), "later ones do not");
        assert_eq!(clock.deadline(), Some(t0 + secs(15)));
        clock.on_head(t0 + secs(7), false);
        assert_eq!(
            clock.deadline(),
            Some(t0 + secs(35)),
            "the second request began with its first byte"
        );
    }

    #[test]
    fn half_sent_requests_are_shed_before_idle_keep_alive_connections() {
        assert!(Shed::NeverSentAHead < Shed::IdleKeepAlive);
    }
}
