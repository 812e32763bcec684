//! Edge hardening through the real binary, over raw TCP: request smuggling and framing, slow
//! and oversized clients, connection caps, file descriptor exhaustion, strict paths, the client
//! IP behind trusted proxies and the PROXY protocol, IP lists, pipelining.

use crate::common::*;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Request, Response};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const T: Duration = Duration::from_secs(5);
const CLOSE_WAIT: Duration = Duration::from_secs(3);
const API_KEY: &str = "alice-key-0123456789";

/// What an upstream received.
#[derive(Clone, Default)]
struct Seen {
    /// Request targets of every request head that arrived.
    heads: Arc<Mutex<Vec<String>>>,
    /// Requests whose body arrived complete, as `{uri, headers, body_len}`.
    complete: Arc<Mutex<Vec<Value>>>,
}

impl Seen {
    fn heads(&self) -> usize {
        self.heads.lock().unwrap().len()
    }

    fn complete(&self) -> usize {
        self.complete.lock().unwrap().len()
    }

    fn uris(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }
}

/// An upstream that records every request and answers with a JSON description of it:
/// `{uri, headers, body_len}`.
async fn recorder() -> (Upstream, Seen) {
    let seen = Seen::default();
    let s = seen.clone();
    let up = Upstream::start(move |req: Request<Incoming>| {
        let s = s.clone();
        async move {
            let uri = req.uri().to_string();
            s.heads.lock().unwrap().push(uri.clone());
            let mut headers = serde_json::Map::new();
            for (k, v) in req.headers() {
                headers.insert(k.as_str().into(), v.to_str().unwrap_or("").into());
            }
            let (complete, len) = match req.into_body().collect().await {
                Ok(b) => (true, b.to_bytes().len()),
                Err(_) => (false, 0),
            };
            let info = json!({"uri": uri, "headers": headers, "body_len": len});
            if complete {
                s.complete.lock().unwrap().push(info.clone());
            }
            let mut resp = Response::new(full(info.to_string()));
            resp.headers_mut()
                .insert("content-type", "application/json".parse().unwrap());
            resp
        }
    })
    .await;
    (up, seen)
}

fn pool(up: &Upstream) -> String {
    format!(
        "[upstreams.p]\ntargets = [{{ address = \"{}\" }}]\n",
        up.address()
    )
}

const CATCH_ALL: &str = "[[routes]]\nname = \"all\"\npath_prefix = \"/\"\nupstream = \"p\"\n";

const KEYS: &str = "[authorizers.keys]\ntype = \"api_key\"\nsources = [\"header:x-api-key\"]\n\
                    keys = [{ consumer = \"alice\", key = \"alice-key-0123456789\" }]\n";

/// A GET for `path` with extra header lines.
fn get(path: &str, headers: &[(&str, &str)]) -> Vec<u8> {
    let mut out = format!("GET {path} HTTP/1.1\r\nHost: edge.test\r\n");
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    out.into_bytes()
}

/// One request on a fresh connection; the response (if any arrived within 5 s).
async fn ask(addr: SocketAddr, bytes: &[u8]) -> Option<RawResponse> {
    let mut conn = RawConn::connect(addr).await;
    let _ = conn.send(bytes).await;
    conn.response(T).await
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn show(resp: Option<&RawResponse>) -> String {
    match resp {
        None => "no response".into(),
        Some(r) => format!("{} {:?} {}", r.status_line, r.headers, r.text()),
    }
}

/// What is wrong with `resp` as the gateway's refusal with `status`: a JSON body
/// `{"error": "...", "request_id": "..."}` whose id is the `x-request-id` header, and, when
/// `label` is given, an access log line for that id with the status and `error` = label.
async fn refusal_problems(
    gw: &Gateway,
    resp: Option<&RawResponse>,
    status: u16,
    label: Option<&str>,
) -> Vec<String> {
    let Some(r) = resp else {
        return vec![format!("no {status} response")];
    };
    let mut p = Vec::new();
    if r.status != status {
        p.push(format!(
            "status {} instead of {status}: {}",
            r.status,
            show(resp)
        ));
        return p;
    }
    let id = r.header("x-request-id").unwrap_or("").to_string();
    if id.is_empty() {
        p.push(format!("no x-request-id header: {}", show(resp)));
    }
    if !r
        .header("content-type")
        .is_some_and(|v| v.starts_with("application/json"))
    {
        p.push(format!("not JSON: {}", show(resp)));
    }
    let body = r.json();
    if body["error"].as_str().is_none_or(str::is_empty) {
        p.push(format!("no `error` in the body: {}", r.text()));
    }
    if id.is_empty() || body["request_id"] != id.as_str() {
        p.push(format!(
            "body request_id {} is not the header's {id:?}",
            body["request_id"]
        ));
    }
    if let (Some(label), false) = (label, id.is_empty()) {
        match gw.log_line(&id).await {
            None => p.push(format!("no access log line for request {id}")),
            Some(line) => {
                if line["status"] != status || !logs_reason(&line, label) {
                    p.push(format!(
                        "access log has status {} error {} instead of {status} {label:?}",
                        line["status"], line["error"]
                    ));
                }
            }
        }
    }
    p
}

async fn assert_refused(
    gw: &Gateway,
    resp: Option<&RawResponse>,
    status: u16,
    label: &str,
    what: &str,
) {
    let p = refusal_problems(gw, resp, status, Some(label)).await;
    assert!(p.is_empty(), "{what}: {}", p.join("; "));
}

/// Whether an access log line names the refusal `label` (`error` is the reason label).
/// The access log's `error` is the refusal's message, as for every other refusal; the metric
/// carries the label.
fn logs_reason(line: &Value, label: &str) -> bool {
    let reason = gatehouse::edge::Reason::ALL
        .into_iter()
        .find(|r| r.label() == label)
        .unwrap_or_else(|| panic!("no reason labelled {label}"));
    line["error"] == reason.message()
}

fn refusals(metrics: &str, label: &str) -> f64 {
    metric_value(
        metrics,
        "gatehouse_edge_refusals_total",
        &[("reason", label)],
    )
}

// ---------------------------------------------------------------------------------------------
// Smuggling and framing

const SMUGGLED: &str = "GET /smuggled HTTP/1.1\r\nHost: edge.test\r\n\r\n";

struct Framing {
    name: &'static str,
    bytes: String,
    label: Option<&'static str>,
    /// The head is fine and the body framing is broken: the upstream may see the head, but
    /// never a complete request.
    body_stage: bool,
}

fn framing_cases() -> Vec<Framing> {
    let head = |name, text: &str, label| Framing {
        name,
        bytes: format!("{text}{SMUGGLED}"),
        label: Some(label),
        body_stage: false,
    };
    vec![
        head(
            "CL then TE",
            "POST / HTTP/1.1\r\nHost: edge.test\r\nContent-Length: 5\r\n\
             Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            "length_and_chunked",
        ),
        head(
            "TE then CL",
            "POST / HTTP/1.1\r\nHost: edge.test\r\nTransfer-Encoding: chunked\r\n\
             Content-Length: 41\r\n\r\n0\r\n\r\n",
            "length_and_chunked",
        ),
        head(
            "duplicate CL, same value",
            "POST / HTTP/1.1\r\nHost: edge.test\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
            "duplicate_content_length",
        ),
        head(
            "duplicate CL, different values",
            "POST / HTTP/1.1\r\nHost: edge.test\r\nContent-Length: 0\r\nContent-Length: 5\r\n\r\nhello",
            "duplicate_content_length",
        ),
        head(
            "CL +5",
            "POST / HTTP/1.1\r\nHost: edge.test\r\nContent-Length: +5\r\n\r\nhello",
            "invalid_content_length",
        ),
        head(
            "CL 5,5",
            "POST / HTTP/1.1\r\nHost: edge.test\r\nContent-Length: 5,5\r\n\r\nhello",
            "invalid_content_length",
        ),
        head(
            "CL empty",
            "POST / HTTP/1.1\r\nHost: edge.test\r\nContent-Length: \r\n\r\nhello",
            "invalid_content_length",
        ),
        head(
            "TE chunked, gzip",
            "POST / HTTP/1.1\r\nHost: edge.test\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n",
            "invalid_transfer_encoding",
        ),
        head(
            "TE xchunked",
            "POST / HTTP/1.1\r\nHost: edge.test\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
            "invalid_transfer_encoding",
        ),
        head(
            "TE on HTTP/1.0",
            "POST / HTTP/1.0\r\nHost: edge.test\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            "invalid_transfer_encoding",
        ),
        head(
            "duplicate TE",
            "POST / HTTP/1.1\r\nHost: edge.test\r\nTransfer-Encoding: chunked\r\n\
             Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            "invalid_transfer_encoding",
        ),
        head(
            "obs-fold",
            "POST / HTTP/1.1\r\nHost: edge.test\r\nContent-Length: 5\r\nX-Folded: a\r\n \
             Transfer-Encoding: chunked\r\n\r\nhello",
            "obs_fold",
        ),
        head(
            "bare LF",
            "GET / HTTP/1.1\r\nHost: edge.test\nX-After-Lf: b\r\n\r\n",
            "bare_line_ending",
        ),
        head(
            "bare CR",
            "GET / HTTP/1.1\r\nHost: edge.test\r\nX-A: b\rX-B: c\r\n\r\n",
            "bare_line_ending",
        ),
        head(
            "space before colon",
            "POST / HTTP/1.1\r\nHost: edge.test\r\nContent-Length : 5\r\n\r\nhello",
            "bad_header",
        ),
        Framing {
            name: "invalid chunk size",
            bytes: format!(
                "POST / HTTP/1.1\r\nHost: edge.test\r\nTransfer-Encoding: chunked\r\n\r\n\
                 zz\r\nhello\r\n0\r\n\r\n{SMUGGLED}"
            ),
            label: None,
            body_stage: true,
        },
        head(
            "duplicate Host",
            "GET / HTTP/1.1\r\nHost: edge.test\r\nHost: other.test\r\n\r\n",
            "duplicate_host",
        ),
    ]
}

/// Send every framing case on a fresh connection; returns (case, response) and records what is
/// wrong with each as a refusal that closes the connection before the upstream sees anything.
async fn run_framing_cases(
    gw: &Gateway,
    seen: &Seen,
    failures: &mut Vec<String>,
) -> Vec<(Framing, Option<RawResponse>)> {
    let mut out = Vec::new();
    for case in framing_cases() {
        let (heads, complete) = (seen.heads(), seen.complete());
        let ex = raw_exchange(gw.addr(), case.bytes.as_bytes(), T, CLOSE_WAIT).await;
        let mut p = refusal_problems(gw, ex.response.as_ref(), 400, None).await;
        if let Some(r) = &ex.response {
            if !r.closes() {
                p.push("no `Connection: close`".into());
            }
        }
        if !ex.closed {
            p.push("connection left open".into());
        }
        if !ex.rest.is_empty() {
            p.push(format!("more after the refusal: {:?}", lossy(&ex.rest)));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        if case.body_stage {
            if seen.complete() != complete {
                p.push(format!(
                    "the upstream got a complete request: {:?}",
                    seen.complete.lock().unwrap().last()
                ));
            }
        } else if seen.heads() != heads {
            p.push(format!("the upstream saw {:?}", &seen.uris()[heads..]));
        }
        if !p.is_empty() {
            failures.push(format!("{}: {}", case.name, p.join("; ")));
        }
        out.push((case, ex.response));
    }
    let smuggled: Vec<_> = seen
        .uris()
        .into_iter()
        .filter(|u| u.contains("smuggled"))
        .collect();
    if !smuggled.is_empty() {
        failures.push(format!(
            "smuggled requests reached the upstream: {smuggled:?}"
        ));
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn smuggling_and_framing_tricks_are_refused_and_close_the_connection() {
    let (up, seen) = recorder().await;
    let gw = Gateway::start(&format!("{}{CATCH_ALL}", pool(&up)));
    // A well-formed request with a body passes, so the refusals below are about framing.
    let ok = ask(
        gw.addr(),
        b"POST /fine HTTP/1.1\r\nHost: edge.test\r\nContent-Length: 5\r\n\r\nhello",
    )
    .await;
    assert_eq!(
        ok.as_ref().map(|r| r.status),
        Some(200),
        "{}",
        show(ok.as_ref())
    );
    assert_eq!(ok.unwrap().json()["body_len"], 5);
    let (heads, complete) = (seen.heads(), seen.complete());
    assert_eq!((heads, complete), (1, 1));

    let mut failures = Vec::new();
    run_framing_cases(&gw, &seen, &mut failures).await;
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));

    // Still serving.
    let after = ask(gw.addr(), &get("/after", &[])).await;
    assert_eq!(after.map(|r| r.status), Some(200));
}

#[tokio::test(flavor = "multi_thread")]
async fn refusals_while_parsing_are_logged_and_counted() {
    let (up, seen) = recorder().await;
    let gw = Gateway::start(&format!("{}{CATCH_ALL}", pool(&up)));
    let mut ignored = Vec::new();
    let answered = run_framing_cases(&gw, &seen, &mut ignored).await;
    let mut failures = Vec::new();
    let mut expected: std::collections::BTreeMap<&str, f64> = Default::default();
    for (case, resp) in &answered {
        if let Some(label) = case.label {
            *expected.entry(label).or_default() += 1.0;
        }
        let Some(id) = resp
            .as_ref()
            .and_then(|r| r.header("x-request-id"))
            .map(str::to_string)
        else {
            failures.push(format!("{}: no response with an x-request-id", case.name));
            continue;
        };
        match gw.log_line(&id).await {
            None => failures.push(format!("{}: no access log line for {id}", case.name)),
            Some(line) => {
                if line["status"] != 400 {
                    failures.push(format!("{}: logged status {}", case.name, line["status"]));
                }
                if let Some(label) = case.label {
                    if !logs_reason(&line, label) {
                        failures.push(format!(
                            "{}: logged error {} instead of {label:?}",
                            case.name, line["error"]
                        ));
                    }
                }
            }
        }
    }
    let metrics = gw.metrics().await;
    for (label, n) in expected {
        let got = refusals(&metrics, label);
        if got != n {
            failures.push(format!(
                "gatehouse_edge_refusals_total{{reason=\"{label}\"}} is {got}, expected {n}"
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

// ---------------------------------------------------------------------------------------------
// Slow clients

/// A client that sends one byte of an endless header every 500 ms. Returns when the gateway
/// cut it (after how long, and what it answered), or `None` after 8 s.
async fn drip(addr: SocketAddr) -> (Option<Duration>, Vec<u8>) {
    let start = Instant::now();
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let prefix = b"GET / HTTP/1.1\r\nHost: edge.test\r\nX-Slow: ";
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let mut i = 0;
    while start.elapsed() < Duration::from_secs(8) {
        let byte = prefix.get(i).copied().unwrap_or(b'a');
        i += 1;
        if s.write_all(&[byte]).await.is_err() {
            return (Some(start.elapsed()), got);
        }
        let tick = tokio::time::Instant::now() + Duration::from_millis(500);
        loop {
            match tokio::time::timeout_at(tick, s.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return (Some(start.elapsed()), got),
                Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
                Err(_) => break,
            }
        }
    }
    (None, got)
}

#[tokio::test(flavor = "multi_thread")]
async fn slowloris_connections_are_cut_while_normal_clients_are_served() {
    let (up, _seen) = recorder().await;
    let gw = Gateway::start(&format!(
        "[edge]\nheader_timeout = \"2s\"\n{}{CATCH_ALL}",
        pool(&up)
    ));
    let addr = gw.addr();
    let drips: Vec<_> = (0..50).map(|_| tokio::spawn(drip(addr))).collect();
    // A connection that sends nothing at all is closed silently.
    let silent = tokio::spawn(async move {
        let start = Instant::now();
        let mut conn = RawConn::connect(addr).await;
        let rest = conn.closed(Duration::from_secs(8)).await;
        (start.elapsed(), rest)
    });
    // Meanwhile a normal client, on new connections, keeps getting answers.
    let url = gw.url("/normal");
    let mut normal = Vec::new();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(5) {
        let r = tokio::time::timeout(Duration::from_secs(2), client().get(&url).send()).await;
        normal.push(match r {
            Ok(Ok(resp)) => resp.status().as_u16().to_string(),
            Ok(Err(e)) => format!("{e}"),
            Err(_) => "no answer within 2 s".into(),
        });
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    assert!(
        normal.iter().all(|s| s == "200"),
        "normal client during the attack: {normal:?}"
    );
    let mut problems = Vec::new();
    for (i, d) in drips.into_iter().enumerate() {
        let (cut, got) = d.await.unwrap();
        match cut {
            None => problems.push(format!("#{i}: still open after 8 s")),
            Some(t) if t > Duration::from_millis(5000) => {
                problems.push(format!("#{i}: cut only after {t:?}"))
            }
            Some(t) if t < Duration::from_millis(1500) => {
                problems.push(format!("#{i}: cut already after {t:?}"))
            }
            Some(_) => {}
        }
        if !got.is_empty() && !got.starts_with(b"HTTP/1.1 408") {
            problems.push(format!("#{i}: answered {:?}", lossy(&got)));
        }
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
    let (t, rest) = silent.await.unwrap();
    assert_eq!(
        rest,
        Some(Vec::new()),
        "an idle new connection is closed without an answer"
    );
    assert!(
        t >= Duration::from_millis(1500) && t <= Duration::from_secs(5),
        "idle new connection closed after {t:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_keep_alive_connections_are_closed_after_the_keepalive_timeout() {
    let (up, _seen) = recorder().await;
    let gw = Gateway::start(&format!(
        "[edge]\nkeepalive_timeout = \"1s\"\nheader_timeout = \"10s\"\n{}{CATCH_ALL}",
        pool(&up)
    ));
    let mut conn = RawConn::connect(gw.addr()).await;
    conn.send(&get("/one", &[])).await.unwrap();
    let r = conn.response(T).await;
    assert_eq!(
        r.as_ref().map(|r| r.status),
        Some(200),
        "{}",
        show(r.as_ref())
    );
    // Idle for less than the timeout: the connection still serves.
    tokio::time::sleep(Duration::from_millis(400)).await;
    conn.send(&get("/two", &[])).await.unwrap();
    let r = conn.response(T).await;
    assert_eq!(
        r.as_ref().map(|r| r.status),
        Some(200),
        "{}",
        show(r.as_ref())
    );
    let idle_since = Instant::now();
    let rest = conn.closed(Duration::from_secs(5)).await;
    let idle = idle_since.elapsed();
    assert_eq!(
        rest,
        Some(Vec::new()),
        "idle connection still open after 5 s"
    );
    assert!(
        idle >= Duration::from_millis(700) && idle <= Duration::from_millis(3500),
        "idle keep-alive connection closed after {idle:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Sizes

fn sized_gateway(up: &Upstream) -> Gateway {
    Gateway::start(&format!(
        "[edge]\nmax_header_bytes = 32768\nmax_headers = 100\nmax_uri_bytes = 8192\n{}\
         [[routes]]\nname = \"all\"\npath_prefix = \"/\"\nupstream = \"p\"\n\
         max_body_bytes = 100\nbody_timeout = \"1s\"\n",
        pool(up)
    ))
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_heads_and_request_targets_are_refused() {
    let (up, seen) = recorder().await;
    let gw = sized_gateway(&up);
    let big = |n: usize| get("/", &[("X-Big", &"a".repeat(n))]);
    let many = |n: usize| {
        let lines: Vec<(String, String)> =
            (0..n).map(|i| (format!("X-H-{i}"), "v".into())).collect();
        let refs: Vec<(&str, &str)> = lines
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        get("/", &refs)
    };
    let long_uri = |n: usize| get(&format!("/{}", "a".repeat(n)), &[]);

    // Just under each limit: served.
    for (what, bytes) in [
        ("30 KB header", big(30_000)),
        ("90 headers", many(90)),
        ("8000 byte URI", long_uri(8000)),
    ] {
        let r = ask(gw.addr(), &bytes).await;
        assert_eq!(
            r.as_ref().map(|r| r.status),
            Some(200),
            "{what}: {}",
            show(r.as_ref())
        );
    }
    let served = seen.heads();
    assert_eq!(served, 3);

    for (what, bytes, status, label) in [
        ("40 KB header", big(40_000), 431, "header_too_large"),
        ("150 headers", many(150), 431, "too_many_headers"),
        ("10 KB URI", long_uri(10_000), 414, "uri_too_long"),
    ] {
        let r = ask(gw.addr(), &bytes).await;
        assert_refused(&gw, r.as_ref(), status, label, what).await;
    }
    assert_eq!(seen.heads(), served, "refused heads reached the upstream");
}

#[tokio::test(flavor = "multi_thread")]
async fn bodies_over_the_route_limit_or_too_slow_are_refused() {
    let (up, seen) = recorder().await;
    let gw = sized_gateway(&up);

    // Within the limit, both framings pass.
    let r = ask(
        gw.addr(),
        format!(
            "POST / HTTP/1.1\r\nHost: edge.test\r\nContent-Length: 100\r\n\r\n{}",
            "x".repeat(100)
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(
        r.as_ref().map(|r| r.status),
        Some(200),
        "{}",
        show(r.as_ref())
    );
    let r = ask(
        gw.addr(),
        format!(
            "POST / HTTP/1.1\r\nHost: edge.test\r\nTransfer-Encoding: chunked\r\n\r\n\
             28\r\n{x}\r\n28\r\n{x}\r\n0\r\n\r\n",
            x = "x".repeat(40)
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(
        r.as_ref().map(|r| r.status),
        Some(200),
        "{}",
        show(r.as_ref())
    );
    assert_eq!(r.unwrap().json()["body_len"], 80);
    let (heads, complete) = (seen.heads(), seen.complete());

    // A Content-Length over the limit is refused before the body is sent.
    let mut conn = RawConn::connect(gw.addr()).await;
    conn.send(b"POST / HTTP/1.1\r\nHost: edge.test\r\nContent-Length: 1000\r\n\r\n")
        .await
        .unwrap();
    let r = conn.response(Duration::from_secs(3)).await;
    assert_refused(
        &gw,
        r.as_ref(),
        413,
        "body_too_large",
        "Content-Length 1000",
    )
    .await;
    assert_eq!(
        seen.heads(),
        heads,
        "the upstream saw the oversized request"
    );

    // A chunked body that grows past the limit while streaming.
    let mut conn = RawConn::connect(gw.addr()).await;
    conn.send(b"POST / HTTP/1.1\r\nHost: edge.test\r\nTransfer-Encoding: chunked\r\n\r\n")
        .await
        .unwrap();
    let chunk = format!("32\r\n{}\r\n", "y".repeat(50));
    for _ in 0..10 {
        if conn.send(chunk.as_bytes()).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = conn.response(Duration::from_secs(3)).await;
    assert_refused(
        &gw,
        r.as_ref(),
        413,
        "body_too_large",
        "chunked body of 500 bytes",
    )
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        seen.complete(),
        complete,
        "the upstream got a complete (truncated) body"
    );

    // A body that stalls longer than body_timeout.
    let mut conn = RawConn::connect(gw.addr()).await;
    conn.send(b"POST / HTTP/1.1\r\nHost: edge.test\r\nContent-Length: 50\r\n\r\n0123456789")
        .await
        .unwrap();
    let started = Instant::now();
    let r = conn.response(Duration::from_secs(5)).await;
    let waited = started.elapsed();
    if let Some(resp) = &r {
        assert_refused(&gw, Some(resp), 408, "body_timeout", "stalled body").await;
    } else {
        assert!(
            conn.closed(Duration::ZERO).await.is_some(),
            "stalled body: neither answered nor closed within 5 s"
        );
    }
    assert!(
        waited >= Duration::from_millis(700) && waited < Duration::from_secs(4),
        "stalled body cut after {waited:?}"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        seen.complete(),
        complete,
        "the stalled request completed upstream"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn memory_stays_bounded_under_many_unfinished_heads() {
    let (up, _seen) = recorder().await;
    let gw = Gateway::start(&format!(
        "[edge]\nmax_header_bytes = 32768\nheader_timeout = \"30s\"\n{}{CATCH_ALL}",
        pool(&up)
    ));
    for _ in 0..20 {
        let r = ask(gw.addr(), &get("/warm", &[])).await;
        assert_eq!(r.map(|r| r.status), Some(200));
    }
    let before = gw.rss_bytes();
    // ~30 KB of header lines, never finished.
    let mut partial = b"GET / HTTP/1.1\r\nHost: edge.test\r\n".to_vec();
    for i in 0..29 {
        partial.extend_from_slice(format!("X-Fill-{i}: {}\r\n", "f".repeat(1000)).as_bytes());
    }
    let mut held = Vec::new();
    for _ in 0..300 {
        let mut conn = RawConn::connect(gw.addr()).await;
        conn.send(&partial).await.unwrap();
        held.push(conn);
    }
    let mut peak = 0;
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        peak = peak.max(gw.rss_bytes());
    }
    let growth = peak.saturating_sub(before);
    assert!(
        growth < 64 << 20,
        "RSS grew by {} MB holding 300 unfinished 30 KB heads ({} -> {} MB)",
        growth >> 20,
        before >> 20,
        peak >> 20
    );
    // Still serving while they are held, and after they are gone.
    let r = ask(gw.addr(), &get("/during", &[])).await;
    assert_eq!(r.map(|r| r.status), Some(200));
    drop(held);
    tokio::time::sleep(Duration::from_millis(200)).await;
    for _ in 0..5 {
        let r = ask(gw.addr(), &get("/after", &[])).await;
        assert_eq!(r.map(|r| r.status), Some(200));
    }
    assert!(!gw.stderr().contains("panicked"), "{}", gw.stderr());

    // The attack as measured against Pingora alone: 300 clients each sending a 1 MB header.
    // Each is cut off at max_header_bytes with a 431, so memory stays bounded.
    let before = gw.rss_bytes();
    let mut line = b"GET / HTTP/1.1\r\nHost: edge.test\r\nX-Big: ".to_vec();
    line.resize(1 << 20, b'a');
    let line = std::sync::Arc::new(line);
    let mut tasks = Vec::new();
    for _ in 0..300 {
        let line = line.clone();
        let addr = gw.addr();
        tasks.push(tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            let _ = s.write_all(&line).await;
            let mut out = Vec::new();
            let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
            String::from_utf8_lossy(&out).into_owned()
        }));
    }
    let mut peak = before;
    let mut refused = 0;
    for t in tasks {
        let answer = t.await.unwrap();
        peak = peak.max(gw.rss_bytes());
        // The gateway may close before the client finished writing; when the answer got
        // through, it is the 431.
        if answer.starts_with("HTTP/1.1 431") {
            refused += 1;
        } else {
            assert!(answer.is_empty(), "unexpected answer: {answer}");
        }
    }
    assert!(refused > 0, "no 1 MB header was answered with 431");
    let growth = peak.saturating_sub(before);
    assert!(
        growth < 64 << 20,
        "RSS grew by {} MB under 300 one-megabyte headers",
        growth >> 20
    );
    let r = ask(gw.addr(), &get("/after-attack", &[])).await;
    assert_eq!(r.map(|r| r.status), Some(200));
}

// ---------------------------------------------------------------------------------------------
// Connection caps and file descriptors

#[tokio::test(flavor = "multi_thread")]
async fn connections_per_ip_are_capped() {
    let (up, seen) = recorder().await;
    let gw = Gateway::start(&format!(
        "[edge]\nmax_connections_per_ip = 5\n{}{CATCH_ALL}",
        pool(&up)
    ));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut held = Vec::new();
    for _ in 0..5 {
        held.push(RawConn::connect(gw.addr()).await);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut sixth = RawConn::connect(gw.addr()).await;
    let _ = sixth.send(&get("/sixth", &[])).await;
    let r = sixth.response(Duration::from_secs(3)).await;
    assert!(
        r.as_ref()
            .is_none_or(|r| r.status == 503 || r.status == 429),
        "the 6th connection from one address was served: {}",
        show(r.as_ref())
    );
    assert!(
        sixth.closed(CLOSE_WAIT).await.is_some(),
        "the 6th connection was left open"
    );
    for (i, conn) in held.iter_mut().enumerate() {
        conn.send(&get(&format!("/held/{i}"), &[])).await.unwrap();
        let r = conn.response(T).await;
        assert_eq!(
            r.as_ref().map(|r| r.status),
            Some(200),
            "held connection {i}: {}",
            show(r.as_ref())
        );
    }
    assert!(
        !seen.uris().iter().any(|u| u == "/sixth"),
        "{:?}",
        seen.uris()
    );
    // A freed slot can be used again.
    drop(held.remove(0));
    let freed = eventually(Duration::from_secs(3), || async {
        ask(gw.addr(), &get("/again", &[]))
            .await
            .is_some_and(|r| r.status == 200)
    })
    .await;
    assert!(freed, "no connection accepted after one of the 5 closed");
}

#[tokio::test(flavor = "multi_thread")]
async fn listener_max_connections_caps_open_connections() {
    let (up, seen) = recorder().await;
    let gw = Gateway::start_listener(
        "[listeners.edge]\nmax_connections = 3",
        &format!("{}{CATCH_ALL}", pool(&up)),
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(RawConn::connect(gw.addr()).await);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut fourth = RawConn::connect(gw.addr()).await;
    let _ = fourth.send(&get("/fourth", &[])).await;
    let r = fourth.response(Duration::from_secs(1)).await;
    assert!(
        r.as_ref().is_none_or(|r| r.status != 200),
        "a 4th connection was served over max_connections = 3"
    );
    for (i, conn) in held.iter_mut().enumerate() {
        conn.send(&get(&format!("/held/{i}"), &[])).await.unwrap();
        let r = conn.response(T).await;
        assert_eq!(r.as_ref().map(|r| r.status), Some(200), "held {i}");
    }
    assert!(!seen.uris().iter().any(|u| u == "/fourth"));
    // Once one closes, new connections (or the queued 4th) are served.
    drop(held.remove(0));
    let queued = match fourth.response(Duration::from_secs(3)).await {
        Some(r) => r.status == 200,
        None => false,
    };
    if !queued {
        let ok = eventually(Duration::from_secs(3), || async {
            ask(gw.addr(), &get("/again", &[]))
                .await
                .is_some_and(|r| r.status == 200)
        })
        .await;
        assert!(ok, "no connection served after a slot was freed");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn running_out_of_file_descriptors_spares_open_connections_and_upstream_health() {
    // An upstream that closes every connection, so each proxied request needs a new socket.
    let up = Upstream::start(|_req| async {
        let mut resp = Response::new(full("ok"));
        resp.headers_mut()
            .insert("connection", "close".parse().unwrap());
        resp
    })
    .await;
    let mut gw = Gateway::start_with_nofile(
        256,
        &format!(
            "{}[upstreams.p.health_check]\npath = \"/health\"\ninterval = \"100ms\"\n\
             timeout = \"1s\"\nhealthy_threshold = 100\nunhealthy_threshold = 1\n\
             [upstreams.p.passive]\nmax_fails = 1\nfail_timeout = \"60s\"\n{CATCH_ALL}",
            pool(&up)
        ),
    );
    let mut kept = RawConn::connect(gw.addr()).await;
    kept.send(&get("/before", &[])).await.unwrap();
    let r = kept.response(T).await;
    assert_eq!(
        r.as_ref().map(|r| r.status),
        Some(200),
        "{}",
        show(r.as_ref())
    );

    // 400 idle connections against a limit of 256 descriptors.
    let mut idle = Vec::new();
    for _ in 0..400 {
        let c = tokio::time::timeout(
            Duration::from_secs(1),
            tokio::net::TcpStream::connect(gw.addr()),
        )
        .await;
        if let Ok(Ok(s)) = c {
            idle.push(s);
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    for i in 0..5 {
        kept.send(&get(&format!("/during/{i}"), &[])).await.unwrap();
        let r = kept.response(T).await;
        assert_eq!(
            r.as_ref().map(|r| r.status),
            Some(200),
            "request {i} on a kept-alive connection with {} idle connections held: {}",
            idle.len(),
            show(r.as_ref())
        );
    }
    assert!(!gw.try_wait(), "the gateway exited: {}", gw.stderr());
    drop(idle);
    tokio::time::sleep(Duration::from_millis(300)).await;

    let upstreams = get_json(gw.admin_url("/-/upstreams")).await;
    let target = &upstreams["upstreams"][0]["targets"][0];
    assert_eq!(target["healthy"], true, "{upstreams}");
    assert_eq!(target["available"], true, "{upstreams}");
    let metrics = gw.metrics().await;
    let healthy = metric_value(
        &metrics,
        "gatehouse_upstream_healthy",
        &[("upstream", "p"), ("target", &up.address())],
    );
    assert_eq!(healthy, 1.0, "gatehouse_upstream_healthy");
    let r = ask(gw.addr(), &get("/after", &[])).await;
    assert_eq!(r.map(|r| r.status), Some(200));
}

// ---------------------------------------------------------------------------------------------
// Strict paths

#[tokio::test(flavor = "multi_thread")]
async fn path_spellings_do_not_bypass_a_protected_route() {
    let (up, seen) = recorder().await;
    let gw = Gateway::start(&format!(
        "{KEYS}{}\
         [[routes]]\nname = \"private\"\npath_prefix = \"/private\"\nupstream = \"p\"\n\
         auth = \"keys\"\ncase_insensitive = true\n\
         [[routes]]\nname = \"secret\"\npath_prefix = \"/secret\"\nupstream = \"p\"\nauth = \"keys\"\n\
         {CATCH_ALL}",
        pool(&up)
    ));
    // The setup: the private route needs the key, the public one does not.
    let r = ask(gw.addr(), &get("/private", &[])).await;
    assert_eq!(r.map(|r| r.status), Some(401));
    let r = ask(gw.addr(), &get("/private", &[("X-Api-Key", API_KEY)])).await;
    assert_eq!(r.map(|r| r.status), Some(200));
    let r = ask(gw.addr(), &get("/public/x", &[])).await;
    assert_eq!(r.map(|r| r.json()["uri"].clone()), Some(json!("/public/x")));
    let before = seen.heads();

    let mut failures = Vec::new();
    for (path, label) in [
        ("/private;x=1", "path_parameters"),
        ("/private%2Fx", "encoded_slash"),
        ("/%2Fprivate", "encoded_slash"),
        ("/\\private", "backslash"),
        ("/public%5C..%5Cprivate", "backslash"),
        ("/public/..%2Fprivate", "encoded_slash"),
        ("/private%00", "control_character"),
        ("/private%20", "trailing_whitespace"),
        ("/%C0%AFprivate", "invalid_utf8"),
    ] {
        let r = ask(gw.addr(), &get(path, &[])).await;
        let p = refusal_problems(&gw, r.as_ref(), 400, Some(label)).await;
        if !p.is_empty() {
            failures.push(format!("{path}: {}", p.join("; ")));
        }
    }
    // Case: the case-insensitive route catches every spelling of its prefix.
    for path in ["/PRIVATE", "/Private/x"] {
        let r = ask(gw.addr(), &get(path, &[])).await;
        if r.as_ref().map(|r| r.status) != Some(401) {
            failures.push(format!("{path}: {}", show(r.as_ref())));
        }
    }
    let leaked: Vec<_> = seen.uris()[before..].to_vec();
    if !leaked.is_empty() {
        failures.push(format!("reached the upstream without a key: {leaked:?}"));
    }
    // A case-sensitive route leaves other spellings to the catch-all, unchanged.
    let r = ask(gw.addr(), &get("/SECRET", &[])).await;
    match &r {
        Some(r) if r.status == 200 && r.json()["uri"] == "/SECRET" => {}
        other => failures.push(format!("/SECRET: {}", show(other.as_ref()))),
    }
    let r = ask(gw.addr(), &get("/secret", &[])).await;
    if r.as_ref().map(|r| r.status) != Some(401) {
        failures.push(format!("/secret: {}", show(r.as_ref())));
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

/// (flag in `allow_in_path`, reason label, a path tail spelled that way)
const SPELLINGS: [(&str, &str, &str); 6] = [
    ("encoded_slash", "encoded_slash", "a%2Fb"),
    ("backslash", "backslash", "a%5Cb"),
    ("path_parameters", "path_parameters", "a;x=1"),
    ("control_characters", "control_character", "a%00b"),
    ("invalid_utf8", "invalid_utf8", "%C0%AF"),
    ("trailing_whitespace", "trailing_whitespace", "a%20"),
];

#[tokio::test(flavor = "multi_thread")]
async fn allow_in_path_lets_each_spelling_through_only_on_its_route() {
    let (up, seen) = recorder().await;
    let mut config = format!("{KEYS}{}", pool(&up));
    for (flag, _, _) in SPELLINGS {
        config.push_str(&format!(
            "[[routes]]\nname = \"allow_{flag}\"\npath_prefix = \"/private/{flag}\"\n\
             upstream = \"p\"\nauth = \"keys\"\nallow_in_path = [\"{flag}\"]\n"
        ));
    }
    config.push_str(CATCH_ALL);
    let gw = Gateway::start(&config);
    let mut failures = Vec::new();
    for (flag, _, _) in SPELLINGS {
        for (other, label, tail) in SPELLINGS {
            let path = format!("/private/{flag}/{tail}");
            let before = seen.heads();
            let r = ask(gw.addr(), &get(&path, &[])).await;
            if other == flag {
                // Allowed here, and auth still applies.
                if r.as_ref().map(|r| r.status) != Some(401) {
                    failures.push(format!("{path} without a key: {}", show(r.as_ref())));
                }
                let r = ask(gw.addr(), &get(&path, &[("X-Api-Key", API_KEY)])).await;
                match &r {
                    Some(resp)
                        if resp.status == 200
                            && resp.json()["uri"]
                                .as_str()
                                .is_some_and(|u| u.eq_ignore_ascii_case(&path)) => {}
                    _ => failures.push(format!("{path} with the key: {}", show(r.as_ref()))),
                }
            } else {
                let p = refusal_problems(&gw, r.as_ref(), 400, Some(label)).await;
                if !p.is_empty() {
                    failures.push(format!("{path}: {}", p.join("; ")));
                }
                if seen.heads() != before {
                    failures.push(format!("{path} reached the upstream"));
                }
            }
        }
    }
    // The catch-all allows nothing.
    for (_, label, tail) in SPELLINGS {
        let path = format!("/public/{tail}");
        let r = ask(gw.addr(), &get(&path, &[])).await;
        let p = refusal_problems(&gw, r.as_ref(), 400, Some(label)).await;
        if !p.is_empty() {
            failures.push(format!("{path}: {}", p.join("; ")));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

// ---------------------------------------------------------------------------------------------
// Client IP

/// One GET through the gateway with extra headers and a request id: (status, upstream's view
/// of the request, the access log line).
async fn via(gw: &Gateway, path: &str, id: &str, headers: &[(&str, &str)]) -> (u16, Value, Value) {
    let mut all = vec![("X-Request-Id", id)];
    all.extend_from_slice(headers);
    let r = ask(gw.addr(), &get(path, &all))
        .await
        .unwrap_or_else(|| panic!("{path} {headers:?}: no response"));
    let line = gw.log_line(id).await.unwrap_or(Value::Null);
    (r.status, r.json(), line)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_spoofed_forwarded_for_from_an_untrusted_client_is_ignored() {
    let (up, _seen) = recorder().await;
    let gw = Gateway::start(&format!("{}{CATCH_ALL}", pool(&up)));
    let (status, seen, line) =
        via(&gw, "/", "edge-spoof-1", &[("X-Forwarded-For", "1.2.3.4")]).await;
    assert_eq!(status, 200);
    assert_eq!(seen["headers"]["x-forwarded-for"], "127.0.0.1", "{seen}");
    assert_eq!(line["client_ip"], "127.0.0.1", "{line}");
    let (_, _, line) = via(&gw, "/", "edge-spoof-2", &[("Forwarded", "for=1.2.3.4")]).await;
    assert_eq!(line["client_ip"], "127.0.0.1", "{line}");
}

#[tokio::test(flavor = "multi_thread")]
async fn trusted_proxies_reveal_the_client_for_logs_limits_and_upstreams() {
    let (up, _seen) = recorder().await;
    let gw = Gateway::start(&format!(
        "[edge]\ntrusted_proxies = [\"127.0.0.1\", \"10.0.0.0/8\"]\n\
         [limits.per_ip]\nrate = 1\nperiod = \"60s\"\nkey = [\"client_ip\"]\n{}\
         [[routes]]\nname = \"limited\"\npath_prefix = \"/limited\"\nupstream = \"p\"\n\
         limits = [\"per_ip\"]\n{CATCH_ALL}",
        pool(&up)
    ));
    let (status, seen, line) =
        via(&gw, "/", "edge-trust-1", &[("X-Forwarded-For", "1.2.3.4")]).await;
    assert_eq!(status, 200);
    assert_eq!(line["client_ip"], "1.2.3.4", "{line}");
    assert_eq!(
        seen["headers"]["x-forwarded-for"], "1.2.3.4, 127.0.0.1",
        "{seen}"
    );

    // Right to left: the first address that is not a trusted proxy.
    let (_, seen, line) = via(
        &gw,
        "/",
        "edge-trust-2",
        &[("X-Forwarded-For", "9.9.9.9, 1.2.3.4")],
    )
    .await;
    assert_eq!(line["client_ip"], "1.2.3.4", "{line}");
    let xff = seen["headers"]["x-forwarded-for"].as_str().unwrap_or("");
    assert!(xff.ends_with("1.2.3.4, 127.0.0.1"), "{xff}");
    let (_, _, line) = via(
        &gw,
        "/",
        "edge-trust-3",
        &[("X-Forwarded-For", "1.2.3.4, 10.1.2.3")],
    )
    .await;
    assert_eq!(
        line["client_ip"], "1.2.3.4",
        "trusted 10.0.0.0/8 skipped: {line}"
    );
    let (_, _, line) = via(&gw, "/", "edge-trust-4", &[]).await;
    assert_eq!(line["client_ip"], "127.0.0.1", "{line}");

    // The rate limit counts each client separately.
    let mut statuses = Vec::new();
    for (i, ip) in ["1.2.3.4", "1.2.3.4", "5.6.7.8", "5.6.7.8"]
        .into_iter()
        .enumerate()
    {
        let id = format!("edge-limit-{i}");
        let (status, _, line) = via(&gw, "/limited", &id, &[("X-Forwarded-For", ip)]).await;
        assert_eq!(line["client_ip"], ip, "{line}");
        statuses.push(status);
    }
    assert_eq!(statuses, [200, 429, 200, 429]);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_forwarded_header_can_carry_the_client_ip() {
    let (up, _seen) = recorder().await;
    let gw = Gateway::start(&format!(
        "[edge]\ntrusted_proxies = [\"127.0.0.1\"]\nclient_ip_header = \"forwarded\"\n{}{CATCH_ALL}",
        pool(&up)
    ));
    for (i, (headers, expected)) in [
        (vec![("Forwarded", "for=1.2.3.4")], "1.2.3.4"),
        (
            vec![("Forwarded", "for=\"[2001:db8::1]:4711\"")],
            "2001:db8::1",
        ),
        (
            vec![("Forwarded", "for=9.9.9.9, for=1.2.3.4;proto=https")],
            "1.2.3.4",
        ),
        (vec![("X-Forwarded-For", "7.7.7.7")], "127.0.0.1"),
    ]
    .into_iter()
    .enumerate()
    {
        let (status, _, line) = via(&gw, "/", &format!("edge-fwd-{i}"), &headers).await;
        assert_eq!(status, 200);
        assert_eq!(line["client_ip"], expected, "{headers:?}: {line}");
    }
}

// ---------------------------------------------------------------------------------------------
// PROXY protocol

fn proxy_v1(src: &str, dst: &str) -> Vec<u8> {
    format!("PROXY TCP4 {src} {dst} 56324 443\r\n").into_bytes()
}

const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";

fn proxy_v2_v4(src: [u8; 4], dst: [u8; 4]) -> Vec<u8> {
    let mut v = V2_SIGNATURE.to_vec();
    v.extend_from_slice(&[0x21, 0x11]);
    v.extend_from_slice(&12u16.to_be_bytes());
    v.extend_from_slice(&src);
    v.extend_from_slice(&dst);
    v.extend_from_slice(&40000u16.to_be_bytes());
    v.extend_from_slice(&443u16.to_be_bytes());
    v
}

fn proxy_v2_v6(src: std::net::Ipv6Addr, dst: std::net::Ipv6Addr) -> Vec<u8> {
    let mut v = V2_SIGNATURE.to_vec();
    v.extend_from_slice(&[0x21, 0x21]);
    v.extend_from_slice(&36u16.to_be_bytes());
    v.extend_from_slice(&src.octets());
    v.extend_from_slice(&dst.octets());
    v.extend_from_slice(&40000u16.to_be_bytes());
    v.extend_from_slice(&443u16.to_be_bytes());
    v
}

#[tokio::test(flavor = "multi_thread")]
async fn proxy_protocol_headers_give_the_client_address() {
    let (up, seen) = recorder().await;
    let gw = Gateway::start_listener(
        "proxy_protocol = true\n[listeners.edge]\nip_deny = [\"192.0.2.66\"]",
        &format!("{}{CATCH_ALL}", pool(&up)),
    );
    let metrics_before = refusals(&gw.metrics().await, "proxy_protocol");
    let cases: [(&str, Vec<u8>, &str); 3] = [
        ("v1", proxy_v1("192.0.2.10", "127.0.0.1"), "192.0.2.10"),
        (
            "v2 IPv4",
            proxy_v2_v4([198, 51, 100, 7], [127, 0, 0, 1]),
            "198.51.100.7",
        ),
        (
            "v2 IPv6",
            proxy_v2_v6("2001:db8::7".parse().unwrap(), "::1".parse().unwrap()),
            "2001:db8::7",
        ),
    ];
    for (what, header, source) in cases {
        let mut conn = RawConn::connect(gw.addr()).await;
        let mut bytes = header.clone();
        let id = format!("edge-pp-{}", what.replace(' ', "-"));
        bytes.extend_from_slice(&get("/pp", &[("X-Request-Id", &id)]));
        conn.send(&bytes).await.unwrap();
        let r = conn.response(T).await;
        assert_eq!(
            r.as_ref().map(|r| r.status),
            Some(200),
            "{what}: {}",
            show(r.as_ref())
        );
        let xff = r.unwrap().json()["headers"]["x-forwarded-for"]
            .as_str()
            .unwrap_or("")
            .to_string();
        assert_eq!(
            xff.split(',').next().map(str::trim),
            Some(source),
            "{what}: upstream X-Forwarded-For {xff:?}"
        );
        let line = gw.log_line(&id).await.unwrap_or(Value::Null);
        assert_eq!(line["client_ip"], source, "{what}: {line}");
        // The header is per connection: the next request on it has the same client.
        conn.send(&get("/pp/again", &[])).await.unwrap();
        let r = conn.response(T).await;
        let xff = r
            .as_ref()
            .map(|r| r.json()["headers"]["x-forwarded-for"].clone());
        assert!(
            xff.as_ref()
                .and_then(|x| x.as_str())
                .is_some_and(|x| x.starts_with(source)),
            "{what}, second request: {}",
            show(r.as_ref())
        );
    }

    let before = seen.heads();
    for (what, bytes) in [
        ("no PROXY header", get("/plain", &[])),
        ("a malformed PROXY header", {
            let mut b = b"PROXY TCP4 nonsense\r\n".to_vec();
            b.extend_from_slice(&get("/bad", &[]));
            b
        }),
    ] {
        let ex = raw_exchange(gw.addr(), &bytes, Duration::from_secs(2), CLOSE_WAIT).await;
        assert!(
            ex.response.as_ref().is_none_or(|r| r.status >= 400),
            "{what}: served {}",
            show(ex.response.as_ref())
        );
        assert!(ex.closed, "{what}: connection left open");
    }
    assert_eq!(seen.heads(), before, "{:?}", seen.uris());
    let counted = refusals(&gw.metrics().await, "proxy_protocol") - metrics_before;
    assert!(counted >= 2.0, "proxy_protocol refusals counted: {counted}");

    // The listener's deny list applies to the address from the PROXY header.
    let mut bytes = proxy_v1("192.0.2.66", "127.0.0.1");
    bytes.extend_from_slice(&get("/denied", &[]));
    let r = ask(gw.addr(), &bytes).await;
    assert_refused(&gw, r.as_ref(), 403, "ip_denied", "PROXY source 192.0.2.66").await;
    assert_eq!(seen.heads(), before);
}

// ---------------------------------------------------------------------------------------------
// IP lists

#[tokio::test(flavor = "multi_thread")]
async fn edge_ip_lists_refuse_with_403() {
    let (up, seen) = recorder().await;
    let deny = Gateway::start(&format!(
        "[edge]\nip_deny = [\"127.0.0.1\"]\n{}{CATCH_ALL}",
        pool(&up)
    ));
    let r = ask(deny.addr(), &get("/", &[])).await;
    assert_refused(&deny, r.as_ref(), 403, "ip_denied", "[edge] ip_deny").await;
    let allow = Gateway::start(&format!(
        "[edge]\nip_allow = [\"10.0.0.0/8\", \"::1\"]\n{}{CATCH_ALL}",
        pool(&up)
    ));
    let r = ask(allow.addr(), &get("/", &[])).await;
    assert_refused(&allow, r.as_ref(), 403, "ip_denied", "[edge] ip_allow").await;
    assert_eq!(seen.heads(), 0, "{:?}", seen.uris());
}

#[tokio::test(flavor = "multi_thread")]
async fn route_and_host_ip_lists_apply_to_the_client_ip() {
    let (up, seen) = recorder().await;
    let gw = Gateway::start(&format!(
        "[edge]\ntrusted_proxies = [\"127.0.0.1\"]\n\
         [hosts.\"api.example.com\"]\nip_deny = [\"127.0.0.1\"]\n{}\
         [[routes]]\nname = \"internal\"\npath_prefix = \"/internal\"\nupstream = \"p\"\n\
         ip_allow = [\"10.0.0.0/8\"]\n\
         [[routes]]\nname = \"blocked\"\npath_prefix = \"/blocked\"\nupstream = \"p\"\n\
         ip_deny = [\"203.0.113.0/24\"]\n{CATCH_ALL}",
        pool(&up)
    ));
    let req = |path: &str, host: &str, xff: Option<&str>| {
        let mut out = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n");
        if let Some(x) = xff {
            out.push_str(&format!("X-Forwarded-For: {x}\r\n"));
        }
        out.push_str("\r\n");
        out.into_bytes()
    };
    let mut failures = Vec::new();
    for (what, bytes, status) in [
        (
            "route allow, 127.0.0.1",
            req("/internal", "edge.test", None),
            403,
        ),
        (
            "route allow, 10.1.2.3",
            req("/internal", "edge.test", Some("10.1.2.3")),
            200,
        ),
        (
            "other route, 127.0.0.1",
            req("/other", "edge.test", None),
            200,
        ),
        (
            "route deny, 203.0.113.9",
            req("/blocked", "edge.test", Some("203.0.113.9")),
            403,
        ),
        (
            "route deny, 10.1.2.3",
            req("/blocked", "edge.test", Some("10.1.2.3")),
            200,
        ),
        (
            "host deny, 127.0.0.1",
            req("/other", "api.example.com", None),
            403,
        ),
        (
            "host deny, 10.1.2.3",
            req("/other", "api.example.com", Some("10.1.2.3")),
            200,
        ),
        (
            "host deny, other host",
            req("/other", "www.example.com", None),
            200,
        ),
    ] {
        let before = seen.heads();
        let r = ask(gw.addr(), &bytes).await;
        let p = if status == 403 {
            let mut p = refusal_problems(&gw, r.as_ref(), 403, Some("ip_denied")).await;
            if seen.heads() != before {
                p.push("reached the upstream".into());
            }
            p
        } else if r.as_ref().map(|r| r.status) != Some(200) {
            vec![show(r.as_ref())]
        } else {
            vec![]
        };
        if !p.is_empty() {
            failures.push(format!("{what}: {}", p.join("; ")));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

// ---------------------------------------------------------------------------------------------
// Pipelining and connection reuse

#[tokio::test(flavor = "multi_thread")]
async fn pipelined_requests_are_answered_in_order() {
    let (up, _seen) = recorder().await;
    let gw = Gateway::start(&format!("{}{CATCH_ALL}", pool(&up)));
    for n in [2, 10] {
        let mut conn = RawConn::connect(gw.addr()).await;
        let bytes: Vec<u8> = (0..n)
            .flat_map(|i| get(&format!("/pipe/{n}/{i}"), &[]))
            .collect();
        conn.send(&bytes).await.unwrap();
        for i in 0..n {
            let r = conn.response(T).await;
            assert_eq!(
                r.as_ref().map(|r| (r.status, r.json()["uri"].clone())),
                Some((200, json!(format!("/pipe/{n}/{i}")))),
                "response {i} of {n} pipelined: {}",
                show(r.as_ref())
            );
        }
    }
    let mut conn = RawConn::connect(gw.addr()).await;
    conn.send(
        b"POST /post HTTP/1.1\r\nHost: edge.test\r\nContent-Length: 5\r\n\r\nhello\
          GET /after-post HTTP/1.1\r\nHost: edge.test\r\n\r\n",
    )
    .await
    .unwrap();
    let first = conn.response(T).await;
    let first = first.as_ref().map(|r| (r.status, r.json()));
    assert_eq!(
        first
            .as_ref()
            .map(|(s, j)| (*s, j["uri"].clone(), j["body_len"].clone())),
        Some((200, json!("/post"), json!(5))),
        "{first:?}"
    );
    let second = conn.response(T).await;
    assert_eq!(
        second.as_ref().map(|r| (r.status, r.json()["uri"].clone())),
        Some((200, json!("/after-post"))),
        "{}",
        show(second.as_ref())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_last_request_allowed_on_a_connection_closes_it() {
    let (up, _seen) = recorder().await;
    let gw = Gateway::start(&format!(
        "[edge]\nmax_requests_per_connection = 3\n{}{CATCH_ALL}",
        pool(&up)
    ));
    let mut conn = RawConn::connect(gw.addr()).await;
    for i in 0..3 {
        conn.send(&get(&format!("/n/{i}"), &[])).await.unwrap();
        let r = conn.response(T).await.expect("response");
        assert_eq!(r.status, 200);
        assert_eq!(r.closes(), i == 2, "request {i}: {:?}", r.headers);
    }
    assert_eq!(
        conn.closed(CLOSE_WAIT).await,
        Some(Vec::new()),
        "connection open after the last allowed request"
    );
}

// ---------------------------------------------------------------------------------------------
// Reloads

#[tokio::test(flavor = "multi_thread")]
async fn edge_settings_apply_on_reload_without_a_restart() {
    let (up, _seen) = recorder().await;
    let body = format!("{}{CATCH_ALL}", pool(&up));
    let gw = Gateway::start(&body);
    let r = ask(gw.addr(), &get("/", &[])).await;
    assert_eq!(r.map(|r| r.status), Some(200));

    // A deny list and a smaller head limit, both on the running listener.
    gw.rewrite(&format!(
        "[edge]\nip_deny = [\"127.0.0.0/8\"]\nmax_header_bytes = 2048\nmax_uri_bytes = 1024\n{body}"
    ));
    let resp = gw.reload_via_admin().await;
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    let r = ask(gw.addr(), &get("/", &[])).await.expect("an answer");
    assert_eq!(r.status, 403);
    let config: Value = get_json(gw.admin_url("/-/config")).await;
    assert!(
        config["pending_restart"]
            .as_array()
            .is_none_or(|p| p.is_empty()),
        "edge settings need no restart: {config}"
    );

    gw.rewrite(&format!(
        "[edge]\nmax_header_bytes = 2048\nmax_uri_bytes = 1024\n{body}"
    ));
    assert_eq!(gw.reload_via_admin().await.status(), 200);
    let big = get("/", &[("x-fill", &"f".repeat(4000))]);
    let r = ask(gw.addr(), &big).await.expect("an answer");
    assert_eq!(r.status, 431);

    // A bad list is refused with its key path, and the last good settings keep serving.
    gw.rewrite(&format!("[edge]\nip_deny = [\"10.0.0.1/8\"]\n{body}"));
    let resp = gw.reload_via_admin().await;
    assert_eq!(resp.status(), 422);
    let text = resp.text().await.unwrap();
    assert!(text.contains("edge.ip_deny[0]"), "{text}");
    let r = ask(gw.addr(), &big).await.expect("an answer");
    assert_eq!(r.status, 431);
}
