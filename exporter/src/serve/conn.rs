//! One connection: hyper's HTTP/1.1 over a socket whose reads are noted, the app behind a
//! service that notes each request's head, body end and response end, and a watchdog that
//! closes the connection at its deadline, when it is shed, or when shutdown finds it idle.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::Router;
use http::{Request, Response};
use http_body::{Frame, SizeHint};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;
use tower::util::Oneshot;
use tower::ServiceExt;

use super::pool::Registered;
use super::tracker::Tracker;

/// An accepted connection, registered in its server's pool.
pub(super) struct Accepted {
    pub(super) stream: TcpStream,
    pub(super) peer: SocketAddr,
    pub(super) tracker: Arc<Tracker>,
    pub(super) registered: Registered,
}

/// Serves one connection until the client or hyper closes it, or the watchdog cuts it.
pub(super) async fn run(
    accepted: Accepted,
    app: Router,
    builder: Arc<http1::Builder>,
    mut stop: watch::Receiver<()>,
) {
    let Accepted {
        stream,
        peer,
        tracker,
        registered: _registered,
    } = accepted;
    let io = TokioIo::new(Watched {
        stream,
        tracker: Arc::clone(&tracker),
    });
    let service = AppService {
        app,
        peer,
        tracker: Arc::clone(&tracker),
    };
    let connection = builder.serve_connection(io, service);
    tokio::pin!(connection);
    let sleep = tokio::time::sleep_until(Instant::now());
    tokio::pin!(sleep);
    let mut armed = None;
    let mut stopping = false;
    loop {
        if tracker.is_shed() {
            tracing::debug!(%peer, waiting_for = tracker.waiting().as_str(),
                "connection limit reached: closing this connection to make room");
            return;
        }
        let deadline = tracker.deadline();
        if let Some(deadline) = deadline {
            if armed != Some(deadline) {
                sleep.as_mut().reset(deadline);
                armed = Some(deadline);
            }
        }
        tokio::select! {
            biased;
            result = connection.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%peer, %error, "connection ended with an error");
                }
                return;
            }
            () = tracker.changed() => {}
            () = sleep.as_mut(), if deadline.is_some() => {
                if tracker.expired(Instant::now()) {
                    tracing::debug!(%peer, waiting_for = tracker.waiting().as_str(),
                        "read timeout: closing the connection");
                    return;
                }
                armed = None;
            }
            // A dropped sender means the server is gone: stop as well.
            _ = stop.changed(), if !stopping => {
                stopping = true;
                if !tracker.in_request() {
                    return;
                }
                // Finish this request, then close.
                connection.as_mut().graceful_shutdown();
            }
        }
    }
}

/// The socket, noting each read that brought bytes.
struct Watched {
    stream: TcpStream,
    tracker: Arc<Tracker>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let poll = Pin::new(&mut this.stream).poll_read(cx, buf);
        if matches!(poll, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.tracker.bytes_read();
        }
        poll
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// The app as hyper calls it: notes the head, wraps both bodies, adds `ConnectInfo`.
struct AppService {
    app: Router,
    peer: SocketAddr,
    tracker: Arc<Tracker>,
}

impl hyper::service::Service<Request<Incoming>> for AppService {
    type Response = Response<ResponseBody>;
    type Error = Infallible;
    type Future = AppFuture;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        let empty = http_body::Body::is_end_stream(request.body());
        self.tracker.head(empty);
        let (mut parts, body) = request.into_parts();
        parts.extensions.insert(ConnectInfo(self.peer));
        let body = Body::new(RequestBody {
            inner: body,
            tracker: (!empty).then(|| Arc::clone(&self.tracker)),
        });
        AppFuture {
            inner: self.app.clone().oneshot(Request::from_parts(parts, body)),
            tracker: Arc::clone(&self.tracker),
        }
    }
}

pin_project! {
    /// The app's response future; its body notes when it has been written.
    struct AppFuture {
        #[pin]
        inner: Oneshot<Router, Request<Body>>,
        tracker: Arc<Tracker>,
    }
}

impl Future for AppFuture {
    type Output = Result<Response<ResponseBody>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Ok(response) = ready!(this.inner.poll(cx));
        let end = ResponseEnd(Arc::clone(this.tracker));
        Poll::Ready(Ok(response.map(|inner| ResponseBody { inner, _end: end })))
    }
}

/// A response body; hyper drops it once written (or when the connection goes).
struct ResponseBody {
    inner: Body,
    _end: ResponseEnd,
}

struct ResponseEnd(Arc<Tracker>);

impl Drop for ResponseEnd {
    fn drop(&mut self) {
        self.0.response_end();
    }
}

impl http_body::Body for ResponseBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A request body that notes its end: read to the last byte, failed, or dropped unread.
struct RequestBody {
    inner: Incoming,
    /// `None` once the end is noted (or for a request without body).
    tracker: Option<Arc<Tracker>>,
}

impl RequestBody {
    fn end(&mut self) {
        if let Some(tracker) = self.tracker.take() {
            tracker.body_end();
        }
    }
}

impl Drop for RequestBody {
    fn drop(&mut self) {
        self.end();
    }
}

impl http_body::Body for RequestBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        let poll = Pin::new(&mut this.inner).poll_frame(cx);
        let ended = match &poll {
            Poll::Ready(None | Some(Err(_))) => true,
            Poll::Ready(Some(Ok(_))) => this.inner.is_end_stream(),
            Poll::Pending => false,
        };
        if ended {
            this.end();
        }
        poll
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
