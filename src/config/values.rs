//! Typed values parsed once, while the file is read: what a limit key or a consistent hash is
//! made of, and a quota's calendar window. Concern modules use these types as they are.

use http::HeaderName;
use serde::Deserialize;

/// One part of a limit key: `route`, `client_ip`, `consumer` or `header:NAME`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum KeyPart {
    Route,
    ClientIp,
    /// The consumer named by the route's authorizer (empty for anonymous requests).
    Consumer,
    Header(HeaderName),
}

impl KeyPart {
    /// Parse `route`, `client_ip`, `consumer` or `header:NAME`.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "route" => Ok(Self::Route),
            "client_ip" => Ok(Self::ClientIp),
            "consumer" => Ok(Self::Consumer),
            _ => header_part(s).map(Self::Header).ok_or_else(|| {
                format!("{s:?} is not one of `route`, `client_ip`, `consumer`, `header:NAME`")
            }),
        }
    }
}

impl TryFrom<String> for KeyPart {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Self::parse(&s)
    }
}

/// What consistent hashing hashes: `client_ip`, `path` or `header:NAME`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum HashKey {
    ClientIp,
    Path,
    Header(HeaderName),
}

impl HashKey {
    /// Parse `client_ip`, `path` or `header:NAME`.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "client_ip" => Ok(Self::ClientIp),
            "path" => Ok(Self::Path),
            _ => header_part(s)
                .map(Self::Header)
                .ok_or_else(|| format!("{s:?} is not one of `client_ip`, `path`, `header:NAME`")),
        }
    }
}

impl TryFrom<String> for HashKey {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Self::parse(&s)
    }
}

fn header_part(s: &str) -> Option<HeaderName> {
    s.strip_prefix("header:")
        .and_then(|h| HeaderName::from_bytes(h.as_bytes()).ok())
}

/// Calendar window of a quota (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Window {
    Minute,
    Hour,
    Day,
    Month,
}

/// A JWT signature algorithm an authorizer accepts. `none` is not one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct JwtAlgorithm(pub jsonwebtoken::Algorithm);

impl TryFrom<String> for JwtAlgorithm {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse().map(Self).map_err(|_| {
            format!(
                "{s:?} is not one of RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, \
                 EdDSA, HS256, HS384, HS512"
            )
        })
    }
}

/// Key families; an algorithm only ever verifies with a key of its family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Hmac,
    Rsa,
    Ec,
    Ed,
}

/// The key family of an algorithm.
pub fn family(alg: jsonwebtoken::Algorithm) -> Family {
    use jsonwebtoken::Algorithm::*;
    match alg {
        HS256 | HS384 | HS512 => Family::Hmac,
        RS256 | RS384 | RS512 | PS256 | PS384 | PS512 => Family::Rsa,
        ES256 | ES384 => Family::Ec,
        EdDSA => Family::Ed,
    }
}

/// One place a credential may be carried: `bearer`, `header:NAME`, `query:NAME` or
/// `cookie:NAME`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum CredentialSource {
    Bearer,
    Header(HeaderName),
    Query(String),
    Cookie(String),
}

impl CredentialSource {
    /// Parse `bearer`, `header:NAME`, `query:NAME` or `cookie:NAME`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let bad =
            || format!("{s:?} is not one of `bearer`, `header:NAME`, `query:NAME`, `cookie:NAME`");
        if s == "bearer" {
            return Ok(Self::Bearer);
        }
        let (kind, name) = s.split_once(':').ok_or_else(bad)?;
        if name.is_empty() {
            return Err(bad());
        }
        match kind {
            "header" => HeaderName::from_bytes(name.as_bytes())
                .map(Self::Header)
                .map_err(|_| format!("{name:?} is not a valid header name")),
            "query" => Ok(Self::Query(name.to_string())),
            "cookie" => Ok(Self::Cookie(name.to_string())),
            _ => Err(bad()),
        }
    }
}

impl std::fmt::Display for CredentialSource {
    /// As written in the config: `bearer`, `header:NAME`, `query:NAME`, `cookie:NAME`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Bearer => f.write_str("bearer"),
            Self::Header(name) => write!(f, "header:{name}"),
            Self::Query(name) => write!(f, "query:{name}"),
            Self::Cookie(name) => write!(f, "cookie:{name}"),
        }
    }
}

impl TryFrom<String> for CredentialSource {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Self::parse(&s)
    }
}

/// A header name from the config, checked while reading.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Header(pub HeaderName);

impl Header {
    pub const fn from_static(name: &'static str) -> Self {
        Self(HeaderName::from_static(name))
    }
}

impl TryFrom<String> for Header {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        HeaderName::from_bytes(s.as_bytes())
            .map(Self)
            .map_err(|_| format!("{s:?} is not a valid header name"))
    }
}

/// Whether the gateway may call `url` for keys or decisions: `https`, or `http` to a loopback
/// host or with `allow_http`.
pub fn check_url(url: &str, allow_http: bool) -> Result<(), String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("invalid URL: {e}"))?;
    match parsed.scheme() {
        "https" => Ok(()),
        "http" => {
            let loopback = match parsed.host() {
                Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
                Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
                Some(url::Host::Domain(d)) => d == "localhost",
                None => false,
            };
            if loopback || allow_http {
                Ok(())
            } else {
                Err(
                    "plain http would let the network forge keys and decisions; use https \
                     (or set allow_http = true)"
                        .into(),
                )
            }
        }
        other => Err(format!("unsupported scheme {other:?}")),
    }
}

/// An entry of an IP list: a CIDR (`10.0.0.0/8`, `2001:db8::/32`) or a single address,
/// surrounding whitespace ignored. Host bits must be clear, so `10.0.0.1/8` (which reads as one
/// address but means 16M) is refused.
pub fn parse_cidr(entry: &str) -> Result<ipnet::IpNet, String> {
    use ipnet::IpNet;
    use std::net::IpAddr;
    let entry = entry.trim();
    let net = match entry.parse::<IpNet>() {
        Ok(net) => net,
        Err(_) => match entry.parse::<IpAddr>() {
            Ok(addr) => IpNet::from(addr),
            Err(_) => return Err(explain_bad_entry(entry)),
        },
    };
    let trunc = net.trunc();
    if trunc != net {
        // Usually a typo or a misunderstanding of CIDR: refusing beats silently widening
        // or narrowing the list.
        return Err(format!("host bits set in {entry}: did you mean {trunc}?"));
    }
    Ok(net)
}

/// Why an entry is neither a CIDR nor an address, as precisely as cheaply possible.
fn explain_bad_entry(entry: &str) -> String {
    if entry.is_empty() {
        return "empty entry: not an IP address or CIDR".to_string();
    }
    if let Some((addr, prefix)) = entry.split_once('/') {
        if let Ok(addr) = addr.parse::<std::net::IpAddr>() {
            let max = if addr.is_ipv4() { 32 } else { 128 };
            return format!(
                "bad prefix length in {entry}: expected a number from 0 to {max}, found {prefix:?}"
            );
        }
    }
    format!("{entry:?} is not an IP address or CIDR")
}

/// A `*`/`**`/`?` path glob as an anchored regular expression.
pub fn glob_to_regex(glob: &str) -> String {
    let mut out = String::with_capacity(glob.len() * 2 + 2);
    out.push('^');
    let mut chars = glob.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '*' if chars.peek() == Some(&'*') => {
                chars.next();
                out.push_str(".*");
            }
            '*' => out.push_str("[^/]*"),
            '?' => out.push_str("[^/]"),
            c => out.push_str(&regex::escape(c.encode_utf8(&mut [0; 4]))),
        }
    }
    out.push('$');
    out
}
