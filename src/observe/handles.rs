//! Metric handles: what a route, pool, policy or key set records into, resolved once from the
//! families in [`Metrics`](super::metrics::Metrics) when a config is compiled, and [`Series`],
//! the label sets a snapshot owns. The request path only touches these, never a family's label
//! lookup.

use prometheus::{Gauge, Histogram, IntCounter, IntCounterVec, IntGauge, IntGaugeVec};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

pub(super) const METHODS: [&str; 8] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "OTHER",
];
pub(super) const STATUS_CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "none"];

/// The labelled series a snapshot owns, by name: what
/// [`Metrics::forget_removed`](super::metrics::Metrics::forget_removed) compares.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Series {
    /// Route names, each with the name of its authorizer.
    pub routes: Vec<(String, Option<String>)>,
    /// Authorizers whose keys are fetched (they have JWKS series).
    pub key_sets: Vec<String>,
    pub certificates: Vec<String>,
    /// `[limits]` policy names.
    pub policies: Vec<String>,
    /// Pool names, each with its target labels.
    pub pools: Vec<(String, Vec<String>)>,
    /// Firewall rule names and managed protection labels.
    pub firewall_rules: Vec<String>,
}

/// Decision counters of one throttling policy.
pub struct PolicyMetrics {
    pub allowed: IntCounter,
    pub rejected: IntCounter,
    pub dry_run_rejected: IntCounter,
    /// Checks Redis could not answer (then decided by `on_redis_error`).
    pub backend_errors: IntCounter,
}

/// Metric handles of one key set.
pub struct KeySetMetrics {
    pub refresh_ok: IntCounter,
    pub refresh_error: IntCounter,
    pub keys: IntGauge,
    pub last_success: Gauge,
    pub stale: IntGauge,
}

type CounterGrid = [[OnceLock<IntCounter>; STATUS_CLASSES.len()]; METHODS.len()];

/// Per-route handles. Request counters are created on first use of a (method, status class)
/// pair, then reused without locking.
pub struct RouteMetrics {
    pub(super) name: Box<str>,
    pub(super) requests: IntCounterVec,
    pub(super) counters: OnceLock<Box<CounterGrid>>,
    pub(super) duration: Histogram,
    pub(super) last_request: Gauge,
}

impl RouteMetrics {
    /// Requests finished on the route since the process started.
    pub fn requests(&self) -> u64 {
        self.duration.get_sample_count()
    }

    /// Unix time (whole seconds) of the last request, if any since start.
    pub fn last_request(&self) -> Option<f64> {
        Some(self.last_request.get()).filter(|t| *t > 0.0)
    }

    /// Record one finished request. `status` 0 means no response was sent.
    pub fn observe(&self, method: &http::Method, status: u16, elapsed: Duration, now: SystemTime) {
        let m = method_index(method);
        let s = match status {
            100..=599 => (status / 100 - 1) as usize,
            _ => STATUS_CLASSES.len() - 1,
        };
        let grid = self.counters.get_or_init(Default::default);
        grid[m][s]
            .get_or_init(|| {
                self.requests
                    .with_label_values(&[&*self.name, METHODS[m], STATUS_CLASSES[s]])
            })
            .inc();
        self.duration.observe(elapsed.as_secs_f64());
        // Whole seconds, written at most once a second: every worker thread would otherwise
        // write this shared cache line on every request.
        if let Ok(t) = now.duration_since(SystemTime::UNIX_EPOCH) {
            let secs = t.as_secs() as f64;
            if self.last_request.get() < secs {
                self.last_request.set(secs);
            }
        }
    }
}

fn method_index(method: &http::Method) -> usize {
    use http::Method as M;
    match *method {
        M::GET => 0,
        M::HEAD => 1,
        M::POST => 2,
        M::PUT => 3,
        M::DELETE => 4,
        M::PATCH => 5,
        M::OPTIONS => 6,
        _ => 7,
    }
}

/// Per-pool handles.
pub struct UpstreamMetrics {
    pub(super) name: Box<str>,
    pub(super) duration: Histogram,
    pub(super) healthy: IntGaugeVec,
}

impl UpstreamMetrics {
    /// Record the time from target choice to response header.
    pub fn observe(&self, elapsed: Duration) {
        self.duration.observe(elapsed.as_secs_f64());
    }

    /// Set the health gauge of a target (called on transitions and at activation only).
    pub fn set_healthy(&self, target: &str, healthy: bool) {
        self.healthy
            .with_label_values(&[&*self.name, target])
            .set(i64::from(healthy));
    }
}
