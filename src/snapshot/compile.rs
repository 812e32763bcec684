//! Compilation: a validated [`Config`] becomes a [`Snapshot`] next to the running one, reading
//! the long-lived [`Registries`] and changing nothing in them; [`resource_problems`] compiles
//! the clean entries of a config that failed validation, on scratch registries.

use super::{FixedResponse, PathRewrite, Registries, Route, RouteAction, Snapshot};
use crate::auth::Authorizer;
use crate::config::{self, Config, ConfigError, KeyPath, RouteConfig};
use crate::cors::CorsPolicy;
use crate::edge::settings::{EdgeSettings, RouteEdge};
use crate::firewall::{Firewall, RoutePlan as FirewallPlan};
use crate::limit::Policy;
use crate::routing::{trim_prefix, HostPattern, PathPattern, RouteSpec, Router};
use crate::transform::HeaderTransform;
use crate::upstream::Pool;
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, StatusCode};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

/// Content hash used as the config version.
pub fn version_of(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    crate::text::hex(&digest[..6])
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
                let path = KeyPath::top("redis").key("url");
                errors.push(ConfigError::new(path, e.to_string()));
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
            Err(e) => errors.push(ConfigError::new(
                KeyPath::top("limits").key(name),
                e.to_string(),
            )),
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
    errors.extend(crate::tls::acme::file_problems(config));
    // Only names from `[tls] certificate_dir` are unknown before the directory is read.
    for (i, l) in config.listeners.iter().enumerate() {
        // The listener reads its CA bundle when it starts; reading it here too makes `check`
        // and reloads report a missing or broken bundle before a restart trips over it.
        if let Some(ca) = l.tls.as_ref().and_then(|t| t.client_ca.as_ref()) {
            if let Err(e) = crate::tls::read_certificates(ca) {
                let path = KeyPath::top("listeners")
                    .index(i)
                    .key("tls")
                    .key("client_ca");
                errors.push(ConfigError::new(path, e.to_string()));
            }
        }
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
    let firewall = match Firewall::compile(
        &config.firewall,
        &reg.firewall,
        &reg.metrics,
        redis.as_ref(),
    ) {
        Ok(f) => f.map(Arc::new),
        Err(e) => {
            errors.push(ConfigError::new(KeyPath::top("firewall").key("rules"), e));
            None
        }
    };
    let cors: HashMap<&str, Arc<CorsPolicy>> = (config.cors.iter())
        .map(|(name, c)| (name.as_str(), Arc::new(CorsPolicy::compile(name, c))))
        .collect();
    let mut identity_headers: Vec<HeaderName> = authorizers
        .values()
        .flat_map(|a| a.sets.iter().cloned())
        .chain([
            crate::headers::CLIENT_CERT_SUBJECT.clone(),
            crate::headers::CLIENT_CERT_FINGERPRINT.clone(),
        ])
        .collect();
    identity_headers.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    identity_headers.dedup();
    let mut router = Router::default();
    let mut routes = Vec::with_capacity(config.routes.len());
    for (i, rc) in config.routes.iter().enumerate() {
        errors.extend(identity_transforms(
            rc,
            &identity_headers,
            &KeyPath::top("routes").index(i),
        ));
        let built = compile_route(rc, &pools, &policies, &authorizers, &config.edge, reg);
        match built.map(|r| r.map(|(spec, route)| (spec, with_firewall(route, rc, &firewall)))) {
            Some(Ok((spec, mut route))) => {
                route.cors = rc.cors.as_deref().and_then(|n| cors.get(n).cloned());
                let route = Arc::new(route);
                router.insert(&spec, route.clone());
                routes.push(route);
            }
            Some(Err(e)) => errors.push(e.under(&KeyPath::top("routes").index(i))),
            // Refers to something that failed above and was reported there.
            None => {}
        }
    }
    let ctx = ApiContext {
        pools: &pools,
        policies: &policies,
        authorizers: &authorizers,
        cors: &cors,
        firewall: &firewall,
        config,
        reg,
    };
    let mut names: std::collections::HashSet<String> =
        routes.iter().map(|r: &Arc<Route>| r.name.clone()).collect();
    for (name, api) in &config.apis {
        match api_routes(name, api, &ctx) {
            Ok(made) => {
                for (spec, route) in made {
                    if !names.insert(route.name.clone()) {
                        errors.push(ConfigError::new(
                            KeyPath::top("apis").key(name).key("openapi"),
                            format!("route name {:?} is taken by another route", route.name),
                        ));
                        continue;
                    }
                    router.insert(&spec, route.clone());
                    routes.push(route);
                }
            }
            Err(e) => errors.extend(e),
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
    let certificate_files_hash = certificates.content_hash;
    let holds_responses = routes.iter().any(|r| r.holds_responses());
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
        edge: EdgeSettings::compile(config),
        firewall,
        edge_refusals: crate::edge::RefusalCounters::new(&reg.metrics.edge_refusals),
        identity_headers,
        unrouted: reg.metrics.route("-"),
        contract_violations: crate::contract::ViolationCounter(
            reg.metrics.contract_violations.clone(),
        ),
        holds_responses,
        ocsp_stapling: config.tls.ocsp_stapling,
        acme: crate::tls::acme::AcmePlan::of(config).map(Arc::new),
        access_log: config.access_log.enabled,
        tracing: config
            .tracing
            .as_ref()
            .map(|t| crate::observe::trace::Sampling::new(t.sampler, t.ratio, t.trust_incoming)),
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
    edge: &config::EdgeConfig,
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
        (Some(p), _) => match crate::routing::template::parse(p) {
            // `/users/{id}`: validation checked the syntax of templates.
            Ok(segments) if p.contains('{') && crate::routing::template::has_params(&segments) => {
                PathPattern::Template(p.clone(), segments)
            }
            _ => PathPattern::Exact(p.clone()),
        },
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
        case_insensitive: rc.case_insensitive,
    };
    let route = Route {
        name: rc.name.clone(),
        spec: spec.clone(),
        action,
        limits_before_auth,
        limits,
        auth,
        edge: RouteEdge::compile(rc, edge),
        metrics: reg.metrics.route(&rc.name),
        firewall: FirewallPlan::default(),
        cors: None,
        request_headers: transform(&rc.request_headers),
        response_headers: transform(&rc.response_headers),
        operation: None,
    };
    Some(Ok((spec, route)))
}

/// What API routes are compiled with: the compiled entries they refer to.
struct ApiContext<'a> {
    pools: &'a HashMap<&'a str, Arc<Pool>>,
    policies: &'a HashMap<&'a str, Arc<Policy>>,
    authorizers: &'a HashMap<String, Arc<Authorizer>>,
    cors: &'a HashMap<&'a str, Arc<CorsPolicy>>,
    firewall: &'a Option<Arc<Firewall>>,
    config: &'a Config,
    reg: &'a Registries,
}

/// The routes of `[apis.NAME]`, one per operation of its document, named `NAME.operationId`.
/// They are compiled as `[[routes]]` entries are, with the operation's template as the path.
fn api_routes(
    name: &str,
    api: &config::ApiConfig,
    c: &ApiContext<'_>,
) -> Result<Vec<(RouteSpec, Arc<Route>)>, Vec<ConfigError>> {
    let at = KeyPath::top("apis").key(name);
    let operations = crate::contract::load(name, api)
        .map_err(|e| vec![ConfigError::new(at.key("openapi"), e.to_string())])?;
    let mut errors = Vec::new();
    let mut out = Vec::with_capacity(operations.len());
    let mut schemes_checked = std::collections::BTreeSet::new();
    for op in operations {
        for credential in &op.credentials {
            if !schemes_checked.insert(credential.scheme.clone()) {
                continue;
            }
            if let Some(problem) = credential_problem(api, credential, c.config) {
                errors.push(ConfigError::new(
                    at.key("authorizers").key(&credential.scheme),
                    problem,
                ));
            }
        }
        let rc = RouteConfig {
            name: format!("{name}.{}", op.id),
            hosts: api.hosts.clone(),
            path: Some(op.template.clone()),
            methods: vec![op.method.as_str().to_string()],
            upstream: Some(api.upstream.clone()),
            limits: api.limits.clone(),
            cors: api.cors.clone(),
            auth: op.auth.clone(),
            ..RouteConfig::default()
        };
        let problem = shadowed_by(&rc, &c.config.routes).or_else(|| api_route_problem(&rc, c));
        if let Some(problem) = problem {
            errors.push(ConfigError::new(
                at.key("openapi"),
                format!("operation {:?}: {problem}", op.id),
            ));
            continue;
        }
        let built = compile_route(
            &rc,
            c.pools,
            c.policies,
            c.authorizers,
            &c.config.edge,
            c.reg,
        );
        let Some(Ok((spec, route))) = built else {
            // Refers to an entry that failed to compile and was reported there.
            continue;
        };
        let mut route = with_firewall(route, &rc, c.firewall);
        if let (true, Some(base), RouteAction::Proxy { rewrite, .. }) =
            (api.strip_base_path, &api.base_path, &mut route.action)
        {
            *rewrite = PathRewrite::StripBase(base.len());
        }
        route.cors = api.cors.as_deref().and_then(|n| c.cors.get(n).cloned());
        route.operation = Some(Arc::new(op));
        out.push((spec, Arc::new(route)));
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// The document tells clients to send a scheme's credential somewhere its authorizer does not
/// look: every client that follows the document would be refused.
fn credential_problem(
    api: &config::ApiConfig,
    credential: &crate::contract::Credential,
    config: &config::Config,
) -> Option<String> {
    let name = api.authorizers.get(&credential.scheme)?;
    let sources = match config.authorizers.get(name)? {
        config::AuthorizerConfig::Jwt(jwt) => &jwt.sources,
        config::AuthorizerConfig::ApiKey(keys) => &keys.sources,
        // What an external authorizer reads is its own business.
        config::AuthorizerConfig::External(_) => return None,
    };
    if sources.contains(&credential.source) {
        return None;
    }
    let reads: Vec<String> = sources.iter().map(ToString::to_string).collect();
    Some(format!(
        "the document's scheme {:?} sends its credential as `{}`, but authorizer {name:?} reads \
         only {}: add `{}` to its `sources`",
        credential.scheme,
        credential.source,
        reads.join(", "),
        credential.source
    ))
}

/// A `[[routes]]` entry with the same hosts, exact path and method as the operation's route
/// would always be chosen first, so the operation could never be reached.
fn shadowed_by(rc: &RouteConfig, routes: &[RouteConfig]) -> Option<String> {
    let hosts = |h: &[String]| {
        let mut h: Vec<String> = h.iter().map(|x| x.to_ascii_lowercase()).collect();
        h.sort();
        h
    };
    let (path, method) = (rc.path.as_deref()?, rc.methods.first()?);
    let i = routes.iter().position(|r| {
        r.path.as_deref() == Some(path)
            && hosts(&r.hosts) == hosts(&rc.hosts)
            && (r.methods.is_empty() || r.methods.iter().any(|m| m.eq_ignore_ascii_case(method)))
    })?;
    Some(format!(
        "{method} {path} is already served by routes[{i}] {:?}",
        routes[i].name
    ))
}

/// What an operation asks that its route cannot do: scopes from an authorizer that is not a
/// JWT one, or a per-consumer limit on an open operation.
fn api_route_problem(rc: &RouteConfig, c: &ApiContext<'_>) -> Option<String> {
    if let Some(auth) = &rc.auth {
        let jwt = matches!(
            c.config.authorizers.get(&auth.authorizer),
            Some(config::AuthorizerConfig::Jwt(_))
        );
        if !auth.scopes.is_empty() && !jwt {
            return Some(format!(
                "requires scopes {:?}, which only a jwt authorizer checks, but its scheme maps to {:?}",
                auth.scopes, auth.authorizer
            ));
        }
    }
    match (c.config.per_consumer_limit(&rc.limits), &rc.auth) {
        (Some(limit), None) => Some(format!(
            "limit {limit:?} counts per consumer, but the operation has no security requirement"
        )),
        _ => None,
    }
}

/// A route's header transform; `None` when it changes nothing.
fn transform(config: &config::HeaderTransformConfig) -> Option<HeaderTransform> {
    Some(HeaderTransform::compile(config)).filter(|t| !t.is_empty())
}

/// Request transforms that name a header an authorizer sets: the gateway's value would win
/// anyway, but a rename onto it reads like a way around authentication, so it is refused.
fn identity_transforms(
    rc: &RouteConfig,
    identity: &[HeaderName],
    at: &KeyPath,
) -> Vec<ConfigError> {
    let t = &rc.request_headers;
    let named = (t.remove.iter())
        .map(|n| ("remove", n))
        .chain(
            t.rename
                .iter()
                .flat_map(|(a, b)| [("rename", a), ("rename", b)]),
        )
        .chain(t.set.keys().map(|n| ("set", n)))
        .chain(t.add.keys().map(|n| ("add", n)));
    named
        .filter(|(_, n)| identity.iter().any(|h| h.as_str().eq_ignore_ascii_case(n)))
        .map(|(op, n)| {
            ConfigError::new(
                at.key("request_headers").key(op),
                format!("{n:?} is an identity header an authorizer sets; it cannot be transformed"),
            )
        })
        .collect()
}

/// The route with what the firewall applies to it.
fn with_firewall(mut route: Route, rc: &RouteConfig, firewall: &Option<Arc<Firewall>>) -> Route {
    if let Some(f) = firewall {
        route.firewall = f.plan(&rc.name, &rc.firewall_skip);
    }
    route
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

/// What compiling the entries free of `known` problems reports: unreadable or mismatched
/// files, names that do not resolve. Built on scratch registries and thrown away, so nothing
/// shared changes; routes and limits are left out (they only refer to other entries).
pub(super) fn resource_problems(config: &Config, known: &[ConfigError]) -> Vec<ConfigError> {
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
    for (name, api) in &config.apis {
        let path = KeyPath::top("apis").key(name);
        if clean(&path) {
            if let Err(e) = crate::contract::load(name, api) {
                out.push(ConfigError::new(path.key("openapi"), e.to_string()));
            }
        }
    }
    if clean(&KeyPath::top("acme")) {
        out.extend(crate::tls::acme::file_problems(config));
    }
    if clean(&KeyPath::top("certificates")) && clean(&KeyPath::top("tls")) {
        if let Err(errors) = crate::tls::compile(&config.certificates, &config.tls) {
            out.extend(errors);
        }
    }
    out
}
