//! Bounded caches: a sharded map from key hash to state (limiter counters), and an exact-key
//! expiring cache on top of it (verified tokens, authorizer decisions). Each shard is a short-held mutex (no
//! `.await` inside), so contention is spread over [`SHARDS`] locks. Memory is bounded: a full
//! shard drops, from a small sample of its entries, those that no longer matter (`is_idle`), or
//! else the one that expires first: an O(1) approximation of "least useful".

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Mutex, MutexGuard};

/// Number of shards; a power of two.
pub const SHARDS: usize = 64;

/// Entries inspected when a full shard must make room.
const EVICTION_SAMPLE: usize = 16;

/// State that can tell when it stopped mattering.
pub trait Expiring {
    /// Whether the entry is equivalent to an absent one at `now` (nanoseconds).
    fn is_idle(&self, now: u64) -> bool;
    /// When the entry becomes idle, for choosing what to evict; `u64::MAX` means never evict.
    fn expires_at(&self) -> u64;
}

/// Bounded sharded map keyed by a 64-bit hash of (policy, key).
pub struct ShardedStore<S> {
    shards: Box<[Mutex<HashMap<u64, S, ahash::RandomState>>]>,
    per_shard: usize,
    hasher: ahash::RandomState,
}

impl<S: Expiring + Default> ShardedStore<S> {
    /// A store holding at most about `max_keys` entries.
    pub fn new(max_keys: usize) -> Self {
        let per_shard = (max_keys / SHARDS).max(1);
        Self {
            shards: (0..SHARDS)
                .map(|_| Mutex::new(HashMap::default()))
                .collect(),
            per_shard,
            hasher: ahash::RandomState::new(),
        }
    }

    /// Hash of a key; the store keeps only this, never the key itself.
    pub fn key_hash(&self, key: &impl Hash) -> u64 {
        self.hasher.hash_one(key)
    }

    fn shard(&self, hash: u64) -> MutexGuard<'_, HashMap<u64, S, ahash::RandomState>> {
        let i = (hash as usize) & (SHARDS - 1);
        self.shards[i].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Run `f` on the entry for `hash`, creating it when absent.
    pub fn with<R>(&self, hash: u64, now: u64, f: impl FnOnce(&mut S) -> R) -> R {
        let mut shard = self.shard(hash);
        if !shard.contains_key(&hash) && shard.len() >= self.per_shard {
            // Look at a bounded sample, not the whole shard: under a flood of new keys every
            // insert lands here, and a full scan per request would turn the bound into a
            // CPU cost. Idle entries in the sample go; if none is idle, the one expiring first.
            let mut victims = [0u64; EVICTION_SAMPLE];
            let mut idle = 0;
            let mut soonest: Option<(u64, u64)> = None;
            for (k, s) in shard.iter().take(EVICTION_SAMPLE) {
                if s.is_idle(now) {
                    victims[idle] = *k;
                    idle += 1;
                } else if soonest.is_none_or(|(_, t)| s.expires_at() < t) {
                    soonest = Some((*k, s.expires_at()));
                }
            }
            if idle == 0 {
                // `u64::MAX` marks entries that must never be dropped (held concurrency slots):
                // the shard then grows past its share, bounded by requests in flight.
                if let Some((k, _)) = soonest.filter(|(_, t)| *t != u64::MAX) {
                    victims[0] = k;
                    idle = 1;
                }
            }
            for k in &victims[..idle] {
                shard.remove(k);
            }
        }
        f(shard.entry(hash).or_default())
    }

    /// Run `f` on the entry for `hash` only if it exists.
    pub fn with_existing(&self, hash: u64, f: impl FnOnce(&mut S)) {
        if let Some(s) = self.shard(hash).get_mut(&hash) {
            f(s);
        }
    }

    /// Entries currently held (for tests and metrics).
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().map_or(0, |s| s.len()))
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A bounded cache keyed by exact bytes (a token, a set of identity values) whose entries
/// expire. The key itself is stored and compared on lookup, so a hash collision can never
/// return the value cached for another key.
pub struct ExactCache<V> {
    store: ShardedStore<Slot<V>>,
}

struct SlotEntry<V> {
    key: Box<[u8]>,
    value: V,
    /// Unix nanoseconds.
    expires_at: u64,
}

struct Slot<V>(Option<Box<SlotEntry<V>>>);

impl<V> Default for Slot<V> {
    fn default() -> Self {
        Self(None)
    }
}

impl<V> Expiring for Slot<V> {
    fn is_idle(&self, now: u64) -> bool {
        self.0.as_ref().is_none_or(|e| e.expires_at <= now)
    }
    fn expires_at(&self) -> u64 {
        self.0.as_ref().map_or(0, |e| e.expires_at)
    }
}

impl<V: Clone> ExactCache<V> {
    /// A cache of at most about `max_entries` entries.
    pub fn new(max_entries: usize) -> Self {
        Self {
            store: ShardedStore::new(max_entries),
        }
    }

    /// The value cached for exactly `key`, unless it expired by `now` (Unix nanoseconds).
    pub fn get(&self, key: &[u8], now: u64) -> Option<V> {
        let mut hit = None;
        self.store.with_existing(self.store.key_hash(&key), |slot| {
            if let Some(e) = slot.0.as_ref() {
                if e.expires_at > now && *e.key == *key {
                    hit = Some(e.value.clone());
                }
            }
        });
        hit
    }

    /// Cache `value` for `key` until `expires_at` (Unix nanoseconds).
    pub fn insert(&self, key: &[u8], value: V, expires_at: u64, now: u64) {
        self.store.with(self.store.key_hash(&key), now, |slot| {
            slot.0 = Some(Box::new(SlotEntry {
                key: key.into(),
                value,
                expires_at,
            }));
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Until(u64);

    impl Expiring for Until {
        fn is_idle(&self, now: u64) -> bool {
            self.0 <= now
        }
        fn expires_at(&self) -> u64 {
            self.0
        }
    }

    #[test]
    fn a_flood_of_distinct_keys_stays_within_the_bound() {
        let store: ShardedStore<Until> = ShardedStore::new(1_000);
        for i in 0..100_000u64 {
            let h = store.key_hash(&i);
            store.with(h, 0, |s| s.0 = 1_000 + i);
        }
        assert!(store.len() <= 1_000, "{} entries", store.len());
    }

    #[test]
    fn exact_cache_compares_keys_and_expires() {
        let cache: ExactCache<u32> = ExactCache::new(64);
        cache.insert(b"token-a", 1, 100, 0);
        assert_eq!(cache.get(b"token-a", 99), Some(1));
        assert_eq!(cache.get(b"token-a", 100), None);
        assert_eq!(cache.get(b"token-b", 0), None);
    }

    #[test]
    fn idle_entries_are_dropped_first() {
        let store: ShardedStore<Until> = ShardedStore::new(SHARDS);
        // One entry per shard at most: a second key in a shard evicts the idle one.
        let a = 0u64;
        let b = SHARDS as u64;
        store.with(a, 0, |s| s.0 = 5);
        store.with(b, 10, |s| s.0 = 50);
        assert_eq!(store.len(), 1);
        store.with(b, 10, |s| assert_eq!(s.0, 50));
    }
}
