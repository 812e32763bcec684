use super::*;
use crate::config::SamplerKind;
use opentelemetry::trace::TraceId;
use std::time::Duration;

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00f067aa0ba902b7";

fn headers(traceparent: Option<&str>, tracestate: Option<&str>) -> HeaderMap {
    let mut h = HeaderMap::new();
    if let Some(v) = traceparent {
        h.insert(&TRACEPARENT, HeaderValue::from_str(v).unwrap());
    }
    if let Some(v) = tracestate {
        h.insert(&TRACESTATE, HeaderValue::from_str(v).unwrap());
    }
    h
}

fn start(kind: SamplerKind, ratio: f64, trust: bool, h: &HeaderMap) -> RequestTrace {
    RequestTrace::start(&Sampling::new(kind, ratio, trust), h, SystemTime::now)
}

fn caller(flags: &str) -> HeaderMap {
    headers(
        Some(&format!("00-{TRACE}-{PARENT}-{flags}")),
        Some("vendor=abc"),
    )
}

#[test]
fn a_valid_traceparent_is_continued_and_its_decision_followed() {
    use SamplerKind::ParentbasedTraceidratio as P;
    let t = start(P, 0.0, true, &caller("01"));
    assert_eq!(t.trace_id().to_string(), TRACE);
    assert_eq!(t.parent, Some(SpanId::from_hex(PARENT).unwrap()));
    assert!(t.sampled(), "the caller sampled it");
    assert_ne!(t.context.span_id(), SpanId::from_hex(PARENT).unwrap());
    assert_eq!(t.context.trace_state().header(), "vendor=abc");

    let t = start(P, 1.0, true, &caller("00"));
    assert_eq!(t.trace_id().to_string(), TRACE);
    assert!(!t.sampled(), "the caller did not sample it");
}

#[test]
fn without_a_parent_the_ratio_decides() {
    use SamplerKind::ParentbasedTraceidratio as P;
    assert!(start(P, 1.0, true, &HeaderMap::new()).sampled());
    assert!(!start(P, 0.0, true, &HeaderMap::new()).sampled());
    let sampled = (0..2000)
        .filter(|_| start(P, 0.25, true, &HeaderMap::new()).sampled())
        .count();
    assert!((350..650).contains(&sampled), "{sampled} of 2000 at 0.25");
    // Not parent-based: the ratio decides even for a sampled caller.
    let t = start(SamplerKind::Traceidratio, 0.0, true, &caller("01"));
    assert_eq!(t.trace_id().to_string(), TRACE);
    assert!(!t.sampled());
    assert!(start(SamplerKind::AlwaysOn, 0.0, true, &caller("00")).sampled());
    assert!(!start(SamplerKind::AlwaysOff, 1.0, true, &caller("01")).sampled());
}

#[test]
fn malformed_or_untrusted_context_starts_a_new_trace() {
    let invalid = [
        format!("00-{TRACE}-{PARENT}"),
        format!("ff-{TRACE}-{PARENT}-01"),
        format!("00-{}-{PARENT}-01", "0".repeat(32)),
        format!("00-{TRACE}-{}-01", "0".repeat(16)),
        format!("00-{}-{PARENT}-01", TRACE.to_uppercase()),
        format!("00-{TRACE}-{PARENT}-01-extra"),
    ];
    for traceparent in &invalid {
        let h = headers(Some(traceparent), Some("vendor=abc"));
        let t = start(SamplerKind::ParentbasedAlwaysOn, 1.0, true, &h);
        assert_ne!(t.trace_id().to_string(), TRACE, "{traceparent}");
        assert_eq!(t.parent, None, "{traceparent}");
        assert_eq!(t.context.trace_state().header(), "", "{traceparent}");
    }
    let t = start(SamplerKind::ParentbasedAlwaysOff, 1.0, false, &caller("01"));
    assert_ne!(t.trace_id().to_string(), TRACE);
    assert_eq!(t.parent, None);
    assert!(!t.sampled(), "an untrusted caller cannot force sampling");
}

#[test]
fn the_upstream_gets_the_span_that_calls_it_as_parent() {
    let mut t = start(SamplerKind::ParentbasedAlwaysOn, 1.0, true, &caller("01"));
    let (parent, state) = t.upstream_headers();
    let server_span = t.context.span_id().to_string();
    assert_eq!(parent, format!("00-{TRACE}-{server_span}-01").as_str());
    assert_eq!(state.unwrap(), "vendor=abc");

    t.upstream_attempt(Some("127.0.0.1:8080"), SystemTime::now());
    let attempt = t.attempts[0].span_id.to_string();
    let (parent, _) = t.upstream_headers();
    assert_eq!(parent, format!("00-{TRACE}-{attempt}-01").as_str());

    // Unsampled: no attempt spans; the server span id goes upstream with flags 00.
    let mut t = start(SamplerKind::AlwaysOff, 1.0, true, &HeaderMap::new());
    t.upstream_attempt(Some("127.0.0.1:8080"), SystemTime::now());
    assert!(t.attempts.is_empty());
    let (parent, state) = t.upstream_headers();
    let expected = format!("00-{}-{}-00", t.trace_id(), t.context.span_id());
    assert_eq!(parent, expected.as_str());
    assert_eq!(state, None);
}

fn sink() -> (
    SpanSink,
    std::sync::mpsc::Receiver<SpanData>,
    prometheus::IntCounter,
) {
    let dropped = prometheus::IntCounter::new("d", "d").unwrap();
    let (sink, spans) = export::queue(8, dropped.clone());
    (sink, spans, dropped)
}

#[test]
fn a_sampled_request_ends_as_a_server_span_and_a_client_span_per_attempt() {
    let (sink, spans, _) = sink();
    let t0 = SystemTime::now();
    let mut t = RequestTrace::start(
        &Sampling::new(SamplerKind::AlwaysOn, 1.0, true),
        &caller("01"),
        || t0,
    );
    let t1 = t0 + Duration::from_millis(1);
    let t2 = t0 + Duration::from_millis(2);
    t.upstream_attempt(Some("10.0.0.1:80"), t1);
    t.upstream_attempt(Some("10.0.0.2:80"), t2);
    t.upstream_status(503);
    let server_id = t.context.span_id();
    let outcome = Outcome {
        method: "POST",
        path: "/orders",
        scheme: "https",
        protocol: "2",
        host: "api.example.com",
        request_id: "rid-1",
        route: Some("orders"),
        status: 503,
        upstream: Some("backend"),
        error: Some("upstream unavailable"),
        limit_remaining: Some(4),
        ..Outcome::default()
    };
    let end = t0 + Duration::from_millis(5);
    t.finish(&outcome, end, &sink);
    let got: Vec<SpanData> = spans.try_iter().collect();
    assert_eq!(got.len(), 3);
    let (first, second, server) = (&got[0], &got[1], &got[2]);
    assert_eq!(server.span_kind, SpanKind::Server);
    assert_eq!(server.name, "POST orders");
    assert_eq!(server.parent_span_id, SpanId::from_hex(PARENT).unwrap());
    assert!(server.parent_span_is_remote);
    assert_eq!((server.start_time, server.end_time), (t0, end));
    assert!(matches!(server.status, Status::Error { .. }));
    let attr = |s: &SpanData, k: &str| {
        s.attributes
            .iter()
            .find(|kv| kv.key.as_str() == k)
            .map(|kv| kv.value.to_string())
    };
    assert_eq!(attr(server, "url.scheme").as_deref(), Some("https"));
    assert_eq!(
        attr(server, "network.protocol.version").as_deref(),
        Some("2")
    );
    assert_eq!(
        attr(server, "server.address").as_deref(),
        Some("api.example.com")
    );
    assert_eq!(
        attr(server, "gatehouse.limit.remaining").as_deref(),
        Some("4")
    );
    assert_eq!(attr(server, "error.type").as_deref(), Some("503"));
    assert_eq!(attr(server, "client.address"), None);

    for client in [first, second] {
        assert_eq!(client.span_kind, SpanKind::Client);
        assert_eq!(client.parent_span_id, server_id);
        assert_eq!(
            client.span_context.trace_id(),
            TraceId::from_hex(TRACE).unwrap()
        );
        assert!(!client.parent_span_is_remote);
    }
    assert_eq!((first.start_time, first.end_time), (t1, t2));
    assert_eq!(attr(first, "error.type").as_deref(), Some("connect failed"));
    assert_eq!(attr(first, "server.address").as_deref(), Some("10.0.0.1"));
    assert_eq!((second.start_time, second.end_time), (t2, end));
    assert_eq!(
        attr(second, "http.response.status_code").as_deref(),
        Some("503")
    );
    assert_eq!(attr(second, "server.port").as_deref(), Some("80"));
}

#[test]
fn unsampled_requests_send_nothing_and_a_full_queue_drops_and_counts() {
    let (sink, spans, dropped) = sink();
    let t = start(SamplerKind::AlwaysOff, 1.0, true, &HeaderMap::new());
    t.finish(&Outcome::default(), SystemTime::now(), &sink);
    assert_eq!(spans.try_iter().count(), 0);
    for _ in 0..10 {
        let t = start(SamplerKind::AlwaysOn, 1.0, true, &HeaderMap::new());
        t.finish(&Outcome::default(), SystemTime::now(), &sink);
    }
    assert_eq!(spans.try_iter().count(), 8, "the queue holds 8");
    assert_eq!(dropped.get(), 2);
}

#[test]
fn the_trace_id_text_is_the_w3c_spelling() {
    let t = start(SamplerKind::AlwaysOn, 1.0, true, &HeaderMap::new());
    assert_eq!(
        t.trace_id().to_string(),
        format!(
            "{:032x}",
            u128::from_be_bytes(t.context.trace_id().to_bytes())
        )
    );
}

/// The hand-written `traceparent` is what the propagator's `inject` writes.
#[test]
fn traceparent_is_written_as_the_propagator_writes_it() {
    use opentelemetry::propagation::Injector;
    #[derive(Default)]
    struct One(Option<String>);
    impl Injector for One {
        fn set(&mut self, key: &str, value: String) {
            if key == "traceparent" {
                self.0 = Some(value);
            }
        }
    }
    let ids = RandomIdGenerator::default();
    for i in 0..200u32 {
        let (trace_id, span_id) = (ids.new_trace_id(), ids.new_span_id());
        let flags = if i % 2 == 0 {
            TraceFlags::SAMPLED
        } else {
            TraceFlags::default()
        };
        let sc = SpanContext::new(trace_id, span_id, flags, false, Default::default());
        let mut one = One::default();
        TraceContextPropagator::new()
            .inject_context(&Context::new().with_remote_span_context(sc), &mut one);
        assert_eq!(
            traceparent(trace_id, span_id, flags),
            one.0.unwrap().as_str()
        );
    }
}
