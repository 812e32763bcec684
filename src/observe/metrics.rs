//! Prometheus metrics. Families live in one long-lived [`Metrics`]; routes and pools get their
//! handles once, when a config is compiled, so the request path never looks up a label set.
//! Labels are bounded: route and upstream names from config, method (known ones, else `OTHER`),
//! status class. Never a raw path or another client-chosen value.
//!
//! This file holds the families and the constructors of the handles, which are in `handles`
//! and re-exported here.

pub use super::handles::{KeySetMetrics, PolicyMetrics, RouteMetrics, Series, UpstreamMetrics};
use super::handles::{METHODS, STATUS_CLASSES};
use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use std::collections::HashSet;
use std::sync::{Arc, OnceLock};

/// The `result` labels of `gatehouse_ratelimit_decisions_total`.
const RATELIMIT_RESULTS: [&str; 4] = ["allowed", "rejected", "dry_run_rejected", "backend_error"];

/// The `action` labels of `gatehouse_firewall_decisions_total`.
pub const FIREWALL_ACTIONS: [&str; 4] = ["deny", "log", "limit", "count"];

/// Buckets in seconds, finer than Prometheus' default at the low end: a gateway adds
/// microseconds, so the interesting part of the distribution is below 10 ms.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// All metric families of the process.
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    request_duration: HistogramVec,
    route_last_request: GaugeVec,
    upstream_duration: HistogramVec,
    upstream_healthy: IntGaugeVec,
    config_reloads: IntCounterVec,
    ratelimit_decisions: IntCounterVec,
    config_version: IntGaugeVec,
    auth_decisions: IntCounterVec,
    jwks_refresh: IntCounterVec,
    jwks_keys: IntGaugeVec,
    jwks_last_success: GaugeVec,
    jwks_stale: IntGaugeVec,
    certificate_expiry: IntGaugeVec,
    ocsp_staple_expiry: IntGaugeVec,
    ocsp_fetch_failures: IntCounterVec,
    acme_orders: IntCounterVec,
    acme_renewal: IntGaugeVec,
    acme_failing_since: IntGaugeVec,
    /// Access log lines dropped because the writer could not keep up.
    pub access_log_dropped: IntCounter,
    /// Spans the collector accepted.
    trace_spans_exported: IntCounter,
    /// Spans dropped, by reason (`queue_full`, `export_failed`).
    trace_spans_dropped: IntCounterVec,
    /// Requests and connections refused at the edge, by reason.
    pub edge_refusals: IntCounterVec,
    /// Requests and responses that did not match their API operation's contract.
    pub contract_violations: IntCounterVec,
    /// Firewall decisions by rule (or managed protection) and action.
    firewall_decisions: IntCounterVec,
    /// Bans in force.
    pub bans_active: prometheus::IntGauge,
    /// Bans decided by this instance, by kind of key (`ip`, `consumer`).
    pub bans: IntCounterVec,
}

fn register<T: prometheus::core::Collector + Clone + 'static>(
    registry: &Registry,
    metric: prometheus::Result<T>,
) -> prometheus::Result<T> {
    let metric = metric?;
    registry.register(Box::new(metric.clone()))?;
    Ok(metric)
}

impl Metrics {
    /// Create and register every family. Fails only on a malformed or duplicate metric name,
    /// i.e. a bug in this file, which the unit tests catch.
    pub fn new() -> prometheus::Result<Arc<Self>> {
        let registry = Registry::new();
        let r = &registry;
        let latency = |name: &str, help: &str, labels: &[&str]| {
            let opts = HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec());
            register(r, HistogramVec::new(opts, labels))
        };
        Ok(Arc::new(Self {
            requests: register(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "gatehouse_requests_total",
                        "Requests by route, method and status class.",
                    ),
                    &["route", "method", "status"],
                ),
            )?,
            request_duration: latency(
                "gatehouse_request_duration_seconds",
                "Time from request start to the end of the response, by route.",
                &["route"],
            )?,
            route_last_request: register(
                r,
                GaugeVec::new(
                    Opts::new(
                        "gatehouse_route_last_request_timestamp_seconds",
                        "Unix time of the last request on each route.",
                    ),
                    &["route"],
                ),
            )?,
            upstream_duration: latency(
                "gatehouse_upstream_duration_seconds",
                "Time from choosing a target to its response header, by upstream pool.",
                &["upstream"],
            )?,
            upstream_healthy: register(
                r,
                IntGaugeVec::new(
                    Opts::new(
                        "gatehouse_upstream_healthy",
                        "1 when the target passes active health checks, else 0.",
                    ),
                    &["upstream", "target"],
                ),
            )?,
            config_reloads: register(
                r,
                IntCounterVec::new(
                    Opts::new("gatehouse_config_reload_total", "Config loads by result."),
                    &["result"],
                ),
            )?,
            config_version: register(
                r,
                IntGaugeVec::new(
                    Opts::new(
                        "gatehouse_config_version_info",
                        "1 for the version (content hash) of the config in use.",
                    ),
                    &["version"],
                ),
            )?,
            ratelimit_decisions: register(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "gatehouse_ratelimit_decisions_total",
                        "Throttling decisions by policy and result (allowed, rejected, dry_run_rejected, backend_error).",
                    ),
                    &["policy", "result"],
                ),
            )?,
            auth_decisions: register(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "gatehouse_auth_decisions_total",
                        "Authentication decisions by route, authorizer and result (allowed or the reason of a refusal).",
                    ),
                    &["route", "authorizer", "result"],
                ),
            )?,
            jwks_refresh: register(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "gatehouse_jwks_refresh_total",
                        "JWKS fetches by authorizer and result (success, error).",
                    ),
                    &["authorizer", "result"],
                ),
            )?,
            jwks_keys: register(
                r,
                IntGaugeVec::new(
                    Opts::new("gatehouse_jwks_keys", "Signing keys held, by authorizer."),
                    &["authorizer"],
                ),
            )?,
            jwks_last_success: register(
                r,
                GaugeVec::new(
                    Opts::new(
                        "gatehouse_jwks_last_success_timestamp_seconds",
                        "Unix time of the last successful JWKS fetch, by authorizer.",
                    ),
                    &["authorizer"],
                ),
            )?,
            jwks_stale: register(
                r,
                IntGaugeVec::new(
                    Opts::new(
                        "gatehouse_jwks_stale",
                        "1 when the last JWKS fetch failed and the keys in use may be outdated.",
                    ),
                    &["authorizer"],
                ),
            )?,
            certificate_expiry: register(
                r,
                IntGaugeVec::new(
                    Opts::new(
                        "gatehouse_tls_certificate_expiry_timestamp_seconds",
                        "Unix time when each loaded TLS certificate expires (notAfter).",
                    ),
                    &["name"],
                ),
            )?,
            ocsp_staple_expiry: register(
                r,
                IntGaugeVec::new(
                    Opts::new(
                        "gatehouse_tls_ocsp_staple_expiry_timestamp_seconds",
                        "Unix time when each certificate's stapled OCSP response expires \
                         (nextUpdate); 0 when none is stapled.",
                    ),
                    &["name"],
                ),
            )?,
            ocsp_fetch_failures: register(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "gatehouse_tls_ocsp_fetch_failures_total",
                        "OCSP fetches for each certificate that failed or were refused.",
                    ),
                    &["name"],
                ),
            )?,
            acme_orders: register(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "gatehouse_acme_orders_total",
                        "ACME certificate orders per host, by result (issued, failed).",
                    ),
                    &["host", "result"],
                ),
            )?,
            acme_failing_since: register(
                r,
                IntGaugeVec::new(
                    Opts::new(
                        "gatehouse_acme_failing_since_timestamp_seconds",
                        "Unix time of the first of the ACME orders for each host that have \
                         failed in a row; 0 once one succeeds.",
                    ),
                    &["host"],
                ),
            )?,
            acme_renewal: register(
                r,
                IntGaugeVec::new(
                    Opts::new(
                        "gatehouse_acme_renewal_timestamp_seconds",
                        "Unix time of the next ACME order (renewal or retry) for each host.",
                    ),
                    &["host"],
                ),
            )?,
            edge_refusals: register(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "gatehouse_edge_refusals_total",
                        "Requests and connections refused before routing, by reason.",
                    ),
                    &["reason"],
                ),
            )?,
            contract_violations: register(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "gatehouse_contract_violations_total",
                        "Requests and responses that did not match their OpenAPI operation, by API, operation, direction (request, response) and mode (enforce, report).",
                    ),
                    &["api", "operation", "direction", "mode"],
                ),
            )?,
            firewall_decisions: register(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "gatehouse_firewall_decisions_total",
                        "Firewall decisions by rule or managed protection and action (deny, log, limit, count).",
                    ),
                    &["rule", "action"],
                ),
            )?,
            bans_active: register(
                r,
                prometheus::IntGauge::new("gatehouse_bans_active", "Bans in force."),
            )?,
            bans: register(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "gatehouse_bans_total",
                        "Bans decided by this instance, by kind of key (ip, consumer).",
                    ),
                    &["kind"],
                ),
            )?,
            access_log_dropped: register(
                r,
                IntCounter::new(
                    "gatehouse_access_log_dropped_total",
                    "Access log lines dropped because the writer fell behind.",
                ),
            )?,
            trace_spans_exported: register(
                r,
                IntCounter::new(
                    "gatehouse_trace_spans_exported_total",
                    "Spans the OTLP collector accepted.",
                ),
            )?,
            trace_spans_dropped: register(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "gatehouse_trace_spans_dropped_total",
                        "Spans dropped: the export queue was full, or their export failed.",
                    ),
                    &["reason"],
                ),
            )?,
            registry,
        }))
        .inspect(|m| {
            // Both results exist from the start, so `increase()` sees the first failure.
            for result in ["success", "error"] {
                m.config_reloads.with_label_values(&[result]);
            }
            for reason in ["queue_full", "export_failed"] {
                m.trace_spans_dropped.with_label_values(&[reason]);
            }
        })
    }

    /// The counters of the span export queue.
    pub fn span_counters(&self) -> crate::observe::trace::export::SpanCounters {
        crate::observe::trace::export::SpanCounters {
            exported: self.trace_spans_exported.clone(),
            dropped_queue_full: self.trace_spans_dropped.with_label_values(&["queue_full"]),
            dropped_export_failed: self
                .trace_spans_dropped
                .with_label_values(&["export_failed"]),
        }
    }

    /// Handles for one route.
    pub fn route(&self, name: &str) -> RouteMetrics {
        RouteMetrics {
            name: name.into(),
            requests: self.requests.clone(),
            counters: OnceLock::new(),
            duration: self.request_duration.with_label_values(&[name]),
            last_request: self.route_last_request.with_label_values(&[name]),
        }
    }

    /// The counter of one firewall rule's (or managed protection's) decisions with `action`.
    pub fn firewall_decision(&self, rule: &str, action: &str) -> IntCounter {
        self.firewall_decisions.with_label_values(&[rule, action])
    }

    /// Decision counters of one throttling policy.
    pub fn policy(&self, name: &str) -> PolicyMetrics {
        let c = |result: &str| self.ratelimit_decisions.with_label_values(&[name, result]);
        let [allowed, rejected, dry_run_rejected, backend_error] = RATELIMIT_RESULTS;
        PolicyMetrics {
            allowed: c(allowed),
            rejected: c(rejected),
            dry_run_rejected: c(dry_run_rejected),
            backend_errors: c(backend_error),
        }
    }

    /// The auth decision family; routes resolve their label sets on first use.
    pub fn auth_decisions(&self) -> IntCounterVec {
        self.auth_decisions.clone()
    }

    /// Handles for one remote key set.
    pub fn key_set(&self, authorizer: &str) -> KeySetMetrics {
        let l = &[authorizer];
        KeySetMetrics {
            refresh_ok: self
                .jwks_refresh
                .with_label_values(&[authorizer, "success"]),
            refresh_error: self.jwks_refresh.with_label_values(&[authorizer, "error"]),
            keys: self.jwks_keys.with_label_values(l),
            last_success: self.jwks_last_success.with_label_values(l),
            stale: self.jwks_stale.with_label_values(l),
        }
    }

    /// Record when a loaded certificate expires.
    pub fn certificate_expiry(&self, name: &str, not_after: i64) {
        self.certificate_expiry
            .with_label_values(&[name])
            .set(not_after);
    }

    /// Record until when a certificate's stapled OCSP response is valid (0: none stapled).
    pub fn ocsp_staple_expiry(&self, name: &str, next_update: i64) {
        self.ocsp_staple_expiry
            .with_label_values(&[name])
            .set(next_update);
    }

    /// Count a failed or refused OCSP fetch for a certificate.
    pub fn ocsp_fetch_failed(&self, name: &str) {
        self.ocsp_fetch_failures.with_label_values(&[name]).inc();
    }

    /// Count an ACME order for `host` that `issued` a certificate or failed.
    pub fn acme_order(&self, host: &str, issued: bool) {
        let result = if issued { "issued" } else { "failed" };
        self.acme_orders.with_label_values(&[host, result]).inc();
    }

    /// Record since when `host`'s orders fail (0: the last one succeeded).
    pub fn acme_failing_since(&self, host: &str, since: i64) {
        self.acme_failing_since
            .with_label_values(&[host])
            .set(since);
    }

    /// Drop the series of a host `[acme]` no longer manages, so its alerts stop; its
    /// certificate's expiry too unless a file certificate has the same name.
    pub fn forget_acme_host(&self, host: &str, keep_expiry: bool) {
        for result in ["issued", "failed"] {
            let _ = self.acme_orders.remove_label_values(&[host, result]);
        }
        let _ = self.acme_renewal.remove_label_values(&[host]);
        let _ = self.acme_failing_since.remove_label_values(&[host]);
        if !keep_expiry {
            let _ = self.certificate_expiry.remove_label_values(&[host]);
            let _ = self.ocsp_staple_expiry.remove_label_values(&[host]);
            let _ = self.ocsp_fetch_failures.remove_label_values(&[host]);
        }
    }

    /// Record when `host`'s certificate is ordered next.
    pub fn acme_renewal(&self, host: &str, at: i64) {
        self.acme_renewal.with_label_values(&[host]).set(at);
    }

    /// Handles for one upstream pool.
    pub fn upstream(&self, name: &str) -> UpstreamMetrics {
        UpstreamMetrics {
            name: name.into(),
            duration: self.upstream_duration.with_label_values(&[name]),
            healthy: self.upstream_healthy.clone(),
        }
    }

    /// Drop the series of routes, authorizers, certificates, pools and targets that `new` no
    /// longer has, so dashboards and alerts do not keep reporting what was removed.
    /// `auth_results` are the result labels an authorizer can record.
    pub fn forget_removed(&self, old: &Series, new: &Series, auth_results: &[&str]) {
        let routes: HashSet<&str> = new.routes.iter().map(|(r, _)| r.as_str()).collect();
        for (name, authorizer) in old
            .routes
            .iter()
            .filter(|(r, _)| !routes.contains(r.as_str()))
        {
            for method in METHODS {
                for status in STATUS_CLASSES {
                    let _ = self.requests.remove_label_values(&[name, method, status]);
                }
            }
            let _ = self.request_duration.remove_label_values(&[name]);
            let _ = self.route_last_request.remove_label_values(&[name]);
            if let Some(authorizer) = authorizer {
                for result in auth_results {
                    let _ = self.auth_decisions.remove_label_values(&[
                        name.as_str(),
                        authorizer.as_str(),
                        result,
                    ]);
                }
            }
        }
        for gone in old.key_sets.iter().filter(|a| !new.key_sets.contains(a)) {
            for result in ["success", "error"] {
                let _ = self.jwks_refresh.remove_label_values(&[gone, result]);
            }
            let _ = self.jwks_keys.remove_label_values(&[gone]);
            let _ = self.jwks_last_success.remove_label_values(&[gone]);
            let _ = self.jwks_stale.remove_label_values(&[gone]);
        }
        for gone in old.policies.iter().filter(|p| !new.policies.contains(p)) {
            for result in RATELIMIT_RESULTS {
                let _ = self
                    .ratelimit_decisions
                    .remove_label_values(&[gone, result]);
            }
        }
        for gone in old
            .firewall_rules
            .iter()
            .filter(|r| !new.firewall_rules.contains(r))
        {
            for action in FIREWALL_ACTIONS {
                let _ = self.firewall_decisions.remove_label_values(&[gone, action]);
            }
        }
        for cert in old
            .certificates
            .iter()
            .filter(|c| !new.certificates.contains(c))
        {
            let _ = self.certificate_expiry.remove_label_values(&[cert]);
            let _ = self.ocsp_staple_expiry.remove_label_values(&[cert]);
            let _ = self.ocsp_fetch_failures.remove_label_values(&[cert]);
        }
        let targets: HashSet<(&str, &str)> = new
            .pools
            .iter()
            .flat_map(|(p, ts)| ts.iter().map(move |t| (p.as_str(), t.as_str())))
            .collect();
        for (pool, pool_targets) in &old.pools {
            if !new.pools.iter().any(|(p, _)| p == pool) {
                let _ = self.upstream_duration.remove_label_values(&[pool]);
            }
            for t in pool_targets {
                if !targets.contains(&(pool.as_str(), t.as_str())) {
                    let _ = self.upstream_healthy.remove_label_values(&[pool, t]);
                }
            }
        }
    }

    /// Count a config load attempt.
    pub fn config_loaded(&self, ok: bool, version: Option<&str>) {
        let result = if ok { "success" } else { "error" };
        self.config_reloads.with_label_values(&[result]).inc();
        if let Some(v) = version {
            self.config_version.reset();
            self.config_version.with_label_values(&[v]).set(1);
        }
    }

    /// The Prometheus text exposition of every family.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 * 1024);
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::error!(error = %e, "cannot encode metrics");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime};

    fn text(m: &Metrics) -> String {
        String::from_utf8(m.render()).unwrap()
    }

    #[test]
    fn series_of_removed_limits_are_forgotten() {
        let m = Metrics::new().unwrap();
        m.policy("gone").allowed.inc();
        m.policy("kept").allowed.inc();
        let old = Series {
            policies: vec!["gone".into(), "kept".into()],
            ..Series::default()
        };
        let new = Series {
            policies: vec!["kept".into()],
            ..Series::default()
        };
        m.forget_removed(&old, &new, &[]);
        let t = text(&m);
        assert!(!t.contains("policy=\"gone\""), "{t}");
        assert!(t.contains("policy=\"kept\""), "{t}");
    }

    #[test]
    fn route_requests_are_counted_by_method_and_status_class() {
        let m = Metrics::new().unwrap();
        let r = m.route("users");
        let now = SystemTime::now();
        r.observe(&http::Method::GET, 200, Duration::from_millis(3), now);
        r.observe(&http::Method::GET, 204, Duration::from_millis(3), now);
        r.observe(
            &"PURGE".parse().unwrap(),
            503,
            Duration::from_millis(3),
            now,
        );
        r.observe(&http::Method::POST, 0, Duration::from_millis(3), now);
        let t = text(&m);
        assert!(
            t.contains(r#"gatehouse_requests_total{method="GET",route="users",status="2xx"} 2"#),
            "{t}"
        );
        assert!(
            t.contains(r#"gatehouse_requests_total{method="OTHER",route="users",status="5xx"} 1"#)
        );
        assert!(
            t.contains(r#"gatehouse_requests_total{method="POST",route="users",status="none"} 1"#)
        );
        assert!(t.contains(r#"gatehouse_request_duration_seconds_count{route="users"} 4"#));
        assert!(t.contains("gatehouse_route_last_request_timestamp_seconds{route=\"users\"} 1"));
    }

    #[test]
    fn config_version_keeps_only_the_current_one() {
        let m = Metrics::new().unwrap();
        m.config_loaded(true, Some("aaa"));
        m.config_loaded(false, None);
        m.config_loaded(true, Some("bbb"));
        let t = text(&m);
        assert!(!t.contains(r#"version="aaa""#));
        assert!(t.contains(r#"gatehouse_config_version_info{version="bbb"} 1"#));
        assert!(t.contains(r#"gatehouse_config_reload_total{result="error"} 1"#));
        assert!(t.contains(r#"gatehouse_config_reload_total{result="success"} 2"#));
    }
}
