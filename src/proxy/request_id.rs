//! Request ids: kept when the client sent a well-formed one, otherwise generated.

use crate::text::write_hex;
use http::HeaderValue;
use std::cell::Cell;
use std::hash::{BuildHasher, Hasher};

/// Header carrying the id to the upstream and back to the client.
pub use crate::headers::REQUEST_ID as HEADER;

/// Accept client ids of 1 to 128 characters from `[A-Za-z0-9._:-]`; anything else could be
/// used to inject into logs, so it is replaced.
pub fn is_valid(id: &[u8]) -> bool {
    (1..=128).contains(&id.len())
        && id
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

thread_local! {
    // (random per-thread prefix, counter): unique across threads and restarts without a shared
    // atomic or a syscall per request.
    static STATE: Cell<(u64, u64)> = Cell::new((random_u64(), 0));
}

fn random_u64() -> u64 {
    // RandomState is seeded from the OS; hashing nothing yields its random key.
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
}

/// A new 32-hex-digit id.
pub fn generate() -> HeaderValue {
    let (prefix, n) = STATE.with(|s| {
        let (prefix, n) = s.get();
        s.set((prefix, n.wrapping_add(1)));
        (prefix, n)
    });
    let mut buf = [0u8; 32];
    write_hex(&mut buf[..16], &prefix.to_be_bytes());
    write_hex(&mut buf[16..], &n.to_be_bytes());
    // Hex digits are always a valid header value.
    HeaderValue::from_bytes(&buf).unwrap_or_else(|_| HeaderValue::from_static("0"))
}

/// The id for a request: the client's if valid, else a new one.
pub fn for_request(client_value: Option<&HeaderValue>) -> HeaderValue {
    match client_value {
        Some(v) if is_valid(v.as_bytes()) => v.clone(),
        _ => generate(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_unique_and_well_formed() {
        let a = generate();
        let b = generate();
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
        assert!(is_valid(a.as_bytes()));
    }

    #[test]
    fn client_ids_are_kept_only_when_valid() {
        let good = HeaderValue::from_static("req-123.abc_def:9");
        assert_eq!(for_request(Some(&good)), good);
        let bad = HeaderValue::from_static("evil\" injected");
        assert_ne!(for_request(Some(&bad)), bad);
        let long = HeaderValue::from_str(&"a".repeat(129)).unwrap();
        assert_ne!(for_request(Some(&long)), long);
        assert_eq!(for_request(None).len(), 32);
    }
}
