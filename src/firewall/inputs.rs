//! The values a request carries, taken apart for the firewall: query and form pairs, cookies,
//! JSON strings. Pure functions over borrowed bytes; the callers own the scratch buffers, so a
//! request costs at most one buffer however many pairs it has.

use crate::urlpath::hex_value;
use serde_json::Value;

/// How deep [`for_each_json_string`] descends into nested arrays and objects.
pub const JSON_MAX_DEPTH: usize = 32;

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

/// How a [`for_each_json_string`] walk ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonWalk {
    /// Every string was visited.
    Complete,
    /// `f` returned `false`.
    Stopped,
    /// Some strings lay deeper than [`JSON_MAX_DEPTH`] and were not visited.
    TooDeep,
}

/// Call `f` with every string in `value`, object keys included, depth first and in document
/// order, until it returns `false`. Containers nested deeper than [`JSON_MAX_DEPTH`] are not
/// entered (the result says so, for a caller that would rather refuse such a body).
pub fn for_each_json_string(value: &Value, mut f: impl FnMut(&str) -> bool) -> JsonWalk {
    let mut too_deep = false;
    if !walk(value, 0, &mut f, &mut too_deep) {
        JsonWalk::Stopped
    } else if too_deep {
        JsonWalk::TooDeep
    } else {
        JsonWalk::Complete
    }
}

/// `false` when `f` asked to stop. Recursion is bounded by [`JSON_MAX_DEPTH`].
fn walk(
    value: &Value,
    depth: usize,
    f: &mut impl FnMut(&str) -> bool,
    too_deep: &mut bool,
) -> bool {
    match value {
        Value::String(s) => f(s),
        Value::Array(items) => {
            if depth >= JSON_MAX_DEPTH {
                *too_deep |= !items.is_empty();
                return true;
            }
            items.iter().all(|v| walk(v, depth + 1, f, too_deep))
        }
        Value::Object(map) => {
            if depth >= JSON_MAX_DEPTH {
                *too_deep |= !map.is_empty();
                return true;
            }
            map.iter()
                .all(|(k, v)| f(k) && walk(v, depth + 1, f, too_deep))
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => true,
    }
}

/// How a [`scan_json_strings`] pass over a body ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonScan {
    /// Every string was visited.
    Complete,
    /// `f` returned `false`.
    Stopped,
    /// The body is not JSON (strings before the problem were visited).
    Invalid,
}

/// Call `f` with every string of the JSON document `body`, object keys included, in document
/// order, until it returns `false`, without building a [`Value`]: strings are handed over
/// from the input (or serde_json's scratch buffer for escaped ones), so nothing is allocated
/// per string. Nesting is bounded by serde_json's own recursion limit.
pub fn scan_json_strings(body: &[u8], f: impl FnMut(&str) -> bool) -> JsonScan {
    use serde::de::DeserializeSeed;
    let mut scan = Scan { f, stopped: false };
    let mut de = serde_json::Deserializer::from_slice(body);
    let parsed = Any(&mut scan).deserialize(&mut de).and_then(|()| de.end());
    match (scan.stopped, parsed) {
        (true, _) => JsonScan::Stopped,
        (false, Ok(())) => JsonScan::Complete,
        (false, Err(_)) => JsonScan::Invalid,
    }
}

/// The callback, and whether it asked to stop (which aborts the parse with an error).
struct Scan<F> {
    f: F,
    stopped: bool,
}

impl<F: FnMut(&str) -> bool> Scan<F> {
    fn string<E: serde::de::Error>(&mut self, s: &str) -> Result<(), E> {
        if (self.f)(s) {
            Ok(())
        } else {
            self.stopped = true;
            Err(E::custom("stopped"))
        }
    }
}

/// Any JSON value, visited for its strings.
struct Any<'s, F>(&'s mut Scan<F>);

impl<'de, F: FnMut(&str) -> bool> serde::de::DeserializeSeed<'de> for Any<'_, F> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, F: FnMut(&str) -> bool> serde::de::Visitor<'de> for Any<'_, F> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<(), E> {
        self.0.string(v)
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Any(&mut *self.0))?.is_some() {}
        Ok(())
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while map.next_key_seed(Any(&mut *self.0))?.is_some() {
            map.next_value_seed(Any(&mut *self.0))?;
        }
        Ok(())
    }
}

/// The value at a JSON pointer (`/user/role`, RFC 6901), if there is one.
pub fn json_pointer<'a>(value: &'a Value, pointer: &str) -> Option<&'a Value> {
    value.pointer(pointer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scanning_a_body_sees_what_walking_its_value_sees() {
        let body =
            br#"{"a": ["x", {"k\u00e9y": "v\"q", "n": 1.5, "t": true}], "b": null, "c": "z"}"#;
        let mut scanned = Vec::new();
        let done = scan_json_strings(body, |s| {
            scanned.push(s.to_string());
            true
        });
        assert_eq!(done, JsonScan::Complete);
        let value: Value = serde_json::from_slice(body).unwrap();
        let mut walked = Vec::new();
        for_each_json_string(&value, |s| {
            walked.push(s.to_string());
            true
        });
        scanned.sort();
        walked.sort();
        assert_eq!(scanned, walked);
        let mut seen = 0;
        assert_eq!(
            scan_json_strings(body, |s| {
                seen += 1;
                s != "x"
            }),
            JsonScan::Stopped
        );
        assert_eq!(seen, 2, "stops at the first refusal");
        assert_eq!(
            scan_json_strings(b"{\"a\": [1, ", |_| true),
            JsonScan::Invalid
        );
        assert_eq!(
            scan_json_strings(b"\"s\" trailing", |_| true),
            JsonScan::Invalid
        );
    }
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
    fn json_strings_values_and_keys() {
        let v = json!({"a": ["x", 1, {"b": "y"}], "c": null, "d": true});
        let mut seen = Vec::new();
        let walk = for_each_json_string(&v, |s| {
            seen.push(s.to_string());
            true
        });
        assert_eq!(walk, JsonWalk::Complete);
        assert_eq!(seen, ["a", "x", "b", "y", "c", "d"]);

        let mut n = 0;
        let walk = for_each_json_string(&v, |_| {
            n += 1;
            n < 2
        });
        assert_eq!((walk, n), (JsonWalk::Stopped, 2));
    }

    #[test]
    fn json_depth_is_bounded() {
        let mut v = json!("deep");
        for _ in 0..JSON_MAX_DEPTH {
            v = json!([v]);
        }
        let mut seen = 0;
        assert_eq!(
            for_each_json_string(&v, |_| {
                seen += 1;
                true
            }),
            JsonWalk::Complete
        );
        assert_eq!(seen, 1);
        let v = json!([v]);
        let mut seen = 0;
        assert_eq!(
            for_each_json_string(&v, |_| {
                seen += 1;
                true
            }),
            JsonWalk::TooDeep
        );
        assert_eq!(seen, 0);
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
