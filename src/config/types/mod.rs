//! Serde types for the TOML file format, one file per section. These mirror the file one to
//! one; nothing here is read on the request path (see `snapshot` for what the proxy runs on).

mod apis;
mod auth;
mod cors;
mod defaults;
mod edge;
mod firewall;
mod limits;
mod routes;
mod server;
mod tls;
mod traces;
mod upstreams;

pub use apis::*;
pub use auth::*;
pub use cors::*;
pub use edge::*;
pub use firewall::*;
pub use limits::*;
pub use routes::*;
pub use server::*;
pub use tls::*;
pub use traces::*;
pub use upstreams::*;

use std::collections::BTreeMap;

/// The whole configuration file after parsing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Config {
    pub server: ServerConfig,
    pub listeners: Vec<ListenerConfig>,
    /// `[edge]`: connection and request limits, trusted proxies, IP lists.
    pub edge: EdgeConfig,
    /// `[firewall]`: rules, managed protections, automatic bans.
    pub firewall: FirewallConfig,
    pub admin: AdminConfig,
    pub access_log: AccessLogConfig,
    /// `[tracing]`: OpenTelemetry spans over OTLP; off without the section.
    pub tracing: Option<TracingConfig>,
    /// Upstream pools by name, sorted so that compiled output is deterministic.
    pub upstreams: BTreeMap<String, UpstreamConfig>,
    /// Throttling policies by name, attached to routes with `limits = [...]`.
    pub limits: BTreeMap<String, LimitConfig>,
    /// The Redis that `backend = "redis"` policies share counters through.
    pub redis: Option<RedisConfig>,
    /// CORS policies by name, attached to routes with `cors = "NAME"`.
    pub cors: BTreeMap<String, CorsConfig>,
    /// Authorizers by name, attached to routes with `auth = "NAME"`.
    pub authorizers: BTreeMap<String, AuthorizerConfig>,
    /// TLS certificates by name, chosen by SNI on TLS listeners.
    pub certificates: BTreeMap<String, CertificateConfig>,
    /// `[tls]`: settings shared by every TLS listener's certificates.
    pub tls: TlsConfig,
    /// Per-domain policies (`[hosts."api.example.com"]`): HTTPS redirect, HSTS, SNI agreement,
    /// client certificates.
    pub hosts: BTreeMap<String, HostConfig>,
    /// `[acme]`: automatic certificates; off without the section.
    pub acme: Option<AcmeConfig>,
    pub routes: Vec<RouteConfig>,
    /// APIs by name, each a set of routes made from an OpenAPI document.
    pub apis: BTreeMap<String, ApiConfig>,
}

impl Config {
    /// The first of `limits` that counts per consumer, which needs an authorizer to name one.
    pub fn per_consumer_limit<'a>(&self, limits: &'a [String]) -> Option<&'a String> {
        limits.iter().find(|name| {
            self.limits
                .get(name.as_str())
                .is_some_and(|l| l.key.contains(&crate::config::KeyPart::Consumer))
        })
    }
}
