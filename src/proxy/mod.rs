//! The Pingora `ProxyHttp` implementation. Each phase only sequences calls into the modules
//! that own the decisions; the phases, as they run:
//!
//! ```text
//! request_filter          steps::identify (request id, client IP, TLS facts) →
//!                         steps::start_trace (with [tracing]: W3C context, sampling) →
//!                         steps::check_host (decide::request_host, kept in ctx.host; host
//!                         policy: redirect / Host-SNI / client certificate, HSTS) →
//!                         steps::route (decide::route_request) → steps::throttle (limits not
//!                         keyed by consumer) → steps::authenticate → steps::throttle
//!                         (consumer limits) → proxy, or refusal::send (a Refusal or a fixed
//!                         response: the only answer written by request_filter)
//! upstream_peer           route's pool → Pool::select (health aware) → HttpPeer (TLS);
//!                         a sampled trace starts an upstream attempt span
//! fail_to_connect         passive health, upstream TLS failures logged, retry elsewhere
//! upstream_request_filter edit::upstream_request: forward::remove_hop_by_hop + add_forwarding
//!                         + set_identity + set_client_cert + traceparent (on a plain HeaderMap unless the
//!                         pool preserves header case), path rewrite, credential query
//!                         parameters removed
//! upstream_response_filter upstream timing; edit::upstream_response: hop-by-hop removal,
//!                         request id, RateLimit headers, HSTS (one pass over the headers)
//! fail_to_proxy           respond::status_for_error → refusal::send (JSON 502/503/504)
//! logging                 metrics + spans of a sampled trace + access log line
//! ```
//!
//! Every answer the gateway writes itself goes through `refusal::send`, which adds the headers
//! all of them carry (request id, HSTS, `RateLimit`).

mod conn;
mod ctx;
pub mod decide;
mod edit;
pub mod explain;
pub mod forward;
mod guarded;
mod held;
#[cfg(test)]
mod path_invariant;
mod pingora_headers;
mod refusal;
pub mod request_id;
pub mod respond;
mod steps;

pub use conn::EdgeApp;
pub use ctx::RequestCtx;

use crate::edge::Reason;
use crate::observe::access_log::{AccessEntry, AccessLog};
use crate::observe::trace::{Outcome, SpanSink};
use crate::snapshot::{Route, RouteAction, SnapshotStore};
use crate::upstream::SelectInput;
use async_trait::async_trait;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::modules::http::HttpModules;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, ErrorType, Result};
use refusal::{Answer, Refusal, Stop};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

/// The I/O error at the root of `e`, if any.
fn io_cause(e: &Error) -> Option<&std::io::Error> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = e.cause.as_deref().map(|c| c as _);
    while let Some(c) = cause {
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            return Some(io);
        }
        cause = c.source();
    }
    None
}

/// Whether `e` comes from this process or the system running out of file descriptors.
fn own_descriptor_shortage(e: &Error) -> bool {
    io_cause(e).is_some_and(crate::upstream::health::out_of_descriptors)
}

/// Whether `e` is `proxy::guarded` refusing a chunked body's framing mid-stream.
fn malformed_body(e: &Error) -> bool {
    e.esource() == &pingora::ErrorSource::Downstream
        && io_cause(e).is_some_and(|io| io.kind() == std::io::ErrorKind::InvalidData)
}

/// Count the request's outcome for intrusion detection; log and share the bans it decides.
fn watch_for_bans(ctx: &RequestCtx, status: u16) {
    let Some(bans) = ctx.snapshot.bans() else {
        return;
    };
    if ctx.banned {
        return;
    }
    let consumer = ctx.identity.as_ref().and_then(|i| i.consumer.as_deref());
    let now_ms = crate::clock::now_millis();
    for (key, ban) in bans.observe(ctx.client_ip, consumer, status, ctx.firewall_hit, now_ms) {
        let enforced = if bans.enforce {
            "banned"
        } else {
            "would ban (count mode)"
        };
        tracing::warn!(
            ban = %key.to_text(),
            reason = %ban.reason,
            seconds = bans.duration.as_secs(),
            "{enforced}"
        );
        if let (true, Some(redis)) = (bans.enforce, bans.shared.clone()) {
            tokio::spawn(async move {
                crate::firewall::bans::share(&redis, &key, &ban).await;
            });
        }
    }
}

/// End the request's spans (exported only when it was sampled).
fn finish_trace(
    trace: crate::observe::trace::RequestTrace,
    session: &Session,
    ctx: &RequestCtx,
    status: u16,
    end: SystemTime,
    sink: &SpanSink,
) {
    if !trace.sampled() {
        return;
    }
    let req = session.req_header();
    let outcome = Outcome {
        method: req.method.as_str(),
        path: req.uri.path(),
        scheme: if ctx.ssl.is_some() { "https" } else { "http" },
        protocol: if req.version == http::Version::HTTP_2 {
            "2"
        } else {
            "1.1"
        },
        host: ctx.host.as_ref().map_or("", |h| h.as_str()),
        client_ip: ctx.client_ip,
        request_id: ctx.request_id.to_str().unwrap_or(""),
        route: ctx.route.as_ref().map(|r| r.name.as_str()),
        status,
        upstream: ctx.pool().map(|p| p.name.as_str()),
        auth: ctx.auth.map(crate::auth::Reason::label),
        consumer: ctx.identity.as_ref().and_then(|i| i.consumer.as_deref()),
        firewall: ctx.firewall.as_deref().map(String::as_str),
        limit_remaining: ctx.limit.report.as_ref().map(|r| r.remaining),
        error: ctx.error,
    };
    trace.finish(&outcome, end, sink);
}

/// Check the kept response against the route's operation; a mismatch is counted and logged.
fn contract_response(ctx: &mut RequestCtx) {
    let (Some(capture), Some(op)) = (
        ctx.response_check.take(),
        ctx.route.as_ref().and_then(|r| r.operation.as_ref()),
    ) else {
        return;
    };
    if let Err(problems) = capture.finish(op) {
        ctx.snapshot.contract_violations.response(op);
        tracing::warn!(
            api = %op.api,
            operation = %op.id,
            request_id = ?ctx.request_id,
            problems = %serde_json::to_string(&problems).unwrap_or_default(),
            "response does not match the API contract"
        );
    }
}

/// The gateway service.
pub struct Gateway {
    store: Arc<SnapshotStore>,
    access_log: Option<Arc<AccessLog>>,
    /// Where sampled requests' spans go; `None` when the process started without `[tracing]`.
    spans: Option<Arc<SpanSink>>,
}

impl Gateway {
    pub fn new(
        store: Arc<SnapshotStore>,
        access_log: Option<Arc<AccessLog>>,
        spans: Option<Arc<SpanSink>>,
    ) -> Self {
        Self {
            store,
            access_log,
            spans,
        }
    }

    /// An operation whose responses are enforced: proxied through a subrequest whose response
    /// is held and checked (`held`), then written here, or a 502.
    async fn proxy_held(
        &self,
        session: &mut Session,
        ctx: &mut Box<RequestCtx>,
        route: &Route,
    ) -> Result<bool> {
        let Some(op) = route.operation.as_deref() else {
            return Error::e_explain(ErrorType::InternalError, "held response without operation");
        };
        let answer = match steps::request_body(session, ctx, route, op.max_body_bytes).await {
            Err(refusal) => Answer::Refuse(refusal),
            Ok(body) => match held::proxy(session, ctx, op, body).await {
                held::Verdict::Pass(tasks) => {
                    session.write_response_tasks(tasks).await?;
                    return Ok(true);
                }
                held::Verdict::Refuse(message) => Answer::Refuse(Refusal::new(502, message)),
                held::Verdict::Failed(e) => {
                    self.fail_to_proxy(session, &e, ctx).await;
                    return Ok(true);
                }
            },
        };
        refusal::send(session, ctx, answer).await?;
        Ok(true)
    }
}

/// `request_filter`'s decisions after `steps::identify`, in order: the route to serve, or
/// the first step's refusal (or a CORS preflight's answer).
async fn admit(session: &mut Session, ctx: &mut RequestCtx) -> Result<Arc<Route>, Stop> {
    let local = session.server_addr().and_then(|a| a.as_inet()).copied();
    steps::check_client(session.req_header(), local, ctx)?;
    steps::check_ban(ctx)?;
    steps::check_host(session.req_header(), ctx)?;
    let route = steps::route(session.req_header(), ctx)?;
    steps::inspect(session, ctx, &route).await?;
    let req = session.req_header();
    if let Some(policy) = &route.cors {
        steps::preflight(req, policy)?;
    }
    steps::throttle(req, ctx, &route.limits_before_auth, &route.name).await?;
    if let Some(auth) = &route.auth {
        steps::authenticate(req, ctx, auth, &route.name).await?;
        steps::check_consumer_ban(ctx)?;
    }
    steps::throttle(req, ctx, &route.limits, &route.name).await?;
    if let Some(op) = route.operation.as_deref() {
        if op.validate != crate::config::ValidateMode::Off {
            steps::check_contract(session, ctx, &route, op).await?;
        }
    }
    Ok(route)
}

#[async_trait]
impl ProxyHttp for Gateway {
    /// Boxed: Pingora moves the context with its request futures several times per request,
    /// and a pointer is cheaper to move than the 408-byte context.
    type CTX = Box<RequestCtx>;

    fn new_ctx(&self) -> Box<RequestCtx> {
        Box::new(RequestCtx::new(self.store.load_full()))
    }

    /// Only configs with an enforced response check proxy through subrequests (`held`).
    fn allow_spawning_subrequest(&self, _session: &Session, ctx: &Box<RequestCtx>) -> bool {
        ctx.snapshot.holds_responses
    }

    /// No compression module unless a route asks for one: even disabled it costs 2-3% CPU.
    fn init_downstream_modules(&self, _modules: &mut HttpModules) {}

    async fn request_filter(
        &self,
        session: &mut Session,
        ctx: &mut Box<RequestCtx>,
    ) -> Result<bool> {
        // An enforced operation's subrequest: the parent request passed every check already.
        if held::adopt(session, ctx) {
            return Ok(false);
        }
        steps::identify(session, ctx);
        if self.spans.is_some() {
            steps::start_trace(session.req_header(), ctx);
        }
        if let Some(answer) = steps::acme_challenge(session.req_header(), &self.store.acme) {
            refusal::send(session, ctx, Answer::Challenge(answer)).await?;
            return Ok(true);
        }
        let admitted = admit(session, ctx).await;
        let answer = match admitted {
            Err(Stop::Refuse(refusal)) => Answer::Refuse(refusal),
            Err(Stop::Preflight(headers)) => Answer::Preflight(headers),
            Err(Stop::Invalid(refused)) => Answer::Invalid(refused),
            Ok(ref route) => match &route.action {
                RouteAction::Proxy { .. } if route.holds_responses() => {
                    return self.proxy_held(session, ctx, route).await;
                }
                RouteAction::Proxy { .. } => {
                    session.set_read_timeout(Some(route.edge.body_timeout));
                    return Ok(false);
                }
                RouteAction::Respond(fixed) => Answer::Fixed(fixed),
            },
        };
        // The only place where request_filter answers the request itself.
        refusal::send(session, ctx, answer).await?;
        Ok(true)
    }

    /// Count body bytes against the route's `max_body_bytes` as they stream (a chunked body
    /// declares no length up front).
    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<bytes::Bytes>,
        _end_of_stream: bool,
        ctx: &mut Box<RequestCtx>,
    ) -> Result<()> {
        if let Some(chunk) = body {
            ctx.body_read += chunk.len() as u64;
            if ctx.body_read > ctx.body_limit {
                let refusal = steps::edge_refusal(Reason::BodyTooLarge, ctx);
                ctx.error = Some(refusal.message);
                return Error::e_explain(ErrorType::HTTPStatus(413), "request body too large");
            }
        }
        Ok(())
    }

    async fn upstream_peer(
        &self,
        session: &mut Session,
        ctx: &mut Box<RequestCtx>,
    ) -> Result<Box<HttpPeer>> {
        let Some(pool) = ctx.pool().cloned() else {
            return Error::e_explain(
                ErrorType::InternalError,
                "upstream_peer without a proxy route",
            );
        };
        let req = session.req_header();
        let path = ctx.upstream_uri.as_deref().unwrap_or(&req.uri).path();
        let input = SelectInput {
            client_ip: ctx.client_ip,
            path: path.as_bytes(),
            headers: &req.headers,
        };
        let Some(index) = pool.select(&input, ctx.upstream.failed) else {
            ctx.error = Some("no healthy upstream target");
            return Error::e_explain(
                ErrorType::HTTPStatus(503),
                format!("no healthy target in upstream {}", pool.name),
            );
        };
        ctx.upstream.target = u32::try_from(index).ok();
        ctx.upstream.attempts += 1;
        ctx.upstream.selected_at = Some(Instant::now());
        if let Some(trace) = ctx.trace.as_mut().filter(|t| t.sampled()) {
            let target = &pool.targets[index].label;
            trace.upstream_attempt(Some(target), SystemTime::now());
        }
        Ok(pool.peer(index))
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut Box<RequestCtx>,
        mut e: Box<Error>,
    ) -> Box<Error> {
        if own_descriptor_shortage(&e) {
            // Connecting failed on our side: the target is not to blame and another target
            // would fail the same way.
            ctx.error = Some("gateway overloaded: out of file descriptors");
            let mut refusal = Error::explain(ErrorType::HTTPStatus(503), "out of file descriptors");
            refusal.set_retry(false);
            return refusal;
        }
        if let (Some(pool), Some(index)) = (ctx.pool().cloned(), ctx.upstream.target()) {
            if matches!(
                e.etype(),
                ErrorType::TLSHandshakeFailure
                    | ErrorType::InvalidCert
                    | ErrorType::TLSHandshakeTimedout
            ) {
                tracing::warn!(
                    upstream = %pool.name,
                    target = %pool.targets[index].label,
                    error = %e,
                    "TLS handshake with the upstream failed"
                );
            }
            pool.report_connect_failure(index);
            ctx.upstream.failed |= 1u64.checked_shl(index as u32).unwrap_or(0);
            // Nothing reached the upstream yet, so another target may take any method.
            e.set_retry(ctx.upstream.attempts <= pool.connect_retries);
        }
        e
    }

    async fn connected_to_upstream(
        &self,
        _session: &mut Session,
        _reused: bool,
        _peer: &HttpPeer,
        _fd: std::os::unix::io::RawFd,
        _digest: Option<&pingora::protocols::Digest>,
        ctx: &mut Box<RequestCtx>,
    ) -> Result<()> {
        if let (Some(pool), Some(index)) = (ctx.pool(), ctx.upstream.target()) {
            pool.report_connect_success(index);
        }
        Ok(())
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut Box<RequestCtx>,
    ) -> Result<()> {
        edit::upstream_request(upstream_request, ctx);
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut Box<RequestCtx>,
    ) -> Result<()> {
        if !upstream_response.status.is_informational() {
            ctx.upstream.header_at = Some(Instant::now());
            if let Some(trace) = ctx.trace.as_mut() {
                trace.upstream_status(upstream_response.status.as_u16());
            }
        }
        let origin = session.req_header().headers.get(http::header::ORIGIN);
        edit::upstream_response(upstream_response, ctx, origin);
        let reported = ctx
            .route
            .as_ref()
            .and_then(|r| r.operation.as_ref())
            .filter(|op| op.validate_responses == crate::config::ValidateMode::Report);
        // HEAD, 204 and 304 answers have no body to check.
        let bodiless = session.req_header().method == http::Method::HEAD
            || matches!(upstream_response.status.as_u16(), 204 | 304);
        if let Some(op) = reported.filter(|_| !bodiless) {
            if !upstream_response.status.is_informational() {
                let status = upstream_response.status.as_u16();
                ctx.response_check = crate::contract::check::ResponseCapture::new(
                    status,
                    &upstream_response.headers,
                    op.max_response_bytes,
                )
                .map(Box::new);
            }
        }
        Ok(())
    }

    /// Keep the response for its contract check, then check it when it ends (report only:
    /// the head is already on its way to the client).
    fn response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<bytes::Bytes>,
        end_of_stream: bool,
        ctx: &mut Box<RequestCtx>,
    ) -> Result<Option<std::time::Duration>> {
        if let Some(capture) = ctx.response_check.as_mut() {
            if let Some(chunk) = body {
                capture.push(chunk);
            }
            if end_of_stream {
                contract_response(ctx);
            }
        }
        Ok(None)
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut Box<RequestCtx>,
    ) -> FailToProxy {
        let (status, message) = if malformed_body(e) {
            let refusal = steps::edge_refusal(Reason::InvalidChunked, ctx);
            (refusal.status, refusal.message)
        } else {
            respond::status_for_error(e)
        };
        if status == 408 {
            let refusal = steps::edge_refusal(Reason::BodyTimeout, ctx);
            ctx.error.get_or_insert(refusal.message);
        }
        if status != 0 {
            // A phase may have named the failure already (no healthy target): keep its words.
            let message = *ctx.error.get_or_insert(message);
            // A `100 Continue` (sent when the firewall read the body) is not an answer yet.
            let answered = session
                .response_written()
                .is_some_and(|r| !r.status.is_informational());
            if !answered {
                session.set_keepalive(None);
                let answer = Answer::Refuse(Refusal::new(status, message));
                if let Err(write_err) = refusal::send(session, ctx, answer).await {
                    tracing::debug!(error = %write_err, "cannot send error response");
                }
            }
        }
        FailToProxy {
            error_code: status,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut Box<RequestCtx>) {
        // A subrequest's request is its parent's, logged and counted once, there.
        if held::give_back(session, ctx) {
            return;
        }
        let now = Instant::now();
        let wall = SystemTime::now();
        let elapsed = now.duration_since(ctx.started);
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        let req = session.req_header();
        let route_metrics = ctx
            .route
            .as_ref()
            .map_or(&ctx.snapshot.unrouted, |r| &r.metrics);
        route_metrics.observe(&req.method, status, elapsed, wall);
        watch_for_bans(ctx, status);
        let upstream_elapsed = match (ctx.upstream.selected_at, ctx.upstream.header_at) {
            (Some(a), Some(b)) => Some(b.duration_since(a)),
            _ => None,
        };
        if let (Some(pool), Some(d)) = (ctx.pool(), upstream_elapsed) {
            pool.metrics.observe(d);
        }
        let trace_id = ctx.trace.as_ref().map(|t| t.trace_id());
        if let (Some(trace), Some(sink)) = (ctx.trace.take(), &self.spans) {
            finish_trace(*trace, session, ctx, status, wall, sink);
        }
        let pool = ctx.pool();
        let Some(log) = self.access_log.as_ref().filter(|_| ctx.snapshot.access_log) else {
            return;
        };
        let target = pool
            .zip(ctx.upstream.target())
            .map(|(p, i)| p.targets[i].label.as_str());
        log.log(&AccessEntry {
            time: wall,
            request_id: ctx.request_id.to_str().unwrap_or(""),
            trace_id,
            client_ip: ctx.client_ip,
            method: req.method.as_str(),
            host: ctx.host.as_ref().map_or("", |h| h.as_str()),
            path: req.uri.path(),
            route: ctx.route.as_ref().map(|r| r.name.as_str()),
            upstream: pool.map(|p| p.name.as_str()),
            target,
            status,
            bytes_sent: session.body_bytes_sent(),
            bytes_received: session.body_bytes_read(),
            duration: elapsed,
            upstream_duration: upstream_elapsed,
            consumer: ctx.identity.as_ref().and_then(|i| i.consumer.as_deref()),
            auth: ctx.auth.map(crate::auth::Reason::label),
            firewall: ctx.firewall.as_deref().map(String::as_str),
            error: ctx.error,
        });
    }
}
