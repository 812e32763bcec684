//! External authorizer: an HTTP service decides, like a cloud gateway's custom authorizer. The
//! gateway sends `GET url` with the identity headers and what the request is for; 2xx allows
//! (and may name headers to forward), 403 forbids, any other 4xx denies. Decisions are cached
//! per route, method, host and identity values for a TTL. A timeout, a transport error or a
//! 5xx is an error: `on_error` decides.

use super::{Identity, Reason};
use crate::auth::jwks::error_chain;
use crate::cache::ExactCache;
use crate::headers::{REQUEST_ID, X_FORWARDED_HOST};
use http::{HeaderName, HeaderValue};
use pingora::http::RequestHeader;
use std::sync::Arc;
use std::time::Duration;

static FORWARDED_METHOD: HeaderName = HeaderName::from_static("x-forwarded-method");
static FORWARDED_URI: HeaderName = HeaderName::from_static("x-forwarded-uri");

/// A compiled `type = "external"` authorizer.
pub struct External {
    pub name: String,
    pub url: String,
    pub identity: Vec<HeaderName>,
    pub forward: Vec<HeaderName>,
    pub consumer_header: Option<HeaderName>,
    pub timeout: Duration,
    pub ttl: Duration,
    pub deny_ttl: Duration,
    pub fail_open: bool,
    cache: Option<ExactCache<Decision>>,
    /// Bounds the calls in flight.
    calls: tokio::sync::Semaphore,
}

#[derive(Clone)]
enum Decision {
    Allow(Arc<Identity>),
    Deny(Reason),
}

/// What one request is, for the authorizer.
pub struct Call<'a> {
    pub route: &'a str,
    pub req: &'a RequestHeader,
    pub host: &'a str,
    pub request_id: &'a HeaderValue,
}

impl External {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        name: &str,
        url: String,
        identity: Vec<HeaderName>,
        forward: Vec<HeaderName>,
        consumer_header: Option<HeaderName>,
        timeout: Duration,
        ttl: Duration,
        deny_ttl: Duration,
        fail_open: bool,
        cache_size: usize,
        max_concurrent_calls: usize,
    ) -> Self {
        let caching = cache_size > 0 && (!ttl.is_zero() || !deny_ttl.is_zero());
        Self {
            name: name.to_string(),
            url,
            identity,
            forward,
            consumer_header,
            timeout,
            ttl,
            deny_ttl,
            fail_open,
            cache: caching.then(|| ExactCache::new(cache_size)),
            calls: tokio::sync::Semaphore::new(max_concurrent_calls),
        }
    }

    /// The cache key: route and every value of every identity header, length-prefixed so
    /// that no two different requests produce the same bytes. `None` when no identity header
    /// is present.
    fn identity_key(&self, call: &Call) -> Option<Vec<u8>> {
        let mut key = Vec::with_capacity(128);
        let mut push = |b: &[u8]| {
            key.extend_from_slice(&(b.len() as u32).to_be_bytes());
            key.extend_from_slice(b);
        };
        // The authorizer sees the method and host, so its answer may depend on them.
        push(call.route.as_bytes());
        push(call.req.method.as_str().as_bytes());
        push(call.host.as_bytes());
        let mut any = false;
        for name in &self.identity {
            let values = call.req.headers.get_all(name);
            push(&(values.iter().count() as u32).to_be_bytes());
            for v in values {
                any = true;
                push(v.as_bytes());
            }
        }
        any.then_some(key)
    }

    pub async fn check(&self, call: &Call<'_>) -> Result<Arc<Identity>, Reason> {
        let key = self.identity_key(call).ok_or(Reason::MissingCredentials)?;
        let now = crate::clock::unix_nanos();
        match self.cache.as_ref().and_then(|c| c.get(&key, now)) {
            Some(Decision::Allow(identity)) => return Ok(identity),
            Some(Decision::Deny(reason)) => return Err(reason),
            None => {}
        }
        let permit = self.calls.try_acquire();
        let result = match permit {
            Ok(_permit) => self.call(call).await,
            Err(_) => Err("too many calls in flight (max_concurrent_calls)".to_string()),
        };
        let decision = match result {
            Ok(d) => d,
            Err(error) => {
                tracing::warn!(
                    authorizer = %self.name,
                    route = call.route,
                    error = %error,
                    fail_open = self.fail_open,
                    "external authorizer failed"
                );
                return if self.fail_open {
                    Ok(Arc::new(Identity::default()))
                } else {
                    Err(Reason::AuthorizerError)
                };
            }
        };
        let ttl = match &decision {
            Decision::Allow(_) => self.ttl,
            Decision::Deny(_) => self.deny_ttl,
        };
        if let Some(cache) = self.cache.as_ref().filter(|_| !ttl.is_zero()) {
            let expires = now.saturating_add(ttl.as_nanos() as u64);
            cache.insert(&key, decision.clone(), expires, now);
        }
        match decision {
            Decision::Allow(identity) => Ok(identity),
            Decision::Deny(reason) => Err(reason),
        }
    }

    async fn call(&self, call: &Call<'_>) -> Result<Decision, String> {
        let client = super::http_client().map_err(|e| e.to_string())?;
        let mut request = client
            .get(&self.url)
            .timeout(self.timeout)
            .header(&FORWARDED_METHOD, call.req.method.as_str())
            .header(&X_FORWARDED_HOST, call.host)
            .header(&REQUEST_ID, call.request_id.clone());
        if let Some(pq) = call.req.uri.path_and_query() {
            request = request.header(&FORWARDED_URI, pq.as_str());
        }
        for name in &self.identity {
            for v in call.req.headers.get_all(name) {
                request = request.header(name, v.clone());
            }
        }
        // Without the URL: a configured URL may carry credentials.
        let resp = request
            .send()
            .await
            .map_err(|e| error_chain(&e.without_url()))?;
        let status = resp.status();
        if status.is_success() {
            let headers = resp.headers();
            let mut forward = Vec::with_capacity(self.forward.len());
            for name in &self.forward {
                for v in headers.get_all(name) {
                    forward.push((name.clone(), v.clone()));
                }
            }
            let consumer = self
                .consumer_header
                .as_ref()
                .and_then(|h| headers.get(h))
                .and_then(|v| v.to_str().ok())
                .map(Arc::from);
            return Ok(Decision::Allow(Arc::new(Identity {
                consumer,
                headers: forward,
            })));
        }
        // Any other 4xx is a refusal too: with `on_error = "allow"`, a client able to make
        // the authorizer answer 400 (an oversized or malformed credential) must not get in.
        match status.as_u16() {
            403 => Ok(Decision::Deny(Reason::Forbidden)),
            400..=499 => Ok(Decision::Deny(Reason::Denied)),
            other => Err(format!("unexpected status {other}")),
        }
    }
}
