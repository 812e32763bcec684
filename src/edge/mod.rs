//! The edge: what the gateway checks before a request reaches routing, and the connection
//! rules around it. Plain functions of bytes, addresses and settings, unit-tested without a
//! network; `proxy::conn` and the proxy steps apply them.
//!
//! - [`head`]: an HTTP/1 request head, checked as it arrives (sizes, framing, smuggling).
//! - [`proxy_protocol`]: the PROXY protocol header (v1 and v2) a load balancer puts first.
//! - [`client_ip`]: the client address behind trusted proxies.
//! - [`ip_list`]: IPv4 and IPv6 CIDR sets for allow and deny lists.
//! - [`path`]: path spellings refused unless a route allows them.

pub mod client_ip;
pub mod connections;
pub mod framing;
pub mod head;
pub mod ip_list;
pub mod path;
pub mod proxy_protocol;
pub mod settings;

/// The entry of `listeners` (by its bound address) that accepted a connection arriving at
/// `local`: the listener on that exact address, else one on `0.0.0.0`/`::` of the same port.
pub fn listener_for<T>(
    listeners: &[T],
    address: impl Fn(&T) -> Option<std::net::SocketAddr>,
    local: Option<std::net::SocketAddr>,
) -> Option<&T> {
    let local = local?;
    listeners
        .iter()
        .find(|l| address(l) == Some(local))
        .or_else(|| {
            listeners.iter().find(|l| {
                address(l).is_some_and(|a| a.port() == local.port() && a.ip().is_unspecified())
            })
        })
}

/// Why the edge refused a request or a connection. Each reason has a fixed status, a stable
/// label (the `reason` of `gatehouse_edge_refusals_total` and the access log's `error`) and
/// the message of the JSON body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// The request head did not arrive within the header timeout.
    HeaderTimeout,
    /// The request head is larger than `max_header_bytes`.
    HeaderTooLarge,
    /// More header fields than `max_headers`.
    TooManyHeaders,
    /// The request target is longer than `max_uri_bytes`.
    UriTooLong,
    /// The request line is not `METHOD target HTTP/1.x`.
    BadRequestLine,
    /// A header line that is not `name: value` with a token name and a visible value.
    BadHeader,
    /// A line ending in LF without CR, or a CR not followed by LF.
    BareLineEnding,
    /// A header line continued on the next line (obs-fold, RFC 9112 5.2).
    ObsFold,
    /// Both `Content-Length` and `Transfer-Encoding`.
    LengthAndChunked,
    /// A `Content-Length` that is not a plain decimal number.
    InvalidContentLength,
    /// More than one `Content-Length`.
    DuplicateContentLength,
    /// A `Transfer-Encoding` other than a single `chunked`, or one on HTTP/1.0.
    InvalidTransferEncoding,
    /// More than one `Host`.
    DuplicateHost,
    /// The PROXY protocol header is missing or malformed on a listener that requires it.
    ProxyProtocol,
    /// The client address is not allowed (allow list) or is denied (deny list).
    IpDenied,
    /// `%2F` in the path.
    EncodedSlash,
    /// `\` or `%5C` in the path.
    Backslash,
    /// `;` in the path (path parameters).
    PathParameters,
    /// An encoded control character (`%00`-`%1F`, `%7F`) in the path.
    ControlCharacter,
    /// Encoded bytes in the path that are not valid UTF-8 (overlong forms included).
    InvalidUtf8,
    /// A path segment that ends in encoded whitespace (`%20`, `%09`).
    TrailingWhitespace,
    /// A chunked body whose framing is malformed.
    InvalidChunked,
    /// The listener, or the client's address, has as many connections open as it may.
    TooManyConnections,
    /// The body is larger than the route's `max_body_bytes`.
    BodyTooLarge,
    /// The client stopped sending the body for longer than the body timeout.
    BodyTimeout,
}

impl Reason {
    /// Every reason, for metrics registered up front.
    pub const ALL: [Reason; 25] = [
        Reason::HeaderTimeout,
        Reason::HeaderTooLarge,
        Reason::TooManyHeaders,
        Reason::UriTooLong,
        Reason::BadRequestLine,
        Reason::BadHeader,
        Reason::BareLineEnding,
        Reason::ObsFold,
        Reason::LengthAndChunked,
        Reason::InvalidContentLength,
        Reason::DuplicateContentLength,
        Reason::InvalidTransferEncoding,
        Reason::DuplicateHost,
        Reason::ProxyProtocol,
        Reason::IpDenied,
        Reason::EncodedSlash,
        Reason::Backslash,
        Reason::PathParameters,
        Reason::ControlCharacter,
        Reason::InvalidUtf8,
        Reason::TrailingWhitespace,
        Reason::InvalidChunked,
        Reason::TooManyConnections,
        Reason::BodyTooLarge,
        Reason::BodyTimeout,
    ];

    /// The status of the answer.
    pub fn status(self) -> u16 {
        match self {
            Self::HeaderTimeout | Self::BodyTimeout => 408,
            Self::HeaderTooLarge | Self::TooManyHeaders => 431,
            Self::UriTooLong => 414,
            Self::IpDenied => 403,
            Self::BodyTooLarge => 413,
            Self::TooManyConnections => 503,
            _ => 400,
        }
    }

    /// Stable snake_case label for metrics and logs.
    pub fn label(self) -> &'static str {
        match self {
            Self::HeaderTimeout => "header_timeout",
            Self::HeaderTooLarge => "header_too_large",
            Self::TooManyHeaders => "too_many_headers",
            Self::UriTooLong => "uri_too_long",
            Self::BadRequestLine => "bad_request_line",
            Self::BadHeader => "bad_header",
            Self::BareLineEnding => "bare_line_ending",
            Self::ObsFold => "obs_fold",
            Self::LengthAndChunked => "length_and_chunked",
            Self::InvalidContentLength => "invalid_content_length",
            Self::DuplicateContentLength => "duplicate_content_length",
            Self::InvalidTransferEncoding => "invalid_transfer_encoding",
            Self::DuplicateHost => "duplicate_host",
            Self::ProxyProtocol => "proxy_protocol",
            Self::IpDenied => "ip_denied",
            Self::EncodedSlash => "encoded_slash",
            Self::Backslash => "backslash",
            Self::PathParameters => "path_parameters",
            Self::ControlCharacter => "control_character",
            Self::InvalidUtf8 => "invalid_utf8",
            Self::TrailingWhitespace => "trailing_whitespace",
            Self::InvalidChunked => "invalid_chunked",
            Self::TooManyConnections => "too_many_connections",
            Self::BodyTooLarge => "body_too_large",
            Self::BodyTimeout => "body_timeout",
        }
    }

    /// The `error` of the JSON body.
    pub fn message(self) -> &'static str {
        match self {
            Self::HeaderTimeout => "request header not received in time",
            Self::HeaderTooLarge => "request header too large",
            Self::TooManyHeaders => "too many request header fields",
            Self::UriTooLong => "request target too long",
            Self::BadRequestLine => "invalid request line",
            Self::BadHeader => "invalid request header field",
            Self::BareLineEnding => "line ending without CRLF",
            Self::ObsFold => "folded header line",
            Self::LengthAndChunked => "both Transfer-Encoding and Content-Length present",
            Self::InvalidContentLength => "invalid Content-Length",
            Self::DuplicateContentLength => "more than one Content-Length",
            Self::InvalidTransferEncoding => "unsupported Transfer-Encoding",
            Self::DuplicateHost => "multiple Host headers",
            Self::ProxyProtocol => "invalid PROXY protocol header",
            Self::IpDenied => "client address not allowed",
            Self::EncodedSlash => "encoded slash in path",
            Self::Backslash => "backslash in path",
            Self::PathParameters => "path parameters (;) in path",
            Self::ControlCharacter => "control character in path",
            Self::InvalidUtf8 => "invalid UTF-8 in path",
            Self::TrailingWhitespace => "path segment ends in whitespace",
            Self::InvalidChunked => "malformed chunked body",
            Self::TooManyConnections => "too many connections",
            Self::BodyTooLarge => "request body too large",
            Self::BodyTimeout => "request body not received in time",
        }
    }
}

/// `gatehouse_edge_refusals_total`, one counter per reason, resolved once so that counting a
/// refusal is an index, not a label lookup.
#[derive(Debug, Clone)]
pub struct RefusalCounters(Vec<prometheus::IntCounter>);

impl RefusalCounters {
    pub fn new(family: &prometheus::IntCounterVec) -> Self {
        Self(
            Reason::ALL
                .iter()
                .map(|r| family.with_label_values(&[r.label()]))
                .collect(),
        )
    }

    /// Count one refusal for `reason`.
    pub fn count(&self, reason: Reason) {
        // `ALL` lists the reasons in declaration order (tested), so the discriminant is the index.
        if let Some(c) = self.0.get(reason as usize) {
            c.inc();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_lists_reasons_in_declaration_order() {
        for (i, r) in Reason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i, "{r:?}");
        }
    }

    #[test]
    fn labels_are_unique_and_statuses_are_client_errors() {
        let labels: std::collections::HashSet<_> = Reason::ALL.iter().map(|r| r.label()).collect();
        assert_eq!(labels.len(), Reason::ALL.len());
        assert!(Reason::ALL
            .iter()
            .all(|r| (400..500).contains(&r.status()) || *r == Reason::TooManyConnections));
    }
}
