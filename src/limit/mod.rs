//! Throttling: rate with burst (GCRA), calendar quotas and concurrency limits, per key.
//!
//! Policies are compiled from `[limits.NAME]` and attached to routes. Their counters live in
//! [`LimitRegistry`], keyed by policy name, so a reload keeps them. Storage is local to the
//! process, sharded and bounded ([`crate::cache`]).
//!
//! This file is the request path: keys, [`check`] and what it reports. Policies and the
//! registry are in `policy`, the algorithms in `gcra` and `quota`, shared counters in [`redis`].

mod gcra;
mod policy;
mod quota;
pub mod redis;

pub use gcra::{Gcra, RateDecision, Tat};
pub use policy::{LimitRegistry, Policy, PolicyError};
pub use quota::{QuotaDecision, Usage};

use crate::cache::{Expiring, ShardedStore};
pub use crate::config::{KeyPart, Window};
pub use crate::observe::metrics::PolicyMetrics;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use policy::Kind;
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::sync::Arc;

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
                KeyPart::ClientIp => match self.1.client_ip.map(client_prefix) {
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
pub fn client_prefix(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => {
            let mut o = v6.octets();
            o[8..].fill(0);
            IpAddr::V6(o.into())
        }
        v4 => v4,
    }
}

impl Hash for KeyOf<'_> {
    fn hash<H: Hasher>(&self, h: &mut H) {
        for part in self.0 {
            match part {
                KeyPart::Route => self.1.route.hash(h),
                KeyPart::Consumer => self.1.consumer.hash(h),
                KeyPart::ClientIp => self.1.client_ip.map(client_prefix).hash(h),
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
