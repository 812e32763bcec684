//! Building authorizers from their validated config. Everything that can be checked without
//! files was checked by `config` validation; what can fail here is reading key files (JWKS,
//! PEM, API key lists) and what they contain.

use super::jwks::{self, KeySet, Keys, RemoteSource};
use super::{api_key, external, jwt, rules, source, AuthMetrics, AuthRegistry, Authorizer};
use super::{AuthorizerKind, RouteAuth};
use crate::config::{
    family, ApiKeyConfig, AuthFailMode, AuthorizerConfig, ConfigError, ExternalAuthConfig,
    JwtConfig, KeyPath, MissingKeys, RouteAuthConfig, ScopesMode,
};
use crate::observe::metrics::Metrics;
use http::{HeaderName, HeaderValue};
use std::collections::HashMap;
use std::sync::Arc;

/// Compile one authorizer; `path` is its `authorizers.NAME`.
pub fn compile(
    name: &str,
    path: &KeyPath,
    config: &AuthorizerConfig,
    registry: &AuthRegistry,
    metrics: &Metrics,
) -> Result<Authorizer, ConfigError> {
    match config {
        AuthorizerConfig::Jwt(c) => compile_jwt(name, path, c, registry, metrics),
        AuthorizerConfig::ApiKey(c) => compile_api_key(name, path, c),
        AuthorizerConfig::External(c) => Ok(compile_external(name, c)),
    }
}

fn read(path: KeyPath, file: &std::path::Path) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(file)
        .map_err(|e| ConfigError::new(path, format!("cannot read {}: {e}", file.display())))
}

fn compile_jwt(
    name: &str,
    path: &KeyPath,
    c: &JwtConfig,
    registry: &AuthRegistry,
    metrics: &Metrics,
) -> Result<Authorizer, ConfigError> {
    let algorithms: Vec<_> = c.algorithms.iter().map(|a| a.0).collect();
    // Where remote keys come from: (discovery issuer, JWKS URL); `None` for local keys.
    let origin = match (c.discovery, &c.issuer, &c.jwks_url) {
        (true, Some(issuer), _) => Some((Some(issuer.clone()), None)),
        (false, _, Some(url)) => Some((None, Some(url.clone()))),
        _ => None,
    };
    let key_set = match origin {
        Some((discovery_issuer, jwks_url)) => {
            let source = RemoteSource {
                discovery_issuer,
                jwks_url,
                allow_http: c.allow_http,
                refresh: c.refresh_interval,
                min_refresh: c.min_refresh_interval,
                max_refresh: c.max_refresh_interval,
                timeout: c.fetch_timeout,
            };
            registry.key_set(name, source, metrics)
        }
        None => Arc::new(KeySet::fixed(name, local_keys(path, c)?)),
    };
    if c.audiences.is_empty() {
        tracing::warn!(
            authorizer = name,
            "no `audiences`: tokens the issuer made for any other client are accepted too"
        );
    }
    let forward: Vec<(String, HeaderName)> = c
        .forward_claims
        .iter()
        .map(|(claim, header)| (claim.clone(), header.0.clone()))
        .collect();
    let sets: Vec<HeaderName> = forward.iter().map(|(_, h)| h.clone()).collect();
    // "Do not pass the token upstream", wherever it was read from (cookies aside: a cookie
    // header carries other cookies too).
    let (strip, strip_query) = if c.strip_authorization {
        credential_places(&c.sources)
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
        sources: c.sources.clone(),
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

/// Keys that do not change at run time: a JWKS file, a PEM public key or a shared secret.
fn local_keys(path: &KeyPath, c: &JwtConfig) -> Result<Keys, ConfigError> {
    if let Some(file) = &c.jwks_file {
        let at = path.key("jwks_file");
        return jwks::parse_jwks(&read(at.clone(), file)?)
            .map_err(|e| ConfigError::new(at, e.to_string()));
    }
    if let Some(file) = &c.public_key_file {
        let at = path.key("public_key_file");
        let pem = read(at.clone(), file)?;
        // Validation made every pinned algorithm one family.
        let fam = c
            .algorithms
            .first()
            .map_or(jwks::Family::Rsa, |a| family(a.0));
        let key = jwks::parse_pem(&pem, fam).map_err(|e| ConfigError::new(at, e.to_string()))?;
        return Ok(Keys::single(key));
    }
    let secret = c.secret.as_ref().map_or("", |s| s.expose());
    Ok(Keys::single(jwks::KeyEntry {
        key: jsonwebtoken::DecodingKey::from_secret(secret.as_bytes()),
        family: jwks::Family::Hmac,
        alg: None,
    }))
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

fn compile_api_key(
    name: &str,
    path: &KeyPath,
    c: &ApiKeyConfig,
) -> Result<Authorizer, ConfigError> {
    let consumer_header = c.consumer_header.0.clone();
    let mut keys = Vec::new();
    for entry in &c.keys {
        // Validation checked the length of keys and the form of digests.
        let digest = match (&entry.key, &entry.sha256) {
            (Some(k), _) => {
                Some(<sha2::Sha256 as sha2::Digest>::digest(k.expose().as_bytes()).into())
            }
            (None, Some(hex)) => api_key::parse_digest(hex),
            (None, None) => None,
        };
        if let Some(digest) = digest {
            keys.push((entry.consumer.clone(), digest));
        }
    }
    if let Some(file) = &c.keys_file {
        let at = path.key("keys_file");
        let text = String::from_utf8(read(at.clone(), file)?).map_err(|_| {
            ConfigError::new(at.clone(), format!("{}: not UTF-8 text", file.display()))
        })?;
        let parsed = api_key::parse_keys_file(&text)
            .map_err(|e| ConfigError::new(at, format!("{}: {e}", file.display())))?;
        keys.extend(parsed);
    }
    let (strip, strip_query) = if c.strip_key {
        credential_places(&c.sources)
    } else {
        (Vec::new(), Vec::new())
    };
    let keys = api_key::ApiKeys::new(c.sources.clone(), keys, &consumer_header)
        .map_err(|e| ConfigError::new(path.key("keys"), e))?;
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

fn compile_external(name: &str, c: &ExternalAuthConfig) -> Authorizer {
    let identity: Vec<HeaderName> = c.identity_headers.iter().map(|h| h.0.clone()).collect();
    let forward: Vec<HeaderName> = c.forward_headers.iter().map(|h| h.0.clone()).collect();
    let consumer_header = c.consumer_header.as_ref().map(|h| h.0.clone());
    let mut sets = forward.clone();
    sets.extend(consumer_header.clone());
    let ext = external::External::new(
        name,
        c.url.clone(),
        identity,
        forward,
        consumer_header,
        c.timeout,
        c.cache_ttl,
        c.deny_cache_ttl,
        c.on_error == AuthFailMode::Allow,
        c.cache_size,
        c.max_concurrent_calls,
    );
    Authorizer {
        name: name.to_string(),
        kind: AuthorizerKind::External(ext),
        strip: Vec::new(),
        strip_query: Vec::new(),
        sets,
        challenge: HeaderValue::from_static("Bearer realm=\"gatehouse\""),
        scheme: "Bearer",
    }
}

/// Compile a route's `auth` against the compiled authorizers; `None` when the authorizer is
/// not among them (validation reported it, or its files failed to load and were reported).
pub fn compile_route(
    route: &str,
    c: &RouteAuthConfig,
    authorizers: &HashMap<String, Arc<Authorizer>>,
    metrics: &Metrics,
) -> Option<RouteAuth> {
    let authorizer = authorizers.get(&c.authorizer)?;
    let rules = rules::Rules::compile(&c.scopes, c.scopes_mode == ScopesMode::Any, &c.claims);
    Some(RouteAuth {
        authorizer: authorizer.clone(),
        rules,
        metrics: AuthMetrics::new(metrics.auth_decisions(), route, &c.authorizer),
    })
}
