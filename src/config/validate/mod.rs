//! The one semantic validation pass: cross references, uniqueness, value ranges, names. Every
//! check pushes onto one [`Problems`] list, so `gatehouse check` reports all problems in one
//! run. Entries that could not be read are skipped here, and references to them are not
//! reported as unknown (see [`Present`]).

mod apis;
mod auth;
mod cors;
mod edge;
mod firewall;
mod limits;
mod routes;
mod server;
mod tls;
mod traces;
mod transforms;
mod upstreams;

use super::{Config, KeyPath, Present, Problems};
use std::time::Duration;

pub(super) fn validate(config: &Config, present: &Present, p: &mut Problems) {
    server::validate(config, present, p);
    upstreams::validate(config, present, p);
    limits::validate(config, p);
    auth::validate(config, p);
    tls::validate(config, present, p);
    routes::validate(config, present, p);
    edge::validate(config, present, p);
    firewall::validate(config, present, p);
    traces::validate(config, p);
    cors::validate(config, p);
    apis::validate(config, present, p);
}

/// Names that go into headers, RateLimit-Policy and metric labels: letters, digits, `_`, `-`
/// and `.`.
fn token_name(p: &mut Problems, path: KeyPath, what: &str, name: &str) {
    let ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if !ok {
        p.at(
            path,
            format!("{what} names may only use letters, digits, `_`, `-` and `.`"),
        );
    }
}

/// Whether `name` is a header name (any case); reports `"NAME" is not a header name` at
/// `path` when it is not.
fn header_name(p: &mut Problems, path: KeyPath, name: &str) -> bool {
    let valid = http::HeaderName::from_bytes(name.as_bytes()).is_ok();
    if !valid {
        p.at(path, format!("{name:?} is not a header name"));
    }
    valid
}

/// Longest name shown in logs, metric labels and the admin API.
const MAX_NAME_CHARS: usize = 128;

/// Names shown in logs, metric labels, headers and the admin API: not empty, not too long, and
/// without control characters or the invisible and bidirectional formatting characters that
/// make a name read differently from what it is (`admin\u{202e}` shows as something else).
fn display_name(p: &mut Problems, path: KeyPath, what: &str, name: &str) {
    if name.is_empty() {
        p.at(path, format!("{what} name must not be empty"));
    } else if name.chars().count() > MAX_NAME_CHARS {
        p.at(
            path,
            format!("{what} name is longer than {MAX_NAME_CHARS} characters"),
        );
    } else if let Some(c) = name.chars().find(|c| hidden_char(*c)) {
        p.at(
            path,
            format!(
                "{what} name contains the control or formatting character U+{:04X}",
                c as u32
            ),
        );
    }
}

/// Control characters, and Unicode format characters that change how text is displayed
/// without being visible: bidirectional marks, embeddings, overrides and isolates, zero-width
/// characters and the byte order mark.
fn hidden_char(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061C}'
                | '\u{200B}'..='\u{200F}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2060}'..='\u{2069}'
                | '\u{FEFF}'
        )
}

/// A duration within `[min, max]`. Timers far in the future overflow the runtime's clock, and
/// intervals near zero make the gateway busy-loop, so every duration has a range.
fn duration_in(p: &mut Problems, path: KeyPath, value: Duration, min: Duration, max: Duration) {
    if value < min || value > max {
        let show = |d: Duration| humantime::format_duration(d).to_string();
        let message = if min.is_zero() {
            format!("must be at most {}", show(max))
        } else {
            format!("must be between {} and {}", show(min), show(max))
        };
        p.at(path, message);
    }
}

/// Request headers the gateway sets or needs as they are, which neither an authorizer nor a
/// route's transform may write: framing and routing headers (set from a claim they would let a
/// token holder smuggle requests), forwarding, the request id and trace context, the client
/// certificate.
const GATEWAY_REQUEST_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "upgrade",
    "te",
    "trailer",
    "keep-alive",
    "proxy-connection",
    "expect",
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-request-id",
    "traceparent",
    "tracestate",
    "x-client-cert-subject",
    "x-client-cert-sha256",
];

const MS: Duration = Duration::from_millis(1);
const SECOND: Duration = Duration::from_secs(1);
const MINUTE: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(86_400);

#[cfg(test)]
mod tests;
