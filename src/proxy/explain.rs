//! `gatehouse explain` and `POST /-/explain`: what the gateway would do with a request, step by
//! step in the order `request_filter` runs, decided by the same functions the proxy calls
//! (host policy, routing, path spelling, IP lists, body size) on a snapshot. Nothing is sent
//! upstream and nothing is counted: no limiter, ban or metric is touched, and credentials are
//! not verified (that needs keys and clocks of the moment), only named.

use super::decide::{self, Rejection};
use crate::config::{Config, ListenerConfig, RouteConfig, ValidateMode};
use crate::edge::path;
use crate::edge::settings::IpRules;
use crate::snapshot::{RouteAction, Snapshot};
use crate::tls::accept::TlsInfo;
use crate::tls::policy::{self, HostPolicy, Verdict};
use http::{HeaderName, HeaderValue, Method};
use pingora::http::RequestHeader;
use serde_json::{json, Value};
use std::net::IpAddr;

/// The request to explain.
pub struct Question<'a> {
    /// The listeners the process has: those it started with (listeners change only on
    /// restart, so a reloaded config's list may name some that do not exist yet).
    pub listeners: &'a [ListenerConfig],
    pub method: &'a str,
    /// Absolute `http://` or `https://` URL: the scheme and port choose the listener.
    pub url: &'a str,
    pub headers: &'a [(String, String)],
    /// The client address, for IP lists; unknown when `None` (those checks are skipped).
    pub client_ip: Option<IpAddr>,
}

/// The steps and the outcome, as JSON: `{"steps": [...], "outcome": {...}}`. `Err` when the
/// question itself is malformed.
pub fn explain(snapshot: &Snapshot, config: &Config, q: &Question<'_>) -> Result<Value, String> {
    let uri: http::Uri = q.url.parse().map_err(|e| format!("url: {e}"))?;
    let tls = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err("url: give an absolute http:// or https:// URL".into()),
    };
    let authority = uri.authority().ok_or("url: no host")?.clone();
    let port = authority.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let method = Method::from_bytes(q.method.as_bytes()).map_err(|_| "method: not a method")?;
    let target = uri.path_and_query().map_or("/", |p| p.as_str());
    let mut req = RequestHeader::build(method, target.as_bytes(), None)
        .map_err(|e| format!("request: {e}"))?;
    let mut has_host = false;
    for (name, value) in q.headers {
        let name = HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|_| format!("header {name:?}: not a header name"))?;
        let value = HeaderValue::from_str(value.trim())
            .map_err(|_| format!("header {name}: not a header value"))?;
        has_host |= name == http::header::HOST;
        req.append_header(name, value)
            .map_err(|e| format!("header: {e}"))?;
    }
    if !has_host {
        let host = HeaderValue::from_str(authority.as_str()).map_err(|_| "url: bad host")?;
        req.insert_header(http::header::HOST, host)
            .map_err(|e| format!("header: {e}"))?;
    }
    let mut steps = Steps::default();
    let outcome = walk(snapshot, config, q, &req, tls, port, &mut steps);
    Ok(json!({ "steps": steps.0, "outcome": outcome }))
}

#[derive(Default)]
struct Steps(Vec<Value>);

impl Steps {
    fn add(&mut self, step: &str, detail: Value) {
        let mut v = json!({ "step": step });
        if let (Value::Object(o), Value::Object(d)) = (&mut v, detail) {
            o.extend(d);
        }
        self.0.push(v);
    }
}

/// A refusal as the client would see it.
fn refused(status: u16, reason: &str) -> Value {
    json!({ "result": "refused", "status": status, "reason": reason })
}

/// Each step records what applies; the first refusal ends the walk.
fn walk(
    snapshot: &Snapshot,
    config: &Config,
    q: &Question<'_>,
    req: &RequestHeader,
    tls: bool,
    port: u16,
    steps: &mut Steps,
) -> Value {
    let Some((index, listener)) = listener_for(q.listeners, tls, port) else {
        let scheme = if tls { "https" } else { "http" };
        steps.add(
            "listener",
            json!({ "found": false, "port": port, "tls": tls }),
        );
        return json!({
            "result": "no listener",
            "reason": format!("no {scheme} listener on port {port}: the connection is refused"),
        });
    };
    steps.add(
        "listener",
        json!({ "index": index, "address": listener.address.to_string(), "tls": tls }),
    );
    // IP lists are judged only when the question names the client.
    let denied = |rules: &IpRules| q.client_ip.is_some_and(|ip| !rules.permits(ip));
    let ip = q.client_ip.map(|ip| ip.to_string());
    if denied(&snapshot.edge.listener(Some(listener.address)).ips) {
        steps.add("client", json!({ "ip": ip, "allowed": false }));
        return refused(403, "the listener's IP list refuses this client");
    }
    steps.add(
        "client",
        json!({ "ip": ip, "allowed": q.client_ip.map(|_| true) }),
    );

    let host = match decide::request_host(req) {
        Ok(h) => h,
        Err(rejection) => return rejection_outcome(steps, "host", rejection),
    };
    let host_str = host.as_ref().map(decide::Host::as_str);
    let policy = host_str.and_then(|h| snapshot.hosts.lookup(h));
    let mut host_step = json!({ "host": host_str, "policy": policy.is_some() });
    let stop = match (policy, host_str) {
        (Some(policy), Some(_)) if denied(&policy.ips) => {
            Some(refused(403, "the host's IP list refuses this client"))
        }
        (Some(policy), Some(h)) => {
            host_step["hsts"] = json!(tls && policy.hsts.is_some());
            host_step["client_certificate_required"] = json!(policy.client_cert_required);
            host_policy_stop(policy, req, h, tls)
        }
        _ => None,
    };
    steps.add("host", host_step);
    if let Some(outcome) = stop {
        return outcome;
    }

    let preflight = crate::cors::is_preflight(&req.method, &req.headers);
    let routed = match decide::route_request(snapshot, req, host_str) {
        Ok(routed) => routed,
        // As the proxy does: a CORS route answers preflights whichever methods it serves.
        Err(Rejection::MethodNotAllowed { route, .. }) if preflight && route.0.cors.is_some() => {
            decide::Routed {
                route: route.0,
                upstream_uri: None,
            }
        }
        Err(rejection) => return rejection_outcome(steps, "route", rejection),
    };
    let route = &routed.route;
    let route_config = config.routes.iter().find(|r| r.name == route.name);
    let upstream_path = routed
        .upstream_uri
        .as_ref()
        .map_or(req.uri.path_and_query().map_or("/", |p| p.as_str()), |u| {
            u.path_and_query().map_or("/", |p| p.as_str())
        });
    steps.add(
        "route",
        json!({ "name": route.name, "upstream_path": upstream_path }),
    );
    if let Err(reason) = path::check(decide::raw_path(req), route.edge.path_allow) {
        steps.add("path", json!({ "allowed": false }));
        return refused(reason.status(), reason.message());
    }
    if denied(&route.edge.ips) {
        steps.add("route_ips", json!({ "allowed": false }));
        return refused(403, "the route's IP list refuses this client");
    }
    if decide::declared_length(req).is_some_and(|n| n > route.edge.max_body_bytes) {
        steps.add(
            "body",
            json!({ "max_body_bytes": route.edge.max_body_bytes }),
        );
        return refused(413, "request body too large");
    }
    let names = |p: &[std::sync::Arc<crate::limit::Policy>]| -> Vec<String> {
        p.iter().map(|p| p.name.clone()).collect()
    };
    steps.add(
        "firewall",
        json!({
            "inspected": !route.firewall.is_empty(),
            "managed": managed_on(config, route_config),
            "note": "rules and protections run on the request when it is sent, not here",
        }),
    );
    if let (Some(policy), true) = (&route.cors, preflight) {
        return match policy.preflight(&req.headers) {
            crate::cors::Preflight::Allowed(headers) => {
                let grant: serde_json::Map<String, Value> = headers
                    .iter()
                    .map(|(k, v)| (k.to_string(), json!(v.to_str().unwrap_or(""))))
                    .collect();
                steps.add("cors", json!({ "preflight": "allowed", "headers": grant }));
                json!({ "result": "answered by the gateway", "status": 204, "route": route.name })
            }
            crate::cors::Preflight::Refused(reason) => {
                steps.add("cors", json!({ "preflight": "refused" }));
                refused(403, reason)
            }
        };
    }
    steps.add(
        "limits",
        json!({
            "before_auth": names(&route.limits_before_auth),
            "after_auth": names(&route.limits),
            "note": "counted when the request is sent, not here",
        }),
    );
    // An API operation's route is not in `[[routes]]`: its auth comes from the document.
    let operation = route.operation.as_deref();
    let auth = route_config
        .and_then(|r| r.auth.as_ref())
        .or(operation.and_then(|o| o.auth.as_ref()));
    if let Some(auth) = auth {
        steps.add(
            "auth",
            json!({
                "authorizer": auth.authorizer,
                "scopes": auth.scopes,
                "note": "credentials are verified when the request is sent, not here",
            }),
        );
    } else {
        steps.add("auth", json!({ "authorizer": null }));
    }
    if let Some(op) = operation {
        let problems = if op.validate == ValidateMode::Off {
            Vec::new()
        } else {
            super::steps::contract_parameters(op, req)
        };
        steps.add(
            "contract",
            json!({
                "api": op.api,
                "operation": op.id,
                "validate": op.validate.label(),
                "validate_responses": op.validate_responses.label(),
                "problems": problems,
                "note": "a body is checked when the request is sent, not here",
            }),
        );
        if !problems.is_empty() && op.validate == ValidateMode::Enforce {
            return refused(400, super::respond::CONTRACT_MESSAGE);
        }
    }
    match &route.action {
        RouteAction::Respond(_) => json!({
            "result": "answered by the gateway",
            "route": route.name,
        }),
        RouteAction::Proxy { pool, .. } => {
            let targets: Vec<Value> = pool
                .targets
                .iter()
                .map(|t| json!({ "target": t.label, "healthy": t.state.is_healthy() }))
                .collect();
            let healthy = pool.targets.iter().any(|t| t.state.is_healthy());
            steps.add("upstream", json!({ "pool": pool.name, "targets": targets }));
            if healthy {
                json!({
                    "result": "proxied",
                    "route": route.name,
                    "upstream": pool.name,
                    "upstream_path": upstream_path,
                })
            } else {
                refused(503, "no healthy upstream target")
            }
        }
    }
}

/// The outcome when `policy` (HTTPS redirect, Host/SNI agreement, client certificate) stops
/// the request; the TLS connection is taken to name `host` and to carry no certificate.
fn host_policy_stop(
    policy: &HostPolicy,
    req: &RequestHeader,
    host: &str,
    tls: bool,
) -> Option<Value> {
    let info = TlsInfo {
        sni: Some(crate::host::host_key(host).into_owned()),
        client_cert: None,
    };
    let target = req.uri.path_and_query().map_or("/", |p| p.as_str());
    match policy::check(policy, tls.then_some(&info), host, target) {
        Verdict::Pass => None,
        Verdict::Redirect(url) => {
            Some(json!({ "result": "redirected", "status": 308, "location": url }))
        }
        Verdict::Misdirected => Some(refused(421, "host does not match the TLS server name")),
        Verdict::ClientCertRequired => Some(refused(
            403,
            "client certificate required (none given to explain)",
        )),
    }
}

fn rejection_outcome(steps: &mut Steps, step: &str, rejection: Rejection) -> Value {
    let mut detail = json!({ "matched": false });
    if let Rejection::MethodNotAllowed { allow, route } = &rejection {
        detail = json!({ "matched": "path only", "route": route.0.name, "allow": allow });
    }
    steps.add(step, detail);
    refused(rejection.status(), rejection.message())
}

/// The listener a client reaches on `port` with or without TLS.
fn listener_for(
    listeners: &[ListenerConfig],
    tls: bool,
    port: u16,
) -> Option<(usize, &ListenerConfig)> {
    listeners
        .iter()
        .enumerate()
        .find(|(_, l)| l.address.port() == port && l.tls.is_some() == tls)
}

/// The managed protections `[firewall]` turns on, less those the route skips.
fn managed_on(config: &Config, route: Option<&RouteConfig>) -> Vec<&'static str> {
    let skip = route.map_or(&[][..], |r| r.firewall_skip.as_slice());
    config
        .firewall
        .managed
        .iter()
        .filter(|m| !skip.contains(m))
        .map(|m| m.label())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;
    use crate::snapshot::{compile, Registries};

    fn ask(text: &str, method: &str, url: &str, headers: &[(&str, &str)]) -> Value {
        try_ask(text, method, url, headers).unwrap()
    }

    fn try_ask(
        text: &str,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
    ) -> Result<Value, String> {
        let cfg = config::parse(text).unwrap();
        let snapshot = compile(&cfg, text, &Registries::new().unwrap()).unwrap();
        let headers: Vec<(String, String)> = headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        let q = Question {
            listeners: &cfg.listeners,
            method,
            url,
            headers: &headers,
            client_ip: None,
        };
        explain(&snapshot, &cfg, &q)
    }

    const CONFIG: &str = "[[listeners]]\naddress = \"127.0.0.1:8080\"\n\
                          [[routes]]\nname = \"a\"\nhosts = [\"a.test\"]\npath_prefix = \"/a\"\n\
                          respond = { body = \"a\" }\n";

    #[test]
    fn the_host_header_wins_over_the_url_and_selects_the_route() {
        let v = ask(
            CONFIG,
            "GET",
            "http://127.0.0.1:8080/a/1",
            &[("Host", "a.test")],
        );
        assert_eq!(v["outcome"]["route"], "a", "{v}");
        let v = ask(CONFIG, "GET", "http://127.0.0.1:8080/a/1", &[]);
        assert_eq!(v["outcome"]["status"], 404, "{v}");
        let v = ask(CONFIG, "GET", "http://a.test:8080/a/1", &[]);
        assert_eq!(v["outcome"]["route"], "a", "{v}");
    }

    #[test]
    fn malformed_questions_are_errors_not_answers() {
        for (method, url, header) in [
            ("GET", "/relative", ("x", "y")),
            ("GET", "ftp://a.test/", ("x", "y")),
            ("G ET", "http://a.test/", ("x", "y")),
            ("GET", "http://a.test/", ("bad name", "y")),
        ] {
            assert!(
                try_ask(CONFIG, method, url, &[header]).is_err(),
                "{method} {url}"
            );
        }
    }
}
