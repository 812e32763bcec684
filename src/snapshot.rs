//! The compiled, immutable configuration a request runs on, and the holder that swaps it.
//!
//! `compile` turns a validated [`Config`] into a [`Snapshot`]: the route index, pools with
//! resolved targets, metric handles. State that must survive a reload (target health, metric
//! families) comes from [`Registries`], keyed by stable names.

use crate::auth::{AuthRegistry, Authorizer, RouteAuth};
use crate::config::{self, Config, ConfigError, ConfigErrors, RouteConfig};
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

/// Content hash used as the config version.
pub fn version_of(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    digest[..6].iter().map(|b| format!("{b:02x}")).collect()
}

/// Build a snapshot from a validated config. Fails on what only shows when building, such as a
/// target name that does not resolve.
pub fn compile(
    config: &Config,
    text: &str,
    reg: &Registries,
) -> Result<Snapshot, Vec<ConfigError>> {
    let mut errors = Vec::new();
    let mut pools: HashMap<&str, Arc<Pool>> = HashMap::new();
    for (name, pool_config) in &config.upstreams {
        match Pool::compile(name, pool_config, &reg.health, reg.metrics.upstream(name)) {
            Ok(pool) => {
                pools.insert(name, Arc::new(pool));
            }
            Err((key, message)) => {
                errors.push(ConfigError::new(format!("upstreams.{name}.{key}"), message))
            }
        }
    }
    let redis = match &config.redis {
        Some(rc) => match reg.limits.redis(rc) {
            Ok(r) => Some(r),
            Err(e) => {
                errors.push(ConfigError::new("redis.url", e));
                None
            }
        },
        None => None,
    };
    let mut policies: HashMap<&str, Arc<Policy>> = HashMap::new();
    for (name, lc) in &config.limits {
        match Policy::compile(
            name,
            lc,
            &reg.limits,
            redis.as_ref(),
            reg.metrics.policy(name),
        ) {
            Ok(p) => {
                policies.insert(name, Arc::new(p));
            }
            Err(message) => errors.push(ConfigError::new(format!("limits.{name}"), message)),
        }
    }
    let mut authorizers: HashMap<String, Arc<Authorizer>> = HashMap::new();
    for (name, ac) in &config.authorizers {
        match crate::auth::compile(name, ac, &reg.auth, &reg.metrics) {
            Ok(a) => {
                authorizers.insert(name.clone(), Arc::new(a));
            }
            Err((key, message)) => errors.push(ConfigError::new(
                format!("authorizers.{name}{key}"),
                message,
            )),
        }
    }
    let (certificates, certificates_ok) =
        match crate::tls::compile(&config.certificates, &config.tls) {
            Ok(store) => (store, true),
            Err(errs) => {
                errors.extend(errs.into_iter().map(|(k, m)| ConfigError::new(k, m)));
                (crate::tls::CertStore::default(), false)
            }
        };
    for (i, l) in config.listeners.iter().enumerate() {
        if let Some(Err((key, message))) = l.tls.as_ref().map(crate::tls::listener::check) {
            errors.push(ConfigError::new(
                format!("listeners[{i}].tls{key}"),
                message,
            ));
        }
        let default = l.tls.as_ref().and_then(|t| t.default_certificate.as_ref());
        if let Some(name) = default {
            if certificates.get(name).is_none() && certificates_ok {
                errors.push(ConfigError::new(
                    format!("listeners[{i}].tls.default_certificate"),
                    format!("unknown certificate {name:?}"),
                ));
            }
        }
    }
    let hosts = match crate::tls::policy::HostPolicies::compile(&config.hosts) {
        Ok(h) => h,
        Err((k, m)) => {
            errors.push(ConfigError::new(k, m));
            Default::default()
        }
    };
    let mut router = Router::default();
    let mut routes = Vec::with_capacity(config.routes.len());
    for (i, rc) in config.routes.iter().enumerate() {
        match compile_route(rc, &pools, &policies, &authorizers, reg) {
            Ok((spec, route)) => {
                let route = Arc::new(route);
                router.insert(&spec, route.clone());
                routes.push(route);
            }
            Err((key, message)) => {
                errors.push(ConfigError::new(format!("routes[{i}]{key}"), message))
            }
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let mut pools: Vec<Arc<Pool>> = pools.into_values().collect();
    pools.sort_by(|a, b| a.name.cmp(&b.name));
    let mut authorizers: Vec<Arc<Authorizer>> = authorizers.into_values().collect();
    authorizers.sort_by(|a, b| a.name.cmp(&b.name));
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
    for cert in certificates.entries() {
        reg.metrics.certificate_expiry(&cert.name, cert.not_after);
    }
    let certificate_files_hash = certificates.content_hash;
    Ok(Snapshot {
        version: version_of(text),
        loaded_at: SystemTime::now(),
        router,
        routes,
        pools,
        authorizers,
        certificates,
        certificate_files_hash,
        hosts,
        identity_headers,
        unrouted: reg.metrics.route("-"),
        access_log: config.access_log.enabled,
    })
}

type CompileError = (String, String);

fn compile_route(
    rc: &RouteConfig,
    pools: &HashMap<&str, Arc<Pool>>,
    policies: &HashMap<&str, Arc<Policy>>,
    authorizers: &HashMap<String, Arc<Authorizer>>,
    reg: &Registries,
) -> Result<(RouteSpec, Route), CompileError> {
    let limits = rc
        .limits
        .iter()
        .map(|name| {
            policies
                .get(name.as_str())
                .cloned()
                .ok_or_else(|| (".limits".to_string(), format!("unknown limit {name:?}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let auth = rc
        .auth
        .as_ref()
        .map(|a| crate::auth::compile_route(&rc.name, a, authorizers, &reg.metrics))
        .transpose()?;
    if let Some(p) = limits
        .iter()
        .find(|p| p.keyed_by_consumer() && auth.is_none())
    {
        return Err((
            ".limits".to_string(),
            format!(
                "limit {:?} counts per consumer, but the route has no `auth` to name one",
                p.name
            ),
        ));
    }
    let (limits, limits_before_auth): (Vec<_>, Vec<_>) =
        limits.into_iter().partition(|p| p.keyed_by_consumer());
    let hosts = rc
        .hosts
        .iter()
        .map(|h| HostPattern::parse(h).map_err(|e| (".hosts".to_string(), e)))
        .collect::<Result<Vec<_>, _>>()?;
    let path = match (&rc.path, &rc.path_prefix) {
        (Some(p), _) => PathPattern::Exact(p.clone()),
        (None, Some(p)) => PathPattern::Prefix(trim_prefix(p).to_string()),
        (None, None) => PathPattern::Prefix("/".to_string()),
    };
    let methods = rc
        .methods
        .iter()
        .map(|m| {
            Method::from_bytes(m.to_ascii_uppercase().as_bytes())
                .map_err(|_| (".methods".to_string(), format!("invalid method {m:?}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let action = match (&rc.upstream, &rc.respond) {
        (Some(name), _) => {
            let pool = pools.get(name.as_str()).ok_or_else(|| {
                (
                    ".upstream".to_string(),
                    format!("unknown upstream {name:?}"),
                )
            })?;
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
        (None, Some(r)) => RouteAction::Respond(compile_response(r)?),
        (None, None) => {
            return Err((
                String::new(),
                "a route needs `upstream` or `respond`".into(),
            ))
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
    Ok((spec, route))
}

fn compile_response(r: &config::RespondConfig) -> Result<FixedResponse, CompileError> {
    let status = StatusCode::from_u16(r.status)
        .map_err(|_| (".respond.status".to_string(), "invalid status".to_string()))?;
    let mut headers = Vec::with_capacity(r.headers.len());
    for (name, value) in &r.headers {
        let bad = || {
            (
                format!(".respond.headers.{name}"),
                "invalid header".to_string(),
            )
        };
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| bad())?;
        let value = HeaderValue::from_str(value).map_err(|_| bad())?;
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
    pub fn new(snapshot: Snapshot) -> Self {
        Self {
            current: ArcSwap::from_pointee(snapshot),
        }
    }

    /// A cheap, short-lived view (background tasks).
    pub fn load(&self) -> Guard<Arc<Snapshot>> {
        self.current.load()
    }

    /// An owned handle a request keeps until it ends.
    pub fn load_full(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    pub fn store(&self, snapshot: Snapshot) {
        self.current.store(Arc::new(snapshot));
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

/// Load, validate and compile the file at `path`.
pub fn load_file(path: &Path, reg: &Registries) -> Result<Snapshot, ConfigErrors> {
    let (config, text) = config::load(path)?;
    compile(&config, &text, reg).map_err(|errors| ConfigErrors {
        file: path.to_path_buf(),
        errors,
    })
}
