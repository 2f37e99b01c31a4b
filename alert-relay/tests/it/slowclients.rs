//! Slow and unauthenticated clients: credentials are checked on the request head, before any
//! body is read, and half-sent requests cannot crowd out Alertmanager's webhooks.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::*;

fn host_port(url: &str) -> String {
    url.trim_start_matches("http://").to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_token_is_refused_on_the_head_before_any_body_is_sent() {
    let ntfy = fake_vendor(200).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let relay = TestRelay::paging(&ntfy, dir.path()).await;
    let mut socket = TcpStream::connect(host_port(&relay.url))
        .await
        .expect("connect");
    // A 1 MiB body announced, none of it sent.
    let head = format!(
        "POST /webhook HTTP/1.1\r\nHost: relay\r\nAuthorization: Bearer wrong-token-0123456789\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        1 << 20
    );
    socket.write_all(head.as_bytes()).await.expect("head");
    let mut answer = vec![0u8; 512];
    let n = tokio::time::timeout(Duration::from_secs(5), socket.read(&mut answer))
        .await
        .expect("answered without waiting for the body")
        .expect("read");
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
}

#[tokio::test(flavor = "multi_thread")]
async fn webhooks_get_through_while_hundreds_of_half_sent_requests_hold_connections() {
    let ntfy = fake_vendor(200).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let relay = TestRelay::paging(&ntfy, dir.path()).await;
    let addr = host_port(&relay.url);
    // More than the connection limit (512), each stuck in the middle of its head.
    let mut held = Vec::new();
    for _ in 0..700 {
        let mut s = TcpStream::connect(&addr).await.expect("connect");
        s.write_all(b"POST /webhook HTTP/1.1\r\nHost: relay\r\nX-Slow: ")
            .await
            .expect("partial head");
        held.push(s);
    }
    let (status, _) = relay.webhook(&webhook("DuringTheFlood", "firing")).await;
    assert_eq!(status, 200);
    let pushed = wait_pushes(&ntfy, 1).await;
    assert_eq!(pushed[0]["title"], "[critical] DuringTheFlood");
    drop(held);
}
