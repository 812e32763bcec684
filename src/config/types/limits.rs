//! `[limits.NAME]` and `[redis]`.

use super::defaults::*;
use super::server::Secret;
use crate::config::{KeyPart, Window};
use serde::Deserialize;
use std::time::Duration;

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

/// `[redis]`: connection for shared limits and bans; exactly one of `url`, `cluster` and
/// `sentinel`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// One Redis: `redis://[:password@]host:port/db`. The password never appears in logs or
    /// the admin API.
    #[serde(default)]
    pub url: Option<Secret>,
    /// A Redis Cluster: `redis://` URLs of one or more of its nodes, from which the client
    /// learns the others.
    #[serde(default)]
    pub cluster: Vec<Secret>,
    /// A primary and its replicas watched by Redis Sentinel: the sentinels name the primary,
    /// and are asked again after a failover.
    #[serde(default)]
    pub sentinel: Option<SentinelConfig>,
    /// Longest wait for one check (and for a connection attempt, times four).
    #[serde(default = "default_redis_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    #[serde(default = "default_redis_prefix")]
    pub key_prefix: String,
}

/// `[redis.sentinel]`: where to ask which node is the primary.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SentinelConfig {
    /// The name the sentinels monitor the primary under (`sentinel monitor NAME ...`).
    pub master: String,
    /// `redis://host:port` of the sentinels (with `:password@` if they require one).
    pub nodes: Vec<Secret>,
    /// Password of the primary and replicas, when they require one.
    #[serde(default)]
    pub password: Option<Secret>,
    /// Database number on the primary.
    #[serde(default)]
    pub db: i64,
}
