//! `validate_responses = "enforce"`: a response is held until it matched its operation's
//! contract, then written, or replaced by a 502.
//!
//! Pingora writes a response's head to the client before any hook sees the body, so no phase
//! of a normal proxy pass could still refuse it. An enforced operation is proxied through a
//! Pingora subrequest instead: the same `ProxyHttp` phases (peer selection, retries, passive
//! health, upstream edits, `upstream_response_filter`) run there, and its response tasks come
//! back here through a pipe rather than to the client.
//!
//! The request's context moves into the subrequest and back when it ends ([`Handover`]), so
//! the request is one request everywhere: one access log line, one set of metrics, one trace,
//! the same limit slots.

use super::RequestCtx;
use crate::contract::{check, Operation, Problem};
use bytes::{Bytes, BytesMut};
use pingora::http::ResponseHeader;
use pingora::protocols::http::subrequest::server::SubrequestHandle;
use pingora::protocols::http::HttpTask;
use pingora::proxy::subrequest::pipe::{pipe_subrequest, InputBody, InputBodyType};
use pingora::proxy::subrequest::{BodyMode, Ctx as SubrequestCtx};
use pingora::proxy::{PreparedSubrequest, Session, SubrequestSpawner};
use pingora::{Error, ErrorType};
use tokio::sync::oneshot;

/// The parent's context on its way through the subrequest, and the way back.
struct Handover {
    ctx: Option<Box<RequestCtx>>,
    back: Option<oneshot::Sender<Box<RequestCtx>>>,
}

impl Handover {
    fn send_back(&mut self) {
        if let (Some(ctx), Some(back)) = (self.ctx.take(), self.back.take()) {
            // The parent only stops listening once it has given up on the request.
            let _ = back.send(ctx);
        }
    }
}

impl Drop for Handover {
    /// However the subrequest ends (even before its `request_filter` ran), the parent gets
    /// its context back.
    fn drop(&mut self) {
        self.send_back();
    }
}

fn handover(session: &mut Session) -> Option<&mut Handover> {
    session
        .subrequest_ctx
        .as_mut()?
        .user_ctx_mut()?
        .downcast_mut::<Handover>()
}

/// In a subrequest's `request_filter`: take on the parent request's context, whose checks
/// have all passed. `false` when this is no enforced operation's subrequest.
pub fn adopt(session: &mut Session, ctx: &mut Box<RequestCtx>) -> bool {
    match handover(session).and_then(|h| h.ctx.take()) {
        Some(parent) => {
            *ctx = parent;
            true
        }
        None => false,
    }
}

/// In a subrequest's `logging`: hand the context back to the parent, which logs and counts
/// the request. `false` when this is no enforced operation's subrequest.
pub fn give_back(session: &mut Session, ctx: &mut Box<RequestCtx>) -> bool {
    let Some(handover) = handover(session) else {
        return false;
    };
    let spent = Box::new(RequestCtx::new(ctx.snapshot.clone()));
    handover.ctx = Some(std::mem::replace(ctx, spent));
    handover.send_back();
    true
}

/// What the parent does with the subrequest's response.
pub enum Verdict {
    /// It matched (or the gateway answered itself): write these tasks.
    Pass(Vec<HttpTask>),
    /// Not let through: answer 502 with this message.
    Refuse(&'static str),
    /// Proxying failed (no healthy target, timeout, ...): answer as `fail_to_proxy` does.
    Failed(Box<Error>),
}

/// The subrequest's response tasks, held; informational heads (a `100 Continue` the parent
/// already sent) are dropped.
struct Held {
    tasks: Vec<HttpTask>,
    body_bytes: u64,
    limit: u64,
    over: bool,
}

impl Held {
    fn take(&mut self, task: HttpTask) -> pingora::Result<Option<HttpTask>> {
        match &task {
            HttpTask::Header(head, _) if head.status.is_informational() => return Ok(None),
            HttpTask::Body(Some(chunk), _) => {
                self.body_bytes += chunk.len() as u64;
                if self.body_bytes > self.limit {
                    // Stop reading: this response is refused whatever follows.
                    self.over = true;
                    return Error::e_explain(ErrorType::InternalError, "response over the bound");
                }
            }
            _ => {}
        }
        self.tasks.push(task);
        Ok(None)
    }

    fn head(&self) -> Option<&ResponseHeader> {
        self.tasks.iter().find_map(|t| match t {
            HttpTask::Header(head, _) => Some(head.as_ref()),
            _ => None,
        })
    }

    /// The body in one piece (no copy when it came in one chunk).
    fn body(&self) -> Bytes {
        let mut chunks = self.tasks.iter().filter_map(|t| match t {
            HttpTask::Body(Some(chunk), _) => Some(chunk),
            _ => None,
        });
        let Some(first) = chunks.next() else {
            return Bytes::new();
        };
        let mut rest = chunks.peekable();
        if rest.peek().is_none() {
            return first.clone();
        }
        let mut whole = BytesMut::with_capacity(self.body_bytes as usize);
        whole.extend_from_slice(first);
        rest.for_each(|c| whole.extend_from_slice(c));
        whole.freeze()
    }
}

/// Messages of the 502s, for the client and the access log.
const OFF_CONTRACT: &str = "upstream response does not match the API contract";
const TOO_LARGE: &str = "upstream response is larger than the API's max_response_bytes";
const ENCODED: &str = "upstream response is content-encoded and cannot be checked";
const INCOMPLETE: &str = "upstream response ended early";

/// Proxy the request through a subrequest, hold the response and check it against `op`. On
/// return `ctx` is the request's context again, with what the subrequest learned (target,
/// timings, trace spans, the gateway's own error).
pub async fn proxy(
    session: &mut Session,
    ctx: &mut Box<RequestCtx>,
    op: &Operation,
    body: Option<Bytes>,
) -> Verdict {
    let Some(spawner) = session.subrequest_spawner.take() else {
        return Verdict::Failed(Error::explain(
            ErrorType::InternalError,
            "no subrequest spawner for an enforced operation",
        ));
    };
    let (back, returned) = oneshot::channel();
    let request_id = ctx.request_id.clone();
    let route = ctx.route.clone();
    let spent = Box::new(RequestCtx::new(ctx.snapshot.clone()));
    let parent = std::mem::replace(ctx, spent);
    let body = body.filter(|b| !b.is_empty());
    let sub_ctx = SubrequestCtx::builder()
        .user_ctx(Box::new(Handover {
            ctx: Some(parent),
            back: Some(back),
        }))
        .body_mode(if body.is_some() {
            BodyMode::ExpectBody
        } else {
            BodyMode::NoBody
        })
        .build();
    let body_len = body.as_ref().map_or(0, Bytes::len);
    let (subrequest, handle) = create(&spawner, session, sub_ctx, body_len);
    session.subrequest_spawner = Some(spawner);
    let input = InputBodyType::Preset(match body {
        Some(b) => InputBody::Bytes(vec![b]),
        None => InputBody::NoBody,
    });
    let mut held = Held {
        tasks: Vec::with_capacity(4),
        body_bytes: 0,
        limit: op.max_response_bytes,
        over: false,
    };
    let piped = pipe_subrequest(session, subrequest, handle, |t| held.take(t), input).await;
    let failure = piped.err().map(|e| e.error);
    match returned.await {
        Ok(own) => *ctx = own,
        Err(_) => {
            // The subrequest ended without a trace of the context (it panicked): keep what
            // the access log needs.
            ctx.request_id = request_id;
            ctx.route = route;
        }
    }
    let head_request = session.req_header().method == http::Method::HEAD;
    let upstream_answered = ctx.upstream.header_at.is_some();
    match judge(head_request, upstream_answered, op, held, failure) {
        Judged::Pass(tasks) => Verdict::Pass(tasks),
        Judged::Failed(e) => Verdict::Failed(e),
        Judged::Refuse(message, problems) => refuse(ctx, op, message, &problems),
    }
}

/// A subrequest for the parent's request. The subrequest reads the request in HTTP/1.1 wire
/// form, which an HTTP/2 head does not give as it is (`HTTP/2` in the request line, no `Host`,
/// maybe a body without `Content-Length`): for that moment the head says HTTP/1.1 and carries
/// `Host` from `:authority` and the length of the body read.
fn create(
    spawner: &SubrequestSpawner,
    session: &mut Session,
    sub_ctx: SubrequestCtx,
    body_len: usize,
) -> (PreparedSubrequest, SubrequestHandle) {
    use http::header::{CONTENT_LENGTH, HOST};
    let req = session.req_header_mut();
    if req.version != http::Version::HTTP_2 {
        return spawner.create_subrequest(&session.downstream_session, sub_ctx);
    }
    let authority = req.uri.authority().map(|a| a.as_str().to_string());
    let added_host = match authority {
        Some(a) if !req.headers.contains_key(HOST) => req.insert_header(HOST, a).is_ok(),
        _ => false,
    };
    let added_length = body_len > 0
        && !req.headers.contains_key(CONTENT_LENGTH)
        && req.insert_header(CONTENT_LENGTH, body_len).is_ok();
    req.set_version(http::Version::HTTP_11);
    let created = spawner.create_subrequest(&session.downstream_session, sub_ctx);
    let req = session.req_header_mut();
    req.set_version(http::Version::HTTP_2);
    if added_host {
        req.remove_header(&HOST);
    }
    if added_length {
        req.remove_header(&CONTENT_LENGTH);
    }
    created
}

/// The verdict on a held response, before it is counted and logged.
enum Judged {
    Pass(Vec<HttpTask>),
    Failed(Box<Error>),
    Refuse(&'static str, Vec<Problem>),
}

/// The verdict on a held response. `upstream_answered`: an upstream response head arrived
/// (else the gateway failed the request itself).
fn judge(
    head_request: bool,
    upstream_answered: bool,
    op: &Operation,
    held: Held,
    failure: Option<Box<Error>>,
) -> Judged {
    if held.over {
        return Judged::Refuse(TOO_LARGE, Vec::new());
    }
    if !upstream_answered {
        // No upstream head: the gateway failed the request (no healthy target, timeout, ...)
        // and answers as a normal proxy pass would.
        return match failure {
            Some(e) => Judged::Failed(e),
            None if held.head().is_some() => Judged::Pass(held.tasks),
            None => Judged::Failed(Error::explain(
                ErrorType::InternalError,
                "subrequest ended without a response",
            )),
        };
    }
    let Some(head) = held.head().filter(|_| failure.is_none()) else {
        return Judged::Refuse(INCOMPLETE, Vec::new());
    };
    let status = head.status.as_u16();
    if head_request || matches!(status, 204 | 304) {
        return Judged::Pass(held.tasks);
    }
    if check::encoded(&head.headers) {
        return Judged::Refuse(ENCODED, Vec::new());
    }
    let content_type = head
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    match check::response(op, status, content_type, &held.body()) {
        Ok(()) => Judged::Pass(held.tasks),
        Err(problems) => Judged::Refuse(OFF_CONTRACT, problems),
    }
}

/// Count and log a refused response; the client gets a 502 that names no detail of it.
fn refuse(
    ctx: &mut RequestCtx,
    op: &Operation,
    message: &'static str,
    problems: &[Problem],
) -> Verdict {
    ctx.snapshot.contract_violations.response(op);
    tracing::warn!(
        api = %op.api,
        operation = %op.id,
        request_id = ?ctx.request_id,
        problems = %serde_json::to_string(problems).unwrap_or_default(),
        "{message} (enforce mode: answered 502)"
    );
    ctx.error = Some(message);
    Verdict::Refuse(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get_pet() -> Operation {
        let text = format!(
            "openapi = \"{}/tests/it/fixtures/petstore/openapi.yaml\"\nupstream = \"p\"\n\
             authorizers = {{ petsAuth = \"jwt\", apiKey = \"keys\" }}\n",
            env!("CARGO_MANIFEST_DIR")
        );
        let api: crate::config::ApiConfig = toml::from_str(&text).unwrap();
        crate::contract::load("pets", &api)
            .unwrap()
            .into_iter()
            .find(|o| o.id == "getPet")
            .unwrap()
    }

    fn held(limit: u64) -> Held {
        Held {
            tasks: Vec::new(),
            body_bytes: 0,
            limit,
            over: false,
        }
    }

    fn head(status: u16, headers: &[(&'static str, &'static str)]) -> HttpTask {
        let mut h = ResponseHeader::build(status, None).unwrap();
        for (k, v) in headers {
            h.insert_header(*k, *v).unwrap();
        }
        HttpTask::Header(Box::new(h), false)
    }

    /// `body` in `pieces` chunks after a JSON head of `status`.
    fn response(
        status: u16,
        body: &str,
        pieces: usize,
        extra: &[(&'static str, &'static str)],
    ) -> Held {
        let mut h = held(1024);
        let mut headers = vec![("content-type", "application/json")];
        headers.extend_from_slice(extra);
        h.take(head(100, &[])).unwrap();
        h.take(head(status, &headers)).unwrap();
        let size = body.len().div_ceil(pieces.max(1)).max(1);
        for chunk in body.as_bytes().chunks(size) {
            h.take(HttpTask::Body(Some(Bytes::copy_from_slice(chunk)), false))
                .unwrap();
        }
        h.take(HttpTask::Body(None, true)).unwrap();
        h.take(HttpTask::Done).unwrap();
        h
    }

    fn refused(j: Judged) -> (&'static str, usize) {
        match j {
            Judged::Refuse(message, problems) => (message, problems.len()),
            Judged::Pass(_) => panic!("passed"),
            Judged::Failed(e) => panic!("failed: {e}"),
        }
    }

    #[test]
    fn a_matching_response_passes_whole_without_informational_heads() {
        let op = get_pet();
        let h = response(200, r#"{"id":7,"name":"rex"}"#, 4, &[]);
        assert_eq!(h.body(), Bytes::from_static(br#"{"id":7,"name":"rex"}"#));
        match judge(false, true, &op, h, None) {
            Judged::Pass(tasks) => {
                assert!(matches!(&tasks[0], HttpTask::Header(h, _) if h.status == 200));
                assert_eq!(tasks.len(), 7, "head, 4 pieces, end, done");
            }
            _ => panic!("refused"),
        }
    }

    #[test]
    fn responses_off_the_contract_or_unreadable_are_refused() {
        let op = get_pet();
        let (message, problems) = refused(judge(
            false,
            true,
            &op,
            response(200, r#"{"id":"x"}"#, 2, &[]),
            None,
        ));
        assert_eq!(
            (message, problems),
            (OFF_CONTRACT, 2),
            "a wrong type and a missing name"
        );
        let gzip = response(200, "\x1f\u{8b}", 1, &[("content-encoding", "gzip")]);
        assert_eq!(refused(judge(false, true, &op, gzip, None)).0, ENCODED);
        let cut = response(200, r#"{"id":7,"name":"rex"}"#, 1, &[]);
        let failure = Some(Error::explain(ErrorType::ReadError, "reset"));
        assert_eq!(refused(judge(false, true, &op, cut, failure)).0, INCOMPLETE);
        assert_eq!(
            refused(judge(false, true, &op, held(10), None)).0,
            INCOMPLETE
        );
    }

    #[test]
    fn a_body_over_the_bound_stops_the_pipe() {
        let mut h = held(8);
        h.take(head(200, &[])).unwrap();
        h.take(HttpTask::Body(Some(Bytes::from_static(b"12345")), false))
            .unwrap();
        assert!(h
            .take(HttpTask::Body(Some(Bytes::from_static(b"6789")), false))
            .is_err());
        assert_eq!(
            refused(judge(false, true, &get_pet(), h, None)).0,
            TOO_LARGE
        );
    }

    #[test]
    fn bodiless_answers_pass_and_gateway_failures_are_answered_as_usual() {
        let op = get_pet();
        let bad = || response(200, r#"{"id":"x"}"#, 1, &[]);
        assert!(matches!(
            judge(true, true, &op, bad(), None),
            Judged::Pass(_)
        ));
        let mut none = held(10);
        none.take(head(304, &[])).unwrap();
        assert!(matches!(
            judge(false, true, &op, none, None),
            Judged::Pass(_)
        ));
        // No upstream head: the gateway's own 502/503/504, or its error to answer with.
        let failure = Some(Error::explain(ErrorType::ConnectRefused, "refused"));
        assert!(matches!(
            judge(false, false, &op, held(10), failure),
            Judged::Failed(e) if e.etype() == &ErrorType::ConnectRefused
        ));
        let mut own = held(10);
        own.take(head(503, &[])).unwrap();
        assert!(matches!(
            judge(false, false, &op, own, None),
            Judged::Pass(_)
        ));
    }
}
