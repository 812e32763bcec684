//! API keys. Only SHA-256 digests are held: the presented key is hashed and the digest looked
//! up, so the lookup time depends on the digest, not on how much of a real key was guessed,
//! and a memory dump holds no usable key.

use super::source::{self, Source};
use super::{Identity, Reason};
use http::{HeaderName, HeaderValue};
use pingora::http::RequestHeader;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Arc;

/// A compiled `type = "api_key"` authorizer.
pub struct ApiKeys {
    pub sources: Vec<Source>,
    by_digest: HashMap<[u8; 32], Arc<Identity>>,
}

pub use crate::hash::parse_sha256_hex as parse_digest;

/// Parse a keys file: one `CONSUMER SHA256HEX` per line, `#` comments. Errors name the line.
pub fn parse_keys_file(text: &str) -> Result<Vec<(String, [u8; 32])>, String> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let mut parts = line.split_whitespace();
        let (Some(consumer), Some(hex), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(format!("line {}: expected `CONSUMER SHA256HEX`", n + 1));
        };
        let digest = parse_digest(hex)
            .ok_or_else(|| format!("line {}: not a hex SHA-256 (64 hex digits)", n + 1))?;
        out.push((consumer.to_string(), digest));
    }
    Ok(out)
}

impl ApiKeys {
    /// Build from (consumer, digest) pairs; a digest listed twice is an error.
    pub fn new(
        sources: Vec<Source>,
        keys: Vec<(String, [u8; 32])>,
        consumer_header: &HeaderName,
    ) -> Result<Self, String> {
        let mut by_digest = HashMap::with_capacity(keys.len());
        for (consumer, digest) in keys {
            let value = HeaderValue::from_str(&consumer)
                .map_err(|_| format!("consumer {consumer:?} is not a valid header value"))?;
            let identity = Arc::new(Identity {
                consumer: Some(Arc::from(consumer.as_str())),
                headers: vec![(consumer_header.clone(), value)],
            });
            if by_digest.insert(digest, identity).is_some() {
                return Err(format!("the key of consumer {consumer:?} is listed twice"));
            }
        }
        Ok(Self { sources, by_digest })
    }

    pub fn check(&self, req: &RequestHeader) -> Result<Arc<Identity>, Reason> {
        let key = source::extract(&self.sources, req)?;
        let digest: [u8; 32] = Sha256::digest(key.as_bytes()).into();
        self.by_digest
            .get(&digest)
            .cloned()
            .ok_or(Reason::InvalidKey)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hex SHA-256 of a key, as `keys_file` and `sha256 =` expect it.
    fn digest_hex(key: &str) -> String {
        crate::text::hex(&Sha256::digest(key.as_bytes()))
    }

    #[test]
    fn keys_file_lines_are_checked() {
        let good = format!("# team keys\nalice {}  # rotated\n\n", digest_hex("k1"));
        let parsed = parse_keys_file(&good).unwrap();
        assert_eq!(
            parsed,
            vec![(
                "alice".to_string(),
                parse_digest(&digest_hex("k1")).unwrap()
            )]
        );
        assert_eq!(
            parse_keys_file("bob\n").unwrap_err(),
            "line 1: expected `CONSUMER SHA256HEX`"
        );
        assert!(parse_keys_file("\nbob abc\n")
            .unwrap_err()
            .starts_with("line 2: not a hex"));
    }

    #[test]
    fn a_key_maps_to_its_consumer() {
        let header = HeaderName::from_static("x-consumer-id");
        let keys = vec![
            (
                "alice".to_string(),
                parse_digest(&digest_hex("alice-key")).unwrap(),
            ),
            (
                "bob".to_string(),
                parse_digest(&digest_hex("bob-key")).unwrap(),
            ),
        ];
        let k = ApiKeys::new(
            vec![Source::parse("header:x-api-key").unwrap()],
            keys,
            &header,
        )
        .unwrap();
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        assert_eq!(k.check(&req).unwrap_err(), Reason::MissingCredentials);
        req.insert_header("x-api-key", "bob-key").unwrap();
        assert_eq!(k.check(&req).unwrap().consumer.as_deref(), Some("bob"));
        req.insert_header("x-api-key", "bob-kez").unwrap();
        assert_eq!(k.check(&req).unwrap_err(), Reason::InvalidKey);
    }

    #[test]
    fn a_key_listed_twice_is_refused() {
        let d = parse_digest(&digest_hex("same")).unwrap();
        let header = HeaderName::from_static("x-consumer-id");
        let err = ApiKeys::new(vec![], vec![("a".into(), d), ("b".into(), d)], &header);
        assert!(err.is_err());
    }
}
