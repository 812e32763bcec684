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
