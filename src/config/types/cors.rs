//! `[cors.NAME]`: cross-origin resource sharing policies, attached to routes with
//! `cors = "NAME"`.

use serde::Deserialize;
use std::time::Duration;

/// `[cors.NAME]`: which browser origins may call the routes that name it, and how. The gateway
/// answers preflights itself and sets the CORS response headers, replacing the upstream's.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CorsConfig {
    /// `scheme://host[:port]` origins; `https://*.example.com` allows every subdomain (not the
    /// domain itself); `"*"` allows any origin (not with `allow_credentials`).
    pub allow_origins: Vec<CorsOrigin>,
    /// Methods a preflight may ask for.
    #[serde(default = "default_cors_methods")]
    pub allow_methods: Vec<String>,
    /// Request headers a preflight may ask for, beyond the CORS-safelisted ones; `"*"` allows
    /// any (not with `allow_credentials`).
    #[serde(default)]
    pub allow_headers: Vec<String>,
    /// Response headers scripts may read, beyond the safelisted ones.
    #[serde(default)]
    pub expose_headers: Vec<String>,
    /// Let browsers send cookies and HTTP authentication, and read the response.
    #[serde(default)]
    pub allow_credentials: bool,
    /// How long a browser may reuse a preflight's answer.
    #[serde(default = "default_cors_max_age", with = "humantime_serde")]
    pub max_age: Duration,
}

fn default_cors_methods() -> Vec<String> {
    ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]
        .map(String::from)
        .to_vec()
}

fn default_cors_max_age() -> Duration {
    Duration::from_secs(600)
}

/// One `allow_origins` entry, parsed while reading.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum CorsOrigin {
    /// `"*"`.
    Any,
    /// `scheme://host[:port]`, lowercase.
    Exact(String),
    /// `scheme://*.domain[:port]`: `prefix` is `scheme://`, `suffix` is `.domain[:port]`.
    Subdomains { prefix: String, suffix: String },
}

impl TryFrom<String> for CorsOrigin {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        parse_origin(&text)
    }
}

/// The pattern for one `allow_origins` entry, or what is wrong with it.
pub fn parse_origin(text: &str) -> Result<CorsOrigin, String> {
    if text == "*" {
        return Ok(CorsOrigin::Any);
    }
    if text == "null" {
        return Err(
            "\"null\" is the origin of sandboxed frames and local files, which any \
                    page can produce: it cannot be allowed"
                .into(),
        );
    }
    let lower = text.to_ascii_lowercase();
    let (scheme, rest) = lower
        .split_once("://")
        .ok_or_else(|| format!("{text:?} is not an origin: expected scheme://host[:port]"))?;
    if scheme.is_empty()
        || !scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
    {
        return Err(format!("{text:?}: invalid scheme"));
    }
    let (wildcard, host_port) = match rest.strip_prefix("*.") {
        Some(domain) => (true, domain),
        None => (false, rest),
    };
    let bad =
        || format!("{text:?} is not an origin: expected scheme://host[:port], without a path");
    // `host`, `host:port`, `[v6]` or `[v6]:port`.
    let (host, port) = match host_port.strip_prefix('[') {
        Some(v6) => {
            let (addr, rest) = v6.split_once(']').ok_or_else(bad)?;
            let port = match rest {
                "" => None,
                _ => Some(rest.strip_prefix(':').ok_or_else(bad)?),
            };
            (addr, port)
        }
        None => match host_port.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (host_port, None),
        },
    };
    let port_ok =
        port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()));
    let host_ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:".contains(&b));
    if !host_ok || !port_ok || (wildcard && host_port.starts_with('[')) {
        return Err(bad());
    }
    Ok(if wildcard {
        CorsOrigin::Subdomains {
            prefix: format!("{scheme}://"),
            suffix: format!(".{host_port}"),
        }
    } else {
        CorsOrigin::Exact(lower)
    })
}
