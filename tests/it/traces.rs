//! OpenTelemetry tracing: W3C trace context continued or started and sent upstream, spans
//! received by a real OTLP receiver over HTTP/protobuf and gRPC, the trace id in the access
//! log and error bodies, and a collector that is down or slow changing nothing for clients.

use crate::common::{client, eventually, free_port, metric_value, Gateway, Upstream};
use crate::otlp::{self, Receiver};
use std::time::{Duration, Instant};

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

fn traced_routes(upstream: &Upstream, tracing: &str) -> String {
    format!(
        "[tracing]\n{tracing}\n\
         [upstreams.p]\ntargets = [{{ address = \"{up}\" }}]\n\
         [upstreams.down]\ntargets = [{{ address = \"127.0.0.1:{dead}\" }}]\nconnect_retries = 1\n\
         [authorizers.k]\ntype = \"api_key\"\nsources = [\"header:x-api-key\"]\n\
         keys = [{{ consumer = \"alice\", key = \"alice-key-0123456789\" }}]\n\
         [[routes]]\nname = \"gone\"\npath = \"/gone\"\nupstream = \"down\"\n\
         [[routes]]\nname = \"private\"\npath = \"/private\"\nupstream = \"p\"\nauth = \"k\"\n\
         [[routes]]\nname = \"api\"\npath_prefix = \"/api\"\nupstream = \"p\"\n",
        up = upstream.address(),
        dead = free_port(),
    )
}

/// The upstream's view of the request: the `traceparent` and `tracestate` it received.
async fn upstream_context(resp: reqwest::Response) -> (Option<String>, Option<String>) {
    let body: serde_json::Value = resp.json().await.unwrap();
    let header = |name: &str| body["headers"][name].as_str().map(str::to_string);
    (header("traceparent"), header("tracestate"))
}

fn parts(traceparent: &str) -> (String, String, String) {
    let p: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(p.len(), 4, "traceparent {traceparent}");
    assert_eq!(p[0], "00");
    (p[1].to_string(), p[2].to_string(), p[3].to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sampled_caller_trace_is_continued_upstream_and_exported_over_http() {
    let receiver = Receiver::http().await;
    let upstream = Upstream::echo().await;
    // Ratio 0: only the caller's decision samples a trace (parent-based sampling).
    let tracing = format!(
        "endpoint = \"http://{}\"\nratio = 0.0\nservice_name = \"edge-eu\"\n\
         resource = {{ \"deployment.environment.name\" = \"test\" }}\n\
         headers = {{ \"x-collector-key\" = \"k-123\" }}\nexport_interval = \"50ms\"",
        receiver.addr
    );
    let gw = Gateway::start(&traced_routes(&upstream, &tracing));

    let resp = client()
        .get(gw.url("/api/orders?token=secret"))
        .header("traceparent", format!("00-{TRACE}-{CLIENT_SPAN}-01"))
        .header("tracestate", "vendor=abc")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let request_id = resp.headers()["x-request-id"].to_str().unwrap().to_string();
    let (parent, state) = upstream_context(resp).await;
    let (trace, upstream_parent, flags) = parts(&parent.unwrap());
    assert_eq!(trace, TRACE, "the caller's trace goes on");
    assert_ne!(
        upstream_parent, CLIENT_SPAN,
        "the gateway's span is the upstream's parent"
    );
    assert_eq!(flags, "01");
    assert_eq!(state.as_deref(), Some("vendor=abc"));

    let spans = receiver.trace(TRACE, 2, Duration::from_secs(10)).await;
    assert_eq!(spans.len(), 2, "{spans:#?}");
    let server = spans.iter().find(|s| s.kind == 2).expect("server span");
    let upstream_span = spans.iter().find(|s| s.kind == 3).expect("client span");
    assert_eq!(server.parent_span_id, CLIENT_SPAN);
    assert_eq!(upstream_span.parent_span_id, server.span_id);
    assert_eq!(upstream_span.span_id, upstream_parent);
    assert_eq!(server.name, "GET api");
    assert_eq!(server.attr("http.request.method"), Some("GET"));
    assert_eq!(server.attr("url.path"), Some("/api/orders"));
    assert_eq!(server.attr("http.response.status_code"), Some("200"));
    assert_eq!(server.attr("gatehouse.route"), Some("api"));
    assert_eq!(server.attr("gatehouse.upstream"), Some("p"));
    assert_eq!(
        server.attr("gatehouse.request_id"),
        Some(request_id.as_str())
    );
    assert_eq!(server.attr("client.address"), Some("127.0.0.1"));
    assert!(
        !server.attributes.values().any(|v| v.contains("secret")),
        "no query string in spans: {server:?}"
    );
    assert_eq!(upstream_span.attr("server.address"), Some("127.0.0.1"));
    assert_eq!(
        upstream_span.attr("server.port"),
        Some(upstream.addr.port().to_string().as_str())
    );
    assert_eq!(upstream_span.attr("http.response.status_code"), Some("200"));
    assert!(server.start_ns <= upstream_span.start_ns && upstream_span.end_ns <= server.end_ns);
    assert_eq!(server.service, "edge-eu");
    assert_eq!(
        server
            .resource
            .get("deployment.environment.name")
            .map(String::as_str),
        Some("test")
    );
    assert_eq!(server.scope, "gatehouse");
    assert!(receiver
        .headers()
        .iter()
        .all(|h| h.get("x-collector-key").map(String::as_str) == Some("k-123")));

    let log = gw
        .access_log_once(|l| l["request_id"] == request_id.as_str())
        .await;
    let line = log.iter().find(|l| l["request_id"] == request_id.as_str());
    assert_eq!(line.unwrap()["trace_id"], TRACE);
    assert!(
        !gw.stderr().contains("k-123"),
        "collector headers never logged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsampled_requests_carry_a_trace_id_but_export_nothing() {
    let receiver = Receiver::http().await;
    let upstream = Upstream::echo().await;
    let tracing = format!(
        "endpoint = \"http://{}\"\nratio = 0.0\nexport_interval = \"50ms\"",
        receiver.addr
    );
    let gw = Gateway::start(&traced_routes(&upstream, &tracing));

    // The caller decided not to sample: its trace id goes on, unsampled.
    let resp = client()
        .get(gw.url("/api"))
        .header("traceparent", format!("00-{TRACE}-{CLIENT_SPAN}-00"))
        .send()
        .await
        .unwrap();
    let (parent, _) = upstream_context(resp).await;
    let (trace, _, flags) = parts(&parent.unwrap());
    assert_eq!((trace.as_str(), flags.as_str()), (TRACE, "00"));

    // No caller context, ratio 0: a new trace, unsampled, named in the access log.
    let resp = client().get(gw.url("/api")).send().await.unwrap();
    let request_id = resp.headers()["x-request-id"].to_str().unwrap().to_string();
    let (parent, state) = upstream_context(resp).await;
    let (trace, _, flags) = parts(&parent.unwrap());
    assert_eq!(flags, "00");
    assert_ne!(trace, TRACE);
    assert_eq!(state, None);
    let log = gw
        .access_log_once(|l| l["request_id"] == request_id.as_str())
        .await;
    let line = log.iter().find(|l| l["request_id"] == request_id.as_str());
    assert_eq!(line.unwrap()["trace_id"], trace.as_str());

    // A malformed traceparent starts a new trace, and its tracestate is not passed on.
    let resp = client()
        .get(gw.url("/api"))
        .header("traceparent", format!("00-{TRACE}-{CLIENT_SPAN}"))
        .header("tracestate", "vendor=abc")
        .send()
        .await
        .unwrap();
    let (parent, state) = upstream_context(resp).await;
    assert_ne!(parts(&parent.unwrap()).0, TRACE);
    assert_eq!(state, None);

    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(receiver.spans().is_empty(), "{:?}", receiver.spans());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_and_failures_are_traced_over_grpc_with_the_trace_id_in_the_error_body() {
    let receiver = Receiver::grpc().await;
    let upstream = Upstream::echo().await;
    let tracing = format!(
        "endpoint = \"http://{}\"\nprotocol = \"grpc\"\nsampler = \"always_on\"\n\
         headers = {{ \"x-collector-key\" = \"k-123\" }}\nexport_interval = \"50ms\"",
        receiver.addr
    );
    let gw = Gateway::start(&traced_routes(&upstream, &tracing));

    let resp = client().get(gw.url("/private")).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    let body: serde_json::Value = resp.json().await.unwrap();
    let trace = body["trace_id"]
        .as_str()
        .expect("trace id in the error body")
        .to_string();
    assert_eq!(trace.len(), 32);
    let spans = receiver.trace(&trace, 1, Duration::from_secs(10)).await;
    assert_eq!(spans.len(), 1, "a refusal has no upstream span: {spans:#?}");
    let server = &spans[0];
    assert_eq!(server.parent_span_id, "");
    assert_eq!(server.attr("http.response.status_code"), Some("401"));
    assert_eq!(server.attr("gatehouse.route"), Some("private"));
    assert!(server
        .attr("gatehouse.auth")
        .is_some_and(|a| a != "allowed"));
    assert_eq!(server.status_code, 0, "a 4xx is not a server error");

    let resp = client()
        .get(gw.url("/private"))
        .header("x-api-key", "alice-key-0123456789")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let (parent, _) = upstream_context(resp).await;
    let (trace, _, _) = parts(&parent.unwrap());
    let spans = receiver.trace(&trace, 2, Duration::from_secs(10)).await;
    let server = spans.iter().find(|s| s.kind == 2).unwrap();
    assert_eq!(server.attr("gatehouse.auth"), Some("allowed"));
    assert_eq!(server.attr("gatehouse.consumer"), Some("alice"));

    // An upstream that refuses connections: 502, an error span, and an error client span
    // for each attempt.
    let resp = client().get(gw.url("/gone")).send().await.unwrap();
    assert_eq!(resp.status(), 502);
    let body: serde_json::Value = resp.json().await.unwrap();
    let trace = body["trace_id"].as_str().unwrap().to_string();
    let spans = receiver.trace(&trace, 3, Duration::from_secs(10)).await;
    let server = spans.iter().find(|s| s.kind == 2).unwrap();
    assert_eq!(server.status_code, 2, "5xx is an error: {server:?}");
    assert_eq!(server.attr("error.type"), Some("502"));
    let attempts: Vec<_> = spans.iter().filter(|s| s.kind == 3).collect();
    assert_eq!(
        attempts.len(),
        2,
        "two attempts with connect_retries = 1: {spans:#?}"
    );
    assert!(attempts
        .iter()
        .all(|a| a.status_code == 2 && a.parent_span_id == server.span_id));
    assert!(receiver
        .headers()
        .iter()
        .all(|h| h.get("x-collector-key").map(String::as_str) == Some("k-123")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_caller_cannot_choose_the_trace_or_force_sampling() {
    let receiver = Receiver::http().await;
    let upstream = Upstream::echo().await;
    let tracing = format!(
        "endpoint = \"http://{}\"\nratio = 0.0\ntrust_incoming = false\nexport_interval = \"50ms\"",
        receiver.addr
    );
    let gw = Gateway::start(&traced_routes(&upstream, &tracing));
    let resp = client()
        .get(gw.url("/api"))
        .header("traceparent", format!("00-{TRACE}-{CLIENT_SPAN}-01"))
        .header("tracestate", "vendor=abc")
        .send()
        .await
        .unwrap();
    let (parent, state) = upstream_context(resp).await;
    let (trace, _, flags) = parts(&parent.unwrap());
    assert_ne!(trace, TRACE);
    assert_eq!(flags, "00", "ratio 0 decides, not the caller");
    assert_eq!(state, None);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(receiver.spans().is_empty());
}

/// 400 requests through a gateway whose collector is down, then one that never answers:
/// every request succeeds as fast as without tracing, and the lost spans are counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_that_is_down_or_silent_changes_nothing_for_clients() {
    let upstream = Upstream::echo().await;
    let (silent, _task) = otlp::silent().await;
    for (endpoint, reason) in [
        (format!("http://127.0.0.1:{}", free_port()), "export_failed"),
        (format!("http://{silent}"), "queue_full"),
    ] {
        let tracing = format!(
            "endpoint = \"{endpoint}\"\nsampler = \"always_on\"\nqueue_size = 16\nbatch_size = 8\n\
             export_interval = \"10ms\"\nexport_timeout = \"5s\""
        );
        let gw = Gateway::start(&traced_routes(&upstream, &tracing));
        let started = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..4 {
            let url = gw.url("/api");
            tasks.push(tokio::spawn(async move {
                let c = client();
                let mut ok = 0;
                for _ in 0..100 {
                    if c.get(&url).send().await.unwrap().status() == 200 {
                        ok += 1;
                    }
                }
                ok
            }));
        }
        let mut ok = 0;
        for t in tasks {
            ok += t.await.unwrap();
        }
        assert_eq!(ok, 400, "{endpoint}");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{endpoint}: took {:?}",
            started.elapsed()
        );
        let counted = eventually(Duration::from_secs(10), || async {
            let metrics = gw.metrics().await;
            metric_value(
                &metrics,
                "gatehouse_trace_spans_dropped_total",
                &[("reason", reason)],
            ) > 0.0
        })
        .await;
        assert!(counted, "{endpoint}: {}", gw.metrics().await);
    }
}

/// The sampler applies on reload; the exporter's settings wait for a restart and say so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sampler_reloads_and_the_exporter_waits_for_a_restart() {
    let receiver = Receiver::http().await;
    let other = Receiver::http().await;
    let upstream = Upstream::echo().await;
    let tracing = |endpoint: &str, sampler: &str| {
        format!(
            "endpoint = \"http://{endpoint}\"\nsampler = \"{sampler}\"\nexport_interval = \"50ms\""
        )
    };
    let gw = Gateway::start(&traced_routes(
        &upstream,
        &tracing(&receiver.addr.to_string(), "always_on"),
    ));
    let resp = client().get(gw.url("/api")).send().await.unwrap();
    let (parent, _) = upstream_context(resp).await;
    let (trace, _, flags) = parts(&parent.unwrap());
    assert_eq!(flags, "01");
    assert_eq!(
        receiver
            .trace(&trace, 2, Duration::from_secs(10))
            .await
            .len(),
        2
    );

    gw.rewrite(&traced_routes(
        &upstream,
        &tracing(&other.addr.to_string(), "always_off"),
    ));
    let reload: serde_json::Value = gw.reload_via_admin().await.json().await.unwrap();
    assert_eq!(reload["result"], "ok", "{reload}");
    let config = crate::common::get_json(gw.admin_url("/-/config")).await;
    assert_eq!(
        config["pending_restart"],
        serde_json::json!(["tracing.endpoint"]),
        "{config}"
    );
    let resp = client().get(gw.url("/api")).send().await.unwrap();
    let (parent, _) = upstream_context(resp).await;
    let (trace, _, flags) = parts(&parent.unwrap());
    assert_eq!(flags, "00", "always_off applies at once");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(receiver.trace(&trace, 1, Duration::ZERO).await.is_empty());
    assert!(
        other.spans().is_empty(),
        "the endpoint changes only with a restart"
    );
}

/// Spans still queued when the process stops are exported before it exits, in batches the
/// collector takes a while to answer: 40 spans in batches of 2, 100 ms per export, take
/// longer than the grace period, and the process waits for them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_spans_are_exported_at_shutdown() {
    let receiver = Receiver::http_answering_after(Duration::from_millis(100)).await;
    let upstream = Upstream::echo().await;
    let tracing = format!(
        "endpoint = \"http://{}\"\nsampler = \"always_on\"\nbatch_size = 2\nqueue_size = 64",
        receiver.addr
    );
    let mut gw = Gateway::start_with(
        "shutdown_delay = \"0s\"\ngrace_period = \"1s\"",
        "",
        &traced_routes(&upstream, &tracing),
    );
    let mut traces = Vec::new();
    for _ in 0..20 {
        let resp = client().get(gw.url("/api")).send().await.unwrap();
        let (parent, _) = upstream_context(resp).await;
        traces.push(parts(&parent.unwrap()).0);
    }
    gw.signal("TERM");
    let exited = eventually(Duration::from_secs(15), || {
        let done = gw.try_wait();
        async move { done }
    })
    .await;
    assert!(exited, "{}", gw.stderr());
    let spans = receiver.spans();
    for trace in &traces {
        assert_eq!(
            spans.iter().filter(|s| &s.trace_id == trace).count(),
            2,
            "trace {trace}: {} spans received",
            spans.len()
        );
    }
}

/// The limiter's and the firewall's decisions are attributes of the server span.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limit_and_firewall_decisions_are_span_attributes() {
    let receiver = Receiver::http().await;
    let upstream = Upstream::echo().await;
    let tracing = format!(
        "endpoint = \"http://{}\"\nsampler = \"always_on\"\nexport_interval = \"50ms\"",
        receiver.addr
    );
    let body = format!(
        "{}[limits.lim]\nrate = 1\nperiod = \"60s\"\nburst = 1\n\
         [[routes]]\nname = \"limited\"\npath = \"/limited\"\nupstream = \"p\"\nlimits = [\"lim\"]\n\
         [firewall]\nmanaged = [\"sqli\"]\n",
        traced_routes(&upstream, &tracing)
    );
    let gw = Gateway::start(&body);

    let resp = client().get(gw.url("/limited")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let (parent, _) = upstream_context(resp).await;
    let (allowed, _, _) = parts(&parent.unwrap());
    let mut refused = None;
    for _ in 0..5 {
        let resp = client().get(gw.url("/limited")).send().await.unwrap();
        if resp.status() == 429 {
            let body: serde_json::Value = resp.json().await.unwrap();
            refused = body["trace_id"].as_str().map(str::to_string);
            break;
        }
    }
    let refused = refused.expect("a 429 with a trace id");
    let spans = receiver.trace(&allowed, 2, Duration::from_secs(10)).await;
    let server = spans.iter().find(|s| s.kind == 2).unwrap();
    assert!(
        server.attr("gatehouse.limit.remaining").is_some(),
        "{server:?}"
    );
    let spans = receiver.trace(&refused, 1, Duration::from_secs(10)).await;
    let server = &spans[0];
    assert_eq!(server.attr("http.response.status_code"), Some("429"));
    assert_eq!(server.attr("gatehouse.limit.remaining"), Some("0"));
    assert_eq!(server.attr("gatehouse.error"), Some("rate limit exceeded"));

    let resp = client()
        .get(gw.url("/api/search?id=%27%20OR%201%3D1--"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let body: serde_json::Value = resp.json().await.unwrap();
    let trace = body["trace_id"].as_str().unwrap();
    let spans = receiver.trace(trace, 1, Duration::from_secs(10)).await;
    assert_eq!(spans[0].attr("gatehouse.firewall"), Some("deny:sqli"));
    assert_eq!(spans[0].attr("gatehouse.route"), Some("api"));
}

/// A collector behind TLS with a private CA (`ca_file`), over HTTP/protobuf and gRPC; a
/// collector whose certificate the CA did not sign gets nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_behind_tls_with_a_private_ca_over_http_and_grpc() {
    use crate::pki::Ca;
    let ca = Ca::new("collector ca");
    let server = ca.server(&["localhost"], 30);
    let stranger = Ca::new("stranger ca").server(&["localhost"], 30);
    let upstream = Upstream::echo().await;
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("collector-ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let cases = [
        ("http/protobuf", Receiver::https(&server).await, true),
        ("grpc", Receiver::grpc_tls(&server).await, true),
        ("http/protobuf", Receiver::https(&stranger).await, false),
        ("grpc", Receiver::grpc_tls(&stranger).await, false),
    ];
    for (protocol, receiver, trusted) in cases {
        let tracing = format!(
            "endpoint = \"https://localhost:{}\"\nprotocol = \"{protocol}\"\n\
             sampler = \"always_on\"\nca_file = \"{}\"\nexport_interval = \"50ms\"",
            receiver.addr.port(),
            ca_file.display()
        );
        let gw = Gateway::start(&traced_routes(&upstream, &tracing));
        let resp = client().get(gw.url("/api")).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        let (parent, _) = upstream_context(resp).await;
        let (trace, _, _) = parts(&parent.unwrap());
        let wait = if trusted { 10 } else { 2 };
        let spans = receiver.trace(&trace, 2, Duration::from_secs(wait)).await;
        assert_eq!(
            spans.len(),
            if trusted { 2 } else { 0 },
            "{protocol}, trusted {trusted}: {}",
            gw.stderr()
        );
        if !trusted {
            let failed = eventually(Duration::from_secs(10), || async {
                let metrics = gw.metrics().await;
                let labels = [("reason", "export_failed")];
                metric_value(&metrics, "gatehouse_trace_spans_dropped_total", &labels) > 0.0
            })
            .await;
            assert!(failed, "{protocol}: {}", gw.metrics().await);
        }
    }
}
