//! `[limits.NAME]`: one throttling policy each.

use super::{duration_in, token_name, Config, KeyPath, Problems, DAY, SECOND};
use crate::config::{LimitBackend, LimitConfig};

pub(super) fn validate(config: &Config, p: &mut Problems) {
    let top = KeyPath::top("limits");
    for (name, limit) in &config.limits {
        let path = top.key(name);
        // Limit names are also quoted in RateLimit-Policy headers.
        token_name(p, path.clone(), "limit", name);
        policy(p, &path, limit);
        if limit.backend == LimitBackend::Redis {
            if config.redis.is_none() {
                p.at(
                    path.key("backend"),
                    "`redis` needs a `[redis]` section with the url",
                );
            }
            if limit.concurrency.is_some() {
                p.at(
                    path.key("backend"),
                    "concurrency limits are per instance (`local`) only",
                );
            }
        }
    }
}

fn policy(p: &mut Problems, path: &KeyPath, limit: &LimitConfig) {
    let kinds = [
        limit.rate.is_some(),
        limit.quota.is_some(),
        limit.concurrency.is_some(),
    ];
    if kinds.iter().filter(|k| **k).count() != 1 {
        p.at(
            path.clone(),
            "set exactly one of `rate`, `quota`, `concurrency`",
        );
    }
    for (key, value) in [
        ("rate", limit.rate),
        ("quota", limit.quota),
        ("concurrency", limit.concurrency),
    ] {
        if value == Some(0) {
            p.at(path.key(key), "must be at least 1");
        }
    }
    if limit.quota.is_some() != limit.window.is_some() {
        p.at(
            path.key("window"),
            "`quota` and `window` (minute, hour, day, month) go together",
        );
    }
    if limit.rate.is_some() {
        if limit.period.subsec_nanos() != 0 {
            // RateLimit-Policy states the window in whole seconds.
            p.at(path.key("period"), "must be a whole number of seconds");
        } else {
            duration_in(p, path.key("period"), limit.period, SECOND, 366 * DAY);
        }
    }
    if limit.burst > 1_000_000_000 {
        p.at(path.key("burst"), "must be at most 1000000000");
    }
    if limit.key.is_empty() {
        p.at(path.key("key"), "needs at least one part");
    }
    if limit.max_keys == 0 {
        p.at(path.key("max_keys"), "must be at least 1");
    }
}
