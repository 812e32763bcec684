//! The values a request carries, taken apart for the firewall: query and form pairs, cookies,
//! JSON strings. Pure functions over borrowed bytes; the callers own the scratch buffers, so a
//! request costs at most one buffer however many pairs it has.

use crate::urlpath::hex_value;
use serde_json::Value;

/// Append the percent-decoding of `input` to `out`. An escape that is not `%` and two hex
/// digits is kept as it is, so that what the firewall inspects is never shorter than what the
/// application may see. `plus_as_space` is for query strings and form bodies.
pub fn percent_decode(input: &[u8], plus_as_space: bool, out: &mut Vec<u8>) {
    out.reserve(input.len());
    let mut i = 0;
    while i < input.len() {
        let b = input[i];
        if b == b'%' {
            if let (Some(hi), Some(lo)) = (
                input.get(i + 1).copied().and_then(hex_value),
                input.get(i + 2).copied().and_then(hex_value),
            ) {
                out.push(hi << 4 | lo);
                i += 3;
                continue;
            }
        }
        out.push(if plus_as_space && b == b'+' { b' ' } else { b });
        i += 1;
    }
}

/// Call `f` with each decoded (name, value) pair of a query string (without the `?`), in
/// order, until it returns `false`. Pairs are split on `&` only (`;` is data, as in the WHATWG
/// URL standard); `+` is a space; a pair without `=` has an empty value; empty pairs are
/// skipped. Both halves are decoded into `buf`, which is reused from pair to pair.
pub fn for_each_query_pair(
    query: &[u8],
    buf: &mut Vec<u8>,
    mut f: impl FnMut(&[u8], &[u8]) -> bool,
) {
    for pair in query.split(|&b| b == b'&') {
        if pair.is_empty() {
            continue;
        }
        let (name, value) = match memchr::memchr(b'=', pair) {
            Some(eq) => (&pair[..eq], &pair[eq + 1..]),
            None => (pair, &pair[pair.len()..]),
        };
        buf.clear();
        percent_decode(name, true, buf);
        let split = buf.len();
        percent_decode(value, true, buf);
        let (n, v) = buf.split_at(split);
        if !f(n, v) {
            return;
        }
    }
}

/// [`for_each_query_pair`] for an `application/x-www-form-urlencoded` body: the same syntax.
pub fn for_each_form_pair(body: &[u8], buf: &mut Vec<u8>, f: impl FnMut(&[u8], &[u8]) -> bool) {
    for_each_query_pair(body, buf, f);
}

/// Call `f` with each (name, value) of a `Cookie` header value until it returns `false`.
/// Pairs are split on `;`, trimmed of spaces and tabs; a value in double quotes is given
/// without them. Nothing is decoded: cookie encoding is up to the application.
pub fn for_each_cookie(header_value: &[u8], mut f: impl FnMut(&[u8], &[u8]) -> bool) {
    for pair in header_value.split(|&b| b == b';') {
        let pair = trim(pair);
        if pair.is_empty() {
            continue;
        }
        let (name, value) = match memchr::memchr(b'=', pair) {
            Some(eq) => (trim(&pair[..eq]), trim(&pair[eq + 1..])),
            None => (pair, &pair[pair.len()..]),
        };
        let value = match value {
            [b'"', inner @ .., b'"'] => inner,
            v => v,
        };
        if !f(name, value) {
            return;
        }
    }
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// The value at a JSON pointer (`/user/role`, RFC 6901), if there is one.
pub fn json_pointer<'a>(value: &'a Value, pointer: &str) -> Option<&'a Value> {
    value.pointer(pointer)
}

#[cfg(test)]
mod tests {
    use super::*;

    use serde_json::json;

    fn decode(s: &str, plus: bool) -> String {
        let mut out = Vec::new();
        percent_decode(s.as_bytes(), plus, &mut out);
        String::from_utf8(out).unwrap()
    }

    fn query(q: &str) -> Vec<(String, String)> {
        let mut buf = Vec::new();
        let mut out = Vec::new();
        for_each_query_pair(q.as_bytes(), &mut buf, |n, v| {
            out.push((
                String::from_utf8_lossy(n).into_owned(),
                String::from_utf8_lossy(v).into_owned(),
            ));
            true
        });
        out
    }

    fn cookies(h: &str) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for_each_cookie(h.as_bytes(), |n, v| {
            out.push((
                String::from_utf8_lossy(n).into_owned(),
                String::from_utf8_lossy(v).into_owned(),
            ));
            true
        });
        out
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(decode("a%20b%2Fc", false), "a b/c");
        assert_eq!(decode("a+b", false), "a+b");
        assert_eq!(decode("a+b", true), "a b");
        assert_eq!(decode("%2B", true), "+");
        // Invalid escapes stay as they are.
        assert_eq!(decode("100%", false), "100%");
        assert_eq!(decode("%zz%4", false), "%zz%4");
        assert_eq!(decode("%%32%65", false), "%2e");
        // Appends.
        let mut out = b"x".to_vec();
        percent_decode(b"%41", false, &mut out);
        assert_eq!(out, b"xA");
        // Not valid UTF-8 once decoded: still bytes.
        let mut out = Vec::new();
        percent_decode(b"%c0%af", false, &mut out);
        assert_eq!(out, [0xc0, 0xaf]);
    }

    #[test]
    fn query_pairs() {
        assert_eq!(
            query("a=1&b=x+y&c=%22new%20york%22"),
            [("a", "1"), ("b", "x y"), ("c", "\"new york\"")]
                .map(|(a, b)| (a.to_string(), b.to_string()))
        );
        assert_eq!(
            query("flag&&=v&k="),
            [("flag", ""), ("", "v"), ("k", "")].map(|(a, b)| (a.to_string(), b.to_string()))
        );
        // `;` is not a separator; only the first `=` splits.
        assert_eq!(
            query("a=1;b=2=3"),
            [("a".to_string(), "1;b=2=3".to_string())]
        );
        assert_eq!(query(""), []);
        // Stops when told to.
        let mut seen = 0;
        let mut buf = Vec::new();
        for_each_query_pair(b"a=1&b=2&c=3", &mut buf, |_, _| {
            seen += 1;
            seen < 2
        });
        assert_eq!(seen, 2);
    }

    #[test]
    fn query_buffer_is_reused() {
        let mut buf = Vec::with_capacity(64);
        let before = buf.as_ptr();
        for_each_query_pair(b"a=1&bb=22&ccc=333", &mut buf, |_, _| true);
        assert_eq!(buf.as_ptr(), before);
    }

    #[test]
    fn form_pairs() {
        let mut buf = Vec::new();
        let mut out = Vec::new();
        for_each_form_pair(b"name=O%27Brien&note=a+b", &mut buf, |n, v| {
            out.push((n.to_vec(), v.to_vec()));
            true
        });
        assert_eq!(
            out,
            [
                (b"name".to_vec(), b"O'Brien".to_vec()),
                (b"note".to_vec(), b"a b".to_vec())
            ]
        );
    }

    #[test]
    fn cookie_pairs() {
        assert_eq!(
            cookies("sid=abc; theme=\"dark\" ;  lang = en ;flag;;"),
            [
                ("sid", "abc"),
                ("theme", "dark"),
                ("lang", "en"),
                ("flag", "")
            ]
            .map(|(a, b)| (a.to_string(), b.to_string()))
        );
        assert_eq!(cookies("q=\""), [("q".to_string(), "\"".to_string())]);
        assert_eq!(cookies(""), []);
    }

    #[test]
    fn pointer() {
        let v = json!({"user": {"role": "admin", "tags": ["a", "b"]}});
        assert_eq!(json_pointer(&v, "/user/role"), Some(&json!("admin")));
        assert_eq!(json_pointer(&v, "/user/tags/1"), Some(&json!("b")));
        assert_eq!(json_pointer(&v, "/nope"), None);
        assert_eq!(json_pointer(&v, ""), Some(&v));
    }
}
