//! The Redis backend: counters shared by every gatehouse instance that points at the same
//! Redis. Each check is one round trip, an atomic Lua script on one key, bounded by a timeout.
//! The connection is made lazily and re-made by itself after failures, so a Redis that is
//! down at startup or restarts later never stops gatehouse; callers apply the policy's
//! fail-open or fail-closed choice meanwhile.
//!
//! Redis Cluster (`[redis] cluster = [...]`): the cluster client learns the slot map from the
//! seed nodes, sends each command to the master of its key's slot and follows MOVED and ASK
//! redirects, so failovers and resharding need nothing from gatehouse. Every check touches
//! exactly one key, so scripts never cross slots and no hash tags are needed; keys spread over
//! the cluster by their hash, and the shared bans are one hash.
//!
//! Redis Sentinel (`[redis.sentinel]`): the sentinels are asked which node is the primary
//! when a connection is made. After a failover the old primary is gone (I/O errors, timeouts),
//! or demoted, which cuts its clients or answers them `READONLY`; each drops the connection,
//! so the next check asks the sentinels again and reaches the promoted replica.

use super::gcra::RateDecision;
use super::quota::QuotaDecision;
use arc_swap::ArcSwapOption;
use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use redis::Script;
use sha2::{Digest, Sha256};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// GCRA on the server's clock (`TIME`), so instances never disagree about time.
/// ARGV: emission and tolerance in microseconds. Returns {allowed, remaining, wait_us}.
const GCRA: &str = r"
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local emission = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
if tat > now + tolerance + emission then
  tat = now + tolerance + emission
  redis.call('SET', KEYS[1], tat, 'PX', math.floor((tat - now) / 1000) + 1000)
end
local allow_at = tat - tolerance
if allow_at > now then return {0, 0, allow_at - now} end
local new_tat = tat + emission
redis.call('SET', KEYS[1], new_tat, 'PX', math.floor((new_tat - now) / 1000) + 1000)
local used = new_tat - now
return {1, math.floor((tolerance + emission - used) / emission), used}
";

/// Count one request in a quota window key. ARGV: limit, key TTL in ms.
/// Returns {allowed, count}.
const QUOTA: &str = r"
local n = tonumber(redis.call('GET', KEYS[1]) or 0)
if n >= tonumber(ARGV[1]) then return {0, n} end
n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return {1, n}
";

fn now_ms() -> u64 {
    crate::clock::now_millis()
}

/// Why a Redis check gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum RedisLimitError {
    #[error("redis unreachable: {0}")]
    Unreachable(String),
    #[error("redis timed out after {0:?}")]
    Timeout(Duration),
    #[error("redis error: {0}")]
    Command(#[from] redis::RedisError),
}

/// A Redis URL the client does not accept. The client's own message is left out: it can
/// quote the URL, password included.
#[derive(Debug, thiserror::Error)]
#[error("not a valid redis:// url")]
pub struct InvalidRedisUrl;

/// Where the shared counters live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisTarget {
    /// One Redis (`redis://...`).
    Single(String),
    /// A Redis Cluster, reached through these seed nodes.
    Cluster(Vec<String>),
    /// The primary that these sentinels know as `master`.
    Sentinel {
        master: String,
        nodes: Vec<String>,
        password: Option<String>,
        db: i64,
    },
}

/// The client for a [`RedisTarget`].
enum Client {
    Single(redis::Client),
    Cluster(ClusterClient),
    /// `SentinelClient` asks through `&mut self`; connection attempts are serialized anyway.
    Sentinel(tokio::sync::Mutex<SentinelClient>),
}

/// A live connection, a cheap clone of one multiplexed connection (per node, for a cluster).
/// The single and cluster kinds reconnect by themselves; a Sentinel one is replaced, see
/// [`RedisLimiter::settle`].
#[derive(Clone)]
enum Connection {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
    Sentinel(MultiplexedConnection),
}

impl redis::aio::ConnectionLike for Connection {
    fn req_packed_command<'a>(
        &'a mut self,
        cmd: &'a redis::Cmd,
    ) -> redis::RedisFuture<'a, redis::Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
            Self::Sentinel(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        match self {
            Self::Single(c) => c.req_packed_commands(cmd, offset, count),
            Self::Cluster(c) => c.req_packed_commands(cmd, offset, count),
            Self::Sentinel(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
            Self::Sentinel(c) => c.get_db(),
        }
    }
}

/// A shared connection to one Redis or one Redis Cluster, used by every Redis-backed policy.
pub struct RedisLimiter {
    client: Client,
    /// The live connection; read without a lock on every check.
    conn: ArcSwapOption<Connection>,
    connecting: tokio::sync::Mutex<()>,
    /// When the last connection attempt failed ([`now_ms`]); 0 when it did not.
    last_failure_ms: AtomicU64,
    timeout: Duration,
    prefix: String,
    gcra: Script,
    quota: Script,
    last_error_log_ms: AtomicU64,
    /// Sentinel checks that timed out in a row.
    sentinel_timeouts: AtomicU32,
}

/// Sentinel checks timing out in a row before the primary is looked up again.
const SENTINEL_TIMEOUTS: u32 = 3;
/// Minimum time between connection attempts while Redis is away.
const RECONNECT_EVERY_MS: u64 = 500;
/// Minimum time between two "redis unavailable" log lines.
const LOG_EVERY_MS: u64 = 10_000;

impl RedisLimiter {
    pub fn new(
        target: &RedisTarget,
        timeout: Duration,
        prefix: &str,
    ) -> Result<Self, InvalidRedisUrl> {
        let client = match target {
            RedisTarget::Single(url) => {
                Client::Single(redis::Client::open(url.as_str()).map_err(|_| InvalidRedisUrl)?)
            }
            RedisTarget::Cluster(nodes) => Client::Cluster(
                ClusterClientBuilder::new(nodes.iter().map(String::as_str))
                    .connection_timeout(timeout)
                    .response_timeout(timeout)
                    .retries(1)
                    .build()
                    .map_err(|_| InvalidRedisUrl)?,
            ),
            RedisTarget::Sentinel {
                master,
                nodes,
                password,
                db,
            } => {
                let node = SentinelNodeConnectionInfo {
                    tls_mode: None,
                    redis_connection_info: Some(redis::RedisConnectionInfo {
                        db: *db,
                        password: password.clone(),
                        ..Default::default()
                    }),
                };
                let nodes = nodes.iter().map(String::as_str).collect();
                Client::Sentinel(tokio::sync::Mutex::new(
                    SentinelClient::build(
                        nodes,
                        master.clone(),
                        Some(node),
                        SentinelServerType::Master,
                    )
                    .map_err(|_| InvalidRedisUrl)?,
                ))
            }
        };
        Ok(Self {
            client,
            conn: ArcSwapOption::empty(),
            connecting: tokio::sync::Mutex::new(()),
            last_failure_ms: AtomicU64::new(0),
            timeout,
            prefix: prefix.to_string(),
            gcra: Script::new(GCRA),
            quota: Script::new(QUOTA),
            last_error_log_ms: AtomicU64::new(0),
            sentinel_timeouts: AtomicU32::new(0),
        })
    }

    fn cached(&self) -> Option<Arc<Connection>> {
        self.conn.load_full()
    }

    async fn connect(&self) -> Result<Connection, redis::RedisError> {
        match &self.client {
            Client::Single(client) => {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(self.timeout)
                    .set_response_timeout(self.timeout)
                    .set_number_of_retries(1);
                ConnectionManager::new_with_config(client.clone(), config)
                    .await
                    .map(Connection::Single)
            }
            Client::Cluster(client) => client.get_async_connection().await.map(Connection::Cluster),
            Client::Sentinel(client) => {
                let config = redis::AsyncConnectionConfig::new()
                    .set_connection_timeout(self.timeout)
                    .set_response_timeout(self.timeout);
                let mut client = client.lock().await;
                client
                    .get_async_connection_with_config(&config)
                    .await
                    .map(Connection::Sentinel)
            }
        }
    }

    /// The shared connection; a check runs on a clone of it and hands the `Arc` back to
    /// [`settle`](Self::settle).
    async fn connection(&self) -> Result<Arc<Connection>, RedisLimitError> {
        if let Some(c) = self.cached() {
            return Ok(c);
        }
        // While Redis is known to be away, fail fast instead of queueing behind reconnects.
        let failed_at = self.last_failure_ms.load(Ordering::Relaxed);
        if failed_at != 0 && now_ms().saturating_sub(failed_at) < RECONNECT_EVERY_MS {
            return Err(RedisLimitError::Unreachable("reconnecting".into()));
        }
        // One connection attempt at a time; concurrent checks wait for its outcome rather than
        // failing open while the first connection is being made.
        let wait = self.timeout * 4;
        let _guard = tokio::time::timeout(wait, self.connecting.lock())
            .await
            .map_err(|_| RedisLimitError::Timeout(wait))?;
        if let Some(c) = self.cached() {
            return Ok(c);
        }
        // The attempt this check waited for may just have failed: do not queue another.
        let failed_at = self.last_failure_ms.load(Ordering::Relaxed);
        if failed_at != 0 && now_ms().saturating_sub(failed_at) < RECONNECT_EVERY_MS {
            return Err(RedisLimitError::Unreachable("reconnecting".into()));
        }
        let connected = tokio::time::timeout(wait, self.connect())
            .await
            .map_err(|_| RedisLimitError::Timeout(wait))
            .and_then(|r| r.map_err(|e| RedisLimitError::Unreachable(e.to_string())));
        match connected {
            Ok(manager) => {
                self.last_failure_ms.store(0, Ordering::Relaxed);
                let shared = Arc::new(manager);
                self.conn.store(Some(shared.clone()));
                tracing::info!("connected to redis for shared limits");
                Ok(shared)
            }
            Err(e) => {
                self.last_failure_ms
                    .store(now_ms().max(1), Ordering::Relaxed);
                Err(e)
            }
        }
    }

    /// Redis key for a policy and a request key: the key parts are hashed with SHA-256 so every
    /// instance derives the same name (and no client value is stored in Redis).
    pub fn key(&self, policy: &str, parts: &[u8], suffix: Option<u64>) -> String {
        let digest = Sha256::digest(parts);
        let mut key = String::with_capacity(self.prefix.len() + policy.len() + 48);
        key.push_str(&self.prefix);
        key.push_str(policy);
        key.push(':');
        crate::text::push_hex(&mut key, &digest[..12]);
        if let Some(s) = suffix {
            key.push(':');
            key.push_str(itoa::Buffer::new().format(s));
        }
        key
    }

    async fn run(
        &self,
        script: &Script,
        key: &str,
        args: [u64; 2],
    ) -> Result<Vec<i64>, RedisLimitError> {
        let shared = self.connection().await?;
        let mut conn = Connection::clone(&shared);
        let mut invocation = script.key(key);
        invocation.arg(args[0]).arg(args[1]);
        let call = invocation.invoke_async::<Vec<i64>>(&mut conn);
        let result = tokio::time::timeout(self.timeout, call)
            .await
            .map_err(|_| RedisLimitError::Timeout(self.timeout))
            .and_then(|r| r.map_err(RedisLimitError::from));
        self.settle(&shared, result)
    }

    /// Drop the connection when `result` says it leads nowhere useful any more, so the next
    /// check makes a new one. For Sentinel, an unreachable or silent primary means asking the
    /// sentinels again. A primary demoted while it is up answers `READONLY` to clients it did
    /// not cut (for a single `url` that follows the primary by name too). The other kinds
    /// reconnect by themselves on I/O errors.
    ///
    /// A timeout counts only after [`SENTINEL_TIMEOUTS`] in a row, so a primary that is slow
    /// for a moment keeps its connection. Only the connection the check ran on is dropped:
    /// errors still arriving from an old one never drop its replacement.
    fn settle<T>(
        &self,
        shared: &Arc<Connection>,
        result: Result<T, RedisLimitError>,
    ) -> Result<T, RedisLimitError> {
        let Err(error) = &result else {
            let sentinel = matches!(**shared, Connection::Sentinel(_));
            if sentinel && self.sentinel_timeouts.load(Ordering::Relaxed) != 0 {
                self.sentinel_timeouts.store(0, Ordering::Relaxed);
            }
            return result;
        };
        let command = match error {
            RedisLimitError::Command(e) => Some(e),
            _ => None,
        };
        let read_only = command.is_some_and(|e| e.kind() == redis::ErrorKind::ReadOnly);
        let stale = match &**shared {
            Connection::Cluster(_) => false,
            Connection::Single(_) => read_only,
            Connection::Sentinel(_) => {
                let timed_out = matches!(error, RedisLimitError::Timeout(_))
                    && self.sentinel_timeouts.fetch_add(1, Ordering::Relaxed) + 1
                        >= SENTINEL_TIMEOUTS;
                read_only
                    || timed_out
                    || command.is_some_and(|e| {
                        e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal()
                    })
            }
        };
        if stale {
            self.sentinel_timeouts.store(0, Ordering::Relaxed);
            self.conn.compare_and_swap(shared, None::<Arc<Connection>>);
        }
        result
    }

    /// GCRA check; emission and tolerance in nanoseconds.
    pub async fn rate(
        &self,
        key: &str,
        emission: u64,
        tolerance: u64,
    ) -> Result<RateDecision, RedisLimitError> {
        let us = |n: u64| (n / 1000).max(1);
        let r = self
            .run(&self.gcra, key, [us(emission), tolerance / 1000])
            .await?;
        let get = |i: usize| r.get(i).copied().unwrap_or(0).max(0) as u64;
        Ok(RateDecision {
            allowed: get(0) == 1,
            remaining: get(1),
            wait: get(2) * 1000,
        })
    }

    /// Quota check for the window ending `reset` nanoseconds from now.
    pub async fn quota(
        &self,
        key: &str,
        limit: u64,
        reset: u64,
    ) -> Result<QuotaDecision, RedisLimitError> {
        let ttl_ms = reset / 1_000_000 + 1000;
        let r = self.run(&self.quota, key, [limit, ttl_ms]).await?;
        let get = |i: usize| r.get(i).copied().unwrap_or(0).max(0) as u64;
        Ok(QuotaDecision {
            allowed: get(0) == 1,
            remaining: limit.saturating_sub(get(1)),
            reset,
        })
    }

    /// The hash that holds the bans every instance shares: one key, so it works on Redis
    /// Cluster too.
    fn bans_key(&self) -> String {
        format!("{}bans", self.prefix)
    }

    /// Run one command on the shared connection, bounded by the timeout.
    async fn command<T: redis::FromRedisValue>(
        &self,
        cmd: &redis::Cmd,
    ) -> Result<T, RedisLimitError> {
        let shared = self.connection().await?;
        let mut conn = Connection::clone(&shared);
        let result = tokio::time::timeout(self.timeout, cmd.query_async::<T>(&mut conn))
            .await
            .map_err(|_| RedisLimitError::Timeout(self.timeout))
            .and_then(|r| r.map_err(RedisLimitError::from));
        self.settle(&shared, result)
    }

    /// Share a ban: `field` names who is banned, `value` until when and why.
    pub async fn put_ban(&self, field: &str, value: &str) -> Result<(), RedisLimitError> {
        let cmd = redis::cmd("HSET")
            .arg(self.bans_key())
            .arg(field)
            .arg(value)
            .to_owned();
        self.command::<i64>(&cmd).await.map(|_| ())
    }

    /// Lift shared bans.
    pub async fn remove_bans(&self, fields: &[String]) -> Result<(), RedisLimitError> {
        if fields.is_empty() {
            return Ok(());
        }
        let cmd = redis::cmd("HDEL")
            .arg(self.bans_key())
            .arg(fields)
            .to_owned();
        self.command::<i64>(&cmd).await.map(|_| ())
    }

    /// Every shared ban, as written by [`put_ban`](Self::put_ban).
    pub async fn bans(&self) -> Result<Vec<(String, String)>, RedisLimitError> {
        let cmd = redis::cmd("HGETALL").arg(self.bans_key()).to_owned();
        self.command::<Vec<(String, String)>>(&cmd).await
    }

    /// Log a failure at most once per interval; callers count every one in metrics.
    pub fn report_failure(&self, policy: &str, error: &RedisLimitError, fail_open: bool) {
        let now = now_ms() + LOG_EVERY_MS;
        let last = self.last_error_log_ms.load(Ordering::Relaxed);
        if now >= last + LOG_EVERY_MS
            && self
                .last_error_log_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            let mode = if fail_open {
                "allowing (fail_open)"
            } else {
                "refusing (fail_closed)"
            };
            tracing::warn!(policy, %error, "shared limit unavailable, {mode}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_keep_the_format_other_instances_use() {
        // Instances of different versions share counters during a rolling upgrade, so the key
        // must stay `PREFIX POLICY : 24 hex digits of SHA-256 [: suffix]`.
        let limiter = RedisLimiter::new(
            &RedisTarget::Single("redis://127.0.0.1:1/".into()),
            Duration::from_millis(50),
            "gh:",
        )
        .expect("valid url");
        let digest = Sha256::digest(b"10.0.0.1");
        let hex = crate::text::hex(&digest[..12]);
        assert_eq!(
            limiter.key("api", b"10.0.0.1", None),
            format!("gh:api:{hex}")
        );
        assert_eq!(
            limiter.key("api", b"10.0.0.1", Some(20_411)),
            format!("gh:api:{hex}:20411")
        );
    }
}
