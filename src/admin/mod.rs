//! The admin listener (127.0.0.1:9901 by default).
//!
//! | endpoint | access | |
//! |---|---|---|
//! | `GET /-/health` | open | the process is up |
//! | `GET /-/ready` | open | 200 while serving, 503 once SIGTERM was received |
//! | `GET /metrics` | read | Prometheus text format |
//! | `GET /-/config` | read | version, load time and source, last reload attempt, settings pending a restart |
//! | `GET /-/routes` | read | compiled routes with their last request time |
//! | `GET /-/upstreams` | read | pools and the health of each target |
//! | `POST /-/reload` | admin | reload the config file now |
//! | `GET /-/bans` | read | bans in force: key, reason, time left, whether shared |
//! | `DELETE /-/bans/KEY` | admin | lift the ban on `ip:ADDRESS` or `consumer:NAME` (everywhere, when shared) |
//!
//! With no tokens configured (only allowed on loopback) everything is open. Otherwise read
//! endpoints take `Authorization: Bearer <read_token or admin_token>` and changes take the
//! admin token. Secrets are never part of a response.

mod status;

use crate::firewall::BanKey;
use crate::reload::{Reloader, Source};
use crate::routing::{HostPattern, PathPattern};
use crate::snapshot::RouteAction;
use async_trait::async_trait;
use http::{header, HeaderMap, Method, Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use serde_json::{json, Value};
use std::sync::Arc;

/// Where bans are listed, and lifted with `DELETE /-/bans/KEY`.
const BANS: &str = "/-/bans/";

/// Serves the admin endpoints.
pub struct AdminApp {
    reloader: Arc<Reloader>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    Open,
    Read,
    Admin,
}

impl AdminApp {
    pub fn new(reloader: Arc<Reloader>) -> Self {
        Self { reloader }
    }

    /// The response for a request; separate from the session for testing.
    pub fn handle(
        &self,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Response<Vec<u8>> {
        let access = match (method, path) {
            (&Method::GET | &Method::HEAD, "/-/health" | "/-/ready") => Access::Open,
            (
                &Method::GET | &Method::HEAD,
                "/metrics" | "/-/config" | "/-/routes" | "/-/upstreams" | "/-/certificates",
            ) => Access::Read,
            (&Method::POST, "/-/reload") => Access::Admin,
            // Shows how the config treats a request: as much as `/-/config` and `/-/routes`.
            (&Method::POST, "/-/explain") => Access::Read,
            (&Method::GET | &Method::HEAD, "/-/status") => Access::Read,
            (&Method::GET | &Method::HEAD, "/-/bans") => Access::Read,
            (&Method::DELETE, p) if p.starts_with(BANS) => Access::Admin,
            (
                _,
                "/-/health" | "/-/ready" | "/metrics" | "/-/config" | "/-/routes" | "/-/upstreams"
                | "/-/certificates" | "/-/reload" | "/-/bans" | "/-/explain" | "/-/status",
            ) => {
                return json(
                    StatusCode::METHOD_NOT_ALLOWED,
                    &json!({"error": "method not allowed"}),
                );
            }
            _ => return json(StatusCode::NOT_FOUND, &json!({"error": "not found"})),
        };
        if access == Access::Admin && cross_site(headers) {
            return json(
                StatusCode::FORBIDDEN,
                &json!({"error": "cross-site requests may not change the gateway"}),
            );
        }
        if let Some(denied) = self.denial(headers, access) {
            return denied;
        }
        match path {
            "/-/health" => json(StatusCode::OK, &json!({"status": "ok"})),
            "/-/ready" => self.ready(),
            "/metrics" => reply(
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                self.reloader.registries.metrics.render(),
            ),
            "/-/config" => self.config(),
            "/-/routes" => self.routes(),
            "/-/upstreams" => self.upstreams(),
            "/-/certificates" => self.certificates(),
            "/-/bans" => self.bans(),
            "/-/reload" => self.reload(),
            "/-/explain" => self.explain(body),
            "/-/status" => reply(
                StatusCode::OK,
                "text/html; charset=utf-8",
                status::page(&self.reloader).into_bytes(),
            ),
            p => self.lift_ban(p.strip_prefix(BANS).unwrap_or_default()),
        }
    }

    /// The refusal for a request lacking the access it needs, or `None` to go ahead.
    fn denial(&self, headers: &HeaderMap, access: Access) -> Option<Response<Vec<u8>>> {
        if access == Access::Open {
            return None;
        }
        let (read, admin) = self.reloader.admin_tokens();
        if read.is_none() && admin.is_none() {
            return None;
        }
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim().as_bytes());
        let matches = |t: &Option<crate::config::Secret>| matches!((t, presented), (Some(t), Some(p)) if tokens_equal(t.expose().as_bytes(), p));
        let is_admin = matches(admin);
        let is_read = is_admin || matches(read);
        match (access, is_read, is_admin) {
            (Access::Read, true, _) | (Access::Admin, _, true) => None,
            (_, false, _) => {
                let mut r = json(
                    StatusCode::UNAUTHORIZED,
                    &json!({"error": "missing or invalid admin token"}),
                );
                r.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    header::HeaderValue::from_static("Bearer realm=\"gatehouse-admin\""),
                );
                Some(r)
            }
            _ => Some(json(
                StatusCode::FORBIDDEN,
                &json!({"error": "this endpoint needs the admin token"}),
            )),
        }
    }

    fn ready(&self) -> Response<Vec<u8>> {
        let version = self.reloader.store.load().version.clone();
        if self.reloader.is_ready() {
            json(
                StatusCode::OK,
                &json!({"ready": true, "config_version": version}),
            )
        } else {
            json(
                StatusCode::SERVICE_UNAVAILABLE,
                &json!({"ready": false, "config_version": version}),
            )
        }
    }

    /// `POST /-/explain` with `{"method", "url", "headers": {"name": "value"}, "client_ip"}`.
    fn explain(&self, body: &[u8]) -> Response<Vec<u8>> {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Body {
            #[serde(default = "get")]
            method: String,
            url: String,
            #[serde(default)]
            headers: std::collections::BTreeMap<String, String>,
            #[serde(default)]
            client_ip: Option<std::net::IpAddr>,
        }
        fn get() -> String {
            "GET".into()
        }
        let bad = |e: String| json(StatusCode::BAD_REQUEST, &json!({ "error": e }));
        let q: Body = match serde_json::from_slice(body) {
            Ok(q) => q,
            Err(e) => return bad(format!("body: {e}")),
        };
        let headers: Vec<(String, String)> = q.headers.into_iter().collect();
        let explain = |snapshot: &crate::snapshot::Snapshot,
                       config: &crate::config::Config,
                       started: &crate::config::Config| {
            let question = crate::proxy::explain::Question {
                listeners: &started.listeners,
                method: &q.method,
                url: &q.url,
                headers: &headers,
                client_ip: q.client_ip,
            };
            crate::proxy::explain::explain(snapshot, config, &question)
        };
        match self.reloader.with_current(explain) {
            Ok(v) => json(StatusCode::OK, &v),
            Err(e) => bad(e),
        }
    }

    fn config(&self) -> Response<Vec<u8>> {
        let snapshot = self.reloader.store.load();
        let (last, applied_by) = self.reloader.last();
        json(
            StatusCode::OK,
            &json!({
                "version": snapshot.version,
                "loaded_at": humantime::format_rfc3339_millis(snapshot.loaded_at).to_string(),
                "source": applied_by,
                "file": self.reloader.path,
                "last_reload": last,
                // Settings of the applied file that the process reads only at startup.
                "pending_restart": self.reloader.pending_restart(),
            }),
        )
    }

    fn routes(&self) -> Response<Vec<u8>> {
        let snapshot = self.reloader.store.load();
        let routes: Vec<Value> = snapshot
            .routes
            .iter()
            .map(|r| {
                let hosts: Vec<String> = r
                    .spec
                    .hosts
                    .iter()
                    .map(|h| match h {
                        HostPattern::Exact(h) => h.clone(),
                        HostPattern::Wildcard(h) => format!("*.{h}"),
                    })
                    .collect();
                let (path, prefix) = match &r.spec.path {
                    PathPattern::Exact(p) => (Some(p), None),
                    PathPattern::Prefix(p) => (None, Some(p)),
                    PathPattern::Template(p, _) => (Some(p), None),
                };
                let methods: Vec<&str> = r.spec.methods.iter().map(|m| m.as_str()).collect();
                let upstream = match &r.action {
                    RouteAction::Proxy { pool, .. } => Some(pool.name.as_str()),
                    RouteAction::Respond(_) => None,
                };
                let last = r.metrics.last_request();
                json!({
                    "name": r.name,
                    "hosts": hosts,
                    "path": path,
                    "path_prefix": prefix,
                    "methods": methods,
                    "upstream": upstream,
                    "respond": upstream.is_none(),
                    "auth": r.auth.as_ref().map(|a| a.authorizer.name.as_str()),
                    "limits": r.limits_before_auth.iter().chain(&r.limits)
                        .map(|p| p.name.as_str()).collect::<Vec<_>>(),
                    "requests": r.metrics.requests(),
                    "last_request": last.map(|t| humantime::format_rfc3339_seconds(
                        std::time::UNIX_EPOCH + std::time::Duration::from_secs_f64(t)).to_string()),
                    "api": r.operation.as_ref().map(|o| o.api.as_str()),
                    "operation": r.operation.as_ref().map(|o| o.id.as_str()),
                })
            })
            .collect();
        json(
            StatusCode::OK,
            &json!({"version": snapshot.version, "routes": routes}),
        )
    }

    fn upstreams(&self) -> Response<Vec<u8>> {
        let snapshot = self.reloader.store.load();
        let now = crate::clock::now_millis();
        let pools: Vec<Value> = snapshot
            .pools
            .iter()
            .map(|p| {
                let targets: Vec<Value> = p
                    .targets
                    .iter()
                    .map(|t| {
                        json!({
                            "address": t.label,
                            "weight": t.weight,
                            "healthy": t.state.is_healthy(),
                            "available": t.state.is_available(now),
                        })
                    })
                    .collect();
                let up = p.targets.iter().any(|t| t.state.is_available(now));
                json!({
                    "name": p.name,
                    "health_check": p.health_check.is_some(),
                    "available": up,
                    "targets": targets,
                })
            })
            .collect();
        json(StatusCode::OK, &json!({"upstreams": pools}))
    }

    /// The served certificates: names, issuer, expiry, source (file or ACME), OCSP staple,
    /// and for ACME hosts the last order's result, also before a first certificate exists.
    fn certificates(&self) -> Response<Vec<u8>> {
        let store = &self.reloader.store;
        let snapshot = store.load();
        let now = crate::clock::unix_secs() as i64;
        let describe = |c: &crate::tls::CertEntry, source: &str| {
            let leaf = c.chain.first();
            let issuer = leaf.map(|l| crate::tls::accept::subject_text(l.issuer_name()));
            let responder = leaf.and_then(|l| crate::tls::ocsp::responder(l));
            let staple = store.staples.get(&c.fingerprint, now);
            json!({
                "name": c.name,
                "hosts": c.hosts,
                "issuer": issuer,
                "not_after": c.not_after,
                "source": source,
                "sha256": crate::text::hex(&c.fingerprint),
                "ocsp": {
                    "responder": responder,
                    "stapled": staple.is_some(),
                    "next_update": staple.as_ref().and_then(|s| s.next_update),
                },
            })
        };
        let mut certificates: Vec<Value> = snapshot
            .certificates
            .entries()
            .map(|c| describe(c, "file"))
            .collect();
        let managed = snapshot.acme.as_ref().map(|p| p.hosts.as_slice());
        for host in managed.unwrap_or_default() {
            let mut entry = match store.acme.certificate(host) {
                Some(c) => describe(&c, "acme"),
                None => json!({"name": host, "hosts": [host], "source": "acme", "not_after": null}),
            };
            entry["acme"] = json!(store.acme.status(host));
            certificates.push(entry);
        }
        certificates.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
        json(StatusCode::OK, &json!({"certificates": certificates}))
    }

    fn bans(&self) -> Response<Vec<u8>> {
        let now_ms = crate::clock::now_millis();
        let bans: Vec<Value> = self
            .reloader
            .registries
            .firewall
            .bans
            .list(now_ms)
            .into_iter()
            .map(|(key, ban)| {
                json!({
                    "key": key.to_text(),
                    "reason": ban.reason,
                    "since_ms": ban.since_ms,
                    "until_ms": ban.until_ms,
                    "seconds_left": (ban.until_ms - now_ms).div_ceil(1000),
                    "shared": ban.shared,
                })
            })
            .collect();
        json(StatusCode::OK, &json!({"bans": bans}))
    }

    /// Lift a ban here and, when bans are shared, in Redis (so every instance lifts it).
    fn lift_ban(&self, encoded: &str) -> Response<Vec<u8>> {
        let mut decoded = Vec::new();
        crate::firewall::inputs::percent_decode(encoded.as_bytes(), false, &mut decoded);
        let Some(key) = std::str::from_utf8(&decoded).ok().and_then(BanKey::parse) else {
            return json(
                StatusCode::BAD_REQUEST,
                &json!({"error": "expected /-/bans/ip:ADDRESS or /-/bans/consumer:NAME"}),
            );
        };
        let lifted = self.reloader.registries.firewall.bans.remove(&key);
        // `handle` runs on a blocking thread of the admin runtime.
        let lifted_in_redis = self.reloader.store.load().shared_bans().map(|redis| {
            let fields = [key.to_text()];
            tokio::runtime::Handle::try_current()
                .is_ok_and(|rt| rt.block_on(redis.remove_bans(&fields)).is_ok())
        });
        if lifted.is_none() && lifted_in_redis.is_none() {
            return json(StatusCode::NOT_FOUND, &json!({"error": "no such ban"}));
        }
        tracing::warn!(
            ban = %key.to_text(),
            reason = lifted.as_ref().map_or("", |b| b.reason.as_str()),
            "ban lifted through the admin API"
        );
        json(
            StatusCode::OK,
            &json!({"lifted": key.to_text(), "was_banned_here": lifted.is_some(), "lifted_in_redis": lifted_in_redis}),
        )
    }

    fn reload(&self) -> Response<Vec<u8>> {
        match self.reloader.reload(Source::Admin) {
            Ok(summary) => json(
                StatusCode::OK,
                &json!({"result": "ok", "summary": summary, "version": self.reloader.store.load().version}),
            ),
            Err(e) => {
                let errors: Vec<String> = e.errors.iter().map(ToString::to_string).collect();
                json(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    &json!({"result": "error", "file": e.file, "errors": errors}),
                )
            }
        }
    }
}

/// Token comparison whose time depends neither on where the first difference is nor on the
/// token's length: both sides are hashed to 32 bytes first.
fn tokens_equal(a: &[u8], b: &[u8]) -> bool {
    use sha2::{Digest, Sha256};
    let (a, b) = (Sha256::digest(a), Sha256::digest(b));
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

fn json(status: StatusCode, body: &Value) -> Response<Vec<u8>> {
    reply(status, "application/json", body.to_string().into_bytes())
}

fn reply(status: StatusCode, content_type: &'static str, body: Vec<u8>) -> Response<Vec<u8>> {
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    let len = resp.body().len();
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    headers.insert(header::CONTENT_LENGTH, header::HeaderValue::from(len));
    headers.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    resp
}

/// Largest request body the admin API reads (`POST /-/explain`).
const MAX_BODY: usize = 64 * 1024;
/// Longest time a body may take to arrive.
const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The request body, up to [`MAX_BODY`]; 413 beyond it. A broken read gives what arrived.
async fn read_body(session: &mut ServerSession) -> Result<Vec<u8>, StatusCode> {
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = session.read_request_body().await {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(StatusCode::PAYLOAD_TOO_LARGE);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let req = session.req_header();
        let (method, path, headers) = (
            req.method.clone(),
            req.uri.path().to_string(),
            req.headers.clone(),
        );
        // Only `POST /-/explain` has a body to read; nothing else waits on one.
        let body = if method == Method::POST && path == "/-/explain" {
            match tokio::time::timeout(BODY_TIMEOUT, read_body(session)).await {
                Ok(Ok(body)) => body,
                Ok(Err(status)) => {
                    return json(status, &json!({"error": "request body too large"}))
                }
                Err(_) => {
                    return json(
                        StatusCode::REQUEST_TIMEOUT,
                        &json!({"error": "request body too slow"}),
                    )
                }
            }
        } else {
            Vec::new()
        };
        // Reloads resolve names and read files: keep them off the admin runtime's thread.
        let reloader = self.reloader.clone();
        match tokio::task::spawn_blocking(move || {
            AdminApp { reloader }.handle(&method, &path, &headers, &body)
        })
        .await
        {
            Ok(resp) => resp,
            Err(_) => json(
                StatusCode::INTERNAL_SERVER_ERROR,
                &json!({"error": "internal error"}),
            ),
        }
    }
}

/// Whether a browser sent this request on behalf of another site. A page anywhere can make a
/// visitor's browser POST to a loopback admin address (a simple cross-site request needs no
/// preflight), so changes refuse what browsers mark as coming from elsewhere: a
/// `Sec-Fetch-Site` other than `same-origin` or `none`, or an `Origin` that is not this
/// listener's own. Tools such as curl send neither header.
fn cross_site(headers: &HeaderMap) -> bool {
    let fetch_site = headers
        .get("sec-fetch-site")
        .map(|v| v.as_bytes().to_ascii_lowercase());
    if fetch_site.is_some_and(|s| s != b"same-origin" && s != b"none") {
        return true;
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return false;
    };
    let host = headers.get(header::HOST).map(|h| h.as_bytes());
    let own = |scheme: &[u8]| host.is_some_and(|h| origin.as_bytes() == [scheme, h].concat());
    !(own(b"http://") || own(b"https://"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cross_site_browser_requests_are_recognised() {
        let h = |pairs: &[(&str, &str)]| {
            let mut m = HeaderMap::new();
            for (k, v) in pairs {
                m.insert(
                    header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    v.parse().unwrap(),
                );
            }
            m
        };
        assert!(!cross_site(&h(&[])), "curl sends neither header");
        assert!(cross_site(&h(&[("sec-fetch-site", "cross-site")])));
        assert!(cross_site(&h(&[("sec-fetch-site", "same-site")])));
        assert!(!cross_site(&h(&[("sec-fetch-site", "same-origin")])));
        assert!(cross_site(&h(&[("origin", "https://evil.example")])));
        assert!(cross_site(&h(&[("origin", "null")])));
        assert!(!cross_site(&h(&[
            ("origin", "http://127.0.0.1:9901"),
            ("host", "127.0.0.1:9901")
        ])));
    }

    #[test]
    fn token_comparison() {
        assert!(tokens_equal(b"abcdef", b"abcdef"));
        assert!(!tokens_equal(b"abcdef", b"abcdeg"));
        assert!(!tokens_equal(b"abc", b"abcdef"));
    }
}
