//! Checking a request (parameters, content type, JSON body) and a response body against an
//! operation: plain functions over bytes and headers, each finding a [`Problem`].

use super::operations::{Media, Operation};
use super::params::Sources;
use crate::routing::template;
use serde_json::Value;

/// Most problems listed for one request: enough to fix a client, bounded for the answer.
pub const MAX_PROBLEMS: usize = 16;

/// One way the request differs from the contract.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    /// `path`, `query`, `header`, `cookie` or `body`.
    #[serde(rename = "in")]
    pub location: &'static str,
    /// JSON pointer: `/petId` for a parameter, `/tags/0` into the body.
    pub pointer: String,
    pub message: String,
}

impl Problem {
    fn new(location: &'static str, pointer: String, message: impl Into<String>) -> Self {
        Self {
            location,
            pointer,
            message: message.into(),
        }
    }
}

/// Why a body cannot be taken: the status and the problems.
#[derive(Debug, PartialEq, Eq)]
pub struct Refused {
    /// 400, or 415 for a content type the operation does not take.
    pub status: u16,
    pub problems: Vec<Problem>,
}

/// The parameters of a request for `op`: `path` (normalized, as routed), the raw query.
pub fn parameters(
    op: &Operation,
    path: &[u8],
    query: Option<&[u8]>,
    headers: &http::HeaderMap,
    out: &mut Vec<Problem>,
) {
    if op.params.is_empty() {
        return;
    }
    let captures = template::captures(&op.segments, path).unwrap_or_default();
    let sources = Sources::new(captures, query, headers);
    for p in &op.params {
        if out.len() >= MAX_PROBLEMS {
            return;
        }
        // Built only for a problem: a valid request allocates no pointers.
        let at = || format!("/{}", p.shape.name);
        let value = if p.json {
            match sources.value(p.location, &raw_string(&p.shape)) {
                Some(Value::String(text)) => match serde_json::from_str(&text) {
                    Ok(v) => Some(v),
                    Err(e) => {
                        out.push(Problem::new(
                            p.location.label(),
                            at(),
                            format!("not JSON: {e}"),
                        ));
                        continue;
                    }
                },
                other => other,
            }
        } else {
            sources.value(p.location, &p.shape)
        };
        let Some(value) = value else {
            if p.required {
                out.push(Problem::new(
                    p.location.label(),
                    at(),
                    "required parameter is missing",
                ));
            }
            continue;
        };
        if let Some(schema) = &p.schema {
            if !schema.is_valid(&value) {
                schema_problems(schema, &value, p.location.label(), &at(), out);
            }
        }
    }
}

/// A parameter read as one string (for `content`-serialized parameters).
fn raw_string(shape: &super::params::Shape) -> super::params::Shape {
    super::params::Shape {
        kind: super::params::Kind::Scalar(super::params::Scalar::String),
        ..shape.clone()
    }
}

/// The media type `content_type` names among `media`, the most specific range first.
fn media_for<'m>(media: &'m [Media], content_type: &str) -> Option<&'m Media> {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let major = essence.split('/').next().unwrap_or("");
    media
        .iter()
        .find(|m| m.range == essence)
        .or_else(|| {
            media
                .iter()
                .find(|m| m.range.strip_suffix("/*") == Some(major) && !major.is_empty())
        })
        .or_else(|| media.iter().find(|m| m.range == "*/*"))
}

/// The request body of `op`: present when required, of a media type the operation takes, and
/// for JSON media types, JSON that the schema accepts. `body` is `None` for a request without
/// one.
pub fn body(
    op: &Operation,
    content_type: Option<&str>,
    body: Option<&[u8]>,
) -> Result<(), Refused> {
    let Some(spec) = &op.body else {
        return Ok(());
    };
    let bad = |status, message: String| Refused {
        status,
        problems: vec![Problem::new("body", String::new(), message)],
    };
    let Some(body) = body.filter(|b| !b.is_empty()) else {
        if spec.required {
            return Err(bad(400, "request body is required".into()));
        }
        return Ok(());
    };
    if spec.media.is_empty() {
        return Ok(());
    }
    let Some(content_type) = content_type else {
        return Err(bad(415, "Content-Type is missing".into()));
    };
    let Some(media) = media_for(&spec.media, content_type) else {
        let takes: Vec<&str> = spec.media.iter().map(|m| m.range.as_str()).collect();
        return Err(bad(
            415,
            format!(
                "Content-Type {content_type:?} is not one of {}",
                takes.join(", ")
            ),
        ));
    };
    json_body(media, body).map_err(|problems| Refused {
        status: 400,
        problems,
    })
}

/// A JSON body against its media type's schema (other media types pass as they are).
pub fn json_body(media: &Media, body: &[u8]) -> Result<(), Vec<Problem>> {
    if !media.json {
        return Ok(());
    }
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        vec![Problem::new(
            "body",
            String::new(),
            format!("not JSON: {e}"),
        )]
    })?;
    let Some(schema) = &media.schema else {
        return Ok(());
    };
    let mut out = Vec::new();
    schema_problems(schema, &value, "body", "", &mut out);
    if out.is_empty() {
        Ok(())
    } else {
        Err(out)
    }
}

/// A response body of `status` against the operation's schema for it; `Ok` when the
/// operation has none.
pub fn response(
    op: &Operation,
    status: u16,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<(), Vec<Problem>> {
    let code = status.to_string();
    let class = format!("{}XX", status / 100);
    let declared = op
        .responses
        .iter()
        .find(|(s, _)| *s == code)
        .or_else(|| op.responses.iter().find(|(s, _)| *s == class))
        .or_else(|| op.responses.iter().find(|(s, _)| s == "DEFAULT"));
    let Some((_, media)) = declared else {
        return Err(vec![Problem::new(
            "response",
            String::new(),
            format!("status {status} is not in the operation's responses"),
        )]);
    };
    if media.is_empty() {
        return Ok(());
    }
    let Some(m) = content_type.and_then(|ct| media_for(media, ct)) else {
        return Err(vec![Problem::new(
            "response",
            String::new(),
            format!("Content-Type {content_type:?} is not declared for status {status}"),
        )]);
    };
    json_body(m, body).map_err(|mut problems| {
        for p in &mut problems {
            p.location = "response";
        }
        problems
    })
}

fn schema_problems(
    schema: &jsonschema::Validator,
    value: &Value,
    location: &'static str,
    prefix: &str,
    out: &mut Vec<Problem>,
) {
    // The common case, without building errors.
    if schema.is_valid(value) {
        return;
    }
    for e in schema.iter_errors(value) {
        if out.len() >= MAX_PROBLEMS {
            return;
        }
        let pointer = format!("{prefix}{}", e.instance_path());
        // Without the value: a password that is too short must not reach the logs, and an
        // answer should not echo up to 64 KiB back per problem.
        out.push(Problem::new(location, pointer, e.masked().to_string()));
    }
}

/// A response being received, kept (up to the validated-body bound) until it ends so that
/// it can be checked against the operation.
pub struct ResponseCapture {
    status: u16,
    content_type: Option<String>,
    body: bytes::BytesMut,
    /// The operation's `max_response_bytes`.
    limit: u64,
    /// Larger than the bound: not checked.
    over: bool,
}

/// Whether a response body is content-encoded (and so cannot be checked as it is).
pub fn encoded(headers: &http::HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_ENCODING)
        .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"))
}

impl ResponseCapture {
    /// A capture of a response with `status`; `None` when it cannot be checked (an encoded
    /// body, which would need decoding first).
    pub fn new(status: u16, headers: &http::HeaderMap, limit: u64) -> Option<Self> {
        if encoded(headers) {
            return None;
        }
        let content_type = headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        Some(Self {
            status,
            content_type,
            body: bytes::BytesMut::new(),
            limit,
            over: false,
        })
    }

    pub fn push(&mut self, chunk: &[u8]) {
        if self.over {
            return;
        }
        if (self.body.len() + chunk.len()) as u64 > self.limit {
            self.over = true;
            self.body = bytes::BytesMut::new();
            return;
        }
        self.body.extend_from_slice(chunk);
    }

    /// The response against `op`; `Ok` when it was too large to check.
    pub fn finish(&self, op: &Operation) -> Result<(), Vec<Problem>> {
        if self.over {
            return Ok(());
        }
        response(op, self.status, self.content_type.as_deref(), &self.body)
    }
}
