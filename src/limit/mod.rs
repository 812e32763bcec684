//! Throttling: rate with burst (GCRA), calendar quotas and concurrency limits, per key.
//!
//! Policies are compiled from `[limits.NAME]` and attached to routes. Their counters live in
//! [`LimitRegistry`], keyed by policy name, so a reload keeps them. Storage is local to the
//! process, sharded and bounded ([`crate::cache`]).

mod gcra;
mod quota;
pub mod redis;

pub use gcra::{Gcra, RateDecision, Tat};
pub use quota::{QuotaDecision, Usage};

use self::redis::RedisLimiter;
use crate::cache::{Expiring, ShardedStore};
use crate::config::{FailMode, LimitBackend, LimitConfig};
pub use crate::config::{KeyPart, Window};
pub use crate::observe::metrics::PolicyMetrics;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// What a request offers to key on.
pub struct LimitInput<'a> {
    pub route: &'a str,
    pub client_ip: Option<IpAddr>,
    pub consumer: Option<&'a str>,
    pub headers: &'a HeaderMap,
}

struct KeyOf<'a>(&'a [KeyPart], &'a LimitInput<'a>);

impl KeyOf<'_> {
    /// A stable, unambiguous byte form of the key (length-prefixed parts), the same on every
    /// instance; Redis-backed policies hash it into the Redis key.
    fn bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        let mut push = |b: &[u8]| {
            out.extend_from_slice(&(b.len() as u32).to_be_bytes());
            out.extend_from_slice(b);
        };
        for part in self.0 {
            match part {
                KeyPart::Route => push(self.1.route.as_bytes()),
                KeyPart::Consumer => push(self.1.consumer.unwrap_or("").as_bytes()),
                KeyPart::ClientIp => match client_prefix(self.1.client_ip) {
                    Some(std::net::IpAddr::V4(ip)) => push(&ip.octets()),
                    Some(std::net::IpAddr::V6(ip)) => push(&ip.octets()),
                    None => push(b""),
                },
                KeyPart::Header(name) => {
                    let values: Vec<&[u8]> = self
                        .1
                        .headers
                        .get_all(name)
                        .iter()
                        .map(|v| v.as_bytes())
                        .collect();
                    push(&(values.len() as u32).to_be_bytes());
                    for v in values {
                        push(v);
                    }
                }
            }
        }
        out
    }
}

/// The address a client is counted under: IPv4 as is, IPv6 by its /64, which is what one
/// subscriber usually gets (counting /128s would give a client a fresh bucket per address).
fn client_prefix(ip: Option<IpAddr>) -> Option<IpAddr> {
    match ip {
        Some(IpAddr::V6(v6)) => {
            let mut o = v6.octets();
            o[8..].fill(0);
            Some(IpAddr::V6(o.into()))
        }
        other => other,
    }
}

impl Hash for KeyOf<'_> {
    fn hash<H: Hasher>(&self, h: &mut H) {
        for part in self.0 {
            match part {
                KeyPart::Route => self.1.route.hash(h),
                KeyPart::Consumer => self.1.consumer.hash(h),
                KeyPart::ClientIp => client_prefix(self.1.client_ip).hash(h),
                // Every value, so a request cannot choose its bucket by adding a first value.
                KeyPart::Header(name) => {
                    for v in self.1.headers.get_all(name) {
                        v.as_bytes().hash(h);
                    }
                }
            }
        }
    }
}

/// Requests in flight for one key.
#[derive(Debug, Default)]
pub struct Inflight(u64);

impl Expiring for Inflight {
    fn is_idle(&self, _now: u64) -> bool {
        self.0 == 0
    }
    fn expires_at(&self) -> u64 {
        if self.0 == 0 {
            0
        } else {
            u64::MAX
        }
    }
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
    pub fn redis(&self, config: &crate::config::RedisConfig) -> Result<Arc<RedisLimiter>, String> {
        {
            let slot = self.redis.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((c, r)) = slot.as_ref() {
                if c == config {
                    return Ok(r.clone());
                }
            }
        }
        Ok(Arc::new(RedisLimiter::new(
            config.url.expose(),
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

/// What a policy counts, before its storage is chosen.
enum Shape {
    Rate(Gcra),
    Quota(u64, Window),
    Concurrency(u64),
}

enum Kind {
    Rate(Gcra, Arc<ShardedStore<Tat>>),
    Quota(u64, Window, Arc<ShardedStore<Usage>>),
    Concurrency(u64, Arc<ShardedStore<Inflight>>),
    SharedRate(Gcra, Arc<RedisLimiter>),
    SharedQuota(u64, Window, Arc<RedisLimiter>),
}

/// A compiled `[limits.NAME]`.
pub struct Policy {
    pub name: String,
    kind: Kind,
    key: Vec<KeyPart>,
    pub dry_run: bool,
    pub headers: bool,
    fail_open: bool,
    metrics: PolicyMetrics,
    /// `RateLimit-Policy` value, built once.
    policy_header: Option<HeaderValue>,
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
    ) -> Result<Self, String> {
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
            LimitBackend::Redis => Some(
                redis
                    .ok_or("`backend = \"redis\"` needs a `[redis]` section")?
                    .clone(),
            ),
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
                _ => return Err("set exactly one of `rate`, `quota`, `concurrency`".into()),
            };
        let mismatch = || "internal: counter kind mismatch".to_string();
        let kind = match (shape, shared) {
            (Shape::Rate(gcra), Some(redis)) => Kind::SharedRate(gcra, redis),
            (Shape::Quota(limit, window), Some(redis)) => Kind::SharedQuota(limit, window, redis),
            (Shape::Concurrency(_), Some(_)) => {
                return Err("concurrency limits are per instance (`local`) only".into())
            }
            (Shape::Rate(gcra), None) => {
                let make = || Counters::Rate(Arc::new(ShardedStore::new(max)));
                let Counters::Rate(store) = counters_for(CounterKind::Rate, &make) else {
                    return Err(mismatch());
                };
                Kind::Rate(gcra, store)
            }
            (Shape::Quota(limit, window), None) => {
                let make = || Counters::Quota(Arc::new(ShardedStore::new(max)));
                let Counters::Quota(store) = counters_for(CounterKind::Quota, &make) else {
                    return Err(mismatch());
                };
                Kind::Quota(limit, window, store)
            }
            (Shape::Concurrency(max_inflight), None) => {
                let make = || Counters::Concurrency(Arc::new(ShardedStore::new(max)));
                let Counters::Concurrency(store) = counters_for(CounterKind::Concurrency, &make)
                else {
                    return Err(mismatch());
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

/// Releases a concurrency slot when the request ends.
pub struct InflightGuard {
    store: Arc<ShardedStore<Inflight>>,
    hash: u64,
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.store
            .with(self.hash, 0, |n| n.0 = n.0.saturating_sub(1));
    }
}

/// What the most constrained policy reported, for `RateLimit` headers.
#[derive(Debug, Clone)]
pub struct LimitReport {
    pub policy: HeaderValue,
    /// `RateLimit` value: `"name";r=REMAINING;t=SECONDS`.
    pub state: HeaderValue,
    pub remaining: u64,
}

/// Per-request limiter state: held slots and the headers to send.
#[derive(Default)]
pub struct LimitState {
    pub guards: Vec<InflightGuard>,
    pub report: Option<LimitReport>,
}

/// A refusal.
#[derive(Debug, Clone)]
pub struct LimitRejection {
    /// 429, or 503 when a fail-closed policy could not reach Redis.
    pub status: u16,
    pub policy: String,
    pub message: &'static str,
    pub retry_after_secs: u64,
    pub report: Option<LimitReport>,
}

static RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
static RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

impl LimitReport {
    /// The header pairs to send.
    pub fn headers(&self) -> [(HeaderName, HeaderValue); 2] {
        [
            (RATELIMIT_POLICY.clone(), self.policy.clone()),
            (RATELIMIT.clone(), self.state.clone()),
        ]
    }
}

fn ceil_secs(nanos: u64) -> u64 {
    nanos.div_ceil(1_000_000_000)
}

fn report(policy: &Policy, remaining: u64, reset_nanos: u64) -> Option<LimitReport> {
    let header = policy.policy_header.clone()?;
    // Written without `format!`: this runs on every request of a limited route.
    let mut state = Vec::with_capacity(policy.name.len() + 32);
    state.push(b'"');
    state.extend_from_slice(policy.name.as_bytes());
    state.extend_from_slice(b"\";r=");
    crate::text::push_u64(&mut state, remaining);
    state.extend_from_slice(b";t=");
    crate::text::push_u64(&mut state, ceil_secs(reset_nanos));
    Some(LimitReport {
        policy: header,
        state: HeaderValue::from_bytes(&state).ok()?,
        remaining,
    })
}

/// Check every policy in order. `now` is Unix time in nanoseconds. On refusal, policies after
/// the refusing one are not counted; slots taken by earlier concurrency policies are released
/// with `state`. Only Redis-backed policies await (one round trip each).
pub async fn check(
    policies: &[Arc<Policy>],
    input: &LimitInput<'_>,
    now: u64,
    state: &mut LimitState,
) -> Result<(), Box<LimitRejection>> {
    for policy in policies {
        let key = KeyOf(&policy.key, input);
        let outcome = match &policy.kind {
            Kind::Rate(gcra, store) => {
                let d = store.with(store.key_hash(&key), now, |s| gcra.check(s, now));
                Ok((d.allowed, d.remaining, d.wait, "rate limit exceeded"))
            }
            Kind::Quota(limit, window, store) => {
                let d = store.with(store.key_hash(&key), now, |s| {
                    quota::check(*limit, *window, s, now)
                });
                Ok((d.allowed, d.remaining, d.reset, "quota exceeded"))
            }
            Kind::Concurrency(max, store) => {
                let hash = store.key_hash(&key);
                let taken = store.with(hash, now, |n| {
                    if n.0 < *max {
                        n.0 += 1;
                        true
                    } else {
                        false
                    }
                });
                if taken {
                    state.guards.push(InflightGuard {
                        store: store.clone(),
                        hash,
                    });
                }
                Ok((taken, 0, 1_000_000_000, "too many concurrent requests"))
            }
            Kind::SharedRate(gcra, redis) => {
                let k = redis.key(&policy.name, &key.bytes(), None);
                redis
                    .rate(&k, gcra.emission, gcra.tolerance)
                    .await
                    .map(|d| (d.allowed, d.remaining, d.wait, "rate limit exceeded"))
                    .map_err(|e| (redis, e))
            }
            Kind::SharedQuota(limit, window, redis) => {
                let (start, end) = window.bounds(now);
                let k = redis.key(&policy.name, &key.bytes(), Some(start / 1_000_000_000));
                redis
                    .quota(&k, *limit, end - now)
                    .await
                    .map(|d| (d.allowed, d.remaining, d.reset, "quota exceeded"))
                    .map_err(|e| (redis, e))
            }
        };
        let (allowed, remaining, wait, message) = match outcome {
            Ok(o) => o,
            Err((redis, error)) => {
                policy.metrics.backend_errors.inc();
                redis.report_failure(&policy.name, &error, policy.fail_open);
                if policy.fail_open || policy.dry_run {
                    continue;
                }
                return Err(Box::new(LimitRejection {
                    status: 503,
                    policy: policy.name.clone(),
                    message: "rate limiter unavailable",
                    retry_after_secs: 1,
                    report: None,
                }));
            }
        };
        if allowed {
            policy.metrics.allowed.inc();
            if policy.headers
                && state
                    .report
                    .as_ref()
                    .is_none_or(|r| remaining < r.remaining)
            {
                if let Some(r) = report(policy, remaining, wait) {
                    state.report = Some(r);
                }
            }
            continue;
        }
        if policy.dry_run {
            policy.metrics.dry_run_rejected.inc();
            tracing::info!(policy = %policy.name, route = input.route, "dry run: would reject");
            continue;
        }
        policy.metrics.rejected.inc();
        return Err(Box::new(LimitRejection {
            status: 429,
            policy: policy.name.clone(),
            message,
            retry_after_secs: ceil_secs(wait).max(1),
            report: report(policy, 0, wait),
        }));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
