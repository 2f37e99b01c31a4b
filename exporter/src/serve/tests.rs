//! The server against real clients on loopback, in virtual time (`start_paused`): half-sent
//! heads, trickled bodies, idle kept-alive connections, the connection limit and shutdown.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::ConnectInfo;
use axum::routing::{get, post};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::task::JoinHandle;
use tokio::time::{sleep_until, timeout};

use super::*;

const MS: Duration = Duration::from_millis(1);
/// How soon after its deadline a connection must be closed (virtual time: exact in practice).
const SOON: Duration = Duration::from_millis(10);
const GET_OK: &[u8] = b"GET /ok HTTP/1.1\r\nHost: test\r\n\r\n";

struct Server {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    done: JoinHandle<io::Result<()>>,
}

impl Server {
    fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            stop.send(()).expect("the server is running");
        }
    }
}

/// `/wait` tells `entered` that it runs, then answers once `release` is notified.
struct Gate {
    entered: mpsc::UnboundedReceiver<()>,
    release: Arc<Notify>,
}

/// `/ok`; `/echo` reads the body and answers its length; `/wait`; `/peer` answers the client's
/// address as `ConnectInfo` has it.
fn app() -> (Router, Gate) {
    let (entered_tx, entered) = mpsc::unbounded_channel();
    let release = Arc::new(Notify::new());
    let released = Arc::clone(&release);
    let router = Router::new()
        .route("/ok", get(|| async { "ok" }))
        .route(
            "/echo",
            post(|body: axum::body::Bytes| async move { body.len().to_string() }),
        )
        .route(
            "/wait",
            get(move || {
                let entered = entered_tx.clone();
                let released = Arc::clone(&released);
                async move {
                    entered.send(()).expect("the test listens");
                    released.notified().await;
                    "released"
                }
            }),
        )
        .route(
            "/peer",
            get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.to_string() }),
        );
    (router, Gate { entered, release })
}

async fn start(limits: Limits) -> (Server, Gate) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let (stop, stopped) = oneshot::channel::<()>();
    let (router, gate) = app();
    let done = tokio::spawn(serve(listener, router, limits, async {
        let _ = stopped.await;
    }));
    let server = Server {
        addr,
        stop: Some(stop),
        done,
    };
    (server, gate)
}

async fn connect(addr: SocketAddr) -> TcpStream {
    TcpStream::connect(addr).await.expect("connect")
}

/// A connection that has sent part of a request head and stops there.
async fn half_sent(addr: SocketAddr) -> TcpStream {
    let mut stream = connect(addr).await;
    stream
        .write_all(b"GET /ok HTTP/1.1\r\nHost: test\r\n")
        .await
        .expect("send");
    stream
}

/// Lets every task and socket event that is ready run (virtual time moves on by 1 ms).
async fn settle() {
    tokio::time::sleep(MS).await;
}

#[derive(Debug)]
struct Answer {
    status: u16,
    head: String,
    body: String,
}

/// Reads one response (with `content-length`); `None` if the connection closes first.
async fn response(stream: &mut TcpStream) -> Option<Answer> {
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&data[..end]).into_owned();
            let length = head
                .lines()
                .find_map(|line| {
                    let line = line.to_ascii_lowercase();
                    let value = line.strip_prefix("content-length:")?;
                    Some(value.trim().parse::<usize>().expect("a length"))
                })
                .unwrap_or(0);
            while data.len() < end + 4 + length {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return None,
                    Ok(n) => data.extend_from_slice(&buf[..n]),
                }
            }
            let status = head[9..12].parse().expect("a status code");
            let body = String::from_utf8_lossy(&data[end + 4..end + 4 + length]).into_owned();
            return Some(Answer { status, head, body });
        }
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => data.extend_from_slice(&buf[..n]),
        }
    }
}

/// Sends `GET /ok` on `stream` and expects `200 ok`.
async fn get_ok(stream: &mut TcpStream) {
    stream.write_all(GET_OK).await.expect("send");
    let answer = response(stream).await.expect("an answer");
    assert_eq!((answer.status, answer.body.as_str()), (200, "ok"));
}

/// Reads until the server closes the connection (or resets it); returns what it sent.
async fn until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return data,
            Ok(n) => data.extend_from_slice(&buf[..n]),
        }
    }
}

/// Whether the server neither closed `stream` nor sent anything on it, as of the socket events
/// seen so far (call it after virtual time moved, which delivers them).
async fn still_open(stream: &mut TcpStream) -> bool {
    timeout(Duration::ZERO, stream.read(&mut [0u8; 1]))
        .await
        .is_err()
}

/// Expects the server to close `stream` within [`SOON`] without answering.
async fn cut_without_answer(stream: &mut TcpStream, what: &str) {
    let sent = timeout(SOON, until_closed(stream))
        .await
        .unwrap_or_else(|_| panic!("{what}: still open"));
    assert!(
        sent.is_empty(),
        "{what}: answered {}",
        String::from_utf8_lossy(&sent)
    );
}

#[tokio::test(start_paused = true)]
async fn slowloris_connections_are_cut_at_the_header_timeout_however_they_trickle() {
    let limits = Limits::default();
    let (server, _gate) = start(limits.clone()).await;
    let started = Instant::now();
    let mut slow = Vec::new();
    for _ in 0..50 {
        slow.push(half_sent(server.addr).await);
    }
    // One more header line each second: progress, never a complete head.
    for second in 1..10 {
        sleep_until(started + Duration::from_secs(second)).await;
        for stream in &mut slow {
            stream
                .write_all(b"X-Slow: 1\r\n")
                .await
                .expect("open before the header timeout");
        }
    }
    sleep_until(started + limits.header_read_timeout - MS).await;
    for stream in &mut slow {
        assert!(still_open(stream).await, "cut before the header timeout");
    }
    for stream in &mut slow {
        cut_without_answer(stream, "a half-sent head at the header timeout").await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_silent_connection_is_cut_at_the_header_timeout() {
    let limits = Limits::default();
    let (server, _gate) = start(limits.clone()).await;
    let started = Instant::now();
    let mut silent = connect(server.addr).await;
    sleep_until(started + limits.header_read_timeout - MS).await;
    assert!(still_open(&mut silent).await);
    cut_without_answer(&mut silent, "a connection that sent nothing").await;
}

#[tokio::test(start_paused = true)]
async fn a_request_is_served_while_half_sent_requests_hold_every_slot() {
    let limits = Limits {
        max_connections: 8,
        ..Limits::default()
    };
    let (server, _gate) = start(limits).await;
    let mut slow = Vec::new();
    for _ in 0..8 {
        slow.push(half_sent(server.addr).await);
    }
    settle().await;

    let mut client = connect(server.addr).await;
    get_ok(&mut client).await;

    settle().await;
    assert!(
        !still_open(&mut slow[0]).await,
        "the oldest half-sent request made room"
    );
    for stream in &mut slow[1..] {
        assert!(still_open(stream).await, "only one was shed");
    }
}

#[tokio::test(start_paused = true)]
async fn a_flood_of_half_sent_requests_sheds_itself_and_spares_kept_alive_clients() {
    let limits = Limits {
        max_connections: 8,
        ..Limits::default()
    };
    let (server, _gate) = start(limits).await;
    let mut scraper = connect(server.addr).await;
    get_ok(&mut scraper).await;

    let mut slow = Vec::new();
    for _ in 0..24 {
        slow.push(half_sent(server.addr).await);
    }
    settle().await;
    // The scraper and 7 half-sent requests fill the 8 slots: the newest 7 of them.
    for (i, stream) in slow.iter_mut().enumerate() {
        assert_eq!(still_open(stream).await, i >= 17, "half-sent request #{i}");
    }
    get_ok(&mut scraper).await;
    let mut newcomer = connect(server.addr).await;
    get_ok(&mut newcomer).await;
}

#[tokio::test(start_paused = true)]
async fn when_every_connection_is_in_a_request_a_newcomer_waits_for_one_to_finish() {
    let limits = Limits {
        max_connections: 1,
        ..Limits::default()
    };
    let (server, mut gate) = start(limits).await;
    let mut busy = connect(server.addr).await;
    busy.write_all(b"GET /wait HTTP/1.1\r\nHost: test\r\n\r\n")
        .await
        .expect("send");
    gate.entered.recv().await.expect("the handler runs");

    let mut newcomer = connect(server.addr).await;
    newcomer.write_all(GET_OK).await.expect("send");
    assert!(
        timeout(Duration::from_secs(1), response(&mut newcomer))
            .await
            .is_err(),
        "served while the only slot is in a request"
    );

    gate.release.notify_one();
    let answer = response(&mut busy).await.expect("the first answer");
    assert_eq!(answer.body, "released");
    let answer = timeout(SOON, response(&mut newcomer))
        .await
        .expect("the newcomer is served once the slot is free")
        .expect("an answer");
    assert_eq!(answer.body, "ok");
}

#[tokio::test(start_paused = true)]
async fn a_client_trickling_its_body_is_cut_at_the_request_timeout() {
    let limits = Limits::default();
    let (server, _gate) = start(limits.clone()).await;
    let started = Instant::now();
    let mut client = connect(server.addr).await;
    client
        .write_all(b"POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 1000\r\n\r\n")
        .await
        .expect("send");
    for second in 1..30 {
        sleep_until(started + Duration::from_secs(second)).await;
        client
            .write_all(b"x")
            .await
            .expect("open before the request timeout");
    }
    sleep_until(started + limits.request_read_timeout - MS).await;
    assert!(
        still_open(&mut client).await,
        "cut before the request timeout"
    );
    cut_without_answer(&mut client, "a trickled body at the request timeout").await;
}

#[tokio::test(start_paused = true)]
async fn a_body_sent_in_pieces_within_the_bound_is_served() {
    let (server, _gate) = start(Limits::default()).await;
    let mut client = connect(server.addr).await;
    client
        .write_all(b"POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 6\r\n\r\nab")
        .await
        .expect("send");
    for piece in [b"cd", b"ef"] {
        tokio::time::sleep(Duration::from_secs(5)).await;
        client.write_all(piece).await.expect("send");
    }
    let answer = response(&mut client).await.expect("an answer");
    assert_eq!((answer.status, answer.body.as_str()), (200, "6"));
}

#[tokio::test(start_paused = true)]
async fn an_idle_kept_alive_connection_is_closed_after_the_idle_timeout() {
    let limits = Limits::default();
    let (server, _gate) = start(limits.clone()).await;
    let mut client = connect(server.addr).await;
    get_ok(&mut client).await;
    let answered = Instant::now();
    // Idling is not sending a head: the header timeout does not apply.
    sleep_until(answered + limits.header_read_timeout * 2).await;
    get_ok(&mut client).await;
    let answered = Instant::now();
    sleep_until(answered + limits.idle_timeout - MS).await;
    assert!(
        still_open(&mut client).await,
        "closed before the idle timeout"
    );
    cut_without_answer(&mut client, "an idle connection at the idle timeout").await;
}

#[tokio::test(start_paused = true)]
async fn an_oversized_head_is_answered_431() {
    let limits = Limits::default();
    let (server, _gate) = start(limits.clone()).await;
    let mut client = connect(server.addr).await;
    let filler = "a".repeat(limits.max_header_bytes);
    let request = format!("GET /ok HTTP/1.1\r\nHost: test\r\nX-Filler: {filler}\r\n\r\n");
    client.write_all(request.as_bytes()).await.expect("send");
    let answer = response(&mut client).await.expect("an answer");
    assert_eq!(answer.status, 431);
}

#[tokio::test(start_paused = true)]
async fn handlers_see_the_client_address() {
    let (server, _gate) = start(Limits::default()).await;
    let mut client = connect(server.addr).await;
    client
        .write_all(b"GET /peer HTTP/1.1\r\nHost: test\r\n\r\n")
        .await
        .expect("send");
    let answer = response(&mut client).await.expect("an answer");
    assert_eq!(
        answer.body,
        client.local_addr().expect("address").to_string()
    );
}

#[tokio::test(start_paused = true)]
async fn shutdown_lets_a_request_in_flight_finish_and_closes_the_rest_at_once() {
    let (mut server, mut gate) = start(Limits::default()).await;
    let mut busy = connect(server.addr).await;
    busy.write_all(b"GET /wait HTTP/1.1\r\nHost: test\r\n\r\n")
        .await
        .expect("send");
    gate.entered.recv().await.expect("the handler runs");
    let mut idle = connect(server.addr).await;
    get_ok(&mut idle).await;
    let mut slow = half_sent(server.addr).await;
    settle().await;

    server.stop();
    cut_without_answer(&mut idle, "an idle connection at shutdown").await;
    cut_without_answer(&mut slow, "a half-sent request at shutdown").await;
    assert!(
        TcpStream::connect(server.addr).await.is_err(),
        "accepting after shutdown"
    );
    assert!(still_open(&mut busy).await, "the request in flight was cut");
    assert!(!server.done.is_finished());

    gate.release.notify_one();
    let answer = response(&mut busy)
        .await
        .expect("the request in flight is answered");
    assert_eq!((answer.status, answer.body.as_str()), (200, "released"));
    assert!(
        answer
            .head
            .to_ascii_lowercase()
            .contains("connection: close"),
        "{}",
        answer.head
    );
    cut_without_answer(&mut busy, "the last connection after its answer").await;
    timeout(SOON, &mut server.done)
        .await
        .expect("serve returns once the last request is answered")
        .expect("no panic")
        .expect("no error");
}

#[tokio::test(start_paused = true)]
async fn shutdown_cuts_a_request_still_running_after_the_grace() {
    let limits = Limits::default();
    let (mut server, mut gate) = start(limits.clone()).await;
    let mut busy = connect(server.addr).await;
    busy.write_all(b"GET /wait HTTP/1.1\r\nHost: test\r\n\r\n")
        .await
        .expect("send");
    gate.entered.recv().await.expect("the handler runs");

    let stopping = Instant::now();
    server.stop();
    sleep_until(stopping + limits.shutdown_grace - MS).await;
    assert!(!server.done.is_finished(), "returned before the grace");
    assert!(still_open(&mut busy).await);
    timeout(SOON, &mut server.done)
        .await
        .expect("serve returns at the end of the grace")
        .expect("no panic")
        .expect("no error");
    cut_without_answer(&mut busy, "a request still running after the grace").await;
}

#[tokio::test]
async fn limits_that_would_refuse_every_request_are_refused() {
    let cases = [
        (
            Limits {
                max_connections: 0,
                ..Limits::default()
            },
            "Limits.max_connections is 0",
        ),
        (
            Limits {
                header_read_timeout: Duration::ZERO,
                ..Limits::default()
            },
            "Limits.header_read_timeout is 0",
        ),
        (
            Limits {
                max_header_bytes: 100,
                ..Limits::default()
            },
            "Limits.max_header_bytes is 100",
        ),
    ];
    for (limits, expected) in cases {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let error = serve(listener, Router::new(), limits, std::future::pending())
            .await
            .expect_err("refused");
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
        assert!(error.to_string().starts_with(expected), "{error}");
    }
}
