//! The HTTP/1.1 server of both binaries, hardened against slow and idle clients.
//!
//! `axum::serve` has no header, body or idle timeout and accepts without limit: about 1,100
//! half-sent requests exhaust 1,024 file descriptors, and then nobody is served. [`serve`]
//! runs hyper's HTTP/1.1 connection with a clock per connection (`clock`, pure):
//!
//! - a new connection has [`Limits::header_read_timeout`] from its accept to complete its first
//!   request head; bytes trickled one at a time buy no time;
//! - a request then has [`Limits::request_read_timeout`], counted from the same start, until
//!   the last byte of its body (a client that trickles its body is cut);
//! - a kept-alive connection may idle [`Limits::idle_timeout`] between requests; the next
//!   request's head then has the header timeout from its first byte;
//! - the handler itself and the writing of its response are not bounded here.
//!
//! A connection past its deadline is closed without an answer.
//!
//! **Half-sent requests never stop the server from accepting** (that would leave a legitimate
//! client queued behind the attackers). When [`Limits::max_connections`] are open
//! and another arrives, the server closes the oldest connection that has not yet sent a
//! complete request head, else the oldest kept-alive connection idle between requests, and
//! serves the newcomer. A client that sends its request as soon as it is connected (as
//! Prometheus and Alertmanager do) is past its head within a round trip, so only a flood of
//! over `max_connections` new connections within that round trip could shed it, while a flood
//! of half-sent requests sheds itself. Only when every connection is inside a request (whose
//! body read is bounded) does the server hold the newcomer and stop accepting, until one
//! finishes; later clients wait in the listen backlog meanwhile.
//!
//! Shutdown stops accepting, closes every connection outside a request at once, lets requests
//! in flight finish (then closes their connections) and cuts what is left after
//! [`Limits::shutdown_grace`].
//!
//! HTTP/1.1 only: hyper's HTTP/2 would need its own bounds (streams per connection, window
//! sizes) and neither Prometheus nor Alertmanager speaks cleartext HTTP/2 to a scrape target or
//! webhook. Each request carries axum's `ConnectInfo<SocketAddr>`.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio::time::Instant;

use clock::{ConnClock, Timeouts};
use pool::Pool;
use tracker::Tracker;

mod clock;
mod conn;
mod pool;
mod tracker;

/// Bounds of [`serve`]. A plain struct: set what differs and take the rest from `default()`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// From a connection's accept (or, on a kept-alive connection, from the first byte of the
    /// next request) to its complete request head. Default 10 s.
    pub header_read_timeout: Duration,
    /// From the start of a request (as above) to the last byte of its body. Default 30 s.
    pub request_read_timeout: Duration,
    /// How long a kept-alive connection may wait for its next request. Default 60 s.
    pub idle_timeout: Duration,
    /// Open connections at most; past it the server sheds the oldest connection without a
    /// complete request head (see the module docs). Keep it well under the process's file
    /// descriptor limit (`ulimit -n`, often 1,024). Default 512.
    pub max_connections: usize,
    /// Largest request head (request line and headers) in bytes; a larger one is answered
    /// 431. Default 16 KiB.
    pub max_header_bytes: usize,
    /// After shutdown begins, how long requests in flight may take to finish before their
    /// connections are cut. Default 5 s (container runtimes stop after 10 s).
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            request_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            max_connections: 512,
            max_header_bytes: 16 * 1024,
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

/// hyper's own floor for its read buffer.
const MIN_BUFFER: usize = 8192;

impl Limits {
    /// Refuses bounds that would refuse every request.
    fn check(&self) -> io::Result<()> {
        let invalid = |message: String| Err(io::Error::new(io::ErrorKind::InvalidInput, message));
        let defaults = Limits::default();
        for (name, value, default) in [
            (
                "header_read_timeout",
                self.header_read_timeout,
                defaults.header_read_timeout,
            ),
            (
                "request_read_timeout",
                self.request_read_timeout,
                defaults.request_read_timeout,
            ),
            ("idle_timeout", self.idle_timeout, defaults.idle_timeout),
        ] {
            if value.is_zero() {
                return invalid(format!(
                    "Limits.{name} is 0: every connection would be cut at once (the default is {default:?})"
                ));
            }
        }
        if self.max_connections == 0 {
            return invalid("Limits.max_connections is 0: allow at least one connection".into());
        }
        if self.max_header_bytes < 1024 {
            return invalid(format!(
                "Limits.max_header_bytes is {}: allow at least 1024 bytes for a request head",
                self.max_header_bytes
            ));
        }
        Ok(())
    }

    fn timeouts(&self) -> Timeouts {
        Timeouts {
            header: self.header_read_timeout,
            request: self.request_read_timeout,
            idle: self.idle_timeout,
        }
    }

    fn http1(&self) -> http1::Builder {
        let mut builder = http1::Builder::new();
        builder
            // The connection's clock bounds the head; hyper's timer would also cut kept-alive
            // connections that idle longer than it.
            .header_read_timeout(None)
            .max_header_size(self.max_header_bytes)
            .max_buf_size(self.max_header_bytes.max(MIN_BUFFER))
            .keep_alive(true);
        builder
    }
}

/// Serves `app` on `listener` within `limits` until `shutdown` resolves, then drains (see the
/// module docs). Errors only for `limits` that cannot work; failed accepts are logged and
/// retried.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    limits.check()?;
    let builder = Arc::new(limits.http1());
    let pool = Arc::new(Pool::default());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(());
    let mut tasks = JoinSet::new();
    let mut shed_log = ShedLog::default();
    tokio::pin!(shutdown);
    // An accepted connection waiting for room while every connection is in a request; the
    // server accepts no other meanwhile (they wait in the listen backlog).
    let mut held: Option<(TcpStream, SocketAddr)> = None;
    loop {
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            Some(joined) = tasks.join_next() => log_panic(joined),
            () = pool.room_made(), if held.is_some() => {}
            accepted = listener.accept(), if held.is_none() => match accepted {
                Ok(accepted) => held = Some(accepted),
                Err(error) => accept_failed(&error, &pool).await,
            },
        }
        let Some((stream, peer)) = held.take() else {
            continue;
        };
        if pool.len() >= limits.max_connections {
            if pool.shed_one().is_none() {
                held = Some((stream, peer));
                continue;
            }
            shed_log.shed(limits.max_connections);
        }
        // Fewer packets for small answers; a refusal changes nothing that matters.
        let _ = stream.set_nodelay(true);
        let tracker = Arc::new(Tracker::new(
            ConnClock::new(limits.timeouts(), Instant::now()),
            pool.room(),
        ));
        let registered = pool.insert(Arc::clone(&tracker));
        let accepted = conn::Accepted {
            stream,
            peer,
            tracker,
            registered,
        };
        tasks.spawn(conn::run(
            accepted,
            app.clone(),
            Arc::clone(&builder),
            stop_rx.clone(),
        ));
    }
    drop(listener);
    // Connections outside a request close now; the others after their response.
    let _ = stop_tx.send(());
    let grace = tokio::time::sleep(limits.shutdown_grace);
    tokio::pin!(grace);
    loop {
        tokio::select! {
            joined = tasks.join_next() => match joined {
                Some(joined) => log_panic(joined),
                None => break,
            },
            () = &mut grace => {
                tracing::warn!(connections = tasks.len(), grace = ?limits.shutdown_grace,
                    "requests still running after the shutdown grace: cutting them");
                tasks.shutdown().await;
                break;
            }
        }
    }
    Ok(())
}

fn log_panic(joined: Result<(), tokio::task::JoinError>) {
    if let Err(error) = joined {
        if error.is_panic() {
            tracing::error!(%error, "a connection's task panicked");
        }
    }
}

/// An accept that failed: the client's own trouble is skipped; anything else (out of file
/// descriptors, say) sheds a connection if one can go and waits a moment so as not to spin.
async fn accept_failed(error: &io::Error, pool: &Pool) {
    use io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        error.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::error!(%error, connections = pool.len(), "accepting a connection failed");
    pool.shed_one();
    tokio::time::sleep(Duration::from_millis(50)).await;
}

/// A warning when the limit is first reached, then at most one a minute with the count.
#[derive(Default)]
struct ShedLog {
    last: Option<Instant>,
    since_last: u64,
}

impl ShedLog {
    const EVERY: Duration = Duration::from_secs(60);

    fn shed(&mut self, limit: usize) {
        self.since_last += 1;
        let now = Instant::now();
        if self.last.is_some_and(|last| now - last < Self::EVERY) {
            return;
        }
        tracing::warn!(
            limit,
            shed = self.since_last,
            "connection limit reached: closing the oldest connections that had not sent a \
             complete request (or idled between requests)"
        );
        self.last = Some(now);
        self.since_last = 0;
    }
}

#[cfg(test)]
mod tests;
