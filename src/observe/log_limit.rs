//! Log lines that repeat in a loop are written at most [`PER_SECOND`] times a second per call
//! site; the rest are counted and reported once the next second's first line gets through.
//!
//! A failure that repeats without pause (Pingora's accept loop on a shut-down runtime logs
//! "Accept() failed" hundreds of thousands of times a second) would otherwise fill the disk
//! and hide every other line. The state is a fixed table of atomics, indexed by a hash of the
//! call site: no lock and no allocation per line.

use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Lines let through per call site and second.
pub const PER_SECOND: u64 = 20;
const SLOTS: usize = 256;
/// Low bits of a slot: lines in the current second; high bits: the second.
const COUNT_BITS: u32 = 24;
const COUNT_MASK: u64 = (1 << COUNT_BITS) - 1;

/// Per call site budgets. Two call sites that share a slot share a budget, which only makes
/// the limit stricter.
pub struct LogLimiter {
    slots: [AtomicU64; SLOTS],
    suppressed: [AtomicU64; SLOTS],
}

impl Default for LogLimiter {
    fn default() -> Self {
        Self {
            slots: [const { AtomicU64::new(0) }; SLOTS],
            suppressed: [const { AtomicU64::new(0) }; SLOTS],
        }
    }
}

/// The decision for one line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Write it; `suppressed` lines of this call site were dropped before it.
    Write {
        suppressed: u64,
    },
    Drop,
}

impl LogLimiter {
    /// Whether a line from the call site `key` ([`site_key`]) may be written at unix second
    /// `now`.
    pub fn check(&self, key: u64, now: u64) -> Verdict {
        let i = (key % SLOTS as u64) as usize;
        let mut current = self.slots[i].load(Ordering::Relaxed);
        loop {
            let (second, count) = (current >> COUNT_BITS, current & COUNT_MASK);
            let next = if second == now {
                if count >= PER_SECOND {
                    self.suppressed[i].fetch_add(1, Ordering::Relaxed);
                    return Verdict::Drop;
                }
                current + 1
            } else {
                now << COUNT_BITS | 1
            };
            match self.slots[i].compare_exchange_weak(
                current,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    let suppressed = self.suppressed[i].swap(0, Ordering::Relaxed);
                    return Verdict::Write { suppressed };
                }
                Err(actual) => current = actual,
            }
        }
    }
}

/// The call site of a line: its target, file and line. Lines forwarded from the `log` crate
/// (Pingora's) all share one tracing call site per level, but keep their own file and line.
pub fn site_key(meta: &tracing::Metadata<'_>) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (meta.target(), meta.file(), meta.line()).hash(&mut h);
    h.finish()
}

/// The current unix second.
pub fn unix_second() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_cut_and_counted_then_reported_the_next_second() {
        let limiter = LogLimiter::default();
        let site = 7;
        let written = (0..1000)
            .filter(|_| limiter.check(site, 100) != Verdict::Drop)
            .count();
        assert_eq!(written as u64, PER_SECOND);
        // Another call site has its own budget.
        assert_eq!(limiter.check(8, 100), Verdict::Write { suppressed: 0 });
        assert_eq!(
            limiter.check(site, 101),
            Verdict::Write {
                suppressed: 1000 - PER_SECOND
            }
        );
        assert_eq!(limiter.check(site, 101), Verdict::Write { suppressed: 0 });
    }
}
