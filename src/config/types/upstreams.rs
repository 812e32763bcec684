//! `[upstreams.NAME]`: targets, balancing, health checks, TLS to targets.

use super::defaults::*;
use crate::config::HashKey;
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

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
    /// Response headers of the targets never passed to clients: software and version names
    /// an attacker would read. `[]` passes everything.
    #[serde(default = "default_hide_headers")]
    pub hide_headers: Vec<String>,
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

fn default_hide_headers() -> Vec<String> {
    vec!["server".into(), "x-powered-by".into()]
}
