//! Local limiter check cost: one thread, and all cores hitting the same policy (same key, the
//! worst case for its shard lock, and distinct keys).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use futures_util::FutureExt;
use gatehouse::config::LimitConfig;
use gatehouse::limit::{check, LimitInput, LimitRegistry, LimitState, Policy};
use gatehouse::observe::metrics::Metrics;
use http::HeaderMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn policy(toml: &str) -> Arc<Policy> {
    let config: LimitConfig = toml::from_str(toml).unwrap();
    let metrics = Metrics::new().unwrap();
    Arc::new(
        Policy::compile(
            "bench",
            &config,
            &LimitRegistry::default(),
            None,
            metrics.policy("bench"),
        )
        .unwrap(),
    )
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// Run `iters` checks spread over `threads` threads; returns the wall time.
fn contended(p: &Arc<Policy>, threads: u64, iters: u64, distinct_keys: bool) -> Duration {
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            let p = p.clone();
            s.spawn(move || {
                let headers = HeaderMap::new();
                for i in 0..iters / threads {
                    let ip = if distinct_keys {
                        std::net::IpAddr::from([10, t as u8, (i >> 8) as u8, i as u8])
                    } else {
                        std::net::IpAddr::from([10, 0, 0, 1])
                    };
                    let input = LimitInput {
                        route: "r",
                        client_ip: Some(ip),
                        consumer: None,
                        headers: &headers,
                    };
                    let mut st = LimitState::default();
                    // Local checks complete on the first poll.
                    let checked = check(std::slice::from_ref(&p), &input, now(), &mut st);
                    let _ = black_box(checked.now_or_never());
                }
            });
        }
    });
    start.elapsed()
}

fn limiter(c: &mut Criterion) {
    // A rate high enough that every check is allowed: the common path.
    let rate = policy("rate = 1000000000\nburst = 1000\nheaders = false");
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get()) as u64;
    let mut g = c.benchmark_group("limiter");
    g.bench_function("rate_check_one_thread", |b| {
        b.iter_custom(|iters| contended(&rate, 1, iters, false))
    });
    g.bench_function("rate_check_all_cores_same_key", |b| {
        b.iter_custom(|iters| contended(&rate, cores, iters, false))
    });
    g.bench_function("rate_check_all_cores_distinct_keys", |b| {
        b.iter_custom(|iters| contended(&rate, cores, iters, true))
    });
    g.finish();
}

criterion_group!(benches, limiter);
criterion_main!(benches);
