//! Responses the gateway writes itself, built and sent: JSON errors and fixed (mock)
//! responses, each with the request id. Which other headers they carry is decided in
//! `proxy::refusal`, the only caller.

use crate::observe::trace::TraceIdText;
use crate::snapshot::FixedResponse;
use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use pingora::{Error, ErrorSource, ErrorType};

/// The head and body of `{"error": message, "request_id": id, "trace_id": trace}` with
/// `status` (`trace_id` only when the request is traced); `headers` are set after the standard
/// ones and replace any of the same name.
pub fn error_response(
    status: u16,
    message: &str,
    request_id: &HeaderValue,
    trace_id: Option<TraceIdText>,
    headers: impl IntoIterator<Item = (HeaderName, HeaderValue)>,
) -> pingora::Result<(ResponseHeader, Bytes)> {
    json_response(
        status,
        error_body(message, request_id, trace_id),
        request_id,
        headers,
    )
}

/// A JSON answer with the standard headers, then `headers`.
fn json_response(
    status: u16,
    body: Bytes,
    request_id: &HeaderValue,
    headers: impl IntoIterator<Item = (HeaderName, HeaderValue)>,
) -> pingora::Result<(ResponseHeader, Bytes)> {
    // The standard four and room for the few a refusal adds (see `proxy::refusal`).
    let mut resp = ResponseHeader::build(status, Some(8))?;
    resp.insert_header(header::CONTENT_TYPE, "application/json")?;
    resp.insert_header(header::CONTENT_LENGTH, body.len())?;
    resp.insert_header(header::CACHE_CONTROL, "no-store")?;
    resp.insert_header(super::request_id::HEADER.clone(), request_id.clone())?;
    for (name, value) in headers {
        resp.insert_header(name, value)?;
    }
    Ok((resp, body))
}

/// A complete HTTP/1.1 error response that closes the connection, for answers written
/// before Pingora has a session (refused request heads and connections).
pub fn raw_error(status: u16, message: &str, request_id: &HeaderValue) -> Vec<u8> {
    let body = error_body(message, request_id, None);
    let reason = http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("");
    let mut out = Vec::with_capacity(192 + body.len());
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(format!("{status} {reason}").as_bytes());
    out.extend_from_slice(b"\r\ncontent-type: application/json\r\ncache-control: no-store\r\n");
    out.extend_from_slice(b"connection: close\r\ncontent-length: ");
    out.extend_from_slice(body.len().to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(super::request_id::HEADER.as_str().as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(request_id.as_bytes());
    out.extend_from_slice(b"\r\n\r\n");
    out.extend_from_slice(&body);
    out
}

fn error_body(message: &str, request_id: &HeaderValue, trace_id: Option<TraceIdText>) -> Bytes {
    Bytes::from(error_value(message, request_id, trace_id).to_string())
}

fn error_value(
    message: &str,
    request_id: &HeaderValue,
    trace_id: Option<TraceIdText>,
) -> serde_json::Value {
    let id = request_id.to_str().unwrap_or("");
    match trace_id {
        Some(trace) => serde_json::json!({
            "error": message,
            "request_id": id,
            "trace_id": trace.to_string(),
        }),
        None => serde_json::json!({ "error": message, "request_id": id }),
    }
}

/// The `error` of a request refused by its API contract.
pub const CONTRACT_MESSAGE: &str = "request does not match the API contract";

/// A contract refusal: the error body with `"problems": [{"in", "pointer", "message"}]`.
pub fn problems_response(
    refused: &crate::contract::Refused,
    request_id: &HeaderValue,
    trace_id: Option<TraceIdText>,
    headers: impl IntoIterator<Item = (HeaderName, HeaderValue)>,
) -> pingora::Result<(ResponseHeader, Bytes)> {
    let mut value = error_value(CONTRACT_MESSAGE, request_id, trace_id);
    value["problems"] = serde_json::to_value(&refused.problems).unwrap_or_default();
    let body = Bytes::from(value.to_string());
    json_response(refused.status, body, request_id, headers)
}

/// The head and body of a route's fixed response; `headers` are appended to the configured
/// ones.
pub fn fixed_response(
    fixed: &FixedResponse,
    request_id: &HeaderValue,
    headers: impl IntoIterator<Item = (HeaderName, HeaderValue)>,
) -> pingora::Result<(ResponseHeader, Bytes)> {
    let mut resp = ResponseHeader::build(fixed.status, Some(fixed.headers.len() + 2))?;
    for (name, value) in fixed.headers.iter().cloned().chain(headers) {
        resp.append_header(name, value)?;
    }
    resp.insert_header(header::CONTENT_LENGTH, fixed.body.len())?;
    resp.insert_header(super::request_id::HEADER.clone(), request_id.clone())?;
    Ok((resp, fixed.body.clone()))
}

/// The `200` an ACME CA's HTTP-01 validation expects: the key authorization as the body.
pub fn key_authorization(
    key_authorization: &str,
    request_id: &HeaderValue,
) -> pingora::Result<(ResponseHeader, Bytes)> {
    let mut resp = ResponseHeader::build(200, Some(3))?;
    resp.insert_header(header::CONTENT_TYPE, "application/octet-stream")?;
    resp.insert_header(header::CONTENT_LENGTH, key_authorization.len())?;
    resp.insert_header(super::request_id::HEADER.clone(), request_id.clone())?;
    Ok((resp, Bytes::copy_from_slice(key_authorization.as_bytes())))
}

/// A `204 No Content` with `headers` and the request id (an allowed CORS preflight).
pub fn no_content(
    request_id: &HeaderValue,
    headers: impl IntoIterator<Item = (HeaderName, HeaderValue)>,
) -> pingora::Result<(ResponseHeader, Bytes)> {
    let mut resp = ResponseHeader::build(204, Some(8))?;
    for (name, value) in headers {
        resp.append_header(name, value)?;
    }
    resp.insert_header(super::request_id::HEADER.clone(), request_id.clone())?;
    Ok((resp, Bytes::new()))
}

/// Write a response the gateway built; no body for `HEAD` or when it is empty.
pub async fn write(
    session: &mut Session,
    head: ResponseHeader,
    body: Bytes,
) -> pingora::Result<()> {
    let head_only = session.req_header().method == http::Method::HEAD || body.is_empty();
    session
        .write_response_header(Box::new(head), head_only)
        .await?;
    if !head_only {
        session.write_response_body(Some(body), true).await?;
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
        let body = error_body("no \"route\"", &HeaderValue::from_static("id-1"), None);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"], "no \"route\"");
        assert_eq!(v["request_id"], "id-1");
    }
}
