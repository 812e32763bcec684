//! Serde types for the TOML file format. These mirror the file one to one; nothing here is
//! read on the request path (see `snapshot.rs` for what the proxy runs on).

use super::values::{HashKey, KeyPart, Window};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The whole configuration file after parsing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Config {
    pub server: ServerConfig,
    pub listeners: Vec<ListenerConfig>,
    pub admin: AdminConfig,
    pub access_log: AccessLogConfig,
    /// Upstream pools by name, sorted so that compiled output is deterministic.
    pub upstreams: BTreeMap<String, UpstreamConfig>,
    /// Throttling policies by name, attached to routes with `limits = [...]`.
    pub limits: BTreeMap<String, LimitConfig>,
    /// The Redis that `backend = "redis"` policies share counters through.
    pub redis: Option<RedisConfig>,
    /// Authorizers by name, attached to routes with `auth = "NAME"`.
    pub authorizers: BTreeMap<String, AuthorizerConfig>,
    /// TLS certificates by name, chosen by SNI on TLS listeners.
    pub certificates: BTreeMap<String, CertificateConfig>,
    /// `[tls]`: settings shared by every TLS listener's certificates.
    pub tls: TlsConfig,
    /// Per-domain policies (`[hosts."api.example.com"]`): HTTPS redirect, HSTS, SNI agreement,
    /// client certificates.
    pub hosts: BTreeMap<String, HostConfig>,
    pub routes: Vec<RouteConfig>,
}

/// `[server]`: process-wide settings handed to Pingora.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Worker threads of the proxy service; 0 means one per core.
    #[serde(default)]
    pub threads: usize,
    /// Let idle worker threads steal tasks from busy ones. Off by default: measured 4% cheaper.
    #[serde(default)]
    pub work_stealing: bool,
    /// Idle upstream connections kept for reuse, across all upstreams. Keep it at or above peak
    /// upstream concurrency, or connections churn.
    #[serde(default = "default_keepalive_pool")]
    pub upstream_keepalive_pool_size: usize,
    /// On SIGTERM, how long `/-/ready` reports 503 while everything still serves, so load
    /// balancers stop sending before the listeners close.
    #[serde(default = "default_shutdown_delay", with = "humantime_serde")]
    pub shutdown_delay: Duration,
    /// After the listeners close (SIGTERM, or SIGQUIT during an upgrade), how long in-flight
    /// requests get to finish. Pingora waits this long even when nothing is in flight.
    #[serde(default = "default_grace_period", with = "humantime_serde")]
    pub grace_period: Duration,
    /// Extra time for worker runtimes to stop after the grace period.
    #[serde(default = "default_shutdown_timeout", with = "humantime_serde")]
    pub graceful_shutdown_timeout: Duration,
    /// Reload the config when the file's content changes (checked every `watch_interval`).
    #[serde(default)]
    pub watch_config: bool,
    #[serde(default = "default_watch_interval", with = "humantime_serde")]
    pub watch_interval: Duration,
    /// Threads that do nothing but TLS handshakes (Pingora's handshake offload pool); 0 does
    /// handshakes on the worker threads. Keeps requests on open connections from queueing
    /// behind handshakes when many clients connect at once.
    #[serde(default)]
    pub tls_handshake_threads: usize,
    /// Where the process writes its pid.
    #[serde(default = "default_pid_file")]
    pub pid_file: PathBuf,
    /// Unix socket used to hand listening sockets to a new binary during an upgrade.
    #[serde(default = "default_upgrade_sock")]
    pub upgrade_sock: PathBuf,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            threads: 0,
            work_stealing: false,
            upstream_keepalive_pool_size: default_keepalive_pool(),
            shutdown_delay: default_shutdown_delay(),
            grace_period: default_grace_period(),
            graceful_shutdown_timeout: default_shutdown_timeout(),
            watch_config: false,
            watch_interval: default_watch_interval(),
            tls_handshake_threads: 0,
            pid_file: default_pid_file(),
            upgrade_sock: default_upgrade_sock(),
        }
    }
}

/// `[[listeners]]`: one listening socket, plain HTTP or TLS.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    /// `ip:port` to bind.
    pub address: SocketAddr,
    /// Serve TLS on this socket (certificates chosen by SNI from `[certificates]`).
    #[serde(default)]
    pub tls: Option<ListenerTlsConfig>,
}

/// TLS settings of one listener. Applied when the listener starts (restart or upgrade).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ListenerTlsConfig {
    /// Lowest protocol version: `"1.2"` (default) or `"1.3"`.
    #[serde(default = "default_tls_min")]
    pub min_version: String,
    /// Offer HTTP/2 through ALPN (HTTP/1.1 stays available).
    #[serde(default = "default_true")]
    pub http2: bool,
    /// Certificate for clients that send no SNI or a name no certificate covers; without it
    /// such handshakes are refused.
    #[serde(default)]
    pub default_certificate: Option<String>,
    /// Client certificates: `none` (default), `optional` (verified when sent) or `required`.
    #[serde(default)]
    pub client_auth: ClientAuth,
    /// PEM bundle of the CAs client certificates must chain to.
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
}

/// Whether a TLS listener asks for client certificates.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    #[default]
    None,
    Optional,
    Required,
}

/// `[certificates.NAME]`: a certificate chain and its key, in PEM.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CertificateConfig {
    /// The certificate followed by its intermediates.
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Names served with it (exact or `*.example.com`); the certificate's DNS names when
    /// empty.
    #[serde(default)]
    pub hosts: Vec<String>,
}

/// `[tls]`: where else certificates come from and how they are watched.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Every `NAME.crt` with a `NAME.key` beside it is loaded as certificate `NAME`.
    #[serde(default)]
    pub certificate_dir: Option<PathBuf>,
    /// Reload when a certificate or key file changes (checked every `server.watch_interval`).
    #[serde(default)]
    pub watch: bool,
}

/// `[hosts."NAME"]`: what a domain requires. NAME is exact or `*.example.com`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HostConfig {
    /// Answer plain-HTTP requests with a 308 to the same URL over HTTPS.
    #[serde(default)]
    pub https_redirect: bool,
    /// Port in the redirect target.
    #[serde(default = "default_https_port")]
    pub https_port: u16,
    /// `Strict-Transport-Security` on HTTPS responses.
    #[serde(default)]
    pub hsts: Option<HstsConfig>,
    /// Refuse (421) HTTPS requests whose Host differs from the TLS SNI (domain fronting).
    #[serde(default)]
    pub strict_sni: bool,
    /// Client certificate needed for this domain: `none`, `optional`, `required` (403 without
    /// a verified one; the listener must ask for certificates).
    #[serde(default)]
    pub client_cert: ClientAuth,
}

/// HSTS header settings.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HstsConfig {
    #[serde(default = "default_hsts_max_age", with = "humantime_serde")]
    pub max_age: Duration,
    #[serde(default)]
    pub include_subdomains: bool,
    #[serde(default)]
    pub preload: bool,
}

/// `[admin]`: the operations listener (metrics, health, readiness).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    #[serde(default = "default_true")]
    pub enabled: bool,
    #[serde(default = "default_admin_address")]
    pub address: SocketAddr,
    /// Bearer token for the read-only endpoints (`/metrics`, `/-/config`, `/-/routes`,
    /// `/-/upstreams`). Required, with `admin_token`, when `address` is not loopback.
    #[serde(default)]
    pub read_token: Option<Secret>,
    /// Bearer token for changes (`POST /-/reload`); also allowed on the read-only endpoints.
    #[serde(default)]
    pub admin_token: Option<Secret>,
    /// Append one JSON line per applied config (time, version, source, what changed).
    #[serde(default)]
    pub audit_log: Option<PathBuf>,
}

/// A secret from the config file: `"env:NAME"` reads the environment variable `NAME` when the
/// config is loaded; anything else is the literal value. Never printed: `Debug` shows
/// `<redacted>`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Secret {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let value = match s.strip_prefix("env:") {
            Some(var) => {
                std::env::var(var).map_err(|_| format!("environment variable {var} is not set"))?
            }
            None => s,
        };
        Ok(Self(value))
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            address: default_admin_address(),
            read_token: None,
            admin_token: None,
            audit_log: None,
        }
    }
}

/// `[access_log]`: one JSON line per request.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AccessLogConfig {
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// File to append to; standard output when absent.
    #[serde(default)]
    pub path: Option<PathBuf>,
}

impl Default for AccessLogConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            path: None,
        }
    }
}

/// `[upstreams.NAME]`: a pool of targets that routes send requests to.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    pub targets: Vec<TargetConfig>,
    #[serde(default)]
    pub balance: Balance,
    /// What consistent hashing hashes: `client_ip`, `path`, or `header:NAME`.
    #[serde(default)]
    pub hash_key: Option<HashKey>,
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
    #[serde(default = "default_io_timeout", with = "humantime_serde")]
    pub read_timeout: Duration,
    #[serde(default = "default_io_timeout", with = "humantime_serde")]
    pub write_timeout: Duration,
    /// How long an idle keep-alive connection to a target stays in the pool.
    #[serde(default = "default_idle_timeout", with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Further targets tried after a connect failure (nothing was sent, so it is always safe).
    #[serde(default = "default_retries")]
    pub connect_retries: u8,
    #[serde(default)]
    pub health_check: Option<HealthCheckConfig>,
    #[serde(default)]
    pub passive: PassiveHealthConfig,
    /// Connect to the targets over TLS.
    #[serde(default)]
    pub tls: Option<UpstreamTlsConfig>,
    /// Also send the RFC 7239 `Forwarded` header. Off by default: `X-Forwarded-For`,
    /// `-Proto` and `-Host` carry the same facts and are what most upstreams read.
    #[serde(default)]
    pub forwarded_header: bool,
    /// Keep header names spelled as they arrived, in both directions. Off by default: names go
    /// out in lower case (as HTTP/2 always sends them), which spares Pingora's per-header case
    /// bookkeeping on every request; turn it on for an upstream or client that compares header
    /// names case-sensitively.
    #[serde(default)]
    pub preserve_header_case: bool,
}

/// TLS to upstream targets.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTlsConfig {
    /// Name sent as SNI and checked against the certificate; the target's host by default.
    #[serde(default)]
    pub sni: Option<String>,
    /// Verify the target's certificate and name (on by default).
    #[serde(default = "default_true")]
    pub verify: bool,
    /// PEM bundle of CAs to trust instead of the system's.
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// Client certificate chain and key presented to the targets (mTLS).
    #[serde(default)]
    pub client_cert: Option<PathBuf>,
    #[serde(default)]
    pub client_key: Option<PathBuf>,
}

/// One upstream server.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    /// `host:port`; names are resolved when the config is loaded, never per request.
    pub address: String,
    #[serde(default = "default_weight")]
    pub weight: u32,
}

/// How a pool spreads requests over its targets.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Balance {
    /// Weighted round robin.
    #[default]
    RoundRobin,
    /// Ketama consistent hashing on `hash_key`.
    ConsistentHash,
}

/// Active HTTP health checks of every target of a pool.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HealthCheckConfig {
    #[serde(default = "default_health_path")]
    pub path: String,
    /// Host header of the check; the target address when absent.
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default = "default_health_interval", with = "humantime_serde")]
    pub interval: Duration,
    #[serde(default = "default_health_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Consecutive passes that bring an unhealthy target back.
    #[serde(default = "default_healthy_threshold")]
    pub healthy_threshold: u32,
    /// Consecutive failures that take a healthy target out.
    #[serde(default = "default_unhealthy_threshold")]
    pub unhealthy_threshold: u32,
}

/// Passive failure handling: connect failures seen by real traffic eject a target for a while.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PassiveHealthConfig {
    /// Consecutive connect failures that eject a target; 0 turns passive ejection off.
    #[serde(default = "default_max_fails")]
    pub max_fails: u32,
    /// How long an ejected target gets no traffic.
    #[serde(default = "default_fail_timeout", with = "humantime_serde")]
    pub fail_timeout: Duration,
}

impl Default for PassiveHealthConfig {
    fn default() -> Self {
        Self {
            max_fails: default_max_fails(),
            fail_timeout: default_fail_timeout(),
        }
    }
}

/// `[[routes]]`: which requests go where.
#[derive(Debug, Clone, Deserialize, PartialEq)]
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
    /// Requests must pass this authorizer (`auth = "NAME"` or a table with requirements).
    #[serde(default, deserialize_with = "route_auth")]
    pub auth: Option<RouteAuthConfig>,
}

/// `[limits.NAME]`: one throttling policy. Exactly one of `rate`, `quota`, `concurrency`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LimitConfig {
    /// Requests per `period` on average (GCRA).
    #[serde(default)]
    pub rate: Option<u64>,
    #[serde(default = "default_limit_period", with = "humantime_serde")]
    pub period: Duration,
    /// Requests allowed at once on top of the rate.
    #[serde(default)]
    pub burst: u64,
    /// Requests per calendar `window` (UTC).
    #[serde(default)]
    pub quota: Option<u64>,
    #[serde(default)]
    pub window: Option<Window>,
    /// Requests in flight at once.
    #[serde(default)]
    pub concurrency: Option<u64>,
    /// What is counted separately: any of `route`, `client_ip`, `consumer`, `header:NAME`,
    /// combined.
    #[serde(default = "default_limit_key")]
    pub key: Vec<KeyPart>,
    /// Count and log would-be rejections without rejecting.
    #[serde(default)]
    pub dry_run: bool,
    /// Send `RateLimit-Policy` and `RateLimit` on allowed responses too (always on 429).
    #[serde(default = "default_true")]
    pub headers: bool,
    /// Most keys held in memory; beyond it, idle keys and then the soonest to expire go.
    #[serde(default = "default_max_keys")]
    pub max_keys: usize,
    /// `local` (this process) or `redis` (shared by every instance using the same Redis).
    #[serde(default)]
    pub backend: LimitBackend,
    /// What a `redis` policy does while Redis cannot answer.
    #[serde(default)]
    pub on_redis_error: FailMode,
}

/// Where a policy keeps its counters.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum LimitBackend {
    #[default]
    Local,
    Redis,
}

/// Allow or refuse requests while the shared counters are unreachable.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum FailMode {
    #[default]
    FailOpen,
    FailClosed,
}

/// `[redis]`: connection for shared limits.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://[:password@]host:port/db`. The password never appears in logs or the admin API.
    pub url: Secret,
    /// Longest wait for one check (and for a connection attempt, times four).
    #[serde(default = "default_redis_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    #[serde(default = "default_redis_prefix")]
    pub key_prefix: String,
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
    pub algorithms: Vec<String>,
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
    pub sources: Vec<String>,
    /// Claim (dotted path for nested claims) → header sent upstream.
    #[serde(default)]
    pub forward_claims: BTreeMap<String, String>,
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
    pub sources: Vec<String>,
    #[serde(default)]
    pub keys: Vec<ApiKeyEntry>,
    /// One key per line: `CONSUMER SHA256HEX` (`#` starts a comment).
    #[serde(default)]
    pub keys_file: Option<PathBuf>,
    /// Header that carries the consumer name upstream.
    #[serde(default = "default_consumer_header")]
    pub consumer_header: String,
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
    pub identity_headers: Vec<String>,
    /// Headers of an allowing response copied to the upstream request.
    #[serde(default)]
    pub forward_headers: Vec<String>,
    /// Header of an allowing response that names the consumer.
    #[serde(default)]
    pub consumer_header: Option<String>,
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
fn route_auth<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<RouteAuthConfig>, D::Error> {
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

fn default_true() -> bool {
    true
}
fn default_keepalive_pool() -> usize {
    4096
}
fn default_shutdown_delay() -> Duration {
    Duration::from_secs(0)
}
fn default_grace_period() -> Duration {
    Duration::from_secs(5)
}
fn default_shutdown_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_watch_interval() -> Duration {
    Duration::from_secs(2)
}
fn default_pid_file() -> PathBuf {
    PathBuf::from("/tmp/gatehouse.pid")
}
fn default_upgrade_sock() -> PathBuf {
    PathBuf::from("/tmp/gatehouse_upgrade.sock")
}
fn default_admin_address() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9901))
}
fn default_connect_timeout() -> Duration {
    Duration::from_secs(2)
}
fn default_io_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_idle_timeout() -> Duration {
    Duration::from_secs(60)
}
fn default_retries() -> u8 {
    1
}
fn default_weight() -> u32 {
    1
}
fn default_health_path() -> String {
    "/".to_string()
}
fn default_health_interval() -> Duration {
    Duration::from_secs(5)
}
fn default_health_timeout() -> Duration {
    Duration::from_secs(2)
}
fn default_healthy_threshold() -> u32 {
    2
}
fn default_unhealthy_threshold() -> u32 {
    3
}
fn default_max_fails() -> u32 {
    3
}
fn default_fail_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_redis_timeout() -> Duration {
    Duration::from_millis(50)
}
fn default_redis_prefix() -> String {
    "gatehouse:".to_string()
}
fn default_limit_period() -> Duration {
    Duration::from_secs(1)
}
fn default_limit_key() -> Vec<KeyPart> {
    vec![KeyPart::ClientIp]
}
fn default_max_keys() -> usize {
    100_000
}
fn default_status() -> u16 {
    200
}
fn default_leeway() -> Duration {
    Duration::from_secs(30)
}
fn default_token_sources() -> Vec<String> {
    vec!["bearer".to_string()]
}
fn default_api_key_sources() -> Vec<String> {
    vec!["header:x-api-key".to_string()]
}
fn default_consumer_claim() -> String {
    "sub".to_string()
}
fn default_consumer_header() -> String {
    "x-consumer-id".to_string()
}
fn default_identity_headers() -> Vec<String> {
    vec!["authorization".to_string()]
}
fn default_refresh_interval() -> Duration {
    Duration::from_secs(600)
}
fn default_min_refresh() -> Duration {
    Duration::from_secs(30)
}
fn default_max_refresh() -> Duration {
    Duration::from_secs(86_400)
}
fn default_fetch_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_auth_cache_size() -> usize {
    10_000
}
fn default_external_timeout() -> Duration {
    Duration::from_millis(500)
}
fn default_external_ttl() -> Duration {
    Duration::from_secs(60)
}
fn default_external_deny_ttl() -> Duration {
    Duration::from_secs(5)
}
fn default_tls_min() -> String {
    "1.2".to_string()
}
fn default_https_port() -> u16 {
    443
}
fn default_hsts_max_age() -> Duration {
    Duration::from_secs(365 * 86_400)
}
fn default_external_concurrency() -> usize {
    256
}
