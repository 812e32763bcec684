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
