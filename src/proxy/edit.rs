//! The gateway's edits of a proxied request on its way upstream and of the upstream's response
//! on its way back. The header work itself is `forward`'s; this module decides what applies
//! to the request from its context.

use super::{forward, request_id, RequestCtx};
use crate::observe::trace::{RequestTrace, TRACEPARENT, TRACESTATE};
use http::header::{self, HeaderValue};
use pingora::http::{RequestHeader, ResponseHeader};

/// Everything the upstream request gets from the gateway: headers (see [`request_headers`]),
/// the route's target, and the authorizer's credential query parameters removed.
pub fn upstream_request(upstream_request: &mut RequestHeader, ctx: &RequestCtx) {
    let pool = ctx.pool();
    let forwarded = pool.is_some_and(|p| p.forwarded_header);
    if pool.is_some_and(|p| p.preserve_header_case) {
        request_headers(upstream_request, ctx, forwarded);
    } else {
        forward::edit_request_without_case(upstream_request, |h| {
            request_headers(h, ctx, forwarded)
        });
    }
    // The gateway read the body itself (the firewall) and already told the client to go on:
    // the upstream gets the whole body at once and has nothing to confirm.
    if ctx.body_read_early {
        upstream_request.remove_header(&header::EXPECT);
    }
    // A held response is checked as it is: an encoded one could not be.
    if ctx.route.as_ref().is_some_and(|r| r.holds_responses()) {
        upstream_request.remove_header(&header::ACCEPT_ENCODING);
    }
    // Cloned, not taken: Pingora calls this filter again when it retries the request.
    if let Some(uri) = &ctx.upstream_uri {
        upstream_request.set_uri(http::Uri::clone(uri));
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
}

/// The upstream request's headers: hop-by-hop headers out, forwarding headers in, identity
/// headers replaced.
fn request_headers(headers: &mut impl forward::EditHeaders, ctx: &RequestCtx, forwarded: bool) {
    let upgrade = forward::is_upgrade(headers.map());
    forward::remove_hop_by_hop(headers, upgrade);
    // The route's own edits after the hop-by-hop removal (a client naming a header in
    // `Connection` cannot take away one the route sets) and before everything the gateway
    // sets below, which wins over them.
    if let Some(transform) = ctx.route.as_ref().and_then(|r| r.request_headers.as_ref()) {
        transform.apply(headers);
    }
    let info = forward::ForwardInfo {
        client_ip: ctx.client_ip,
        peer_ip: ctx.peer_ip,
        proto: if ctx.ssl.is_some() { "https" } else { "http" },
        host: ctx.host.as_ref().map(|h| h.as_str()),
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
    if let Some(trace) = &ctx.trace {
        trace_context(headers, trace);
    }
}

/// The request's trace context in place of the client's (`traceparent` is always replaced;
/// a client's `tracestate` goes on only when the trace continued from it).
fn trace_context(headers: &mut impl forward::EditHeaders, trace: &RequestTrace) {
    let (parent, state) = trace.upstream_headers();
    if headers.map().contains_key(&TRACESTATE) {
        headers.remove(&TRACESTATE);
    }
    headers.set(&TRACEPARENT, parent);
    if let Some(state) = state {
        headers.set(&TRACESTATE, state);
    }
}

/// The upstream response's edits: hop-by-hop headers out; request id, HSTS and `RateLimit`
/// headers in, as on the gateway's own answers (`refusal::response`).
pub fn upstream_response(
    upstream_response: &mut ResponseHeader,
    ctx: &RequestCtx,
    origin: Option<&HeaderValue>,
) {
    let status = upstream_response.status;
    if ctx.pool().is_some_and(|p| p.preserve_header_case) {
        response_headers(upstream_response, ctx, status, origin);
    } else {
        forward::edit_response_without_case(upstream_response, |h| {
            response_headers(h, ctx, status, origin)
        });
    }
}

fn response_headers(
    headers: &mut impl forward::EditHeaders,
    ctx: &RequestCtx,
    status: http::StatusCode,
    origin: Option<&HeaderValue>,
) {
    let switching = status == http::StatusCode::SWITCHING_PROTOCOLS;
    forward::remove_hop_by_hop(headers, switching);
    // What the targets must not tell clients, then the route's edits; the gateway's own
    // headers below win over both.
    if let Some(pool) = ctx.pool() {
        for name in &pool.hide_headers {
            if headers.map().contains_key(name) {
                headers.remove(name);
            }
        }
    }
    if let Some(transform) = ctx.route.as_ref().and_then(|r| r.response_headers.as_ref()) {
        transform.apply(headers);
    }
    headers.set(&request_id::HEADER, ctx.request_id.clone());
    if let Some(hsts) = &ctx.hsts {
        headers.set(&header::STRICT_TRANSPORT_SECURITY, hsts.clone());
    }
    if let Some(report) = &ctx.limit.report {
        for (name, value) in report.headers() {
            headers.set(&name, value);
        }
    }
    if let Some(policy) = ctx.route.as_ref().and_then(|r| r.cors.as_ref()) {
        cors_headers(headers, policy, origin);
    }
}

/// The route's CORS headers in place of the upstream's: the gateway decides which origins may
/// read the answer. `Vary` is added to the upstream's.
fn cors_headers(
    headers: &mut impl forward::EditHeaders,
    policy: &crate::cors::CorsPolicy,
    origin: Option<&HeaderValue>,
) {
    // One pass over the names instead of a lookup per CORS header: upstreams rarely set any.
    let upstream_cors = (headers.map().keys()).any(|k| k.as_str().starts_with("access-control-"));
    if upstream_cors {
        for name in crate::cors::upstream_headers() {
            if headers.map().contains_key(name) {
                headers.remove(name);
            }
        }
    }
    for (name, value) in policy.response_headers(origin) {
        if name == header::VARY {
            headers.append(&name, value);
        } else {
            headers.set(&name, value);
        }
    }
}
