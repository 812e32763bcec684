//! Route lookup cost with 10, 1,000 and 10,000 routes: it must stay flat.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion};
use gatehouse::routing::{normalize_path, HostPattern, PathPattern, RouteSpec, Router};
use http::Method;

fn router(n: usize) -> Router<usize> {
    let mut r = Router::default();
    for i in 0..n {
        let spec = RouteSpec {
            case_insensitive: false,
            hosts: if i % 2 == 0 {
                vec![HostPattern::parse(&format!("svc{i}.example.com")).unwrap()]
            } else {
                Vec::new()
            },
            path: if i % 3 == 0 {
                PathPattern::Exact(format!("/api/v1/service{i}/items"))
            } else {
                PathPattern::Prefix(format!("/api/v1/service{i}"))
            },
            methods: if i % 5 == 0 {
                vec![Method::GET]
            } else {
                Vec::new()
            },
        };
        r.insert(&spec, i);
    }
    r
}

fn lookup(c: &mut Criterion) {
    let mut group = c.benchmark_group("route_lookup");
    for n in [10usize, 1_000, 10_000] {
        let r = router(n);
        let target = n - 1;
        let path = format!("/api/v1/service{target}/items/42/details");
        group.bench_with_input(BenchmarkId::from_parameter(n), &path, |b, path| {
            b.iter(|| {
                let p = normalize_path(black_box(path.as_bytes())).unwrap();
                black_box(r.lookup(Some("api.example.com"), &Method::GET, &p));
            })
        });
    }
    group.finish();
}

criterion_group!(benches, lookup);
criterion_main!(benches);
