//! Policies and their long-lived storage: [`Policy::compile`] turns a `[limits.NAME]` into a
//! [`Policy`], reusing the counters [`LimitRegistry`] holds under the same name and kind, and
//! the Redis client of the config in use while its settings stay the same.

use super::redis::{InvalidRedisUrl, RedisLimiter};
use super::{Gcra, Inflight, PolicyMetrics, Tat, Usage};
use crate::cache::ShardedStore;
use crate::config::{FailMode, KeyPart, LimitBackend, LimitConfig, Window};
use http::header::HeaderValue;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Why a `[limits.NAME]` did not compile. Config validation (`config::validate`) already
/// refuses a config with any of the first three, so only an unvalidated config meets them;
/// the last is a bug (counters are kept by kind).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// `backend = "redis"` without a Redis client to use.
    #[error("`backend = \"redis\"` needs a `[redis]` section")]
    NoRedis,
    /// Not exactly one of `rate`, `quota` with `window`, `concurrency`.
    #[error("set exactly one of `rate`, `quota`, `concurrency`")]
    NotOneKind,
    /// A concurrency limit with `backend = "redis"`.
    #[error("concurrency limits are per instance (`local`) only")]
    SharedConcurrency,
    /// The registry held counters of another kind under this policy's name and kind (it
    /// cannot: they are stored by kind).
    #[error("internal: counter kind mismatch")]
    CounterKindMismatch,
}

/// Counter storage of one policy, shared by every snapshot that has the policy.
#[derive(Clone)]
enum Counters {
    Rate(Arc<ShardedStore<Tat>>),
    Quota(Arc<ShardedStore<Usage>>),
    Concurrency(Arc<ShardedStore<Inflight>>),
}

/// What a policy counts; part of the registry key, so changing a policy's kind starts afresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum CounterKind {
    Rate,
    Quota,
    Concurrency,
}

/// Long-lived counters by policy name and kind, and
/// the Redis connection, kept while its settings stay the same.
#[derive(Default)]
pub struct LimitRegistry {
    counters: Mutex<HashMap<(String, CounterKind), Counters>>,
    redis: Mutex<Option<(crate::config::RedisConfig, Arc<RedisLimiter>)>>,
}

impl LimitRegistry {
    /// Make the counters of the policies just put in use the ones the next compile starts
    /// from; policies the config no longer has are forgotten.
    pub fn adopt<'a>(&self, policies: impl Iterator<Item = &'a Policy>) {
        let next = policies
            .filter_map(|p| Some(((p.name.clone(), p.counter_kind()?), p.counters()?)))
            .collect();
        *self.counters.lock().unwrap_or_else(|e| e.into_inner()) = next;
    }

    /// The Redis client for these settings: the one the config in use has when the settings
    /// are the same (its connection outlives reloads), else a new one. A new client is
    /// remembered only by [`Self::keep_redis`], once its config is applied: compiling a config
    /// that is then refused must not make the next reload drop the running connection.
    pub fn redis(
        &self,
        config: &crate::config::RedisConfig,
    ) -> Result<Arc<RedisLimiter>, InvalidRedisUrl> {
        {
            let slot = self.redis.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((c, r)) = slot.as_ref() {
                if c == config {
                    return Ok(r.clone());
                }
            }
        }
        Ok(Arc::new(RedisLimiter::new(
            &redis_target(config),
            config.timeout,
            &config.key_prefix,
        )?))
    }

    /// Remember the Redis client of the config now in use, for later reloads to reuse.
    pub fn keep_redis(&self, config: &crate::config::RedisConfig, limiter: &Arc<RedisLimiter>) {
        let mut slot = self.redis.lock().unwrap_or_else(|e| e.into_inner());
        *slot = Some((config.clone(), limiter.clone()));
    }
}

/// The Redis that `[redis]` names. Validation makes sure exactly one of `url`, `cluster` and
/// `sentinel` is set; without any, the empty url is refused as invalid.
fn redis_target(config: &crate::config::RedisConfig) -> super::redis::RedisTarget {
    use super::redis::RedisTarget;
    let expose = |s: &crate::config::Secret| s.expose().to_string();
    match (&config.url, &config.sentinel) {
        (Some(url), _) => RedisTarget::Single(expose(url)),
        (None, Some(sentinel)) => RedisTarget::Sentinel {
            master: sentinel.master.clone(),
            nodes: sentinel.nodes.iter().map(expose).collect(),
            password: sentinel.password.as_ref().map(expose),
            db: sentinel.db,
        },
        (None, None) if !config.cluster.is_empty() => {
            RedisTarget::Cluster(config.cluster.iter().map(expose).collect())
        }
        (None, None) => RedisTarget::Single(String::new()),
    }
}

/// What a policy counts, before its storage is chosen.
enum Shape {
    Rate(Gcra),
    Quota(u64, Window),
    Concurrency(u64),
}

pub(super) enum Kind {
    Rate(Gcra, Arc<ShardedStore<Tat>>),
    Quota(u64, Window, Arc<ShardedStore<Usage>>),
    Concurrency(u64, Arc<ShardedStore<Inflight>>),
    SharedRate(Gcra, Arc<RedisLimiter>),
    SharedQuota(u64, Window, Arc<RedisLimiter>),
}

/// A compiled `[limits.NAME]`.
pub struct Policy {
    pub name: String,
    pub(super) kind: Kind,
    pub(super) key: Vec<KeyPart>,
    pub dry_run: bool,
    pub headers: bool,
    pub(super) fail_open: bool,
    pub(super) metrics: PolicyMetrics,
    /// `RateLimit-Policy` value, built once.
    pub(super) policy_header: Option<HeaderValue>,
}

impl Policy {
    /// What kind of local counters the policy has; `None` when they are in Redis.
    fn counter_kind(&self) -> Option<CounterKind> {
        match &self.kind {
            Kind::Rate(..) => Some(CounterKind::Rate),
            Kind::Quota(..) => Some(CounterKind::Quota),
            Kind::Concurrency(..) => Some(CounterKind::Concurrency),
            Kind::SharedRate(..) | Kind::SharedQuota(..) => None,
        }
    }

    fn counters(&self) -> Option<Counters> {
        match &self.kind {
            Kind::Rate(_, store) => Some(Counters::Rate(store.clone())),
            Kind::Quota(_, _, store) => Some(Counters::Quota(store.clone())),
            Kind::Concurrency(_, store) => Some(Counters::Concurrency(store.clone())),
            Kind::SharedRate(..) | Kind::SharedQuota(..) => None,
        }
    }
}

impl Policy {
    /// Compile a policy, reusing the counters a previous config had under the same name.
    pub fn compile(
        name: &str,
        config: &LimitConfig,
        registry: &LimitRegistry,
        redis: Option<&Arc<RedisLimiter>>,
        metrics: PolicyMetrics,
    ) -> Result<Self, PolicyError> {
        let key = config.key.clone();
        // Only read: the counters are remembered once the config is in use (`adopt`).
        let counters = registry.counters.lock().unwrap_or_else(|e| e.into_inner());
        let counters_for = |kind: CounterKind, make: &dyn Fn() -> Counters| {
            counters
                .get(&(name.to_string(), kind))
                .cloned()
                .unwrap_or_else(make)
        };
        let max = config.max_keys;
        let shared = match config.backend {
            LimitBackend::Local => None,
            LimitBackend::Redis => Some(redis.ok_or(PolicyError::NoRedis)?.clone()),
        };
        // What is counted, and how it is advertised, do not depend on where counters live.
        let (shape, policy_header) =
            match (config.rate, config.quota, config.window, config.concurrency) {
                (Some(rate), _, _, _) => {
                    let period = config.period.as_nanos() as u64;
                    let secs = config.period.as_secs().max(1);
                    let gcra = Gcra::new(rate, period, config.burst);
                    (
                        Shape::Rate(gcra),
                        Some(format!("\"{name}\";q={rate};w={secs}")),
                    )
                }
                (None, Some(limit), Some(window), _) => {
                    let header = format!("\"{name}\";q={limit};w={}", window.seconds());
                    (Shape::Quota(limit, window), Some(header))
                }
                (None, None, _, Some(max_inflight)) => (Shape::Concurrency(max_inflight), None),
                _ => return Err(PolicyError::NotOneKind),
            };
        let kind = match (shape, shared) {
            (Shape::Rate(gcra), Some(redis)) => Kind::SharedRate(gcra, redis),
            (Shape::Quota(limit, window), Some(redis)) => Kind::SharedQuota(limit, window, redis),
            (Shape::Concurrency(_), Some(_)) => return Err(PolicyError::SharedConcurrency),
            (Shape::Rate(gcra), None) => {
                let make = || Counters::Rate(Arc::new(ShardedStore::new(max)));
                let Counters::Rate(store) = counters_for(CounterKind::Rate, &make) else {
                    return Err(PolicyError::CounterKindMismatch);
                };
                Kind::Rate(gcra, store)
            }
            (Shape::Quota(limit, window), None) => {
                let make = || Counters::Quota(Arc::new(ShardedStore::new(max)));
                let Counters::Quota(store) = counters_for(CounterKind::Quota, &make) else {
                    return Err(PolicyError::CounterKindMismatch);
                };
                Kind::Quota(limit, window, store)
            }
            (Shape::Concurrency(max_inflight), None) => {
                let make = || Counters::Concurrency(Arc::new(ShardedStore::new(max)));
                let Counters::Concurrency(store) = counters_for(CounterKind::Concurrency, &make)
                else {
                    return Err(PolicyError::CounterKindMismatch);
                };
                Kind::Concurrency(max_inflight, store)
            }
        };
        Ok(Self {
            name: name.to_string(),
            kind,
            key,
            dry_run: config.dry_run,
            headers: config.headers,
            fail_open: config.on_redis_error == FailMode::FailOpen,
            metrics,
            policy_header: policy_header.and_then(|h| HeaderValue::from_str(&h).ok()),
        })
    }
}

impl Policy {
    /// Whether the key includes the consumer, which only a route with `auth` has.
    pub fn keyed_by_consumer(&self) -> bool {
        self.key.contains(&KeyPart::Consumer)
    }
}
