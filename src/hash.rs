//! Content hashes compared within one process: the certificate watch, JWKS change detection,
//! connection pool keys.

/// Bytes folded into a running content hash (order matters). Fixed seeds: the value is
/// compared within one process only.
pub fn fold_hash(h: u64, content: &[u8]) -> u64 {
    let state = ahash::RandomState::with_seeds(7, 8, 9, 10);
    h.rotate_left(5) ^ state.hash_one(content)
}

/// Hash of the content of `files` (unreadable files count as empty), to notice replaced files.
pub fn files_hash(files: &[std::path::PathBuf]) -> u64 {
    files.iter().fold(0, |h, f| {
        fold_hash(h, &std::fs::read(f).unwrap_or_default())
    })
}

/// A SHA-256 written as 64 hex digits (either case), as `sha256 =` and keys files hold it.
pub fn parse_sha256_hex(hex: &str) -> Option<[u8; 32]> {
    let digits = hex.as_bytes();
    if digits.len() != 64 || !digits.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        let nibble = |d: u8| (d as char).to_digit(16).unwrap_or(0) as u8;
        *byte = nibble(pair[0]) << 4 | nibble(pair[1]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn sha256_hex_is_64_hex_digits_and_nothing_else() {
        let hex = "00ff".repeat(16);
        let parsed = super::parse_sha256_hex(&hex).unwrap();
        assert_eq!(parsed[..2], [0x00, 0xff]);
        assert_eq!(super::parse_sha256_hex(&hex.to_uppercase()), Some(parsed));
        // u8::from_str_radix would take "+f" as a pair.
        let plus = format!("+f{}", &hex[2..]);
        assert_eq!(super::parse_sha256_hex(&plus), None);
        assert_eq!(super::parse_sha256_hex(&hex[2..]), None);
    }
}
