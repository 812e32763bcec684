//! Cross-origin resource sharing (`[cors.NAME]`): which browser origins may call a route, the
//! preflight the gateway answers itself, and the CORS headers on every answer to an allowed
//! origin. Plain functions on a compiled policy; the proxy decides when they run.
//!
//! The gateway is the authority for a route with a policy: the upstream never sees a
//! preflight, and its own `Access-Control-*` response headers are replaced.

use crate::config::{CorsConfig, CorsOrigin};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::Method;

/// Request headers a preflight may always name: the CORS-safelisted request headers.
const SAFELISTED: [&str; 4] = [
    "accept",
    "accept-language",
    "content-language",
    "content-type",
];

/// The `Access-Control-*` response headers, all replaced on routes with a policy.
const RESPONSE_HEADERS: [HeaderName; 6] = [
    header::ACCESS_CONTROL_ALLOW_ORIGIN,
    header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
    header::ACCESS_CONTROL_EXPOSE_HEADERS,
    header::ACCESS_CONTROL_ALLOW_METHODS,
    header::ACCESS_CONTROL_ALLOW_HEADERS,
    header::ACCESS_CONTROL_MAX_AGE,
];

/// Whether `origin` (already lowercase) matches `pattern`.
fn matches(pattern: &CorsOrigin, origin: &str) -> bool {
    match pattern {
        CorsOrigin::Any => true,
        CorsOrigin::Exact(o) => o == origin,
        CorsOrigin::Subdomains { prefix, suffix } => origin
            .strip_prefix(prefix.as_str())
            .and_then(|rest| rest.strip_suffix(suffix.as_str()))
            .is_some_and(|sub| {
                !sub.is_empty()
                    && sub
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
                    && !sub.starts_with('.')
                    && !sub.ends_with('.')
            }),
    }
}

/// A compiled `[cors.NAME]`.
#[derive(Debug)]
pub struct CorsPolicy {
    pub name: String,
    /// `None`: any origin.
    origins: Option<Vec<CorsOrigin>>,
    credentials: bool,
    methods: Vec<String>,
    /// `None`: any header.
    headers: Option<Vec<String>>,
    allow_methods: HeaderValue,
    expose: Option<HeaderValue>,
    max_age: HeaderValue,
}

static TRUE: HeaderValue = HeaderValue::from_static("true");
static ANY: HeaderValue = HeaderValue::from_static("*");
static VARY_ORIGIN: HeaderValue = HeaderValue::from_static("Origin");
static VARY_PREFLIGHT: HeaderValue = HeaderValue::from_static(
    "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
);

/// What a preflight gets.
#[derive(Debug, PartialEq)]
pub enum Preflight {
    /// `204` with these headers.
    Allowed(Vec<(HeaderName, HeaderValue)>),
    /// `403` with this reason.
    Refused(&'static str),
}

/// Whether the request is a CORS preflight: `OPTIONS` with `Origin` and
/// `Access-Control-Request-Method`.
pub fn is_preflight(method: &Method, headers: &HeaderMap) -> bool {
    method == Method::OPTIONS
        && headers.contains_key(header::ORIGIN)
        && headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

impl CorsPolicy {
    /// Compile a validated policy. Invalid entries (which validation reports) are left out.
    pub fn compile(name: &str, config: &CorsConfig) -> Self {
        let any_origin = config.allow_origins.contains(&CorsOrigin::Any);
        let origins = (!any_origin).then(|| config.allow_origins.clone());
        let any_header = config.allow_headers.iter().any(|h| h == "*");
        let headers = (!any_header).then(|| {
            (config.allow_headers.iter())
                .map(|h| h.to_ascii_lowercase())
                .chain(SAFELISTED.map(String::from))
                .collect()
        });
        let methods: Vec<String> = config
            .allow_methods
            .iter()
            .map(|m| m.to_ascii_uppercase())
            .collect();
        let join = |list: &[String]| HeaderValue::try_from(list.join(", ")).ok();
        Self {
            name: name.to_string(),
            origins,
            credentials: config.allow_credentials,
            allow_methods: join(&methods).unwrap_or_else(|| HeaderValue::from_static("")),
            methods,
            headers,
            expose: (!config.expose_headers.is_empty())
                .then(|| join(&config.expose_headers))
                .flatten(),
            max_age: HeaderValue::from(config.max_age.as_secs()),
        }
    }

    /// Whether `origin` may call the route.
    pub fn allows(&self, origin: &HeaderValue) -> bool {
        let Some(patterns) = &self.origins else {
            return true;
        };
        let Ok(origin) = origin.to_str() else {
            return false;
        };
        // Origins are short; lowercase only when needed.
        if origin.bytes().any(|b| b.is_ascii_uppercase()) {
            let lower = origin.to_ascii_lowercase();
            patterns.iter().any(|p| matches(p, &lower))
        } else {
            patterns.iter().any(|p| matches(p, origin))
        }
    }

    /// Whether answers depend on `Origin`, so caches must keep them apart (`Vary: Origin`).
    fn varies(&self) -> bool {
        self.origins.is_some() || self.credentials
    }

    /// `Access-Control-Allow-Origin`'s value for an allowed `origin`.
    fn allow_origin(&self, origin: &HeaderValue) -> HeaderValue {
        if self.origins.is_none() && !self.credentials {
            ANY.clone()
        } else {
            origin.clone()
        }
    }

    /// The answer to a preflight with `headers`.
    pub fn preflight(&self, headers: &HeaderMap) -> Preflight {
        let Some(origin) = headers.get(header::ORIGIN).filter(|o| self.allows(o)) else {
            return Preflight::Refused("CORS preflight refused: origin not allowed");
        };
        let method = headers
            .get(header::ACCESS_CONTROL_REQUEST_METHOD)
            .and_then(|m| m.to_str().ok())
            .unwrap_or("");
        if !self.methods.iter().any(|m| m == method) {
            return Preflight::Refused("CORS preflight refused: method not allowed");
        }
        let requested = headers
            .get_all(header::ACCESS_CONTROL_REQUEST_HEADERS)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|h| !h.is_empty());
        let mut names = Vec::new();
        for name in requested {
            let allowed = match &self.headers {
                None => true,
                Some(list) => list.iter().any(|h| h.eq_ignore_ascii_case(name)),
            };
            if !allowed {
                return Preflight::Refused("CORS preflight refused: header not allowed");
            }
            names.push(name.to_ascii_lowercase());
        }
        let mut out = vec![
            (
                header::ACCESS_CONTROL_ALLOW_ORIGIN,
                self.allow_origin(origin),
            ),
            (
                header::ACCESS_CONTROL_ALLOW_METHODS,
                self.allow_methods.clone(),
            ),
            (header::ACCESS_CONTROL_MAX_AGE, self.max_age.clone()),
            (header::VARY, VARY_PREFLIGHT.clone()),
        ];
        if let Some(value) = (!names.is_empty())
            .then(|| HeaderValue::try_from(names.join(", ")).ok())
            .flatten()
        {
            out.push((header::ACCESS_CONTROL_ALLOW_HEADERS, value));
        }
        if self.credentials {
            out.push((header::ACCESS_CONTROL_ALLOW_CREDENTIALS, TRUE.clone()));
        }
        Preflight::Allowed(out)
    }

    /// The CORS headers of any other answer to a request from `origin`: the allowed origin,
    /// credentials and exposed headers when it is allowed, and `Vary: Origin` whenever the
    /// answer depends on it. `Vary` is appended to the answer's own; the others replace.
    pub fn response_headers(
        &self,
        origin: Option<&HeaderValue>,
    ) -> impl Iterator<Item = (HeaderName, HeaderValue)> {
        let allowed = origin.filter(|o| self.allows(o));
        let vary = self.varies().then(|| (header::VARY, VARY_ORIGIN.clone()));
        let origin = allowed.map(|o| (header::ACCESS_CONTROL_ALLOW_ORIGIN, self.allow_origin(o)));
        let credentials = (allowed.is_some() && self.credentials)
            .then(|| (header::ACCESS_CONTROL_ALLOW_CREDENTIALS, TRUE.clone()));
        let expose = allowed
            .and(self.expose.clone())
            .map(|v| (header::ACCESS_CONTROL_EXPOSE_HEADERS, v));
        vary.into_iter()
            .chain(origin)
            .chain(credentials)
            .chain(expose)
    }
}

/// The `Access-Control-*` response headers an upstream may have set, which a route with a
/// policy replaces.
pub fn upstream_headers() -> &'static [HeaderName] {
    &RESPONSE_HEADERS
}

#[cfg(test)]
mod tests;
