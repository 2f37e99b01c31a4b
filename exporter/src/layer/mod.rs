//! `HttpMetricsLayer`: RED metrics (rate, errors, duration) for any tower/axum service.
//!
//! Series are keyed by axum's `MatchedPath` (never the raw path, so scanners cannot create
//! unbounded series), a folded method and the status code. A request finds its route in a
//! per-thread cache and adds to counters striped per thread: no lock, no allocation and no
//! cache line shared with other cores on the hot path; a scrape sums the stripes.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::extract::MatchedPath;
use http::{Method, Request, Response, StatusCode};
use pin_project_lite::pin_project;
use prometheus::Registry;
use tower::{Layer, Service};

use collector::{RouteMetrics, Store, StoreCollector};

mod collector;
mod stripes;

/// The `route` label of requests that matched no route.
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// Default latency buckets (seconds): 1 ms to 10 s, dense where web requests usually land.
pub const DEFAULT_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Methods with their own label value; anything else is `other`.
const METHODS: [&str; 10] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE", "other",
];

fn method_index(method: &Method) -> usize {
    match *method {
        Method::GET => 0,
        Method::HEAD => 1,
        Method::POST => 2,
        Method::PUT => 3,
        Method::DELETE => 4,
        Method::PATCH => 5,
        Method::OPTIONS => 6,
        Method::CONNECT => 7,
        Method::TRACE => 8,
        _ => 9,
    }
}

/// Builder for [`HttpMetricsLayer`]: custom buckets, then registration in a registry.
#[derive(Debug, Clone)]
pub struct HttpMetricsBuilder {
    buckets: Vec<f64>,
}

impl Default for HttpMetricsBuilder {
    fn default() -> Self {
        Self {
            buckets: DEFAULT_BUCKETS.to_vec(),
        }
    }
}

impl HttpMetricsBuilder {
    /// Histogram buckets in seconds (finite, strictly increasing; checked on `register`).
    pub fn buckets(mut self, buckets: impl Into<Vec<f64>>) -> Self {
        self.buckets = buckets.into();
        self
    }

    /// Registers the three metric families in `registry` and returns the layer.
    pub fn register(self, registry: &Registry) -> Result<HttpMetricsLayer, prometheus::Error> {
        let store = Arc::new(Store::new(self.buckets, stripes::default_stripes())?);
        registry.register(Box::new(StoreCollector(Arc::clone(&store))))?;
        Ok(HttpMetricsLayer {
            shared: Arc::new(Shared {
                id: NEXT_LAYER_ID.fetch_add(1, Ordering::Relaxed),
                store,
            }),
        })
    }
}

/// A tower layer recording `http_requests_total`, `http_request_duration_seconds` and
/// `http_requests_in_flight`. Apply it with `Router::layer` so that unmatched requests are
/// counted too (under `route="unmatched"`).
///
/// Build it once at startup: each route template it sees gets numbers that live for the
/// rest of the process (a few hundred bytes per route, method and core).
#[derive(Clone)]
pub struct HttpMetricsLayer {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for HttpMetricsLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpMetricsLayer").finish_non_exhaustive()
    }
}

impl HttpMetricsLayer {
    /// A layer with default buckets registered in `registry`.
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        Self::builder().register(registry)
    }

    pub fn builder() -> HttpMetricsBuilder {
        HttpMetricsBuilder::default()
    }
}

impl<S> Layer<S> for HttpMetricsLayer {
    type Service = HttpMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        HttpMetrics {
            inner,
            shared: Arc::clone(&self.shared),
        }
    }
}

struct Shared {
    /// Distinguishes layers in the per-thread route caches.
    id: usize,
    store: Arc<Store>,
}

static NEXT_LAYER_ID: AtomicUsize = AtomicUsize::new(0);

/// Entries of a thread's route cache before it is emptied.
const THREAD_CACHE_LIMIT: usize = 4096;

thread_local! {
    /// Per thread: (layer, address of the matched route's text) -> its numbers. axum keeps
    /// one allocation per route template, so the address finds it without hashing the text
    /// (the text is still compared, in case an address is reused by another router) and
    /// without touching a lock that every core writes.
    static ROUTES: RefCell<HashMap<(usize, usize), &'static RouteMetrics>> = RefCell::default();
}

impl Shared {
    fn route(&self, matched: Option<&MatchedPath>) -> &'static RouteMetrics {
        let Some(path) = matched.map(MatchedPath::as_str) else {
            return self.store.unmatched;
        };
        let key = (self.id, path.as_ptr() as usize);
        let cached = ROUTES.with(|routes| routes.borrow().get(&key).copied());
        match cached {
            Some(found) if *found.template == *path => found,
            _ => {
                let found = self.store.route(path);
                ROUTES.with(|routes| {
                    let mut routes = routes.borrow_mut();
                    // Routers rebuilt again and again (in tests, say) bring new addresses:
                    // the cache is only a cache, so it is emptied rather than let grow.
                    if routes.len() >= THREAD_CACHE_LIMIT {
                        routes.clear();
                    }
                    routes.insert(key, found);
                });
                found
            }
        }
    }
}

/// The service produced by [`HttpMetricsLayer`].
#[derive(Clone)]
pub struct HttpMetrics<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for HttpMetrics<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let method = method_index(request.method());
        let route = self.shared.route(request.extensions().get::<MatchedPath>());
        self.shared.store.started();
        ResponseFuture {
            inner: self.inner.call(request),
            record: Some(Recording {
                store: Arc::clone(&self.shared.store),
                route,
                method,
                start: Instant::now(),
            }),
        }
    }
}

/// What a request needs to record itself; dropping it (even unrecorded, when the request is
/// cancelled) takes the request out of the in-flight gauge.
struct Recording {
    store: Arc<Store>,
    route: &'static RouteMetrics,
    method: usize,
    start: Instant,
}

impl Recording {
    fn finish(self, status: StatusCode) {
        let seconds = self.start.elapsed().as_secs_f64();
        self.store.record(self.route, self.method, status, seconds);
    }
}

impl Drop for Recording {
    fn drop(&mut self) {
        self.store.ended();
    }
}

pin_project! {
    /// Response future of [`HttpMetrics`].
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        record: Option<Recording>,
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let output = std::task::ready!(this.inner.poll(cx));
        if let Some(record) = this.record.take() {
            // A service error never reached the client as a response; count it as a 500,
            // which is what hyper answers in its place.
            let status = match &output {
                Ok(response) => response.status(),
                Err(_) => StatusCode::INTERNAL_SERVER_ERROR,
            };
            record.finish(status);
        }
        Poll::Ready(output)
    }
}

/// Content type of the Prometheus text exposition format 0.0.4.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Encodes every metric family of `registry` in the text format.
pub fn encode(registry: &Registry) -> Vec<u8> {
    use prometheus::Encoder;
    let mut body = Vec::with_capacity(16 * 1024);
    // Writing into a Vec cannot fail; an encoding error would mean an invalid family
    // (checked when it was registered), so an empty answer is the honest fallback.
    if let Err(error) = prometheus::TextEncoder::new().encode(&registry.gather(), &mut body) {
        tracing::error!(%error, "encoding metrics failed");
    }
    body
}

/// An axum handler serving `registry` on `/metrics`:
/// `router.route("/metrics", get(metrics_handler(registry)))`.
pub fn metrics_handler(
    registry: Registry,
) -> impl Fn() -> std::future::Ready<Response<axum::body::Body>> + Clone + Send + Sync + 'static {
    move || {
        let mut response = Response::new(axum::body::Body::from(encode(&registry)));
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static(TEXT_CONTENT_TYPE),
        );
        std::future::ready(response)
    }
}

#[cfg(test)]
mod tests;
