//! The routing decision for one request, as a plain function of the snapshot and the request
//! header: which route, what path goes upstream, or why the request is refused.

use crate::routing::{normalize_path, RouteMatch};
use crate::snapshot::{PathRewrite, Route, RouteAction, Snapshot};
use http::{header, Version};
use pingora::http::RequestHeader;
use std::borrow::Cow;
use std::sync::Arc;

/// Why a request is answered by the gateway itself instead of an upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    BadRequest(&'static str),
    NotFound,
    /// Holds the `Allow` header value.
    MethodNotAllowed(String),
}

impl Rejection {
    pub fn status(&self) -> u16 {
        match self {
            Self::BadRequest(_) => 400,
            Self::NotFound => 404,
            Self::MethodNotAllowed(_) => 405,
        }
    }

    pub fn message(&self) -> &'static str {
        match self {
            Self::BadRequest(m) => m,
            Self::NotFound => "no route for this request",
            Self::MethodNotAllowed(_) => "method not allowed on this route",
        }
    }
}

/// A request that matched a route.
#[derive(Debug)]
pub struct Routed {
    pub route: Arc<Route>,
    /// New path and query for the upstream when it differs from what the client sent.
    pub upstream_uri: Option<String>,
}

/// Check the request's framing and target, then find its route.
pub fn route_request(snapshot: &Snapshot, req: &RequestHeader) -> Result<Routed, Rejection> {
    check_framing(req)?;
    let host = request_host(req)?;
    let raw_path = req.uri.path();
    let path =
        normalize_path(raw_path.as_bytes()).ok_or(Rejection::BadRequest("invalid request path"))?;
    match snapshot.router.lookup(host, &req.method, &path) {
        RouteMatch::Found { value, matched_len } => Ok(Routed {
            route: value.clone(),
            upstream_uri: upstream_uri(value, raw_path, &path, matched_len, req.uri.query()),
        }),
        RouteMatch::MethodNotAllowed(allow) => Err(Rejection::MethodNotAllowed(allow)),
        RouteMatch::NotFound => Err(Rejection::NotFound),
    }
}

/// Refuse messages whose body length two parties could read differently (request smuggling,
/// RFC 9112 6.3): both `Transfer-Encoding` and `Content-Length`, or conflicting lengths.
fn check_framing(req: &RequestHeader) -> Result<(), Rejection> {
    let h = &req.headers;
    if h.contains_key(header::TRANSFER_ENCODING) && h.contains_key(header::CONTENT_LENGTH) {
        return Err(Rejection::BadRequest(
            "both Transfer-Encoding and Content-Length present",
        ));
    }
    let mut lengths = h.get_all(header::CONTENT_LENGTH).iter();
    if let Some(first) = lengths.next() {
        if lengths.any(|v| v != first) {
            return Err(Rejection::BadRequest("conflicting Content-Length headers"));
        }
    }
    Ok(())
}

/// The host the request is for: the URI authority (absolute-form, HTTP/2) or the single
/// `Host` header. HTTP/1.1 requires one; several are refused, since gateway and upstream
/// might each pick a different one.
fn request_host(req: &RequestHeader) -> Result<Option<&str>, Rejection> {
    let mut hosts = req.headers.get_all(header::HOST).iter();
    let header_host = hosts.next();
    if hosts.next().is_some() {
        return Err(Rejection::BadRequest("multiple Host headers"));
    }
    if let Some(authority) = req.uri.authority() {
        return Ok(Some(authority.as_str()));
    }
    match header_host {
        Some(v) => v
            .to_str()
            .map(Some)
            .map_err(|_| Rejection::BadRequest("invalid Host header")),
        None if req.version == Version::HTTP_11 => {
            Err(Rejection::BadRequest("missing Host header"))
        }
        None => Ok(None),
    }
}

fn upstream_uri(
    route: &Route,
    raw_path: &str,
    path: &[u8],
    matched_len: usize,
    query: Option<&str>,
) -> Option<String> {
    let rewrite = match &route.action {
        RouteAction::Proxy { rewrite, .. } => rewrite,
        RouteAction::Respond(_) => return None,
    };
    let new_path: Cow<'_, [u8]> = match rewrite {
        PathRewrite::Keep => Cow::Borrowed(path),
        PathRewrite::StripPrefix => match &path[matched_len..] {
            b"" => Cow::Borrowed(b"/"),
            rest => Cow::Borrowed(rest),
        },
        PathRewrite::ReplacePrefix(replacement) => {
            let rest = &path[matched_len..];
            let mut p = replacement.as_bytes().to_vec();
            let rest = if p.ends_with(b"/") {
                rest.strip_prefix(b"/").unwrap_or(rest)
            } else {
                rest
            };
            p.extend_from_slice(rest);
            Cow::Owned(p)
        }
    };
    if *new_path == *raw_path.as_bytes() {
        return None;
    }
    // Paths were validated as ASCII by normalization.
    let mut uri = String::from_utf8_lossy(&new_path).into_owned();
    if let Some(q) = query {
        uri.push('?');
        uri.push_str(q);
    }
    Some(uri)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;
    use crate::snapshot::{compile, Registries};

    fn snapshot() -> Snapshot {
        let text = r#"
            [[listeners]]
            address = "127.0.0.1:1"
            [upstreams.a]
            targets = [{ address = "127.0.0.1:2" }]
            [[routes]]
            name = "strip"
            path_prefix = "/strip"
            strip_prefix = true
            upstream = "a"
            [[routes]]
            name = "replace"
            path_prefix = "/old/"
            prefix_rewrite = "/new/"
            upstream = "a"
            [[routes]]
            name = "keep"
            path_prefix = "/keep"
            methods = ["GET"]
            upstream = "a"
            [[routes]]
            name = "mock"
            path = "/mock"
            respond = { body = "hi" }
        "#;
        let cfg = config::parse(text).unwrap();
        compile(&cfg, text, &Registries::new()).unwrap()
    }

    fn req(method: &str, uri: &str, headers: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build(method, uri.as_bytes(), None).unwrap();
        for (k, v) in headers {
            r.append_header(k.to_string(), *v).unwrap();
        }
        r
    }

    fn routed(uri: &str) -> (String, Option<String>) {
        let s = snapshot();
        let r = route_request(&s, &req("GET", uri, &[("host", "h")])).unwrap();
        (r.route.name.clone(), r.upstream_uri)
    }

    #[test]
    fn rewrites_produce_the_upstream_uri() {
        assert_eq!(
            routed("/strip/a?x=1"),
            ("strip".into(), Some("/a?x=1".into()))
        );
        assert_eq!(routed("/strip"), ("strip".into(), Some("/".into())));
        assert_eq!(
            routed("/old/a/b"),
            ("replace".into(), Some("/new/a/b".into()))
        );
        assert_eq!(routed("/old"), ("replace".into(), Some("/new/".into())));
        assert_eq!(routed("/keep/x?q"), ("keep".into(), None));
        assert_eq!(routed("/mock"), ("mock".into(), None));
    }

    #[test]
    fn normalized_paths_are_sent_upstream() {
        assert_eq!(
            routed("/other/../keep/%78"),
            ("keep".into(), Some("/keep/x".into()))
        );
    }

    #[test]
    fn rejections() {
        let s = snapshot();
        let check = |r: RequestHeader| route_request(&s, &r).unwrap_err();
        assert_eq!(
            check(req("GET", "/nope", &[("host", "h")])),
            Rejection::NotFound
        );
        assert_eq!(
            check(req("POST", "/keep", &[("host", "h")])),
            Rejection::MethodNotAllowed("GET, HEAD".into())
        );
        assert_eq!(
            check(req("GET", "/keep", &[])).message(),
            "missing Host header"
        );
        assert_eq!(
            check(req("GET", "/keep", &[("host", "a"), ("host", "b")])).status(),
            400
        );
        assert_eq!(
            check(req(
                "POST",
                "/keep",
                &[
                    ("host", "h"),
                    ("content-length", "3"),
                    ("transfer-encoding", "chunked")
                ]
            ))
            .status(),
            400
        );
        assert_eq!(
            check(req(
                "GET",
                "/keep",
                &[
                    ("host", "h"),
                    ("content-length", "3"),
                    ("content-length", "4")
                ]
            ))
            .status(),
            400
        );
        assert_eq!(check(req("GET", "/bad%zz", &[("host", "h")])).status(), 400);
    }
}
