//! OpenTelemetry tracing of proxied requests: W3C trace context in and out, the sampling
//! decision, and the spans of a request, built when it ends.
//!
//! The request path uses the OpenTelemetry crates for what has a standard answer (parsing
//! `traceparent`/`tracestate`, ids, the samplers, the span data model) and builds
//! each span's [`SpanData`] itself when the request ends: a sampled request costs one
//! allocation per attribute value, an unsampled one only its ids and the sampler's
//! decision, and nothing takes a lock. Spans go to [`export::SpanSink`], a bounded queue that
//! drops and counts rather than waits.

pub mod export;
mod otlp;

use crate::text::write_hex;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceId,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_http::HeaderExtractor;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    IdGenerator, RandomIdGenerator, Sampler, SamplingDecision, ShouldSample, SpanData, SpanEvents,
    SpanLinks,
};
use std::borrow::Cow;
use std::net::IpAddr;
use std::time::SystemTime;

pub use export::SpanSink;

/// `traceparent` (W3C Trace Context).
pub static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
/// `tracestate` (W3C Trace Context).
pub static TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// The sampling settings of one config snapshot (`[tracing]`'s reloadable part).
#[derive(Debug)]
pub struct Sampling {
    sampler: Sampler,
    /// Continue the client's trace context; otherwise every request starts a trace.
    trust_incoming: bool,
}

impl Sampling {
    /// `sampler` with `ratio` for the ratio samplers.
    pub fn new(kind: crate::config::SamplerKind, ratio: f64, trust_incoming: bool) -> Self {
        use crate::config::SamplerKind as K;
        let by_ratio = || Sampler::TraceIdRatioBased(ratio);
        let sampler = match kind {
            K::AlwaysOn => Sampler::AlwaysOn,
            K::AlwaysOff => Sampler::AlwaysOff,
            K::Traceidratio => by_ratio(),
            K::ParentbasedAlwaysOn => Sampler::ParentBased(Box::new(Sampler::AlwaysOn)),
            K::ParentbasedAlwaysOff => Sampler::ParentBased(Box::new(Sampler::AlwaysOff)),
            K::ParentbasedTraceidratio => Sampler::ParentBased(Box::new(by_ratio())),
        };
        Self {
            sampler,
            trust_incoming,
        }
    }
}

/// One upstream attempt of a sampled request: a client span.
#[derive(Debug)]
struct Attempt {
    span_id: SpanId,
    start: SystemTime,
    /// Set when a later attempt replaced this one (it failed to connect).
    end: Option<SystemTime>,
    target: Option<String>,
}

/// The trace of one request, from its first phase to its log line.
#[derive(Debug)]
pub struct RequestTrace {
    /// The server span's context: the trace id, its own span id, whether it is sampled, and
    /// the `tracestate` to pass on.
    pub context: SpanContext,
    /// The client's span, when the request continued a trace.
    parent: Option<SpanId>,
    start: SystemTime,
    /// Upstream attempts, recorded only for a sampled request.
    attempts: Vec<Attempt>,
    upstream_status: Option<u16>,
}

/// What the server span says about the request when it ends.
#[derive(Debug, Default)]
pub struct Outcome<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub scheme: &'static str,
    /// `1.1` or `2`.
    pub protocol: &'static str,
    pub host: &'a str,
    pub client_ip: Option<IpAddr>,
    pub request_id: &'a str,
    pub route: Option<&'a str>,
    pub status: u16,
    pub upstream: Option<&'a str>,
    pub auth: Option<&'a str>,
    pub consumer: Option<&'a str>,
    pub firewall: Option<&'a str>,
    /// Requests left in the tightest limit that counted the request.
    pub limit_remaining: Option<u64>,
    pub error: Option<&'a str>,
}

impl RequestTrace {
    /// Start the trace of a request with `headers`: continue the client's trace when it sent
    /// a valid `traceparent` and `sampling` trusts it, else start one; then sample. `now` is
    /// read only for a sampled request (an unsampled one has no span to time).
    pub fn start(
        sampling: &Sampling,
        headers: &HeaderMap,
        now: impl FnOnce() -> SystemTime,
    ) -> Self {
        let ids = RandomIdGenerator::default();
        let parent_cx = if sampling.trust_incoming && headers.contains_key(&TRACEPARENT) {
            TraceContextPropagator::new().extract(&HeaderExtractor(headers))
        } else {
            Context::new()
        };
        let parent = parent_cx.span().span_context().clone();
        let (trace_id, parent) = if parent.is_valid() {
            (parent.trace_id(), Some(parent.span_id()))
        } else {
            (ids.new_trace_id(), None)
        };
        let result = sampling.sampler.should_sample(
            Some(&parent_cx),
            trace_id,
            "request",
            &SpanKind::Server,
            &[],
            &[],
        );
        let sampled = matches!(result.decision, SamplingDecision::RecordAndSample);
        let flags = if sampled {
            TraceFlags::SAMPLED
        } else {
            TraceFlags::default()
        };
        let context = SpanContext::new(
            trace_id,
            ids.new_span_id(),
            flags,
            false,
            result.trace_state,
        );
        Self {
            context,
            parent,
            start: if sampled {
                now()
            } else {
                SystemTime::UNIX_EPOCH
            },
            attempts: Vec::new(),
            upstream_status: None,
        }
    }

    /// Whether the request's spans are exported.
    pub fn sampled(&self) -> bool {
        self.context.is_sampled()
    }

    /// The trace id as 32 lowercase hex digits, for logs and error bodies.
    pub fn trace_id(&self) -> TraceIdText {
        TraceIdText(self.context.trace_id().to_bytes())
    }

    /// A new upstream attempt to `target`, at `now`; the one before it failed.
    pub fn upstream_attempt(&mut self, target: Option<&str>, now: SystemTime) {
        if !self.sampled() {
            return;
        }
        if let Some(last) = self.attempts.last_mut() {
            last.end.get_or_insert(now);
        }
        self.attempts.push(Attempt {
            span_id: RandomIdGenerator::default().new_span_id(),
            start: now,
            end: None,
            target: target.map(str::to_string),
        });
    }

    /// The upstream's response status.
    pub fn upstream_status(&mut self, status: u16) {
        self.upstream_status = Some(status);
    }

    /// `traceparent` and `tracestate` for the upstream request, which replace the client's:
    /// the span that calls the upstream is the parent (the upstream attempt's span when
    /// sampled, the server span otherwise). No `tracestate` when there is none to pass on:
    /// only a continued trace has one.
    pub fn upstream_headers(&self) -> (HeaderValue, Option<HeaderValue>) {
        let span_id = self
            .attempts
            .last()
            .map_or(self.context.span_id(), |a| a.span_id);
        let parent = traceparent(self.context.trace_id(), span_id, self.context.trace_flags());
        let state = self
            .parent
            .map(|_| self.context.trace_state().header())
            .filter(|s| !s.is_empty())
            .and_then(|s| HeaderValue::try_from(s).ok());
        (parent, state)
    }

    /// The request's spans, when it is sampled: the server span, and a client span per
    /// upstream attempt.
    pub fn finish(self, outcome: &Outcome<'_>, end: SystemTime, sink: &SpanSink) {
        if !self.sampled() {
            return;
        }
        let server_span_id = self.context.span_id();
        let trace_id = self.context.trace_id();
        let attempts = self.attempts.len();
        for (i, attempt) in self.attempts.into_iter().enumerate() {
            let last = i + 1 == attempts;
            let mut attributes = vec![
                KeyValue::new("http.request.method", outcome.method.to_string()),
                KeyValue::new("url.path", outcome.path.to_string()),
            ];
            if let Some(target) = &attempt.target {
                attributes.extend(server_address(target));
            }
            if let Some(upstream) = outcome.upstream {
                attributes.push(KeyValue::new("gatehouse.upstream", upstream.to_string()));
            }
            let status = match (last, self.upstream_status) {
                (true, Some(code)) => {
                    attributes.push(KeyValue::new("http.response.status_code", i64::from(code)));
                    if code >= 500 {
                        attributes.push(KeyValue::new("error.type", code.to_string()));
                        Status::error("")
                    } else {
                        Status::Unset
                    }
                }
                _ => {
                    // No response: the connection failed, or the gateway gave up waiting.
                    let reason = if last {
                        "no response"
                    } else {
                        "connect failed"
                    };
                    attributes.push(KeyValue::new("error.type", reason));
                    Status::error(reason)
                }
            };
            let context = SpanContext::new(
                trace_id,
                attempt.span_id,
                TraceFlags::SAMPLED,
                false,
                self.context.trace_state().clone(),
            );
            sink.send(span(
                context,
                server_span_id,
                false,
                SpanKind::Client,
                Cow::Owned(outcome.method.to_string()),
                (attempt.start, attempt.end.unwrap_or(end)),
                attributes,
                status,
                sink,
            ));
        }
        let name = match outcome.route {
            Some(route) => format!("{} {route}", outcome.method),
            None => outcome.method.to_string(),
        };
        let (attributes, status) = server_attributes(outcome);
        let (parent, remote) = match self.parent {
            Some(id) => (id, true),
            None => (SpanId::INVALID, false),
        };
        sink.send(span(
            self.context,
            parent,
            remote,
            SpanKind::Server,
            Cow::Owned(name),
            (self.start, end),
            attributes,
            status,
            sink,
        ));
    }
}

/// One finished span.
#[allow(clippy::too_many_arguments)]
fn span(
    context: SpanContext,
    parent: SpanId,
    parent_is_remote: bool,
    kind: SpanKind,
    name: Cow<'static, str>,
    (start, end): (SystemTime, SystemTime),
    attributes: Vec<KeyValue>,
    status: Status,
    sink: &SpanSink,
) -> SpanData {
    SpanData {
        span_context: context,
        parent_span_id: parent,
        parent_span_is_remote: parent_is_remote,
        span_kind: kind,
        name,
        start_time: start,
        end_time: end,
        attributes,
        dropped_attributes_count: 0,
        events: SpanEvents::default(),
        links: SpanLinks::default(),
        status,
        instrumentation_scope: sink.scope().clone(),
    }
}

/// The server span's attributes (HTTP semantic conventions, and the gateway's decisions under
/// `gatehouse.*`), and its status: an error for 5xx and for requests without a response.
fn server_attributes(o: &Outcome<'_>) -> (Vec<KeyValue>, Status) {
    let mut a = Vec::with_capacity(16);
    a.push(KeyValue::new("http.request.method", o.method.to_string()));
    a.push(KeyValue::new("url.path", o.path.to_string()));
    a.push(KeyValue::new("url.scheme", o.scheme));
    a.push(KeyValue::new("network.protocol.version", o.protocol));
    if !o.host.is_empty() {
        a.push(KeyValue::new("server.address", o.host.to_string()));
    }
    if let Some(ip) = o.client_ip {
        a.push(KeyValue::new("client.address", ip.to_string()));
    }
    if o.status != 0 {
        a.push(KeyValue::new(
            "http.response.status_code",
            i64::from(o.status),
        ));
    }
    a.push(KeyValue::new(
        "gatehouse.request_id",
        o.request_id.to_string(),
    ));
    let optional = [
        ("gatehouse.route", o.route),
        ("gatehouse.upstream", o.upstream),
        ("gatehouse.auth", o.auth),
        ("gatehouse.consumer", o.consumer),
        ("gatehouse.firewall", o.firewall),
        ("gatehouse.error", o.error),
    ];
    for (key, value) in optional {
        if let Some(value) = value {
            a.push(KeyValue::new(key, value.to_string()));
        }
    }
    if let Some(remaining) = o.limit_remaining {
        let remaining = i64::try_from(remaining).unwrap_or(i64::MAX);
        a.push(KeyValue::new("gatehouse.limit.remaining", remaining));
    }
    let status = if o.status == 0 || o.status >= 500 {
        let kind = if o.status == 0 {
            "no response".to_string()
        } else {
            o.status.to_string()
        };
        a.push(KeyValue::new("error.type", kind));
        Status::error(o.error.unwrap_or("").to_string())
    } else {
        Status::Unset
    };
    (a, status)
}

/// `server.address` and `server.port` of an upstream target written `host:port`.
fn server_address(target: &str) -> impl Iterator<Item = KeyValue> {
    let (host, port) = match target.parse::<std::net::SocketAddr>() {
        Ok(addr) => (addr.ip().to_string(), Some(i64::from(addr.port()))),
        Err(_) => (target.to_string(), None),
    };
    std::iter::once(KeyValue::new("server.address", host))
        .chain(port.map(|p| KeyValue::new("server.port", p)))
}

/// A trace id as it is written: 32 lowercase hex digits, without allocating.
#[derive(Debug, Clone, Copy)]
pub struct TraceIdText([u8; 16]);

impl TraceIdText {
    /// The hex digits.
    pub fn bytes(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        write_hex(&mut out, &self.0);
        out
    }
}

impl std::fmt::Display for TraceIdText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let bytes = self.bytes();
        // Hex digits are ASCII.
        f.write_str(std::str::from_utf8(&bytes).map_err(|_| std::fmt::Error)?)
    }
}

/// `traceparent` version 00: `00-TRACEID-SPANID-FLAGS` in lowercase hex. Written into a
/// stack buffer: the propagator's `inject` formats through `format!` and a `Context` (about
/// 3,500 instructions per request, measured); this is the whole of its output for version 00,
/// and a test checks the two agree. Parsing stays with the propagator.
fn traceparent(trace_id: TraceId, span_id: SpanId, flags: TraceFlags) -> HeaderValue {
    let mut out = [0u8; 55];
    out[..3].copy_from_slice(b"00-");
    write_hex(&mut out[3..35], &trace_id.to_bytes());
    out[35] = b'-';
    write_hex(&mut out[36..52], &span_id.to_bytes());
    out[52] = b'-';
    write_hex(&mut out[53..55], &[flags.to_u8()]);
    HeaderValue::from_bytes(&out).unwrap_or_else(|_| HeaderValue::from_static(""))
}

#[cfg(test)]
mod tests;
