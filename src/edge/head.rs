//! The HTTP/1 request head, checked as its bytes arrive and before Pingora parses it.
//!
//! Every rule here exists for one of two reasons:
//!
//! - **Request smuggling.** The gateway and the upstream must never read a request's framing
//!   differently. Whatever one parser tolerates and another rejects or reads otherwise (a
//!   bare LF, a folded line, two `Content-Length`s, `Transfer-Encoding` next to
//!   `Content-Length`, a `Transfer-Encoding` list, `chunked` on HTTP/1.0) is a place where a
//!   second request can hide inside the first. So anything ambiguous is refused outright, the
//!   way nginx does, instead of being "repaired" into something one side may read otherwise.
//! - **Resource limits.** A head is buffered whole before anything else happens, so its size,
//!   its number of fields and its target length are bounded before they are spent.
//!
//! [`scan`] is called on the bytes received so far, each time more arrive. It allocates
//! nothing, looks at no more than `max_header_bytes` bytes, and on the common path makes one
//! `memchr` pass over the line ends (which also finds the end of the head), one SIMD count of
//! CRs and one `httparse` parse.

use crate::edge::Reason;

/// Limits for one request head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadLimits {
    /// Largest head in bytes, leading empty lines and the final blank line included.
    pub max_header_bytes: usize,
    /// Most header fields (at most [`HEADERS_CAP`] are ever accepted).
    pub max_headers: usize,
    /// Longest request target in bytes.
    pub max_uri_bytes: usize,
}

/// The outcome of scanning the bytes received so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scan {
    /// More bytes needed.
    Partial,
    /// A whole, acceptable head of `len` bytes (through the blank line); `body` says how the
    /// body is framed.
    Complete {
        /// Bytes of the head, leading empty lines and the final CRLF CRLF included.
        len: usize,
        /// How the body that follows is framed.
        body: Body,
        /// The request asks to switch protocols (`Upgrade`): what follows it may not be HTTP/1.
        upgrade: bool,
    },
    /// The head is refused; the connection gets this reason's answer and is closed.
    Refused(Reason),
}

/// How the request body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    /// No body (no `Content-Length`, or `Content-Length: 0`).
    None,
    /// A body of exactly this many bytes.
    Length(u64),
    /// A chunked body (`Transfer-Encoding: chunked`).
    Chunked,
}

/// The most header fields ever parsed: the field array lives on the stack (32 bytes a field),
/// so it has a fixed size; a larger `max_headers` counts as this.
pub const HEADERS_CAP: usize = 256;

/// Slack over `max_uri_bytes` for the method, the version and the two spaces of a request
/// line, used to refuse an overlong target before its line has ended.
const REQUEST_LINE_SLACK: usize = 64;

/// Checks the request head in `buf`, the bytes received so far on the connection.
///
/// Returns [`Scan::Partial`] while the head may still become acceptable, [`Scan::Complete`]
/// once it has ended (bytes after it, such as the body, are not looked at), and
/// [`Scan::Refused`] as soon as it cannot. Refusals found on a partial head (a bare line
/// ending, a folded line, an overlong request line, too many bytes) are reported early so a
/// client cannot hold a connection open with a head that is already doomed.
pub fn scan(buf: &[u8], limits: &HeadLimits) -> Scan {
    // A head within the limit ends within its first `max_header_bytes` bytes, so nothing past
    // them is looked at: each call costs at most the limit, however much the caller has read.
    let window = &buf[..buf.len().min(limits.max_header_bytes)];
    // RFC 9112 2.2: a server should ignore at least one empty line before the request line.
    // They are part of the head for `len` and the byte limit, so endless CRLFs still hit it.
    let start = leading_empty_lines(window);
    let rest = &window[start..];

    // One pass over the line ends: every LF has its CR, no field line starts with SP or HT
    // (obs-fold), and the first empty line ends the head.
    let mut line_start = 0;
    let mut lines = 0usize;
    let mut end = None;
    for at in memchr::memchr_iter(b'\n', rest) {
        if at == 0 || rest[at - 1] != b'\r' {
            return Scan::Refused(Reason::BareLineEnding);
        }
        lines += 1;
        if at == line_start + 1 {
            end = Some(at + 1);
            break;
        }
        if matches!(rest.get(at + 1), Some(b' ' | b'\t')) {
            return Scan::Refused(Reason::ObsFold);
        }
        line_start = at + 1;
    }
    let Some(end) = end else {
        return partial(rest, buf.len(), limits);
    };
    let len = start + end;
    // A CR that is not part of a CRLF: more CRs than LFs.
    if memchr::memchr_iter(b'\r', &rest[..end]).count() != lines {
        return Scan::Refused(Reason::BareLineEnding);
    }

    // Uninitialized: zeroing 256 fields (8 KiB) on every request would cost more than parsing.
    let mut fields = [const { std::mem::MaybeUninit::uninit() }; HEADERS_CAP];
    let mut request = httparse::Request::new(&mut []);
    let fields = &mut fields[..limits.max_headers.min(HEADERS_CAP)];
    match request.parse_with_uninit_headers(&buf[..len], fields) {
        Ok(httparse::Status::Complete(parsed)) if parsed == len => {}
        // Cannot happen on a head that ends in CRLF CRLF with clean line endings; refused
        // rather than trusted, since it would mean httparse and this scan disagree on where
        // the head ends.
        Ok(_) => return Scan::Refused(Reason::BadRequestLine),
        Err(error) => return Scan::Refused(parse_error(error)),
    }

    if request.path.map_or(0, str::len) > limits.max_uri_bytes {
        return Scan::Refused(Reason::UriTooLong);
    }
    match framing(request.headers, request.version) {
        Ok((body, upgrade)) => Scan::Complete { len, body, upgrade },
        Err(reason) => Scan::Refused(reason),
    }
}

/// The head has not ended within the bytes looked at: refuse what cannot become acceptable,
/// else ask for more. `rest` is the looked-at part from the request line on; `received` is
/// everything the caller has.
fn partial(rest: &[u8], received: usize, limits: &HeadLimits) -> Scan {
    // A bare-LF head never ends in CRLF CRLF, so without this it would only be cut off by the
    // size limit or the header timeout, holding a connection all the while.
    if let Err(reason) = line_endings(rest) {
        return Scan::Refused(reason);
    }
    if memchr::memchr(b'\n', rest).is_none() && request_line_too_long(rest.len(), limits) {
        return Scan::Refused(Reason::UriTooLong);
    }
    if received > limits.max_header_bytes {
        return Scan::Refused(oversize(rest, limits));
    }
    Scan::Partial
}

/// The reason for a head over `max_header_bytes`: `UriTooLong` when its request line alone is
/// too long (so the answer does not depend on how the bytes were split into reads), else
/// `HeaderTooLarge`. `head` is the head's first `max_header_bytes` bytes from the request
/// line on.
fn oversize(head: &[u8], limits: &HeadLimits) -> Reason {
    let line = memchr::memchr(b'\n', head).unwrap_or(head.len());
    if request_line_too_long(line, limits) {
        Reason::UriTooLong
    } else {
        Reason::HeaderTooLarge
    }
}

fn request_line_too_long(line: usize, limits: &HeadLimits) -> bool {
    line > limits.max_uri_bytes.saturating_add(REQUEST_LINE_SLACK)
}

/// Bytes of the CRLF pairs that open `buf`. A lone trailing `\r` is left for the next read.
fn leading_empty_lines(buf: &[u8]) -> usize {
    let mut at = 0;
    while buf[at..].starts_with(b"\r\n") {
        at += 2;
    }
    at
}

/// One pass over the line endings of `head` (which starts at the request line): every `\n`
/// must follow a `\r`, every `\r` must precede a `\n` (a `\r` as the last byte of a partial
/// head may still), and no line may start with a space or tab.
///
/// httparse accepts a bare LF as a line ending and other parsers do not, so a request split
/// at one can be read as two requests by one side and one by the other. A line starting with
/// whitespace is obs-fold (RFC 9112 5.2), a continuation that some parsers join to the
/// previous field and others treat as a new one; right after the request line it is the
/// whitespace RFC 9112 2.2 says must be refused.
fn line_endings(head: &[u8]) -> Result<(), Reason> {
    // Every LF has its CR; then a CR without an LF shows as more CRs than LFs (a CR as the
    // last byte may still get its LF).
    let mut lf = 0usize;
    for at in memchr::memchr_iter(b'\n', head) {
        if at == 0 || head[at - 1] != b'\r' {
            return Err(Reason::BareLineEnding);
        }
        if matches!(head.get(at + 1), Some(b' ' | b'\t')) {
            return Err(Reason::ObsFold);
        }
        lf += 1;
    }
    let cr = memchr::memchr_iter(b'\r', head).count() - usize::from(head.last() == Some(&b'\r'));
    if cr != lf {
        return Err(Reason::BareLineEnding);
    }
    Ok(())
}

/// The reason for an httparse error.
///
/// `NewLine` would mean a bare CR or LF, but [`line_endings`] has already refused every one of
/// those; on a head that passed it, httparse only reports `NewLine` for bytes between the
/// version and the CRLF (`HTTP/1.1x`, `HTTP/1.1 `), which is a malformed request line.
fn parse_error(error: httparse::Error) -> Reason {
    match error {
        httparse::Error::TooManyHeaders => Reason::TooManyHeaders,
        httparse::Error::HeaderName | httparse::Error::HeaderValue => Reason::BadHeader,
        httparse::Error::Token
        | httparse::Error::Version
        | httparse::Error::Status
        | httparse::Error::NewLine => Reason::BadRequestLine,
    }
}

/// The body framing the fields declare, refusing every declaration that two parsers could
/// read differently (RFC 9112 6.1, 6.3).
fn framing(fields: &[httparse::Header<'_>], version: Option<u8>) -> Result<(Body, bool), Reason> {
    let mut upgrade = false;
    let mut length: Option<&[u8]> = None;
    let mut lengths = 0usize;
    let mut encoding: Option<&[u8]> = None;
    let mut encodings = 0usize;
    let mut hosts = 0usize;
    for field in fields {
        let name = field.name.as_bytes();
        // The length first: one compare for most fields instead of three.
        match name.len() {
            14 if name.eq_ignore_ascii_case(b"content-length") => {
                lengths += 1;
                length.get_or_insert(field.value);
            }
            17 if name.eq_ignore_ascii_case(b"transfer-encoding") => {
                encodings += 1;
                encoding.get_or_insert(field.value);
            }
            4 if name.eq_ignore_ascii_case(b"host") => hosts += 1,
            7 if name.eq_ignore_ascii_case(b"upgrade") => upgrade = true,
            _ => {}
        }
    }

    // The classic smuggling pair (CL.TE / TE.CL): RFC 9112 lets a server drop the length and
    // forward, but an upstream that prefers the length would see a different body. Checked
    // first, so this case is named for what it is rather than for a detail of either field.
    if lengths > 0 && encodings > 0 {
        return Err(Reason::LengthAndChunked);
    }
    // Even identical repeats are refused, as nginx does: a comma-joined or deduplicated copy
    // somewhere down the line must not be read differently from what was checked here.
    if lengths > 1 {
        return Err(Reason::DuplicateContentLength);
    }
    // Only a single encoding that is exactly `chunked`: a list (`gzip, chunked`), an unknown
    // coding, or a second field leaves the body's end for each parser to guess. HTTP/1.0 has no
    // transfer codings: RFC 9112 6.1 says to treat a 1.0 message with one as faulty framing.
    if encodings > 1 || (encodings == 1 && version != Some(1)) {
        return Err(Reason::InvalidTransferEncoding);
    }
    // RFC 9110 7.2: a request with more than one Host is refused; otherwise the gateway may
    // route on one and the upstream serve the other.
    if hosts > 1 {
        return Err(Reason::DuplicateHost);
    }
    if let Some(value) = encoding {
        return if trim(value).eq_ignore_ascii_case(b"chunked") {
            Ok((Body::Chunked, upgrade))
        } else {
            Err(Reason::InvalidTransferEncoding)
        };
    }
    match length {
        Some(value) => match content_length(value) {
            Some(0) => Ok((Body::None, upgrade)),
            Some(n) => Ok((Body::Length(n), upgrade)),
            None => Err(Reason::InvalidContentLength),
        },
        None => Ok((Body::None, upgrade)),
    }
}

/// A `Content-Length` value: 1 to 19 ASCII digits with optional spaces and tabs around them.
/// No sign, no list (`5, 5`), nothing empty: parsers disagree on all of those. Nineteen digits
/// always fit a `u64`, so no overflow case is left to disagree on either.
fn content_length(value: &[u8]) -> Option<u64> {
    let digits = trim(value);
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        digits
            .iter()
            .fold(0u64, |n, &digit| n * 10 + u64::from(digit - b'0')),
    )
}

/// `value` without leading and trailing spaces and tabs (optional whitespace, RFC 9110 5.6.3).
fn trim(value: &[u8]) -> &[u8] {
    let is_ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = value.iter().position(|b| !is_ows(b)).unwrap_or(value.len());
    let end = value
        .iter()
        .rposition(|b| !is_ows(b))
        .map_or(start, |at| at + 1);
    &value[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const LIMITS: HeadLimits = HeadLimits {
        max_header_bytes: 8192,
        max_headers: 100,
        max_uri_bytes: 4096,
    };

    fn scan_default(head: &[u8]) -> Scan {
        scan(head, &LIMITS)
    }

    fn refused(head: &[u8]) -> Reason {
        match scan_default(head) {
            Scan::Refused(reason) => reason,
            other => panic!(
                "expected a refusal for {:?}, got {other:?}",
                String::from_utf8_lossy(head)
            ),
        }
    }

    fn complete(head: &[u8]) -> (usize, Body) {
        match scan_default(head) {
            Scan::Complete { len, body, .. } => (len, body),
            other => panic!(
                "expected a complete head for {:?}, got {other:?}",
                String::from_utf8_lossy(head)
            ),
        }
    }

    fn with_field(field: &str) -> Vec<u8> {
        format!("POST /upload HTTP/1.1\r\nHost: example.com\r\n{field}\r\n\r\n").into_bytes()
    }

    #[test]
    fn simple_get_is_complete_without_body() {
        let head = b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n";
        assert_eq!(complete(head), (head.len(), Body::None));
    }

    #[test]
    fn minimal_request_without_fields() {
        let head = b"GET / HTTP/1.0\r\n\r\n";
        assert_eq!(complete(head), (head.len(), Body::None));
    }

    #[test]
    fn bytes_after_the_head_are_not_part_of_it() {
        let head = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n";
        let mut buf = head.to_vec();
        buf.extend_from_slice(b"hello\nGET / HTTP/1.1\r\n\r\n");
        assert_eq!(complete(&buf), (head.len(), Body::Length(5)));
    }

    #[test]
    fn leading_empty_lines_are_skipped_and_counted() {
        let head = b"\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n";
        assert_eq!(complete(head), (head.len(), Body::None));
        assert_eq!(scan_default(b"\r\n"), Scan::Partial);
        assert_eq!(scan_default(b"\r\n\r\n"), Scan::Partial);
        assert_eq!(scan_default(b"\r\n\r\n\r"), Scan::Partial);
        // They count toward the byte limit, so a stream of CRLFs cannot go on forever.
        let limits = HeadLimits {
            max_header_bytes: 10,
            ..LIMITS
        };
        assert_eq!(
            scan(&b"\r\n".repeat(6), &limits),
            Scan::Refused(Reason::HeaderTooLarge)
        );
        let mut long = b"\r\n".repeat(4);
        long.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
        assert_eq!(scan(&long, &limits), Scan::Refused(Reason::HeaderTooLarge));
    }

    #[test]
    fn leading_bare_lf_is_refused() {
        assert_eq!(refused(b"\nGET / HTTP/1.1\r\n\r\n"), Reason::BareLineEnding);
        assert_eq!(
            refused(b"\r\n\nGET / HTTP/1.1\r\n\r\n"),
            Reason::BareLineEnding
        );
        assert_eq!(refused(b"\r\rGET"), Reason::BareLineEnding);
    }

    #[test]
    fn body_framing() {
        assert_eq!(
            complete(&with_field("Content-Length: 42")).1,
            Body::Length(42)
        );
        assert_eq!(complete(&with_field("content-length: 0")).1, Body::None);
        assert_eq!(
            complete(&with_field("CONTENT-LENGTH:\t 7 \t")).1,
            Body::Length(7)
        );
        assert_eq!(
            complete(&with_field("Content-Length: 007")).1,
            Body::Length(7)
        );
        assert_eq!(
            complete(&with_field("Content-Length: 9999999999999999999")).1,
            Body::Length(9_999_999_999_999_999_999)
        );
        assert_eq!(
            complete(&with_field("Transfer-Encoding: chunked")).1,
            Body::Chunked
        );
        assert_eq!(
            complete(&with_field("transfer-encoding:  CHUNKED ")).1,
            Body::Chunked
        );
    }

    #[test]
    fn invalid_content_lengths() {
        for value in [
            "",
            " ",
            "+5",
            "-5",
            "5, 5",
            "5,5",
            "5 5",
            "0x10",
            "1e3",
            "5.0",
            "five",
            "12345678901234567890",
            "99999999999999999999",
            "\u{0661}",
        ] {
            assert_eq!(
                refused(&with_field(&format!("Content-Length: {value}"))),
                Reason::InvalidContentLength,
                "{value:?}"
            );
        }
    }

    #[test]
    fn duplicate_content_length_even_identical() {
        assert_eq!(
            refused(&with_field("Content-Length: 5\r\nContent-Length: 5")),
            Reason::DuplicateContentLength
        );
        assert_eq!(
            refused(&with_field("Content-Length: 5\r\ncontent-length: 6")),
            Reason::DuplicateContentLength
        );
    }

    #[test]
    fn length_and_chunked() {
        assert_eq!(
            refused(&with_field(
                "Content-Length: 5\r\nTransfer-Encoding: chunked"
            )),
            Reason::LengthAndChunked
        );
        assert_eq!(
            refused(&with_field(
                "Transfer-Encoding: chunked\r\nContent-Length: 5"
            )),
            Reason::LengthAndChunked
        );
        // Named for the pair even when the encoding itself is also unacceptable.
        assert_eq!(
            refused(&with_field("Transfer-Encoding: gzip\r\nContent-Length: 5")),
            Reason::LengthAndChunked
        );
        assert_eq!(
            refused(&with_field(
                "Transfer-Encoding: chunked\r\nContent-Length: 0"
            )),
            Reason::LengthAndChunked
        );
    }

    #[test]
    fn invalid_transfer_encodings() {
        for value in [
            "gzip, chunked",
            "chunked, chunked",
            "gzip",
            "identity",
            "",
            "chunk",
            "chunked;x=1",
            "\"chunked\"",
        ] {
            assert_eq!(
                refused(&with_field(&format!("Transfer-Encoding: {value}"))),
                Reason::InvalidTransferEncoding,
                "{value:?}"
            );
        }
        assert_eq!(
            refused(&with_field(
                "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked"
            )),
            Reason::InvalidTransferEncoding
        );
        assert_eq!(
            refused(b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Reason::InvalidTransferEncoding
        );
    }

    #[test]
    fn duplicate_host() {
        assert_eq!(
            refused(&with_field("Host: other.com")),
            Reason::DuplicateHost
        );
        assert_eq!(
            refused(&with_field("HOST: example.com")),
            Reason::DuplicateHost
        );
    }

    #[test]
    fn bare_line_endings() {
        assert_eq!(
            refused(b"GET / HTTP/1.1\nHost: a\r\n\r\n"),
            Reason::BareLineEnding
        );
        assert_eq!(
            refused(b"GET / HTTP/1.1\r\nHost: a\n\r\n\r\n"),
            Reason::BareLineEnding
        );
        assert_eq!(
            refused(b"GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n"),
            Reason::BareLineEnding
        );
        assert_eq!(
            refused(b"GET / HTTP/1.1\r\nX: a\rb\r\n\r\n"),
            Reason::BareLineEnding
        );
        assert_eq!(refused(b"GET /\r HTTP/1.1\r\n\r\n"), Reason::BareLineEnding);
    }

    #[test]
    fn bare_lf_is_refused_before_the_head_ends() {
        // Neither of these can ever end in CRLF CRLF; they are refused now, not at the limit.
        assert_eq!(refused(b"GET / HTTP/1.1\n"), Reason::BareLineEnding);
        assert_eq!(
            refused(b"GET / HTTP/1.1\r\nHost: a\n\n"),
            Reason::BareLineEnding
        );
        assert_eq!(
            refused(b"GET / HTTP/1.1\r\nHost: a\r\n\n"),
            Reason::BareLineEnding
        );
        assert_eq!(
            refused(b"GET / HTTP/1.1\r\nHost: a\rb"),
            Reason::BareLineEnding
        );
        // A CR at the very end may still be followed by its LF.
        assert_eq!(scan_default(b"GET / HTTP/1.1\r"), Scan::Partial);
        assert_eq!(
            scan_default(b"GET / HTTP/1.1\r\nHost: a\r\n\r"),
            Scan::Partial
        );
    }

    #[test]
    fn obs_fold_is_refused() {
        assert_eq!(
            refused(b"GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n"),
            Reason::ObsFold
        );
        assert_eq!(
            refused(b"GET / HTTP/1.1\r\nX: a\r\n\tb\r\n\r\n"),
            Reason::ObsFold
        );
        // Whitespace before the first field (RFC 9112 2.2) is the same shape.
        assert_eq!(
            refused(b"GET / HTTP/1.1\r\n Host: a\r\n\r\n"),
            Reason::ObsFold
        );
        // Caught early too.
        assert_eq!(refused(b"GET / HTTP/1.1\r\nX: a\r\n "), Reason::ObsFold);
        // Folding a Transfer-Encoding is the smuggling case this exists for.
        assert_eq!(
            refused(b"POST / HTTP/1.1\r\nTransfer-Encoding:\r\n chunked\r\n\r\n"),
            Reason::ObsFold
        );
    }

    #[test]
    fn bad_request_lines() {
        for head in [
            &b"GET / HTTP/2.0\r\n\r\n"[..],
            b"GET / HTTP/1.2\r\n\r\n",
            b"GET / http/1.1\r\n\r\n",
            b"GET /\r\n\r\n",
            b"GET\r\n\r\n",
            b"GET  / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1 \r\n\r\n",
            b"GET / HTTP/1.1x\r\n\r\n",
            b"GET / HTTP/1.10\r\n\r\n",
            b"G(T / HTTP/1.1\r\n\r\n",
            b"GET /a b HTTP/1.1\r\n\r\n",
            b"GET /\x7f HTTP/1.1\r\n\r\n",
            b"GET /\x00 HTTP/1.1\r\n\r\n",
            b" GET / HTTP/1.1\r\n\r\n",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
        ] {
            assert_eq!(
                refused(head),
                Reason::BadRequestLine,
                "{:?}",
                String::from_utf8_lossy(head)
            );
        }
    }

    #[test]
    fn bad_headers() {
        for field in [
            "Host : a",
            "X Y: a",
            "X\x01: a",
            ": a",
            "X: a\x00b",
            "X: a\x7fb",
            "NoColon",
        ] {
            assert_eq!(refused(&with_field(field)), Reason::BadHeader, "{field:?}");
        }
        // obs-text in a value is allowed (RFC 9110 5.5).
        assert!(matches!(
            scan_default(&with_field("X: caf\u{e9}")),
            Scan::Complete { .. }
        ));
    }

    #[test]
    fn too_many_headers() {
        let limits = HeadLimits {
            max_headers: 3,
            ..LIMITS
        };
        let three = b"GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n";
        assert!(matches!(scan(three, &limits), Scan::Complete { .. }));
        let four = b"GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n";
        assert_eq!(scan(four, &limits), Scan::Refused(Reason::TooManyHeaders));
        let none = HeadLimits {
            max_headers: 0,
            ..LIMITS
        };
        assert_eq!(
            scan(b"GET / HTTP/1.1\r\n\r\n", &none),
            Scan::Complete {
                len: 18,
                body: Body::None,
                upgrade: false
            }
        );
        assert_eq!(scan(three, &none), Scan::Refused(Reason::TooManyHeaders));
    }

    #[test]
    fn max_headers_is_capped() {
        let limits = HeadLimits {
            max_headers: 10_000,
            max_header_bytes: 1 << 20,
            ..LIMITS
        };
        let mut head = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..HEADERS_CAP {
            head.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        let mut over = head.clone();
        head.extend_from_slice(b"\r\n");
        assert!(matches!(scan(&head, &limits), Scan::Complete { .. }));
        over.extend_from_slice(b"Y: v\r\n\r\n");
        assert_eq!(scan(&over, &limits), Scan::Refused(Reason::TooManyHeaders));
    }

    #[test]
    fn header_byte_limit() {
        let head = b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n";
        let exact = HeadLimits {
            max_header_bytes: head.len(),
            ..LIMITS
        };
        assert!(matches!(scan(head, &exact), Scan::Complete { .. }));
        let under = HeadLimits {
            max_header_bytes: head.len() - 1,
            ..LIMITS
        };
        assert_eq!(scan(head, &under), Scan::Refused(Reason::HeaderTooLarge));
        // Partial: refused once more than the limit has arrived without the end.
        let partial = &head[..head.len() - 2];
        let small = HeadLimits {
            max_header_bytes: partial.len(),
            ..LIMITS
        };
        assert_eq!(scan(partial, &small), Scan::Partial);
        let smaller = HeadLimits {
            max_header_bytes: partial.len() - 1,
            ..LIMITS
        };
        assert_eq!(
            scan(partial, &smaller),
            Scan::Refused(Reason::HeaderTooLarge)
        );
        // A body beyond the limit does not count against the head.
        let mut with_body = b"POST / HTTP/1.1\r\nContent-Length: 100\r\n\r\n".to_vec();
        let len = with_body.len();
        with_body.extend_from_slice(&[b'x'; 100]);
        let tight = HeadLimits {
            max_header_bytes: len,
            ..LIMITS
        };
        assert_eq!(
            scan(&with_body, &tight),
            Scan::Complete {
                len,
                body: Body::Length(100),
                upgrade: false
            }
        );
    }

    #[test]
    fn nothing_past_the_byte_limit_is_looked_at() {
        let limits = HeadLimits {
            max_header_bytes: 64,
            ..LIMITS
        };
        // A head that would end past the limit is refused, bare LF or not after it.
        let mut buf = b"GET / HTTP/1.1\r\nX: ".to_vec();
        buf.resize(200, b'a');
        let mut bare = buf.clone();
        buf.extend_from_slice(b"\r\n\r\n");
        assert_eq!(scan(&buf, &limits), Scan::Refused(Reason::HeaderTooLarge));
        bare.extend_from_slice(b"\n\n");
        assert_eq!(scan(&bare, &limits), Scan::Refused(Reason::HeaderTooLarge));
        // One ending at exactly the limit is whole, whatever follows.
        let mut exact = b"GET / HTTP/1.1\r\nX: ".to_vec();
        exact.resize(60, b'a');
        exact.extend_from_slice(b"\r\n\r\n");
        let len = exact.len();
        exact.extend_from_slice(&[b'\n'; 1000]);
        assert_eq!(
            scan(&exact, &limits),
            Scan::Complete {
                len,
                body: Body::None,
                upgrade: false
            }
        );
    }

    #[test]
    fn uri_limit_on_complete_head() {
        let limits = HeadLimits {
            max_uri_bytes: 10,
            ..LIMITS
        };
        assert!(matches!(
            scan(b"GET /123456789 HTTP/1.1\r\n\r\n", &limits),
            Scan::Complete { .. }
        ));
        assert_eq!(
            scan(b"GET /1234567890 HTTP/1.1\r\n\r\n", &limits),
            Scan::Refused(Reason::UriTooLong)
        );
    }

    #[test]
    fn uri_limit_before_the_line_ends() {
        let limits = HeadLimits {
            max_uri_bytes: 10,
            ..LIMITS
        };
        let mut line = b"GET /".to_vec();
        line.resize(10 + REQUEST_LINE_SLACK, b'a');
        assert_eq!(scan(&line, &limits), Scan::Partial);
        line.push(b'a');
        assert_eq!(scan(&line, &limits), Scan::Refused(Reason::UriTooLong));
        // Once the line has ended the exact target length decides, on the complete head.
        let mut ended = b"GET /".to_vec();
        ended.resize(100, b'a');
        ended.extend_from_slice(b" HTTP/1.1\r\nHost: a\r\n");
        assert_eq!(scan(&ended, &limits), Scan::Partial);
        ended.extend_from_slice(b"\r\n");
        assert_eq!(scan(&ended, &limits), Scan::Refused(Reason::UriTooLong));
    }

    #[test]
    fn oversize_head_with_long_request_line_is_uri_too_long() {
        // The same bytes give the same reason whether they arrived in one read or many.
        let limits = HeadLimits {
            max_header_bytes: 100,
            max_uri_bytes: 20,
            ..LIMITS
        };
        let mut head = b"GET /".to_vec();
        head.resize(200, b'a');
        head.extend_from_slice(b" HTTP/1.1\r\n\r\n");
        assert_eq!(scan(&head, &limits), Scan::Refused(Reason::UriTooLong));
        for cut in 1..head.len() {
            assert!(
                matches!(
                    scan(&head[..cut], &limits),
                    Scan::Partial | Scan::Refused(Reason::UriTooLong)
                ),
                "{cut}"
            );
        }
    }

    #[test]
    fn every_prefix_of_a_valid_head_is_partial() {
        let head = b"\r\nPOST /a?b=c HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\nX-Empty:\r\n\r\n";
        for cut in 0..head.len() {
            assert_eq!(scan_default(&head[..cut]), Scan::Partial, "{cut}");
        }
        assert_eq!(complete(head), (head.len(), Body::Chunked));
    }

    #[test]
    fn content_length_parser() {
        assert_eq!(content_length(b"0"), Some(0));
        assert_eq!(content_length(b" \t12\t "), Some(12));
        assert_eq!(content_length(b"18446744073709551615"), None);
        assert_eq!(content_length(b"1 2"), None);
        assert_eq!(trim(b" \t "), b"");
        assert_eq!(trim(b"a"), b"a");
        assert_eq!(trim(b"\ta b "), b"a b");
    }

    fn token() -> impl Strategy<Value = String> {
        proptest::collection::vec(
            proptest::sample::select(
                b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-.^_`|~"
                    .to_vec(),
            ),
            1..12,
        )
        .prop_map(|bytes| bytes.into_iter().map(char::from).collect())
    }

    fn value() -> impl Strategy<Value = String> {
        // Visible ASCII and inner spaces; httparse trims the outer ones.
        proptest::collection::vec(
            proptest::sample::select((b'!'..=b'~').chain([b' ', b'\t']).collect::<Vec<u8>>()),
            0..24,
        )
        .prop_map(|bytes| bytes.into_iter().map(char::from).collect())
    }

    fn target() -> impl Strategy<Value = String> {
        proptest::collection::vec(
            proptest::sample::select((b'!'..=b'~').collect::<Vec<u8>>()),
            0..40,
        )
        .prop_map(|bytes| {
            std::iter::once('/')
                .chain(bytes.into_iter().map(char::from))
                .collect()
        })
    }

    /// Valid heads without framing fields (so no framing rule can refuse them).
    fn valid_head() -> impl Strategy<Value = Vec<u8>> {
        (
            0usize..3,
            token(),
            target(),
            proptest::bool::ANY,
            proptest::collection::vec((token(), value()), 0..8),
        )
            .prop_map(|(empty_lines, method, target, one_one, fields)| {
                let mut head = "\r\n".repeat(empty_lines);
                head.push_str(&format!(
                    "{method} {target} HTTP/1.{}\r\n",
                    u8::from(one_one)
                ));
                for (name, value) in fields {
                    let lower = name.to_ascii_lowercase();
                    if lower == "content-length" || lower == "transfer-encoding" || lower == "host"
                    {
                        continue;
                    }
                    head.push_str(&format!("{name}: {value}\r\n"));
                }
                head.push_str("\r\n");
                head.into_bytes()
            })
    }

    proptest! {
        #[test]
        fn scan_never_panics(buf in proptest::collection::vec(any::<u8>(), 0..600), max_headers in 0usize..300, max_uri in 0usize..200, max_bytes in 0usize..800) {
            let limits = HeadLimits { max_header_bytes: max_bytes, max_headers, max_uri_bytes: max_uri };
            if let Scan::Complete { len, .. } = scan(&buf, &limits) {
                prop_assert!(len <= buf.len() && len <= max_bytes);
                prop_assert!(buf[..len].ends_with(b"\r\n\r\n"));
            }
        }

        #[test]
        fn scan_never_panics_on_head_like_bytes(parts in proptest::collection::vec(proptest::sample::select(vec![
            &b"GET"[..], b" ", b"/", b"\r", b"\n", b"\r\n", b"HTTP/1.1", b"HTTP/1.0", b":", b"Host", b"Content-Length",
            b"Transfer-Encoding", b"chunked", b"5", b"\t", b"x", b",", b"\x00", b"\xff",
        ]), 0..40)) {
            let buf = parts.concat();
            let _ = scan(&buf, &LIMITS);
        }

        #[test]
        fn every_strict_prefix_of_a_valid_head_is_partial(head in valid_head()) {
            prop_assert_eq!(scan_default(&head), Scan::Complete { len: head.len(), body: Body::None, upgrade: false });
            for cut in 0..head.len() {
                prop_assert_eq!(scan_default(&head[..cut]), Scan::Partial, "cut at {}", cut);
            }
        }

        #[test]
        fn trailing_bytes_do_not_change_a_complete_head(head in valid_head(), tail in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut buf = head.clone();
            buf.extend_from_slice(&tail);
            prop_assert_eq!(scan_default(&buf), Scan::Complete { len: head.len(), body: Body::None, upgrade: false });
        }

        #[test]
        fn content_length_round_trips(n in any::<u64>()) {
            let text = n.to_string();
            let expected = (text.len() <= 19).then_some(n);
            prop_assert_eq!(content_length(text.as_bytes()), expected);
        }
    }
}
