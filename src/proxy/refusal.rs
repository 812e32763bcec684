//! The gateway's own answers: the one refusal type that every concern's decision becomes, and
//! the one place that writes it, or a fixed-response route's answer, to the client.
//!
//! Headers come from whoever knows them. The refusing concern gives its own (`Allow`,
//! `Location`, `Retry-After`, `WWW-Authenticate`); [`response`] adds what every answer to the
//! request carries: the request id, `Strict-Transport-Security` once the host's policy asked
//! for it over TLS, and the `RateLimit` headers of the limits that counted the request.

use super::decide::Rejection;
use super::{respond, RequestCtx};
use crate::auth::AuthRejection;
use crate::firewall::Verdict as FirewallVerdict;
use crate::limit::LimitRejection;
use crate::snapshot::FixedResponse;
use crate::tls::policy::Verdict;
use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use pingora::http::ResponseHeader;
use pingora::proxy::Session;

/// A request the gateway answers itself instead of forwarding it: the status, the
/// client-facing reason (the JSON body's `error` and the access log's), and the header of the
/// concern that refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub message: &'static str,
    /// One slot: no concern refuses with two headers of its own, and without a `Vec` a
    /// refusal allocates nothing.
    pub header: Option<(HeaderName, HeaderValue)>,
}

impl Refusal {
    /// A refusal without a header of its own.
    pub const fn new(status: u16, message: &'static str) -> Self {
        Self {
            status,
            message,
            header: None,
        }
    }

    /// `self` with `name: value`; a value that could not be built leaves the header out
    /// rather than turning the refusal into an internal error.
    fn with_header(mut self, name: HeaderName, value: Option<HeaderValue>) -> Self {
        self.header = value.map(|v| (name, v));
        self
    }

    /// The refusal for a host policy's verdict; `None` when it lets the request through.
    pub fn from_verdict(verdict: Verdict) -> Option<Self> {
        match verdict {
            Verdict::Pass => None,
            Verdict::Redirect(url) => Some(
                Self::new(308, "use https")
                    .with_header(header::LOCATION, HeaderValue::try_from(url).ok()),
            ),
            Verdict::Misdirected => Some(Self::new(421, "host does not match the TLS server name")),
            Verdict::ClientCertRequired => Some(Self::new(403, "client certificate required")),
        }
    }
}

/// Framing, target, host and route refusals: 400, 404, and 405 with `Allow`.
impl From<Rejection> for Refusal {
    fn from(rejection: Rejection) -> Self {
        let refusal = Self::new(rejection.status(), rejection.message());
        match rejection {
            Rejection::MethodNotAllowed { allow, .. } => {
                refusal.with_header(header::ALLOW, HeaderValue::try_from(allow).ok())
            }
            Rejection::BadRequest(_) | Rejection::NotFound => refusal,
        }
    }
}

/// 429 or 503 with `Retry-After`; the refusing policy's `RateLimit` headers travel in the
/// context (`LimitState::report`), like those of the policies that allowed a request.
impl From<&LimitRejection> for Refusal {
    fn from(rejection: &LimitRejection) -> Self {
        let retry = HeaderValue::from(rejection.retry_after_secs);
        Self::new(rejection.status, rejection.message).with_header(header::RETRY_AFTER, Some(retry))
    }
}

/// 401 or 403, with the authorizer's `WWW-Authenticate` challenge when it has one.
impl From<AuthRejection> for Refusal {
    fn from(rejection: AuthRejection) -> Self {
        Self::new(rejection.status, rejection.reason.message())
            .with_header(header::WWW_AUTHENTICATE, rejection.www_authenticate)
    }
}

impl Refusal {
    /// The refusal for a firewall verdict: 403, or 429 with `Retry-After` for a `limit` rule.
    pub fn from_firewall(verdict: &FirewallVerdict) -> Option<Self> {
        match verdict {
            FirewallVerdict::Pass => None,
            FirewallVerdict::Deny => Some(Self::new(403, "request blocked by the firewall")),
            FirewallVerdict::Limit { retry_after_secs } => Some(
                Self::new(429, "too many requests matching a firewall rule").with_header(
                    header::RETRY_AFTER,
                    Some(HeaderValue::from(*retry_after_secs)),
                ),
            ),
        }
    }

    /// A banned client: 403, or 429 with `Retry-After` (the seconds left of the ban).
    pub fn banned(status: u16, retry_after_secs: u64) -> Self {
        if status == 429 {
            Self::new(429, "client banned").with_header(
                header::RETRY_AFTER,
                Some(HeaderValue::from(retry_after_secs.max(1))),
            )
        } else {
            Self::new(403, "client banned")
        }
    }
}

/// Why `request_filter`'s steps stopped a request: a refusal, or a CORS preflight the gateway
/// answers itself.
#[derive(Debug)]
pub enum Stop {
    Refuse(Refusal),
    /// `204` with the policy's headers.
    Preflight(Vec<(HeaderName, HeaderValue)>),
    /// The request does not match its API operation: 400 or 415 with the problems.
    Invalid(Box<crate::contract::Refused>),
}

impl From<Refusal> for Stop {
    fn from(refusal: Refusal) -> Self {
        Self::Refuse(refusal)
    }
}

/// What the gateway answers instead of an upstream.
#[derive(Debug)]
pub enum Answer<'a> {
    /// A JSON error.
    Refuse(Refusal),
    /// A fixed-response route's response.
    Fixed(&'a FixedResponse),
    /// An allowed CORS preflight.
    Preflight(Vec<(HeaderName, HeaderValue)>),
    /// A request that does not match its API operation.
    Invalid(Box<crate::contract::Refused>),
    /// An ACME HTTP-01 validation's key authorization.
    Challenge(std::sync::Arc<str>),
}

/// The head and body of `answer` to the request of `ctx`, from `origin` (its `Origin`
/// header). A refusal's own header goes first, so a concern cannot replace the headers every
/// answer carries.
pub fn response(
    ctx: &RequestCtx,
    answer: Answer<'_>,
    origin: Option<&HeaderValue>,
) -> pingora::Result<(ResponseHeader, Bytes)> {
    let hsts = ctx
        .hsts
        .clone()
        .map(|v| (header::STRICT_TRANSPORT_SECURITY, v));
    let limits = ctx.limit.report.iter().flat_map(|r| r.headers());
    // A browser reads the gateway's own answers (a 401, a 429) only with the CORS headers.
    let cors = ctx.route.as_ref().and_then(|r| r.cors.as_ref());
    let cors = cors.into_iter().flat_map(|c| c.response_headers(origin));
    match answer {
        Answer::Refuse(r) => {
            let common = hsts.into_iter().chain(limits).chain(cors);
            let headers = r.header.into_iter().chain(common);
            let trace_id = ctx.trace.as_ref().map(|t| t.trace_id());
            respond::error_response(r.status, r.message, &ctx.request_id, trace_id, headers)
        }
        Answer::Fixed(fixed) => {
            let common = hsts.into_iter().chain(limits).chain(cors);
            respond::fixed_response(fixed, &ctx.request_id, common)
        }
        Answer::Preflight(headers) => {
            respond::no_content(&ctx.request_id, hsts.into_iter().chain(headers))
        }
        Answer::Invalid(refused) => {
            let common = hsts.into_iter().chain(limits).chain(cors);
            let trace_id = ctx.trace.as_ref().map(|t| t.trace_id());
            respond::problems_response(&refused, &ctx.request_id, trace_id, common)
        }
        Answer::Challenge(key_authorization) => {
            respond::key_authorization(&key_authorization, &ctx.request_id)
        }
    }
}

/// Write `answer` to the client: the one place where the proxy answers a request itself. A
/// refusal's message becomes the request's error in the access log.
pub async fn send(
    session: &mut Session,
    ctx: &mut RequestCtx,
    answer: Answer<'_>,
) -> pingora::Result<()> {
    match &answer {
        Answer::Refuse(r) => {
            ctx.error.get_or_insert(r.message);
        }
        Answer::Invalid(_) => {
            ctx.error.get_or_insert(respond::CONTRACT_MESSAGE);
        }
        Answer::Fixed(_) | Answer::Preflight(_) | Answer::Challenge(_) => {}
    }
    // A refused preflight grants nothing: its answer is not a 2xx, and saying which origin
    // may read it would only confuse.
    let req = session.req_header();
    let origin = req.headers.get(header::ORIGIN);
    let origin = origin.filter(|_| !crate::cors::is_preflight(&req.method, &req.headers));
    let (head, body) = response(ctx, answer, origin)?;
    respond::write(session, head, body).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;
    use crate::limit::LimitReport;
    use crate::snapshot::{compile, Registries};
    use std::sync::Arc;

    fn ctx() -> RequestCtx {
        let text = "[[listeners]]\naddress = \"127.0.0.1:1\"\n\
                    [[routes]]\nname = \"mock\"\npath = \"/mock\"\nrespond = { body = \"hi\" }\n";
        let cfg = config::parse(text).unwrap();
        let snapshot = compile(&cfg, text, &Registries::new().unwrap()).unwrap();
        let mut ctx = RequestCtx::new(Arc::new(snapshot));
        ctx.request_id = HeaderValue::from_static("id-1");
        ctx
    }

    fn names(head: &ResponseHeader) -> Vec<&str> {
        let mut names: Vec<&str> = head.headers.keys().map(|n| n.as_str()).collect();
        names.sort_unstable();
        names
    }

    #[test]
    fn every_answer_carries_the_request_id_hsts_and_ratelimit_headers() {
        let mut ctx = ctx();
        ctx.hsts = Some(HeaderValue::from_static("max-age=60"));
        ctx.limit.report = Some(LimitReport {
            policy: HeaderValue::from_static("\"l\";q=3;w=60"),
            state: HeaderValue::from_static("\"l\";r=2;t=60"),
            remaining: 2,
        });
        let refusal = Refusal::from_verdict(Verdict::ClientCertRequired).unwrap();
        let (head, body) = response(&ctx, Answer::Refuse(refusal), None).unwrap();
        assert_eq!(head.status, 403);
        assert_eq!(head.headers["x-request-id"], "id-1");
        assert_eq!(head.headers["strict-transport-security"], "max-age=60");
        assert_eq!(head.headers["ratelimit"], "\"l\";r=2;t=60");
        assert_eq!(head.headers["ratelimit-policy"], "\"l\";q=3;w=60");
        assert_eq!(head.headers["content-type"], "application/json");
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["error"], "client certificate required");
        assert_eq!(body["request_id"], "id-1");

        let snapshot = ctx.snapshot.clone();
        let route = snapshot.routes.first().unwrap();
        let crate::snapshot::RouteAction::Respond(fixed) = &route.action else {
            panic!("a fixed-response route")
        };
        let (head, body) = response(&ctx, Answer::Fixed(fixed), None).unwrap();
        assert_eq!(&body[..], b"hi");
        assert_eq!(head.headers["x-request-id"], "id-1");
        assert_eq!(head.headers["strict-transport-security"], "max-age=60");
        assert_eq!(head.headers["ratelimit"], "\"l\";r=2;t=60");
    }

    #[test]
    fn refusals_before_a_host_policy_carry_only_their_own_headers() {
        let ctx = ctx();
        let refusal = Refusal::from(Rejection::MethodNotAllowed {
            allow: "GET, HEAD".into(),
            route: crate::proxy::decide::RouteRef(ctx.snapshot.routes[0].clone()),
        });
        let (head, _) = response(&ctx, Answer::Refuse(refusal), None).unwrap();
        assert_eq!(head.status, 405);
        assert_eq!(head.headers["allow"], "GET, HEAD");
        assert_eq!(
            names(&head),
            [
                "allow",
                "cache-control",
                "content-length",
                "content-type",
                "x-request-id"
            ]
        );
    }

    #[test]
    fn each_concern_gives_its_own_header() {
        let redirect = Refusal::from_verdict(Verdict::Redirect("https://a.test/x".into()));
        assert_eq!(
            redirect.and_then(|r| r.header),
            Some((
                header::LOCATION,
                HeaderValue::from_static("https://a.test/x")
            ))
        );
        assert_eq!(Refusal::from_verdict(Verdict::Pass), None);
        let misdirected = Refusal::from_verdict(Verdict::Misdirected).unwrap();
        assert_eq!((misdirected.status, misdirected.header), (421, None));
        let limited = Refusal::from(&LimitRejection {
            status: 429,
            policy: "l".into(),
            message: "rate limit exceeded",
            retry_after_secs: 7,
            report: None,
        });
        assert_eq!(limited.status, 429);
        assert_eq!(
            limited.header,
            Some((header::RETRY_AFTER, HeaderValue::from_static("7")))
        );
    }
}
