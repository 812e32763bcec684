//! Time as plain numbers: wall-clock Unix time for limiter windows, token and certificate times
//! and caches; a monotonic millisecond clock for deadlines.

use std::time::SystemTime;

/// Nanoseconds since the Unix epoch (0 if the clock is before it).
pub fn unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Seconds since the Unix epoch (0 if the clock is before it).
pub fn unix_secs() -> u64 {
    unix_nanos() / 1_000_000_000
}

/// Milliseconds since the first call: a cheap monotonic clock for deadlines (ejections,
/// reconnect backoff) that must not move with the wall clock.
pub fn now_millis() -> u64 {
    static EPOCH: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    EPOCH
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_millis() as u64
}
