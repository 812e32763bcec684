//! The compiled, immutable configuration a request runs on, and the holder that swaps it.
//!
//! `compile` turns a validated [`Config`] into a [`Snapshot`]: the route index, pools with
//! resolved targets, metric handles. State that must survive a reload (target health, metric
//! families) comes from [`Registries`], keyed by stable names.
//!
//! Compiling changes nothing that the running config sees, because its result may still be
//! refused (an error in another section, a check of settings that need a restart). What a new
//! snapshot implies for shared state (targets whose checks were dropped are healthy again,
//! gauges, the Redis client to reuse) is applied by [`Snapshot::activate`], which
//! [`SnapshotStore::swap`] runs once the snapshot is in use. [`load`] is the one way from a file
//! to a snapshot: `check`, startup and every reload use it.

use crate::auth::{AuthRegistry, Authorizer, RouteAuth};
use crate::config::{self, Config, ConfigError, ConfigErrors, KeyPath, RouteConfig};
use crate::limit::{LimitRegistry, Policy};
use crate::observe::metrics::{Metrics, RouteMetrics, Series};
use crate::routing::{trim_prefix, HostPattern, PathPattern, RouteSpec, Router};
use crate::upstream::health::HealthRegistry;
use crate::upstream::Pool;
use arc_swap::{ArcSwap, Guard};
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, StatusCode};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

/// Long-lived state shared by every snapshot.
pub struct Registries {
    pub metrics: Arc<Metrics>,
    pub health: HealthRegistry,
    pub limits: LimitRegistry,
    pub auth: AuthRegistry,
}

impl Registries {
    pub fn new() -> prometheus::Result<Self> {
        Ok(Self {
            metrics: Metrics::new()?,
            health: HealthRegistry::default(),
            limits: LimitRegistry::default(),
            auth: AuthRegistry::default(),
        })
    }
}

/// How the path is changed before proxying.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathRewrite {
    Keep,
    StripPrefix,
    ReplacePrefix(String),
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
    pub metrics: RouteMetrics,
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
    /// Headers the gateway sets upstream from what it verified (any authorizer's identity
    /// headers, the client certificate headers): removed from every client request, on every
    /// route, so an upstream can trust them.
    pub identity_headers: Vec<HeaderName>,
    /// Metrics of requests that matched no route.
    pub unrouted: RouteMetrics,
    pub access_log: bool,
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
        }
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
    }
}

/// Content hash used as the config version.
pub fn version_of(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    digest[..6].iter().map(|b| format!("{b:02x}")).collect()
}

/// Build a snapshot from a validated config. Only what files and name resolution reveal can
/// fail here (a target name that does not resolve, an unreadable certificate), each reported
/// once: an entry that failed is left out quietly where others refer to it.
pub fn compile(
    config: &Config,
    text: &str,
    reg: &Registries,
) -> Result<Snapshot, Vec<ConfigError>> {
    let mut errors = Vec::new();
    let mut pools: HashMap<&str, Arc<Pool>> = HashMap::new();
    for (name, pool_config) in &config.upstreams {
        let path = KeyPath::top("upstreams").key(name);
        let metrics = reg.metrics.upstream(name);
        match Pool::compile(name, &path, pool_config, &reg.health, metrics) {
            Ok(pool) => {
                pools.insert(name, Arc::new(pool));
            }
            Err(e) => errors.push(e),
        }
    }
    let redis = match &config.redis {
        Some(rc) => match reg.limits.redis(rc) {
            Ok(r) => Some(r),
            Err(e) => {
                errors.push(ConfigError::new(KeyPath::top("redis").key("url"), e));
                None
            }
        },
        None => None,
    };
    let mut policies: HashMap<&str, Arc<Policy>> = HashMap::new();
    for (name, lc) in &config.limits {
        let metrics = reg.metrics.policy(name);
        match Policy::compile(name, lc, &reg.limits, redis.as_ref(), metrics) {
            Ok(p) => {
                policies.insert(name, Arc::new(p));
            }
            // Only a `[redis]` that could not be set up gets here; it is reported above.
            Err(_) if config.redis.is_some() && redis.is_none() => {}
            Err(message) => {
                errors.push(ConfigError::new(KeyPath::top("limits").key(name), message))
            }
        }
    }
    let mut authorizers: HashMap<String, Arc<Authorizer>> = HashMap::new();
    for (name, ac) in &config.authorizers {
        let path = KeyPath::top("authorizers").key(name);
        match crate::auth::compile(name, &path, ac, &reg.auth, &reg.metrics) {
            Ok(a) => {
                authorizers.insert(name.clone(), Arc::new(a));
            }
            Err(e) => errors.push(e),
        }
    }
    let (certificates, certificates_ok) =
        match crate::tls::compile(&config.certificates, &config.tls) {
            Ok(store) => (store, true),
            Err(errs) => {
                errors.extend(errs);
                (crate::tls::CertStore::default(), false)
            }
        };
    // Only names from `[tls] certificate_dir` are unknown before the directory is read.
    for (i, l) in config.listeners.iter().enumerate() {
        let default = l.tls.as_ref().and_then(|t| t.default_certificate.as_ref());
        if let Some(name) = default {
            if certificates.get(name).is_none() && certificates_ok {
                errors.push(ConfigError::new(
                    KeyPath::top("listeners")
                        .index(i)
                        .key("tls")
                        .key("default_certificate"),
                    format!("unknown certificate {name:?}"),
                ));
            }
        }
    }
    let hosts = crate::tls::policy::HostPolicies::compile(&config.hosts);
    let mut router = Router::default();
    let mut routes = Vec::with_capacity(config.routes.len());
    for (i, rc) in config.routes.iter().enumerate() {
        match compile_route(rc, &pools, &policies, &authorizers, reg) {
            Some(Ok((spec, route))) => {
                let route = Arc::new(route);
                router.insert(&spec, route.clone());
                routes.push(route);
            }
            Some(Err(e)) => errors.push(e.under(&KeyPath::top("routes").index(i))),
            // Refers to something that failed above and was reported there.
            None => {}
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let mut pools: Vec<Arc<Pool>> = pools.into_values().collect();
    pools.sort_by(|a, b| a.name.cmp(&b.name));
    let mut authorizers: Vec<Arc<Authorizer>> = authorizers.into_values().collect();
    authorizers.sort_by(|a, b| a.name.cmp(&b.name));
    let mut policies: Vec<Arc<Policy>> = policies.into_values().collect();
    policies.sort_by(|a, b| a.name.cmp(&b.name));
    let mut identity_headers: Vec<HeaderName> = authorizers
        .iter()
        .flat_map(|a| a.sets.iter().cloned())
        .chain([
            crate::headers::CLIENT_CERT_SUBJECT.clone(),
            crate::headers::CLIENT_CERT_FINGERPRINT.clone(),
        ])
        .collect();
    identity_headers.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    identity_headers.dedup();
    let certificate_files_hash = certificates.content_hash;
    Ok(Snapshot {
        version: version_of(text),
        loaded_at: SystemTime::now(),
        router,
        routes,
        pools,
        authorizers,
        policies,
        certificates,
        certificate_files_hash,
        hosts,
        identity_headers,
        unrouted: reg.metrics.route("-"),
        access_log: config.access_log.enabled,
        redis: config.redis.clone().zip(redis),
    })
}

/// A route problem relative to its `routes[i]`.
struct RouteError(&'static str, String);

impl RouteError {
    fn under(self, route: &KeyPath) -> ConfigError {
        ConfigError::new(route.key(self.0), self.1)
    }
}

/// Compile one route; `None` when it refers to a pool, policy or authorizer that failed to
/// compile (already reported).
fn compile_route(
    rc: &RouteConfig,
    pools: &HashMap<&str, Arc<Pool>>,
    policies: &HashMap<&str, Arc<Policy>>,
    authorizers: &HashMap<String, Arc<Authorizer>>,
    reg: &Registries,
) -> Option<Result<(RouteSpec, Route), RouteError>> {
    let limits = rc
        .limits
        .iter()
        .map(|name| policies.get(name.as_str()).cloned())
        .collect::<Option<Vec<_>>>()?;
    let auth = match &rc.auth {
        Some(a) => Some(crate::auth::compile_route(
            &rc.name,
            a,
            authorizers,
            &reg.metrics,
        )?),
        None => None,
    };
    let (limits, limits_before_auth): (Vec<_>, Vec<_>) =
        limits.into_iter().partition(|p| p.keyed_by_consumer());
    // Validation checked hosts and methods; anything else would be a bug, not a config error.
    let hosts = rc
        .hosts
        .iter()
        .filter_map(|h| HostPattern::parse(h).ok())
        .collect();
    let path = match (&rc.path, &rc.path_prefix) {
        (Some(p), _) => PathPattern::Exact(p.clone()),
        (None, Some(p)) => PathPattern::Prefix(trim_prefix(p).to_string()),
        (None, None) => PathPattern::Prefix("/".to_string()),
    };
    let methods = rc
        .methods
        .iter()
        .filter_map(|m| Method::from_bytes(m.to_ascii_uppercase().as_bytes()).ok())
        .collect();
    let action = match (&rc.upstream, &rc.respond) {
        (Some(name), _) => {
            let pool = pools.get(name.as_str())?;
            let rewrite = match (&rc.prefix_rewrite, rc.strip_prefix) {
                (Some(r), _) => PathRewrite::ReplacePrefix(r.clone()),
                (None, true) => PathRewrite::StripPrefix,
                (None, false) => PathRewrite::Keep,
            };
            RouteAction::Proxy {
                pool: pool.clone(),
                rewrite,
            }
        }
        (None, Some(r)) => match compile_response(r) {
            Ok(fixed) => RouteAction::Respond(fixed),
            Err(e) => return Some(Err(e)),
        },
        (None, None) => {
            return Some(Err(RouteError(
                "upstream",
                "a route needs `upstream` or `respond`".into(),
            )))
        }
    };
    let spec = RouteSpec {
        hosts,
        path,
        methods,
    };
    let route = Route {
        name: rc.name.clone(),
        spec: spec.clone(),
        action,
        limits_before_auth,
        limits,
        auth,
        metrics: reg.metrics.route(&rc.name),
    };
    Some(Ok((spec, route)))
}

fn compile_response(r: &config::RespondConfig) -> Result<FixedResponse, RouteError> {
    let invalid = || RouteError("respond", "invalid status or header".into());
    let status = StatusCode::from_u16(r.status).map_err(|_| invalid())?;
    let mut headers = Vec::with_capacity(r.headers.len());
    for (name, value) in &r.headers {
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| invalid())?;
        let value = HeaderValue::from_str(value).map_err(|_| invalid())?;
        headers.push((name, value));
    }
    Ok(FixedResponse {
        status,
        headers,
        body: Bytes::from(r.body.clone()),
    })
}

/// The current snapshot, swapped atomically on reload.
pub struct SnapshotStore {
    current: ArcSwap<Snapshot>,
}

impl SnapshotStore {
    /// A store holding the process's first snapshot, activated.
    pub fn activated(snapshot: Snapshot, reg: &Registries) -> Self {
        let store = Self {
            current: ArcSwap::from_pointee(snapshot),
        };
        store.current.load().activate(reg, None);
        store
    }

    /// A cheap, short-lived view (background tasks).
    pub fn load(&self) -> Guard<Arc<Snapshot>> {
        self.current.load()
    }

    /// An owned handle a request keeps until it ends.
    pub fn load_full(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Put `snapshot` in use, then activate it; returns the snapshot it replaced. The only way
    /// to change the snapshot, so that no snapshot serves without its activation having run.
    pub fn swap(&self, snapshot: Snapshot, reg: &Registries) -> Arc<Snapshot> {
        let new = Arc::new(snapshot);
        let old = self.current.swap(new.clone());
        new.activate(reg, Some(&old));
        old
    }
}

impl crate::tls::accept::CertificateSource for SnapshotStore {
    fn certificate(
        &self,
        sni: Option<&str>,
        default: Option<&str>,
    ) -> Option<Arc<crate::tls::CertEntry>> {
        self.current.load().certificates.pick(sni, default).cloned()
    }
}

/// A file read, validated and compiled by [`load`], not yet in use.
pub struct Loaded {
    pub config: Config,
    pub text: String,
    /// [`version_of`] the text.
    pub version: String,
    pub snapshot: Snapshot,
}

/// Why [`load`] gave no snapshot.
#[derive(Debug)]
pub struct LoadError {
    pub errors: ConfigErrors,
    /// Version of the text that was read, when the file could be read.
    pub version: Option<String>,
    /// The text itself is wrong (syntax, validation), so the same text always fails the same
    /// way. Otherwise (an unreadable file, a name that did not resolve, a certificate file) a
    /// later try may pass.
    pub invalid_text: bool,
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.errors, f)
    }
}

impl std::error::Error for LoadError {}

impl From<LoadError> for ConfigErrors {
    fn from(e: LoadError) -> Self {
        e.errors
    }
}

/// Read, validate and compile the file at `path`: what `check`, startup and every reload do.
/// Nothing is activated (see [`SnapshotStore::swap`]).
pub fn load(path: &Path, reg: &Registries) -> Result<Loaded, LoadError> {
    let file = || path.to_path_buf();
    let text = std::fs::read_to_string(path).map_err(|e| LoadError {
        errors: ConfigErrors::whole_file(file(), format!("cannot read file: {e}")),
        version: None,
        invalid_text: false,
    })?;
    // The version of exactly the text that was parsed, so a file caught half-written is not
    // remembered as rejected under the version of its finished content.
    let version = version_of(&text);
    let fail = |errors, invalid_text| LoadError {
        errors: ConfigErrors {
            file: file(),
            errors,
        },
        version: Some(version.clone()),
        invalid_text,
    };
    let config = match config::check(&text) {
        (Some(config), errors) if errors.is_empty() => config,
        (partial, mut errors) => {
            // Also what the files and names of the entries without problems hold, so one run
            // shows everything (a certificate that does not match its key next to a typo).
            if let Some(config) = partial {
                errors.extend(resource_problems(&config, &errors));
            }
            return Err(fail(errors, true));
        }
    };
    let snapshot = compile(&config, &text, reg).map_err(|errors| fail(errors, false))?;
    Ok(Loaded {
        config,
        text,
        version,
        snapshot,
    })
}

/// What compiling the entries free of `known` problems reports: unreadable or mismatched
/// files, names that do not resolve. Built on scratch registries and thrown away, so nothing
/// shared changes; routes and limits are left out (they only refer to other entries).
fn resource_problems(config: &Config, known: &[ConfigError]) -> Vec<ConfigError> {
    let Ok(scratch) = Registries::new() else {
        return Vec::new();
    };
    let clean = |path: &KeyPath| !known.iter().any(|e| e.path.is_under(path.as_str()));
    let mut out = Vec::new();
    for (name, pool) in &config.upstreams {
        let path = KeyPath::top("upstreams").key(name);
        if clean(&path) {
            let metrics = scratch.metrics.upstream(name);
            if let Err(e) = Pool::compile(name, &path, pool, &scratch.health, metrics) {
                out.push(e);
            }
        }
    }
    for (name, authorizer) in &config.authorizers {
        let path = KeyPath::top("authorizers").key(name);
        if clean(&path) {
            let compiled =
                crate::auth::compile(name, &path, authorizer, &scratch.auth, &scratch.metrics);
            if let Err(e) = compiled {
                out.push(e);
            }
        }
    }
    if clean(&KeyPath::top("certificates")) && clean(&KeyPath::top("tls")) {
        if let Err(errors) = crate::tls::compile(&config.certificates, &config.tls) {
            out.extend(errors);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHECKED: &str = "[[listeners]]\naddress = \"127.0.0.1:1\"\n\
        [upstreams.p]\ntargets = [{ address = \"127.0.0.1:2\" }]\n\
        [upstreams.p.health_check]\npath = \"/h\"\n\
        [[routes]]\nname = \"r\"\nupstream = \"p\"\n";

    fn compiled(text: &str, reg: &Registries) -> Snapshot {
        compile(&config::parse(text).unwrap(), text, reg).unwrap()
    }

    #[test]
    fn compiling_leaves_health_counters_and_key_sets_to_the_snapshot_in_use() {
        let text = "[[listeners]]\naddress = \"127.0.0.1:1\"\n\
            [upstreams.p]\ntargets = [{ address = \"127.0.0.1:2\" }]\n\
            [limits.l]\nrate = 1\nburst = 0\nkey = [\"route\"]\n\
            [authorizers.j]\ntype = \"jwt\"\nalgorithms = [\"RS256\"]\n\
            jwks_url = \"http://127.0.0.1:9/jwks\"\n\
            [[routes]]\nname = \"r\"\nupstream = \"p\"\nlimits = [\"l\"]\nauth = \"j\"\n";
        let reg = Registries::new().unwrap();
        let first = compiled(text, &reg);
        let second = compiled(text, &reg);
        let target = |s: &Snapshot| s.pools[0].targets[0].state.clone();
        let keys = |s: &Snapshot| s.authorizers[0].remote_keys().cloned().unwrap();
        // Neither is in use: each has its own state, and the registries hold none of it.
        assert!(!Arc::ptr_eq(&target(&first), &target(&second)));
        assert!(!Arc::ptr_eq(&keys(&first), &keys(&second)));
        let addr = "127.0.0.1:2".parse().unwrap();
        assert!(!Arc::ptr_eq(&reg.health.state("p", addr), &target(&first)));
        let limited = |s: &Snapshot| {
            let input = crate::limit::LimitInput {
                route: "r",
                client_ip: None,
                consumer: None,
                headers: &http::HeaderMap::new(),
            };
            let mut state = crate::limit::LimitState::default();
            let now = crate::clock::unix_nanos();
            futures_lite(crate::limit::check(&s.policies, &input, now, &mut state)).is_err()
        };
        assert!(!limited(&first), "the first request passes");
        assert!(!limited(&second), "an unused compile shares no counters");
        // Once one is in use, the next compile starts from its state.
        let store = SnapshotStore::activated(first, &reg);
        let third = compiled(text, &reg);
        assert!(Arc::ptr_eq(&target(&store.load()), &target(&third)));
        assert!(Arc::ptr_eq(&keys(&store.load()), &keys(&third)));
        assert!(limited(&third), "counters carried over");
    }

    /// Runs a future that never waits (local limits only).
    fn futures_lite<F: std::future::Future>(f: F) -> F::Output {
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        let mut f = std::pin::pin!(f);
        match f.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(v) => v,
            std::task::Poll::Pending => panic!("a local limit check waited"),
        }
    }

    #[test]
    fn target_health_changes_at_activation_not_at_compile() {
        let reg = Registries::new().unwrap();
        let store = SnapshotStore::activated(compiled(CHECKED, &reg), &reg);
        let state = reg.health.state("p", "127.0.0.1:2".parse().unwrap());
        let hc = store.load().pools[0].health_check.clone().unwrap();
        for _ in 0..hc.unhealthy_threshold {
            state.record_check(false, &hc);
        }
        assert!(!state.is_healthy());
        let unchecked = CHECKED.replace("[upstreams.p.health_check]\npath = \"/h\"\n", "");
        let next = compiled(&unchecked, &reg);
        assert!(
            !state.is_healthy(),
            "compiling a config changed the running config's target health"
        );
        store.swap(next, &reg);
        assert!(
            state.is_healthy(),
            "checks were dropped: nothing would bring it back"
        );
        let metrics = String::from_utf8(reg.metrics.render()).unwrap();
        assert!(
            metrics.contains(r#"gatehouse_upstream_healthy{target="127.0.0.1:2",upstream="p"} 1"#),
            "{metrics}"
        );
    }

    #[test]
    fn a_new_redis_client_is_kept_only_once_its_config_is_in_use() {
        let reg = Registries::new().unwrap();
        let with = |port: u16| {
            format!(
                "[[listeners]]\naddress = \"127.0.0.1:1\"\n\
                 [redis]\nurl = \"redis://127.0.0.1:{port}/\"\n"
            )
        };
        let client = |s: &Snapshot| s.redis.as_ref().map(|(_, r)| r.clone()).unwrap();
        let store = SnapshotStore::activated(compiled(&with(1), &reg), &reg);
        let running = client(&store.load());
        // Compiled and never applied (a refused reload).
        let refused = compiled(&with(2), &reg);
        assert!(!Arc::ptr_eq(&running, &client(&refused)));
        drop(refused);
        let again = compiled(&with(1), &reg);
        assert!(
            Arc::ptr_eq(&running, &client(&again)),
            "a refused config replaced the client that the running one keeps"
        );
        store.swap(compiled(&with(2), &reg), &reg);
        let applied = client(&store.load());
        assert!(Arc::ptr_eq(&applied, &client(&compiled(&with(2), &reg))));
    }
}
