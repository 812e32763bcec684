//! `[authorizers.NAME]`: JWT, API keys and external authorizers. Everything that can be known
//! without fetching keys or reading key files is checked here, so compiling an authorizer only
//! fails on what its files contain.

use super::{
    display_name, duration_in, token_name, Config, KeyPath, Problems, DAY, MINUTE, MS, SECOND,
};
use crate::config::{
    check_url, family, ApiKeyConfig, AuthorizerConfig, ExternalAuthConfig, Family, Header,
    JwtConfig,
};
use crate::hash::parse_sha256_hex;
use std::time::Duration;

pub(super) fn validate(config: &Config, p: &mut Problems) {
    let top = KeyPath::top("authorizers");
    for (name, authorizer) in &config.authorizers {
        let path = top.key(name);
        // Authorizer names are metric labels.
        token_name(p, path.clone(), "authorizer", name);
        match authorizer {
            AuthorizerConfig::Jwt(c) => jwt(p, &path, c),
            AuthorizerConfig::ApiKey(c) => api_key(p, &path, c),
            AuthorizerConfig::External(c) => external(p, &path, c),
        }
    }
}

/// A header an authorizer sets upstream.
fn identity_header(p: &mut Problems, path: KeyPath, header: &Header) {
    if super::GATEWAY_REQUEST_HEADERS.contains(&header.0.as_str()) {
        p.at(
            path,
            format!(
                "{:?} is set by the gateway or frames the request; pick another header",
                header.0.as_str()
            ),
        );
    }
}

fn url(p: &mut Problems, path: KeyPath, url: &str, allow_http: bool) {
    if let Err(e) = check_url(url, allow_http) {
        p.at(path, e);
    }
}

fn jwt(p: &mut Problems, path: &KeyPath, c: &JwtConfig) {
    let families: Vec<Family> = c.algorithms.iter().map(|a| family(a.0)).collect();
    let hmac = families.contains(&Family::Hmac);
    if c.algorithms.is_empty() {
        p.at(path.key("algorithms"), "pin at least one algorithm");
    } else if hmac && families.iter().any(|f| *f != Family::Hmac) {
        p.at(
            path.key("algorithms"),
            "HS algorithms cannot share an authorizer with public-key algorithms \
             (that is how algorithm confusion attacks work)",
        );
    }
    let chosen = [
        c.discovery,
        c.jwks_url.is_some(),
        c.jwks_file.is_some(),
        c.public_key_file.is_some(),
        c.secret.is_some(),
    ];
    if chosen.iter().filter(|x| **x).count() != 1 {
        p.at(
            path.clone(),
            "set exactly one key source: `discovery = true` (with `issuer`), `jwks_url`, \
             `jwks_file`, `public_key_file` or `secret`",
        );
    } else if !c.algorithms.is_empty() && hmac != c.secret.is_some() {
        p.at(
            path.key(if hmac { "algorithms" } else { "secret" }),
            "HS algorithms take a `secret`, and a `secret` only HS algorithms",
        );
    }
    if c.public_key_file.is_some() && families.iter().any(|f| *f != families[0]) {
        p.at(
            path.key("algorithms"),
            "one PEM key serves one key family; pin algorithms of that family",
        );
    }
    if let Some(secret) = &c.secret {
        if secret.expose().len() < 32 {
            p.at(path.key("secret"), "use at least 32 bytes");
        }
    }
    if c.discovery {
        match &c.issuer {
            Some(issuer) => url(p, path.key("issuer"), issuer, c.allow_http),
            None => p.at(path.key("issuer"), "discovery needs the issuer URL"),
        }
    }
    if let Some(u) = &c.jwks_url {
        url(p, path.key("jwks_url"), u, c.allow_http);
    }
    for (key, value, min, max) in [
        ("refresh_interval", c.refresh_interval, SECOND, 7 * DAY),
        (
            "min_refresh_interval",
            c.min_refresh_interval,
            SECOND,
            7 * DAY,
        ),
        (
            "max_refresh_interval",
            c.max_refresh_interval,
            SECOND,
            7 * DAY,
        ),
        ("fetch_timeout", c.fetch_timeout, MS, MINUTE),
        ("leeway", c.leeway, Duration::ZERO, 10 * MINUTE),
    ] {
        duration_in(p, path.key(key), value, min, max);
    }
    if let Some(max_age) = c.max_age {
        duration_in(p, path.key("max_age"), max_age, SECOND, 3650 * DAY);
    }
    if c.min_refresh_interval > c.max_refresh_interval {
        p.at(
            path.key("min_refresh_interval"),
            "must not exceed max_refresh_interval",
        );
    }
    if c.sources.is_empty() {
        p.at(path.key("sources"), "at least one source is needed");
    }
    for (claim, header) in &c.forward_claims {
        identity_header(p, path.key("forward_claims").key(claim), header);
    }
    if c.cache_size == 0 {
        p.at(path.key("cache_size"), "must be at least 1");
    }
}

fn api_key(p: &mut Problems, path: &KeyPath, c: &ApiKeyConfig) {
    if c.sources.is_empty() {
        p.at(path.key("sources"), "at least one source is needed");
    }
    identity_header(p, path.key("consumer_header"), &c.consumer_header);
    for (i, entry) in c.keys.iter().enumerate() {
        let at = path.key("keys").index(i);
        // Sent upstream in a header, used in limit keys and logs.
        display_name(p, at.key("consumer"), "consumer", &entry.consumer);
        match (&entry.key, &entry.sha256) {
            (Some(k), None) if k.expose().len() < 16 => {
                p.at(at.key("key"), "use at least 16 characters")
            }
            (Some(_), None) => {}
            (None, Some(hex)) if parse_sha256_hex(hex).is_none() => {
                p.at(at.key("sha256"), "not a hex SHA-256 (64 hex digits)")
            }
            (None, Some(_)) => {}
            _ => p.at(at, "set exactly one of `key` and `sha256`"),
        }
    }
    if c.keys.is_empty() && c.keys_file.is_none() {
        p.at(path.clone(), "no keys: set `keys` or `keys_file`");
    }
}

/// Longest an external decision may be cached.
const MAX_CACHE_TTL: Duration = DAY;

fn external(p: &mut Problems, path: &KeyPath, c: &ExternalAuthConfig) {
    url(p, path.key("url"), &c.url, c.allow_http);
    duration_in(p, path.key("timeout"), c.timeout, MS, MINUTE);
    if c.max_concurrent_calls == 0 {
        p.at(path.key("max_concurrent_calls"), "must be at least 1");
    }
    if c.identity_headers.is_empty() {
        p.at(path.key("identity_headers"), "name at least one header");
    }
    for (i, h) in c.forward_headers.iter().enumerate() {
        identity_header(p, path.key("forward_headers").index(i), h);
    }
    if let Some(h) = &c.consumer_header {
        identity_header(p, path.key("consumer_header"), h);
    }
    for (key, value) in [
        ("cache_ttl", c.cache_ttl),
        ("deny_cache_ttl", c.deny_cache_ttl),
    ] {
        duration_in(p, path.key(key), value, Duration::ZERO, MAX_CACHE_TTL);
    }
}
