//! What a connection's parts share: its clock (moved on by the socket reads, the service and
//! the bodies), the wake-up of its watchdog, and the flag that sheds it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::Notify;
use tokio::time::Instant;

use super::clock::{ConnClock, Shed, Waiting};

pub(super) struct Tracker {
    clock: Mutex<ConnClock>,
    shed: AtomicBool,
    /// Wakes the connection's watchdog: its deadline moved, or it was shed.
    wake: Notify,
    /// Wakes an accept loop waiting for room: this connection may now be shed.
    room: Arc<Notify>,
}

impl Tracker {
    pub(super) fn new(clock: ConnClock, room: Arc<Notify>) -> Self {
        Self {
            clock: Mutex::new(clock),
            shed: AtomicBool::new(false),
            wake: Notify::new(),
            room,
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut ConnClock) -> R) -> R {
        // A panic cannot leave the clock half-changed (each change is one assignment).
        f(&mut self.clock.lock().unwrap_or_else(PoisonError::into_inner))
    }

    pub(super) fn bytes_read(&self) {
        if self.with(|clock| clock.on_bytes(Instant::now())) {
            self.wake.notify_one();
        }
    }

    pub(super) fn head(&self, empty_body: bool) {
        self.with(|clock| clock.on_head(Instant::now(), empty_body));
        self.wake.notify_one();
    }

    pub(super) fn body_end(&self) {
        if self.with(ConnClock::on_body_end) {
            self.wake.notify_one();
        }
    }

    pub(super) fn response_end(&self) {
        self.with(|clock| clock.on_response_end(Instant::now()));
        self.wake.notify_one();
        self.room.notify_one();
    }

    pub(super) fn deadline(&self) -> Option<Instant> {
        self.with(|clock| clock.deadline())
    }

    pub(super) fn expired(&self, now: Instant) -> bool {
        self.with(|clock| clock.expired(now))
    }

    pub(super) fn in_request(&self) -> bool {
        self.with(|clock| clock.in_request())
    }

    pub(super) fn waiting(&self) -> Waiting {
        self.with(|clock| clock.waiting())
    }

    /// How readily this connection may be closed to make room (`None`: it is in a request).
    pub(super) fn shed_class(&self) -> Option<Shed> {
        self.with(|clock| clock.shed())
    }

    /// Asks the connection's watchdog to close it.
    pub(super) fn shed(&self) {
        self.shed.store(true, Ordering::Release);
        self.wake.notify_one();
    }

    pub(super) fn is_shed(&self) -> bool {
        self.shed.load(Ordering::Acquire)
    }

    /// Resolves after the next change (or at once if one happened since the last call).
    pub(super) async fn changed(&self) {
        self.wake.notified().await;
    }
}
