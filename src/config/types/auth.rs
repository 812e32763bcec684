//! `[authorizers.NAME]`: JWT, API keys, external authorizers.

use super::defaults::*;
use super::server::Secret;
use crate::config::{CredentialSource, Header, JwtAlgorithm};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// `[authorizers.NAME]`: how requests prove who they are. The `type` key picks the variant.
#[derive(Debug, Clone, PartialEq)]
pub enum AuthorizerConfig {
    Jwt(Box<JwtConfig>),
    ApiKey(ApiKeyConfig),
    External(ExternalAuthConfig),
}

/// `type = "jwt"`: signed JSON Web Tokens, keys from OIDC discovery, a JWKS URL, a local file
/// or a shared secret.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct JwtConfig {
    /// Accepted `alg` values, pinned: a token naming anything else is refused.
    pub algorithms: Vec<JwtAlgorithm>,
    /// Required `iss`; with `discovery = true` also where the OIDC metadata is fetched from.
    #[serde(default)]
    pub issuer: Option<String>,
    /// Fetch `{issuer}/.well-known/openid-configuration` and take its `jwks_uri`.
    #[serde(default)]
    pub discovery: bool,
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// A local JWKS (JSON) file.
    #[serde(default)]
    pub jwks_file: Option<PathBuf>,
    /// A local PEM public key (RSA, EC or Ed25519), for tokens with any or no `kid`.
    #[serde(default)]
    pub public_key_file: Option<PathBuf>,
    /// Shared secret for HS256/384/512 (at least 32 bytes).
    #[serde(default)]
    pub secret: Option<Secret>,
    /// Accepted `aud` values: the token must name at least one.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// Clock skew allowed on `exp`, `nbf` and `iat`.
    #[serde(default = "default_leeway", with = "humantime_serde")]
    pub leeway: Duration,
    /// Refuse tokens issued (`iat`) longer ago than this.
    #[serde(default, with = "humantime_serde")]
    pub max_age: Option<Duration>,
    /// Claims that must be present besides `exp`.
    #[serde(default)]
    pub required_claims: Vec<String>,
    /// Refuse tokens without `exp` (tokens that never expire). On by default.
    #[serde(default = "default_true")]
    pub require_exp: bool,
    /// Where the token is read from, first match wins: `bearer`, `header:NAME`, `query:NAME`,
    /// `cookie:NAME`.
    #[serde(default = "default_token_sources")]
    pub sources: Vec<CredentialSource>,
    /// Claim (dotted path for nested claims) → header sent upstream.
    #[serde(default)]
    pub forward_claims: BTreeMap<String, Header>,
    /// Claim naming the consumer, for throttling keys and logs.
    #[serde(default = "default_consumer_claim")]
    pub consumer_claim: String,
    /// Remove `Authorization` before proxying.
    #[serde(default)]
    pub strip_authorization: bool,
    /// How often keys are refetched when the IdP sends no `Cache-Control: max-age`.
    #[serde(default = "default_refresh_interval", with = "humantime_serde")]
    pub refresh_interval: Duration,
    /// Lower bound for refetching: also the retry delay after a failed fetch and the most
    /// often an unknown `kid` may trigger a fetch.
    #[serde(default = "default_min_refresh", with = "humantime_serde")]
    pub min_refresh_interval: Duration,
    /// Upper bound applied to `Cache-Control: max-age`.
    #[serde(default = "default_max_refresh", with = "humantime_serde")]
    pub max_refresh_interval: Duration,
    #[serde(default = "default_fetch_timeout", with = "humantime_serde")]
    pub fetch_timeout: Duration,
    /// Allow `http://` issuer and JWKS URLs on other hosts than loopback.
    #[serde(default)]
    pub allow_http: bool,
    /// Status while no keys could be fetched yet: `unavailable` (503) or `deny` (401).
    #[serde(default)]
    pub on_missing_keys: MissingKeys,
    /// Verified tokens kept, so a repeated token is not verified again (never past `exp`).
    #[serde(default = "default_auth_cache_size")]
    pub cache_size: usize,
}

/// What a JWT route answers before any key could be loaded.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum MissingKeys {
    #[default]
    Unavailable,
    Deny,
}

/// `type = "api_key"`: static keys, each naming a consumer.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyConfig {
    /// Where the key is read from: `header:NAME`, `query:NAME`, `cookie:NAME`, `bearer`.
    #[serde(default = "default_api_key_sources")]
    pub sources: Vec<CredentialSource>,
    #[serde(default)]
    pub keys: Vec<ApiKeyEntry>,
    /// One key per line: `CONSUMER SHA256HEX` (`#` starts a comment).
    #[serde(default)]
    pub keys_file: Option<PathBuf>,
    /// Header that carries the consumer name upstream.
    #[serde(default = "default_consumer_header")]
    pub consumer_header: Header,
    /// Remove the key from the request before proxying.
    #[serde(default = "default_true")]
    pub strip_key: bool,
}

/// One API key: the key itself (`env:NAME` to read it from the environment) or its SHA-256.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyEntry {
    pub consumer: String,
    #[serde(default)]
    pub key: Option<Secret>,
    /// Lowercase hex SHA-256 of the key.
    #[serde(default)]
    pub sha256: Option<String>,
}

/// `type = "external"`: an HTTP service decides (like a cloud gateway's custom authorizer).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ExternalAuthConfig {
    /// Called with `GET`, the identity headers and `X-Forwarded-Method`/`-Uri`/`-Host`.
    pub url: String,
    /// Request headers sent to the authorizer; their values are the cache key. A request
    /// with none of them is refused without a call.
    #[serde(default = "default_identity_headers")]
    pub identity_headers: Vec<Header>,
    /// Headers of an allowing response copied to the upstream request.
    #[serde(default)]
    pub forward_headers: Vec<Header>,
    /// Header of an allowing response that names the consumer.
    #[serde(default)]
    pub consumer_header: Option<Header>,
    #[serde(default = "default_external_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// How long an allow is reused for the same identity on the same route; 0 disables.
    #[serde(default = "default_external_ttl", with = "humantime_serde")]
    pub cache_ttl: Duration,
    /// How long a deny is reused.
    #[serde(default = "default_external_deny_ttl", with = "humantime_serde")]
    pub deny_cache_ttl: Duration,
    #[serde(default = "default_auth_cache_size")]
    pub cache_size: usize,
    /// Most calls in flight at once; a request beyond it is treated like a failed call
    /// (`on_error`), so a flood of fresh identities cannot pile up on the authorizer.
    #[serde(default = "default_external_concurrency")]
    pub max_concurrent_calls: usize,
    /// When the authorizer fails or times out: `deny` (503) or `allow`.
    #[serde(default)]
    pub on_error: AuthFailMode,
    #[serde(default)]
    pub allow_http: bool,
}

/// Decision when an external authorizer cannot answer.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum AuthFailMode {
    #[default]
    Deny,
    Allow,
}
