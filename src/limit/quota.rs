//! Quotas: a fixed number of requests per calendar window in UTC (minute, hour, day, month),
//! as in a cloud gateway's usage plans. The count resets at the window boundary.

use crate::cache::Expiring;
use crate::config::Window;

const NANOS: u64 = 1_000_000_000;

impl Window {
    /// Start and end (exclusive) of the window holding `now`, in Unix nanoseconds.
    pub fn bounds(self, now: u64) -> (u64, u64) {
        let span = |secs: u64| {
            let len = secs * NANOS;
            let start = now - now % len;
            (start, start + len)
        };
        match self {
            Window::Minute => span(60),
            Window::Hour => span(3600),
            Window::Day => span(86_400),
            Window::Month => {
                let days = now / NANOS / 86_400;
                let (y, m, _) = civil_from_days(days as i64);
                let start = days_from_civil(y, m, 1);
                let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
                let end = days_from_civil(ny, nm, 1);
                (start as u64 * 86_400 * NANOS, end as u64 * 86_400 * NANOS)
            }
        }
    }

    /// Length in seconds, for the `w` parameter of `RateLimit-Policy` (months as 30 days).
    pub fn seconds(self) -> u64 {
        match self {
            Window::Minute => 60,
            Window::Hour => 3600,
            Window::Day => 86_400,
            Window::Month => 30 * 86_400,
        }
    }
}

// Howard Hinnant's civil calendar conversions (proleptic Gregorian, days since 1970-01-01).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Per-key state: the window it counts in and the count.
#[derive(Debug, Default, Clone, Copy)]
pub struct Usage {
    pub window_end: u64,
    pub count: u64,
}

impl Expiring for Usage {
    fn is_idle(&self, now: u64) -> bool {
        self.window_end <= now
    }
    fn expires_at(&self) -> u64 {
        self.window_end
    }
}

/// Outcome of one quota check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaDecision {
    pub allowed: bool,
    pub remaining: u64,
    /// Nanoseconds until the window resets.
    pub reset: u64,
}

/// Count one request against `limit` in `window`.
pub fn check(limit: u64, window: Window, state: &mut Usage, now: u64) -> QuotaDecision {
    // A different end means a new window, or a window size changed by a reload.
    let (_, end) = window.bounds(now);
    if state.window_end != end {
        *state = Usage {
            window_end: end,
            count: 0,
        };
    }
    let reset = state.window_end - now;
    if state.count >= limit {
        return QuotaDecision {
            allowed: false,
            remaining: 0,
            reset,
        };
    }
    state.count += 1;
    QuotaDecision {
        allowed: true,
        remaining: limit - state.count,
        reset,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(days: i64, secs: u64) -> u64 {
        (days as u64 * 86_400 + secs) * NANOS
    }

    #[test]
    fn calendar_months_in_utc() {
        // 2024-02-15 12:00 UTC: February of a leap year, 29 days.
        let feb15 = days_from_civil(2024, 2, 15);
        let (start, end) = Window::Month.bounds(at(feb15, 43_200));
        assert_eq!(start, at(days_from_civil(2024, 2, 1), 0));
        assert_eq!(end, at(days_from_civil(2024, 3, 1), 0));
        assert_eq!((end - start) / NANOS / 86_400, 29);
        let dec31 = days_from_civil(2025, 12, 31);
        let (_, end) = Window::Month.bounds(at(dec31, 86_399));
        assert_eq!(end, at(days_from_civil(2026, 1, 1), 0));
        assert_eq!(
            civil_from_days(days_from_civil(2026, 11, 25)),
            (2026, 11, 25)
        );
    }

    #[test]
    fn quota_resets_at_the_window_boundary() {
        let mut u = Usage::default();
        let t = at(20_000, 59) + 500;
        assert!(check(2, Window::Minute, &mut u, t).allowed);
        let d = check(2, Window::Minute, &mut u, t);
        assert_eq!((d.allowed, d.remaining), (true, 0));
        let d = check(2, Window::Minute, &mut u, t);
        assert!(!d.allowed);
        assert_eq!(d.reset, NANOS - 500, "the minute ends 1 s - 500 ns later");
        assert!(
            check(2, Window::Minute, &mut u, at(20_000, 60)).allowed,
            "new minute"
        );
    }
}
