//! Authentication and authorization per route: JWT (with OIDC discovery and JWKS refresh),
//! API keys and an external HTTP authorizer.
//!
//! `[authorizers.NAME]` compile into [`Authorizer`]s; a route's `auth` compiles into a
//! [`RouteAuth`] (the authorizer plus the scopes and claims the route requires). Requests that
//! do not pass never reach the upstream, whatever their method or `Upgrade` header, because
//! the check runs in `request_filter` before anything else is done with the request.
//!
//! Remote key sets outlive reloads in [`AuthRegistry`]; the key refresh background
//! service (`services::key_refresh`) keeps them fresh.

pub mod api_key;
mod compile;
pub mod external;
pub mod fetch;
pub mod jwks;
pub mod jwt;
pub mod rules;
pub mod source;

pub use compile::{compile, compile_route};

use crate::observe::metrics::Metrics;
use http::{HeaderName, HeaderValue};
use jwks::{KeySet, RemoteSource};
use pingora::http::RequestHeader;
use prometheus::{IntCounter, IntCounterVec};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

/// Why a request was allowed or refused. The label set of
/// `gatehouse_auth_decisions_total{result}` is exactly these, so it stays bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Allowed,
    MissingCredentials,
    Malformed,
    AlgorithmNotAllowed,
    UnknownKey,
    InvalidSignature,
    Expired,
    NotYetValid,
    InvalidIssuedAt,
    InvalidIssuer,
    InvalidAudience,
    MissingClaim,
    InsufficientScope,
    ClaimMismatch,
    KeysUnavailable,
    InvalidKey,
    Denied,
    Forbidden,
    AuthorizerError,
}

impl Reason {
    pub const ALL: [Reason; 19] = [
        Self::Allowed,
        Self::MissingCredentials,
        Self::Malformed,
        Self::AlgorithmNotAllowed,
        Self::UnknownKey,
        Self::InvalidSignature,
        Self::Expired,
        Self::NotYetValid,
        Self::InvalidIssuedAt,
        Self::InvalidIssuer,
        Self::InvalidAudience,
        Self::MissingClaim,
        Self::InsufficientScope,
        Self::ClaimMismatch,
        Self::KeysUnavailable,
        Self::InvalidKey,
        Self::Denied,
        Self::Forbidden,
        Self::AuthorizerError,
    ];

    /// Metric label and access-log value.
    pub fn label(self) -> &'static str {
        match self {
            Self::Allowed => "allowed",
            Self::MissingCredentials => "missing_credentials",
            Self::Malformed => "malformed",
            Self::AlgorithmNotAllowed => "algorithm_not_allowed",
            Self::UnknownKey => "unknown_key",
            Self::InvalidSignature => "invalid_signature",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::InvalidIssuedAt => "invalid_iat",
            Self::InvalidIssuer => "invalid_issuer",
            Self::InvalidAudience => "invalid_audience",
            Self::MissingClaim => "missing_claim",
            Self::InsufficientScope => "insufficient_scope",
            Self::ClaimMismatch => "claim_mismatch",
            Self::KeysUnavailable => "keys_unavailable",
            Self::InvalidKey => "invalid_key",
            Self::Denied => "denied",
            Self::Forbidden => "forbidden",
            Self::AuthorizerError => "authorizer_error",
        }
    }

    /// Client-facing text: says what is wrong without echoing anything the client sent.
    pub fn message(self) -> &'static str {
        match self {
            Self::Allowed => "allowed",
            Self::MissingCredentials => "missing credentials",
            Self::Malformed => "malformed credentials",
            Self::AlgorithmNotAllowed => "token algorithm not allowed",
            Self::UnknownKey => "token signed with an unknown key",
            Self::InvalidSignature => "invalid token signature",
            Self::Expired => "token expired",
            Self::NotYetValid => "token not yet valid",
            Self::InvalidIssuedAt => "token issued at an invalid time",
            Self::InvalidIssuer => "token issuer not accepted",
            Self::InvalidAudience => "token audience not accepted",
            Self::MissingClaim => "token lacks a required claim",
            Self::InsufficientScope => "insufficient scope",
            Self::ClaimMismatch => "forbidden",
            Self::KeysUnavailable => "authorization keys unavailable",
            Self::InvalidKey => "invalid API key",
            Self::Denied => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::AuthorizerError => "authorizer unavailable",
        }
    }

    fn index(self) -> usize {
        Self::ALL.iter().position(|r| *r == self).unwrap_or(0)
    }
}

/// Who the request is, as established by an authorizer.
#[derive(Debug, Default)]
pub struct Identity {
    /// Consumer name for throttling keys and the access log.
    pub consumer: Option<Arc<str>>,
    /// Headers set on the upstream request.
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

/// A refusal, ready to be written.
#[derive(Debug)]
pub struct AuthRejection {
    pub reason: Reason,
    pub status: u16,
    pub www_authenticate: Option<HeaderValue>,
}

/// The kinds of authorizer.
pub enum AuthorizerKind {
    Jwt(jwt::JwtAuthorizer),
    ApiKey(api_key::ApiKeys),
    External(external::External),
}

/// A compiled `[authorizers.NAME]`.
pub struct Authorizer {
    pub name: String,
    pub kind: AuthorizerKind,
    /// Request headers removed before proxying (the credential, when configured).
    pub strip: Vec<HeaderName>,
    /// Query parameters removed before proxying (a credential read from the query).
    pub strip_query: Vec<String>,
    /// Headers this authorizer sets upstream; removed from every client request first.
    pub sets: Vec<HeaderName>,
    /// `WWW-Authenticate` of a 401 without an error code.
    challenge: HeaderValue,
    scheme: &'static str,
}

impl Authorizer {
    pub fn remote_keys(&self) -> Option<&Arc<KeySet>> {
        match &self.kind {
            AuthorizerKind::Jwt(j) if j.keys.is_remote() => Some(&j.keys),
            _ => None,
        }
    }
}

/// Decision counters of one route, created on first use.
pub struct AuthMetrics {
    family: IntCounterVec,
    route: String,
    authorizer: String,
    cells: [OnceLock<IntCounter>; Reason::ALL.len()],
}

impl AuthMetrics {
    pub fn new(family: IntCounterVec, route: &str, authorizer: &str) -> Self {
        Self {
            family,
            route: route.to_string(),
            authorizer: authorizer.to_string(),
            cells: std::array::from_fn(|_| OnceLock::new()),
        }
    }

    fn count(&self, reason: Reason) {
        self.cells[reason.index()]
            .get_or_init(|| {
                self.family
                    .with_label_values(&[&self.route, &self.authorizer, reason.label()])
            })
            .inc();
    }
}

/// A route's `auth`.
pub struct RouteAuth {
    pub authorizer: Arc<Authorizer>,
    rules: rules::Rules,
    metrics: AuthMetrics,
}

/// What [`authenticate`] needs of the request besides its header.
pub struct RequestInfo<'a> {
    pub route: &'a str,
    pub host: &'a str,
    pub request_id: &'a HeaderValue,
}

/// Authenticate and authorize one request for its route.
pub async fn authenticate(
    auth: &RouteAuth,
    req: &RequestHeader,
    info: &RequestInfo<'_>,
) -> Result<Arc<Identity>, AuthRejection> {
    let result = match &auth.authorizer.kind {
        AuthorizerKind::Jwt(jwt) => match jwt.authenticate(req).await {
            Ok(verified) => auth
                .rules
                .check(&verified)
                .map(|()| verified.identity.clone()),
            Err(reason) => Err(reason),
        },
        AuthorizerKind::ApiKey(keys) => keys.check(req),
        AuthorizerKind::External(ext) => {
            let call = external::Call {
                route: info.route,
                req,
                host: info.host,
                request_id: info.request_id,
            };
            ext.check(&call).await
        }
    };
    match result {
        Ok(identity) => {
            auth.metrics.count(Reason::Allowed);
            Ok(identity)
        }
        Err(reason) => {
            auth.metrics.count(reason);
            Err(auth.rejection(reason))
        }
    }
}

impl RouteAuth {
    fn rejection(&self, reason: Reason) -> AuthRejection {
        let a = &self.authorizer;
        let status = match reason {
            Reason::InsufficientScope | Reason::ClaimMismatch | Reason::Forbidden => 403,
            Reason::AuthorizerError => 503,
            Reason::KeysUnavailable => match &a.kind {
                AuthorizerKind::Jwt(j) => j.missing_keys_status,
                _ => 503,
            },
            _ => 401,
        };
        let www_authenticate = match (status, reason) {
            (403, Reason::InsufficientScope) => self.rules.scope_challenge.clone(),
            (401, Reason::MissingCredentials | Reason::Denied) => Some(a.challenge.clone()),
            (401, _) => HeaderValue::from_str(&format!(
                "{} realm=\"gatehouse\", error=\"invalid_token\", error_description=\"{}\"",
                a.scheme,
                reason.message()
            ))
            .ok(),
            _ => None,
        };
        AuthRejection {
            reason,
            status,
            www_authenticate,
        }
    }
}

/// The process-wide HTTP client for JWKS, discovery and external authorizers. No proxy from
/// the environment (these are calls to known services) and no redirects.
pub fn http_client() -> Result<&'static reqwest::Client, String> {
    static CLIENT: OnceLock<Result<reqwest::Client, String>> = OnceLock::new();
    CLIENT
        .get_or_init(|| {
            reqwest::Client::builder()
                .no_proxy()
                .redirect(reqwest::redirect::Policy::none())
                .pool_idle_timeout(Duration::from_secs(60))
                .user_agent(concat!("gatehouse/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// The remote key sets of the config in use, by (authorizer name, source), held weakly: a
/// reload that keeps the source keeps the keys. Compiling only reads it; `adopt` remembers
/// the sets of a snapshot once it is in use.
#[derive(Default)]
pub struct AuthRegistry {
    key_sets: Mutex<HashMap<(String, RemoteSource), Weak<KeySet>>>,
}

impl AuthRegistry {
    fn key_set(&self, name: &str, source: RemoteSource, metrics: &Metrics) -> Arc<KeySet> {
        let sets = self.key_sets.lock().unwrap_or_else(|e| e.into_inner());
        let key = (name.to_string(), source);
        if let Some(set) = sets.get(&key).and_then(Weak::upgrade) {
            return set;
        }
        // Same authorizer and URLs with other timings: start from the keys already held, so
        // changing a timeout cannot leave the route without keys while the IdP is down.
        let held = sets
            .iter()
            .filter(|((n, s), _)| n == name && s.same_origin(&key.1))
            .find_map(|(_, w)| w.upgrade())
            .map(|old| old.current().clone());
        let set = KeySet::remote(name, key.1.clone(), metrics.key_set(name));
        if let Some(keys) = held {
            set.seed(keys);
        }
        Arc::new(set)
    }

    /// Remember the remote key sets of the authorizers just put in use; the next compile
    /// reuses them.
    pub fn adopt<'a>(&self, authorizers: impl Iterator<Item = &'a Authorizer>) {
        let next = authorizers
            .filter_map(|a| a.remote_keys())
            .filter_map(|set| {
                let source = set.source()?.clone();
                Some(((set.authorizer.clone(), source), Arc::downgrade(set)))
            })
            .collect();
        *self.key_sets.lock().unwrap_or_else(|e| e.into_inner()) = next;
    }
}

#[cfg(test)]
mod tests;
