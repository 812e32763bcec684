//! Intrusion detection and bans.
//!
//! Events (refusals with the configured statuses, firewall hits) are counted per client
//! address and per consumer in pingora-limits [`Rate`] estimators: count-min sketches of fixed
//! size, lock-free, with no allocation per key, so a flood of distinct addresses costs no
//! memory. A sketch may overcount (keys share cells) but never undercounts; its cells are sized
//! so that overcounting stays small at the rates one gateway sees (see [`SLOTS`]).
//!
//! A key whose estimate reaches the threshold within the window is banned: the [`BanTable`]
//! holds the bans (bounded), survives reloads (it lives in the registries, not the snapshot),
//! and is shared with other instances through Redis by `services::ban_sync`.

use crate::limit::redis::RedisLimiter;
use pingora_limits::rate::Rate;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::RwLock;
use std::time::Duration;

/// Rows of each sketch.
const HASHES: usize = 4;
/// Cells per row. Overcounting is bounded by about e/SLOTS of the events in a window: 4 for
/// 100,000 events, far below any sensible threshold. Two sketches of 4 x 65,536 x 8 bytes
/// (4 MiB) per tracked kind.
const SLOTS: usize = 1 << 16;
/// Most bans held; beyond it new bans are refused (and logged), old ones kept.
pub const MAX_BANS: usize = 100_000;

/// Who is banned.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BanKey {
    /// A client address (IPv6 by its /64).
    Ip(IpAddr),
    Consumer(Box<str>),
}

impl BanKey {
    /// The form used in the admin API, logs and Redis: `ip:ADDR` or `consumer:NAME`.
    pub fn to_text(&self) -> String {
        match self {
            Self::Ip(ip) => format!("ip:{ip}"),
            Self::Consumer(c) => format!("consumer:{c}"),
        }
    }

    /// Parse [`to_text`](Self::to_text)'s form.
    pub fn parse(text: &str) -> Option<Self> {
        if let Some(ip) = text.strip_prefix("ip:") {
            return ip.parse().ok().map(|ip| Self::Ip(ban_prefix(ip)));
        }
        let c = text.strip_prefix("consumer:")?;
        (!c.is_empty()).then(|| Self::Consumer(c.into()))
    }
}

/// The address a client is tracked and banned under: the one `[limits]` counts it under
/// (IPv6 by its /64, as banning a /128 would let a client walk its /64), after mapping an
/// IPv4-mapped IPv6 address back to IPv4, since admin API keys may be written either way.
pub fn ban_prefix(ip: IpAddr) -> IpAddr {
    crate::limit::client_prefix(ip.to_canonical())
}

/// One ban.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ban {
    /// Unix milliseconds.
    pub since_ms: u64,
    pub until_ms: u64,
    pub reason: String,
    /// Learnt from Redis rather than decided here.
    pub shared: bool,
}

/// The bans in force, by key. Lookups on the request path first read one atomic: with no ban
/// in force (the usual case) they take no lock at all.
#[derive(Default)]
pub struct BanTable {
    bans: RwLock<HashMap<BanKey, Ban>>,
    count: AtomicUsize,
}

impl BanTable {
    /// Whether no ban is held: one atomic read, no lock.
    pub fn is_empty(&self) -> bool {
        self.count.load(Ordering::Relaxed) == 0
    }

    /// The seconds left (rounded up) of the ban on `key` in force at `now_ms`. Reads the
    /// table under its read lock without copying the ban: this runs on every request while
    /// any ban is in force.
    pub fn seconds_left(&self, key: &BanKey, now_ms: u64) -> Option<u64> {
        if self.is_empty() {
            return None;
        }
        let bans = self.bans.read().unwrap_or_else(|e| e.into_inner());
        let until_ms = bans.get(key)?.until_ms;
        (until_ms > now_ms).then(|| (until_ms - now_ms).div_ceil(1000))
    }

    /// Whether `ip` is banned at `now_ms`; the `Retry-After` seconds when it is.
    pub fn ip_banned(&self, ip: IpAddr, now_ms: u64) -> Option<u64> {
        self.seconds_left(&BanKey::Ip(ban_prefix(ip)), now_ms)
    }

    /// Whether `consumer` is banned at `now_ms`; the `Retry-After` seconds when it is.
    pub fn consumer_banned(&self, consumer: &str, now_ms: u64) -> Option<u64> {
        if self.is_empty() {
            return None;
        }
        // Built only when some ban is in force.
        self.seconds_left(&BanKey::Consumer(consumer.into()), now_ms)
    }

    /// Add or extend a ban; `false` when `key` was already banned at least as long, or the
    /// table is full.
    pub fn insert(&self, key: BanKey, ban: Ban) -> bool {
        let mut bans = self.bans.write().unwrap_or_else(|e| e.into_inner());
        let now_ms = ban.since_ms;
        if let Some(old) = bans.get(&key) {
            if old.until_ms >= ban.until_ms && old.until_ms > now_ms {
                return false;
            }
        } else if bans.len() >= MAX_BANS {
            bans.retain(|_, b| b.until_ms > now_ms);
            if bans.len() >= MAX_BANS {
                return false;
            }
        }
        bans.insert(key, ban);
        self.count.store(bans.len(), Ordering::Relaxed);
        true
    }

    /// Lift the ban on `key`; the ban that was lifted.
    pub fn remove(&self, key: &BanKey) -> Option<Ban> {
        let mut bans = self.bans.write().unwrap_or_else(|e| e.into_inner());
        let removed = bans.remove(key);
        self.count.store(bans.len(), Ordering::Relaxed);
        removed
    }

    /// Drop expired bans; the number left.
    pub fn purge(&self, now_ms: u64) -> usize {
        let mut bans = self.bans.write().unwrap_or_else(|e| e.into_inner());
        bans.retain(|_, b| b.until_ms > now_ms);
        self.count.store(bans.len(), Ordering::Relaxed);
        bans.len()
    }

    /// The bans in force at `now_ms`, sorted by key.
    pub fn list(&self, now_ms: u64) -> Vec<(BanKey, Ban)> {
        let bans = self.bans.read().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<_> = bans
            .iter()
            .filter(|(_, b)| b.until_ms > now_ms)
            .map(|(k, b)| (k.clone(), b.clone()))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Make the bans learnt from Redis exactly `remote` (those lifted elsewhere go); local bans
    /// not yet in Redis stay. The keys that were added and removed.
    pub fn merge_shared(&self, remote: Vec<(BanKey, Ban)>) -> (Vec<BanKey>, Vec<BanKey>) {
        let mut bans = self.bans.write().unwrap_or_else(|e| e.into_inner());
        let remote: HashMap<BanKey, Ban> = remote.into_iter().collect();
        let mut removed = Vec::new();
        bans.retain(|k, b| {
            let keep = !b.shared || remote.contains_key(k);
            if !keep {
                removed.push(k.clone());
            }
            keep
        });
        let mut added = Vec::new();
        for (k, mut b) in remote {
            b.shared = true;
            let room = bans.len() < MAX_BANS;
            match bans.get_mut(&k) {
                Some(old) if old.until_ms >= b.until_ms => old.shared = true,
                Some(old) => *old = b,
                None if room => {
                    added.push(k.clone());
                    bans.insert(k, b);
                }
                None => {}
            }
        }
        self.count.store(bans.len(), Ordering::Relaxed);
        (added, removed)
    }
}

/// The Redis form of a ban's value: `UNTIL_MS SINCE_MS REASON`.
pub fn ban_value(ban: &Ban) -> String {
    format!("{} {} {}", ban.until_ms, ban.since_ms, ban.reason)
}

/// Parse [`ban_value`]'s form.
pub fn parse_ban(value: &str) -> Option<Ban> {
    let mut parts = value.splitn(3, ' ');
    let until_ms = parts.next()?.parse().ok()?;
    let since_ms = parts.next()?.parse().ok()?;
    Some(Ban {
        since_ms,
        until_ms,
        reason: parts.next().unwrap_or("").to_string(),
        shared: true,
    })
}

/// Write a ban decided here to Redis, logging (not failing) when Redis is away: the next
/// tick writes it again.
pub async fn share(redis: &RedisLimiter, key: &BanKey, ban: &Ban) {
    if let Err(e) = redis.put_ban(&key.to_text(), &ban_value(ban)).await {
        tracing::warn!(ban = %key.to_text(), error = %e, "cannot share ban through redis");
    }
}

/// Event counters for one configuration of `[firewall.bans]`: a window is fixed per sketch, so
/// a reload that changes it gets new sketches (and starts counting afresh).
pub struct Detector {
    pub window: Duration,
    ips: Rate,
    consumers: Rate,
}

impl Detector {
    pub fn new(window: Duration) -> Self {
        Self {
            window,
            ips: Rate::new_with_estimator_config(window, HASHES, SLOTS),
            consumers: Rate::new_with_estimator_config(window, HASHES, SLOTS),
        }
    }

    /// Count one event for the address; its events in the last window, estimated by weighing
    /// the previous window by the part of it that still overlaps (a sliding window).
    pub fn ip_event(&self, ip: IpAddr) -> u64 {
        let key = ban_prefix(ip);
        self.ips.observe(&key, 1);
        sliding(&self.ips, &key)
    }

    /// Count one event for the consumer; its events in the last window.
    pub fn consumer_event(&self, consumer: &str) -> u64 {
        self.consumers.observe(&consumer, 1);
        sliding(&self.consumers, &consumer)
    }
}

fn sliding<K: std::hash::Hash>(rate: &Rate, key: &K) -> u64 {
    rate.rate_with(key, |c| {
        let previous = c.prev_samples as f64 * (1.0 - c.current_interval_fraction).max(0.0);
        (previous + c.curr_samples as f64).max(0.0) as u64
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ban(now: u64, secs: u64) -> Ban {
        Ban {
            since_ms: now,
            until_ms: now + secs * 1000,
            reason: "test".into(),
            shared: false,
        }
    }

    #[test]
    fn keys_round_trip_and_ipv6_is_banned_by_its_64() {
        let k = BanKey::parse("ip:2001:db8::1").unwrap();
        assert_eq!(k, BanKey::Ip("2001:db8::".parse().unwrap()));
        assert_eq!(BanKey::parse(&k.to_text()), Some(k));
        let c = BanKey::parse("consumer:alice").unwrap();
        assert_eq!(c.to_text(), "consumer:alice");
        assert_eq!(BanKey::parse("consumer:"), None);
        assert_eq!(BanKey::parse("nobody"), None);
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(ban_prefix(mapped), "10.0.0.1".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn bans_expire_and_can_be_lifted() {
        let t = BanTable::default();
        let ip: IpAddr = "203.0.113.9".parse().unwrap();
        assert_eq!(t.ip_banned(ip, 1000), None);
        assert!(t.insert(BanKey::Ip(ip), ban(1000, 10)));
        assert_eq!(t.ip_banned(ip, 1000), Some(10));
        assert_eq!(t.ip_banned(ip, 10_999), Some(1));
        assert_eq!(t.ip_banned(ip, 11_000), None);
        assert!(
            !t.insert(BanKey::Ip(ip), ban(2000, 5)),
            "a shorter ban is not news"
        );
        assert!(t.remove(&BanKey::Ip(ip)).is_some());
        assert_eq!(t.ip_banned(ip, 2000), None);
        assert!(t.insert(BanKey::Consumer("bob".into()), ban(1000, 10)));
        assert_eq!(t.consumer_banned("bob", 2000), Some(9));
        assert_eq!(t.purge(20_000), 0);
    }

    #[test]
    fn shared_bans_follow_redis_and_local_ones_stay() {
        let t = BanTable::default();
        let local = BanKey::Ip("192.0.2.1".parse().unwrap());
        let remote = BanKey::Ip("192.0.2.2".parse().unwrap());
        t.insert(local.clone(), ban(0, 100));
        let (added, removed) = t.merge_shared(vec![(remote.clone(), ban(0, 100))]);
        assert_eq!((added, removed), (vec![remote.clone()], vec![]));
        let (added, removed) = t.merge_shared(vec![]);
        assert_eq!((added, removed), (vec![], vec![remote]));
        assert!(
            t.seconds_left(&local, 1).is_some(),
            "a local ban stays until it is in Redis"
        );
    }

    #[test]
    fn ban_values_round_trip() {
        let ban = Ban {
            since_ms: 5,
            until_ms: 10,
            reason: "too many 401 responses: 5 within 1m".into(),
            shared: true,
        };
        assert_eq!(parse_ban(&ban_value(&ban)), Some(ban));
        assert_eq!(parse_ban("x 1 r"), None);
    }

    #[test]
    fn the_detector_counts_per_key() {
        let d = Detector::new(Duration::from_secs(60));
        let a: IpAddr = "198.51.100.1".parse().unwrap();
        let b: IpAddr = "198.51.100.2".parse().unwrap();
        for i in 1..=5 {
            assert_eq!(d.ip_event(a), i);
        }
        assert_eq!(d.ip_event(b), 1);
        assert_eq!(d.consumer_event("alice"), 1);
        assert_eq!(d.consumer_event("alice"), 2);
    }
}
