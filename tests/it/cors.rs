//! CORS through the real binary: preflights answered at the edge without reaching the
//! upstream, CORS headers on proxied and refused answers, the upstream's own replaced.

use crate::common::{client, Gateway, Upstream};
use hyper::Response;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

fn config(upstream: &Upstream) -> String {
    format!(
        "[cors.web]\nallow_origins = [\"https://app.example.com\", \"https://*.example.org\"]\n\
         allow_headers = [\"authorization\", \"x-trace\"]\nexpose_headers = [\"x-total\"]\n\
         allow_credentials = true\nmax_age = \"1h\"\n\
         [cors.open]\nallow_origins = [\"*\"]\n\
         [upstreams.p]\ntargets = [{{ address = \"{}\" }}]\n\
         [authorizers.k]\ntype = \"api_key\"\nsources = [\"header:x-api-key\"]\n\
         keys = [{{ consumer = \"alice\", key = \"alice-key-0123456789\" }}]\n\
         [[routes]]\nname = \"orders\"\npath_prefix = \"/orders\"\nmethods = [\"GET\", \"PUT\"]\n\
         upstream = \"p\"\ncors = \"web\"\nauth = \"k\"\n\
         [[routes]]\nname = \"public\"\npath_prefix = \"/public\"\nupstream = \"p\"\ncors = \"open\"\n\
         [[routes]]\nname = \"plain\"\npath_prefix = \"/plain\"\nupstream = \"p\"\n",
        upstream.address()
    )
}

/// An upstream that counts its requests and sets its own CORS and Vary headers.
async fn upstream() -> (Upstream, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let up = Upstream::start(move |_req| {
        let counter = counter.clone();
        async move {
            counter.fetch_add(1, Ordering::SeqCst);
            let mut r = Response::new(crate::common::full("ok"));
            let h = r.headers_mut();
            h.insert("access-control-allow-origin", "*".parse().unwrap());
            h.insert("vary", "Accept-Encoding".parse().unwrap());
            h.insert("x-total", "7".parse().unwrap());
            r
        }
    })
    .await;
    (up, hits)
}

fn header(resp: &reqwest::Response, name: &str) -> Option<String> {
    let values: Vec<&str> = resp
        .headers()
        .get_all(name)
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    (!values.is_empty()).then(|| values.join(", "))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preflights_are_answered_at_the_edge() {
    let (up, hits) = upstream().await;
    let gw = Gateway::start(&config(&up));
    let preflight = |origin: &'static str, method: &'static str, headers: Option<&'static str>| {
        let mut req = client()
            .request(reqwest::Method::OPTIONS, gw.url("/orders/7"))
            .header("origin", origin)
            .header("access-control-request-method", method);
        if let Some(h) = headers {
            req = req.header("access-control-request-headers", h);
        }
        req.send()
    };
    // No credentials needed: a preflight never carries them.
    let resp = preflight(
        "https://shop.example.org",
        "PUT",
        Some("Authorization, Content-Type"),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 204);
    assert_eq!(
        header(&resp, "access-control-allow-origin").as_deref(),
        Some("https://shop.example.org")
    );
    assert_eq!(
        header(&resp, "access-control-allow-credentials").as_deref(),
        Some("true")
    );
    assert_eq!(
        header(&resp, "access-control-allow-headers").as_deref(),
        Some("authorization, content-type")
    );
    assert_eq!(
        header(&resp, "access-control-max-age").as_deref(),
        Some("3600")
    );
    assert!(header(&resp, "access-control-allow-methods")
        .unwrap()
        .contains("PUT"));
    assert!(header(&resp, "vary").unwrap().contains("Origin"));
    assert!(resp.headers().contains_key("x-request-id"));

    for (origin, method, headers, reason) in [
        ("https://evil.com", "GET", None, "origin not allowed"),
        ("https://example.org", "GET", None, "origin not allowed"),
        (
            "https://app.example.com",
            "CONNECT",
            None,
            "method not allowed",
        ),
        (
            "https://app.example.com",
            "GET",
            Some("x-admin"),
            "header not allowed",
        ),
    ] {
        let resp = preflight(origin, method, headers).await.unwrap();
        assert_eq!(resp.status(), 403, "{origin} {method}");
        assert!(!resp.headers().contains_key("access-control-allow-origin"));
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(
            body["error"].as_str().unwrap(),
            format!("CORS preflight refused: {reason}")
        );
    }
    // A route without a policy: OPTIONS goes to the upstream as any request.
    let resp = client()
        .request(reqwest::Method::OPTIONS, gw.url("/plain"))
        .header("origin", "https://app.example.com")
        .header("access-control-request-method", "GET")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        hits.load(Ordering::SeqCst),
        1,
        "only the route without CORS reached it"
    );

    // `explain` tells the same: answered by the gateway, or refused with the reason.
    let explain = |origin: &str| {
        let out = std::process::Command::new(crate::common::BIN)
            .args(["explain", "-c"])
            .arg(&gw.config_path)
            .args(["OPTIONS", &gw.url("/orders/7")])
            .args(["-H", &format!("origin: {origin}")])
            .args(["-H", "access-control-request-method: PUT"])
            .output()
            .unwrap();
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let v = explain("https://shop.example.org");
    assert_eq!(v["outcome"]["status"], 204, "{v}");
    assert_eq!(v["outcome"]["route"], "orders");
    let v = explain("https://evil.example.com");
    assert_eq!(v["outcome"]["status"], 403, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_carry_the_policy_headers_in_place_of_the_upstreams() {
    let (up, hits) = upstream().await;
    let gw = Gateway::start(&config(&up));
    let get = |path: &'static str, origin: Option<&'static str>, key: bool| {
        let mut req = client().get(gw.url(path));
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        if key {
            req = req.header("x-api-key", "alice-key-0123456789");
        }
        req.send()
    };
    let resp = get("/orders/1", Some("https://app.example.com"), true)
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        header(&resp, "access-control-allow-origin").as_deref(),
        Some("https://app.example.com"),
        "the upstream's `*` is replaced"
    );
    assert_eq!(
        header(&resp, "access-control-allow-credentials").as_deref(),
        Some("true")
    );
    assert_eq!(
        header(&resp, "access-control-expose-headers").as_deref(),
        Some("x-total")
    );
    assert_eq!(
        header(&resp, "vary").as_deref(),
        Some("Accept-Encoding, Origin")
    );

    // Another origin reaches the upstream (CORS is the browser's to enforce) but gets no grant.
    let resp = get("/orders/1", Some("https://evil.com"), true)
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "access-control-allow-origin"), None);
    assert_eq!(header(&resp, "access-control-allow-credentials"), None);

    // The gateway's own refusal is readable by an allowed origin.
    let resp = get("/orders/1", Some("https://app.example.com"), false)
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(
        header(&resp, "access-control-allow-origin").as_deref(),
        Some("https://app.example.com")
    );
    // So is a 405 on the route's path.
    let resp = client()
        .delete(gw.url("/orders/1"))
        .header("origin", "https://app.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 405);
    assert_eq!(
        header(&resp, "access-control-allow-origin").as_deref(),
        Some("https://app.example.com")
    );

    // Any origin without credentials: `*`, and nothing varies.
    let resp = get("/public", Some("https://anyone.test"), false)
        .await
        .unwrap();
    assert_eq!(
        header(&resp, "access-control-allow-origin").as_deref(),
        Some("*")
    );
    assert_eq!(header(&resp, "vary").as_deref(), Some("Accept-Encoding"));

    // A route without a policy passes the upstream's headers through.
    let resp = get("/plain", Some("https://anyone.test"), false)
        .await
        .unwrap();
    assert_eq!(
        header(&resp, "access-control-allow-origin").as_deref(),
        Some("*")
    );
    assert_eq!(hits.load(Ordering::SeqCst), 4);
}

#[test]
fn policies_are_checked_with_their_key_paths() {
    let (ok, _, stderr) = crate::common::check_config(
        "[[listeners]]\naddress = \"127.0.0.1:1\"\n\
         [cors.a]\nallow_origins = [\"*\"]\nallow_credentials = true\nallow_headers = [\"*\"]\n\
         [cors.b]\nallow_origins = [\"https://x.test/path\"]\n\
         [cors.n]\nallow_origins = [\"null\"]\n\
         [cors.d]\nallow_origins = [\"https://ok.test\"]\nallow_methods = [\"GET\", \"G T\"]\n\
         expose_headers = [\"bad header\"]\nmax_age = \"2d\"\n\
         [[routes]]\nname = \"r\"\nrespond = {}\ncors = \"c\"\n",
    );
    assert!(!ok);
    for expected in [
        "cors.a.allow_origins: \"*\" cannot be used with `allow_credentials`",
        "cors.a.allow_headers[0]: \"*\" is only for `allow_headers` without `allow_credentials`",
        "cors.b.allow_origins[0]: \"https://x.test/path\" is not an origin",
        "cors.n.allow_origins[0]: \"null\" is the origin of sandboxed frames",
        "cors.d.allow_methods[1]: \"G T\" is not a method",
        "cors.d.expose_headers[0]: \"bad header\" is not a header name",
        "cors.d.max_age: must be at most 1day",
        "routes[0].cors: unknown CORS policy \"c\"",
    ] {
        assert!(
            stderr.contains(expected),
            "missing {expected:?} in:\n{stderr}"
        );
    }
}
