//! The client address behind trusted proxies.
//!
//! Each proxy appends the address it received the request from to `X-Forwarded-For` (or a
//! `for=` element to `Forwarded`). Only the entries appended by proxies we trust are facts;
//! anything further left was written by whoever sent the request to the first trusted proxy
//! and may be spoofed. So the walk goes right to left from the TCP peer, hop by hop, and
//! stops at the first address that is not a trusted proxy: that is the client.
//!
//! Entries are split with `rsplit` on raw bytes, without regard for quoting. The part of a
//! header that trusted proxies appended is on the right and is read correctly whatever a
//! client put on the left (an unterminated quote, a stray comma), which a left-to-right,
//! quote-aware parser could not promise. A quoted `,` or `;` in an element a proxy appended
//! makes that element unparsable, which ends the walk conservatively.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use http::header::{HeaderMap, HeaderName, FORWARDED};

use crate::edge::ip_list::IpList;

/// Which header carries the chain of addresses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1, proxy2`.
    #[default]
    XForwardedFor,
    /// `Forwarded: for=client, for=proxy1` (RFC 7239).
    Forwarded,
}

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

impl ForwardedHeader {
    /// The header's name.
    pub fn header_name(self) -> &'static HeaderName {
        match self {
            Self::XForwardedFor => &X_FORWARDED_FOR,
            Self::Forwarded => &FORWARDED,
        }
    }
}

/// The client address: `peer` unless `peer` is trusted; then the first untrusted address
/// walking the header's entries right to left (all header fields, in order, joined). An entry
/// that cannot be parsed ends the walk: the client is the trusted hop that added it. When every
/// entry is trusted, the leftmost.
///
/// Empty list elements (`a, , b`) are skipped, as RFC 9110 5.6.1 asks of list recipients;
/// with no entry at all a trusted `peer` is the client. The answer is in canonical form: an
/// IPv4-mapped IPv6 address (`::ffff:1.2.3.4`) is returned as the IPv4 address, so that
/// logs, limits and lists see one spelling per client.
pub fn resolve(
    peer: IpAddr,
    trusted: &IpList,
    header: ForwardedHeader,
    headers: &HeaderMap,
) -> IpAddr {
    let peer = peer.to_canonical();
    // With nobody trusted the headers are client-controlled through and through.
    if trusted.is_empty() || !trusted.contains(peer) {
        return peer;
    }
    let parse_entry: fn(&[u8]) -> Option<IpAddr> = match header {
        ForwardedHeader::XForwardedFor => parse_xff_entry,
        ForwardedHeader::Forwarded => parse_forwarded_element,
    };
    // The hop that appended the entry being read: the peer for the rightmost entry.
    let mut hop = peer;
    // Fields in reverse order, each field's entries right to left: the same order as
    // walking the fields joined with `,`, without building the joined string.
    for field in headers.get_all(header.header_name()).iter().rev() {
        for entry in field.as_bytes().rsplit(|&b| b == b',') {
            if trim_ows(entry).is_empty() {
                continue;
            }
            let Some(ip) = parse_entry(entry) else {
                return hop;
            };
            let ip = ip.to_canonical();
            if !trusted.contains(ip) {
                return ip;
            }
            hop = ip;
        }
    }
    hop
}

/// Strips optional whitespace (SP, HTAB) from both ends.
fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// One `X-Forwarded-For` entry: `1.2.3.4`, `1.2.3.4:80`, `2001:db8::1`, `[2001:db8::1]`,
/// `[2001:db8::1]:443`, whitespace around.
fn parse_xff_entry(entry: &[u8]) -> Option<IpAddr> {
    let entry = std::str::from_utf8(trim_ows(entry)).ok()?;
    parse_node(entry, false)
}

/// A node: an address, optionally with a port; IPv6 with a port must be bracketed.
/// `obfuscated_port` admits RFC 7239's obfuscated ports (`_abc`).
fn parse_node(node: &str, obfuscated_port: bool) -> Option<IpAddr> {
    if let Some(rest) = node.strip_prefix('[') {
        let (addr, after) = rest.split_once(']')?;
        let ip = addr.parse::<Ipv6Addr>().ok()?;
        if !after.is_empty() {
            let port = after.strip_prefix(':')?;
            if !valid_port(port, obfuscated_port) {
                return None;
            }
        }
        return Some(IpAddr::V6(ip));
    }
    if let Ok(ip) = node.parse::<IpAddr>() {
        return Some(ip);
    }
    // `1.2.3.4:80`. A bare IPv6 address has several colons and was handled above.
    let (addr, port) = node.split_once(':')?;
    let ip = addr.parse::<Ipv4Addr>().ok()?;
    valid_port(port, obfuscated_port).then_some(IpAddr::V4(ip))
}

/// A port: a decimal number up to 65535 or, where allowed, an obfuscated port
/// (`"_" 1*(ALPHA / DIGIT / "." / "_" / "-")`).
fn valid_port(port: &str, obfuscated: bool) -> bool {
    if obfuscated {
        if let Some(name) = port.strip_prefix('_') {
            return !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        }
    }
    !port.is_empty()
        && port.len() <= 5
        && port.bytes().all(|b| b.is_ascii_digit())
        && port.parse::<u16>().is_ok()
}

/// One `Forwarded` element (`for=1.2.3.4;proto=https;by=...`): the address of its `for=`.
/// No `for=`, two of them, `for=unknown`, an obfuscated identifier (`_hidden`) or a pair
/// that is not `key=value` make the element unparsable.
fn parse_forwarded_element(element: &[u8]) -> Option<IpAddr> {
    let mut found = None;
    for pair in element.split(|&b| b == b';') {
        let pair = trim_ows(pair);
        if pair.is_empty() {
            continue;
        }
        let eq = pair.iter().position(|&b| b == b'=')?;
        let (key, value) = (trim_ows(&pair[..eq]), trim_ows(&pair[eq + 1..]));
        if !key.eq_ignore_ascii_case(b"for") {
            continue;
        }
        // A parameter may appear once per element; a second `for` is ambiguous.
        if found.is_some() {
            return None;
        }
        found = Some(value);
    }
    let value = found?;
    let value = match value {
        [b'"', inner @ .., b'"'] => inner,
        // A lone quote, or a quote at one end only.
        _ if value.contains(&b'"') => return None,
        _ => value,
    };
    // Quoted-pairs are not expected in an address; refusing them avoids unescaping.
    if value.contains(&b'\\') {
        return None;
    }
    // `unknown` and `_obfuscated` fail to parse as addresses here, ending the walk.
    parse_node(std::str::from_utf8(value).ok()?, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use proptest::prelude::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn trusted(entries: &[&str]) -> IpList {
        IpList::parse(entries).unwrap()
    }

    fn map(name: &str, values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        let name = HeaderName::from_bytes(name.as_bytes()).unwrap();
        for v in values {
            h.append(name.clone(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn xff(peer: &str, trusted_list: &[&str], values: &[&str]) -> IpAddr {
        resolve(
            ip(peer),
            &trusted(trusted_list),
            ForwardedHeader::XForwardedFor,
            &map("x-forwarded-for", values),
        )
    }

    fn fwd(peer: &str, trusted_list: &[&str], values: &[&str]) -> IpAddr {
        resolve(
            ip(peer),
            &trusted(trusted_list),
            ForwardedHeader::Forwarded,
            &map("forwarded", values),
        )
    }

    const PROXIES: &[&str] = &["10.0.0.0/8", "fd00::/8"];

    #[test]
    fn header_names() {
        assert_eq!(
            ForwardedHeader::XForwardedFor.header_name().as_str(),
            "x-forwarded-for"
        );
        assert_eq!(
            ForwardedHeader::Forwarded.header_name().as_str(),
            "forwarded"
        );
        assert_eq!(ForwardedHeader::default(), ForwardedHeader::XForwardedFor);
    }

    #[test]
    fn deserializes_kebab_case() {
        #[derive(serde::Deserialize)]
        struct C {
            h: ForwardedHeader,
        }
        let c: C = toml::from_str("h = \"x-forwarded-for\"").unwrap();
        assert_eq!(c.h, ForwardedHeader::XForwardedFor);
        let c: C = toml::from_str("h = \"forwarded\"").unwrap();
        assert_eq!(c.h, ForwardedHeader::Forwarded);
        assert!(toml::from_str::<C>("h = \"x_forwarded_for\"").is_err());
    }

    #[test]
    fn no_trusted_proxies_means_the_peer() {
        assert_eq!(
            xff("203.0.113.9", &[], &["198.51.100.1"]),
            ip("203.0.113.9")
        );
        assert_eq!(xff("10.0.0.1", &[], &["198.51.100.1"]), ip("10.0.0.1"));
    }

    #[test]
    fn spoofed_header_from_untrusted_peer_is_ignored() {
        assert_eq!(
            xff("203.0.113.9", PROXIES, &["198.51.100.1"]),
            ip("203.0.113.9")
        );
        assert_eq!(
            xff("203.0.113.9", PROXIES, &["10.0.0.5"]),
            ip("203.0.113.9")
        );
        assert_eq!(
            fwd("203.0.113.9", PROXIES, &["for=198.51.100.1"]),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn trusted_peer_without_header_is_the_client() {
        assert_eq!(xff("10.0.0.1", PROXIES, &[]), ip("10.0.0.1"));
        assert_eq!(xff("10.0.0.1", PROXIES, &[""]), ip("10.0.0.1"));
        assert_eq!(xff("10.0.0.1", PROXIES, &[" , ,"]), ip("10.0.0.1"));
    }

    #[test]
    fn trusted_chain_stops_at_first_untrusted() {
        // spoof, client, proxy1 — proxy1 trusted, peer trusted.
        assert_eq!(
            xff("10.0.0.2", PROXIES, &["6.6.6.6, 198.51.100.7, 10.0.0.1"]),
            ip("198.51.100.7")
        );
        // Only the peer appended: the rightmost entry is the client.
        assert_eq!(
            xff("10.0.0.1", PROXIES, &["6.6.6.6, 198.51.100.7"]),
            ip("198.51.100.7")
        );
        assert_eq!(
            xff("10.0.0.1", PROXIES, &["198.51.100.7"]),
            ip("198.51.100.7")
        );
    }

    #[test]
    fn all_trusted_gives_the_leftmost() {
        assert_eq!(
            xff("10.0.0.3", PROXIES, &["10.0.0.1, 10.0.0.2"]),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn multiple_fields_are_joined_in_order() {
        assert_eq!(
            xff(
                "10.0.0.3",
                PROXIES,
                &["6.6.6.6", "198.51.100.7, 10.0.0.1", "10.0.0.2"]
            ),
            ip("198.51.100.7")
        );
        assert_eq!(
            xff("10.0.0.3", PROXIES, &["6.6.6.6, 198.51.100.7", "10.0.0.1"]),
            ip("198.51.100.7")
        );
        // The last field's last entry is the rightmost.
        assert_eq!(
            xff("10.0.0.3", PROXIES, &["198.51.100.7", "203.0.113.1"]),
            ip("203.0.113.1")
        );
        // An empty field in the middle is skipped.
        assert_eq!(
            xff("10.0.0.3", PROXIES, &["198.51.100.7", "", "10.0.0.1"]),
            ip("198.51.100.7")
        );
    }

    #[test]
    fn garbage_ends_the_walk_at_the_hop_that_added_it() {
        // Rightmost entry garbage: the peer added it, so the peer is the client.
        assert_eq!(
            xff("10.0.0.1", PROXIES, &["198.51.100.7, garbage"]),
            ip("10.0.0.1")
        );
        // Garbage behind a trusted hop: that hop.
        assert_eq!(
            xff("10.0.0.2", PROXIES, &["198.51.100.7, nonsense, 10.0.0.1"]),
            ip("10.0.0.1")
        );
        // Garbage left of the client does not matter.
        assert_eq!(
            xff("10.0.0.2", PROXIES, &["nonsense, 198.51.100.7, 10.0.0.1"]),
            ip("198.51.100.7")
        );
        for bad in [
            "unknown",
            "1.2.3",
            "1.2.3.4.5",
            "1.2.3.4:",
            "1.2.3.4:99999",
            "1.2.3.4:http",
            "[1.2.3.4]",
            "[2001:db8::1",
            "[2001:db8::1]x",
            "[2001:db8::1]:",
            "2001:db8::1:443:x",
            "fe80::1%eth0",
            "1.2.3.4 5.6.7.8",
            "\"1.2.3.4\"",
            "for=1.2.3.4",
            "_hidden",
        ] {
            assert_eq!(xff("10.0.0.1", PROXIES, &[bad]), ip("10.0.0.1"), "{bad:?}");
        }
    }

    #[test]
    fn xff_entry_spellings() {
        for (entry, want) in [
            ("198.51.100.7", "198.51.100.7"),
            ("  198.51.100.7\t", "198.51.100.7"),
            ("198.51.100.7:80", "198.51.100.7"),
            ("198.51.100.7:65535", "198.51.100.7"),
            ("2001:db8::1", "2001:db8::1"),
            ("[2001:db8::1]", "2001:db8::1"),
            ("[2001:db8::1]:443", "2001:db8::1"),
            (" [2001:db8::1]:443 ", "2001:db8::1"),
            ("::ffff:198.51.100.7", "198.51.100.7"),
            ("[::ffff:198.51.100.7]:8080", "198.51.100.7"),
        ] {
            assert_eq!(xff("10.0.0.1", PROXIES, &[entry]), ip(want), "{entry:?}");
        }
    }

    #[test]
    fn ipv6_chain() {
        assert_eq!(
            xff(
                "fd00::2",
                PROXIES,
                &["2001:db8::66, 2001:db8::7, [fd00::1]:443"]
            ),
            ip("2001:db8::7")
        );
        assert_eq!(xff("fd00::2", PROXIES, &["10.0.0.1"]), ip("10.0.0.1"));
        assert_eq!(
            xff("2001:db8::9", PROXIES, &["2001:db8::7"]),
            ip("2001:db8::9")
        );
    }

    #[test]
    fn ipv4_mapped_peer() {
        // The peer as a dual-stack listener reports it matches the IPv4 entry...
        assert_eq!(
            xff("::ffff:10.0.0.1", PROXIES, &["198.51.100.7"]),
            ip("198.51.100.7")
        );
        // ...and comes back as IPv4 when it is the client.
        assert_eq!(
            xff("::ffff:203.0.113.9", PROXIES, &["198.51.100.7"]),
            ip("203.0.113.9")
        );
        assert_eq!(xff("::ffff:203.0.113.9", &[], &[]), ip("203.0.113.9"));
        // Mapped entries are trusted like their IPv4 address.
        assert_eq!(
            xff("10.0.0.2", PROXIES, &["198.51.100.7, ::ffff:10.0.0.1"]),
            ip("198.51.100.7")
        );
    }

    #[test]
    fn forwarded_variants() {
        for (value, want) in [
            ("for=198.51.100.7", "198.51.100.7"),
            ("For=198.51.100.7", "198.51.100.7"),
            ("FOR=198.51.100.7;proto=https;by=10.0.0.1", "198.51.100.7"),
            (
                "proto=https; for=198.51.100.7 ;host=example.com",
                "198.51.100.7",
            ),
            ("for=\"198.51.100.7\"", "198.51.100.7"),
            ("for=\"198.51.100.7:80\"", "198.51.100.7"),
            ("for=\"198.51.100.7:_p0rt\"", "198.51.100.7"),
            ("for=\"[2001:db8::1]\"", "2001:db8::1"),
            ("for=\"[2001:db8::1]:4711\"", "2001:db8::1"),
            ("for=\"[2001:db8::1]:_x\"", "2001:db8::1"),
            ("for = 198.51.100.7", "198.51.100.7"),
            ("for=198.51.100.7;", "198.51.100.7"),
        ] {
            assert_eq!(fwd("10.0.0.1", PROXIES, &[value]), ip(want), "{value:?}");
        }
        assert_eq!(
            fwd(
                "10.0.0.2",
                PROXIES,
                &[
                    "for=6.6.6.6, for=198.51.100.7;proto=http",
                    "for=\"[fd00::1]:80\""
                ]
            ),
            ip("198.51.100.7")
        );
        assert_eq!(
            fwd("10.0.0.2", PROXIES, &["for=10.0.0.9, for=10.0.0.1"]),
            ip("10.0.0.9")
        );
    }

    #[test]
    fn forwarded_unparsable_elements_end_the_walk() {
        for bad in [
            "for=unknown",
            "for=\"unknown\"",
            "for=_hidden",
            "for=\"_hidden\"",
            "proto=https",
            "by=198.51.100.7",
            "for",
            "for=198.51.100.7;proto",
            "for=198.51.100.7;for=198.51.100.8",
            "for=\"198.51.100.7",
            "for=198.51.100.7\"",
            "for=\"",
            "for=\"198.51\\.100.7\"",
            "for=",
            "for=\"[2001:db8::1]:99999\"",
            "for=\"1.2.3.4:\"",
            "for=\"1.2.3.4:_\"",
            "198.51.100.7",
        ] {
            assert_eq!(fwd("10.0.0.1", PROXIES, &[bad]), ip("10.0.0.1"), "{bad:?}");
            // Behind a trusted hop, that hop is the client.
            let joined = format!("{bad}, for=10.0.0.7");
            assert_eq!(
                fwd("10.0.0.1", PROXIES, &[&joined]),
                ip("10.0.0.7"),
                "{joined:?}"
            );
        }
    }

    #[test]
    fn forwarded_quoted_comma_from_the_client_does_not_hide_the_proxy_entries() {
        // The client opened a quote that a left-to-right parser would run to the end.
        assert_eq!(
            fwd(
                "10.0.0.2",
                PROXIES,
                &["for=\"6.6.6.6, for=198.51.100.7, for=10.0.0.1"]
            ),
            ip("198.51.100.7")
        );
    }

    #[test]
    fn header_kind_selects_the_header() {
        let mut h = map("x-forwarded-for", &["198.51.100.7"]);
        h.append("forwarded", HeaderValue::from_static("for=203.0.113.5"));
        let t = trusted(PROXIES);
        let peer = ip("10.0.0.1");
        assert_eq!(
            resolve(peer, &t, ForwardedHeader::XForwardedFor, &h),
            ip("198.51.100.7")
        );
        assert_eq!(
            resolve(peer, &t, ForwardedHeader::Forwarded, &h),
            ip("203.0.113.5")
        );
    }

    #[test]
    fn non_utf8_entry_is_unparsable_but_does_not_hide_others() {
        let mut h = HeaderMap::new();
        h.append(
            "x-forwarded-for",
            HeaderValue::from_bytes(b"\xff\xfe, 198.51.100.7").unwrap(),
        );
        let t = trusted(PROXIES);
        assert_eq!(
            resolve(ip("10.0.0.1"), &t, ForwardedHeader::XForwardedFor, &h),
            ip("198.51.100.7")
        );
        h.append(
            "x-forwarded-for",
            HeaderValue::from_bytes(b"\xc3\xa9").unwrap(),
        );
        assert_eq!(
            resolve(ip("10.0.0.1"), &t, ForwardedHeader::XForwardedFor, &h),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn trim_ows_strips_both_ends() {
        assert_eq!(trim_ows(b" \t a b\t "), b"a b");
        assert_eq!(trim_ows(b"   "), b"");
        assert_eq!(trim_ows(b""), b"");
    }

    /// Header text built from the characters that matter, plus anything at all.
    fn arb_value() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            "[0-9a-fA-F.:\\[\\]\"=;, \\t_forunkw]{0,60}".prop_map(String::into_bytes),
            proptest::collection::vec(any::<u8>(), 0..60),
        ]
    }

    fn arb_peer() -> impl Strategy<Value = IpAddr> {
        prop_oneof![
            Just(ip("10.0.0.1")),
            Just(ip("::ffff:10.0.0.1")),
            Just(ip("203.0.113.9")),
            Just(ip("fd00::1")),
        ]
    }

    proptest! {
        #[test]
        fn resolve_never_panics(
            peer in arb_peer(),
            values in proptest::collection::vec(arb_value(), 0..4),
            forwarded in any::<bool>(),
        ) {
            let kind = if forwarded { ForwardedHeader::Forwarded } else { ForwardedHeader::XForwardedFor };
            let mut h = HeaderMap::new();
            for v in &values {
                if let Ok(v) = HeaderValue::from_bytes(v) {
                    h.append(kind.header_name().clone(), v);
                }
            }
            let t = trusted(PROXIES);
            let got = resolve(peer, &t, kind, &h);
            // An untrusted peer is always the answer; never a mapped address.
            if !t.contains(peer) {
                prop_assert_eq!(got, peer.to_canonical());
            }
            prop_assert_eq!(got, got.to_canonical());
            prop_assert_eq!(resolve(peer, &IpList::default(), kind, &h), peer.to_canonical());
        }
    }
}
