//! Request validation: a 1 KB JSON body checked against its operation's schema (the issue's
//! budget is 10 µs), and the route lookup of API operations with 10 and 500 operations in the
//! document (it must stay flat).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion};
use gatehouse::config::ApiConfig;
use gatehouse::contract::{self, Operation};
use gatehouse::routing::{template, PathPattern, RouteMatch, RouteSpec, Router};
use http::Method;

/// `benches/fixtures/orders.yaml` with generated operations up to `n` in all, as
/// `benches/lib.sh`'s `openapi_doc` writes it.
fn operations(n: usize, dir: &std::path::Path) -> Vec<Operation> {
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/fixtures/orders.yaml");
    let mut doc = std::fs::read_to_string(fixture).unwrap();
    for i in 2..=n {
        doc.push_str(&format!(
            "  /things{i}/{{id}}:\n    get:\n      operationId: thing{i}\n      parameters: [{{name: id, in: path, required: true, schema: {{type: integer}}}}]\n      responses: {{200: {{description: ok}}}}\n"
        ));
    }
    let file = dir.join(format!("orders-{n}.yaml"));
    std::fs::write(&file, doc).unwrap();
    let api: ApiConfig = toml::from_str(&format!(
        "openapi = {:?}\nupstream = \"u\"\n",
        file.display().to_string()
    ))
    .unwrap();
    contract::load("bench", &api).unwrap()
}

/// The benchmarks' 1 KB order, as `benches/lib.sh`'s `json_body` writes it.
fn order() -> Vec<u8> {
    let items: Vec<String> = (0..6)
        .map(|i| {
            format!(
                r#"{{"sku": "BK-{i:04}", "title": "Book {i}: \"Select\" essays", "qty": {}, "price": {}}}"#,
                i % 3 + 1,
                12.5 + f64::from(i)
            )
        })
        .collect();
    let mut body = format!(
        r#"{{"order_id": "9f1c2e7a-3b4d-4c5e-8f6a-7b8c9d0e1f2a", "customer": {{"name": "Siobhan O'Brien", "email": "siobhan.obrien@example.com", "phone": "+353 1 555 0142"}}, "items": [{}], "note": "Please leave it at the door if nobody's home; ring twice. Union Square entrance.", "callback": "https://shop.example.com/orders/9f1c?ref=mail&utm_source=news", "gift": false, "coupon": null}}"#,
        items.join(", ")
    );
    while body.len() < 1024 {
        body.push(' ');
    }
    body.into_bytes()
}

fn body_validation(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let ops = operations(1, dir.path());
    let create = ops.iter().find(|o| o.id == "createOrder").unwrap();
    let body = order();
    assert!(contract::check::body(create, Some("application/json"), Some(&body)).is_ok());
    c.bench_function("contract/json_body_1kb", |b| {
        b.iter(|| {
            contract::check::body(
                black_box(create),
                Some("application/json"),
                Some(black_box(&body)),
            )
        })
    });
}

fn operation_lookup(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let mut group = c.benchmark_group("contract/operation_lookup_and_params");
    for n in [10usize, 500] {
        let ops = operations(n, dir.path());
        let mut router = Router::default();
        for (i, op) in ops.iter().enumerate() {
            let path = if template::has_params(&op.segments) {
                PathPattern::Template(op.template.clone(), op.segments.clone())
            } else {
                PathPattern::Exact(op.template.clone())
            };
            let spec = RouteSpec {
                hosts: Vec::new(),
                path,
                methods: vec![op.method.clone()],
                case_insensitive: false,
            };
            router.insert(&spec, i);
        }
        let path = format!("/things{n}/12345");
        let headers = http::HeaderMap::new();
        group.bench_with_input(BenchmarkId::from_parameter(n), &path, |b, path| {
            b.iter(|| {
                let RouteMatch::Found { value, .. } =
                    router.lookup(None, &Method::GET, black_box(path.as_bytes()))
                else {
                    panic!("no route")
                };
                let mut problems = Vec::new();
                contract::check::parameters(
                    &ops[*value],
                    path.as_bytes(),
                    None,
                    &headers,
                    &mut problems,
                );
                assert!(problems.is_empty());
                black_box(problems);
            })
        });
    }
    group.finish();
}

criterion_group!(benches, body_validation, operation_lookup);
criterion_main!(benches);
