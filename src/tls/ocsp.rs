//! OCSP stapling: a responder's signed "good" for each served certificate, fetched in the
//! background (`services::ocsp`) and stapled in handshakes from this cache. A handshake only
//! reads the cache, so a responder that is down or slow never delays one.

use super::CertEntry;
use arc_swap::ArcSwap;
use openssl::hash::MessageDigest;
use openssl::ocsp::OcspResponseStatus;
use openssl::ocsp::{OcspCertId, OcspCertStatus, OcspFlag, OcspRequest, OcspResponse};
use openssl::stack::Stack;
use openssl::x509::store::X509StoreBuilder;
use openssl::x509::{X509Ref, X509};
use std::collections::HashMap;
use std::sync::Arc;

/// A verified response for one certificate.
#[derive(Debug)]
pub struct Staple {
    /// The DER `OCSPResponse`, as the handshake sends it.
    pub der: Vec<u8>,
    /// Unix seconds of `thisUpdate` and `nextUpdate` (`None`: the responder gave none).
    pub this_update: i64,
    pub next_update: Option<i64>,
}

impl Staple {
    /// Whether the response may still be sent at `now`: an expired staple makes clients that
    /// check it fail the handshake, which is worse than none.
    pub fn fresh(&self, now: i64) -> bool {
        self.next_update.is_none_or(|n| now < n)
    }

    /// When to fetch a new one: halfway to `nextUpdate` (an hour after `thisUpdate` without
    /// one), so a failing responder leaves half the validity for retries.
    pub fn refresh_at(&self) -> i64 {
        match self.next_update {
            Some(next) => self.this_update + (next - self.this_update).max(0) / 2,
            None => self.this_update + 3600,
        }
    }
}

/// Staples by certificate fingerprint (SHA-256 of the leaf), shared by every snapshot: a
/// reload keeps them, and a renewed certificate has a new fingerprint. Reads are lock-free.
#[derive(Default)]
pub struct Staples(ArcSwap<HashMap<[u8; 32], Arc<Staple>>>);

impl Staples {
    /// The staple to send for `fingerprint` at `now`, if a fresh one is cached.
    pub fn get(&self, fingerprint: &[u8; 32], now: i64) -> Option<Arc<Staple>> {
        self.0
            .load()
            .get(fingerprint)
            .filter(|s| s.fresh(now))
            .cloned()
    }

    /// The cached staple for `fingerprint`, fresh or not.
    pub fn cached(&self, fingerprint: &[u8; 32]) -> Option<Arc<Staple>> {
        self.0.load().get(fingerprint).cloned()
    }

    pub fn put(&self, fingerprint: [u8; 32], staple: Staple) {
        let staple = Arc::new(staple);
        self.0.rcu(|m| {
            let mut m = HashMap::clone(m);
            m.insert(fingerprint, staple.clone());
            m
        });
    }

    /// Keep only the staples `keep` accepts (the certificates still served, still fresh).
    pub fn retain(&self, keep: impl Fn(&[u8; 32], &Staple) -> bool) {
        self.0.rcu(|m| {
            let mut m = HashMap::clone(m);
            m.retain(|k, v| keep(k, v));
            m
        });
    }
}

/// What to ask a responder about a certificate.
pub struct Query {
    /// The responder named in the leaf's Authority Information Access.
    pub url: String,
    /// The DER `OCSPRequest`.
    pub request: Vec<u8>,
}

/// The leaf's issuer among the rest of the chain: the certificate whose key signed it.
fn issuer(entry: &CertEntry) -> Option<&X509> {
    let (leaf, rest) = entry.chain.split_first()?;
    rest.iter().find(|c| {
        c.public_key()
            .ok()
            .is_some_and(|k| leaf.verify(&k).unwrap_or(false))
    })
}

fn cert_id(leaf: &X509Ref, issuer: &X509Ref) -> Result<OcspCertId, String> {
    OcspCertId::from_cert(MessageDigest::sha1(), leaf, issuer).map_err(|e| e.to_string())
}

/// The HTTP OCSP responder a leaf names in its Authority Information Access, if any.
pub fn responder(leaf: &X509Ref) -> Option<String> {
    leaf.ocsp_responders()
        .ok()?
        .iter()
        .map(|u| u.to_string())
        .find(|u| u.starts_with("http"))
}

/// The query for `entry`; `None` when its leaf names no OCSP responder.
pub fn query(entry: &CertEntry) -> Result<Option<Query>, String> {
    let Some(leaf) = entry.chain.first() else {
        return Ok(None);
    };
    let Some(url) = responder(leaf) else {
        return Ok(None);
    };
    let issuer =
        issuer(entry).ok_or("its issuer is not in the certificate file (add the chain)")?;
    let mut request = OcspRequest::new().map_err(|e| e.to_string())?;
    request
        .add_id(cert_id(leaf, issuer)?)
        .map_err(|e| e.to_string())?;
    let request = request.to_der().map_err(|e| e.to_string())?;
    Ok(Some(Query { url, request }))
}

/// The responder's answer `der` for `entry`, checked: a successful response, signed by the
/// issuer (or a responder it delegated to), about this certificate, "good", and current at
/// `now`. Anything else is refused with the reason.
pub fn verify(entry: &CertEntry, der: &[u8], now: i64) -> Result<Staple, String> {
    let leaf = entry.chain.first().ok_or("empty chain")?;
    let issuer = issuer(entry).ok_or("no issuer in the chain")?;
    let response = OcspResponse::from_der(der).map_err(|e| format!("not an OCSP response: {e}"))?;
    if response.status() != OcspResponseStatus::SUCCESSFUL {
        return Err(format!("responder status {}", response.status().as_raw()));
    }
    let basic = response.basic().map_err(|e| e.to_string())?;
    let mut trusted = Stack::new().map_err(|e| e.to_string())?;
    trusted.push(issuer.clone()).map_err(|e| e.to_string())?;
    // A responder the issuer delegated to (its certificate in the response, with the
    // OCSPSigning purpose) chains to the issuer, which may be an intermediate: a partial chain.
    let mut store = X509StoreBuilder::new().map_err(|e| e.to_string())?;
    store.add_cert(issuer.clone()).map_err(|e| e.to_string())?;
    store
        .set_flags(openssl::x509::verify::X509VerifyFlags::PARTIAL_CHAIN)
        .map_err(|e| e.to_string())?;
    let store = store.build();
    basic
        .verify(&trusted, &store, OcspFlag::TRUST_OTHER)
        .map_err(|e| format!("signature does not verify: {e}"))?;
    let id = cert_id(leaf, issuer)?;
    let status = basic
        .find_status(&id)
        .ok_or("the response is about another certificate")?;
    match status.status {
        OcspCertStatus::GOOD => {}
        OcspCertStatus::REVOKED => return Err("the certificate is REVOKED".into()),
        _ => return Err("the certificate's status is unknown to the responder".into()),
    }
    let this_update =
        unix_seconds(&status.this_update.to_string()).ok_or("unreadable thisUpdate")?;
    let next_update = match status.next_update() {
        Some(t) => Some(unix_seconds(&t.to_string()).ok_or("unreadable nextUpdate")?),
        None => None,
    };
    // Five minutes of clock skew either way, as OpenSSL's own check allows.
    if this_update > now + 300 {
        return Err("thisUpdate is in the future".into());
    }
    if next_update.is_some_and(|n| n + 300 < now) {
        return Err("the response has expired".into());
    }
    Ok(Staple {
        der: der.to_vec(),
        this_update,
        next_update,
    })
}

/// Unix seconds of an ASN.1 time as OpenSSL prints it: `Nov 29 04:00:00 2026 GMT` (seconds
/// may carry a fraction).
fn unix_seconds(printed: &str) -> Option<i64> {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let mut parts = printed.split_whitespace();
    let name = parts.next()?;
    let month = MONTHS.iter().position(|m| *m == name)? as i64 + 1;
    let day: i64 = parts.next()?.parse().ok()?;
    let mut clock = parts.next()?.split(':');
    let h: i64 = clock.next()?.parse().ok()?;
    let m: i64 = clock.next()?.parse().ok()?;
    let s: f64 = clock.next()?.parse().ok()?;
    let year: i64 = parts.next()?.parse().ok()?;
    if parts.next() != Some("GMT") {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + m * 60 + s as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printed_times_are_read_as_unix_seconds() {
        assert_eq!(unix_seconds("Jan  1 00:00:00 1970 GMT"), Some(0));
        assert_eq!(
            unix_seconds("Nov 29 04:00:00 2026 GMT"),
            Some(1_795_924_800)
        );
        assert_eq!(
            unix_seconds("Feb 29 12:30:15.5 2024 GMT"),
            Some(1_709_209_815)
        );
        assert_eq!(unix_seconds("Nov 29 04:00:00 2026"), None);
        assert_eq!(unix_seconds("Foo 29 04:00:00 2026 GMT"), None);
    }

    #[test]
    fn a_staple_is_refreshed_halfway_and_not_sent_once_expired() {
        let s = Staple {
            der: vec![],
            this_update: 1000,
            next_update: Some(5000),
        };
        assert_eq!(s.refresh_at(), 3000);
        assert!(s.fresh(4999));
        assert!(!s.fresh(5000));
        let cache = Staples::default();
        cache.put([1; 32], s);
        assert!(cache.get(&[1; 32], 4000).is_some());
        assert!(cache.get(&[1; 32], 6000).is_none());
        assert!(cache.cached(&[1; 32]).is_some());
        cache.retain(|_, s| s.fresh(6000));
        assert!(cache.cached(&[1; 32]).is_none());
    }
}
