//! Routing, forwarding, rewriting, streaming and error paths through the real binary.

use crate::common::*;
use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper::Response;
use std::time::{Duration, Instant};

fn mock(name: &str, extra: &str) -> String {
    format!("[[routes]]\nname = \"{name}\"\n{extra}\nrespond = {{ body = \"{name}\" }}\n")
}

async fn get_with_host(gw: &Gateway, host: &str, path: &str) -> (u16, String) {
    let resp = client()
        .get(gw.url(path))
        .header("host", host)
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn most_specific_route_wins() {
    let config = [
        mock("root", "path_prefix = \"/\""),
        mock("api", "path_prefix = \"/api\""),
        mock("users", "path_prefix = \"/api/users\""),
        mock("me", "path = \"/api/users/me\""),
        mock(
            "users-post",
            "path_prefix = \"/api/users\"\nmethods = [\"POST\"]",
        ),
        mock(
            "wild",
            "hosts = [\"*.example.com\"]\npath_prefix = \"/api\"",
        ),
        mock(
            "exact-host",
            "hosts = [\"api.example.com\"]\npath_prefix = \"/api\"",
        ),
    ]
    .concat();
    let gw = Gateway::start(&config);
    let cases = [
        ("other.org", "/api/users/me", "me"),
        ("other.org", "/api/users/me/photos", "users"),
        ("other.org", "/api/users", "users"),
        ("other.org", "/api/other", "api"),
        ("other.org", "/apix", "root"),
        ("x.example.com", "/api/users/me", "wild"),
        ("API.example.com:8080", "/api/users/me", "exact-host"),
        ("x.example.com", "/static", "root"),
    ];
    for (host, path, expected) in cases {
        assert_eq!(
            get_with_host(&gw, host, path).await,
            (200, expected.to_string()),
            "{host}{path}"
        );
    }
    let resp = client().post(gw.url("/api/users/1")).send().await.unwrap();
    assert_eq!(resp.text().await.unwrap(), "users-post");
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_route_is_404_and_wrong_method_is_405_with_allow() {
    let gw = Gateway::start(&mock(
        "items",
        "path_prefix = \"/items\"\nmethods = [\"GET\", \"POST\"]",
    ));
    let resp = client().get(gw.url("/nothing")).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let id = resp.headers()["x-request-id"].to_str().unwrap().to_string();
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "no route for this request");
    assert_eq!(body["request_id"], id.as_str());

    let resp = client().delete(gw.url("/items/3")).send().await.unwrap();
    assert_eq!(resp.status(), 405);
    assert_eq!(resp.headers()["allow"], "GET, HEAD, POST");
    let id = resp.headers()["x-request-id"].to_str().unwrap().to_string();
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "method not allowed on this route");
    assert_eq!(body["request_id"], id.as_str());

    let resp = client().head(gw.url("/items/3")).send().await.unwrap();
    assert_eq!(resp.status(), 200, "GET implies HEAD");

    // The 405 is counted, and logged, under the route whose path it asked for.
    let metrics = gw.metrics().await;
    let count = |route: &str, status: &str| {
        metric_value(
            &metrics,
            "gatehouse_requests_total",
            &[("method", "DELETE"), ("route", route), ("status", status)],
        )
    };
    assert_eq!(count("items", "4xx"), 1.0, "{metrics}");
    assert_eq!(count("-", "4xx"), 0.0);
    let line = gw.log_line(&id).await.expect("an access log line");
    assert_eq!(line["route"], "items");
    assert_eq!(line["status"], 405);
}

#[tokio::test(flavor = "multi_thread")]
async fn forwarding_headers_request_id_and_hop_by_hop() {
    let upstream = Upstream::echo().await;
    let gw = Gateway::start(&format!(
        "[upstreams.echo]\ntargets = [{{ address = \"{}\" }}]\n\
         [[routes]]\nname = \"echo\"\npath_prefix = \"/\"\nupstream = \"echo\"\n",
        upstream.address()
    ));
    let resp = client()
        .get(gw.url("/hello?x=1"))
        .header("host", "api.example.com")
        .header("x-forwarded-for", "203.0.113.7")
        .header("x-forwarded-proto", "https")
        .header("x-request-id", "client-id-42")
        .header("connection", "keep-alive, x-hop")
        .header("x-hop", "secret")
        .header("proxy-connection", "keep-alive")
        .header("x-custom", "kept")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-request-id"], "client-id-42");
    assert!(
        resp.headers().get("keep-alive").is_none(),
        "hop-by-hop response header removed"
    );
    let seen: serde_json::Value = resp.json().await.unwrap();
    let h = &seen["headers"];
    assert_eq!(seen["uri"], "/hello?x=1");
    // The client is not a trusted proxy: what it claimed is dropped, not passed on.
    assert_eq!(h["x-forwarded-for"], "127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-forwarded-host"], "api.example.com");
    assert!(h.get("forwarded").is_none(), "Forwarded is opt-in");
    assert_eq!(h["host"], "api.example.com", "Host is passed through");
    assert_eq!(h["x-request-id"], "client-id-42");
    assert_eq!(h["x-custom"], "kept");
    assert!(h.get("x-hop").is_none());
    assert!(h.get("proxy-connection").is_none());

    // An invalid client id is replaced, and the same new id goes both ways.
    let resp = client()
        .get(gw.url("/"))
        .header("x-request-id", "bad id\twith spaces")
        .send()
        .await
        .unwrap();
    let id = resp.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(id.len(), 32);
    let seen: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(seen["headers"]["x-request-id"], id.as_str());
}

#[tokio::test(flavor = "multi_thread")]
async fn forwarded_header_when_the_upstream_asks_for_it() {
    let upstream = Upstream::echo().await;
    let gw = Gateway::start(&format!(
        "[upstreams.echo]\ntargets = [{{ address = \"{}\" }}]\nforwarded_header = true\n\
         [[routes]]\nname = \"echo\"\nupstream = \"echo\"\n",
        upstream.address()
    ));
    let resp = client()
        .get(gw.url("/"))
        .header("host", "api.example.com")
        .header("forwarded", "for=203.0.113.7")
        .send()
        .await
        .unwrap();
    let seen: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(
        seen["headers"]["forwarded"],
        "for=127.0.0.1;host=\"api.example.com\";proto=http"
    );
}

/// An HTTP/1.1 upstream that keeps every request head as received, byte for byte, and answers
/// with a mixed-case header.
async fn recording_upstream() -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    tokio::task::JoinHandle<()>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let heads = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = heads.clone();
    let task = tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head: Vec<u8> = buf.drain(..end + 4).collect();
                        seen.lock()
                            .unwrap()
                            .push(String::from_utf8_lossy(&head).into_owned());
                        let answer = b"HTTP/1.1 200 OK\r\nX-Upstream-Said: Yes\r\nContent-Length: 2\r\n\r\nok";
                        if s.write_all(answer).await.is_err() {
                            return;
                        }
                    }
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
            });
        }
    });
    (addr, heads, task)
}

#[tokio::test(flavor = "multi_thread")]
async fn header_names_go_lower_case_unless_the_upstream_keeps_their_spelling() {
    let (addr, heads, _task) = recording_upstream().await;
    let gw = Gateway::start(&format!(
        "[upstreams.lower]\ntargets = [{{ address = \"{addr}\" }}]\n\
         [upstreams.cased]\ntargets = [{{ address = \"{addr}\" }}]\npreserve_header_case = true\n\
         [[routes]]\nname = \"lower\"\npath_prefix = \"/lower\"\nupstream = \"lower\"\n\
         [[routes]]\nname = \"cased\"\npath_prefix = \"/cased\"\nupstream = \"cased\"\n"
    ));
    let ask = |path: &str| {
        format!(
            "GET {path}?q=%41b HTTP/1.1\r\nHost: api.test\r\nX-Mixed-Case: 1\r\n\
             Connection: close, X-Hop\r\nX-Hop: gone\r\n\r\n"
        )
    };
    let wait = Duration::from_secs(5);
    let lower = raw_request(gw.addr(), ask("/lower/a").as_bytes(), wait).await;
    let cased = raw_request(gw.addr(), ask("/cased/a").as_bytes(), wait).await;
    assert!(lower.starts_with("HTTP/1.1 200"), "{lower}");
    assert!(lower.contains("\r\nx-upstream-said: Yes\r\n"), "{lower}");
    assert!(lower.contains("\r\nx-request-id: "), "{lower}");
    assert!(cased.contains("\r\nX-Upstream-Said: Yes\r\n"), "{cased}");
    let heads = heads.lock().unwrap().clone();
    assert_eq!(heads.len(), 2, "{heads:?}");
    let (to_lower, to_cased) = (&heads[0], &heads[1]);
    assert!(
        to_lower.starts_with("GET /lower/a?q=%41b HTTP/1.1\r\n"),
        "{to_lower}"
    );
    assert!(to_lower.contains("\r\nx-mixed-case: 1\r\n"), "{to_lower}");
    assert!(
        to_lower.contains("\r\nx-forwarded-for: 127.0.0.1\r\n"),
        "{to_lower}"
    );
    assert!(
        to_cased.starts_with("GET /cased/a?q=%41b HTTP/1.1\r\n"),
        "{to_cased}"
    );
    assert!(to_cased.contains("\r\nX-Mixed-Case: 1\r\n"), "{to_cased}");
    for head in [to_lower, to_cased] {
        assert!(!head.to_ascii_lowercase().contains("x-hop"), "{head}");
        assert!(
            head.to_ascii_lowercase().contains("\r\nhost: api.test\r\n"),
            "{head}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn websocket_upgrades_switch_protocols_and_relay_both_ways() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    async fn read_head(s: &mut tokio::net::TcpStream) -> String {
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            assert_eq!(
                s.read(&mut byte).await.unwrap(),
                1,
                "closed before the head ended"
            );
            head.push(byte[0]);
        }
        String::from_utf8(head).unwrap().to_ascii_lowercase()
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let upstream = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let head = read_head(&mut s).await;
        s.write_all(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
              Connection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n",
        )
        .await
        .unwrap();
        let mut buf = [0u8; 64];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => s.write_all(&buf[..n]).await.unwrap(),
            }
        }
        head
    });
    let gw = Gateway::start(&format!(
        "[upstreams.ws]\ntargets = [{{ address = \"{addr}\" }}]\n\
         [[routes]]\nname = \"ws\"\nupstream = \"ws\"\n"
    ));
    let mut client = tokio::net::TcpStream::connect(gw.addr()).await.unwrap();
    client
        .write_all(
            b"GET /chat HTTP/1.1\r\nHost: ws.test\r\nConnection: Upgrade\r\n\
              Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        )
        .await
        .unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(5), read_head(&mut client))
        .await
        .expect("no answer to the upgrade");
    assert!(answer.starts_with("http/1.1 101"), "{answer}");
    assert!(answer.contains("\r\nupgrade: websocket\r\n"), "{answer}");
    assert!(answer.contains("\r\nconnection: upgrade\r\n"), "{answer}");
    assert!(answer.contains("\r\nx-request-id: "), "{answer}");
    // After the switch the gateway relays raw bytes both ways.
    client.write_all(b"frame-1").await.unwrap();
    let mut echoed = [0u8; 7];
    tokio::time::timeout(Duration::from_secs(5), client.read_exact(&mut echoed))
        .await
        .expect("no echo through the upgraded connection")
        .unwrap();
    assert_eq!(&echoed, b"frame-1");
    drop(client);
    let head = tokio::time::timeout(Duration::from_secs(5), upstream)
        .await
        .unwrap()
        .unwrap();
    assert!(head.contains("\r\nupgrade: websocket\r\n"), "{head}");
    assert!(head.contains("\r\nconnection: upgrade\r\n"), "{head}");
    assert!(head.contains("\r\nsec-websocket-key: "), "{head}");
}

#[tokio::test(flavor = "multi_thread")]
async fn paths_are_normalized_and_rewritten() {
    let upstream = Upstream::echo().await;
    let pool = format!(
        "[upstreams.echo]\ntargets = [{{ address = \"{}\" }}]\n",
        upstream.address()
    );
    let gw = Gateway::start(&format!(
        "{pool}\
         [[routes]]\nname = \"strip\"\npath_prefix = \"/svc\"\nstrip_prefix = true\nupstream = \"echo\"\n\
         [[routes]]\nname = \"v2\"\npath_prefix = \"/v1\"\nprefix_rewrite = \"/v2\"\nupstream = \"echo\"\n\
         [[routes]]\nname = \"admin\"\npath_prefix = \"/admin\"\nrespond = {{ status = 403, body = \"no\" }}\n\
         [[routes]]\nname = \"public\"\npath_prefix = \"/public\"\nupstream = \"echo\"\n"
    ));
    let uri_seen = |path: &'static str| {
        let url = gw.url(path);
        async move {
            let v = get_json(url).await;
            v["uri"].as_str().unwrap().to_string()
        }
    };
    assert_eq!(uri_seen("/svc/users/1?q=2").await, "/users/1?q=2");
    assert_eq!(uri_seen("/svc").await, "/");
    assert_eq!(uri_seen("/v1/items").await, "/v2/items");
    assert_eq!(
        uri_seen("/public//a/./b/%7Euser").await,
        "/public/a/b/~user"
    );
    // Path tricks cannot reach the admin route through the public one, nor bypass it.
    for sneaky in [
        "/public/../admin",
        "/public/%2e%2e/admin",
        "//admin",
        "/%61dmin",
    ] {
        let (status, body) = body_of(gw.url(sneaky)).await;
        assert_eq!((status, body.as_str()), (403, "no"), "{sneaky}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn round_robin_spreads_by_weight() {
    let a = Upstream::named("a").await;
    let b = Upstream::named("b").await;
    let gw = Gateway::start(&format!(
        "[upstreams.pool]\ntargets = [{{ address = \"{}\", weight = 1 }}, {{ address = \"{}\", weight = 3 }}]\n\
         [[routes]]\nname = \"r\"\nupstream = \"pool\"\n",
        a.address(),
        b.address()
    ));
    let mut counts = std::collections::HashMap::new();
    for _ in 0..40 {
        let (_, body) = body_of(gw.url("/")).await;
        *counts.entry(body).or_insert(0) += 1;
    }
    assert_eq!(counts.get("a"), Some(&10), "{counts:?}");
    assert_eq!(counts.get("b"), Some(&30), "{counts:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn consistent_hash_keeps_a_key_on_one_target() {
    let a = Upstream::named("a").await;
    let b = Upstream::named("b").await;
    let c = Upstream::named("c").await;
    let gw = Gateway::start(&format!(
        "[upstreams.pool]\nbalance = \"consistent_hash\"\nhash_key = \"header:x-user\"\n\
         targets = [{{ address = \"{}\" }}, {{ address = \"{}\" }}, {{ address = \"{}\" }}]\n\
         [[routes]]\nname = \"r\"\nupstream = \"pool\"\n",
        a.address(),
        b.address(),
        c.address()
    ));
    let mut distinct = std::collections::HashSet::new();
    for user in 0..30 {
        let mut first = None;
        for _ in 0..3 {
            let resp = client()
                .get(gw.url("/"))
                .header("x-user", format!("user-{user}"))
                .send()
                .await
                .unwrap();
            let body = resp.text().await.unwrap();
            assert_eq!(
                *first.get_or_insert(body.clone()),
                body,
                "user-{user} moved"
            );
        }
        distinct.insert(first.unwrap());
    }
    assert!(
        distinct.len() > 1,
        "30 keys should not all land on one of 3 targets"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_connections_are_kept_alive() {
    let upstream = Upstream::named("ok").await;
    let gw = Gateway::start(&single_pool(&upstream));
    let c = client();
    for _ in 0..30 {
        let resp = c.get(gw.url("/")).send().await.unwrap();
        assert_eq!(resp.text().await.unwrap(), "ok");
        // Pingora returns the upstream connection to its pool just after the response ends;
        // a short pause keeps the next request from racing that hand-back.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let opened = upstream
        .connections
        .load(std::sync::atomic::Ordering::SeqCst);
    // Without reuse this would be 30; with it, about one per worker thread (threads = 2). The
    // slack covers hand-back races when the machine is busy running other tests.
    assert!(
        opened <= 8,
        "{opened} upstream connections for 30 sequential requests"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bodies_stream_both_ways_without_full_buffering() {
    let (got_first_tx, got_first_rx) = tokio::sync::oneshot::channel::<()>();
    let got_first_tx = std::sync::Mutex::new(Some(got_first_tx));
    let (resp_tx, resp_rx) = tokio::sync::mpsc::channel::<Bytes>(4);
    let resp_rx = std::sync::Mutex::new(Some(resp_rx));
    let upstream = Upstream::start(move |req: hyper::Request<hyper::body::Incoming>| {
        let upload = req.uri().path() == "/upload";
        let first_tx = if upload {
            got_first_tx.lock().unwrap().take()
        } else {
            None
        };
        let rx = if upload {
            None
        } else {
            resp_rx.lock().unwrap().take()
        };
        async move {
            if upload {
                let mut body = req.into_body();
                let mut total = 0usize;
                let mut first_tx = first_tx;
                while let Some(Ok(frame)) = body.frame().await {
                    if let Some(data) = frame.data_ref() {
                        total += data.len();
                        if let Some(tx) = first_tx.take() {
                            let _ = tx.send(());
                        }
                    }
                }
                Response::new(full(total.to_string()))
            } else {
                let rx = rx.expect("one download");
                let stream = tokio_stream_from(rx).map(|b| Ok(Frame::data(b)));
                Response::new(BodyExt::boxed(StreamBody::new(stream)))
            }
        }
    })
    .await;
    // 16 MiB up, over the default 10 MiB body limit.
    let gw = Gateway::start(&format!(
        "{}[edge]\nmax_body_bytes = 67108864\n",
        single_pool(&upstream)
    ));

    // Upload: the second half is only sent once the upstream has seen the first half, so a
    // gateway that buffered the whole request would deadlock here (and time out).
    let chunk = Bytes::from(vec![b'x'; 1 << 20]);
    let (body_tx, body_rx) = tokio::sync::mpsc::channel::<Bytes>(2);
    let upload = tokio::spawn({
        let url = gw.url("/upload");
        async move {
            let stream = tokio_stream_from(body_rx).map(Ok::<_, std::io::Error>);
            client()
                .post(url)
                .body(reqwest::Body::wrap_stream(stream))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        }
    });
    body_tx.send(chunk.clone()).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), got_first_rx)
        .await
        .expect("upstream saw the first chunk before the request ended")
        .unwrap();
    for _ in 0..15 {
        body_tx.send(chunk.clone()).await.unwrap();
    }
    drop(body_tx);
    assert_eq!(upload.await.unwrap(), (16usize << 20).to_string());

    // Download: the client must receive the first chunk while the upstream still holds the rest.
    // (hyper only sends the upstream's response header together with its first chunk)
    let download = tokio::spawn(client().get(gw.url("/download")).send());
    resp_tx.send(chunk.clone()).await.unwrap();
    let mut resp = download.await.unwrap().unwrap();
    let first = tokio::time::timeout(Duration::from_secs(10), resp.chunk())
        .await
        .expect("first chunk arrived before the response ended")
        .unwrap()
        .unwrap();
    let mut total = first.len();
    // The rest is sent while the client reads: backpressure reaches the upstream, so sending
    // it all before reading would stall (which is the point of streaming).
    let rest = tokio::spawn(async move {
        for _ in 0..15 {
            resp_tx.send(chunk.clone()).await.unwrap();
        }
    });
    while let Some(c) = resp.chunk().await.unwrap() {
        total += c.len();
    }
    assert_eq!(total, 16 << 20);
    rest.await.unwrap();
}

fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<Bytes>,
) -> impl futures_util::Stream<Item = Bytes> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[tokio::test(flavor = "multi_thread")]
async fn refused_upstream_is_502_json() {
    let dead = free_port();
    let gw = Gateway::start(&format!(
        "[upstreams.dead]\ntargets = [{{ address = \"127.0.0.1:{dead}\" }}]\n\
         [[routes]]\nname = \"r\"\nupstream = \"dead\"\n"
    ));
    let resp = client().get(gw.url("/")).send().await.unwrap();
    assert_eq!(resp.status(), 502);
    let id = resp.headers()["x-request-id"].to_str().unwrap().to_string();
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "upstream unreachable");
    assert_eq!(body["request_id"], id.as_str());
}

#[tokio::test(flavor = "multi_thread")]
async fn silent_upstream_is_504_within_the_read_timeout() {
    let (addr, _task) = silent_upstream().await;
    let gw = Gateway::start(&format!(
        "[upstreams.slow]\ntargets = [{{ address = \"{addr}\" }}]\nread_timeout = \"500ms\"\n\
         [[routes]]\nname = \"r\"\nupstream = \"slow\"\n"
    ));
    let started = Instant::now();
    let resp = client().get(gw.url("/")).send().await.unwrap();
    let waited = started.elapsed();
    assert_eq!(resp.status(), 504);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "upstream timed out");
    // A correctness bound, not a benchmark: the client must not hang past the timeout.
    assert!(waited < Duration::from_secs(5), "took {waited:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_requests_get_400_and_never_hang() {
    let upstream = Upstream::echo().await;
    let gw = Gateway::start(&single_pool(&upstream));
    let t = Duration::from_secs(5);
    // Both framings: Transfer-Encoding wins (RFC 9112 6.3), the upstream never sees the
    // conflicting Content-Length, and the client connection is closed afterwards, so a
    // smuggled second request cannot ride on it.
    let smuggle = raw_request(
        gw.addr(),
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n\
          0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
        t,
    )
    .await;
    let status_lines = smuggle.matches("HTTP/1.1 ").count();
    assert!(
        smuggle.starts_with("HTTP/1.1 400") || !smuggle.contains("content-length\":"),
        "{smuggle}"
    );
    assert!(!smuggle.contains("/smuggled"), "{smuggle}");
    assert_eq!(status_lines, 1, "second request was served: {smuggle}");

    let no_host = raw_request(gw.addr(), b"GET / HTTP/1.1\r\n\r\n", t).await;
    assert!(no_host.starts_with("HTTP/1.1 400"), "{no_host}");
    assert!(no_host.contains("missing Host header"), "{no_host}");

    let two_hosts = raw_request(
        gw.addr(),
        b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        t,
    )
    .await;
    assert!(two_hosts.starts_with("HTTP/1.1 400"), "{two_hosts}");

    let bad_escape = raw_request(gw.addr(), b"GET /a%zz HTTP/1.1\r\nHost: a\r\n\r\n", t).await;
    assert!(bad_escape.starts_with("HTTP/1.1 400"), "{bad_escape}");
    assert!(bad_escape.contains("invalid request path"), "{bad_escape}");

    // Not HTTP at all: Pingora's parser answers 400 itself (no JSON body) and closes.
    let garbage = raw_request(gw.addr(), b"\x16\x03\x01 hello\r\n\r\n", t).await;
    assert!(garbage.starts_with("HTTP/1.1 400"), "{garbage}");

    // The gateway is still healthy afterwards.
    let resp = client().get(gw.url("/")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
}
