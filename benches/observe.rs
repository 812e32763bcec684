//! Per-request observability cost: recording a finished request in the route's metrics (one
//! thread, and all cores on the same route), and formatting one access log line.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use gatehouse::observe::access_log::AccessEntry;
use gatehouse::observe::metrics::Metrics;
use http::Method;
use std::time::{Duration, Instant, SystemTime};

fn bench(c: &mut Criterion) {
    let metrics = Metrics::new().unwrap();
    let route = metrics.route("orders");
    let elapsed = Duration::from_micros(850);
    c.bench_function("metrics_observe", |b| {
        b.iter(|| route.observe(black_box(&Method::GET), 200, elapsed, SystemTime::now()))
    });
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get()) as u32;
    c.bench_function("metrics_observe_all_cores_same_route", |b| {
        b.iter_custom(|iters| {
            let per = iters / u64::from(threads) + 1;
            let start = Instant::now();
            std::thread::scope(|s| {
                for _ in 0..threads {
                    s.spawn(|| {
                        for _ in 0..per {
                            route.observe(&Method::GET, 200, elapsed, SystemTime::now());
                        }
                    });
                }
            });
            start.elapsed() / threads
        })
    });

    let entry = AccessEntry {
        time: SystemTime::now(),
        request_id: "0af7651916cd43dd8448eb211c80319c",
        trace_id: None,
        client_ip: "203.0.113.7".parse().ok(),
        method: "GET",
        host: "api.example.com",
        path: "/v1/orders/12345",
        route: Some("orders"),
        upstream: Some("orders"),
        target: Some("10.0.0.12:8080"),
        status: 200,
        bytes_sent: 1234,
        bytes_received: 0,
        duration: Duration::from_micros(1850),
        upstream_duration: Some(Duration::from_micros(1500)),
        consumer: Some("alice"),
        auth: Some("allowed"),
        firewall: None,
        error: None,
    };
    let mut line = Vec::with_capacity(512);
    c.bench_function("access_log_format_line", |b| {
        b.iter(|| {
            line.clear();
            black_box(&entry).write_json(&mut line);
            black_box(line.len())
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
