//! JWT verification: pinned algorithms, a key from the authorizer's [`KeySet`], the standard
//! claims (`iss`, `aud`, `exp`, `nbf`, `iat`) with leeway, required claims. Successful
//! verifications are cached by token, bounded and never past `exp`, so a repeated token costs
//! a hash lookup and a comparison.

use super::jwks::{family, KeySet};
use super::source::{self, Source};
use super::{Identity, Reason};
use crate::cache::ExactCache;
use http::{HeaderName, HeaderValue};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use pingora::http::RequestHeader;
use serde_json::{Map, Value};
use std::sync::Arc;

/// Longest a verification is cached when the token has no `exp`.
const CACHE_WITHOUT_EXP_SECS: u64 = 300;
/// Longest any verification is cached: far-future `exp` values must not make entries the
/// store treats as never expiring.
const CACHE_MAX_SECS: u64 = 86_400;

/// What a verified token carries, shared by every request that presents it.
#[derive(Debug)]
pub struct Verified {
    pub claims: Map<String, Value>,
    /// From `scope` (space separated) or `scp` (array or string).
    pub scopes: Vec<String>,
    pub identity: Arc<Identity>,
}

/// A compiled JWT authorizer.
pub struct JwtAuthorizer {
    pub keys: Arc<KeySet>,
    /// One validation per pinned algorithm, built once.
    validations: Vec<(Algorithm, Validation)>,
    required: Vec<String>,
    leeway: u64,
    max_age: Option<u64>,
    pub sources: Vec<Source>,
    forward: Vec<(Vec<String>, HeaderName)>,
    consumer_claim: Vec<String>,
    pub missing_keys_status: u16,
    /// Verified tokens with the key-set generation they were verified under.
    cache: Option<ExactCache<(Arc<Verified>, u64)>>,
}

/// Settings of [`JwtAuthorizer::new`], already checked by the caller.
pub struct JwtSettings {
    pub algorithms: Vec<Algorithm>,
    pub issuer: Option<String>,
    pub audiences: Vec<String>,
    pub leeway: u64,
    pub max_age: Option<u64>,
    pub required: Vec<String>,
    pub sources: Vec<Source>,
    pub forward: Vec<(String, HeaderName)>,
    pub consumer_claim: String,
    pub missing_keys_status: u16,
    pub cache_size: usize,
}

fn claim_path(path: &str) -> Vec<String> {
    path.split('.').map(str::to_string).collect()
}

/// A claim by dotted path (`realm_access.roles`); a top-level claim whose name contains dots
/// is found too.
pub fn lookup<'a>(claims: &'a Map<String, Value>, path: &[String]) -> Option<&'a Value> {
    if path.len() > 1 {
        if let Some(v) = claims.get(&path.join(".")) {
            return Some(v);
        }
    }
    let (first, rest) = path.split_first()?;
    let mut value = claims.get(first)?;
    for part in rest {
        value = value.as_object()?.get(part)?;
    }
    Some(value)
}

/// A claim as a header value: strings as they are, numbers and booleans printed, arrays of
/// strings joined with `,`, anything else as JSON.
fn claim_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Array(items) if items.iter().all(Value::is_string) => Some(
            items
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(","),
        ),
        Value::Null => None,
        other => Some(other.to_string()),
    }
}

fn scopes_of(claims: &Map<String, Value>) -> Vec<String> {
    let mut out = Vec::new();
    for name in ["scope", "scp"] {
        match claims.get(name) {
            Some(Value::String(s)) => out.extend(s.split_whitespace().map(str::to_string)),
            Some(Value::Array(items)) => {
                out.extend(items.iter().filter_map(Value::as_str).map(str::to_string))
            }
            _ => {}
        }
    }
    out
}

impl JwtAuthorizer {
    pub fn new(keys: Arc<KeySet>, s: JwtSettings) -> Self {
        let validations = s
            .algorithms
            .iter()
            .map(|&alg| {
                let mut v = Validation::new(alg);
                // Times are checked below against the caller's clock, the same clock the
                // cache uses.
                v.validate_exp = false;
                v.validate_nbf = false;
                let mut spec: Vec<&str> = s
                    .required
                    .iter()
                    .map(String::as_str)
                    .filter(|c| ["exp", "nbf", "aud", "iss", "sub"].contains(c))
                    .collect();
                // jsonwebtoken skips the `iss`/`aud` checks when the claim is absent unless
                // it is required; a configured issuer or audience means it must be there.
                match &s.issuer {
                    Some(iss) => {
                        v.set_issuer(&[iss]);
                        spec.push("iss");
                    }
                    None => v.iss = None,
                }
                if s.audiences.is_empty() {
                    v.validate_aud = false;
                } else {
                    v.set_audience(&s.audiences);
                    spec.push("aud");
                }
                v.set_required_spec_claims(&spec);
                (alg, v)
            })
            .collect();
        Self {
            keys,
            validations,
            required: s.required,
            leeway: s.leeway,
            max_age: s.max_age,
            sources: s.sources,
            forward: s
                .forward
                .into_iter()
                .map(|(claim, header)| (claim_path(&claim), header))
                .collect(),
            consumer_claim: claim_path(&s.consumer_claim),
            missing_keys_status: s.missing_keys_status,
            cache: (s.cache_size > 0).then(|| ExactCache::new(s.cache_size)),
        }
    }

    /// Read and verify the request's token, fetching keys once when the token's `kid` is
    /// unknown.
    pub async fn authenticate(&self, req: &RequestHeader) -> Result<Arc<Verified>, Reason> {
        let token = source::extract(&self.sources, req)?;
        let now = crate::clock::unix_secs();
        match self.verify(&token, now) {
            Err(Reason::UnknownKey | Reason::KeysUnavailable) if self.keys.is_remote() => {
                self.keys.refresh_on_demand().await;
                self.verify(&token, now)
            }
            other => other,
        }
    }

    /// Verify `token` at `now` (Unix seconds), through the cache.
    pub fn verify(&self, token: &str, now: u64) -> Result<Arc<Verified>, Reason> {
        let keys = self.keys.current();
        let now_nanos = now.saturating_mul(1_000_000_000);
        let cached = self
            .cache
            .as_ref()
            .and_then(|c| c.get(token.as_bytes(), now_nanos));
        // Verified under a key set that has changed since: verify again.
        if let Some((verified, _)) = cached.filter(|(_, g)| *g == keys.generation) {
            return Ok(verified);
        }
        if keys.is_empty() {
            return Err(Reason::KeysUnavailable);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| Reason::Malformed)?;
        let Some((alg, validation)) = self.validations.iter().find(|(a, _)| *a == header.alg)
        else {
            return Err(Reason::AlgorithmNotAllowed);
        };
        let entry = keys
            .find(header.kid.as_deref(), *alg)
            .ok_or(Reason::UnknownKey)?;
        if entry.family != family(*alg) || entry.alg.is_some_and(|a| a != *alg) {
            return Err(Reason::AlgorithmNotAllowed);
        }
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &entry.key, validation)
            .map_err(|e| map_error(e.kind()))?;
        let claims = data.claims;
        let time = |name: &str| match claims.get(name) {
            None => Ok(None),
            // NumericDate may have a fraction; whole seconds are enough here.
            Some(v) => v
                .as_f64()
                .map(|t| Some(t.max(0.0) as u64))
                .ok_or(Reason::Malformed),
        };
        let exp = time("exp")?;
        if exp.is_some_and(|exp| exp.saturating_add(self.leeway) < now) {
            return Err(Reason::Expired);
        }
        if time("nbf")?.is_some_and(|nbf| nbf > now.saturating_add(self.leeway)) {
            return Err(Reason::NotYetValid);
        }
        let iat = time("iat")?;
        if let Some(iat) = iat {
            if iat > now + self.leeway {
                return Err(Reason::InvalidIssuedAt);
            }
        }
        if let Some(max_age) = self.max_age {
            match iat {
                Some(iat) if iat + max_age + self.leeway >= now => {}
                _ => return Err(Reason::InvalidIssuedAt),
            }
        }
        if self
            .required
            .iter()
            .any(|c| claims.get(c).is_none_or(Value::is_null))
        {
            return Err(Reason::MissingClaim);
        }
        let mut expires_at = exp
            .unwrap_or(now + CACHE_WITHOUT_EXP_SECS)
            .min(now + CACHE_MAX_SECS);
        if let (Some(max_age), Some(iat)) = (self.max_age, iat) {
            expires_at = expires_at.min(iat + max_age);
        }
        let verified = Arc::new(self.identify(claims));
        if let Some(cache) = &self.cache {
            let value = (verified.clone(), keys.generation);
            let until = expires_at.saturating_mul(1_000_000_000);
            cache.insert(token.as_bytes(), value, until, now_nanos);
        }
        Ok(verified)
    }

    fn identify(&self, claims: Map<String, Value>) -> Verified {
        let mut headers = Vec::with_capacity(self.forward.len());
        for (path, header) in &self.forward {
            let value = lookup(&claims, path)
                .and_then(claim_text)
                .and_then(|t| HeaderValue::from_str(&t).ok());
            if let Some(value) = value {
                headers.push((header.clone(), value));
            }
        }
        let consumer = lookup(&claims, &self.consumer_claim)
            .and_then(claim_text)
            .map(Arc::from);
        Verified {
            scopes: scopes_of(&claims),
            claims,
            identity: Arc::new(Identity { consumer, headers }),
        }
    }
}

fn map_error(kind: &ErrorKind) -> Reason {
    match kind {
        ErrorKind::InvalidSignature => Reason::InvalidSignature,
        ErrorKind::ExpiredSignature => Reason::Expired,
        ErrorKind::ImmatureSignature => Reason::NotYetValid,
        ErrorKind::InvalidIssuer => Reason::InvalidIssuer,
        ErrorKind::InvalidAudience => Reason::InvalidAudience,
        ErrorKind::MissingRequiredClaim(_) => Reason::MissingClaim,
        ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => Reason::AlgorithmNotAllowed,
        // A key that does not fit the algorithm (wrong curve, bad encoding) cannot have
        // produced the signature.
        ErrorKind::InvalidEcdsaKey
        | ErrorKind::InvalidRsaKey(_)
        | ErrorKind::InvalidKeyFormat
        | ErrorKind::Crypto(_) => Reason::InvalidSignature,
        _ => Reason::Malformed,
    }
}
