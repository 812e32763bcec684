//! Request path normalization. Routes are matched on the normalized path and the same path is
//! sent upstream, so the gateway and the upstream never disagree about which resource was asked
//! for (`/public/../admin`, `//admin`, `/%61dmin` all become `/admin`).

use std::borrow::Cow;

pub mod template;

/// Normalize an origin-form path (no query): decode %-encoded unreserved characters, uppercase
/// the hex of other escapes, merge repeated slashes and resolve `.` and `..` segments (RFC 3986
/// 6.2.2). Returns `None` for input that is not a valid path: not starting with `/`, a broken
/// %-escape, or a control or non-ASCII byte.
///
/// Already-normal paths, by far the common case, are returned borrowed without allocating.
pub fn normalize_path(path: &[u8]) -> Option<Cow<'_, [u8]>> {
    if path.first() != Some(&b'/') {
        return None;
    }
    let mut needs_work = false;
    let mut prev = 0u8;
    for &b in path {
        if b <= b' ' || b >= 0x7f {
            return None;
        }
        if b == b'%' || (prev == b'/' && (b == b'/' || b == b'.')) {
            needs_work = true;
        }
        prev = b;
    }
    if !needs_work {
        return Some(Cow::Borrowed(path));
    }
    let decoded = decode_unreserved(path)?;
    Some(Cow::Owned(resolve_segments(&decoded)))
}

fn decode_unreserved(path: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(path.len());
    let mut i = 0;
    while i < path.len() {
        let b = path[i];
        if b != b'%' {
            out.push(b);
            i += 1;
            continue;
        }
        let hi = hex_value(*path.get(i + 1)?)?;
        let lo = hex_value(*path.get(i + 2)?)?;
        let c = hi << 4 | lo;
        if c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~') {
            out.push(c);
        } else {
            out.push(b'%');
            out.push(path[i + 1].to_ascii_uppercase());
            out.push(path[i + 2].to_ascii_uppercase());
        }
        i += 3;
    }
    Some(out)
}

/// The value of an ASCII hex digit.
pub fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn resolve_segments(path: &[u8]) -> Vec<u8> {
    let mut segments: Vec<&[u8]> = Vec::new();
    let mut trailing_slash = false;
    for segment in path[1..].split(|&b| b == b'/') {
        trailing_slash = matches!(segment, b"" | b"." | b"..");
        match segment {
            b"" | b"." => {}
            b".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut out = Vec::with_capacity(path.len());
    for s in &segments {
        out.push(b'/');
        out.extend_from_slice(s);
    }
    if trailing_slash || segments.is_empty() {
        out.push(b'/');
    }
    out
}

/// The form a `path_prefix` is stored in: no trailing slash, except for the root `/`.
pub fn trim_prefix(prefix: &str) -> &str {
    let trimmed = prefix.trim_end_matches('/');
    if trimmed.is_empty() {
        "/"
    } else {
        trimmed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(p: &str) -> Option<String> {
        normalize_path(p.as_bytes()).map(|c| String::from_utf8(c.into_owned()).unwrap())
    }

    #[test]
    fn normal_paths_are_borrowed() {
        assert!(matches!(
            normalize_path(b"/api/v1/users"),
            Some(Cow::Borrowed(_))
        ));
        assert!(matches!(
            normalize_path(b"/a.b/c..d/"),
            Some(Cow::Borrowed(_))
        ));
    }

    #[test]
    fn dot_segments_and_slashes_are_resolved() {
        assert_eq!(norm("/public/../admin").as_deref(), Some("/admin"));
        assert_eq!(norm("/a/./b//c").as_deref(), Some("/a/b/c"));
        assert_eq!(norm("//admin").as_deref(), Some("/admin"));
        assert_eq!(norm("/../../etc").as_deref(), Some("/etc"));
        assert_eq!(norm("/a/b/..").as_deref(), Some("/a/"));
        assert_eq!(norm("/a/.").as_deref(), Some("/a/"));
        assert_eq!(norm("/..").as_deref(), Some("/"));
        assert_eq!(norm("/a//").as_deref(), Some("/a/"));
    }

    #[test]
    fn escapes_of_unreserved_characters_are_decoded() {
        assert_eq!(norm("/%61dmin").as_deref(), Some("/admin"));
        assert_eq!(norm("/%2e%2e/admin").as_deref(), Some("/admin"));
        assert_eq!(norm("/a/%2E%2E/b").as_deref(), Some("/b"));
        // A %-encoded slash is data, not a separator: it must stay encoded.
        assert_eq!(norm("/a%2fb").as_deref(), Some("/a%2Fb"));
    }

    #[test]
    fn invalid_paths_are_rejected() {
        assert_eq!(norm("relative"), None);
        assert_eq!(norm("/bad%zz"), None);
        assert_eq!(norm("/bad%2"), None);
        assert_eq!(norm("/tab\there"), None);
        assert_eq!(norm(""), None);
    }

    #[test]
    fn prefixes_lose_their_trailing_slash() {
        assert_eq!(trim_prefix("/api/"), "/api");
        assert_eq!(trim_prefix("/"), "/");
        assert_eq!(trim_prefix("/api"), "/api");
    }
}
