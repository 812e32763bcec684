//! Rate with burst as GCRA (generic cell rate algorithm): one timestamp per key, exact, with no
//! background refill. A key may send `rate` requests per `period` on average and up to
//! `burst` more at once.

use crate::cache::Expiring;

/// Parameters of one rate policy, in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gcra {
    /// Time one request "costs": period / rate.
    pub emission: u64,
    /// How far ahead of now the schedule may run: burst * emission.
    pub tolerance: u64,
    /// Requests a full bucket allows at once (burst + 1).
    pub capacity: u64,
}

/// Per-key state: the theoretical arrival time of the next request.
#[derive(Debug, Default, Clone, Copy)]
pub struct Tat(pub u64);

impl Expiring for Tat {
    fn is_idle(&self, now: u64) -> bool {
        self.0 <= now
    }
    fn expires_at(&self) -> u64 {
        self.0
    }
}

/// Outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateDecision {
    pub allowed: bool,
    /// Requests still allowed right now after this one.
    pub remaining: u64,
    /// Nanoseconds until a request would be allowed again (0 when allowed), or until the bucket
    /// is full again (when allowed).
    pub wait: u64,
}

impl Gcra {
    pub fn new(rate: u64, period_nanos: u64, burst: u64) -> Self {
        let emission = (period_nanos / rate.max(1)).max(1);
        Self {
            emission,
            tolerance: emission.saturating_mul(burst),
            capacity: burst + 1,
        }
    }

    /// Check and, when allowed, record one request at `now`.
    pub fn check(&self, state: &mut Tat, now: u64) -> RateDecision {
        // Clamped: a schedule further ahead than the current parameters allow comes from a
        // stricter config before a reload and must not lock the key out.
        let horizon = now
            .saturating_add(self.tolerance)
            .saturating_add(self.emission);
        if state.0 > horizon {
            state.0 = horizon;
        }
        let tat = state.0.max(now);
        let allow_at = tat.saturating_sub(self.tolerance);
        if allow_at > now {
            return RateDecision {
                allowed: false,
                remaining: 0,
                wait: allow_at - now,
            };
        }
        let new_tat = tat.saturating_add(self.emission);
        state.0 = new_tat;
        let used = new_tat - now;
        let budget = self.tolerance + self.emission;
        RateDecision {
            allowed: true,
            remaining: budget.saturating_sub(used) / self.emission,
            wait: used,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    #[test]
    fn burst_then_steady_rate() {
        let g = Gcra::new(10, SEC, 4);
        let mut s = Tat::default();
        let now = 100 * SEC;
        let allowed = (0..20).filter(|_| g.check(&mut s, now).allowed).count();
        assert_eq!(allowed, 5, "burst 4 + 1");
        let d = g.check(&mut s, now);
        assert!(!d.allowed);
        assert_eq!(d.wait, SEC / 10, "next slot one emission interval later");
        assert!(g.check(&mut s, now + SEC / 10).allowed);
        assert!(!g.check(&mut s, now + SEC / 10).allowed);
        // Over 10 s at a steady pace: exactly the rate.
        let mut s = Tat::default();
        let allowed = (0..1000)
            .filter(|i| g.check(&mut s, now + i * SEC / 100).allowed)
            .count();
        assert_eq!(allowed, 100 + 4, "10/s for 10 s, plus the initial burst");
    }

    #[test]
    fn a_stricter_past_config_does_not_lock_keys_out() {
        let strict = Gcra::new(1, 3600 * SEC, 100);
        let mut s = Tat::default();
        for _ in 0..101 {
            assert!(strict.check(&mut s, SEC).allowed);
        }
        // Under the new parameters the key counts as having just spent its whole budget: it
        // waits one emission interval (10 ms), not the hours the old schedule held.
        let loose = Gcra::new(100, SEC, 0);
        let t = 2 * SEC;
        let d = loose.check(&mut s, t);
        assert!(!d.allowed && d.wait <= SEC / 100, "{d:?}");
        assert!(loose.check(&mut s, t + d.wait).allowed);
    }

    #[test]
    fn remaining_counts_down() {
        let g = Gcra::new(3, SEC, 2);
        let mut s = Tat::default();
        let r: Vec<u64> = (0..3).map(|_| g.check(&mut s, SEC).remaining).collect();
        assert_eq!(r, [2, 1, 0]);
    }
}
