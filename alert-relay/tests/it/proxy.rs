//! A TCP proxy the test controls, between a relay and PostgreSQL, to cut the network path
//! at run time: it forwards, black-holes (a frozen path: nothing forwarded either way,
//! every connection kept open, new ones accepted and held — what TCP keepalives do not
//! notice, since the proxy's kernel answers them) or refuses (every connection closed, new
//! ones closed at once).

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What the proxy does with the bytes, switchable while connections are open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Forward,
    /// Stops forwarding both ways and closes nothing; a chunk read as the path froze waits
    /// with the rest, and everything flows again on `Forward` (a partition that heals).
    Blackhole,
    /// Closes every connection and each new one at once.
    Refuse,
}

/// A proxy on a free loopback port; dropping it closes every connection.
pub struct Proxy {
    addr: SocketAddr,
    mode: watch::Sender<Mode>,
    accept: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        // The connections' tasks see the channel closed and end.
        self.mode.send_replace(Mode::Refuse);
    }
}

impl Proxy {
    /// Forwards to `upstream` until told otherwise.
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy");
        let addr = listener.local_addr().expect("the proxy's address");
        let (mode, watch) = watch::channel(Mode::Forward);
        let accept = tokio::spawn(accept(listener, upstream, watch));
        Self { addr, mode, accept }
    }

    /// A proxy to the host and port of the PostgreSQL URL `url`.
    pub async fn to_database(url: &str) -> Self {
        let parsed = url::Url::parse(url).expect("a database URL");
        let host = parsed.host_str().expect("a database host");
        let port = parsed.port().unwrap_or(5432);
        let upstream = tokio::net::lookup_host((host, port))
            .await
            .expect("resolve the database host")
            .next()
            .expect("an address of the database host");
        Self::start(upstream).await
    }

    /// `url` (a PostgreSQL URL) pointing at this proxy instead.
    pub fn url_for(&self, url: &str) -> String {
        let mut parsed = url::Url::parse(url).expect("a database URL");
        parsed
            .set_host(Some(&self.addr.ip().to_string()))
            .expect("set the host");
        parsed
            .set_port(Some(self.addr.port()))
            .expect("set the port");
        parsed.to_string()
    }

    pub fn set(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }
}

async fn accept(listener: TcpListener, upstream: SocketAddr, mode: watch::Receiver<Mode>) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        if *mode.borrow() == Mode::Refuse {
            drop(client);
            continue;
        }
        tokio::spawn(connection(client, upstream, mode.clone()));
    }
}

/// One client: connects upstream once the path forwards (a connection made during a
/// black-hole waits, like a handshake on a frozen path), then pumps both ways until either
/// side closes or the proxy refuses; both sockets close together.
async fn connection(client: TcpStream, upstream: SocketAddr, mut mode: watch::Receiver<Mode>) {
    if !forwarding(&mut mode).await {
        return;
    }
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    tokio::select! {
        () = pump(client_read, server_write, mode.clone()) => {}
        () = pump(server_read, client_write, mode) => {}
    }
}

async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, mut mode: watch::Receiver<Mode>) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if !forwarding(&mut mode).await {
            return;
        }
        let n = tokio::select! {
            read = from.read(&mut buf) => match read {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            },
            () = refused(&mut mode) => return,
        };
        if !forwarding(&mut mode).await {
            return;
        }
        let mut closing = mode.clone();
        tokio::select! {
            written = to.write_all(&buf[..n]) => if written.is_err() { return },
            () = refused(&mut closing) => return,
        }
    }
}

/// Waits while the path is black-holed: `true` to forward, `false` to close.
async fn forwarding(mode: &mut watch::Receiver<Mode>) -> bool {
    match mode.wait_for(|m| *m != Mode::Blackhole).await {
        Ok(m) => *m == Mode::Forward,
        Err(_) => false,
    }
}

/// Ends when the proxy refuses (or is dropped).
async fn refused(mode: &mut watch::Receiver<Mode>) {
    let _ = mode.wait_for(|m| *m == Mode::Refuse).await;
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// An echo server on a free port.
    async fn echo() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = socket.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        addr
    }

    async fn roundtrip(socket: &mut TcpStream, text: &[u8]) -> Vec<u8> {
        socket.write_all(text).await.expect("write");
        read_n(socket, text.len()).await
    }

    async fn read_n(socket: &mut TcpStream, n: usize) -> Vec<u8> {
        let mut got = vec![0u8; n];
        tokio::time::timeout(Duration::from_secs(5), socket.read_exact(&mut got))
            .await
            .expect("an answer within 5 s")
            .expect("read");
        got
    }

    /// Nothing arrives, and the connection stays open, for a while (the frozen path).
    async fn silent(socket: &mut TcpStream) {
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_millis(300), socket.read(&mut byte)).await;
        assert!(read.is_err(), "neither data nor a close: {read:?}");
    }

    /// The connection is closed by the proxy (end of stream or reset) soon.
    async fn closed(socket: &mut TcpStream) {
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(5), socket.read(&mut byte))
            .await
            .expect("closed within 5 s");
        assert!(matches!(read, Ok(0) | Err(_)), "closed, not {read:?}");
    }

    #[tokio::test]
    async fn a_black_hole_freezes_open_connections_and_new_ones_until_it_heals() {
        let proxy = Proxy::start(echo().await).await;
        let mut open = TcpStream::connect(proxy.addr).await.expect("connect");
        assert_eq!(roundtrip(&mut open, b"ping").await, b"ping");
        proxy.set(Mode::Blackhole);
        open.write_all(b"held").await.expect("the write is taken");
        silent(&mut open).await;
        let mut new = TcpStream::connect(proxy.addr)
            .await
            .expect("a new connection is accepted");
        new.write_all(b"later").await.expect("write");
        silent(&mut new).await;
        proxy.set(Mode::Forward);
        assert_eq!(read_n(&mut open, 4).await, b"held", "delivered on healing");
        assert_eq!(read_n(&mut new, 5).await, b"later");
        assert_eq!(roundtrip(&mut open, b"again").await, b"again");
    }

    #[tokio::test]
    async fn refusing_closes_every_connection_and_new_ones_until_it_forwards_again() {
        let proxy = Proxy::start(echo().await).await;
        let mut open = TcpStream::connect(proxy.addr).await.expect("connect");
        assert_eq!(roundtrip(&mut open, b"ping").await, b"ping");
        let mut frozen = TcpStream::connect(proxy.addr).await.expect("connect");
        proxy.set(Mode::Blackhole);
        frozen.write_all(b"held").await.expect("write");
        proxy.set(Mode::Refuse);
        closed(&mut open).await;
        closed(&mut frozen).await;
        if let Ok(mut new) = TcpStream::connect(proxy.addr).await {
            closed(&mut new).await;
        }
        proxy.set(Mode::Forward);
        let mut after = TcpStream::connect(proxy.addr).await.expect("connect");
        assert_eq!(roundtrip(&mut after, b"back").await, b"back");
    }

    #[tokio::test]
    async fn the_url_points_at_the_proxy_and_keeps_the_rest() {
        let proxy = Proxy::start(echo().await).await;
        let url = proxy.url_for("postgres://relay@127.0.0.1:5432/db?application_name=x");
        assert_eq!(
            url,
            format!(
                "postgres://relay@127.0.0.1:{}/db?application_name=x",
                proxy.addr.port()
            )
        );
    }
}
