//! The steps of `request_filter`, in the order they run. Each reads the request header and
//! the context, records what later phases need in the context, and returns the [`Refusal`]
//! that stops the request, if any; `request_filter` writes it.

use super::decide::{self, Host};
use super::refusal::{Refusal, Stop};
use super::{request_id, RequestCtx};
use crate::auth::{self, RouteAuth};
use crate::cors::{self, CorsPolicy, Preflight};
use crate::edge::settings::IpRules;
use crate::edge::{client_ip, path, Reason};
use crate::firewall::{BodyKind, Firewall, ManagedInput, RuleInput};
use crate::limit::{self, LimitInput};
use crate::observe::trace::RequestTrace;
use crate::snapshot::Route;
use crate::tls::policy;
use bytes::{Bytes, BytesMut};
use pingora::http::RequestHeader;
use pingora::proxy::Session;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

/// The key authorization for an ACME HTTP-01 validation, answered before any other step:
/// the CA's request carries no credentials, and the host may not be routed yet.
pub fn acme_challenge(
    req: &pingora::http::RequestHeader,
    acme: &crate::tls::acme::AcmeState,
) -> Option<std::sync::Arc<str>> {
    let path = req.uri.path();
    if !path.starts_with(crate::tls::acme::HTTP01_PREFIX)
        || !matches!(req.method, http::Method::GET | http::Method::HEAD)
    {
        return None;
    }
    acme.http01(path)
}

/// The request id, the client address and the connection's TLS facts, which every later step
/// and the access log read. Cannot refuse: a refusal needs the request id.
pub fn identify(session: &Session, ctx: &mut RequestCtx) {
    let req = session.req_header();
    ctx.request_id = request_id::for_request(req.headers.get(&request_id::HEADER));
    // The TCP peer, or the client a PROXY protocol header named (`proxy::conn`).
    let peer = session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip().to_canonical());
    ctx.peer_ip = peer;
    let edge = &ctx.snapshot.edge;
    ctx.client_ip = match peer {
        Some(peer) if !edge.trusted_proxies.is_empty() => Some(client_ip::resolve(
            peer,
            &edge.trusted_proxies,
            edge.client_ip_header,
            &req.headers,
        )),
        peer => peer,
    };
    ctx.ssl = session.digest().and_then(|d| d.ssl_digest.clone());
}

/// Continue the client's trace or start one, when the snapshot traces requests.
pub fn start_trace(req: &RequestHeader, ctx: &mut RequestCtx) {
    if let Some(sampling) = &ctx.snapshot.tracing {
        let trace = RequestTrace::start(sampling, &req.headers, SystemTime::now);
        ctx.trace = Some(Box::new(trace));
    }
}

/// The listener's IP lists (`[edge]`, `[listeners.edge]`) on the client address. For HTTP/2,
/// whose heads `proxy::conn` does not see, also the listener's head limits.
pub fn check_client(
    req: &RequestHeader,
    local: Option<SocketAddr>,
    ctx: &mut RequestCtx,
) -> Result<(), Refusal> {
    let listener = ctx.snapshot.edge.listener(local);
    if req.version == http::Version::HTTP_2 {
        let limits = &listener.limits;
        let target = req.uri.path_and_query().map_or(0, |p| p.as_str().len());
        if target > limits.max_uri_bytes {
            return Err(edge_refusal(Reason::UriTooLong, ctx));
        }
        if req.headers.len() > limits.max_headers {
            return Err(edge_refusal(Reason::TooManyHeaders, ctx));
        }
    }
    permit(&listener.ips, ctx)
}

/// Refuse the client when `rules` do not let it pass.
fn permit(rules: &IpRules, ctx: &RequestCtx) -> Result<(), Refusal> {
    match ctx.client_ip {
        Some(ip) if !rules.permits(ip) => Err(edge_refusal(Reason::IpDenied, ctx)),
        _ => Ok(()),
    }
}

/// An edge refusal, counted in `gatehouse_edge_refusals_total`.
pub fn edge_refusal(reason: Reason, ctx: &RequestCtx) -> Refusal {
    ctx.snapshot.edge_refusals.count(reason);
    Refusal::new(reason.status(), reason.message())
}

/// The host, checked once and kept in `ctx.host`: host policies, routes, authorizers,
/// forwarding headers and the access log all read the same one. Then the host's policy, which
/// applies even to requests that match no route: HTTPS redirect, Host/SNI agreement, client
/// certificate. From here on, every answer over TLS carries the policy's HSTS, this step's
/// own refusals included.
pub fn check_host(req: &RequestHeader, ctx: &mut RequestCtx) -> Result<(), Refusal> {
    ctx.host = decide::request_host(req)?;
    let Some(host) = &ctx.host else {
        return Ok(());
    };
    let Some(policy) = ctx.snapshot.hosts.lookup(host.as_str()) else {
        return Ok(());
    };
    if !policy.ips.is_empty() {
        permit(&policy.ips, ctx)?;
    }
    // Never over plain HTTP (RFC 6797 7.2), where anyone on the path could add or strip it.
    if ctx.ssl.is_some() {
        ctx.hsts.clone_from(&policy.hsts);
    }
    let target = req.uri.path_and_query().map_or("/", |p| p.as_str());
    let verdict = policy::check(policy, ctx.tls(), host.as_str(), target);
    Refusal::from_verdict(verdict).map_or(Ok(()), Err)
}

/// The request's framing and target, then its route; records the route and the upstream
/// target in `ctx` and returns the route for the remaining steps.
pub fn route(req: &RequestHeader, ctx: &mut RequestCtx) -> Result<Arc<Route>, Refusal> {
    let host = ctx.host.as_ref().map(Host::as_str);
    let routed = match decide::route_request(&ctx.snapshot, req, host) {
        Ok(routed) => routed,
        // A CORS preflight for a route with a policy is the gateway's to answer, whichever
        // methods the route serves.
        Err(decide::Rejection::MethodNotAllowed { route, .. })
            if route.0.cors.is_some() && cors::is_preflight(&req.method, &req.headers) =>
        {
            decide::Routed {
                route: route.0,
                upstream_uri: None,
            }
        }
        Err(rejection) => {
            // A wrong method is counted (metrics, access log) under the route whose path it
            // asked for, not with the requests that matched nothing.
            if let decide::Rejection::MethodNotAllowed { route, .. } = &rejection {
                ctx.route = Some(route.0.clone());
            }
            return Err(rejection.into());
        }
    };
    ctx.upstream_uri = routed.upstream_uri.map(Box::new);
    ctx.route = Some(routed.route.clone());
    let edge = &routed.route.edge;
    // The spelling is judged by the route its normalized form selected: only that route's
    // upstream is known to read it the way the gateway routed it.
    if let Err(reason) = path::check(decide::raw_path(req), edge.path_allow) {
        return Err(edge_refusal(reason, ctx));
    }
    if !edge.ips.is_empty() {
        permit(&edge.ips, ctx)?;
    }
    if decide::declared_length(req).is_some_and(|n| n > edge.max_body_bytes) {
        return Err(edge_refusal(Reason::BodyTooLarge, ctx));
    }
    ctx.body_limit = edge.max_body_bytes;
    Ok(routed.route)
}

/// A CORS preflight under `policy`: the gateway's answer, which ends the request (the upstream
/// never sees a preflight). Other requests go on.
pub fn preflight(req: &RequestHeader, policy: &CorsPolicy) -> Result<(), Stop> {
    if !cors::is_preflight(&req.method, &req.headers) {
        return Ok(());
    }
    match policy.preflight(&req.headers) {
        Preflight::Allowed(headers) => Err(Stop::Preflight(headers)),
        Preflight::Refused(reason) => Err(Stop::Refuse(Refusal::new(403, reason))),
    }
}

/// Count the request against `policies`. A refusal's `RateLimit` headers replace those of the
/// policies that allowed it, so a 429 never reports quota left.
pub async fn throttle(
    req: &RequestHeader,
    ctx: &mut RequestCtx,
    policies: &[Arc<limit::Policy>],
    route: &str,
) -> Result<(), Refusal> {
    if policies.is_empty() {
        return Ok(());
    }
    let input = LimitInput {
        route,
        client_ip: ctx.client_ip,
        consumer: ctx.identity.as_ref().and_then(|i| i.consumer.as_deref()),
        headers: &req.headers,
    };
    let now = crate::clock::unix_nanos();
    let Err(rejected) = limit::check(policies, &input, now, &mut ctx.limit).await else {
        return Ok(());
    };
    let refusal = Refusal::from(&*rejected);
    ctx.limit.report = rejected.report;
    Err(refusal)
}

/// Run the route's authorizer; records the identity (and the decision for the access log).
pub async fn authenticate(
    req: &RequestHeader,
    ctx: &mut RequestCtx,
    auth: &RouteAuth,
    route: &str,
) -> Result<(), Refusal> {
    let info = auth::RequestInfo {
        route,
        host: ctx.host.as_ref().map_or("", Host::as_str),
        request_id: &ctx.request_id,
    };
    match auth::authenticate(auth, req, &info).await {
        Ok(identity) => {
            ctx.auth = Some(auth::Reason::Allowed);
            ctx.identity = Some(identity);
            Ok(())
        }
        Err(rejected) => {
            ctx.auth = Some(rejected.reason);
            Err(Refusal::from(rejected))
        }
    }
}

/// The bans of the snapshot, when they are enforced and some ban is in force.
fn enforced_bans(ctx: &RequestCtx) -> Option<&crate::firewall::BanPolicy> {
    let bans = ctx.snapshot.bans()?;
    (bans.enforce && !bans.table.is_empty()).then_some(bans)
}

/// Refuse a client address that is banned.
pub fn check_ban(ctx: &mut RequestCtx) -> Result<(), Refusal> {
    refuse_banned(ctx, "ban:ip", |bans, ctx, now| {
        bans.ip_banned(ctx.client_ip?, now)
    })
}

/// Refuse a consumer that is banned (once the authorizer named it).
pub fn check_consumer_ban(ctx: &mut RequestCtx) -> Result<(), Refusal> {
    refuse_banned(ctx, "ban:consumer", |bans, ctx, now| {
        let consumer = ctx.identity.as_ref()?.consumer.as_deref()?;
        bans.consumer_banned(consumer, now)
    })
}

/// The ban refusal when `banned` finds a ban in force (its seconds left); `note` is what the
/// access log shows.
fn refuse_banned(
    ctx: &mut RequestCtx,
    note: &'static str,
    banned: impl FnOnce(&crate::firewall::BanPolicy, &RequestCtx, u64) -> Option<u64>,
) -> Result<(), Refusal> {
    let Some(bans) = enforced_bans(ctx) else {
        return Ok(());
    };
    let Some(secs) = banned(bans, ctx, crate::clock::now_millis()) else {
        return Ok(());
    };
    let refusal = Refusal::banned(bans.status, secs);
    ctx.banned = true;
    ctx.firewall = Some(Arc::new(note.to_string()));
    Err(refusal)
}

/// The route's firewall rules and managed protections, before authentication. A body the
/// firewall needs is read first when it is small enough for Pingora to replay it upstream.
pub async fn inspect(
    session: &mut Session,
    ctx: &mut RequestCtx,
    route: &Route,
) -> Result<(), Refusal> {
    let plan = &route.firewall;
    if plan.is_empty() {
        return Ok(());
    }
    let snapshot = ctx.snapshot.clone();
    let Some(fw) = snapshot.firewall.as_deref() else {
        return Ok(());
    };
    let body = if plan.needs_body() {
        read_body(session, ctx, fw, route).await?
    } else {
        None
    };
    let req = session.req_header();
    let body_kind = BodyKind::of(&req.headers);
    // Built only for rules that read fields; the managed detectors scan the body's strings
    // without it.
    let json = match (body_kind, &body) {
        (BodyKind::Json, Some(b)) if plan.needs_json() => {
            serde_json::from_slice::<serde_json::Value>(b).ok()
        }
        _ => None,
    };
    let raw = req.raw_path();
    let (raw_path, query) = match memchr::memchr(b'?', raw) {
        Some(i) => (&raw[..i], Some(&raw[i + 1..])),
        None => (raw, None),
    };
    let path =
        crate::urlpath::normalize_path(raw_path).unwrap_or(std::borrow::Cow::Borrowed(raw_path));
    let inspected = body
        .as_deref()
        .map(|b| &b[..b.len().min(fw.body_inspect_bytes)]);
    // Rules name hosts as routes do: case-insensitive, without port or trailing dot.
    let host = ctx.host.as_ref().map(|h| crate::host::host_key(h.as_str()));
    let input = RuleInput {
        method: &req.method,
        path: &path,
        query,
        headers: &req.headers,
        client_ip: ctx.client_ip,
        host: host.as_deref(),
        body: inspected,
        json: json.as_ref(),
    };
    let managed = ManagedInput {
        raw_path,
        body_kind,
    };
    let outcome = fw.inspect(plan, &input, &managed, crate::clock::unix_nanos());
    ctx.firewall_hit |= outcome.hit;
    if outcome.note.is_some() {
        ctx.firewall = outcome.note;
    }
    Refusal::from_firewall(&outcome.verdict).map_or(Ok(()), Err)
}

/// The body, when the request has one and it can be read before the request goes on; Pingora
/// keeps what was read and sends it upstream first.
async fn read_body(
    session: &mut Session,
    ctx: &mut RequestCtx,
    fw: &Firewall,
    route: &Route,
) -> Result<Option<Bytes>, Refusal> {
    let Some(BodyFraming {
        declared,
        unknown_length,
        expects_continue,
    }) = body_framing(session)
    else {
        return Ok(None);
    };
    if unknown_length || !Firewall::reads_body(declared) {
        ctx.firewall = Some(fw.oversize_body());
        if fw.deny_oversize {
            return Err(Refusal::new(
                413,
                "request body too large for the firewall to inspect",
            ));
        }
        return Ok(None);
    }
    read_whole_body(session, ctx, route, expects_continue, declared, u64::MAX)
        .await
        .map(Some)
}

/// How a request's body comes.
struct BodyFraming {
    /// `Content-Length`.
    declared: Option<u64>,
    /// Chunked, or HTTP/2 without a length.
    unknown_length: bool,
    /// The client waits for `100 Continue` before it sends the body.
    expects_continue: bool,
}

/// How the request's body comes; `None` when it has none.
fn body_framing(session: &mut Session) -> Option<BodyFraming> {
    let req = session.req_header();
    let h2 = req.version == http::Version::HTTP_2;
    let chunked = req.headers.contains_key(http::header::TRANSFER_ENCODING);
    let declared = decide::declared_length(req);
    let expects_continue = req.version == http::Version::HTTP_11
        && req
            .headers
            .get(http::header::EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    // An HTTP/2 request without Content-Length has a body unless its headers ended the stream.
    let unknown_length = chunked || (h2 && declared.is_none() && !session.is_body_empty());
    let has_body = unknown_length || declared.unwrap_or(0) > 0;
    has_body.then_some(BodyFraming {
        declared,
        unknown_length,
        expects_continue,
    })
}

/// Read the whole body now, before the upstream is chosen; Pingora keeps it (up to 64 KiB)
/// and sends it upstream first. More than `limit` bytes is a 413.
async fn read_whole_body(
    session: &mut Session,
    ctx: &mut RequestCtx,
    route: &Route,
    expects_continue: bool,
    declared: Option<u64>,
    limit: u64,
) -> Result<Bytes, Refusal> {
    if expects_continue && session.write_continue_response().await.is_err() {
        return Err(Refusal::new(400, "request body could not be read"));
    }
    ctx.body_read_early = true;
    session.enable_retry_buffering();
    session.set_read_timeout(Some(route.edge.body_timeout));
    let mut body = BytesMut::with_capacity(declared.unwrap_or(0).min(limit) as usize);
    loop {
        match session.read_request_body().await {
            Ok(Some(chunk)) => {
                if (body.len() + chunk.len()) as u64 > limit {
                    return Err(edge_refusal(Reason::BodyTooLarge, ctx));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => break,
            Err(e) if matches!(e.etype(), pingora::ErrorType::ReadTimedout) => {
                return Err(edge_refusal(Reason::BodyTimeout, ctx));
            }
            Err(_) => return Err(Refusal::new(400, "request body could not be read")),
        }
    }
    Ok(body.freeze())
}

/// The request against its API operation's contract (parameters, content type, JSON body),
/// after authentication so that only callers who may use the operation learn its schema. A
/// body is read whole first, up to the operation's bound. `report` mode only counts and logs.
pub async fn check_contract(
    session: &mut Session,
    ctx: &mut RequestCtx,
    route: &Route,
    op: &crate::contract::Operation,
) -> Result<(), Stop> {
    let mut problems = contract_parameters(op, session.req_header());
    let mut status = 400;
    if op.body.is_some() && problems.is_empty() {
        let body = request_body(session, ctx, route, op.max_body_bytes).await?;
        let req = session.req_header();
        let content_type = req
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        if let Err(refused) = crate::contract::check::body(op, content_type, body.as_deref()) {
            status = refused.status;
            problems = refused.problems;
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    ctx.snapshot.contract_violations.request(op);
    if op.validate == crate::config::ValidateMode::Report {
        tracing::warn!(
            api = %op.api,
            operation = %op.id,
            request_id = ?ctx.request_id,
            problems = %serde_json::to_string(&problems).unwrap_or_default(),
            "request does not match the API contract (report mode: forwarded)"
        );
        return Ok(());
    }
    Err(Stop::Invalid(Box::new(crate::contract::Refused {
        status,
        problems,
    })))
}

/// The problems of the request's parameters under `op`, on the path as it was routed
/// (normalized). `explain` shows the same.
pub fn contract_parameters(
    op: &crate::contract::Operation,
    req: &RequestHeader,
) -> Vec<crate::contract::Problem> {
    let raw = req.uri.path().as_bytes();
    let path = crate::urlpath::normalize_path(raw);
    let query = req.uri.query().map(str::as_bytes);
    let mut problems = Vec::new();
    let path = path.as_deref().unwrap_or(raw);
    crate::contract::check::parameters(op, path, query, &req.headers, &mut problems);
    problems
}

/// The body for a contract check: what the firewall already read, or read now up to `limit`.
pub async fn request_body(
    session: &mut Session,
    ctx: &mut RequestCtx,
    route: &Route,
    limit: u64,
) -> Result<Option<Bytes>, Refusal> {
    if ctx.body_read_early {
        // The firewall read it, under its own bound: this operation's may be smaller.
        let body = session.get_retry_buffer();
        if body.as_ref().is_some_and(|b| b.len() as u64 > limit) {
            return Err(edge_refusal(Reason::BodyTooLarge, ctx));
        }
        return Ok(body);
    }
    let Some(framing) = body_framing(session) else {
        return Ok(None);
    };
    let declared = framing.declared;
    if declared.is_some_and(|n| n > limit) {
        return Err(edge_refusal(Reason::BodyTooLarge, ctx));
    }
    let limit = limit.min(route.edge.max_body_bytes);
    read_whole_body(
        session,
        ctx,
        route,
        framing.expects_continue,
        declared,
        limit,
    )
    .await
    .map(Some)
}
