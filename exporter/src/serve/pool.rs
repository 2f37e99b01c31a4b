//! The live connections of one server, oldest first, and which one to close when every slot
//! is taken.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;

use super::clock::Shed;
use super::tracker::Tracker;

#[derive(Default)]
pub(super) struct Pool {
    /// By accept order: the first entry is the oldest connection.
    live: Mutex<BTreeMap<u64, Arc<Tracker>>>,
    next_id: AtomicU64,
    /// Notified when a connection ends or may be shed.
    room: Arc<Notify>,
}

impl Pool {
    fn live(&self) -> MutexGuard<'_, BTreeMap<u64, Arc<Tracker>>> {
        // Each change is one insert or remove: a panic cannot leave the map half-changed.
        self.live.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// What connections notify when they may be shed (see [`Tracker::new`]).
    pub(super) fn room(&self) -> Arc<Notify> {
        Arc::clone(&self.room)
    }

    pub(super) fn len(&self) -> usize {
        self.live().len()
    }

    /// Adds a connection; it stays until the returned guard is dropped.
    pub(super) fn insert(self: &Arc<Self>, tracker: Arc<Tracker>) -> Registered {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.live().insert(id, tracker);
        Registered {
            pool: Arc::clone(self),
            id,
        }
    }

    /// Closes the connection [`choose`] picks and takes it out of the pool at once (its task
    /// ends a moment later); `None` when every connection is in a request.
    pub(super) fn shed_one(&self) -> Option<Shed> {
        let mut live = self.live();
        let (id, class) = choose(live.iter().map(|(id, t)| (*id, t.shed_class())))?;
        if let Some(tracker) = live.remove(&id) {
            tracker.shed();
        }
        Some(class)
    }

    /// Resolves when a connection ended or may be shed since the last call.
    pub(super) async fn room_made(&self) {
        self.room.notified().await;
    }
}

/// Keeps a connection in its pool until dropped (when its task ends or is aborted).
pub(super) struct Registered {
    pool: Arc<Pool>,
    id: u64,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.pool.live().remove(&self.id);
        self.pool.room.notify_one();
    }
}

/// The connection to close to make room, from `(id, class)` in accept order: the oldest that
/// has not sent a complete request head, else the oldest idle kept-alive one, never one in a
/// request. A client that sends its request at once is never the oldest of the first kind for
/// long, so a flood of half-sent requests sheds itself.
fn choose(live: impl Iterator<Item = (u64, Option<Shed>)>) -> Option<(u64, Shed)> {
    let mut idle = None;
    for (id, class) in live {
        match class {
            Some(Shed::NeverSentAHead) => return Some((id, Shed::NeverSentAHead)),
            Some(Shed::IdleKeepAlive) if idle.is_none() => idle = Some((id, Shed::IdleKeepAlive)),
            _ => {}
        }
    }
    idle
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_half_sent_request_goes_before_an_older_idle_connection() {
        let live = [
            (1, Some(Shed::IdleKeepAlive)),
            (2, None),
            (3, Some(Shed::NeverSentAHead)),
            (4, Some(Shed::NeverSentAHead)),
        ];
        assert_eq!(choose(live.into_iter()), Some((3, Shed::NeverSentAHead)));
    }

    #[test]
    fn without_half_sent_requests_the_oldest_idle_connection_goes() {
        let live = [
            (1, None),
            (2, Some(Shed::IdleKeepAlive)),
            (3, Some(Shed::IdleKeepAlive)),
        ];
        assert_eq!(choose(live.into_iter()), Some((2, Shed::IdleKeepAlive)));
    }

    #[test]
    fn connections_in_a_request_are_never_chosen() {
        assert_eq!(choose([(1, None), (2, None)].into_iter()), None);
        assert_eq!(choose(std::iter::empty()), None);
    }
}
