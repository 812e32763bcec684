//! The Pingora `ProxyHttp` implementation. Each phase only sequences calls into the modules
//! that own the decisions:
//!
//! ```text
//! request_filter          request id, client IP, TLS facts → decide::request_host →
//!                         tls::policy::check → decide::route_request → limits not keyed by
//!                         consumer → auth::authenticate → consumer limits →
//!                         reject | respond | proxy
//! upstream_peer           route's pool → Pool::select (health aware) → HttpPeer (TLS)
//! fail_to_connect         passive health, upstream TLS failures logged, retry elsewhere
//! upstream_request_filter forward::remove_hop_by_hop + add_forwarding + set_identity +
//!                         set_client_cert (on a plain HeaderMap unless the pool preserves
//!                         header case), path rewrite, credential query parameters removed
//! upstream_response_filter upstream timing, hop-by-hop removal, request id, RateLimit
//!                         headers, HSTS (one pass over the response headers)
//! fail_to_proxy           respond::status_for_error → JSON 502/503/504
//! logging                 metrics + access log line
//! ```

mod ctx;
pub mod decide;
pub mod forward;
pub mod request_id;
pub mod respond;

pub use ctx::RequestCtx;

use crate::auth;
use crate::limit::{self, LimitInput};
use crate::observe::access_log::{AccessEntry, AccessLog};
use crate::snapshot::{RouteAction, SnapshotStore};
use crate::tls::policy;
use crate::upstream::{Pool, SelectInput};
use async_trait::async_trait;
use decide::Rejection;
use http::header::{self, HeaderName, HeaderValue};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::modules::http::HttpModules;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, ErrorType, Result};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

/// The gateway service.
pub struct Gateway {
    store: Arc<SnapshotStore>,
    access_log: Option<AccessLog>,
}

impl Gateway {
    pub fn new(store: Arc<SnapshotStore>, access_log: Option<AccessLog>) -> Self {
        Self { store, access_log }
    }
}

/// A gateway answer: status, message, an extra header.
type Refusal = (u16, &'static str, Option<(HeaderName, HeaderValue)>);

/// The response for a host policy's refusal.
fn policy_refusal(verdict: policy::Verdict) -> Option<Refusal> {
    match verdict {
        policy::Verdict::Pass => None,
        policy::Verdict::Redirect(url) => Some((
            308,
            "use https",
            HeaderValue::from_str(&url)
                .ok()
                .map(|v| (header::LOCATION, v)),
        )),
        policy::Verdict::Misdirected => {
            Some((421, "host does not match the TLS server name", None))
        }
        policy::Verdict::ClientCertRequired => Some((403, "client certificate required", None)),
    }
}

/// Check `policies`; on refusal answer 429 (or 503) and return true.
async fn throttle(
    session: &mut Session,
    ctx: &mut RequestCtx,
    policies: &[Arc<limit::Policy>],
    route: &str,
) -> Result<bool> {
    if policies.is_empty() {
        return Ok(false);
    }
    let input = LimitInput {
        route,
        client_ip: ctx.client_ip,
        consumer: ctx.identity.as_ref().and_then(|i| i.consumer.as_deref()),
        headers: &session.req_header().headers,
    };
    let Err(rejected) =
        limit::check(policies, &input, crate::clock::unix_nanos(), &mut ctx.limit).await
    else {
        return Ok(false);
    };
    ctx.error = Some(rejected.message);
    let retry = HeaderValue::from(rejected.retry_after_secs);
    let mut extra = vec![(header::RETRY_AFTER, retry)];
    extra.extend(rejected.report.iter().flat_map(|r| r.headers()));
    let (status, message) = (rejected.status, rejected.message);
    refuse(session, ctx, status, message, &extra).await?;
    Ok(true)
}

/// A gateway error response for a request whose host policy may ask for HSTS.
async fn refuse(
    session: &mut Session,
    ctx: &RequestCtx,
    status: u16,
    message: &str,
    extra: &[(HeaderName, HeaderValue)],
) -> Result<()> {
    let id = &ctx.request_id;
    match &ctx.hsts {
        None => respond::send_error(session, status, message, id, extra).await,
        Some(hsts) => {
            let mut all = extra.to_vec();
            all.push((header::STRICT_TRANSPORT_SECURITY, hsts.clone()));
            respond::send_error(session, status, message, id, &all).await
        }
    }
}

/// The gateway's edits of the upstream request's headers: hop-by-hop headers out, forwarding
/// headers in, identity headers replaced.
fn edit_upstream_request(
    headers: &mut impl forward::EditHeaders,
    ctx: &RequestCtx,
    host: Option<&str>,
    forwarded: bool,
) {
    let upgrade = forward::is_upgrade(headers.map());
    forward::remove_hop_by_hop(headers, upgrade);
    let info = forward::ForwardInfo {
        client_ip: ctx.client_ip,
        proto: if ctx.ssl.is_some() { "https" } else { "http" },
        host,
        request_id: &ctx.request_id,
        forwarded,
    };
    forward::add_forwarding(headers, &info);
    let strip = ctx.route.as_ref().and_then(|r| r.auth.as_ref());
    let strip = strip.map_or(&[][..], |a| &a.authorizer.strip[..]);
    forward::set_identity(
        headers,
        &ctx.snapshot.identity_headers,
        strip,
        ctx.identity.as_deref(),
    );
    forward::set_client_cert(headers, ctx.tls().and_then(|t| t.client_cert.as_ref()));
}

/// The gateway's edits of the response's headers: hop-by-hop headers out, request id, HSTS and
/// `RateLimit` headers in.
fn edit_response(
    headers: &mut impl forward::EditHeaders,
    ctx: &RequestCtx,
    status: http::StatusCode,
) {
    let switching = status == http::StatusCode::SWITCHING_PROTOCOLS;
    forward::remove_hop_by_hop(headers, switching);
    headers.set(&request_id::HEADER, ctx.request_id.clone());
    if let Some(hsts) = &ctx.hsts {
        headers.set(&header::STRICT_TRANSPORT_SECURITY, hsts.clone());
    }
    if let Some(report) = &ctx.limit.report {
        for (name, value) in report.headers() {
            headers.set(&name, value);
        }
    }
}

fn proxied_pool(ctx: &RequestCtx) -> Option<&Arc<Pool>> {
    match &ctx.route.as_ref()?.action {
        RouteAction::Proxy { pool, .. } => Some(pool),
        RouteAction::Respond(_) => None,
    }
}

#[async_trait]
impl ProxyHttp for Gateway {
    /// Boxed: Pingora moves the context with its request futures several times per request,
    /// and a pointer is cheaper to move than the 450-byte context.
    type CTX = Box<RequestCtx>;

    fn new_ctx(&self) -> Box<RequestCtx> {
        Box::new(RequestCtx::new(self.store.load_full()))
    }

    /// No compression module unless a route asks for one: even disabled it costs 2-3% CPU.
    fn init_downstream_modules(&self, _modules: &mut HttpModules) {}

    async fn request_filter(
        &self,
        session: &mut Session,
        ctx: &mut Box<RequestCtx>,
    ) -> Result<bool> {
        let req = session.req_header();
        ctx.request_id = request_id::for_request(req.headers.get(&request_id::HEADER));
        ctx.client_ip = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        ctx.ssl = session.digest().and_then(|d| d.ssl_digest.clone());
        // The host first, checked once: host policies, routes and certificates must all read
        // the same host, and a policy applies even to requests that match no route.
        let host = match decide::request_host(session.req_header()) {
            Ok(host) => host,
            Err(rejection) => {
                let message = rejection.message();
                ctx.error = Some(message);
                let status = rejection.status();
                respond::send_error(session, status, message, &ctx.request_id, &[]).await?;
                return Ok(true);
            }
        };
        let policy = host.and_then(|h| Some((h, ctx.snapshot.hosts.lookup(h)?)));
        if let Some((host, policy)) = policy {
            let req = session.req_header();
            let target = req.uri.path_and_query().map_or("/", |p| p.as_str());
            let verdict = policy::check(policy, ctx.tls(), host, target);
            if ctx.ssl.is_some() {
                ctx.hsts.clone_from(&policy.hsts);
            }
            if let Some((status, message, extra)) = policy_refusal(verdict) {
                ctx.error = Some(message);
                let id = &ctx.request_id;
                respond::send_error(session, status, message, id, extra.as_slice()).await?;
                return Ok(true);
            }
        }
        match decide::route_request(&ctx.snapshot, session.req_header(), host) {
            Ok(routed) => {
                ctx.upstream_uri = routed.upstream_uri;
                ctx.route = Some(routed.route);
            }
            Err(rejection) => {
                ctx.error = Some(rejection.message());
                let allow = match &rejection {
                    Rejection::MethodNotAllowed(allow) => HeaderValue::from_str(allow)
                        .ok()
                        .map(|v| (header::ALLOW, v)),
                    _ => None,
                };
                let (status, message) = (rejection.status(), rejection.message());
                refuse(session, ctx, status, message, allow.as_slice()).await?;
                return Ok(true);
            }
        }
        // One reference count for the rest of the filter, so `ctx` can be written meanwhile.
        let Some(route) = ctx.route.clone() else {
            return Ok(false);
        };
        if throttle(session, ctx, &route.limits_before_auth, &route.name).await? {
            return Ok(true);
        }
        if let Some(auth) = &route.auth {
            let req = session.req_header();
            let info = auth::RequestInfo {
                route: &route.name,
                host: decide::host_of(req).unwrap_or(""),
                request_id: &ctx.request_id,
            };
            match auth::authenticate(auth, req, &info).await {
                Ok(identity) => {
                    ctx.auth = Some(auth::Reason::Allowed.label());
                    ctx.identity = Some(identity);
                }
                Err(rejected) => {
                    let message = rejected.reason.message();
                    ctx.auth = Some(rejected.reason.label());
                    ctx.error = Some(message);
                    let challenge = rejected
                        .www_authenticate
                        .map(|v| (header::WWW_AUTHENTICATE, v));
                    refuse(session, ctx, rejected.status, message, challenge.as_slice()).await?;
                    return Ok(true);
                }
            }
        }
        if throttle(session, ctx, &route.limits, &route.name).await? {
            return Ok(true);
        }
        if let RouteAction::Respond(fixed) = &route.action {
            let mut extra: Vec<(HeaderName, HeaderValue)> = Vec::new();
            extra.extend(ctx.limit.report.iter().flat_map(|r| r.headers()));
            extra.extend(
                ctx.hsts
                    .clone()
                    .map(|v| (header::STRICT_TRANSPORT_SECURITY, v)),
            );
            respond::send_fixed(session, fixed, &ctx.request_id, &extra).await?;
            return Ok(true);
        }
        Ok(false)
    }

    async fn upstream_peer(
        &self,
        session: &mut Session,
        ctx: &mut Box<RequestCtx>,
    ) -> Result<Box<HttpPeer>> {
        let Some(pool) = proxied_pool(ctx).cloned() else {
            return Error::e_explain(
                ErrorType::InternalError,
                "upstream_peer without a proxy route",
            );
        };
        let req = session.req_header();
        let path = ctx.upstream_uri.as_ref().unwrap_or(&req.uri).path();
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
        ctx.upstream.target = Some(index);
        ctx.upstream.attempts += 1;
        ctx.upstream.selected_at = Some(Instant::now());
        Ok(pool.peer(index))
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut Box<RequestCtx>,
        mut e: Box<Error>,
    ) -> Box<Error> {
        if let (Some(pool), Some(index)) = (proxied_pool(ctx).cloned(), ctx.upstream.target) {
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
        if let (Some(pool), Some(index)) = (proxied_pool(ctx), ctx.upstream.target) {
            pool.report_connect_success(index);
        }
        Ok(())
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut Box<RequestCtx>,
    ) -> Result<()> {
        let host = decide::host_of(session.req_header());
        let pool = proxied_pool(ctx);
        let forwarded = pool.is_some_and(|p| p.forwarded_header);
        if pool.is_some_and(|p| p.preserve_header_case) {
            edit_upstream_request(upstream_request, ctx, host, forwarded);
        } else {
            forward::edit_request_without_case(upstream_request, |h| {
                edit_upstream_request(h, ctx, host, forwarded)
            });
        }
        // Cloned, not taken: Pingora calls this filter again when it retries the request.
        if let Some(uri) = &ctx.upstream_uri {
            upstream_request.set_uri(uri.clone());
        }
        let strip_query = ctx.route.as_ref().and_then(|r| r.auth.as_ref());
        let names = strip_query.map(|a| &a.authorizer.strip_query[..]);
        if let Some(names) = names.filter(|n| !n.is_empty()) {
            let stripped = upstream_request
                .uri
                .path_and_query()
                .and_then(|pq| forward::strip_query_params(pq.as_str(), names));
            if let Some(uri) = stripped.and_then(|s| http::Uri::try_from(s).ok()) {
                upstream_request.set_uri(uri);
            }
        }
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut Box<RequestCtx>,
    ) -> Result<()> {
        if !upstream_response.status.is_informational() {
            ctx.upstream.header_at = Some(Instant::now());
        }
        let status = upstream_response.status;
        if proxied_pool(ctx).is_some_and(|p| p.preserve_header_case) {
            edit_response(upstream_response, ctx, status);
        } else {
            forward::edit_response_without_case(upstream_response, |h| {
                edit_response(h, ctx, status)
            });
        }
        Ok(())
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut Box<RequestCtx>,
    ) -> FailToProxy {
        let (status, message) = respond::status_for_error(e);
        let message = ctx.error.unwrap_or(message);
        if ctx.error.is_none() && status != 0 {
            ctx.error = Some(message);
        }
        if status != 0 && session.response_written().is_none() {
            session.set_keepalive(None);
            if let Err(write_err) = refuse(session, ctx, status, message, &[]).await {
                tracing::debug!(error = %write_err, "cannot send error response");
            }
        }
        FailToProxy {
            error_code: status,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut Box<RequestCtx>) {
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
        let pool = proxied_pool(ctx);
        let upstream_elapsed = match (ctx.upstream.selected_at, ctx.upstream.header_at) {
            (Some(a), Some(b)) => Some(b.duration_since(a)),
            _ => None,
        };
        if let (Some(pool), Some(d)) = (pool, upstream_elapsed) {
            pool.metrics.observe(d);
        }
        let Some(log) = self.access_log.as_ref().filter(|_| ctx.snapshot.access_log) else {
            return;
        };
        let host = decide::host_of(req).unwrap_or("");
        let target = pool
            .zip(ctx.upstream.target)
            .map(|(p, i)| p.targets[i].label.as_str());
        log.log(&AccessEntry {
            time: wall,
            request_id: ctx.request_id.to_str().unwrap_or(""),
            client_ip: ctx.client_ip,
            method: req.method.as_str(),
            host,
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
            auth: ctx.auth,
            error: ctx.error,
        });
    }
}
