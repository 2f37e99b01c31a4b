//! `HttpMetricsLayer`: RED metrics (rate, errors, duration) for any tower/axum service.
//!
//! Series are keyed by axum's `MatchedPath` (never the raw path, so scanners cannot create
//! unbounded series), a folded method and the status code. Label handles are cached per
//! route and method, so the hot path is a read lock, a few atomic adds and no allocation.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::task::{Context, Poll};
use std::time::Instant;

use axum::extract::MatchedPath;
use http::{Method, Request, Response, StatusCode};
use pin_project_lite::pin_project;
use prometheus::{Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge};
use prometheus::{Opts, Registry};
use tower::{Layer, Service};

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
    /// Histogram buckets in seconds (strictly increasing; checked on `register`).
    pub fn buckets(mut self, buckets: impl Into<Vec<f64>>) -> Self {
        self.buckets = buckets.into();
        self
    }

    /// Registers the three metric families in `registry` and returns the layer.
    pub fn register(self, registry: &Registry) -> Result<HttpMetricsLayer, prometheus::Error> {
        let requests = IntCounterVec::new(
            Opts::new("http_requests_total", "HTTP requests answered."),
            &["method", "route", "status"],
        )?;
        let duration_opts = HistogramOpts::new(
            "http_request_duration_seconds",
            "Time from receiving an HTTP request to sending its response headers.",
        )
        .buckets(self.buckets);
        // The vector checks buckets only when a child is made (and then panics): check now.
        Histogram::with_opts(duration_opts.clone())?;
        let duration = HistogramVec::new(duration_opts, &["method", "route"])?;
        let in_flight = IntGauge::new("http_requests_in_flight", "HTTP requests being served.")?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(in_flight.clone()))?;
        let families = Families {
            requests,
            duration,
            in_flight,
        };
        let unmatched = Arc::new(RouteMetrics::new(UNMATCHED_ROUTE, families.clone()));
        Ok(HttpMetricsLayer {
            shared: Arc::new(Shared {
                id: NEXT_LAYER_ID.fetch_add(1, Ordering::Relaxed),
                families,
                routes: RwLock::new(HashMap::new()),
                unmatched,
            }),
        })
    }
}

/// A tower layer recording `http_requests_total`, `http_request_duration_seconds` and
/// `http_requests_in_flight`. Apply it with `Router::layer` so that unmatched requests are
/// counted too (under `route="unmatched"`).
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
    families: Families,
    routes: RwLock<HashMap<Box<str>, Arc<RouteMetrics>>>,
    unmatched: Arc<RouteMetrics>,
}

/// The metric vectors a route's handles are made from.
#[derive(Clone)]
struct Families {
    requests: IntCounterVec,
    duration: HistogramVec,
    in_flight: IntGauge,
}

static NEXT_LAYER_ID: AtomicUsize = AtomicUsize::new(0);

/// Route template -> handles, for one layer.
type RouteCache = HashMap<Box<str>, Arc<RouteMetrics>>;

thread_local! {
    /// Per thread and layer: route template -> handles. Looking a route up touches no shared
    /// cache line (a shared `RwLock` read costs two contended atomic operations per request).
    static ROUTES: RefCell<HashMap<usize, RouteCache>> = RefCell::default();
}

impl Shared {
    fn route(&self, matched: Option<&MatchedPath>) -> Arc<RouteMetrics> {
        let Some(path) = matched.map(MatchedPath::as_str) else {
            return Arc::clone(&self.unmatched);
        };
        let cached = ROUTES.with(|routes| {
            routes
                .borrow()
                .get(&self.id)
                .and_then(|layer| layer.get(path).cloned())
        });
        if let Some(found) = cached {
            return found;
        }
        // First request on this route on this thread: the only allocations, once per route.
        let found = {
            let mut routes = self.routes.write().unwrap_or_else(|e| e.into_inner());
            Arc::clone(
                routes
                    .entry(path.into())
                    .or_insert_with(|| Arc::new(RouteMetrics::new(path, self.families.clone()))),
            )
        };
        ROUTES.with(|routes| {
            routes
                .borrow_mut()
                .entry(self.id)
                .or_default()
                .insert(path.into(), Arc::clone(&found));
        });
        found
    }
}

/// Status codes with a lock-free counter slot per route and method; rarer ones go to a list.
const STATUS_SLOTS: usize = 8;

/// Cached handles of one route: per method, the histogram and the counters by status.
struct RouteMetrics {
    route: Box<str>,
    families: Families,
    methods: [MethodMetrics; METHODS.len()],
}

#[derive(Default)]
struct MethodMetrics {
    duration: OnceLock<Histogram>,
    statuses: [OnceLock<(u16, IntCounter)>; STATUS_SLOTS],
    overflow: Mutex<Vec<(u16, IntCounter)>>,
}

impl RouteMetrics {
    fn new(route: &str, families: Families) -> Self {
        Self {
            route: route.into(),
            families,
            methods: Default::default(),
        }
    }

    fn record(&self, method: usize, status: StatusCode, seconds: f64) {
        let slot = &self.methods[method];
        slot.duration
            .get_or_init(|| {
                self.families
                    .duration
                    .with_label_values(&[METHODS[method], &self.route])
            })
            .observe(seconds);
        self.counter(slot, method, status).inc();
    }

    fn counter<'a>(
        &self,
        slot: &'a MethodMetrics,
        method: usize,
        status: StatusCode,
    ) -> std::borrow::Cow<'a, IntCounter> {
        let code = status.as_u16();
        let make = || {
            self.families.requests.with_label_values(&[
                METHODS[method],
                &self.route,
                status.as_str(),
            ])
        };
        for cell in &slot.statuses {
            // Reads are plain loads; a free slot is claimed once, racing threads agree on it.
            let (owner, counter) = cell.get_or_init(|| (code, make()));
            if *owner == code {
                return std::borrow::Cow::Borrowed(counter);
            }
        }
        let mut overflow = slot.overflow.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, counter)) = overflow.iter().find(|(c, _)| *c == code) {
            return std::borrow::Cow::Owned(counter.clone());
        }
        let counter = make();
        overflow.push((code, counter.clone()));
        std::borrow::Cow::Owned(counter)
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
        route.families.in_flight.inc();
        ResponseFuture {
            inner: self.inner.call(request),
            record: Some(Recording {
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
    route: Arc<RouteMetrics>,
    method: usize,
    start: Instant,
}

impl Recording {
    fn finish(self, status: StatusCode) {
        let seconds = self.start.elapsed().as_secs_f64();
        self.route.record(self.method, status, seconds);
    }
}

impl Drop for Recording {
    fn drop(&mut self) {
        self.route.families.in_flight.dec();
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
