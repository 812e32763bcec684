//! `[[routes]]` and what a route asks of authorization.

use super::defaults::*;
use serde::Deserialize;
use std::collections::BTreeMap;

/// `[[routes]]`: which requests go where.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Unique name, used in metrics and logs.
    pub name: String,
    /// Exact (`api.example.com`) or wildcard (`*.example.com`) hosts; any host when empty.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Exact path match.
    #[serde(default)]
    pub path: Option<String>,
    /// Segment-wise prefix match: `/api` matches `/api` and `/api/x`, not `/apix`.
    #[serde(default)]
    pub path_prefix: Option<String>,
    /// Allowed methods; any method when empty. `GET` implies `HEAD`.
    #[serde(default)]
    pub methods: Vec<String>,
    /// Upstream pool to proxy to.
    #[serde(default)]
    pub upstream: Option<String>,
    /// Fixed response instead of an upstream.
    #[serde(default)]
    pub respond: Option<RespondConfig>,
    /// Remove the matched `path_prefix` before proxying.
    #[serde(default)]
    pub strip_prefix: bool,
    /// Replace the matched `path_prefix` with this before proxying.
    #[serde(default)]
    pub prefix_rewrite: Option<String>,
    /// Names of `[limits.NAME]` policies checked for every request of this route, in order.
    #[serde(default)]
    pub limits: Vec<String>,
    /// A `[cors.NAME]` policy: preflights answered here, CORS headers on every answer.
    #[serde(default)]
    pub cors: Option<String>,
    /// Edits of the request's headers on the way upstream.
    #[serde(default)]
    pub request_headers: HeaderTransformConfig,
    /// Edits of the upstream response's headers on the way back.
    #[serde(default)]
    pub response_headers: HeaderTransformConfig,
    /// Requests must pass this authorizer (`auth = "NAME"` or a table with requirements).
    #[serde(default, deserialize_with = "route_auth")]
    pub auth: Option<RouteAuthConfig>,
    /// Largest request body (413); `[edge].max_body_bytes` when absent.
    #[serde(default)]
    pub max_body_bytes: Option<u64>,
    /// Longest pause while the client sends the body (408); `[edge].body_timeout` when absent.
    #[serde(default, with = "humantime_serde")]
    pub body_timeout: Option<std::time::Duration>,
    /// When not empty, only clients in these CIDRs may use the route (403 otherwise).
    #[serde(default)]
    pub ip_allow: Vec<String>,
    /// Clients in these CIDRs are refused on this route (403).
    #[serde(default)]
    pub ip_deny: Vec<String>,
    /// Path spellings refused by default that this route's upstream reads as the gateway does.
    #[serde(default)]
    pub allow_in_path: Vec<super::PathException>,
    /// Match `path`/`path_prefix` ignoring ASCII case, for upstreams that do.
    #[serde(default)]
    pub case_insensitive: bool,
    /// Managed firewall protections that do not apply to this route (an upstream that takes
    /// HTML, say, under `xss`).
    #[serde(default)]
    pub firewall_skip: Vec<super::ManagedProtection>,
}

/// A fixed response for mock routes.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RespondConfig {
    #[serde(default = "default_status")]
    pub status: u16,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub body: String,
}

/// A route's `auth`: the authorizer and what the identity must have.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteAuthConfig {
    pub authorizer: String,
    /// Scopes the token must carry (`scope` string or `scp` array).
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub scopes_mode: ScopesMode,
    /// Claims (dotted paths) that must equal the value, or contain it when the claim is an
    /// array.
    #[serde(default)]
    pub claims: BTreeMap<String, ClaimValue>,
}

/// `auth = "NAME"` is short for `auth = { authorizer = "NAME" }`.
pub(super) fn route_auth<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<RouteAuthConfig>, D::Error> {
    struct NameOrTable;
    impl<'de> serde::de::Visitor<'de> for NameOrTable {
        type Value = RouteAuthConfig;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an authorizer name or a table with `authorizer`")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(RouteAuthConfig {
                authorizer: v.to_string(),
                scopes: Vec::new(),
                scopes_mode: ScopesMode::All,
                claims: BTreeMap::new(),
            })
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
            RouteAuthConfig::deserialize(serde::de::value::MapAccessDeserializer::new(map))
        }
    }
    d.deserialize_any(NameOrTable).map(Some)
}

/// Whether all listed scopes are needed or any one.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ScopesMode {
    #[default]
    All,
    Any,
}

/// An expected claim value.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum ClaimValue {
    String(String),
    Integer(i64),
    Bool(bool),
}

/// `request_headers` / `response_headers` of a route, applied in this order: `remove`,
/// `rename`, `set` (replacing), `add` (appending). Headers the gateway sets itself (identity,
/// forwarding, request id, `RateLimit`, CORS, HSTS) cannot be named: the gateway's own values
/// always win.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HeaderTransformConfig {
    #[serde(default)]
    pub remove: Vec<String>,
    /// Old name → new name; the values move as they are.
    #[serde(default)]
    pub rename: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    pub set: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    pub add: std::collections::BTreeMap<String, String>,
}
