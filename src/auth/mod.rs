//! Authentication and authorization per route: JWT (with OIDC discovery and JWKS refresh),
//! API keys and an external HTTP authorizer.
//!
//! `[authorizers.NAME]` compile into [`Authorizer`]s; a route's `auth` compiles into a
//! [`RouteAuth`] (the authorizer plus the scopes and claims the route requires). Requests that
//! do not pass never reach the upstream, whatever their method or `Upgrade` header, because
//! the check runs in `request_filter` before anything else is done with the request.
//!
//! Remote key sets outlive reloads in [`AuthRegistry`]; the key refresh background
//! service (`services::key_refresh`) keeps them fresh.

pub mod api_key;
pub mod external;
pub mod jwks;
pub mod jwt;
pub mod rules;
pub mod source;

use crate::config::{
    ApiKeyConfig, AuthFailMode, AuthorizerConfig, ExternalAuthConfig, JwtConfig, MissingKeys,
    RouteAuthConfig, ScopesMode,
};
use crate::observe::metrics::Metrics;
use http::{HeaderName, HeaderValue};
use jsonwebtoken::Algorithm;
use jwks::{Family, KeySet, Keys, RemoteSource};
use pingora::http::RequestHeader;
use prometheus::{IntCounter, IntCounterVec};
use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

/// Why a request was allowed or refused. The label set of
/// `gatehouse_auth_decisions_total{result}` is exactly these, so it stays bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Allowed,
    MissingCredentials,
    Malformed,
    AlgorithmNotAllowed,
    UnknownKey,
    InvalidSignature,
    Expired,
    NotYetValid,
    InvalidIssuedAt,
    InvalidIssuer,
    InvalidAudience,
    MissingClaim,
    InsufficientScope,
    ClaimMismatch,
    KeysUnavailable,
    InvalidKey,
    Denied,
    Forbidden,
    AuthorizerError,
}

impl Reason {
    pub const ALL: [Reason; 19] = [
        Self::Allowed,
        Self::MissingCredentials,
        Self::Malformed,
        Self::AlgorithmNotAllowed,
        Self::UnknownKey,
        Self::InvalidSignature,
        Self::Expired,
        Self::NotYetValid,
        Self::InvalidIssuedAt,
        Self::InvalidIssuer,
        Self::InvalidAudience,
        Self::MissingClaim,
        Self::InsufficientScope,
        Self::ClaimMismatch,
        Self::KeysUnavailable,
        Self::InvalidKey,
        Self::Denied,
        Self::Forbidden,
        Self::AuthorizerError,
    ];

    /// Metric label and access-log value.
    pub fn label(self) -> &'static str {
        match self {
            Self::Allowed => "allowed",
            Self::MissingCredentials => "missing_credentials",
            Self::Malformed => "malformed",
            Self::AlgorithmNotAllowed => "algorithm_not_allowed",
            Self::UnknownKey => "unknown_key",
            Self::InvalidSignature => "invalid_signature",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::InvalidIssuedAt => "invalid_iat",
            Self::InvalidIssuer => "invalid_issuer",
            Self::InvalidAudience => "invalid_audience",
            Self::MissingClaim => "missing_claim",
            Self::InsufficientScope => "insufficient_scope",
            Self::ClaimMismatch => "claim_mismatch",
            Self::KeysUnavailable => "keys_unavailable",
            Self::InvalidKey => "invalid_key",
            Self::Denied => "denied",
            Self::Forbidden => "forbidden",
            Self::AuthorizerError => "authorizer_error",
        }
    }

    /// Client-facing text: says what is wrong without echoing anything the client sent.
    pub fn message(self) -> &'static str {
        match self {
            Self::Allowed => "allowed",
            Self::MissingCredentials => "missing credentials",
            Self::Malformed => "malformed credentials",
            Self::AlgorithmNotAllowed => "token algorithm not allowed",
            Self::UnknownKey => "token signed with an unknown key",
            Self::InvalidSignature => "invalid token signature",
            Self::Expired => "token expired",
            Self::NotYetValid => "token not yet valid",
            Self::InvalidIssuedAt => "token issued at an invalid time",
            Self::InvalidIssuer => "token issuer not accepted",
            Self::InvalidAudience => "token audience not accepted",
            Self::MissingClaim => "token lacks a required claim",
            Self::InsufficientScope => "insufficient scope",
            Self::ClaimMismatch => "forbidden",
            Self::KeysUnavailable => "authorization keys unavailable",
            Self::InvalidKey => "invalid API key",
            Self::Denied => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::AuthorizerError => "authorizer unavailable",
        }
    }

    fn index(self) -> usize {
        Self::ALL.iter().position(|r| *r == self).unwrap_or(0)
    }
}

/// Who the request is, as established by an authorizer.
#[derive(Debug, Default)]
pub struct Identity {
    /// Consumer name for throttling keys and the access log.
    pub consumer: Option<Arc<str>>,
    /// Headers set on the upstream request.
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

/// A refusal, ready to be written.
#[derive(Debug)]
pub struct AuthRejection {
    pub reason: Reason,
    pub status: u16,
    pub www_authenticate: Option<HeaderValue>,
}

/// The kinds of authorizer.
pub enum AuthorizerKind {
    Jwt(jwt::JwtAuthorizer),
    ApiKey(api_key::ApiKeys),
    External(external::External),
}

/// A compiled `[authorizers.NAME]`.
pub struct Authorizer {
    pub name: String,
    pub kind: AuthorizerKind,
    /// Request headers removed before proxying (the credential, when configured).
    pub strip: Vec<HeaderName>,
    /// Query parameters removed before proxying (a credential read from the query).
    pub strip_query: Vec<String>,
    /// Headers this authorizer sets upstream; removed from every client request first.
    pub sets: Vec<HeaderName>,
    /// `WWW-Authenticate` of a 401 without an error code.
    challenge: HeaderValue,
    scheme: &'static str,
}

impl Authorizer {
    pub fn remote_keys(&self) -> Option<&Arc<KeySet>> {
        match &self.kind {
            AuthorizerKind::Jwt(j) if j.keys.is_remote() => Some(&j.keys),
            _ => None,
        }
    }
}

/// Decision counters of one route, created on first use.
pub struct AuthMetrics {
    family: IntCounterVec,
    route: String,
    authorizer: String,
    cells: [OnceLock<IntCounter>; Reason::ALL.len()],
}

impl AuthMetrics {
    pub fn new(family: IntCounterVec, route: &str, authorizer: &str) -> Self {
        Self {
            family,
            route: route.to_string(),
            authorizer: authorizer.to_string(),
            cells: std::array::from_fn(|_| OnceLock::new()),
        }
    }

    fn count(&self, reason: Reason) {
        self.cells[reason.index()]
            .get_or_init(|| {
                self.family
                    .with_label_values(&[&self.route, &self.authorizer, reason.label()])
            })
            .inc();
    }
}

/// A route's `auth`.
pub struct RouteAuth {
    pub authorizer: Arc<Authorizer>,
    rules: rules::Rules,
    metrics: AuthMetrics,
}

/// What [`authenticate`] needs of the request besides its header.
pub struct RequestInfo<'a> {
    pub route: &'a str,
    pub host: &'a str,
    pub request_id: &'a HeaderValue,
}

/// Authenticate and authorize one request for its route.
pub async fn authenticate(
    auth: &RouteAuth,
    req: &RequestHeader,
    info: &RequestInfo<'_>,
) -> Result<Arc<Identity>, AuthRejection> {
    let result = match &auth.authorizer.kind {
        AuthorizerKind::Jwt(jwt) => match jwt.authenticate(req).await {
            Ok(verified) => auth
                .rules
                .check(&verified)
                .map(|()| verified.identity.clone()),
            Err(reason) => Err(reason),
        },
        AuthorizerKind::ApiKey(keys) => keys.check(req),
        AuthorizerKind::External(ext) => {
            let call = external::Call {
                route: info.route,
                req,
                host: info.host,
                request_id: info.request_id,
            };
            ext.check(&call).await
        }
    };
    match result {
        Ok(identity) => {
            auth.metrics.count(Reason::Allowed);
            Ok(identity)
        }
        Err(reason) => {
            auth.metrics.count(reason);
            Err(auth.rejection(reason))
        }
    }
}

impl RouteAuth {
    fn rejection(&self, reason: Reason) -> AuthRejection {
        let a = &self.authorizer;
        let status = match reason {
            Reason::InsufficientScope | Reason::ClaimMismatch | Reason::Forbidden => 403,
            Reason::AuthorizerError => 503,
            Reason::KeysUnavailable => match &a.kind {
                AuthorizerKind::Jwt(j) => j.missing_keys_status,
                _ => 503,
            },
            _ => 401,
        };
        let www_authenticate = match (status, reason) {
            (403, Reason::InsufficientScope) => self.rules.scope_challenge.clone(),
            (401, Reason::MissingCredentials | Reason::Denied) => Some(a.challenge.clone()),
            (401, _) => HeaderValue::from_str(&format!(
                "{} realm=\"gatehouse\", error=\"invalid_token\", error_description=\"{}\"",
                a.scheme,
                reason.message()
            ))
            .ok(),
            _ => None,
        };
        AuthRejection {
            reason,
            status,
            www_authenticate,
        }
    }
}

/// The process-wide HTTP client for JWKS, discovery and external authorizers. No proxy from
/// the environment (these are calls to known services) and no redirects.
pub fn http_client() -> Result<&'static reqwest::Client, String> {
    static CLIENT: OnceLock<Result<reqwest::Client, String>> = OnceLock::new();
    CLIENT
        .get_or_init(|| {
            reqwest::Client::builder()
                .no_proxy()
                .redirect(reqwest::redirect::Policy::none())
                .pool_idle_timeout(Duration::from_secs(60))
                .user_agent(concat!("gatehouse/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// Remote key sets by (authorizer name, source), held weakly: a set lives as long as a
/// snapshot uses it, and a reload that keeps the source keeps the keys.
#[derive(Default)]
pub struct AuthRegistry {
    key_sets: Mutex<HashMap<(String, RemoteSource), Weak<KeySet>>>,
}

impl AuthRegistry {
    fn key_set(&self, name: &str, source: RemoteSource, metrics: &Metrics) -> Arc<KeySet> {
        let mut sets = self.key_sets.lock().unwrap_or_else(|e| e.into_inner());
        sets.retain(|_, w| w.strong_count() > 0);
        let key = (name.to_string(), source);
        if let Some(set) = sets.get(&key).and_then(Weak::upgrade) {
            return set;
        }
        // Same authorizer and URLs with other timings: start from the keys already held, so
        // changing a timeout cannot leave the route without keys while the IdP is down.
        let held = sets
            .iter()
            .filter(|((n, s), _)| n == name && s.same_origin(&key.1))
            .find_map(|(_, w)| w.upgrade())
            .map(|old| old.current().clone());
        let set = KeySet::remote(name, key.1.clone(), metrics.key_set(name));
        if let Some(keys) = held {
            set.seed(keys);
        }
        let set = Arc::new(set);
        sets.insert(key, Arc::downgrade(&set));
        set
    }
}

type CompileError = (String, String);

/// Longest an external decision may be cached.
const MAX_CACHE_TTL: Duration = Duration::from_secs(86_400);

fn err(key: &str, message: impl Into<String>) -> CompileError {
    (key.to_string(), message.into())
}

fn header_name(key: &str, name: &str) -> Result<HeaderName, CompileError> {
    HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| err(key, format!("{name:?} is not a valid header name")))
}

/// Headers an authorizer may not set upstream: framing and routing headers (setting them from
/// a claim would let a token holder smuggle requests) and those the gateway itself sets.
const RESERVED: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "upgrade",
    "te",
    "trailer",
    "keep-alive",
    "proxy-connection",
    "expect",
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-request-id",
];

/// A header an authorizer sets upstream.
fn identity_header(key: &str, name: &str) -> Result<HeaderName, CompileError> {
    let header = header_name(key, name)?;
    if RESERVED.contains(&header.as_str()) {
        return Err(err(
            key,
            format!("{name:?} is set by the gateway or frames the request; pick another header"),
        ));
    }
    Ok(header)
}

fn sources(key: &str, list: &[String]) -> Result<Vec<source::Source>, CompileError> {
    if list.is_empty() {
        return Err(err(key, "at least one source is needed"));
    }
    list.iter()
        .map(|s| source::Source::parse(s).map_err(|e| err(key, e)))
        .collect()
}

/// Check a URL the gateway will call: `https`, or `http` to a loopback host or with
/// `allow_http`.
pub(crate) fn check_url(key: &str, url: &str, allow_http: bool) -> Result<(), CompileError> {
    let parsed = reqwest::Url::parse(url).map_err(|e| err(key, format!("invalid URL: {e}")))?;
    match parsed.scheme() {
        "https" => Ok(()),
        "http" => {
            let loopback = match parsed.host() {
                Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
                Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
                Some(url::Host::Domain(d)) => d == "localhost",
                None => false,
            };
            if loopback || allow_http {
                Ok(())
            } else {
                Err(err(
                    key,
                    "plain http would let the network forge keys and decisions; use https \
                     (or set allow_http = true)",
                ))
            }
        }
        other => Err(err(key, format!("unsupported scheme {other:?}"))),
    }
}

/// Compile one authorizer. Errors are (key under `authorizers.NAME`, message).
pub fn compile(
    name: &str,
    config: &AuthorizerConfig,
    registry: &AuthRegistry,
    metrics: &Metrics,
) -> Result<Authorizer, CompileError> {
    match config {
        AuthorizerConfig::Jwt(c) => compile_jwt(name, c, registry, metrics),
        AuthorizerConfig::ApiKey(c) => compile_api_key(name, c),
        AuthorizerConfig::External(c) => compile_external(name, c),
    }
}

fn compile_jwt(
    name: &str,
    c: &JwtConfig,
    registry: &AuthRegistry,
    metrics: &Metrics,
) -> Result<Authorizer, CompileError> {
    if c.algorithms.is_empty() {
        return Err(err(".algorithms", "pin at least one algorithm"));
    }
    let mut algorithms = Vec::with_capacity(c.algorithms.len());
    for a in &c.algorithms {
        let alg = Algorithm::from_str(a).map_err(|_| {
            err(
                ".algorithms",
                format!(
                    "{a:?} is not one of RS256, RS384, RS512, PS256, PS384, PS512, ES256, \
                     ES384, EdDSA, HS256, HS384, HS512"
                ),
            )
        })?;
        algorithms.push(alg);
    }
    let families: Vec<Family> = algorithms.iter().map(|a| jwks::family(*a)).collect();
    let hmac = families.contains(&Family::Hmac);
    if hmac && families.iter().any(|f| *f != Family::Hmac) {
        return Err(err(
            ".algorithms",
            "HS algorithms cannot share an authorizer with public-key algorithms \
             (that is how algorithm confusion attacks work)",
        ));
    }
    let chosen = [
        c.discovery,
        c.jwks_url.is_some(),
        c.jwks_file.is_some(),
        c.public_key_file.is_some(),
        c.secret.is_some(),
    ];
    if chosen.iter().filter(|x| **x).count() != 1 {
        return Err(err(
            "",
            "set exactly one key source: `discovery = true` (with `issuer`), `jwks_url`, \
             `jwks_file`, `public_key_file` or `secret`",
        ));
    }
    if hmac != c.secret.is_some() {
        return Err(err(
            if hmac { ".algorithms" } else { ".secret" },
            "HS algorithms take a `secret`, and a `secret` only HS algorithms",
        ));
    }
    for (key, d) in [
        (".refresh_interval", c.refresh_interval),
        (".min_refresh_interval", c.min_refresh_interval),
        (".fetch_timeout", c.fetch_timeout),
    ] {
        if d.is_zero() {
            return Err(err(key, "must be greater than zero"));
        }
    }
    if c.min_refresh_interval > c.max_refresh_interval {
        return Err(err(
            ".min_refresh_interval",
            "must not exceed max_refresh_interval",
        ));
    }
    if c.leeway > Duration::from_secs(600) {
        return Err(err(".leeway", "at most 10m"));
    }
    let read = |key: &str, path: &std::path::Path| {
        std::fs::read(path).map_err(|e| err(key, format!("cannot read {}: {e}", path.display())))
    };
    // Where remote keys come from: (discovery issuer, JWKS URL); `None` for local keys.
    let origin = if c.discovery {
        let issuer = c
            .issuer
            .as_ref()
            .ok_or_else(|| err(".issuer", "discovery needs the issuer URL"))?;
        check_url(".issuer", issuer, c.allow_http)?;
        Some((Some(issuer.clone()), None))
    } else if let Some(url) = &c.jwks_url {
        check_url(".jwks_url", url, c.allow_http)?;
        Some((None, Some(url.clone())))
    } else {
        None
    };
    let keys = origin.map(|(discovery_issuer, jwks_url)| RemoteSource {
        discovery_issuer,
        jwks_url,
        allow_http: c.allow_http,
        refresh: c.refresh_interval,
        min_refresh: c.min_refresh_interval,
        max_refresh: c.max_refresh_interval,
        timeout: c.fetch_timeout,
    });
    let key_set = match keys {
        Some(source) => registry.key_set(name, source, metrics),
        None => {
            let fixed = if let Some(path) = &c.jwks_file {
                jwks::parse_jwks(&read(".jwks_file", path)?).map_err(|e| err(".jwks_file", e))?
            } else if let Some(path) = &c.public_key_file {
                let pem = read(".public_key_file", path)?;
                if families.iter().any(|f| *f != families[0]) {
                    return Err(err(
                        ".algorithms",
                        "one PEM key serves one key family; pin algorithms of that family",
                    ));
                }
                Keys::single(
                    jwks::parse_pem(&pem, families[0]).map_err(|e| err(".public_key_file", e))?,
                )
            } else if let Some(secret) = &c.secret {
                if secret.expose().len() < 32 {
                    return Err(err(".secret", "use at least 32 bytes"));
                }
                Keys::single(jwks::KeyEntry {
                    key: jsonwebtoken::DecodingKey::from_secret(secret.expose().as_bytes()),
                    family: Family::Hmac,
                    alg: None,
                })
            } else {
                return Err(err("", "no key source"));
            };
            Arc::new(KeySet::fixed(name, fixed))
        }
    };
    if c.audiences.is_empty() {
        tracing::warn!(
            authorizer = name,
            "no `audiences`: tokens the issuer made for any other client are accepted too"
        );
    }
    let token_sources = sources(".sources", &c.sources)?;
    let mut forward = Vec::with_capacity(c.forward_claims.len());
    for (claim, header) in &c.forward_claims {
        let key = format!(".forward_claims.{claim}");
        forward.push((claim.clone(), identity_header(&key, header)?));
    }
    let sets: Vec<HeaderName> = forward.iter().map(|(_, h)| h.clone()).collect();
    // "Do not pass the token upstream", wherever it was read from (cookies aside: a cookie
    // header carries other cookies too).
    let (strip, strip_query) = if c.strip_authorization {
        credential_places(&token_sources)
    } else {
        (Vec::new(), Vec::new())
    };
    let settings = jwt::JwtSettings {
        algorithms,
        issuer: c.issuer.clone(),
        audiences: c.audiences.clone(),
        leeway: c.leeway.as_secs(),
        max_age: c.max_age.map(|d| d.as_secs()),
        required: {
            let mut r = c.required_claims.clone();
            if c.require_exp && !r.iter().any(|x| x == "exp") {
                r.push("exp".into());
            }
            r
        },
        sources: token_sources,
        forward,
        consumer_claim: c.consumer_claim.clone(),
        missing_keys_status: match c.on_missing_keys {
            MissingKeys::Unavailable => 503,
            MissingKeys::Deny => 401,
        },
        cache_size: c.cache_size,
    };
    Ok(Authorizer {
        name: name.to_string(),
        kind: AuthorizerKind::Jwt(jwt::JwtAuthorizer::new(key_set, settings)),
        strip,
        strip_query,
        sets,
        challenge: HeaderValue::from_static("Bearer realm=\"gatehouse\""),
        scheme: "Bearer",
    })
}

/// The headers and query parameters credentials are read from.
fn credential_places(sources: &[source::Source]) -> (Vec<HeaderName>, Vec<String>) {
    let headers = sources.iter().filter_map(|s| s.header()).collect();
    let query = sources
        .iter()
        .filter_map(|s| match s {
            source::Source::Query(name) => Some(name.clone()),
            _ => None,
        })
        .collect();
    (headers, query)
}

fn compile_api_key(name: &str, c: &ApiKeyConfig) -> Result<Authorizer, CompileError> {
    let key_sources = sources(".sources", &c.sources)?;
    let consumer_header = identity_header(".consumer_header", &c.consumer_header)?;
    let mut keys = Vec::new();
    for (i, entry) in c.keys.iter().enumerate() {
        let key = format!(".keys[{i}]");
        let digest = match (&entry.key, &entry.sha256) {
            (Some(k), None) => {
                if k.expose().len() < 16 {
                    return Err(err(&format!("{key}.key"), "use at least 16 characters"));
                }
                api_key::parse_digest(&api_key::digest_hex(k.expose()))
            }
            (None, Some(hex)) => api_key::parse_digest(hex),
            _ => return Err(err(&key, "set exactly one of `key` and `sha256`")),
        }
        .ok_or_else(|| {
            err(
                &format!("{key}.sha256"),
                "not a hex SHA-256 (64 hex digits)",
            )
        })?;
        keys.push((entry.consumer.clone(), digest));
    }
    if let Some(path) = &c.keys_file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| err(".keys_file", format!("cannot read {}: {e}", path.display())))?;
        let parsed = api_key::parse_keys_file(&text)
            .map_err(|e| err(".keys_file", format!("{}: {e}", path.display())))?;
        keys.extend(parsed);
    }
    if keys.is_empty() {
        return Err(err("", "no keys: set `keys` or `keys_file`"));
    }
    let (strip, strip_query) = if c.strip_key {
        credential_places(&key_sources)
    } else {
        (Vec::new(), Vec::new())
    };
    let keys =
        api_key::ApiKeys::new(key_sources, keys, &consumer_header).map_err(|e| err(".keys", e))?;
    Ok(Authorizer {
        name: name.to_string(),
        kind: AuthorizerKind::ApiKey(keys),
        strip,
        strip_query,
        sets: vec![consumer_header],
        challenge: HeaderValue::from_static("ApiKey realm=\"gatehouse\""),
        scheme: "ApiKey",
    })
}

fn compile_external(name: &str, c: &ExternalAuthConfig) -> Result<Authorizer, CompileError> {
    check_url(".url", &c.url, c.allow_http)?;
    if c.timeout.is_zero() {
        return Err(err(".timeout", "must be greater than zero"));
    }
    if c.max_concurrent_calls == 0 {
        return Err(err(".max_concurrent_calls", "must be at least 1"));
    }
    if c.identity_headers.is_empty() {
        return Err(err(".identity_headers", "name at least one header"));
    }
    let identity = c
        .identity_headers
        .iter()
        .map(|h| header_name(".identity_headers", h))
        .collect::<Result<Vec<_>, _>>()?;
    let forward = c
        .forward_headers
        .iter()
        .map(|h| identity_header(".forward_headers", h))
        .collect::<Result<Vec<_>, _>>()?;
    let consumer_header = c
        .consumer_header
        .as_ref()
        .map(|h| identity_header(".consumer_header", h))
        .transpose()?;
    if c.cache_ttl > MAX_CACHE_TTL || c.deny_cache_ttl > MAX_CACHE_TTL {
        return Err(err(".cache_ttl", "at most 1 day"));
    }
    let mut sets = forward.clone();
    sets.extend(consumer_header.clone());
    let ext = external::External::new(
        name,
        c.url.clone(),
        identity,
        forward.clone(),
        consumer_header,
        c.timeout,
        c.cache_ttl,
        c.deny_cache_ttl,
        c.on_error == AuthFailMode::Allow,
        c.cache_size,
        c.max_concurrent_calls,
    );
    Ok(Authorizer {
        name: name.to_string(),
        kind: AuthorizerKind::External(ext),
        strip: Vec::new(),
        strip_query: Vec::new(),
        sets,
        challenge: HeaderValue::from_static("Bearer realm=\"gatehouse\""),
        scheme: "Bearer",
    })
}

/// Compile a route's `auth` against the compiled authorizers. Errors are (key under
/// `routes[i]`, message).
pub fn compile_route(
    route: &str,
    c: &RouteAuthConfig,
    authorizers: &HashMap<String, Arc<Authorizer>>,
    metrics: &Metrics,
) -> Result<RouteAuth, CompileError> {
    let authorizer = authorizers.get(&c.authorizer).ok_or_else(|| {
        err(
            ".auth.authorizer",
            format!("unknown authorizer {:?}", c.authorizer),
        )
    })?;
    let is_jwt = matches!(authorizer.kind, AuthorizerKind::Jwt(_));
    if !is_jwt && (!c.scopes.is_empty() || !c.claims.is_empty()) {
        return Err(err(".auth", "`scopes` and `claims` need a jwt authorizer"));
    }
    let rules = rules::Rules::compile(&c.scopes, c.scopes_mode == ScopesMode::Any, &c.claims)
        .map_err(|e| err(".auth.scopes", e))?;
    Ok(RouteAuth {
        authorizer: authorizer.clone(),
        rules,
        metrics: AuthMetrics::new(metrics.auth_decisions(), route, &c.authorizer),
    })
}

#[cfg(test)]
mod tests;
