//! Verification keys: parsed from a JWKS document or a PEM file, and for remote sources
//! (OIDC discovery or a JWKS URL) fetched and refreshed in the background.
//!
//! A remote [`KeySet`] lives in the [`super::AuthRegistry`] under its authorizer name and
//! source, so a reload keeps the keys. A failed refresh keeps the last good keys and is visible
//! in `gatehouse_jwks_stale` and the log. An unknown `kid` may trigger a fetch, at most once
//! per `min_refresh_interval`, so a flood of made-up kids cannot hammer the identity provider.
//! The requests themselves (discovery, the bounded GET) are in [`super::fetch`].

use super::fetch;
pub use super::fetch::{error_chain, max_age, FetchError, RemoteSource};
pub use crate::observe::metrics::KeySetMetrics;
use arc_swap::ArcSwap;
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use std::collections::HashMap;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

pub use crate::config::{family, Family};

/// One verification key.
pub struct KeyEntry {
    pub key: DecodingKey,
    pub family: Family,
    /// The JWK's `alg`, when it pins one.
    pub alg: Option<Algorithm>,
}

/// An immutable set of keys, swapped whole on refresh.
#[derive(Default)]
pub struct Keys {
    by_kid: HashMap<String, Arc<KeyEntry>>,
    /// Keys without a `kid` (a PEM file, a secret): tried for any token of their family.
    anonymous: Vec<Arc<KeyEntry>>,
    /// Changes whenever the key material changes; cached verifications of an older
    /// generation are verified again.
    pub generation: u64,
    /// Hash of the document the keys came from, to tell a changed set from a refetched one.
    content: u64,
}

impl Keys {
    pub fn len(&self) -> usize {
        self.by_kid.len() + self.anonymous.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The key for a token's `kid` and `alg`: by `kid` when the token has one, else the only
    /// key of the algorithm's family.
    pub fn find(&self, kid: Option<&str>, alg: Algorithm) -> Option<&Arc<KeyEntry>> {
        let fam = family(alg);
        if let Some(entry) = kid.and_then(|k| self.by_kid.get(k)) {
            return Some(entry);
        }
        if let Some(entry) = self.anonymous.iter().find(|e| e.family == fam) {
            return Some(entry);
        }
        if kid.is_none() {
            let mut same = self.by_kid.values().filter(|e| e.family == fam);
            if let (Some(only), None) = (same.next(), same.next()) {
                return Some(only);
            }
        }
        None
    }

    /// Keys from one PEM public key or a shared secret.
    pub fn single(entry: KeyEntry) -> Self {
        Self {
            anonymous: vec![Arc::new(entry)],
            generation: 1,
            ..Self::default()
        }
    }
}

/// Why keys could not be read or fetched. Messages name the URL; none quotes a key.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("JWKS is not JSON: {0}")]
    NotJson(serde_json::Error),
    #[error("JWKS has no `keys` array")]
    NoKeysArray,
    #[error("JWKS has no usable signing key")]
    NoUsableKey,
    #[error("a PEM key cannot verify HS algorithms")]
    PemForHmac,
    #[error("not a PEM public key for these algorithms: {0}")]
    NotPem(jsonwebtoken::errors::Error),
    /// The document could not be fetched.
    #[error(transparent)]
    Remote(#[from] FetchError),
    #[error("{url}: {source}")]
    Document { url: String, source: Box<KeyError> },
}

/// Parse a JWKS document. Keys that cannot verify signatures (encryption keys, unknown types,
/// symmetric keys) are skipped; a document without one usable key is an error.
pub fn parse_jwks(body: &[u8]) -> Result<Keys, KeyError> {
    let doc: serde_json::Value = serde_json::from_slice(body).map_err(KeyError::NotJson)?;
    let list = doc
        .get("keys")
        .and_then(|k| k.as_array())
        .ok_or(KeyError::NoKeysArray)?;
    let mut keys = Keys {
        content: crate::hash::fold_hash(0, body),
        ..Keys::default()
    };
    for item in list {
        // Each key on its own: one key of a type this library does not know must not make the
        // whole set unusable.
        let Ok(jwk) = serde_json::from_value::<Jwk>(item.clone()) else {
            continue;
        };
        if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
            continue;
        }
        let family = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => Family::Rsa,
            AlgorithmParameters::EllipticCurve(_) => Family::Ec,
            AlgorithmParameters::OctetKeyPair(_) => Family::Ed,
            // A published symmetric key would let anyone sign.
            AlgorithmParameters::OctetKey(_) => continue,
        };
        let alg = match jwk.common.key_algorithm {
            // `KeyAlgorithm` prints as the JOSE name; encryption algorithms do not parse.
            Some(a) => match Algorithm::from_str(&a.to_string()) {
                Ok(a) => Some(a),
                Err(_) => continue,
            },
            None => None,
        };
        let Ok(key) = DecodingKey::from_jwk(&jwk) else {
            continue;
        };
        let entry = Arc::new(KeyEntry { key, family, alg });
        match jwk.common.key_id {
            Some(kid) => {
                keys.by_kid.insert(kid, entry);
            }
            None => keys.anonymous.push(entry),
        }
    }
    if keys.is_empty() {
        return Err(KeyError::NoUsableKey);
    }
    Ok(keys)
}

/// Parse a PEM public key of the family of `alg`.
pub fn parse_pem(pem: &[u8], fam: Family) -> Result<KeyEntry, KeyError> {
    let key = match fam {
        Family::Rsa => DecodingKey::from_rsa_pem(pem),
        Family::Ec => DecodingKey::from_ec_pem(pem),
        Family::Ed => DecodingKey::from_ed_pem(pem),
        Family::Hmac => return Err(KeyError::PemForHmac),
    }
    .map_err(KeyError::NotPem)?;
    Ok(KeyEntry {
        key,
        family: fam,
        alg: None,
    })
}

/// Keys that may change at run time.
pub struct KeySet {
    pub authorizer: String,
    remote: Option<RemoteSource>,
    keys: ArcSwap<Keys>,
    /// Unix seconds of the next scheduled fetch.
    next_refresh: AtomicU64,
    /// Unix seconds of the last fetch started by a request (unknown kid, no keys yet).
    last_on_demand: AtomicU64,
    /// Held while fetching; holds the JWKS URL found by discovery.
    fetching: tokio::sync::Mutex<Option<String>>,
    generations: AtomicU64,
    metrics: Option<KeySetMetrics>,
}

impl KeySet {
    /// Where the keys are fetched from; `None` for local keys.
    pub fn source(&self) -> Option<&RemoteSource> {
        self.remote.as_ref()
    }

    /// Fixed keys (file, PEM, secret).
    pub fn fixed(authorizer: &str, keys: Keys) -> Self {
        Self {
            authorizer: authorizer.to_string(),
            remote: None,
            keys: ArcSwap::from_pointee(keys),
            next_refresh: AtomicU64::new(u64::MAX),
            last_on_demand: AtomicU64::new(0),
            fetching: tokio::sync::Mutex::new(None),
            generations: AtomicU64::new(1),
            metrics: None,
        }
    }

    /// Keys fetched from `source`; empty until the first fetch succeeds.
    pub fn remote(authorizer: &str, source: RemoteSource, metrics: KeySetMetrics) -> Self {
        Self {
            authorizer: authorizer.to_string(),
            remote: Some(source),
            keys: ArcSwap::from_pointee(Keys::default()),
            next_refresh: AtomicU64::new(0),
            last_on_demand: AtomicU64::new(0),
            fetching: tokio::sync::Mutex::new(None),
            generations: AtomicU64::new(0),
            metrics: Some(metrics),
        }
    }

    /// Start from keys a previous key set of the same origin held.
    pub fn seed(&self, keys: Arc<Keys>) {
        if !keys.is_empty() {
            self.generations.store(keys.generation, Relaxed);
            self.keys.store(keys);
        }
    }

    pub fn is_remote(&self) -> bool {
        self.remote.is_some()
    }

    pub fn current(&self) -> arc_swap::Guard<Arc<Keys>> {
        self.keys.load()
    }

    /// Whether a scheduled refresh is due at `now` (Unix seconds).
    pub fn due(&self, now: u64) -> bool {
        self.remote.is_some() && now >= self.next_refresh.load(Relaxed)
    }

    /// The scheduled refresh; skipped when a fetch is already running.
    pub async fn refresh_scheduled(&self) {
        let Ok(mut discovered) = self.fetching.try_lock() else {
            return;
        };
        if self.due(crate::clock::unix_secs()) {
            let _ = self.refresh_locked(&mut discovered).await;
        }
    }

    /// A request met a `kid` it does not know (or there are no keys yet): fetch now, unless a
    /// fetch started by a request ran less than `min_refresh_interval` ago. Requests that
    /// arrive during a fetch wait for it instead of starting their own.
    pub async fn refresh_on_demand(&self) {
        let Some(remote) = &self.remote else {
            return;
        };
        let before = self.current().generation;
        let mut discovered = self.fetching.lock().await;
        if self.current().generation != before {
            return;
        }
        let now = crate::clock::unix_secs();
        let last = self.last_on_demand.load(Relaxed);
        if now.saturating_sub(last) < remote.min_refresh.as_secs().max(1) && last != 0 {
            return;
        }
        self.last_on_demand.store(now, Relaxed);
        let _ = self.refresh_locked(&mut discovered).await;
    }

    async fn refresh_locked(&self, discovered: &mut Option<String>) -> Result<(), KeyError> {
        let Some(remote) = &self.remote else {
            return Ok(());
        };
        let result = self.fetch(remote, discovered).await;
        let now = crate::clock::unix_secs();
        let current = self.current();
        match result {
            Ok((mut keys, max_age)) => {
                if keys.content != current.content || current.is_empty() {
                    keys.generation = self.generations.fetch_add(1, Relaxed) + 1;
                    if !current.is_empty() {
                        tracing::info!(authorizer = %self.authorizer, keys = keys.len(), "JWKS changed");
                    }
                    self.keys.store(Arc::new(keys));
                }
                let wait = max_age.unwrap_or(remote.refresh).clamp(
                    remote.min_refresh,
                    remote.max_refresh.max(remote.min_refresh),
                );
                self.next_refresh
                    .store(now + wait.as_secs().max(1), Relaxed);
                if let Some(m) = &self.metrics {
                    m.refresh_ok.inc();
                    m.keys.set(self.current().len() as i64);
                    m.last_success.set(now as f64);
                    if m.stale.get() != 0 {
                        tracing::info!(authorizer = %self.authorizer, "JWKS refresh recovered");
                    }
                    m.stale.set(0);
                }
                Ok(())
            }
            Err(error) => {
                // Discovery may have moved the JWKS; look it up again next time.
                *discovered = None;
                self.next_refresh
                    .store(now + remote.min_refresh.as_secs().max(1), Relaxed);
                if let Some(m) = &self.metrics {
                    m.refresh_error.inc();
                    m.stale.set(1);
                }
                tracing::warn!(
                    authorizer = %self.authorizer,
                    error = %error,
                    keys_kept = current.len(),
                    "JWKS refresh failed; keeping the last good keys"
                );
                Err(error)
            }
        }
    }

    async fn fetch(
        &self,
        remote: &RemoteSource,
        discovered: &mut Option<String>,
    ) -> Result<(Keys, Option<Duration>), KeyError> {
        let (url, body, max_age) = fetch::jwks_document(remote, discovered).await?;
        let keys = parse_jwks(&body).map_err(|e| KeyError::Document {
            url,
            source: Box::new(e),
        })?;
        Ok((keys, max_age))
    }
}
