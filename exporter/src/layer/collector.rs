//! Where the layer's numbers live (striped per thread, see `stripes`) and how a scrape turns
//! them into the three metric families.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock, RwLock};

use http::StatusCode;
use prometheus::core::{Collector, Desc};
use prometheus::proto::{self, LabelPair, MetricFamily, MetricType};

use super::stripes::Stripes;
use super::METHODS;

const REQUESTS: &str = "http_requests_total";
const DURATION: &str = "http_request_duration_seconds";
const IN_FLIGHT: &str = "http_requests_in_flight";

/// Status codes with a striped counter per route and method; rarer ones share a locked list.
const STATUS_SLOTS: usize = 8;

/// Everything the layer records, shared by its services and the registered collector.
pub(super) struct Store {
    buckets: Box<[f64]>,
    stripes: usize,
    descs: Vec<Desc>,
    /// Route template -> its numbers. Entries are allocated once per route template and
    /// live for the rest of the process, so requests hold plain references (a reference
    /// count would be one more cache line that every core writes).
    routes: RwLock<HashMap<Box<str>, &'static RouteMetrics>>,
    pub(super) unmatched: &'static RouteMetrics,
    in_flight: Stripes,
}

impl Store {
    pub(super) fn new(buckets: Vec<f64>, stripes: usize) -> Result<Self, prometheus::Error> {
        let buckets = checked_buckets(buckets)?;
        let desc = |name: &str, help: &str, labels: &[&str]| {
            Desc::new(
                name.into(),
                help.into(),
                labels.iter().map(|l| l.to_string()).collect(),
                HashMap::new(),
            )
        };
        let descs = vec![
            desc(
                REQUESTS,
                "HTTP requests answered.",
                &["method", "route", "status"],
            )?,
            desc(
                DURATION,
                "Time from receiving an HTTP request to sending its response headers.",
                &["method", "route"],
            )?,
            desc(IN_FLIGHT, "HTTP requests being served.", &[])?,
        ];
        let unmatched = leak(super::UNMATCHED_ROUTE);
        Ok(Self {
            buckets,
            stripes,
            descs,
            routes: RwLock::new(HashMap::new()),
            unmatched,
            in_flight: Stripes::new(1, stripes),
        })
    }

    /// The numbers of a route template, made on its first request.
    pub(super) fn route(&self, template: &str) -> &'static RouteMetrics {
        if let Some(found) = self.read_routes().get(template) {
            return found;
        }
        let mut routes = self.routes.write().unwrap_or_else(|e| e.into_inner());
        routes
            .entry(template.into())
            .or_insert_with(|| leak(template))
    }

    fn read_routes(
        &self,
    ) -> std::sync::RwLockReadGuard<'_, HashMap<Box<str>, &'static RouteMetrics>> {
        self.routes.read().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn started(&self) {
        self.in_flight.add(0, 1);
    }

    pub(super) fn ended(&self) {
        self.in_flight.add(0, u64::MAX);
    }

    pub(super) fn record(
        &self,
        route: &RouteMetrics,
        method: usize,
        status: StatusCode,
        seconds: f64,
    ) {
        let cells =
            route.methods[method].get_or_init(|| MethodCells::new(&self.buckets, self.stripes));
        let bucket = self
            .buckets
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(self.buckets.len());
        cells.stripes.add(bucket, 1);
        cells.stripes.add_f64(self.buckets.len() + 1, seconds);
        let code = status.as_u16();
        for (slot, owner) in cells.statuses.iter().enumerate() {
            // A free slot is claimed once; racing threads agree on its owner.
            if *owner.get_or_init(|| code) == code {
                cells.stripes.add(self.buckets.len() + 2 + slot, 1);
                return;
            }
        }
        let mut overflow = cells.overflow.lock().unwrap_or_else(|e| e.into_inner());
        match overflow.iter_mut().find(|(c, _)| *c == code) {
            Some((_, count)) => *count += 1,
            None => overflow.push((code, 1)),
        }
    }

    fn families(&self) -> Vec<MetricFamily> {
        let nb = self.buckets.len();
        let (mut requests, mut durations) = (Vec::new(), Vec::new());
        let routes = self.read_routes();
        for route in routes.values().copied().chain([self.unmatched]) {
            for (method, cells) in route.methods.iter().enumerate() {
                let Some(cells) = cells.get() else { continue };
                let labels = [("method", METHODS[method]), ("route", &route.template)];
                let mut cumulative = 0;
                let mut buckets = Vec::with_capacity(nb);
                for (word, bound) in self.buckets.iter().enumerate() {
                    cumulative += cells.stripes.sum(word);
                    let mut bucket = proto::Bucket::default();
                    bucket.set_cumulative_count(cumulative);
                    bucket.set_upper_bound(*bound);
                    buckets.push(bucket);
                }
                let mut histogram = proto::Histogram::default();
                histogram.set_sample_count(cumulative + cells.stripes.sum(nb));
                histogram.set_sample_sum(cells.stripes.sum_f64(nb + 1));
                histogram.set_bucket(buckets);
                let mut series = metric(&labels);
                series.set_histogram(histogram);
                durations.push(series);

                let mut counts: Vec<(u16, u64)> = cells
                    .statuses
                    .iter()
                    .enumerate()
                    .filter_map(|(slot, owner)| {
                        Some((*owner.get()?, cells.stripes.sum(nb + 2 + slot)))
                    })
                    .collect();
                counts.extend(
                    cells
                        .overflow
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .iter(),
                );
                for (code, count) in counts {
                    let code = code.to_string();
                    let mut metric = metric(&[labels[0], labels[1], ("status", &code)]);
                    let mut counter = proto::Counter::default();
                    counter.set_value(count as f64);
                    metric.set_counter(counter);
                    requests.push(metric);
                }
            }
        }
        let mut gauge = proto::Gauge::default();
        gauge.set_value(self.in_flight.sum(0) as i64 as f64);
        let mut in_flight = metric(&[]);
        in_flight.set_gauge(gauge);
        vec![
            family(&self.descs[0], MetricType::COUNTER, requests),
            family(&self.descs[1], MetricType::HISTOGRAM, durations),
            family(&self.descs[2], MetricType::GAUGE, vec![in_flight]),
        ]
    }
}

/// The collector registered in the caller's registry.
pub(super) struct StoreCollector(pub(super) std::sync::Arc<Store>);

impl Collector for StoreCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.0.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        self.0.families()
    }
}

/// One route template's numbers, per method (made on the method's first request).
pub(super) struct RouteMetrics {
    pub(super) template: Box<str>,
    methods: [OnceLock<MethodCells>; METHODS.len()],
}

struct MethodCells {
    /// Words: one per bucket, one past the last bound, the sum, then one per status slot.
    stripes: Stripes,
    statuses: [OnceLock<u16>; STATUS_SLOTS],
    overflow: Mutex<Vec<(u16, u64)>>,
}

impl MethodCells {
    fn new(buckets: &[f64], stripes: usize) -> Self {
        Self {
            stripes: Stripes::new(buckets.len() + 2 + STATUS_SLOTS, stripes),
            statuses: Default::default(),
            overflow: Mutex::default(),
        }
    }
}

fn leak(template: &str) -> &'static RouteMetrics {
    Box::leak(Box::new(RouteMetrics {
        template: template.into(),
        methods: Default::default(),
    }))
}

/// Buckets as Prometheus wants them: finite, strictly increasing, a trailing +Inf dropped.
fn checked_buckets(mut buckets: Vec<f64>) -> Result<Box<[f64]>, prometheus::Error> {
    if buckets.last() == Some(&f64::INFINITY) {
        buckets.pop();
    }
    if buckets.is_empty() {
        return Err(prometheus::Error::Msg(
            "histogram buckets must not be empty".into(),
        ));
    }
    if let Some(pair) = buckets
        .windows(2)
        .find(|pair| pair[0].is_nan() || pair[0] >= pair[1])
    {
        return Err(prometheus::Error::Msg(format!(
            "histogram buckets must be strictly increasing: {} is followed by {}",
            pair[0], pair[1]
        )));
    }
    if buckets.iter().any(|b| !b.is_finite()) {
        return Err(prometheus::Error::Msg(
            "histogram buckets must be finite (+Inf is implied)".into(),
        ));
    }
    Ok(buckets.into())
}

fn metric(labels: &[(&str, &str)]) -> proto::Metric {
    let mut metric = proto::Metric::default();
    metric.set_label(
        labels
            .iter()
            .map(|(name, value)| {
                let mut pair = LabelPair::default();
                pair.set_name((*name).into());
                pair.set_value((*value).into());
                pair
            })
            .collect(),
    );
    metric
}

fn family(desc: &Desc, kind: MetricType, metrics: Vec<proto::Metric>) -> MetricFamily {
    let mut family = MetricFamily::default();
    family.set_name(desc.fq_name.clone());
    family.set_help(desc.help.clone());
    family.set_field_type(kind);
    family.set_metric(metrics);
    family
}
