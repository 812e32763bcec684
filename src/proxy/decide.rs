//! The routing decision for one request, as a plain function of the snapshot and the request
//! header: which route, what path goes upstream, or why the request is refused.

use crate::routing::{normalize_path, RouteMatch};
use crate::snapshot::{PathRewrite, Route, RouteAction, Snapshot};
use bytes::Bytes;
use http::uri::Authority;
use http::{header, HeaderValue, Uri, Version};
use pingora::http::RequestHeader;
use std::borrow::Cow;
use std::sync::Arc;

/// Why a request is answered by the gateway itself instead of an upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    BadRequest(&'static str),
    NotFound,
    MethodNotAllowed {
        /// The `Allow` header value.
        allow: String,
        /// The route whose path matched: the refusal is counted under it.
        route: RouteRef,
    },
}

/// A route in a [`Rejection`]; two are equal when they are the same compiled route.
#[derive(Debug, Clone)]
pub struct RouteRef(pub Arc<Route>);

impl PartialEq for RouteRef {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for RouteRef {}

impl Rejection {
    pub fn status(&self) -> u16 {
        match self {
            Self::BadRequest(_) => 400,
            Self::NotFound => 404,
            Self::MethodNotAllowed { .. } => 405,
        }
    }

    pub fn message(&self) -> &'static str {
        match self {
            Self::BadRequest(m) => m,
            Self::NotFound => "no route for this request",
            Self::MethodNotAllowed { .. } => "method not allowed on this route",
        }
    }
}

/// A request that matched a route.
#[derive(Debug)]
pub struct Routed {
    pub route: Arc<Route>,
    /// New request target for the upstream when it differs from what the client sent.
    pub upstream_uri: Option<Uri>,
}

/// Check the request's framing and target, then find its route. `host` is what
/// [`request_host`] accepted.
pub fn route_request(
    snapshot: &Snapshot,
    req: &RequestHeader,
    host: Option<&str>,
) -> Result<Routed, Rejection> {
    check_framing(req)?;
    let origin_form = check_target(req.raw_path())?;
    let path = normalize_path(req.uri.path().as_bytes())
        .ok_or(Rejection::BadRequest("invalid request path"))?;
    match snapshot.router.lookup(host, &req.method, &path) {
        RouteMatch::Found { value, matched_len } => {
            let new_path = upstream_path(value, &path, matched_len);
            // The upstream always gets an origin-form target, and exactly the path that was
            // routed on: anything else (absolute-form, an unnormalized path) is rewritten.
            let unchanged = origin_form && new_path.as_deref() == Some(req.uri.path().as_bytes());
            let upstream_uri = match new_path {
                Some(p) if !unchanged => Some(build_uri(&p, req.uri.query())?),
                _ => None,
            };
            Ok(Routed {
                route: value.clone(),
                upstream_uri,
            })
        }
        RouteMatch::MethodNotAllowed { allow, path_owner } => Err(Rejection::MethodNotAllowed {
            allow,
            route: RouteRef(path_owner.clone()),
        }),
        RouteMatch::NotFound => Err(Rejection::NotFound),
    }
}

/// The path as the client spelled it, without the query: what `edge::path::check` judges.
pub fn raw_path(req: &RequestHeader) -> &[u8] {
    req.raw_path()
        .split(|&b| b == b'?')
        .next()
        .unwrap_or_default()
}

/// The body length the request declares in `Content-Length`, if it declares a valid one.
pub fn declared_length(req: &RequestHeader) -> Option<u64> {
    req.headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
}

/// Accept origin-form (`/path`) and http(s) absolute-form targets; returns whether the target
/// is origin-form. Anything else (`x:/admin`, `*`) could be read differently by an upstream
/// than the path the gateway routed on.
fn check_target(raw: &[u8]) -> Result<bool, Rejection> {
    if raw.first() == Some(&b'/') {
        return Ok(true);
    }
    let lower = |n: usize| raw.get(..n).map(|p| p.to_ascii_lowercase());
    if lower(7).as_deref() == Some(b"http://") || lower(8).as_deref() == Some(b"https://") {
        return Ok(false);
    }
    Err(Rejection::BadRequest("invalid request target"))
}

/// Refuse messages whose body length two parties could read differently (request smuggling,
/// RFC 9112 6.3): both `Transfer-Encoding` and `Content-Length`, or conflicting lengths.
/// Pingora's HTTP/1 reader already drops `Content-Length` when `Transfer-Encoding` is present
/// and refuses conflicting lengths; this check keeps the guarantee in the gateway itself,
/// whatever the protocol path or Pingora version.
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

const MAX_HOST_LEN: usize = 255 + 8;

/// The host a request is for, as [`request_host`] accepted it. It shares the bytes of the
/// parsed request header (a reference count, no copy), so the phases after `request_filter`
/// read it from the context instead of looking it up in the header again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    /// The URI authority: HTTP/2's `:authority`. (Pingora leaves it out of the URI of an
    /// absolute-form HTTP/1 target, after checking that it agrees with `Host`.)
    Authority(Authority),
    /// The `Host` header.
    Header(HeaderValue),
}

impl Host {
    /// The host as the client sent it, port included.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Authority(a) => a.as_str(),
            // `request_host` only keeps a value that is visible ASCII, so this never fails.
            Self::Header(v) => v.to_str().unwrap_or(""),
        }
    }
}

/// The host the request is for, checked: the URI authority (absolute-form, HTTP/2) or the
/// single `Host` header, a name or IP literal with a numeric port (`host::valid_host`).
/// HTTP/1.1 requires one; several are refused, since gateway and upstream might each pick a
/// different one.
pub fn request_host(req: &RequestHeader) -> Result<Option<Host>, Rejection> {
    let invalid = Rejection::BadRequest("invalid Host header");
    if req.headers.get_all(header::HOST).iter().nth(1).is_some() {
        return Err(Rejection::BadRequest("multiple Host headers"));
    }
    let host = match req.uri.authority() {
        Some(a) => Host::Authority(a.clone()),
        None => match req.headers.get(header::HOST) {
            None if req.version == Version::HTTP_11 => {
                return Err(Rejection::BadRequest("missing Host header"))
            }
            None => return Ok(None),
            // A DNS name is at most 253 bytes; a port and brackets add a few.
            Some(v) if v.len() > MAX_HOST_LEN => return Err(invalid),
            Some(v) => Host::Header(v.clone()),
        },
    };
    if crate::host::valid_host(host.as_str()) {
        Ok(Some(host))
    } else {
        Err(invalid)
    }
}

/// The path to send upstream after the route's rewrite; `None` for fixed-response routes.
fn upstream_path<'a>(route: &Route, path: &'a [u8], matched_len: usize) -> Option<Cow<'a, [u8]>> {
    let rewrite = match &route.action {
        RouteAction::Proxy { rewrite, .. } => rewrite,
        RouteAction::Respond(_) => return None,
    };
    let rest = path.get(matched_len..).unwrap_or_default();
    Some(match rewrite {
        PathRewrite::Keep => Cow::Borrowed(path),
        PathRewrite::StripPrefix if rest.is_empty() => Cow::Borrowed(b"/"),
        PathRewrite::StripPrefix => Cow::Borrowed(rest),
        PathRewrite::StripBase(n) => match path.get(*n..) {
            Some(rest) if !rest.is_empty() => Cow::Borrowed(rest),
            _ => Cow::Borrowed(b"/"),
        },
        PathRewrite::ReplacePrefix(replacement) => {
            let mut p = replacement.as_bytes().to_vec();
            let rest = if p.ends_with(b"/") {
                rest.strip_prefix(b"/").unwrap_or(rest)
            } else {
                rest
            };
            p.extend_from_slice(rest);
            Cow::Owned(p)
        }
    })
}

fn build_uri(path: &[u8], query: Option<&str>) -> Result<Uri, Rejection> {
    let mut target = Vec::with_capacity(path.len() + query.map_or(0, |q| q.len() + 1));
    target.extend_from_slice(path);
    if let Some(q) = query {
        target.push(b'?');
        target.extend_from_slice(q.as_bytes());
    }
    Uri::from_maybe_shared(Bytes::from(target))
        .map_err(|_| Rejection::BadRequest("invalid request target"))
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
        compile(&cfg, text, &Registries::new().unwrap()).unwrap()
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
        let r = req("GET", uri, &[("host", "h")]);
        let host = request_host(&r).unwrap();
        let r = route_request(&s, &r, host.as_ref().map(Host::as_str)).unwrap();
        (r.route.name.clone(), r.upstream_uri.map(|u| u.to_string()))
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
        let check = |r: RequestHeader| {
            request_host(&r)
                .and_then(|h| route_request(&s, &r, h.as_ref().map(Host::as_str)))
                .unwrap_err()
        };
        assert_eq!(
            check(req("GET", "/nope", &[("host", "h")])),
            Rejection::NotFound
        );
        match check(req("POST", "/keep", &[("host", "h")])) {
            Rejection::MethodNotAllowed { allow, route } => {
                assert_eq!(
                    (allow.as_str(), route.0.name.as_str()),
                    ("GET, HEAD", "keep")
                );
            }
            other => panic!("{other:?}"),
        }
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
        assert_eq!(
            check(req("GET", "x:/keep", &[("host", "h")])),
            Rejection::BadRequest("invalid request target")
        );
        let long_host = format!("A{}.example.com", ".a".repeat(200));
        assert_eq!(
            check(req("GET", "/keep", &[("host", &long_host)])),
            Rejection::BadRequest("invalid Host header")
        );
    }

    #[test]
    fn the_host_is_the_authority_else_the_host_header() {
        let host = |r: &RequestHeader| request_host(r).unwrap().map(|h| h.as_str().to_owned());
        // What Pingora builds for HTTP/2: the authority in the URI, no Host header.
        let (mut parts, ()) = http::Request::get("https://a.test:8443/x")
            .body(())
            .unwrap()
            .into_parts();
        parts.version = Version::HTTP_2;
        let h2 = RequestHeader::from(parts);
        assert!(matches!(request_host(&h2), Ok(Some(Host::Authority(_)))));
        assert_eq!(host(&h2).as_deref(), Some("a.test:8443"));
        let origin = req("GET", "/x", &[("host", "B.test")]);
        assert!(matches!(request_host(&origin), Ok(Some(Host::Header(_)))));
        assert_eq!(host(&origin).as_deref(), Some("B.test"));
        let mut old = req("GET", "/x", &[]);
        old.set_version(Version::HTTP_10);
        assert_eq!(host(&old), None, "HTTP/1.0 may go without a host");
    }

    #[test]
    fn absolute_form_targets_are_sent_upstream_in_origin_form() {
        let s = snapshot();
        let r = req("GET", "http://h/keep/a?q=1", &[("host", "h")]);
        let host = request_host(&r).unwrap();
        let r = route_request(&s, &r, host.as_ref().map(Host::as_str)).unwrap();
        assert_eq!(r.route.name, "keep");
        assert_eq!(
            r.upstream_uri.map(|u| u.to_string()).as_deref(),
            Some("/keep/a?q=1")
        );
    }
}
