//! Responses written by the gateway itself: JSON errors and fixed (mock) responses. Every one
//! carries the request id.

use crate::snapshot::FixedResponse;
use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use pingora::{Error, ErrorSource, ErrorType};

/// Write `{"error": message, "request_id": id}` with `status`.
pub async fn send_error(
    session: &mut Session,
    status: u16,
    message: &str,
    request_id: &HeaderValue,
    extra: &[(HeaderName, HeaderValue)],
) -> pingora::Result<()> {
    let body = error_body(message, request_id);
    let mut resp = ResponseHeader::build(status, Some(4 + extra.len()))?;
    resp.insert_header(header::CONTENT_TYPE, "application/json")?;
    resp.insert_header(header::CONTENT_LENGTH, body.len())?;
    resp.insert_header(header::CACHE_CONTROL, "no-store")?;
    resp.insert_header(super::request_id::HEADER.clone(), request_id.clone())?;
    for (name, value) in extra {
        resp.insert_header(name.clone(), value.clone())?;
    }
    let head_only = session.req_header().method == http::Method::HEAD;
    session
        .write_response_header(Box::new(resp), head_only)
        .await?;
    if !head_only {
        session.write_response_body(Some(body), true).await?;
    }
    Ok(())
}

fn error_body(message: &str, request_id: &HeaderValue) -> Bytes {
    let id = request_id.to_str().unwrap_or("");
    let value = serde_json::json!({ "error": message, "request_id": id });
    Bytes::from(value.to_string())
}

/// Write a route's fixed response.
pub async fn send_fixed(
    session: &mut Session,
    fixed: &FixedResponse,
    request_id: &HeaderValue,
    extra: &[(HeaderName, HeaderValue)],
) -> pingora::Result<()> {
    let mut resp = ResponseHeader::build(fixed.status, Some(fixed.headers.len() + 2))?;
    for (name, value) in fixed.headers.iter().chain(extra) {
        resp.append_header(name.clone(), value.clone())?;
    }
    resp.insert_header(header::CONTENT_LENGTH, fixed.body.len())?;
    resp.insert_header(super::request_id::HEADER.clone(), request_id.clone())?;
    let head_only = session.req_header().method == http::Method::HEAD || fixed.body.is_empty();
    session
        .write_response_header(Box::new(resp), head_only)
        .await?;
    if !head_only {
        session
            .write_response_body(Some(fixed.body.clone()), true)
            .await?;
    }
    Ok(())
}

/// Status and client-facing message for a proxying failure; status 0 means the client is gone
/// and nothing should be written.
pub fn status_for_error(e: &Error) -> (u16, &'static str) {
    use ErrorType::*;
    match (e.etype(), e.esource()) {
        (HTTPStatus(code), _) => (*code, "request failed"),
        (ReadError | WriteError | ConnectionClosed, ErrorSource::Downstream) => (0, ""),
        (ReadTimedout, ErrorSource::Downstream) => (408, "request timed out"),
        (_, ErrorSource::Downstream) => (400, "malformed request"),
        (ConnectTimedout | TLSHandshakeTimedout, _) => (504, "upstream connect timed out"),
        (ReadTimedout | WriteTimedout, ErrorSource::Upstream) => (504, "upstream timed out"),
        (
            ConnectRefused | ConnectNoRoute | ConnectError | TLSHandshakeFailure | InvalidCert
            | HandshakeError | SocketError | BindError,
            _,
        ) => (502, "upstream unreachable"),
        (_, ErrorSource::Upstream) => (502, "invalid response from upstream"),
        _ => (500, "internal error"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(etype: ErrorType, source: ErrorSource) -> Box<Error> {
        let mut e = Error::new(etype);
        e.esource = source;
        e
    }

    #[test]
    fn upstream_failures_map_to_gateway_statuses() {
        use ErrorType::*;
        assert_eq!(
            status_for_error(&err(ConnectRefused, ErrorSource::Upstream)).0,
            502
        );
        assert_eq!(
            status_for_error(&err(ConnectTimedout, ErrorSource::Upstream)).0,
            504
        );
        assert_eq!(
            status_for_error(&err(ReadTimedout, ErrorSource::Upstream)).0,
            504
        );
        assert_eq!(
            status_for_error(&err(H1Error, ErrorSource::Upstream)).0,
            502
        );
        assert_eq!(
            status_for_error(&err(HTTPStatus(503), ErrorSource::Internal)).0,
            503
        );
        assert_eq!(
            status_for_error(&err(ConnectionClosed, ErrorSource::Downstream)).0,
            0
        );
        assert_eq!(
            status_for_error(&err(InvalidHTTPHeader, ErrorSource::Downstream)).0,
            400
        );
    }

    #[test]
    fn error_bodies_are_json_with_the_request_id() {
        let body = error_body("no \"route\"", &HeaderValue::from_static("id-1"));
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"], "no \"route\"");
        assert_eq!(v["request_id"], "id-1");
    }
}
