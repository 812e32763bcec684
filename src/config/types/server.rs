//! `[server]`, `[[listeners]]`, `[admin]`, `[access_log]`, and secrets read from the environment.

use super::defaults::*;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

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
    /// Where the process writes its pid. Default: `/tmp/gatehouse-<hash of the config file's
    /// path>.pid`, one per config.
    #[serde(default = "default_pid_file")]
    pub pid_file: PathBuf,
    /// Unix socket used to hand listening sockets to a new binary during an upgrade. Default:
    /// `/tmp/gatehouse-<hash of the config file's path>.sock`, so an upgrade only takes over
    /// the listeners of an instance started from the same config.
    #[serde(default = "default_upgrade_sock")]
    pub upgrade_sock: PathBuf,
    /// Process log lines (not the access log): `text` for people, `json` (one object per line)
    /// for log shippers.
    #[serde(default)]
    pub log_format: LogFormat,
    /// Process log level, as a `RUST_LOG` filter (`info`, `warn`, `info,gatehouse=debug`).
    /// `RUST_LOG` in the environment wins.
    #[serde(default = "default_log_level")]
    pub log_level: String,
}

/// `server.log_format`.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
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
            log_format: LogFormat::default(),
            log_level: default_log_level(),
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
    /// Every connection starts with a PROXY protocol header (v1 or v2) from the load balancer
    /// in front; its source address is the client's. Connections without one are closed.
    #[serde(default)]
    pub proxy_protocol: bool,
    /// This listener's exceptions to `[edge]`.
    #[serde(default)]
    pub edge: super::ListenerEdgeConfig,
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
