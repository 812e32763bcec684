//! The compiled, immutable configuration a request runs on, and the holder that swaps it.
//!
//! `compile` turns a validated [`Config`](config::Config) into a [`Snapshot`]: the route index,
//! pools with resolved targets, metric handles. State that must survive a reload (target
//! health, metric families) comes from [`Registries`], keyed by stable names.
//!
//! Compiling changes nothing that the running config sees, because its result may still be
//! refused (an error in another section, a check of settings that need a restart). What a new
//! snapshot implies for shared state (targets whose checks were dropped are healthy again,
//! gauges, the Redis client to reuse) is applied by [`Snapshot::activate`], which
//! [`SnapshotStore::swap`] runs once the snapshot is in use. [`load()`] is the one way from a
//! file to a snapshot: `check`, startup and every reload use it.
//!
//! Submodules: `compile` (config → snapshot), `store` (the swap) and `load` (file → snapshot).

mod compile;
mod load;
mod store;

pub use compile::{compile, version_of};
pub use load::{load, LoadError, Loaded};
pub use store::SnapshotStore;

use crate::auth::{AuthRegistry, Authorizer, RouteAuth};
use crate::config;
use crate::limit::{LimitRegistry, Policy};
use crate::observe::metrics::{Metrics, RouteMetrics, Series};
use crate::routing::{RouteSpec, Router};
use crate::upstream::health::HealthRegistry;
use crate::upstream::Pool;
use bytes::Bytes;
use http::{HeaderName, HeaderValue, StatusCode};
use std::sync::Arc;
use std::time::SystemTime;

/// Long-lived state shared by every snapshot.
pub struct Registries {
    pub metrics: Arc<Metrics>,
    pub health: HealthRegistry,
    pub limits: LimitRegistry,
    pub auth: AuthRegistry,
    /// Rule limiters, bans and event sketches.
    pub firewall: crate::firewall::FirewallRegistry,
}

impl Registries {
    pub fn new() -> prometheus::Result<Self> {
        Ok(Self {
            metrics: Metrics::new()?,
            health: HealthRegistry::default(),
            limits: LimitRegistry::default(),
            auth: AuthRegistry::default(),
            firewall: Default::default(),
        })
    }
}

/// How the path is changed before proxying.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathRewrite {
    Keep,
    StripPrefix,
    ReplacePrefix(String),
    /// Remove this many leading bytes (an API's `base_path`).
    StripBase(usize),
}

/// A fixed response of a mock route.
#[derive(Debug)]
pub struct FixedResponse {
    pub status: StatusCode,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Bytes,
}

/// What a matched route does.
#[derive(Debug)]
pub enum RouteAction {
    Proxy {
        pool: Arc<Pool>,
        rewrite: PathRewrite,
    },
    Respond(FixedResponse),
}

/// A compiled `[[routes]]` entry.
pub struct Route {
    pub name: String,
    /// Where the route applies, as configured (for the admin API).
    pub spec: RouteSpec,
    pub action: RouteAction,
    /// Throttling policies checked before authentication (not keyed by consumer), so floods
    /// of bad credentials are throttled too.
    pub limits_before_auth: Vec<Arc<Policy>>,
    /// Policies keyed by consumer, checked once the authorizer named one.
    pub limits: Vec<Arc<Policy>>,
    /// Who may use the route; `None` means anyone.
    pub auth: Option<RouteAuth>,
    /// Body limits, IP lists and path spellings of the route.
    pub edge: crate::edge::settings::RouteEdge,
    pub metrics: RouteMetrics,
    /// The firewall rules and managed protections that apply to the route.
    pub firewall: crate::firewall::RoutePlan,
    /// The route's CORS policy: preflights answered by the gateway, CORS headers set.
    pub cors: Option<Arc<crate::cors::CorsPolicy>>,
    /// Header edits on the way upstream and back; `None` when the route has none.
    pub request_headers: Option<crate::transform::HeaderTransform>,
    pub response_headers: Option<crate::transform::HeaderTransform>,
    /// The API operation the route was made from, whose contract requests are checked
    /// against.
    pub operation: Option<Arc<crate::contract::Operation>>,
}

impl Route {
    /// Whether the route's responses are held until they matched its operation's contract.
    pub fn holds_responses(&self) -> bool {
        self.operation
            .as_ref()
            .is_some_and(|op| op.validate_responses == crate::config::ValidateMode::Enforce)
    }
}

impl std::fmt::Debug for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Route")
            .field("name", &self.name)
            .field("action", &self.action)
            .finish_non_exhaustive()
    }
}

/// Everything a request consults, fixed for the request's lifetime.
pub struct Snapshot {
    /// First 12 hex digits of the SHA-256 of the config text.
    pub version: String,
    pub loaded_at: SystemTime,
    pub router: Router<Arc<Route>>,
    pub routes: Vec<Arc<Route>>,
    pub pools: Vec<Arc<Pool>>,
    pub authorizers: Vec<Arc<Authorizer>>,
    /// Every `[limits]` policy, also those no route uses yet, so their counters carry over.
    pub policies: Vec<Arc<Policy>>,
    /// TLS certificates by SNI name, read from their files by this load.
    pub certificates: crate::tls::CertStore,
    /// Hash of the certificate and key files' content, for the file watch.
    pub certificate_files_hash: u64,
    /// Per-domain HTTPS policies.
    pub hosts: crate::tls::policy::HostPolicies,
    /// Listener limits, trusted proxies and IP lists.
    pub edge: crate::edge::settings::EdgeSettings,
    /// Rules, managed protections and bans; `None` without `[firewall]`.
    pub firewall: Option<Arc<crate::firewall::Firewall>>,
    /// `gatehouse_edge_refusals_total`, for refusals at the connection and in the proxy steps.
    pub edge_refusals: crate::edge::RefusalCounters,
    /// Headers the gateway sets upstream from what it verified (any authorizer's identity
    /// headers, the client certificate headers): removed from every client request, on every
    /// route, so an upstream can trust them.
    pub identity_headers: Vec<HeaderName>,
    /// Metrics of requests that matched no route.
    pub unrouted: RouteMetrics,
    /// Requests and responses that did not match their API operation.
    pub contract_violations: crate::contract::ViolationCounter,
    /// Some route holds its responses for a contract check (and needs subrequests).
    pub holds_responses: bool,
    /// `[tls] ocsp_stapling`.
    pub ocsp_stapling: bool,
    /// What `[acme]` orders; `None` without the section.
    pub acme: Option<Arc<crate::tls::acme::AcmePlan>>,
    pub access_log: bool,
    /// How requests are sampled for tracing; `None` without `[tracing]`.
    pub tracing: Option<crate::observe::trace::Sampling>,
    /// The Redis settings and client this snapshot's policies use, remembered at activation
    /// for the next reload to reuse.
    redis: Option<(config::RedisConfig, Arc<crate::limit::redis::RedisLimiter>)>,
}

impl Snapshot {
    /// One-line description for `gatehouse check` and logs.
    pub fn summary(&self) -> String {
        format!(
            "version {}: {} route{}, {} upstream pool{}",
            self.version,
            self.routes.len(),
            if self.routes.len() == 1 { "" } else { "s" },
            self.pools.len(),
            if self.pools.len() == 1 { "" } else { "s" },
        )
    }
}

impl Snapshot {
    /// The labelled metric series this snapshot owns, by name.
    pub fn series(&self) -> Series {
        Series {
            routes: self
                .routes
                .iter()
                .map(|r| {
                    let authorizer = r.auth.as_ref().map(|a| a.authorizer.name.clone());
                    (r.name.clone(), authorizer)
                })
                .collect(),
            policies: self.policies.iter().map(|p| p.name.clone()).collect(),
            key_sets: self
                .authorizers
                .iter()
                .filter(|a| a.remote_keys().is_some())
                .map(|a| a.name.clone())
                .collect(),
            certificates: self
                .certificates
                .entries()
                .map(|c| c.name.clone())
                .collect(),
            pools: self
                .pools
                .iter()
                .map(|p| {
                    let targets = p.targets.iter().map(|t| t.label.clone()).collect();
                    (p.name.clone(), targets)
                })
                .collect(),
            firewall_rules: self
                .firewall
                .as_ref()
                .map(|f| f.series())
                .unwrap_or_default(),
        }
    }
}

impl Snapshot {
    /// The firewall's ban policy, when `[firewall.bans]` is configured.
    pub fn bans(&self) -> Option<&crate::firewall::BanPolicy> {
        self.firewall.as_ref()?.bans.as_ref()
    }

    /// The Redis that bans are shared through, when `[firewall.bans] shared = true`.
    pub fn shared_bans(&self) -> Option<Arc<crate::limit::redis::RedisLimiter>> {
        self.bans()?.shared.clone()
    }
}

/// Certificates closer to expiry than this are reported by `check`, at startup and on reload.
pub const CERT_EXPIRY_WARNING_SECS: i64 = 14 * 86_400;

impl Snapshot {
    /// Certificates that expire within 14 days (or have expired).
    pub fn certificate_warnings(&self) -> Vec<String> {
        let now = crate::clock::unix_secs() as i64;
        crate::tls::expiring(&self.certificates, now, CERT_EXPIRY_WARNING_SECS)
    }
}

impl Snapshot {
    /// Apply to the long-lived registries what this snapshot implies, once it is the one in
    /// use (`previous` is the one it replaced): the series of what it removed are dropped,
    /// targets of pools that no longer run active checks are healthy again, target health and
    /// certificate expiry gauges are set, and its Redis client is kept for later reloads.
    pub fn activate(&self, reg: &Registries, previous: Option<&Snapshot>) {
        if let Some(old) = previous {
            let results: Vec<&str> = crate::auth::Reason::ALL.iter().map(|r| r.label()).collect();
            reg.metrics
                .forget_removed(&old.series(), &self.series(), &results);
        }
        for pool in &self.pools {
            pool.activate();
        }
        for cert in self.certificates.entries() {
            reg.metrics.certificate_expiry(&cert.name, cert.not_after);
        }
        if let Some((config, limiter)) = &self.redis {
            reg.limits.keep_redis(config, limiter);
        }
        // What the next compile starts from: this snapshot's health, counters and key sets.
        reg.health.adopt(self.pools.iter().flat_map(|p| {
            p.targets
                .iter()
                .map(move |t| (p.name.as_str(), t.addr, &t.state))
        }));
        reg.limits.adopt(self.policies.iter().map(|p| &**p));
        reg.auth.adopt(self.authorizers.iter().map(|a| &**a));
        reg.firewall.adopt(self.firewall.as_deref());
    }
}

#[cfg(test)]
mod tests;
