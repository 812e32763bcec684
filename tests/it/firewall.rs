//! The firewall through the real binary: rules of every kind, their actions, bodies read
//! before authentication and still delivered intact, managed protections and their corpora,
//! bans (local, shared through a real Redis, kept across reloads), count mode, and `check`.

use crate::common::*;
use hyper::body::Incoming;
use hyper::{Request, Response};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

const T: Duration = Duration::from_secs(5);
const GOOD_KEY: &str = "alice-key-0123456789";
const BLOCKED: &str = "request blocked by the firewall";
const DECISIONS: &str = "gatehouse_firewall_decisions_total";

// ---------------------------------------------------------------------------------------------
// Helpers

/// An upstream that answers 200 with exactly the body it received (so a test can compare it
/// byte for byte), with the method and target it received in `x-echo-method` and
/// `x-echo-uri`; the counter counts requests that reached it.
async fn mirror() -> (Upstream, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let up = Upstream::start(move |req: Request<Incoming>| {
        h.fetch_add(1, Ordering::SeqCst);
        async move {
            let method = req.method().to_string();
            let uri = req.uri().to_string();
            let body = request_body(req).await;
            let mut resp = Response::new(full(body));
            resp.headers_mut()
                .insert("x-echo-method", method.parse().unwrap());
            resp.headers_mut()
                .insert("x-echo-uri", uri.parse().unwrap());
            resp
        }
    })
    .await;
    (up, hits)
}

fn pool(up: &Upstream) -> String {
    format!(
        "[upstreams.p]\ntargets = [{{ address = \"{}\" }}]\n",
        up.address()
    )
}

/// Percent-encode everything but unreserved characters (RFC 3986).
fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A request to send through the gateway.
#[derive(Debug, Clone)]
struct Req {
    method: &'static str,
    path: String,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
}

fn get(path: &str) -> Req {
    Req {
        method: "GET",
        path: path.to_string(),
        headers: Vec::new(),
        body: None,
    }
}

fn post(path: &str, content_type: &str, body: impl Into<Vec<u8>>) -> Req {
    get(path)
        .method("POST")
        .h("content-type", content_type)
        .body(body)
}

fn post_json(path: &str, body: &Value) -> Req {
    post(path, "application/json", body.to_string())
}

impl Req {
    fn method(mut self, m: &'static str) -> Self {
        self.method = m;
        self
    }

    fn h(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// As client `ip`, through the trusted proxy 127.0.0.1.
    fn ip(self, ip: &str) -> Self {
        self.h("x-forwarded-for", ip)
    }

    fn key(self, key: &str) -> Self {
        self.h("x-api-key", key)
    }

    fn id(self, id: &str) -> Self {
        self.h("x-request-id", id)
    }

    fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = Some(body.into());
        self
    }
}

/// What came back.
#[derive(Debug)]
struct Reply {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
}

impl Reply {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn error(&self) -> String {
        self.json()["error"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// A firewall refusal: the status, the error, and the request id in the body matches the
    /// `x-request-id` header. `None` when all holds, else what differs.
    fn refusal_problem(&self, status: u16, error: &str) -> Option<String> {
        let body = self.json();
        let id = self.header("x-request-id").unwrap_or("(none)");
        if self.status != status || body["error"] != error || body["request_id"] != id {
            return Some(format!(
                "expected {status} {error:?} with request_id {id:?}, got {} {}",
                self.status,
                self.text()
            ));
        }
        None
    }
}

async fn send(gw: &Gateway, req: &Req) -> Reply {
    let mut r = client().request(
        reqwest::Method::from_bytes(req.method.as_bytes()).unwrap(),
        gw.url(&req.path),
    );
    for (k, v) in &req.headers {
        r = r.header(k.as_str(), v.as_str());
    }
    if let Some(b) = &req.body {
        r = r.body(b.clone());
    }
    let resp = r
        .send()
        .await
        .unwrap_or_else(|e| panic!("{} {}: {e}", req.method, req.path));
    Reply {
        status: resp.status().as_u16(),
        headers: resp.headers().clone(),
        body: resp.bytes().await.unwrap().to_vec(),
    }
}

fn decisions(metrics: &str, rule: &str, action: &str) -> f64 {
    metric_value(metrics, DECISIONS, &[("rule", rule), ("action", action)])
}

/// The `firewall` field of the access log line of request `id`.
async fn firewall_note(gw: &Gateway, id: &str) -> Value {
    gw.log_line(id)
        .await
        .map_or(Value::String("(no access log line)".into()), |l| {
            l["firewall"].clone()
        })
}

async fn bans(gw: &Gateway) -> Vec<Value> {
    let v = get_json(gw.admin_url("/-/bans")).await;
    v["bans"].as_array().cloned().unwrap_or_default()
}

async fn ban_keys(gw: &Gateway) -> Vec<String> {
    bans(gw)
        .await
        .iter()
        .filter_map(|b| b["key"].as_str().map(str::to_string))
        .collect()
}

async fn lift(gw: &Gateway, key: &str) -> (u16, Value) {
    let resp = client()
        .delete(gw.admin_url(&format!("/-/bans/{key}")))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// `[authorizers.keys]`: API keys in `x-api-key`, one consumer `alice` with [`GOOD_KEY`].
const API_KEYS: &str = "[authorizers.keys]\ntype = \"api_key\"\nsources = [\"header:x-api-key\"]\n\
                        keys = [{ consumer = \"alice\", key = \"alice-key-0123456789\" }]\n";

const TRUSTED: &str = "[edge]\ntrusted_proxies = [\"127.0.0.1/32\"]\n";

const ALL_MANAGED: &str =
    "managed = [\"sqli\", \"xss\", \"traversal\", \"known_bad_inputs\", \"scanners\"]\n";

// ---------------------------------------------------------------------------------------------
// 1. Match kinds

/// One kind of condition: a rule `r_NAME` (deny) scoped to route `NAME` (prefix `/NAME`),
/// requests it must refuse and near misses it must let through.
struct Case {
    name: &'static str,
    rule: String,
    hit: Vec<Req>,
    miss: Vec<Req>,
}

fn case(name: &'static str, rule: &str, hit: Vec<Req>, miss: Vec<Req>) -> Case {
    Case {
        name,
        rule: rule.to_string(),
        hit,
        miss,
    }
}

fn match_cases() -> Vec<Case> {
    let ct = |ct: &str| post("/header_regex", ct, "x");
    let long_then_secret = format!("{}secret", "a".repeat(9000));
    vec![
        case(
            "method",
            "methods = [\"DELETE\", \"put\"]",
            vec![
                get("/method/x").method("DELETE"),
                get("/method/x").method("PUT"),
            ],
            vec![get("/method/x"), post("/method/x", "text/plain", "x")],
        ),
        case(
            "path_prefix",
            "path_prefix = \"/path_prefix/admin\"",
            vec![
                get("/path_prefix/admin"),
                get("/path_prefix/admin/users"),
                // Matched on the normalized path.
                get("/path_prefix//admin"),
                get("/path_prefix/%61dmin"),
            ],
            vec![get("/path_prefix/public"), get("/path_prefix/adm")],
        ),
        case(
            "path_glob",
            "path_glob = \"/path_glob/v*/internal/**\"",
            vec![
                get("/path_glob/v1/internal/x"),
                get("/path_glob/v22/internal/a/b/c"),
            ],
            vec![
                // `*` stays within one segment.
                get("/path_glob/v1/extra/internal/x"),
                get("/path_glob/x1/internal/x"),
                get("/path_glob/v1/public/x"),
            ],
        ),
        case(
            "path_glob_q",
            "path_glob = \"/path_glob_q/r?.txt\"",
            vec![get("/path_glob_q/r1.txt"), get("/path_glob_q/rx.txt")],
            vec![
                get("/path_glob_q/r12.txt"),
                get("/path_glob_q/r.txt"),
                // Anchored at the end.
                get("/path_glob_q/r1.txt.bak"),
            ],
        ),
        case(
            "path_regex",
            "path_regex = \"^/path_regex/debug\"",
            vec![get("/path_regex/debug"), get("/path_regex/debug/vars")],
            vec![get("/path_regex/nodebug"), get("/path_regex/x/debug")],
        ),
        case(
            "query_present",
            "query = [{ name = \"debug\", present = true }]",
            vec![
                get("/query_present?debug=1"),
                get("/query_present?a=1&debug="),
                get("/query_present?%64ebug=1"),
            ],
            vec![
                get("/query_present"),
                get("/query_present?nodebug=1"),
                get("/query_present?debugx=1"),
            ],
        ),
        case(
            "query_absent",
            "query = [{ name = \"token\", absent = true }]",
            vec![get("/query_absent"), get("/query_absent?x=1")],
            vec![
                get("/query_absent?token=abc"),
                get("/query_absent?x=1&token=abc"),
            ],
        ),
        case(
            "query_regex",
            "query = [{ name = \"q\", regex = \"(?i)union\\\\s+select\" }]",
            vec![
                get("/query_regex?q=1%20UNION%20SELECT%202"),
                get("/query_regex?q=1+union+select+2"),
                get("/query_regex?q=safe&q=union%20select"),
            ],
            vec![
                get("/query_regex?q=onion%20selection"),
                get("/query_regex?other=union%20select"),
            ],
        ),
        case(
            "header_present",
            "headers = [{ name = \"x-debug\", present = true }]",
            vec![
                get("/header_present").h("x-debug", "1"),
                get("/header_present").h("X-Debug", ""),
            ],
            vec![
                get("/header_present"),
                get("/header_present").h("x-debugger", "1"),
            ],
        ),
        case(
            "header_absent",
            "headers = [{ name = \"x-client-version\", absent = true }]",
            vec![get("/header_absent")],
            vec![get("/header_absent").h("x-client-version", "2.1")],
        ),
        case(
            "header_regex",
            "headers = [{ name = \"content-type\", regex = \"xml\" }]",
            vec![ct("application/xml"), ct("text/xml; charset=utf-8")],
            vec![ct("application/json"), get("/header_regex")],
        ),
        case(
            "ips",
            "ips = [\"203.0.113.0/24\", \"2001:db8::/32\"]",
            vec![
                get("/ips").ip("203.0.113.50"),
                get("/ips").ip("2001:db8::5"),
            ],
            vec![
                get("/ips").ip("198.51.100.50"),
                get("/ips"),
                get("/ips").ip("2001:db9::5"),
            ],
        ),
        case(
            "user_agent",
            "user_agent = \"(?i)curl\"",
            vec![
                get("/user_agent").h("user-agent", "curl/8.4.0"),
                get("/user_agent").h("user-agent", "Mozilla/5.0 (CURL)"),
            ],
            vec![
                get("/user_agent").h("user-agent", "Mozilla/5.0"),
                get("/user_agent"),
            ],
        ),
        case(
            "body",
            "body = \"secret\"",
            vec![
                post("/body", "text/plain", "the secret word"),
                post("/body", "application/octet-stream", "secret"),
            ],
            vec![
                post("/body", "text/plain", "nothing to see"),
                get("/body"),
                // Beyond the first `body_inspect_bytes` (8192).
                post("/body", "text/plain", long_then_secret),
            ],
        ),
        case(
            "json",
            "json = [{ name = \"/user/role\", regex = \"^admin$\" }]",
            vec![
                post_json("/json", &json!({"user": {"role": "admin", "name": "x"}})),
                post_json("/json", &json!({"a": [1, 2], "user": {"role": "admin"}})),
            ],
            vec![
                post_json("/json", &json!({"user": {"role": "administrator"}})),
                post_json("/json", &json!({"role": "admin"})),
                post_json("/json", &json!({"user": {"name": "admin"}})),
                get("/json"),
            ],
        ),
        case(
            "json_present",
            "json = [{ name = \"/debug\", present = true }]",
            vec![
                post_json("/json_present", &json!({"debug": false})),
                post_json("/json_present", &json!({"debug": null, "x": 1})),
            ],
            vec![
                post_json("/json_present", &json!({"x": {"debug": true}})),
                post_json("/json_present", &json!([1, 2])),
            ],
        ),
        case(
            "host",
            "hosts = [\"api.example.com\"]",
            vec![
                get("/host").h("host", "api.example.com"),
                get("/host").h("host", "API.Example.COM"),
                get("/host").h("host", "api.example.com:8080"),
                get("/host").h("host", "api.example.com."),
            ],
            vec![
                get("/host").h("host", "www.example.com"),
                get("/host").h("host", "api.example.com.evil.test"),
            ],
        ),
        case(
            "and",
            "methods = [\"POST\"]\npath_prefix = \"/and/admin\"\n\
             headers = [{ name = \"x-debug\", present = true }]",
            vec![post("/and/admin/x", "text/plain", "x").h("x-debug", "1")],
            vec![
                get("/and/admin/x").h("x-debug", "1"),
                post("/and/public", "text/plain", "x").h("x-debug", "1"),
                post("/and/admin/x", "text/plain", "x"),
            ],
        ),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn every_kind_of_condition_refuses_a_match_and_lets_a_near_miss_through() {
    let up = Upstream::named("upstream").await;
    let cases = match_cases();
    let mut config = format!("{TRUSTED}{}[firewall]\n", pool(&up));
    for c in &cases {
        config.push_str(&format!(
            "[[firewall.rules]]\nname = \"r_{0}\"\naction = \"deny\"\nroutes = [\"{0}\"]\n{1}\n",
            c.name, c.rule
        ));
    }
    // Route scoping: a rule on route `scoped_a` does nothing on `scoped_b`.
    config.push_str(
        "[[firewall.rules]]\nname = \"r_scoped\"\naction = \"deny\"\nroutes = [\"scoped_a\"]\n\
         headers = [{ name = \"x-block\", present = true }]\n",
    );
    for name in cases.iter().map(|c| c.name).chain(["scoped_a", "scoped_b"]) {
        config.push_str(&format!(
            "[[routes]]\nname = \"{name}\"\npath_prefix = \"/{name}\"\nupstream = \"p\"\n"
        ));
    }
    let gw = Gateway::start(&config);

    let mut failures = Vec::new();
    let mut expected_hits = Vec::new();
    for c in &cases {
        for req in &c.hit {
            let r = send(&gw, req).await;
            if let Some(p) = r.refusal_problem(403, BLOCKED) {
                failures.push(format!("{}: should be refused: {req:?}: {p}", c.name));
            }
        }
        for req in &c.miss {
            let r = send(&gw, req).await;
            if r.status != 200 || r.text() != "upstream" {
                failures.push(format!(
                    "{}: near miss should pass: {req:?}: got {} {}",
                    c.name,
                    r.status,
                    r.text()
                ));
            }
        }
        expected_hits.push((format!("r_{}", c.name), c.hit.len()));
    }
    let r = send(&gw, &get("/scoped_a/x").h("x-block", "1")).await;
    if let Some(p) = r.refusal_problem(403, BLOCKED) {
        failures.push(format!("scoped: route scoped_a should refuse: {p}"));
    }
    let r = send(&gw, &get("/scoped_b/x").h("x-block", "1")).await;
    if r.status != 200 {
        failures.push(format!(
            "scoped: the rule of scoped_a applied on scoped_b: {} {}",
            r.status,
            r.text()
        ));
    }

    // Each rule counted exactly its own matches.
    let metrics = gw.metrics().await;
    for (rule, n) in expected_hits {
        let got = decisions(&metrics, &rule, "deny");
        if got != n as f64 {
            failures.push(format!(
                "{rule}: {got} deny decisions counted, expected {n}"
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

// ---------------------------------------------------------------------------------------------
// 2. Actions

#[tokio::test(flavor = "multi_thread")]
async fn deny_log_and_limit_actions_answer_count_and_log() {
    let (up, hits) = mirror().await;
    let gw = Gateway::start(&format!(
        "{TRUSTED}{}[firewall]\n\
         [[firewall.rules]]\nname = \"watch\"\naction = \"log\"\n\
         headers = [{{ name = \"x-watch\", present = true }}]\n\
         [[firewall.rules]]\nname = \"no-debug\"\naction = \"deny\"\n\
         query = [{{ name = \"debug\", present = true }}]\n\
         [[firewall.rules]]\nname = \"slow-search\"\naction = \"limit\"\n\
         path_prefix = \"/search\"\nrate = 3\nper = \"1m\"\n\
         [[routes]]\nname = \"r\"\nupstream = \"p\"\n",
        pool(&up)
    ));

    // deny: 403 JSON with the request id, nothing reaches the upstream.
    let r = send(&gw, &get("/x?debug=1").id("fw-deny-1")).await;
    assert_eq!(r.refusal_problem(403, BLOCKED), None);
    assert_eq!(r.json()["request_id"], "fw-deny-1");
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "a denied request reached the upstream"
    );
    assert_eq!(firewall_note(&gw, "fw-deny-1").await, "deny:no-debug");
    let m = gw.metrics().await;
    assert_eq!(decisions(&m, "no-debug", "deny"), 1.0, "{m}");

    // log: the request passes, and is counted and noted.
    let r = send(&gw, &get("/x?a=1").h("x-watch", "1").id("fw-log-1")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-echo-uri"), Some("/x?a=1"));
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    assert_eq!(firewall_note(&gw, "fw-log-1").await, "log:watch");
    let m = gw.metrics().await;
    assert_eq!(decisions(&m, "watch", "log"), 1.0, "{m}");

    // A `log` match lets evaluation go on to the `deny` rule after it.
    let r = send(&gw, &get("/x?debug=1").h("x-watch", "1").id("fw-log-2")).await;
    assert_eq!(r.refusal_problem(403, BLOCKED), None);
    assert_eq!(firewall_note(&gw, "fw-log-2").await, "deny:no-debug");
    let m = gw.metrics().await;
    assert_eq!(decisions(&m, "watch", "log"), 2.0, "{m}");
    assert_eq!(decisions(&m, "no-debug", "deny"), 2.0, "{m}");

    // limit: 3 a minute per client, then 429 with Retry-After; another client has its own.
    let mut statuses = Vec::new();
    let mut last = None;
    for i in 0..4 {
        let r = send(
            &gw,
            &get("/search?q=x")
                .ip("203.0.113.20")
                .id(&format!("fw-limit-{i}")),
        )
        .await;
        statuses.push(r.status);
        last = Some(r);
    }
    assert_eq!(statuses, [200, 200, 200, 429], "rate = 3 per 1m");
    let r = last.unwrap();
    assert_eq!(
        r.refusal_problem(429, "too many requests matching a firewall rule"),
        None
    );
    let retry: u64 = r
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no numeric Retry-After: {:?}", r.headers));
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
    assert_eq!(firewall_note(&gw, "fw-limit-3").await, "limit:slow-search");
    let r = send(&gw, &get("/search?q=x").ip("203.0.113.21")).await;
    assert_eq!(r.status, 200, "another client is limited separately");
    let r = send(&gw, &get("/other").ip("203.0.113.20")).await;
    assert_eq!(r.status, 200, "the limit applies only to matching requests");
    let m = gw.metrics().await;
    assert_eq!(decisions(&m, "slow-search", "limit"), 1.0, "{m}");
}

// ---------------------------------------------------------------------------------------------
// 3. Bodies

/// Managed protections on route `api` (API key auth) to the mirror; `extra` goes into
/// `[firewall]`.
fn body_config(up: &Upstream, extra: &str) -> String {
    format!(
        "{API_KEYS}{}[firewall]\n{ALL_MANAGED}{extra}\n\
         [[routes]]\nname = \"api\"\nupstream = \"p\"\nauth = \"keys\"\n",
        pool(up)
    )
}

/// A benign JSON document of about `size` bytes, spelled so that any re-serialization would
/// change it (spacing, escapes, non-ASCII).
fn benign_json(size: usize) -> Vec<u8> {
    let mut s = String::from("{\n  \"title\" : \"Zo\u{eb} \u{2615} caf\\u00e9\",\n  \"items\": [");
    let mut i = 0;
    while s.len() < size - 64 {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&format!(
            "\n    {{\"id\": {i}, \"name\": \"widget number {i}\", \"price\": {}.{:02}}}",
            i * 3,
            i % 100
        ));
        i += 1;
    }
    s.push_str("\n  ]\n}\n");
    s.into_bytes()
}

#[tokio::test(flavor = "multi_thread")]
async fn bodies_are_inspected_before_auth_and_delivered_intact() {
    let (up, hits) = mirror().await;
    let gw = Gateway::start(&body_config(&up, ""));

    for size in [300, 40 * 1024] {
        let body = benign_json(size);
        assert!(body.len() <= 65536 && body.len() >= size - 64);
        let r = send(
            &gw,
            &post("/orders", "application/json", body.clone()).key(GOOD_KEY),
        )
        .await;
        assert_eq!(r.status, 200, "{size} bytes: {}", r.text());
        assert_eq!(r.header("x-echo-method"), Some("POST"));
        assert!(
            r.body == body,
            "{size} bytes: the upstream got {} bytes, not the {} sent (first difference at {:?})",
            r.body.len(),
            body.len(),
            r.body.iter().zip(&body).position(|(a, b)| a != b)
        );
    }
    assert_eq!(hits.load(Ordering::SeqCst), 2);

    // The body is inspected before authentication: an attack without credentials gets the
    // firewall's 403, not the authorizer's 401; in a 40 KB body, an attack at the start is
    // caught too.
    let attack = json!({"comment": "<script>alert(1)</script>"});
    let r = send(&gw, &post_json("/orders", &attack)).await;
    assert_eq!(r.refusal_problem(403, BLOCKED), None);
    let mut big = benign_json(40 * 1024);
    let at = big.iter().position(|&b| b == b'Z').unwrap();
    big.splice(at..at, b"<script>alert(1)</script>".iter().copied());
    let r = send(&gw, &post("/orders", "application/json", big).key(GOOD_KEY)).await;
    assert_eq!(r.refusal_problem(403, BLOCKED), None, "40 KB body with XSS");
    assert_eq!(
        hits.load(Ordering::SeqCst),
        2,
        "attacks reached the upstream"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_expecting_100_continue_gets_it_and_its_body_is_inspected() {
    let (up, hits) = mirror().await;
    let gw = Gateway::start(&body_config(&up, ""));
    let exchange = |body: Vec<u8>| {
        let addr = gw.addr();
        async move {
            let mut conn = RawConn::connect(addr).await;
            let head = format!(
                "POST /orders HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n\
                 X-Api-Key: {GOOD_KEY}\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
                body.len()
            );
            conn.send(head.as_bytes()).await.unwrap();
            let interim = conn.response(T).await.map(|r| r.status);
            conn.send(&body).await.unwrap();
            (interim, conn.response(T).await)
        }
    };
    let body = benign_json(2000);
    let (interim, r) = exchange(body.clone()).await;
    assert_eq!(interim, Some(100), "no 100 Continue before the body");
    let r = r.expect("a final response");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.body == body, "the body changed on the way");
    let (interim, r) = exchange(json!({"comment": XSS}).to_string().into_bytes()).await;
    assert_eq!(interim, Some(100));
    assert_eq!(r.map(|r| r.status), Some(403), "the body was inspected");
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}

/// A chunked POST of `chunks` on a raw connection.
fn chunked_request(chunks: &[&[u8]]) -> Vec<u8> {
    let mut out = format!(
        "POST /orders HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n\
         X-Api-Key: {GOOD_KEY}\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    .into_bytes();
    for c in chunks {
        out.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
        out.extend_from_slice(c);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn chunked_bodies_are_refused_with_oversize_deny_and_pass_by_default() {
    let (up, hits) = mirror().await;
    let deny = Gateway::start(&body_config(&up, "oversize_body = \"deny\""));
    let default = Gateway::start(&body_config(&up, ""));
    let body = benign_json(3000);
    let (a, b) = body.split_at(1000);
    let request = chunked_request(&[a, b]);

    let mut conn = RawConn::connect(deny.addr()).await;
    conn.send(&request).await.unwrap();
    let r = conn.response(T).await.expect("a response");
    assert_eq!(r.status, 413, "oversize_body = deny: {}", r.text());
    assert_eq!(hits.load(Ordering::SeqCst), 0);
    // A declared length over 65536 is refused the same way.
    let r = send(
        &deny,
        &post("/orders", "application/json", benign_json(70_000)).key(GOOD_KEY),
    )
    .await;
    assert_eq!(
        r.status,
        413,
        "Content-Length > 65536 with deny: {}",
        r.text()
    );
    assert_eq!(hits.load(Ordering::SeqCst), 0);
    let m = deny.metrics().await;
    assert_eq!(decisions(&m, "oversize_body", "deny"), 2.0, "{m}");

    let mut conn = RawConn::connect(default.addr()).await;
    conn.send(&request).await.unwrap();
    let r = conn.response(T).await.expect("a response");
    assert_eq!(r.status, 200, "oversize_body = continue: {}", r.text());
    assert!(
        r.body == body,
        "chunked body changed on the way: {}",
        r.text()
    );
    let big = benign_json(70_000);
    let r = send(
        &default,
        &post("/orders", "application/json", big.clone()).key(GOOD_KEY),
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(r.body == big, "70 KB body changed on the way");
    let m = default.metrics().await;
    assert_eq!(decisions(&m, "oversize_body", "count"), 2.0, "{m}");
}

// ---------------------------------------------------------------------------------------------
// 4. Managed protections

fn managed_config(up: &Upstream, firewall_extra: &str) -> String {
    format!(
        "{}[firewall]\n{ALL_MANAGED}inspect_headers = [\"referer\", \"x-custom-input\"]\n\
         {firewall_extra}\n\
         [[routes]]\nname = \"html\"\npath_prefix = \"/html\"\nupstream = \"p\"\n\
         firewall_skip = [\"xss\"]\n\
         [[routes]]\nname = \"files\"\npath_prefix = \"/files\"\nupstream = \"p\"\n\
         allow_in_path = [\"encoded_slash\"]\n\
         [[routes]]\nname = \"r\"\nupstream = \"p\"\n",
        pool(up)
    )
}

const SQLI: &str = "' OR 1=1--";
const XSS: &str = "<script>alert(1)</script>";
const JNDI: &str = "${jndi:ldap://x/a}";

#[tokio::test(flavor = "multi_thread")]
async fn managed_protections_refuse_attacks_and_name_them() {
    let (up, hits) = mirror().await;
    let gw = Gateway::start(&managed_config(&up, ""));
    let xss_body = json!({"comment": XSS});
    let cases: Vec<(&str, Req, &str)> = vec![
        (
            "sqli in a query parameter",
            get(&format!("/search?id={}", enc(SQLI))),
            "deny:sqli",
        ),
        (
            "sqli in a cookie",
            get("/account").h("cookie", &format!("theme=dark; id=1{SQLI}")),
            "deny:sqli",
        ),
        (
            "xss in a JSON body",
            post_json("/comments", &xss_body),
            "deny:xss",
        ),
        (
            "xss in a form body",
            post(
                "/comments",
                "application/x-www-form-urlencoded",
                format!("a=1&comment={}", enc(XSS)),
            ),
            "deny:xss",
        ),
        (
            "traversal in the path",
            get("/files/..%2f..%2fetc/passwd"),
            "deny:traversal",
        ),
        (
            "traversal in a query parameter",
            get(&format!("/download?file={}", enc("../../etc/passwd"))),
            "deny:traversal",
        ),
        (
            "log4shell in an inspected header",
            get("/").h("x-custom-input", JNDI),
            "deny:known_bad_inputs",
        ),
        (
            "log4shell in the referer",
            get("/").h("referer", &format!("https://example.com/{JNDI}")),
            "deny:known_bad_inputs",
        ),
        (
            "scanner user agent",
            get("/").h("user-agent", "sqlmap/1.7#stable (https://sqlmap.org)"),
            "deny:scanners",
        ),
    ];
    let mut failures = Vec::new();
    for (i, (what, req, note)) in cases.iter().enumerate() {
        let id = format!("fw-managed-{i}");
        let r = send(&gw, &req.clone().id(&id)).await;
        if let Some(p) = r.refusal_problem(403, BLOCKED) {
            failures.push(format!("{what}: {p}"));
            continue;
        }
        let got = firewall_note(&gw, &id).await;
        if got != *note {
            failures.push(format!(
                "{what}: access log firewall = {got}, expected {note}"
            ));
        }
    }
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "an attack reached the upstream"
    );

    // Near misses: the same values where nothing inspects them, and benign requests.
    let passes: Vec<(&str, Req)> = vec![
        (
            "log4shell in a header not in inspect_headers",
            get("/").h("x-other", JNDI),
        ),
        (
            "a browser user agent",
            get("/").h("user-agent", "Mozilla/5.0 (X11; Linux x86_64)"),
        ),
        (
            "benign query",
            get(&format!("/search?q={}&page=2", enc("O'Reilly books"))),
        ),
        (
            "benign JSON",
            post_json("/comments", &json!({"comment": "I <3 this"})),
        ),
        (
            "xss on a route that skips xss",
            post_json("/html/pages", &xss_body),
        ),
    ];
    for (what, req) in &passes {
        let r = send(&gw, req).await;
        if r.status != 200 {
            failures.push(format!(
                "{what}: should pass, got {} {}",
                r.status,
                r.text()
            ));
        }
    }
    // firewall_skip = ["xss"] skips only xss.
    let r = send(&gw, &get(&format!("/html/x?id={}", enc(SQLI)))).await;
    if r.status != 403 {
        failures.push(format!("sqli on the route that skips xss: {}", r.status));
    }

    let m = gw.metrics().await;
    for (rule, n) in [
        ("sqli", 3.0),
        ("xss", 2.0),
        ("traversal", 2.0),
        ("known_bad_inputs", 2.0),
        ("scanners", 1.0),
    ] {
        let got = decisions(&m, rule, "deny");
        if got != n {
            failures.push(format!("{rule}: {got} deny decisions, expected {n}"));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[tokio::test(flavor = "multi_thread")]
async fn count_only_protections_let_attacks_through_and_count_them() {
    let (up, hits) = mirror().await;
    let gw = Gateway::start(&managed_config(&up, "count_only = [\"xss\"]"));
    let body = json!({"comment": XSS}).to_string();
    let r = send(
        &gw,
        &post("/comments", "application/json", body.clone()).id("fw-count-xss"),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), body, "delivered intact");
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    assert_eq!(firewall_note(&gw, "fw-count-xss").await, "count:xss");
    // The others still refuse.
    let r = send(&gw, &get(&format!("/search?id={}", enc(SQLI)))).await;
    assert_eq!(r.status, 403);
    let m = gw.metrics().await;
    assert_eq!(decisions(&m, "xss", "count"), 1.0, "{m}");
    assert_eq!(decisions(&m, "xss", "deny"), 0.0, "{m}");
    assert_eq!(decisions(&m, "sqli", "deny"), 1.0, "{m}");
}

// ---------------------------------------------------------------------------------------------
// 5. Corpora

/// The corpora of `tests/data/firewall/`, as the unit test in `src/firewall/managed.rs` reads
/// them: lines that are neither empty nor `#` comments.
fn corpus(name: &str) -> Vec<String> {
    let path = format!("{}/tests/data/firewall/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

/// What the unit test `firewall::managed::tests::corpora` asserts: detection floors per class
/// in hundredths of a percent (its `floor`: measured minus 2 points), and the most false
/// positives on the benign corpus (its `MAX_FALSE_POSITIVES`). Keep in step with it; through the
/// binary each class must reach its floor minus 2 more points.
const UNIT_FLOORS: [(&str, u32); 5] = [
    ("sqli", 6604 - 200),
    ("xss", 8589 - 200),
    ("traversal", 9310 - 200),
    ("known_bad_inputs", 8159 - 200),
    ("scanners", 10000 - 200),
];
const UNIT_MAX_FALSE_POSITIVES: usize = 6;

/// Percent-encode what may not stand raw in a request target (space, `"`, `<`, `>`, `` ` ``,
/// `{`, `}`, `|`, `\`, `^`, controls and non-ASCII), leaving the rest, escapes included, as
/// written: the gateway decodes the same values.
fn target_safe(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_graphic() && !b"\"<>`{}|\\^".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// One benign line (`KIND<TAB>payload`) as the raw request its kind says, to host `host`.
fn benign_request(kind: &str, payload: &str, id: &str, host: &str) -> Vec<u8> {
    let (target, header, body) = match kind {
        "query" => (format!("/benign?{}", target_safe(payload)), None, None),
        "path" => (target_safe(payload), None, None),
        "json" => ("/benign".into(), None, Some(("application/json", payload))),
        "form" => (
            "/benign".into(),
            None,
            Some(("application/x-www-form-urlencoded", payload)),
        ),
        "header" => ("/benign".into(), Some(("X-Benign", payload)), None),
        "ua" => ("/benign".into(), Some(("User-Agent", payload)), None),
        "cookie" => ("/benign".into(), Some(("Cookie", payload)), None),
        other => panic!("unknown kind {other:?} in benign.txt"),
    };
    let method = if body.is_some() { "POST" } else { "GET" };
    let mut out = format!(
        "{method} {target} HTTP/1.1\r\nHost: {host}\r\nX-Request-Id: {id}\r\nConnection: close\r\n"
    );
    if let Some((name, value)) = header {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    if let Some((ct, b)) = body {
        out.push_str(&format!(
            "Content-Type: {ct}\r\nContent-Length: {}\r\n",
            b.len()
        ));
    }
    out.push_str("\r\n");
    let mut out = out.into_bytes();
    if let Some((_, b)) = body {
        out.extend_from_slice(b.as_bytes());
    }
    out
}

fn pct(n: usize, of: usize) -> String {
    let h = n * 10_000 / of.max(1);
    format!("{}.{:02}%", h / 100, h % 100)
}

/// Both corpora through the binary: every benign line sent as its kind says to a route with
/// every managed protection on, and every attack line as a query parameter value (User-Agent
/// for scanners) to a route with only its class on (as the unit test measures) and to one
/// with all on.
#[tokio::test(flavor = "multi_thread")]
async fn corpora_through_the_binary_stay_within_the_unit_test_figures() {
    let up = Upstream::named("upstream").await;
    let classes = ["sqli", "xss", "traversal", "known_bad_inputs", "scanners"];
    let every_exception =
        "allow_in_path = [\"encoded_slash\", \"backslash\", \"path_parameters\", \
                           \"control_characters\", \"invalid_utf8\", \"trailing_whitespace\"]\n";
    let mut config = format!(
        "{}[firewall]\n{ALL_MANAGED}inspect_headers = [\"referer\", \"x-benign\"]\n",
        pool(&up)
    );
    for class in classes {
        let skip: Vec<String> = classes
            .iter()
            .filter(|c| **c != class)
            .map(|c| format!("\"{c}\""))
            .collect();
        config.push_str(&format!(
            "[[routes]]\nname = \"only_{class}\"\nhosts = [\"{class}.only\"]\nupstream = \"p\"\n\
             firewall_skip = [{}]\n{every_exception}",
            skip.join(", ")
        ));
    }
    config.push_str(&format!(
        "[[routes]]\nname = \"all\"\nupstream = \"p\"\n{every_exception}"
    ));
    let gw = Gateway::start(&config);

    // Benign lines.
    let benign = corpus("benign.txt");
    let mut refused = Vec::new();
    let mut other = Vec::new();
    for (i, line) in benign.iter().enumerate() {
        let (kind, payload) = line
            .split_once('\t')
            .unwrap_or_else(|| panic!("no tab: {line:?}"));
        let id = format!("benign-{i}");
        let request = benign_request(kind, payload, &id, "benign.test");
        let mut conn = RawConn::connect(gw.addr()).await;
        let _ = conn.send(&request).await;
        let r = conn.response(T).await;
        match r {
            Some(r) if r.status == 200 && r.text() == "upstream" => {}
            Some(r) if r.status == 403 && r.json()["error"] == BLOCKED => {
                refused.push((id, kind, payload));
            }
            r => other.push(format!(
                "{kind}\t{payload}: {:?}",
                r.map(|r| (r.status, r.text()))
            )),
        }
    }
    let log = gw
        .access_log_once(|l| l["request_id"] == format!("benign-{}", benign.len() - 1))
        .await;
    let note = |id: &str| {
        log.iter()
            .find(|l| l["request_id"] == id)
            .map_or("?".to_string(), |l| l["firewall"].to_string())
    };
    let mut report = format!(
        "false positives through the binary: {}/{} ({}), unit test allows {}\n",
        refused.len(),
        benign.len(),
        pct(refused.len(), benign.len()),
        UNIT_MAX_FALSE_POSITIVES
    );
    for (id, kind, payload) in &refused {
        report.push_str(&format!("    {}: {kind}\t{payload}\n", note(id)));
    }
    if !other.is_empty() {
        report.push_str(&format!(
            "benign lines refused by something else than the firewall ({}):\n",
            other.len()
        ));
        for o in &other {
            report.push_str(&format!("    {o}\n"));
        }
    }

    // Attack lines.
    let c = client();
    let mut failures = Vec::new();
    // As the unit test: list the attack lines that pass.
    let misses = std::env::var_os("FIREWALL_MISSES").is_some();
    for (class, unit_floor) in UNIT_FLOORS {
        let lines = corpus(&format!("attacks/{class}.txt"));
        let mut own = 0;
        let mut any = 0;
        let mut elsewhere = Vec::new();
        for line in &lines {
            for (host, counter) in [
                (format!("{class}.only"), &mut own),
                ("all.test".into(), &mut any),
            ] {
                let req = if class == "scanners" {
                    c.get(gw.url("/probe")).header("user-agent", line.as_str())
                } else {
                    c.get(gw.url(&format!("/probe?v={}", enc(line))))
                };
                let resp = req.header("host", host.as_str()).send().await.unwrap();
                let status = resp.status().as_u16();
                let only = host.ends_with(".only");
                if status == 403 {
                    *counter += 1;
                } else if status != 200 && only {
                    // Refused before the firewall (the URI is too long, say): not a detection.
                    elsewhere.push(format!("{status}: {line:.80}"));
                } else if misses && only {
                    report.push_str(&format!("    missed: {line}\n"));
                }
            }
        }
        let floor = unit_floor.saturating_sub(200);
        let own_rate = (own * 10_000 / lines.len().max(1)) as u32;
        report.push_str(&format!(
            "{class:>16}: {own}/{} refused with only {class} on ({}), {any} with all on ({}); \
             unit floor {}.{:02}%, asserted {}.{:02}%\n",
            lines.len(),
            pct(own, lines.len()),
            pct(any, lines.len()),
            unit_floor / 100,
            unit_floor % 100,
            floor / 100,
            floor % 100,
        ));
        for e in &elsewhere {
            report.push_str(&format!("    refused before the firewall: {e}\n"));
        }
        if own_rate < floor {
            failures.push(format!(
                "{class}: detection below the unit floor minus 2 points"
            ));
        }
    }
    eprintln!("{report}");
    if refused.len() > UNIT_MAX_FALSE_POSITIVES {
        failures.push(format!(
            "{} false positives, the unit test allows {UNIT_MAX_FALSE_POSITIVES}",
            refused.len()
        ));
    }
    assert!(failures.is_empty(), "{failures:?}\n{report}");
}

// ---------------------------------------------------------------------------------------------
// 6. Bans: credential stuffing

fn stuffing_config(up: &Upstream, bans: &str) -> String {
    format!(
        "{TRUSTED}{API_KEYS}{}\
         [[routes]]\nname = \"api\"\nupstream = \"p\"\nauth = \"keys\"\n\
         [firewall.bans]\n{bans}\n",
        pool(up)
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn credential_stuffing_gets_the_client_banned_and_the_admin_lifts_it() {
    let (up, _hits) = mirror().await;
    let gw = Gateway::start(&stuffing_config(
        &up,
        "threshold = 10\nwindow = \"60s\"\nduration = \"10m\"",
    ));
    let attacker = "203.0.113.66";
    let bystander = "203.0.113.7";

    let mut statuses = Vec::new();
    let mut errors = Vec::new();
    for i in 0..30 {
        let r = send(
            &gw,
            &get("/orders")
                .ip(attacker)
                .key(&format!("stolen-key-{i:04}-abcdefgh")),
        )
        .await;
        statuses.push(r.status);
        errors.push(r.error());
        let ok = send(&gw, &get("/orders").ip(bystander).key(GOOD_KEY)).await;
        assert_eq!(
            ok.status,
            200,
            "the bystander was refused after {} attempts: {}",
            i + 1,
            ok.text()
        );
    }
    let failed = statuses.iter().take_while(|&&s| s == 401).count();
    assert_eq!(
        failed, 10,
        "threshold 10: ten 401s before the ban, got {statuses:?}"
    );
    for (s, e) in statuses.iter().zip(&errors).skip(failed) {
        assert_eq!((*s, e.as_str()), (403, "client banned"), "{statuses:?}");
    }

    // Banned even with a valid key; the bystander is not.
    let r = send(
        &gw,
        &get("/orders").ip(attacker).key(GOOD_KEY).id("fw-banned-1"),
    )
    .await;
    assert_eq!(r.status, 403);
    assert_eq!(r.error(), "client banned");
    assert_eq!(firewall_note(&gw, "fw-banned-1").await, "ban:ip");
    assert_eq!(
        send(&gw, &get("/orders").ip(bystander).key(GOOD_KEY))
            .await
            .status,
        200
    );

    let listed = bans(&gw).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    let ban = &listed[0];
    assert_eq!(ban["key"], "ip:203.0.113.66");
    let reason = ban["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("401"), "reason {reason:?}");
    let left = ban["seconds_left"].as_u64().unwrap_or(0);
    assert!((590..=600).contains(&left), "seconds_left {left}");
    assert_eq!(
        ban["until_ms"].as_u64().unwrap() - ban["since_ms"].as_u64().unwrap(),
        600_000
    );
    assert_eq!(ban["shared"], false);

    let active = eventually(T, || async {
        metric_value(&gw.metrics().await, "gatehouse_bans_active", &[]) >= 1.0
    })
    .await;
    assert!(active, "gatehouse_bans_active: {}", gw.metrics().await);
    let m = gw.metrics().await;
    assert_eq!(
        metric_value(&m, "gatehouse_bans_total", &[("kind", "ip")]),
        1.0,
        "{m}"
    );
    let stderr = gw.stderr();
    assert!(
        stderr.contains("ip:203.0.113.66") && stderr.contains("banned"),
        "the ban is not logged: {stderr}"
    );

    let (status, body) = lift(&gw, "ip:203.0.113.66").await;
    assert_eq!(status, 200, "{body}");
    let r = send(&gw, &get("/orders").ip(attacker).key(GOOD_KEY)).await;
    assert_eq!(r.status, 200, "lifted: {}", r.text());
    assert!(bans(&gw).await.is_empty());
    let (status, _) = lift(&gw, "ip:203.0.113.66").await;
    assert_eq!(status, 404, "no such ban any more");
    let inactive = eventually(T, || async {
        metric_value(&gw.metrics().await, "gatehouse_bans_active", &[]) == 0.0
    })
    .await;
    assert!(inactive, "gatehouse_bans_active after the lift");
}

// ---------------------------------------------------------------------------------------------
// 7. Shared bans

#[tokio::test(flavor = "multi_thread")]
async fn bans_are_shared_between_instances_through_redis() {
    let redis = RedisServer::start();
    let (up, _hits) = mirror().await;
    let config = format!(
        "[redis]\nurl = \"{}\"\ntimeout = \"500ms\"\n{}",
        redis.url(),
        stuffing_config(&up, "threshold = 5\nshared = true")
    );
    let a = Gateway::start(&config);
    let b = Gateway::start(&config);
    let attacker = "203.0.113.77";

    let mut statuses = Vec::new();
    for i in 0..8 {
        let r = send(
            &a,
            &get("/orders")
                .ip(attacker)
                .key(&format!("bad-key-{i:04}-xyzxyz")),
        )
        .await;
        statuses.push(r.status);
    }
    assert_eq!(
        statuses,
        [401, 401, 401, 401, 401, 403, 403, 403],
        "banned on A after 5"
    );
    // B never saw the client fail, and refuses it within a few seconds.
    let refused_on_b = eventually(T, || async {
        let r = send(&b, &get("/orders").ip(attacker).key(GOOD_KEY)).await;
        r.status == 403 && r.error() == "client banned"
    })
    .await;
    assert!(refused_on_b, "B never learnt the ban: {:?}", bans(&b).await);
    let on_b = bans(&b).await;
    assert_eq!(on_b.len(), 1, "{on_b:?}");
    assert_eq!(on_b[0]["key"], "ip:203.0.113.77");
    assert_eq!(on_b[0]["shared"], true);
    assert_eq!(
        send(&b, &get("/orders").ip("203.0.113.78").key(GOOD_KEY))
            .await
            .status,
        200
    );

    // Lifted on A: lifted on B too.
    let (status, body) = lift(&a, "ip:203.0.113.77").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["lifted_in_redis"], true, "{body}");
    assert_eq!(
        send(&a, &get("/orders").ip(attacker).key(GOOD_KEY))
            .await
            .status,
        200
    );
    let lifted_on_b = eventually(T, || async {
        send(&b, &get("/orders").ip(attacker).key(GOOD_KEY))
            .await
            .status
            == 200
    })
    .await;
    assert!(lifted_on_b, "B still bans: {:?}", bans(&b).await);
    assert!(bans(&b).await.is_empty());
    // And it does not come back from either instance's next sync.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(ban_keys(&a).await.is_empty(), "{:?}", bans(&a).await);
    assert!(ban_keys(&b).await.is_empty(), "{:?}", bans(&b).await);
}

// ---------------------------------------------------------------------------------------------
// 8. Bans across a reload

fn reload_config(extra_route: &str) -> String {
    format!(
        "{TRUSTED}[firewall.bans]\nthreshold = 3\n\
         [[routes]]\nname = \"ok\"\npath = \"/ok\"\nrespond = {{ body = \"ok\" }}\n{extra_route}"
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn bans_survive_a_reload() {
    let gw = Gateway::start(&reload_config(""));
    let client_ip = "203.0.113.9";
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(send(&gw, &get("/missing").ip(client_ip)).await.status);
    }
    assert_eq!(statuses, [404, 404, 404, 403], "threshold 3");
    assert_eq!(ban_keys(&gw).await, ["ip:203.0.113.9"]);

    gw.rewrite(&reload_config(
        "[[routes]]\nname = \"new\"\npath = \"/new\"\nrespond = { body = \"new\" }\n",
    ));
    let resp = gw.reload_via_admin().await;
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    let r = send(&gw, &get("/new")).await;
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "new"),
        "reload applied"
    );

    let r = send(&gw, &get("/ok").ip(client_ip)).await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(r.error(), "client banned");
    assert_eq!(ban_keys(&gw).await, ["ip:203.0.113.9"]);
    assert_eq!(send(&gw, &get("/ok").ip("203.0.113.10")).await.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn banned_clients_can_get_429_with_retry_after() {
    let gw = Gateway::start(&format!(
        "{TRUSTED}[firewall.bans]\nthreshold = 2\nduration = \"90s\"\nstatus = 429\n\
         [[routes]]\nname = \"ok\"\npath = \"/ok\"\nrespond = {{ body = \"ok\" }}\n"
    ));
    let ip = "203.0.113.12";
    assert_eq!(send(&gw, &get("/missing").ip(ip)).await.status, 404);
    assert_eq!(send(&gw, &get("/missing").ip(ip)).await.status, 404);
    let r = send(&gw, &get("/ok").ip(ip)).await;
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(r.error(), "client banned");
    let retry: u64 = r
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no numeric Retry-After: {:?}", r.headers));
    assert!((85..=90).contains(&retry), "Retry-After {retry}");
}

/// An upstream that answers 404 under `/missing` and 200 elsewhere.
async fn partly_missing() -> Upstream {
    Upstream::start(|req: Request<Incoming>| async move {
        let mut resp = Response::new(full("upstream"));
        if req.uri().path().starts_with("/missing") {
            *resp.status_mut() = hyper::StatusCode::NOT_FOUND;
        }
        resp
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_consumer_failing_from_many_addresses_is_banned_by_name() {
    let up = partly_missing().await;
    let gw = Gateway::start(&format!(
        "{TRUSTED}[authorizers.keys]\ntype = \"api_key\"\nsources = [\"header:x-api-key\"]\n\
         keys = [{{ consumer = \"alice\", key = \"{GOOD_KEY}\" }}, \
         {{ consumer = \"bob\", key = \"bob-key-0123456789\" }}]\n{}\
         [[routes]]\nname = \"api\"\nupstream = \"p\"\nauth = \"keys\"\n\
         [firewall.bans]\nthreshold = 5\n",
        pool(&up)
    ));
    // Five 404s from five addresses: no address reaches the threshold, the consumer does.
    for i in 0..5 {
        let r = send(
            &gw,
            &get("/missing/x")
                .ip(&format!("198.51.100.{}", 10 + i))
                .key(GOOD_KEY),
        )
        .await;
        assert_eq!(r.status, 404, "attempt {i}: {}", r.text());
    }
    let r = send(
        &gw,
        &get("/orders")
            .ip("198.51.100.99")
            .key(GOOD_KEY)
            .id("fw-consumer-ban"),
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(r.error(), "client banned");
    assert_eq!(firewall_note(&gw, "fw-consumer-ban").await, "ban:consumer");
    // Bob, from an address alice used, is fine.
    let r = send(
        &gw,
        &get("/orders").ip("198.51.100.10").key("bob-key-0123456789"),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(ban_keys(&gw).await, ["consumer:alice"]);
    let m = gw.metrics().await;
    assert_eq!(
        metric_value(&m, "gatehouse_bans_total", &[("kind", "consumer")]),
        1.0,
        "{m}"
    );
    let (status, body) = lift(&gw, "consumer:alice").await;
    assert_eq!(status, 200, "{body}");
    let r = send(&gw, &get("/orders").ip("198.51.100.99").key(GOOD_KEY)).await;
    assert_eq!(r.status, 200, "lifted: {}", r.text());
}

// ---------------------------------------------------------------------------------------------
// 9. Count mode

#[tokio::test(flavor = "multi_thread")]
async fn count_mode_refuses_nothing_and_counts_everything() {
    let (up, hits) = mirror().await;
    let gw = Gateway::start(&format!(
        "{TRUSTED}{}[firewall]\nmode = \"count\"\n{ALL_MANAGED}\
         [[firewall.rules]]\nname = \"no-debug\"\naction = \"deny\"\n\
         query = [{{ name = \"debug\", present = true }}]\n\
         [[firewall.rules]]\nname = \"slow\"\naction = \"limit\"\npath_prefix = \"/api/slow\"\n\
         rate = 1\nper = \"1m\"\n\
         [firewall.bans]\nthreshold = 2\n\
         [[routes]]\nname = \"api\"\npath_prefix = \"/api\"\nupstream = \"p\"\n",
        pool(&up)
    ));
    let attacker = "203.0.113.99";
    let xss_body = json!({"comment": XSS}).to_string();
    let requests: Vec<(&str, Req, &str)> = vec![
        (
            "sqli",
            get(&format!("/api/search?id={}", enc(SQLI))),
            "count:sqli",
        ),
        (
            "xss",
            post("/api/comments", "application/json", xss_body.clone()),
            "count:xss",
        ),
        (
            "scanner",
            get("/api/").h("user-agent", "sqlmap/1.7"),
            "count:scanners",
        ),
        (
            "traversal",
            get(&format!("/api/download?file={}", enc("../../etc/passwd"))),
            "count:traversal",
        ),
        ("rule", get("/api/x?debug=1"), "count:no-debug"),
        ("limit 1", get("/api/slow"), ""),
        ("limit 2", get("/api/slow"), "count:slow"),
        ("limit 3", get("/api/slow"), "count:slow"),
    ];
    let mut failures = Vec::new();
    for (i, (what, req, note)) in requests.iter().enumerate() {
        let id = format!("fw-countmode-{i}");
        let r = send(&gw, &req.clone().ip(attacker).id(&id)).await;
        if r.status != 200 {
            failures.push(format!("{what}: {} {}", r.status, r.text()));
            continue;
        }
        if !note.is_empty() {
            let got = firewall_note(&gw, &id).await;
            if got != *note {
                failures.push(format!(
                    "{what}: access log firewall = {got}, expected {note}"
                ));
            }
        }
    }
    let r = send(
        &gw,
        &post("/api/comments", "application/json", xss_body.clone()),
    )
    .await;
    if r.text() != xss_body {
        failures.push(format!("the counted body changed: {}", r.text()));
    }
    for _ in 0..10 {
        let r = send(&gw, &get("/nowhere").ip(attacker)).await;
        if r.status != 404 {
            failures.push(format!("404s: got {} {}", r.status, r.text()));
        }
    }
    let r = send(&gw, &get("/api/after").ip(attacker)).await;
    if r.status != 200 {
        failures.push(format!("after all that: {} {}", r.status, r.text()));
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
    assert_eq!(hits.load(Ordering::SeqCst), requests.len() + 2);

    let m = gw.metrics().await;
    for rule in ["sqli", "xss", "scanners", "traversal", "no-debug"] {
        assert!(decisions(&m, rule, "count") >= 1.0, "{rule}: {m}");
    }
    assert_eq!(decisions(&m, "slow", "count"), 2.0, "{m}");
    let refused: f64 = ["deny", "limit"]
        .iter()
        .map(|a| metric_value(&m, DECISIONS, &[("action", a)]))
        .sum();
    assert_eq!(refused, 0.0, "count mode decided to refuse: {m}");
    assert!(
        bans(&gw).await.is_empty(),
        "count mode banned: {:?}",
        bans(&gw).await
    );
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(
        metric_value(&gw.metrics().await, "gatehouse_bans_active", &[]),
        0.0
    );
    let stderr = gw.stderr();
    assert!(
        stderr.contains("ip:203.0.113.99"),
        "the ban count mode would have imposed is not logged: {stderr}"
    );
}

// ---------------------------------------------------------------------------------------------
// 10. `gatehouse check`

#[test]
fn check_names_the_key_of_each_firewall_mistake() {
    let base = "[[listeners]]\naddress = \"127.0.0.1:1\"\n\
                [[routes]]\nname = \"r\"\nrespond = {}\n";
    let cases = [
        (
            "[firewall]\n[[firewall.rules]]\nname = \"a\"\naction = \"deny\"\npath_regex = \"(unclosed\"\n",
            "firewall.rules[0].path_regex: invalid regular expression: ",
        ),
        (
            "[firewall]\n[[firewall.rules]]\nname = \"a\"\naction = \"deny\"\nmethods = [\"GET\"]\n\
             [[firewall.rules]]\nname = \"a\"\naction = \"log\"\nmethods = [\"POST\"]\n",
            "firewall.rules[1].name: duplicate rule name",
        ),
        (
            "[firewall]\nmanaged = [\"sqli\"]\ncount_only = [\"xss\"]\n",
            "firewall.count_only[0]: \"xss\" is not in `managed`",
        ),
        (
            "[firewall.bans]\nthreshold = 5\nshared = true\n",
            "firewall.bans.shared: shared bans need a `[redis]` section",
        ),
        (
            "[firewall]\n[[firewall.rules]]\nname = \"a\"\naction = \"limit\"\nmethods = [\"GET\"]\n",
            "firewall.rules[0]: `limit` needs `rate` and `per`",
        ),
        (
            "[firewall]\n[[firewall.rules]]\nname = \"a\"\naction = \"limit\"\nmethods = [\"GET\"]\nrate = 5\n",
            "firewall.rules[0]: `limit` needs `rate` and `per`",
        ),
    ];
    let mut failures = Vec::new();
    for (body, expected) in cases {
        let (ok, _, stderr) = check_config(&format!("{base}{body}"));
        if ok || !stderr.contains(&format!("FILE: {expected}")) {
            failures.push(format!(
                "{body}\n  expected failure naming {expected:?}\n  ok={ok} stderr={stderr}"
            ));
        }
    }
    // And a good firewall passes.
    let (ok, _, stderr) = check_config(&format!(
        "{base}[firewall]\n{ALL_MANAGED}count_only = [\"xss\"]\n\
         [[firewall.rules]]\nname = \"a\"\naction = \"limit\"\npath_glob = \"/v*/x/**\"\n\
         rate = 5\nper = \"1m\"\n[firewall.bans]\nthreshold = 5\n"
    ));
    if !ok {
        failures.push(format!("a valid firewall was refused: {stderr}"));
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n\n"));
}
