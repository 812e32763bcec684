//! The PROXY protocol header (HAProxy's `proxy-protocol.txt`, v1 text and v2 binary) that a
//! load balancer sends first on a connection to say which client it is relaying.
//!
//! [`parse`] is called on the bytes received so far, each time more arrive, until it says
//! [`Parsed::Complete`] or [`Parsed::Invalid`]. It answers [`Parsed::Partial`] only while the
//! bytes can still grow into a valid header, so a client that is not a proxy (a plain HTTP
//! request, a TLS hello, garbage) is refused at its first wrong byte instead of holding the
//! connection until a timeout. The final decoding of addresses is `ppp`'s; the checks on the
//! way there are here, because `ppp` answers "incomplete" for some prefixes that can never
//! become valid and "invalid" for some that still can.

use memchr::memmem;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The outcome of parsing the bytes received so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// A prefix of a possibly valid header: more bytes needed.
    Partial,
    /// `len` bytes of header; `source` is the client address it carries (None for v2 LOCAL,
    /// v1 UNKNOWN or non-IP families: the caller keeps the socket peer).
    Complete {
        /// Bytes of the header; what follows belongs to the proxied stream.
        len: usize,
        /// The client's address and port, when the header names one.
        source: Option<SocketAddr>,
    },
    /// Not a PROXY protocol header, and no further bytes can make it one.
    Invalid,
}

/// Longest header accepted: v2 TLVs beyond this are refused rather than buffered.
pub const MAX_LEN: usize = 4096;

/// The v1 signature, space included.
const V1_PREFIX: &[u8] = b"PROXY ";
/// Longest v1 header, CRLF included (the spec's 107-byte buffer).
const V1_MAX: usize = 107;
/// The v2 signature.
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// The v2 fixed part: signature, version and command, family and protocol, length.
const V2_FIXED: usize = 16;
/// A v2 TLV's type and length.
const TLV_HEADER: usize = 3;

/// Parses the PROXY protocol header at the start of `buf`.
///
/// The version is chosen by the first byte: `P` for v1, `\r` for v2 (neither can start the
/// other, nor an HTTP request).
pub fn parse(buf: &[u8]) -> Parsed {
    match buf.first() {
        None => Parsed::Partial,
        Some(b'P') => v1(buf),
        Some(b'\r') => v2(buf),
        Some(_) => Parsed::Invalid,
    }
}

/// v1: `PROXY TCP4|TCP6 src dst sport dport\r\n` or `PROXY UNKNOWN ...\r\n`, at most 107
/// bytes in all.
fn v1(buf: &[u8]) -> Parsed {
    if buf.len() < V1_PREFIX.len() {
        return partial_if(V1_PREFIX.starts_with(buf));
    }
    if !buf.starts_with(V1_PREFIX) {
        return Parsed::Invalid;
    }
    let window = &buf[..buf.len().min(V1_MAX)];
    let Some(end) = memmem::find(window, b"\r\n") else {
        // No CRLF in the first 107 bytes: a longer header is refused, whatever it holds.
        if buf.len() >= V1_MAX {
            return Parsed::Invalid;
        }
        return partial_if(v1_possible(&buf[V1_PREFIX.len()..]));
    };
    let len = end + 2;
    let body = &buf[V1_PREFIX.len()..end];

    // The spec says a receiver must ignore whatever follows UNKNOWN up to the CRLF; handled
    // here because `ppp` refuses UNKNOWN lines with more than four fields after it.
    if body == b"UNKNOWN" || body.starts_with(b"UNKNOWN ") {
        return Parsed::Complete { len, source: None };
    }
    if !tcp_fields(body, true) {
        return Parsed::Invalid;
    }
    match ppp::v1::Header::try_from(&buf[..len]) {
        Ok(header) if header.header.len() == len => {
            let source = match header.addresses {
                ppp::v1::Addresses::Tcp4(a) => {
                    SocketAddr::new(a.source_address.into(), a.source_port)
                }
                ppp::v1::Addresses::Tcp6(a) => {
                    SocketAddr::new(a.source_address.into(), a.source_port)
                }
                ppp::v1::Addresses::Unknown => return Parsed::Complete { len, source: None },
            };
            Parsed::Complete {
                len,
                source: Some(source),
            }
        }
        // `ppp` and the checks above disagree: refuse rather than guess which is right.
        _ => Parsed::Invalid,
    }
}

/// Whether `body` (after `PROXY `, no CRLF yet) can still become a valid v1 line.
fn v1_possible(body: &[u8]) -> bool {
    // "", "U" … "UNKNOWN", "UNKNOWN\r": still possibly UNKNOWN; after "UNKNOWN " anything goes.
    if b"UNKNOWN\r".starts_with(body) || body.starts_with(b"UNKNOWN ") {
        return true;
    }
    // A CR is only valid as the first half of the final CRLF: the line before it must be whole.
    match body.strip_suffix(b"\r") {
        Some(line) => tcp_fields(line, true),
        None => tcp_fields(body, false),
    }
}

/// Checks the TCP4/TCP6 form `proto src dst sport dport`. With `whole`, every field must be
/// there and valid; without, the last field present may still be growing.
fn tcp_fields(body: &[u8], whole: bool) -> bool {
    let mut fields = body.split(|&b| b == b' ');
    let proto = fields.next().unwrap_or_default();
    let v6 = match proto {
        b"TCP4" => false,
        b"TCP6" => true,
        _ => {
            // Only a protocol still being typed, with nothing after it, can become valid.
            return !whole
                && proto.len() == body.len()
                && (b"TCP4".starts_with(proto) || b"TCP6".starts_with(proto));
        }
    };
    let mut rest = [&b""[..]; 4];
    let mut count = 0;
    for field in fields {
        if count == rest.len() {
            return false;
        }
        rest[count] = field;
        count += 1;
    }
    if whole && count != rest.len() {
        return false;
    }
    rest[..count].iter().enumerate().all(|(at, field)| {
        let growing = !whole && at + 1 == count;
        if at < 2 {
            address(field, v6, growing)
        } else {
            port(field, growing)
        }
    })
}

/// An address field: whole, it must parse as the family's address; growing, it must use only
/// the family's characters and fit its longest spelling.
fn address(field: &[u8], v6: bool, growing: bool) -> bool {
    if growing {
        let (longest, allowed): (usize, fn(&u8) -> bool) = if v6 {
            // Up to `ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255`.
            (45, |b| b.is_ascii_hexdigit() || *b == b':' || *b == b'.')
        } else {
            (15, |b| b.is_ascii_digit() || *b == b'.')
        };
        return field.len() <= longest && field.iter().all(allowed);
    }
    let Ok(text) = std::str::from_utf8(field) else {
        return false;
    };
    if v6 {
        text.parse::<Ipv6Addr>().is_ok()
    } else {
        text.parse::<Ipv4Addr>().is_ok()
    }
}

/// A port field: decimal, no leading zero (as `ppp` requires), at most 65535.
fn port(field: &[u8], growing: bool) -> bool {
    if field.is_empty() {
        return growing;
    }
    if field.len() > 5
        || !field.iter().all(u8::is_ascii_digit)
        || (field[0] == b'0' && field.len() > 1)
    {
        return false;
    }
    let value = field
        .iter()
        .fold(0u32, |n, &digit| n * 10 + u32::from(digit - b'0'));
    u16::try_from(value).is_ok()
}

/// v2: the 12-byte signature, version 2 and a command, family and protocol, a big-endian
/// length, then that many bytes of addresses and TLVs.
fn v2(buf: &[u8]) -> Parsed {
    let signature = buf.len().min(V2_SIGNATURE.len());
    if buf[..signature] != V2_SIGNATURE[..signature] {
        return Parsed::Invalid;
    }
    // Version 2 (high nibble) with LOCAL (0) or PROXY (1).
    let local = match buf.get(12) {
        None => return Parsed::Partial,
        Some(0x20) => true,
        Some(0x21) => false,
        Some(_) => return Parsed::Invalid,
    };
    // The spec lists the only family/protocol bytes a receiver may accept; `ppp` also takes
    // combinations such as "IPv4, unspecified protocol" that the spec says to reject.
    let addresses = match buf.get(13) {
        None => return Parsed::Partial,
        Some(0x00) => 0,
        Some(0x11 | 0x12) => 12,
        Some(0x21 | 0x22) => 36,
        Some(0x31 | 0x32) => 216,
        Some(_) => return Parsed::Invalid,
    };
    let (Some(&high), Some(&low)) = (buf.get(14), buf.get(15)) else {
        return Parsed::Partial;
    };
    let len = V2_FIXED + usize::from(u16::from_be_bytes([high, low]));
    if len > MAX_LEN {
        return Parsed::Invalid;
    }
    if local {
        // LOCAL (the balancer's own health checks): the spec says to discard the whole block,
        // family included, and keep the real endpoints, so its contents are not checked.
        return if buf.len() < len {
            Parsed::Partial
        } else {
            Parsed::Complete { len, source: None }
        };
    }
    if len < V2_FIXED + addresses || !tlvs_possible(buf, V2_FIXED + addresses, len) {
        return Parsed::Invalid;
    }
    if buf.len() < len {
        return Parsed::Partial;
    }
    match ppp::v2::Header::try_from(&buf[..len]) {
        Ok(header) if header.len() == len => {
            let source = match header.addresses {
                ppp::v2::Addresses::IPv4(a) => {
                    Some(SocketAddr::new(IpAddr::V4(a.source_address), a.source_port))
                }
                ppp::v2::Addresses::IPv6(a) => {
                    Some(SocketAddr::new(IpAddr::V6(a.source_address), a.source_port))
                }
                ppp::v2::Addresses::Unspecified | ppp::v2::Addresses::Unix(_) => None,
            };
            Parsed::Complete { len, source }
        }
        // `ppp` and the checks above disagree: refuse rather than guess which is right.
        _ => Parsed::Invalid,
    }
}

/// Walks the TLVs between `start` and `end` (the declared end of the header) as far as `buf`
/// reaches: false once one overruns `end` or fewer than three bytes are left over at its
/// end, which no further bytes can repair. A block that does not split into TLVs is not a
/// header a conforming sender writes.
fn tlvs_possible(buf: &[u8], start: usize, end: usize) -> bool {
    let mut at = start;
    while at < end {
        if at + TLV_HEADER > end {
            return false;
        }
        let (Some(&high), Some(&low)) = (buf.get(at + 1), buf.get(at + 2)) else {
            return true;
        };
        at += TLV_HEADER + usize::from(u16::from_be_bytes([high, low]));
    }
    at == end
}

fn partial_if(possible: bool) -> Parsed {
    if possible {
        Parsed::Partial
    } else {
        Parsed::Invalid
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn addr(text: &str) -> Option<SocketAddr> {
        Some(text.parse().unwrap())
    }

    fn assert_prefixes_partial(header: &[u8]) {
        for cut in 0..header.len() {
            assert_eq!(
                parse(&header[..cut]),
                Parsed::Partial,
                "prefix of {cut} bytes of {header:?}"
            );
        }
    }

    /// A v2 header: PROXY (0x21) or LOCAL (0x20), family byte, payload.
    fn v2_header(command: u8, family: u8, payload: &[u8]) -> Vec<u8> {
        let mut header = V2_SIGNATURE.to_vec();
        header.push(command);
        header.push(family);
        header.extend_from_slice(&u16::try_from(payload.len()).unwrap().to_be_bytes());
        header.extend_from_slice(payload);
        header
    }

    fn v4_payload() -> Vec<u8> {
        vec![192, 0, 2, 7, 10, 0, 0, 1, 0xd4, 0x31, 0x01, 0xbb]
    }

    fn v6_payload() -> Vec<u8> {
        let mut payload = "2001:db8::7".parse::<Ipv6Addr>().unwrap().octets().to_vec();
        payload.extend_from_slice(&"2001:db8::1".parse::<Ipv6Addr>().unwrap().octets());
        payload.extend_from_slice(&[0xd4, 0x31, 0x01, 0xbb]);
        payload
    }

    #[test]
    fn v1_tcp4() {
        let header = b"PROXY TCP4 192.0.2.7 10.0.0.1 54321 443\r\n";
        let mut buf = header.to_vec();
        buf.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
        let expected = Parsed::Complete {
            len: header.len(),
            source: addr("192.0.2.7:54321"),
        };
        assert_eq!(parse(header), expected);
        assert_eq!(parse(&buf), expected);
        assert_prefixes_partial(header);
    }

    #[test]
    fn v1_tcp6() {
        let header = b"PROXY TCP6 2001:db8::7 2001:db8::1 54321 443\r\n";
        assert_eq!(
            parse(header),
            Parsed::Complete {
                len: header.len(),
                source: addr("[2001:db8::7]:54321")
            }
        );
        assert_prefixes_partial(header);
        let mapped = b"PROXY TCP6 ::ffff:192.0.2.7 ::1 1 0\r\n";
        assert_eq!(
            parse(mapped),
            Parsed::Complete {
                len: mapped.len(),
                source: addr("[::ffff:192.0.2.7]:1")
            }
        );
        assert_prefixes_partial(mapped);
    }

    #[test]
    fn v1_longest_header() {
        let full = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
        let header = format!("PROXY TCP6 {full} {full} 65535 65535\r\n");
        assert_eq!(header.len(), 104);
        assert!(matches!(
            parse(header.as_bytes()),
            Parsed::Complete {
                len: 104,
                source: Some(_)
            }
        ));
        assert_prefixes_partial(header.as_bytes());
        let mapped = "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255";
        let header = format!("PROXY TCP6 {mapped} {mapped} 65535 65535\r\n");
        assert!(header.len() > V1_MAX);
        assert_eq!(parse(header.as_bytes()), Parsed::Invalid);
    }

    #[test]
    fn v1_unknown() {
        for header in [
            &b"PROXY UNKNOWN\r\n"[..],
            b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n",
            b"PROXY UNKNOWN anything at all, even five or more fields\r\n",
        ] {
            assert_eq!(
                parse(header),
                Parsed::Complete {
                    len: header.len(),
                    source: None
                }
            );
            assert_prefixes_partial(header);
        }
    }

    #[test]
    fn v1_invalid() {
        for header in [
            &b"PROXY TCP4 192.0.2.7 10.0.0.1 54321 443\n"[..],
            b"PROXY TCP4 192.0.2.7 10.0.0.1 54321 443\rX",
            b"PROXY TCP4 192.0.2.7 10.0.0.1 54321 443 \r\n",
            b"PROXY TCP4 192.0.2.7 10.0.0.1 54321 443 1\r\n",
            b"PROXY TCP4 192.0.2.7 10.0.0.1 54321\r\n",
            b"PROXY TCP4 192.0.2.7  10.0.0.1 54321 443\r\n",
            b"PROXY TCP4 2001:db8::7 10.0.0.1 54321 443\r\n",
            b"PROXY TCP6 192.0.2.7 2001:db8::1 54321 443\r\n",
            b"PROXY TCP4 192.0.2.256 10.0.0.1 54321 443\r\n",
            b"PROXY TCP4 192.0.2.07 10.0.0.1 54321 443\r\n",
            b"PROXY TCP4 192.0.2.7 10.0.0.1 65536 443\r\n",
            b"PROXY TCP4 192.0.2.7 10.0.0.1 054321 443\r\n",
            b"PROXY TCP4 192.0.2.7 10.0.0.1 01 443\r\n",
            b"PROXY TCP4 192.0.2.7 10.0.0.1 -1 443\r\n",
            b"PROXY tcp4 192.0.2.7 10.0.0.1 1 2\r\n",
            b"PROXY TCP5 192.0.2.7 10.0.0.1 1 2\r\n",
            b"PROXY UDP4 192.0.2.7 10.0.0.1 1 2\r\n",
            b"PROXY  TCP4 192.0.2.7 10.0.0.1 1 2\r\n",
            b"PROXY UNKNOWNX\r\n",
            b"PROXY \r\n",
            b"PROXY\r\n",
            b"PROXYTCP4",
            b"PROXY X",
            b"PROXY TCP4 192.0.2.x",
            b"PROXY TCP4 1234567890123456",
        ] {
            assert_eq!(
                parse(header),
                Parsed::Invalid,
                "{:?}",
                String::from_utf8_lossy(header)
            );
        }
    }

    #[test]
    fn v1_refused_at_the_first_impossible_byte() {
        assert_eq!(parse(b"PROXY TCP4 192.0.2.7 "), Parsed::Partial);
        assert_eq!(parse(b"PROXY TCP4 192.0.2.7 :"), Parsed::Invalid);
        assert_eq!(parse(b"PROXY TCP4 1.2.3.4 5.6.7.8 80 0"), Parsed::Partial);
        assert_eq!(parse(b"PROXY TCP4 1.2.3.4 5.6.7.8 80 00"), Parsed::Invalid);
        assert_eq!(
            parse(b"PROXY TCP4 1.2.3.4 5.6.7.8 80 65536"),
            Parsed::Invalid
        );
        assert_eq!(parse(b"PROXY TCP4 1.2.3.4 5.6.7.8 80 "), Parsed::Partial);
        assert_eq!(parse(b"PROXY TCP4 1.2.3.4\r"), Parsed::Invalid);
        assert_eq!(parse(b"PROXY UNKNOWN\r"), Parsed::Partial);
        assert_eq!(parse(b"PROXY UNKNOWN\rx"), Parsed::Invalid);
        assert_eq!(parse(b"PROXY TCP\xff"), Parsed::Invalid);
    }

    #[test]
    fn v1_without_crlf_in_107_bytes_is_invalid() {
        let mut header = b"PROXY UNKNOWN ".to_vec();
        header.resize(V1_MAX - 1, b'a');
        assert_eq!(parse(&header), Parsed::Partial);
        header.push(b'\r');
        // The LF would make it 108 bytes.
        assert_eq!(parse(&header), Parsed::Invalid);
        let mut exact = b"PROXY UNKNOWN ".to_vec();
        exact.resize(V1_MAX - 2, b'a');
        exact.extend_from_slice(b"\r\n");
        assert_eq!(
            parse(&exact),
            Parsed::Complete {
                len: V1_MAX,
                source: None
            }
        );
    }

    #[test]
    fn v2_proxy_tcp4() {
        let header = v2_header(0x21, 0x11, &v4_payload());
        let expected = Parsed::Complete {
            len: 28,
            source: addr("192.0.2.7:54321"),
        };
        assert_eq!(parse(&header), expected);
        let mut buf = header.clone();
        buf.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
        assert_eq!(parse(&buf), expected);
        assert_prefixes_partial(&header);
        // UDP over IPv4 names the client the same way.
        assert_eq!(parse(&v2_header(0x21, 0x12, &v4_payload())), expected);
    }

    #[test]
    fn v2_proxy_tcp6() {
        let header = v2_header(0x21, 0x21, &v6_payload());
        assert_eq!(
            parse(&header),
            Parsed::Complete {
                len: 52,
                source: addr("[2001:db8::7]:54321")
            }
        );
        assert_prefixes_partial(&header);
    }

    #[test]
    fn v2_local() {
        let header = v2_header(0x20, 0x00, &[]);
        assert_eq!(
            parse(&header),
            Parsed::Complete {
                len: 16,
                source: None
            }
        );
        assert_prefixes_partial(&header);
        // LOCAL discards the block, addresses and all: the socket peer stays.
        let with_addresses = v2_header(0x20, 0x11, &v4_payload());
        assert_eq!(
            parse(&with_addresses),
            Parsed::Complete {
                len: 28,
                source: None
            }
        );
        assert_eq!(
            parse(&v2_header(0x20, 0x11, &[])),
            Parsed::Complete {
                len: 16,
                source: None
            }
        );
    }

    #[test]
    fn v2_non_ip_families_keep_the_peer() {
        let unspec = v2_header(0x21, 0x00, &[]);
        assert_eq!(
            parse(&unspec),
            Parsed::Complete {
                len: 16,
                source: None
            }
        );
        let mut unix = vec![0u8; 216];
        unix[..9].copy_from_slice(b"/tmp/sock");
        let header = v2_header(0x21, 0x31, &unix);
        assert_eq!(
            parse(&header),
            Parsed::Complete {
                len: 232,
                source: None
            }
        );
        assert_prefixes_partial(&header);
    }

    #[test]
    fn v2_with_tlvs() {
        let mut payload = v4_payload();
        payload.extend_from_slice(&[0x02, 0x00, 0x0b]);
        payload.extend_from_slice(b"example.com");
        payload.extend_from_slice(&[0x04, 0x00, 0x00]);
        payload.extend_from_slice(&[0xea, 0x00, 0x03, 1, 2, 3]);
        let header = v2_header(0x21, 0x11, &payload);
        assert_eq!(
            parse(&header),
            Parsed::Complete {
                len: header.len(),
                source: addr("192.0.2.7:54321")
            }
        );
        assert_prefixes_partial(&header);
    }

    #[test]
    fn v2_built_by_ppp() {
        use ppp::v2::{Builder, Command, Protocol, Type, Version};
        let source: SocketAddr = "[2001:db8::7]:54321".parse().unwrap();
        let destination: SocketAddr = "[2001:db8::1]:443".parse().unwrap();
        let header = Builder::with_addresses(
            Version::Two | Command::Proxy,
            Protocol::Stream,
            (source, destination),
        )
        .write_tlv(Type::Authority, b"example.com")
        .unwrap()
        .write_tlv(Type::UniqueId, &[7; 32])
        .unwrap()
        .build()
        .unwrap();
        assert_eq!(
            parse(&header),
            Parsed::Complete {
                len: header.len(),
                source: Some(source)
            }
        );
        assert_prefixes_partial(&header);
    }

    #[test]
    fn v2_invalid() {
        let good = v2_header(0x21, 0x11, &v4_payload());
        let mut cases: Vec<Vec<u8>> = Vec::new();
        // Version 1 or 3, unknown command.
        for version_command in [0x11, 0x31, 0x22, 0x2f] {
            let mut bad = good.clone();
            bad[12] = version_command;
            cases.push(bad);
        }
        // Families and protocols the spec says to reject.
        for family in [0x01, 0x10, 0x13, 0x20, 0x30, 0x41] {
            let mut bad = good.clone();
            bad[13] = family;
            cases.push(bad);
        }
        // A payload too short for the addresses.
        cases.push(v2_header(0x21, 0x11, &v4_payload()[..11]));
        cases.push(v2_header(0x21, 0x21, &v4_payload()));
        // TLVs that overrun the length or leave bytes over.
        let mut overrun = v4_payload();
        overrun.extend_from_slice(&[0x04, 0x00, 0x05, 1, 2]);
        cases.push(v2_header(0x21, 0x11, &overrun));
        let mut leftover = v4_payload();
        leftover.extend_from_slice(&[0x04, 0x00]);
        cases.push(v2_header(0x21, 0x11, &leftover));
        // A damaged signature.
        let mut signature = good.clone();
        signature[11] = b'\r';
        cases.push(signature);
        for case in cases {
            assert_eq!(parse(&case), Parsed::Invalid, "{case:?}");
        }
    }

    #[test]
    fn v2_refused_before_it_is_complete() {
        // A bad version byte is refused at byte 13, a bad family at byte 14.
        let mut bad = V2_SIGNATURE.to_vec();
        bad.push(0x31);
        assert_eq!(parse(&bad), Parsed::Invalid);
        let mut bad = V2_SIGNATURE.to_vec();
        bad.extend_from_slice(&[0x21, 0x14]);
        assert_eq!(parse(&bad), Parsed::Invalid);
        // An overrunning TLV is refused as soon as its length is read.
        let mut payload = v4_payload();
        payload.extend_from_slice(&[0x04, 0x00, 0x10, 1]);
        let header = v2_header(0x21, 0x11, &payload);
        assert_eq!(parse(&header[..header.len() - 1]), Parsed::Invalid);
    }

    #[test]
    fn v2_oversize() {
        let mut payload = v4_payload();
        let tlv = MAX_LEN - V2_FIXED - payload.len() - TLV_HEADER;
        payload.extend_from_slice(&[0x04]);
        payload.extend_from_slice(&u16::try_from(tlv).unwrap().to_be_bytes());
        payload.resize(payload.len() + tlv, 0);
        let header = v2_header(0x21, 0x11, &payload);
        assert_eq!(header.len(), MAX_LEN);
        assert!(matches!(
            parse(&header),
            Parsed::Complete { len: MAX_LEN, .. }
        ));
        payload.push(0);
        let tlv = tlv + 1;
        payload[12 + 1..12 + 3].copy_from_slice(&u16::try_from(tlv).unwrap().to_be_bytes());
        let over = v2_header(0x21, 0x11, &payload);
        // Refused from the length field alone, without buffering the rest.
        assert_eq!(parse(&over[..V2_FIXED]), Parsed::Invalid);
        assert_eq!(parse(&over), Parsed::Invalid);
        assert_eq!(parse(&v2_header(0x20, 0x00, &[0; 0xffff])), Parsed::Invalid);
    }

    #[test]
    fn not_a_proxy_header() {
        for buf in [
            &b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"[..],
            b"POST / HTTP/1.1\r\n",
            b"PUT",
            b"\x16\x03\x01\x00\xa5\x01",
            b"\r\nGET / HTTP/1.1\r\n",
            b"\0",
            b"proxy TCP4",
        ] {
            assert_eq!(parse(buf), Parsed::Invalid, "{buf:?}");
        }
        // `P` could start `PROXY` or `POST`/`PUT`: it waits for the next byte.
        assert_eq!(parse(b"P"), Parsed::Partial);
        // Leading empty lines of HTTP are also the start of the v2 signature: they wait, and
        // are refused at the first byte that differs.
        assert_eq!(parse(b"\r\n\r\n"), Parsed::Partial);
        assert_eq!(parse(b"\r\n\r\nGET"), Parsed::Invalid);
        assert_eq!(parse(b"\r"), Parsed::Partial);
        assert_eq!(parse(b""), Parsed::Partial);
    }

    proptest! {
        #[test]
        fn parse_never_panics(buf in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Parsed::Complete { len, .. } = parse(&buf) {
                prop_assert!(len <= buf.len() && len <= MAX_LEN);
            }
        }

        #[test]
        fn parse_never_panics_after_a_signature(v2_sig in any::<bool>(), tail in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut buf = if v2_sig { V2_SIGNATURE.to_vec() } else { V1_PREFIX.to_vec() };
            buf.extend_from_slice(&tail);
            if let Parsed::Complete { len, .. } = parse(&buf) {
                prop_assert!(len <= buf.len() && len <= MAX_LEN);
            }
        }

        #[test]
        fn v1_tcp4_round_trips(src in any::<[u8; 4]>(), dst in any::<[u8; 4]>(), sport in any::<u16>(), dport in any::<u16>()) {
            let (src, dst) = (Ipv4Addr::from(src), Ipv4Addr::from(dst));
            let header = format!("PROXY TCP4 {src} {dst} {sport} {dport}\r\n");
            prop_assert_eq!(
                parse(header.as_bytes()),
                Parsed::Complete { len: header.len(), source: Some(SocketAddr::new(src.into(), sport)) }
            );
            for cut in 0..header.len() {
                prop_assert_eq!(parse(&header.as_bytes()[..cut]), Parsed::Partial);
            }
        }

        #[test]
        fn v1_tcp6_round_trips(src in any::<[u16; 8]>(), dst in any::<[u16; 8]>(), sport in any::<u16>(), dport in any::<u16>()) {
            let (src, dst) = (Ipv6Addr::from(src), Ipv6Addr::from(dst));
            let header = format!("PROXY TCP6 {src} {dst} {sport} {dport}\r\n");
            prop_assert_eq!(
                parse(header.as_bytes()),
                Parsed::Complete { len: header.len(), source: Some(SocketAddr::new(src.into(), sport)) }
            );
            for cut in 0..header.len() {
                prop_assert_eq!(parse(&header.as_bytes()[..cut]), Parsed::Partial);
            }
        }

        #[test]
        fn v2_with_random_tlvs_round_trips(tlvs in proptest::collection::vec((any::<u8>(), proptest::collection::vec(any::<u8>(), 0..40)), 0..6)) {
            let mut payload = v4_payload();
            for (kind, value) in &tlvs {
                payload.push(*kind);
                payload.extend_from_slice(&u16::try_from(value.len()).unwrap().to_be_bytes());
                payload.extend_from_slice(value);
            }
            let header = v2_header(0x21, 0x11, &payload);
            prop_assert_eq!(parse(&header), Parsed::Complete { len: header.len(), source: addr("192.0.2.7:54321") });
            for cut in 0..header.len() {
                prop_assert_eq!(parse(&header[..cut]), Parsed::Partial);
            }
        }
    }
}
