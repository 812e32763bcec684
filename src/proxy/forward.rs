//! Headers on the way to the upstream and back: hop-by-hop removal, `X-Forwarded-*`,
//! `Forwarded`, request id.
//!
//! The header types are written through [`EditHeaders`] (from `pingora_headers`).

pub use super::pingora_headers::{
    edit_request_without_case, edit_response_without_case, EditHeaders,
};
use crate::headers::{CLIENT_CERT_FINGERPRINT, CLIENT_CERT_SUBJECT, X_FORWARDED_HOST};
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use std::io::Write;
use std::net::IpAddr;

/// What the gateway knows about the client connection.
pub struct ForwardInfo<'a> {
    /// The client: the TCP peer, or the address a trusted proxy named.
    pub client_ip: Option<IpAddr>,
    /// The TCP peer (or PROXY protocol source), when it is a trusted proxy.
    pub peer_ip: Option<IpAddr>,
    /// `http` or `https`.
    pub proto: &'static str,
    pub host: Option<&'a str>,
    pub request_id: &'a HeaderValue,
    /// Also send the RFC 7239 `Forwarded` header.
    pub forwarded: bool,
}

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Identity headers on the upstream request: every header any authorizer sets is removed from
/// what the client sent (on every route, so no upstream can be fooled by a spoofed one), the
/// credential is removed when the authorizer says so, then the established identity is added.
pub fn set_identity(
    headers: &mut impl EditHeaders,
    identity_headers: &[HeaderName],
    strip: &[HeaderName],
    identity: Option<&crate::auth::Identity>,
) {
    for name in identity_headers.iter().chain(strip) {
        if headers.map().contains_key(name) {
            headers.remove(name);
        }
    }
    remove_lookalikes(headers, identity_headers);
    if let Some(identity) = identity {
        for (name, value) in &identity.headers {
            headers.append(name, value.clone());
        }
    }
}

/// Remove headers that spell a protected name with `_` for `-` (`x_consumer_id`): CGI-style
/// upstreams (PHP, WSGI, Rack) read both as the same variable.
fn remove_lookalikes(headers: &mut impl EditHeaders, protected: &[HeaderName]) {
    if protected.is_empty() || !headers.map().keys().any(|k| k.as_str().contains('_')) {
        return;
    }
    let lookalikes: Vec<HeaderName> = headers
        .map()
        .keys()
        .filter(|k| {
            let name = k.as_str();
            name.contains('_')
                && protected.iter().any(|p| {
                    p.as_str().len() == name.len()
                        && p.as_str()
                            .bytes()
                            .zip(name.bytes())
                            .all(|(a, b)| a == b || (a == b'-' && b == b'_'))
                })
        })
        .cloned()
        .collect();
    for name in &lookalikes {
        headers.remove(name);
    }
}

/// `path?query` without the parameters named in `names` (compared after percent-decoding);
/// `None` when nothing was removed.
pub fn strip_query_params(path_and_query: &str, names: &[String]) -> Option<String> {
    let (path, query) = path_and_query.split_once('?')?;
    let named = |pair: &str| {
        let key = pair.split_once('=').map_or(pair, |(k, _)| k);
        let key = crate::auth::source::percent_decode(key);
        key.is_some_and(|k| names.iter().any(|n| *n == *k))
    };
    if !query.split('&').any(named) {
        return None;
    }
    let kept: Vec<&str> = query.split('&').filter(|p| !named(p)).collect();
    Some(if kept.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{}", kept.join("&"))
    })
}

/// The verified client certificate, for upstreams. Client-sent copies of these headers are
/// already gone (`set_identity`), so only the gateway sets them.
pub fn set_client_cert(
    headers: &mut impl EditHeaders,
    cert: Option<&crate::tls::accept::ClientCert>,
) {
    if let Some(cert) = cert {
        if let Ok(v) = HeaderValue::from_str(&cert.subject) {
            headers.set(&CLIENT_CERT_SUBJECT, v);
        }
        if let Ok(v) = HeaderValue::from_str(&cert.fingerprint) {
            headers.set(&CLIENT_CERT_FINGERPRINT, v);
        }
    }
}

/// Whether the request asks for a protocol upgrade (WebSocket). Such requests keep their
/// `Upgrade` and `Connection: upgrade` headers so the upstream can switch protocols.
pub fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE) && connection_has(headers, "upgrade")
}

fn connection_has(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Remove hop-by-hop headers (RFC 9110 7.6.1): `Connection` and every header it names,
/// `Keep-Alive`, `Proxy-Connection`, `TE`, `Trailer`, and `Upgrade` unless `keep_upgrade`.
/// `Transfer-Encoding` stays: Pingora reads it to frame the body and re-frames it itself.
pub fn remove_hop_by_hop(headers: &mut impl EditHeaders, keep_upgrade: bool) {
    // One pass over the names finds which hop-by-hop headers are present, instead of a hash
    // lookup per candidate: most messages carry none of them, or only `Connection`.
    let present = headers
        .map()
        .keys()
        .fold(0u8, |bits, k| bits | hop_by_hop_bit(k));
    if present == 0 && !keep_upgrade {
        return;
    }
    if present & CONNECTION_BIT != 0 {
        // The headers `Connection` names. Tokens are looked up by text first, so `close`
        // costs no header-name parsing; `keep-alive` is skipped, the loop below removes it.
        let named: Vec<HeaderName> = headers
            .map()
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|t| !t.is_empty() && !t.eq_ignore_ascii_case("keep-alive"))
            .filter(|t| headers.map().contains_key(*t))
            .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
            .filter(|n| {
                // Framing and the upgrade itself are not the client's to strip.
                *n != header::TRANSFER_ENCODING
                    && *n != header::CONTENT_LENGTH
                    && !(keep_upgrade && *n == header::UPGRADE)
            })
            .collect();
        for name in &named {
            headers.remove(name);
        }
        headers.remove(&header::CONNECTION);
    }
    for (bit, name) in [
        (KEEP_ALIVE_BIT, &KEEP_ALIVE),
        (PROXY_CONNECTION_BIT, &PROXY_CONNECTION),
        (TE_BIT, &header::TE),
        (TRAILER_BIT, &header::TRAILER),
    ] {
        if present & bit != 0 {
            headers.remove(name);
        }
    }
    if keep_upgrade {
        headers.set(&header::CONNECTION, HeaderValue::from_static("upgrade"));
    } else if present & UPGRADE_BIT != 0 {
        headers.remove(&header::UPGRADE);
    }
}

const CONNECTION_BIT: u8 = 1;
const KEEP_ALIVE_BIT: u8 = 2;
const PROXY_CONNECTION_BIT: u8 = 4;
const TE_BIT: u8 = 8;
const TRAILER_BIT: u8 = 16;
const UPGRADE_BIT: u8 = 32;

fn hop_by_hop_bit(name: &HeaderName) -> u8 {
    if *name == header::CONNECTION {
        CONNECTION_BIT
    } else if *name == KEEP_ALIVE {
        KEEP_ALIVE_BIT
    } else if *name == PROXY_CONNECTION {
        PROXY_CONNECTION_BIT
    } else if *name == header::TE {
        TE_BIT
    } else if *name == header::TRAILER {
        TRAILER_BIT
    } else if *name == header::UPGRADE {
        UPGRADE_BIT
    } else {
        0
    }
}

/// Add the forwarding headers. `X-Forwarded-For` (and `Forwarded` when asked for) name the
/// client and, when the client came through a trusted proxy, that proxy: whatever the client
/// sent in them is replaced, since only entries from trusted proxies were believed
/// (`edge::client_ip`) and anything else could be spoofed. `X-Forwarded-Proto`,
/// `X-Forwarded-Host` and the request id are replaced too.
pub fn add_forwarding(headers: &mut impl EditHeaders, info: &ForwardInfo<'_>) {
    let hops: [Option<IpAddr>; 2] = match (info.client_ip, info.peer_ip) {
        (Some(client), Some(peer)) if client != peer => [Some(client), Some(peer)],
        (client, peer) => [client.or(peer), None],
    };
    // Each value is written once into one buffer that becomes the header value without a copy.
    if hops[0].is_some() {
        let mut xff = Vec::with_capacity(48);
        for ip in hops.iter().flatten() {
            if !xff.is_empty() {
                xff.extend_from_slice(b", ");
            }
            crate::text::push_ip(&mut xff, *ip);
        }
        set(headers, &X_FORWARDED_FOR, xff);
    } else {
        headers.remove(&X_FORWARDED_FOR);
    }
    headers.set(&X_FORWARDED_PROTO, HeaderValue::from_static(info.proto));
    match info.host.and_then(|h| HeaderValue::from_str(h).ok()) {
        Some(host) => headers.set(&X_FORWARDED_HOST, host),
        None => headers.remove(&X_FORWARDED_HOST),
    }
    if info.forwarded {
        let mut fwd = Vec::with_capacity(96);
        for ip in hops.iter().flatten() {
            if !fwd.is_empty() {
                fwd.extend_from_slice(b", ");
            }
            match ip {
                IpAddr::V6(ip) => {
                    let _ = write!(fwd, "for=\"[{ip}]\"");
                }
                ip => {
                    fwd.extend_from_slice(b"for=");
                    crate::text::push_ip(&mut fwd, *ip);
                }
            }
        }
        if fwd.is_empty() {
            fwd.extend_from_slice(b"for=unknown");
        }
        if let Some(host) = info.host.filter(|h| is_token_safe(h)) {
            let _ = write!(fwd, ";host=\"{host}\"");
        }
        let _ = write!(fwd, ";proto={}", info.proto);
        set(headers, &header::FORWARDED, fwd);
    }
    headers.set(&super::request_id::HEADER, info.request_id.clone());
}

fn is_token_safe(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']' | b'_'))
}

fn set(headers: &mut impl EditHeaders, name: &HeaderName, value: Vec<u8>) {
    match HeaderValue::from_maybe_shared(Bytes::from(value)) {
        Ok(v) => headers.set(name, v),
        Err(_) => headers.remove(name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_query_parameters_are_removed() {
        let names = ["access_token".to_string()];
        assert_eq!(strip_query_params("/a?x=1", &names), None);
        assert_eq!(strip_query_params("/a", &names), None);
        assert_eq!(
            strip_query_params("/a?x=1&access_token=t&y=2", &names).as_deref(),
            Some("/a?x=1&y=2")
        );
        assert_eq!(
            strip_query_params("/a?access%5Ftoken=t", &names).as_deref(),
            Some("/a")
        );
    }

    #[test]
    fn identity_headers_and_their_underscore_spellings_are_replaced() {
        let mut h = headers(&[
            ("x-consumer-id", "spoofed"),
            ("x_consumer_id", "spoofed"),
            ("x_other", "kept"),
            ("authorization", "Bearer t"),
            ("x_client_cert_sha256", "spoofed"),
        ]);
        let protected = [
            HeaderName::from_static("x-consumer-id"),
            CLIENT_CERT_SUBJECT.clone(),
            CLIENT_CERT_FINGERPRINT.clone(),
        ];
        let identity = crate::auth::Identity {
            consumer: None,
            headers: vec![(protected[0].clone(), HeaderValue::from_static("alice"))],
        };
        set_identity(
            &mut h,
            &protected,
            &[header::AUTHORIZATION],
            Some(&identity),
        );
        set_client_cert(&mut h, None);
        let mut names: Vec<(&str, &str)> = h
            .iter()
            .map(|(k, v)| (k.as_str(), v.to_str().unwrap()))
            .collect();
        names.sort();
        assert_eq!(names, [("x-consumer-id", "alice"), ("x_other", "kept")]);
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn hop_by_hop_headers_and_connection_named_ones_are_removed() {
        let mut h = headers(&[
            ("connection", "keep-alive, x-secret-hop"),
            ("keep-alive", "timeout=5"),
            ("x-secret-hop", "1"),
            ("te", "trailers"),
            ("proxy-connection", "keep-alive"),
            ("upgrade", "h2c"),
            ("transfer-encoding", "chunked"),
            ("x-normal", "stays"),
        ]);
        remove_hop_by_hop(&mut h, false);
        let names: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["transfer-encoding", "x-normal"]);
    }

    #[test]
    fn upgrade_requests_keep_the_upgrade() {
        let mut h = headers(&[("connection", "Upgrade"), ("upgrade", "websocket")]);
        assert!(is_upgrade(&h));
        remove_hop_by_hop(&mut h, true);
        assert_eq!(h["upgrade"], "websocket");
        assert_eq!(h["connection"], "upgrade");
    }

    #[test]
    fn forwarding_headers_replace_what_the_client_sent() {
        let mut h = headers(&[
            ("x-forwarded-for", "203.0.113.9"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "spoofed"),
            ("x-request-id", "client-chosen"),
        ]);
        let id = HeaderValue::from_static("abc");
        add_forwarding(
            &mut h,
            &ForwardInfo {
                client_ip: "::1".parse().ok(),
                peer_ip: "::1".parse().ok(),
                proto: "http",
                host: Some("api.example.com"),
                request_id: &id,
                forwarded: true,
            },
        );
        assert_eq!(h["x-forwarded-for"], "::1", "a spoofed entry is dropped");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "api.example.com");
        assert_eq!(
            h["forwarded"],
            "for=\"[::1]\";host=\"api.example.com\";proto=http"
        );
        assert_eq!(h["x-request-id"], "abc");
    }

    #[test]
    fn a_client_behind_a_trusted_proxy_is_named_with_the_proxy() {
        let mut h = headers(&[("x-forwarded-for", "9.9.9.9, 198.51.100.7")]);
        let id = HeaderValue::from_static("abc");
        add_forwarding(
            &mut h,
            &ForwardInfo {
                client_ip: "198.51.100.7".parse().ok(),
                peer_ip: "10.0.0.2".parse().ok(),
                proto: "https",
                host: None,
                request_id: &id,
                forwarded: true,
            },
        );
        assert_eq!(h["x-forwarded-for"], "198.51.100.7, 10.0.0.2");
        assert_eq!(h["forwarded"], "for=198.51.100.7, for=10.0.0.2;proto=https");
    }

    #[test]
    fn ipv4_addresses_are_written_like_display_and_forwarded_is_opt_in() {
        let id = HeaderValue::from_static("abc");
        for ip in [
            "0.0.0.0",
            "10.2.30.255",
            "192.168.100.9",
            "255.255.255.255",
            "1.20.3.40",
        ] {
            let mut h = HeaderMap::new();
            let info = ForwardInfo {
                client_ip: ip.parse().ok(),
                peer_ip: ip.parse().ok(),
                proto: "https",
                host: None,
                request_id: &id,
                forwarded: false,
            };
            add_forwarding(&mut h, &info);
            assert_eq!(h["x-forwarded-for"], ip);
            assert!(
                h.get("forwarded").is_none(),
                "Forwarded only when asked for"
            );
            add_forwarding(
                &mut h,
                &ForwardInfo {
                    forwarded: true,
                    ..info
                },
            );
            assert_eq!(h["forwarded"], format!("for={ip};proto=https"));
        }
    }

    #[test]
    fn connection_tokens_match_header_names_case_insensitively() {
        let mut h = headers(&[
            ("connection", "close, X-Custom-Hop ,content-length"),
            ("close", "a header that happens to be named close"),
            ("x-custom-hop", "1"),
            ("content-length", "2"),
            ("x-normal", "stays"),
        ]);
        remove_hop_by_hop(&mut h, false);
        let names: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["content-length", "x-normal"]);
        let mut plain = headers(&[("host", "a"), ("x-normal", "stays")]);
        remove_hop_by_hop(&mut plain, false);
        assert_eq!(plain.len(), 2);
    }
}
