//! `[edge]` and `[listeners.edge]`: connection and request limits, trusted proxies, IP lists.

use serde::Deserialize;
use std::time::Duration;

/// `[edge]`: what every listener enforces before a request reaches routing, unless the
/// listener's own `[listeners.edge]` says otherwise. The defaults are safe for an API gateway
/// on the internet (see docs/edge.md for each one and its nginx and Envoy counterparts).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EdgeConfig {
    /// Addresses (CIDRs) of proxies and load balancers in front of the gateway whose
    /// `X-Forwarded-For` (or `Forwarded`) is believed. Empty: the TCP peer is the client.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// The header trusted proxies put the client address in.
    #[serde(default)]
    pub client_ip_header: ClientIpHeader,
    /// The whole request head must arrive within this, from its first byte (slowloris): 408.
    #[serde(default = "default_header_timeout", with = "humantime_serde")]
    pub header_timeout: Duration,
    /// How long a connection may sit idle between requests before it is closed.
    #[serde(default = "default_keepalive_timeout", with = "humantime_serde")]
    pub keepalive_timeout: Duration,
    /// Requests served on one connection; the last answer carries `Connection: close`.
    #[serde(default = "default_max_requests_per_connection")]
    pub max_requests_per_connection: u32,
    /// Largest request head (request line and header fields): 431.
    #[serde(default = "default_max_header_bytes")]
    pub max_header_bytes: usize,
    /// Most header fields in one request: 431.
    #[serde(default = "default_max_headers")]
    pub max_headers: usize,
    /// Longest request target: 414.
    #[serde(default = "default_max_uri_bytes")]
    pub max_uri_bytes: usize,
    /// Open connections on the listener; 0 derives it from the open-file limit.
    #[serde(default)]
    pub max_connections: usize,
    /// Open connections from one client address; 0 is no limit.
    #[serde(default)]
    pub max_connections_per_ip: usize,
    /// Largest request body a route accepts unless it sets its own `max_body_bytes`.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: u64,
    /// The longest a client may pause while sending a body, unless the route sets its own.
    #[serde(default = "default_body_timeout", with = "humantime_serde")]
    pub body_timeout: Duration,
    /// When not empty, only clients in these CIDRs are served (403 otherwise).
    #[serde(default)]
    pub ip_allow: Vec<String>,
    /// Clients in these CIDRs are refused (403).
    #[serde(default)]
    pub ip_deny: Vec<String>,
}

impl Default for EdgeConfig {
    fn default() -> Self {
        Self {
            trusted_proxies: Vec::new(),
            client_ip_header: ClientIpHeader::default(),
            header_timeout: default_header_timeout(),
            keepalive_timeout: default_keepalive_timeout(),
            max_requests_per_connection: default_max_requests_per_connection(),
            max_header_bytes: default_max_header_bytes(),
            max_headers: default_max_headers(),
            max_uri_bytes: default_max_uri_bytes(),
            max_connections: 0,
            max_connections_per_ip: 0,
            max_body_bytes: default_max_body_bytes(),
            body_timeout: default_body_timeout(),
            ip_allow: Vec::new(),
            ip_deny: Vec::new(),
        }
    }
}

/// Connection and request-head limits of a listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EdgeLimits {
    /// The whole request head must arrive within this, from its first byte (slowloris): 408.
    pub header_timeout: Duration,
    /// How long a connection may sit idle between requests before it is closed.
    pub keepalive_timeout: Duration,
    /// Requests served on one connection; the last answer carries `Connection: close`.
    pub max_requests_per_connection: u32,
    /// Largest request head (request line and header fields): 431.
    pub max_header_bytes: usize,
    /// Most header fields in one request: 431.
    pub max_headers: usize,
    /// Longest request target: 414.
    pub max_uri_bytes: usize,
    /// Open connections on the listener; 0 derives it from the open-file limit.
    pub max_connections: usize,
    /// Open connections from one client address; 0 is no limit.
    pub max_connections_per_ip: usize,
}

impl EdgeConfig {
    /// The limits every listener starts from.
    pub fn limits(&self) -> EdgeLimits {
        EdgeLimits {
            header_timeout: self.header_timeout,
            keepalive_timeout: self.keepalive_timeout,
            max_requests_per_connection: self.max_requests_per_connection,
            max_header_bytes: self.max_header_bytes,
            max_headers: self.max_headers,
            max_uri_bytes: self.max_uri_bytes,
            max_connections: self.max_connections,
            max_connections_per_ip: self.max_connections_per_ip,
        }
    }
}

/// `[listeners.edge]`: this listener's exceptions to `[edge]`; every key is optional.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ListenerEdgeConfig {
    #[serde(default, with = "humantime_serde")]
    pub header_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub keepalive_timeout: Option<Duration>,
    #[serde(default)]
    pub max_requests_per_connection: Option<u32>,
    #[serde(default)]
    pub max_header_bytes: Option<usize>,
    #[serde(default)]
    pub max_headers: Option<usize>,
    #[serde(default)]
    pub max_uri_bytes: Option<usize>,
    #[serde(default)]
    pub max_connections: Option<usize>,
    #[serde(default)]
    pub max_connections_per_ip: Option<usize>,
    /// Replaces `[edge].ip_allow` on this listener.
    #[serde(default)]
    pub ip_allow: Option<Vec<String>>,
    /// Replaces `[edge].ip_deny` on this listener.
    #[serde(default)]
    pub ip_deny: Option<Vec<String>>,
}

impl ListenerEdgeConfig {
    /// `base` with this listener's exceptions applied.
    pub fn limits(&self, base: &EdgeLimits) -> EdgeLimits {
        EdgeLimits {
            header_timeout: self.header_timeout.unwrap_or(base.header_timeout),
            keepalive_timeout: self.keepalive_timeout.unwrap_or(base.keepalive_timeout),
            max_requests_per_connection: self
                .max_requests_per_connection
                .unwrap_or(base.max_requests_per_connection),
            max_header_bytes: self.max_header_bytes.unwrap_or(base.max_header_bytes),
            max_headers: self.max_headers.unwrap_or(base.max_headers),
            max_uri_bytes: self.max_uri_bytes.unwrap_or(base.max_uri_bytes),
            max_connections: self.max_connections.unwrap_or(base.max_connections),
            max_connections_per_ip: self
                .max_connections_per_ip
                .unwrap_or(base.max_connections_per_ip),
        }
    }
}

/// The header trusted proxies name the client in.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum ClientIpHeader {
    #[default]
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=...`.
    Forwarded,
}

/// Path spellings refused by default that a route may accept (`allow_in_path`), for upstreams
/// known to read them the way the gateway routes them.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum PathException {
    /// `%2F`, kept encoded: a literal character inside a segment, never a separator.
    EncodedSlash,
    /// `\` and `%5C`, kept as they are.
    Backslash,
    /// `;` path parameters.
    PathParameters,
    /// Encoded control characters (`%00`-`%1F`, `%7F`).
    ControlCharacters,
    /// Encoded bytes that are not valid UTF-8.
    InvalidUtf8,
    /// Segments ending in encoded whitespace.
    TrailingWhitespace,
}

fn default_header_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_keepalive_timeout() -> Duration {
    Duration::from_secs(60)
}
fn default_body_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_max_requests_per_connection() -> u32 {
    1000
}
fn default_max_header_bytes() -> usize {
    32 * 1024
}
fn default_max_headers() -> usize {
    100
}
fn default_max_uri_bytes() -> usize {
    8 * 1024
}
fn default_max_body_bytes() -> u64 {
    10 * 1024 * 1024
}
