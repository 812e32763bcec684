//! Host names: the configured patterns routes and host policies bind to, the check every
//! request's Host must pass, and the one normal form (lower case, no port, no trailing dot)
//! that routes, certificates and host policies are all looked up by.

use std::borrow::Cow;

/// A host a route is bound to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HostPattern {
    Exact(String),
    /// `*.example.com`, stored as `example.com`; matches any name below it, not the name itself.
    Wildcard(String),
}

impl HostPattern {
    /// Parse a configured host name (case-insensitive, no port).
    pub fn parse(host: &str) -> Result<Self, String> {
        let lower = host.to_ascii_lowercase();
        let (wildcard, name) = match lower.strip_prefix("*.") {
            Some(rest) => (true, rest.to_string()),
            None => (false, lower),
        };
        let valid = !name.is_empty()
            && name.split('.').all(|label| {
                !label.is_empty()
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            });
        if !valid {
            return Err(format!(
                "{host:?} is not a host name (`api.example.com` or `*.example.com`, no port)"
            ));
        }
        Ok(if wildcard {
            Self::Wildcard(name)
        } else {
            Self::Exact(name)
        })
    }
}

/// The entry of the longest wildcard suffix covering `host` (`*.example.com` covers any depth
/// below example.com), as routes match; host policies use the same rule.
pub fn wildcard_lookup<'a, V, S: std::hash::BuildHasher>(
    table: &'a std::collections::HashMap<String, V, S>,
    host: &str,
) -> Option<&'a V> {
    let mut rest = host;
    while let Some((_, parent)) = rest.split_once('.') {
        if let Some(v) = table.get(parent) {
            return Some(v);
        }
        rest = parent;
    }
    None
}

/// Whether a Host header or authority is a plain name or IP literal with an optional port
/// (1 to 65535). Everything that matches hosts (routes, certificates, host policies) relies on this,
/// so `a.example.com:abc` or `evil%2ecom` cannot be read as one host here and another there.
pub fn valid_host(host: &str) -> bool {
    let (name, port) = match host.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((v6, after)) => {
                if v6.is_empty()
                    || !v6
                        .bytes()
                        .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
                {
                    return false;
                }
                (None, after)
            }
            None => return false,
        },
        None => match host.split_once(':') {
            Some((name, _)) => (Some(name), &host[name.len()..]),
            None => (Some(host), ""),
        },
    };
    let port_ok = port.is_empty()
        || port.strip_prefix(':').is_some_and(|p| {
            // Digits only (u16's parser would take a `+`), and a port a socket can have.
            p.bytes().all(|b| b.is_ascii_digit()) && p.parse::<u16>().is_ok_and(|n| n > 0)
        });
    let name_ok = name.is_none_or(|n| {
        !n.is_empty()
            && n.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
    });
    port_ok && name_ok
}

/// The host of a `host:port` target address, without the brackets of an IPv6 literal.
pub fn target_host(address: &str) -> &str {
    address
        .rsplit_once(':')
        .map_or(address, |(h, _)| h)
        .trim_start_matches('[')
        .trim_end_matches(']')
}

/// Lowercase host without port or trailing dot; borrowed unless it had uppercase letters.
pub fn host_key(host: &str) -> Cow<'_, str> {
    let host = if host.starts_with('[') {
        host.split_once(']')
            .map_or(host, |(h, _)| h)
            .trim_start_matches('[')
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    }
}
