//! The strings of a JSON document, for the managed protections: one pass over the bytes that
//! hands each string (object keys included) to a callback, without building a value.
//!
//! The firewall only needs the strings, so this is a validating scanner rather than a parser:
//! numbers are checked for their syntax and skipped, nothing is allocated unless a string has
//! escapes (then it is decoded into one reused buffer). A generic deserializer (serde_json
//! with a visitor) cost about 20k instructions on a 1 KB body, as much as the SQL injection
//! check of half its strings; this costs a few instructions per byte.
//!
//! What is valid is RFC 8259, as serde_json reads it: UTF-8 strings without control
//! characters, escapes including surrogate pairs (a lone surrogate is an error), no leading
//! zeros, no trailing commas, only whitespace after the value, and nesting up to
//! [`MAX_DEPTH`] (serde_json's recursion limit). Tests check the strings and the verdict
//! against serde_json. One difference is left on purpose: a number too large for an `f64`
//! (`1e400`) is valid here (the RFC allows it; serde_json refuses it), since the firewall
//! has nothing to inspect in a number.

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

/// Deepest nesting of arrays and objects accepted, as serde_json's default recursion limit.
pub const MAX_DEPTH: usize = 127;

/// Call `f` with every string of the JSON document `body`, object keys included, in document
/// order, until it returns `false`. Strings without escapes are handed over from `body`;
/// escaped ones are decoded into `buf` first.
pub fn scan_json_strings(
    body: &[u8],
    buf: &mut Vec<u8>,
    mut f: impl FnMut(&[u8]) -> bool,
) -> JsonScan {
    let mut scanner = Scanner { body, at: 0 };
    match scanner.document(buf, &mut f) {
        Ok(()) => JsonScan::Complete,
        Err(End::Stopped) => JsonScan::Stopped,
        Err(End::Invalid) => JsonScan::Invalid,
    }
}

/// Why a scan ended early.
enum End {
    Stopped,
    Invalid,
}

struct Scanner<'a> {
    body: &'a [u8],
    at: usize,
}

impl<'a> Scanner<'a> {
    fn document(
        &mut self,
        buf: &mut Vec<u8>,
        f: &mut impl FnMut(&[u8]) -> bool,
    ) -> Result<(), End> {
        // One bit per open container (1 = object); MAX_DEPTH fits in 128 bits.
        let mut open: u128 = 0;
        let mut depth = 0usize;
        'value: loop {
            // A value is expected here.
            match self.peek_past_space() {
                Some(b'{') | Some(b'[') => {
                    let object = self.body[self.at] == b'{';
                    self.at += 1;
                    depth += 1;
                    if depth > MAX_DEPTH {
                        return Err(End::Invalid);
                    }
                    open = open << 1 | u128::from(object);
                    let close = if object { b'}' } else { b']' };
                    if self.peek_past_space() == Some(close) {
                        self.at += 1;
                        depth -= 1;
                        open >>= 1;
                    } else {
                        if object {
                            self.key(buf, f)?;
                        }
                        continue 'value;
                    }
                }
                Some(b'"') => {
                    self.at += 1;
                    self.string(buf, f)?;
                }
                Some(b't') => self.literal(b"true")?,
                Some(b'f') => self.literal(b"false")?,
                Some(b'n') => self.literal(b"null")?,
                Some(b'-' | b'0'..=b'9') => self.number()?,
                _ => return Err(End::Invalid),
            }
            // After a value: a separator, the end of its container, or the end of the body.
            loop {
                let next = self.peek_past_space();
                if depth == 0 {
                    return if next.is_none() {
                        Ok(())
                    } else {
                        Err(End::Invalid)
                    };
                }
                let object = open & 1 == 1;
                match next {
                    Some(b',') => {
                        self.at += 1;
                        if object {
                            self.key(buf, f)?;
                        }
                        continue 'value;
                    }
                    Some(b'}') if object => {}
                    Some(b']') if !object => {}
                    _ => return Err(End::Invalid),
                }
                self.at += 1;
                depth -= 1;
                open >>= 1;
            }
        }
    }

    /// The next byte that is not JSON whitespace, without consuming it.
    fn peek_past_space(&mut self) -> Option<u8> {
        while let Some(&b) = self.body.get(self.at) {
            if !matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
                return Some(b);
            }
            self.at += 1;
        }
        None
    }

    /// An object key and its `:`.
    fn key(&mut self, buf: &mut Vec<u8>, f: &mut impl FnMut(&[u8]) -> bool) -> Result<(), End> {
        if self.peek_past_space() != Some(b'"') {
            return Err(End::Invalid);
        }
        self.at += 1;
        self.string(buf, f)?;
        if self.peek_past_space() != Some(b':') {
            return Err(End::Invalid);
        }
        self.at += 1;
        Ok(())
    }

    /// A string whose opening quote has been consumed, handed to `f`.
    fn string(&mut self, buf: &mut Vec<u8>, f: &mut impl FnMut(&[u8]) -> bool) -> Result<(), End> {
        let start = self.at;
        let end = self.stop(start)?;
        if self.body[end] != b'"' {
            self.at = end;
            return self.escaped_string(start, buf, f);
        }
        self.at = end + 1;
        hand_over(&self.body[start..end], f)
    }

    /// Where the quote or backslash after `from` is; a control character or the end of the
    /// body first makes the document invalid.
    fn stop(&self, from: usize) -> Result<usize, End> {
        let rest = self.body.get(from..).unwrap_or_default();
        let n = rest
            .iter()
            .position(|&b| STRING_STOP[usize::from(b)])
            .ok_or(End::Invalid)?;
        if rest[n] < 0x20 {
            return Err(End::Invalid);
        }
        Ok(from + n)
    }

    /// The rest of a string from its first escape (at `self.at`) on, decoded into `buf`.
    fn escaped_string(
        &mut self,
        start: usize,
        buf: &mut Vec<u8>,
        f: &mut impl FnMut(&[u8]) -> bool,
    ) -> Result<(), End> {
        buf.clear();
        buf.extend_from_slice(&self.body[start..self.at]);
        // Raw runs are copied as they are and checked as UTF-8 once the string is complete:
        // the decoded escapes are valid UTF-8 by construction, so the whole is valid exactly
        // when every raw run is.
        loop {
            // At a backslash.
            self.at += 1;
            self.escape(buf)?;
            let end = self.stop(self.at)?;
            buf.extend_from_slice(&self.body[self.at..end]);
            self.at = end;
            if self.body[end] == b'"' {
                self.at += 1;
                return hand_over(buf, f);
            }
        }
    }

    /// One escape after its backslash, appended to `buf`.
    fn escape(&mut self, buf: &mut Vec<u8>) -> Result<(), End> {
        let &b = self.body.get(self.at).ok_or(End::Invalid)?;
        self.at += 1;
        let c = match b {
            b'"' => b'"',
            b'\\' => b'\\',
            b'/' => b'/',
            b'b' => 0x08,
            b'f' => 0x0c,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'u' => {
                let unit = self.hex4()?;
                let scalar = match unit {
                    0xd800..=0xdbff => {
                        // A high surrogate must be followed by an escaped low one.
                        if self.body.get(self.at..self.at + 2) != Some(b"\\u") {
                            return Err(End::Invalid);
                        }
                        self.at += 2;
                        let low = self.hex4()?;
                        if !(0xdc00..=0xdfff).contains(&low) {
                            return Err(End::Invalid);
                        }
                        0x10000 + ((unit - 0xd800) << 10) + (low - 0xdc00)
                    }
                    0xdc00..=0xdfff => return Err(End::Invalid),
                    _ => unit,
                };
                let ch = char::from_u32(scalar).ok_or(End::Invalid)?;
                let mut utf8 = [0u8; 4];
                buf.extend_from_slice(ch.encode_utf8(&mut utf8).as_bytes());
                return Ok(());
            }
            _ => return Err(End::Invalid),
        };
        buf.push(c);
        Ok(())
    }

    fn hex4(&mut self) -> Result<u32, End> {
        let digits = self.body.get(self.at..self.at + 4).ok_or(End::Invalid)?;
        let mut v = 0u32;
        for &d in digits {
            v = v << 4 | u32::from(crate::urlpath::hex_value(d).ok_or(End::Invalid)?);
        }
        self.at += 4;
        Ok(v)
    }

    fn literal(&mut self, word: &[u8]) -> Result<(), End> {
        if self.body.get(self.at..self.at + word.len()) != Some(word) {
            return Err(End::Invalid);
        }
        self.at += word.len();
        Ok(())
    }

    /// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`
    fn number(&mut self) -> Result<(), End> {
        if self.body.get(self.at) == Some(&b'-') {
            self.at += 1;
        }
        match self.body.get(self.at) {
            Some(b'0') => {
                self.at += 1;
                if self.body.get(self.at).is_some_and(u8::is_ascii_digit) {
                    return Err(End::Invalid);
                }
            }
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(End::Invalid),
        }
        if self.body.get(self.at) == Some(&b'.') {
            self.at += 1;
            if !self.body.get(self.at).is_some_and(u8::is_ascii_digit) {
                return Err(End::Invalid);
            }
            self.digits();
        }
        if matches!(self.body.get(self.at), Some(b'e' | b'E')) {
            self.at += 1;
            if matches!(self.body.get(self.at), Some(b'+' | b'-')) {
                self.at += 1;
            }
            if !self.body.get(self.at).is_some_and(u8::is_ascii_digit) {
                return Err(End::Invalid);
            }
            self.digits();
        }
        Ok(())
    }

    fn digits(&mut self) {
        while self.body.get(self.at).is_some_and(u8::is_ascii_digit) {
            self.at += 1;
        }
    }
}

/// A complete string to `f`, if it is UTF-8 (JSON text is; serde_json refuses it otherwise).
fn hand_over(s: &[u8], f: &mut impl FnMut(&[u8]) -> bool) -> Result<(), End> {
    if !s.is_ascii() && std::str::from_utf8(s).is_err() {
        return Err(End::Invalid);
    }
    if f(s) {
        Ok(())
    } else {
        Err(End::Stopped)
    }
}

/// The bytes that end a run of plain string content: the closing quote, a backslash, and the
/// control characters a string may not hold.
const STRING_STOP: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = true;
        i += 1;
    }
    t[b'"' as usize] = true;
    t[b'\\' as usize] = true;
    t
};

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::Value;

    /// The strings serde_json sees in `body`, in document order (duplicate keys included), or
    /// `None` when it refuses it (the reference: the visitor this scanner replaced).
    fn serde_strings(body: &[u8]) -> Option<Vec<Vec<u8>>> {
        use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
        struct Any<'s>(&'s mut Vec<Vec<u8>>);
        impl<'de> DeserializeSeed<'de> for Any<'_> {
            type Value = ();
            fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
                d.deserialize_any(self)
            }
        }
        impl<'de> Visitor<'de> for Any<'_> {
            type Value = ();
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_str<E>(self, v: &str) -> Result<(), E> {
                self.0.push(v.as_bytes().to_vec());
                Ok(())
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
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
                while seq.next_element_seed(Any(&mut *self.0))?.is_some() {}
                Ok(())
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
                while map.next_key_seed(Any(&mut *self.0))?.is_some() {
                    map.next_value_seed(Any(&mut *self.0))?;
                }
                Ok(())
            }
        }
        let mut out = Vec::new();
        let mut de = serde_json::Deserializer::from_slice(body);
        Any(&mut out)
            .deserialize(&mut de)
            .and_then(|()| de.end())
            .ok()?;
        Some(out)
    }

    /// Whether serde_json refuses `body` only for a number out of `f64` range, which this
    /// scanner accepts on purpose.
    fn refused_for_range(body: &[u8]) -> bool {
        serde_json::from_slice::<Value>(body)
            .is_err_and(|e| e.to_string().contains("number out of range"))
    }

    fn scanned(body: &[u8]) -> (JsonScan, Vec<Vec<u8>>) {
        let mut buf = Vec::new();
        let mut out = Vec::new();
        let end = scan_json_strings(body, &mut buf, |s| {
            out.push(s.to_vec());
            true
        });
        (end, out)
    }

    fn agrees(body: &[u8]) -> Result<(), TestCaseError> {
        let (end, strings) = scanned(body);
        let text = String::from_utf8_lossy(body);
        match serde_strings(body) {
            Some(expected) => {
                prop_assert_eq!(end, JsonScan::Complete, "{}", text);
                prop_assert_eq!(strings, expected, "{}", text);
            }
            None if end == JsonScan::Complete => {
                prop_assert!(refused_for_range(body), "serde_json refuses {}", text)
            }
            None => prop_assert_eq!(end, JsonScan::Invalid, "{}", text),
        }
        Ok(())
    }

    #[test]
    fn strings_in_document_order() {
        let body = br#" {"a": ["x", {"k\u00e9y": "v\"q\ud83d\ude00", "n": -1.5e+3, "t": true}],
            "b": null, "c": "z", "d": [], "e": {}, "f": [false, 0, 0.0]} "#;
        let (end, strings) = scanned(body);
        assert_eq!(end, JsonScan::Complete);
        let expected: [&[u8]; 9] = [
            b"a",
            b"x",
            "k\u{e9}y".as_bytes(),
            "v\"q\u{1f600}".as_bytes(),
            b"n",
            b"t",
            b"b",
            b"c",
            b"z",
        ];
        assert_eq!(&strings[..9], expected);
        assert_eq!(strings.len(), 12);
    }

    #[test]
    fn stops_at_the_first_refusal() {
        let mut seen = 0;
        let end = scan_json_strings(br#"["x", "y", "z"]"#, &mut Vec::new(), |s| {
            seen += 1;
            s != b"y"
        });
        assert_eq!((end, seen), (JsonScan::Stopped, 2));
    }

    #[test]
    fn refuses_what_serde_json_refuses() {
        for body in [
            "",
            " ",
            "{",
            "[1,]",
            "{\"a\":1,}",
            "{,}",
            "[1 2]",
            "{\"a\" 1}",
            "{1: 2}",
            "\"s\" trailing",
            "01",
            "1.",
            "-",
            ".5",
            "1e",
            "+1",
            "tru",
            "nul",
            "[\"\\x\"]",
            "[\"\\ud800\"]",
            "[\"\\ud800\\u0041\"]",
            "[\"\\udc00\"]",
            "[\"\\u12\"]",
            "[\"a\u{1}b\"]",
            "[\"tab\there\"]",
            "\u{feff}{}",
            "[] []",
            "NaN",
        ] {
            assert_eq!(scanned(body.as_bytes()).0, JsonScan::Invalid, "{body:?}");
            assert!(serde_strings(body.as_bytes()).is_none(), "{body:?}");
        }
        assert_eq!(scanned(b"[\"\xff\"]").0, JsonScan::Invalid);
        assert_eq!(scanned(b"[\"a\\n\xc3\"]").0, JsonScan::Invalid);
    }

    #[test]
    fn nesting_is_bounded_as_serde_json_bounds_it() {
        for depth in [MAX_DEPTH - 1, MAX_DEPTH, MAX_DEPTH + 1, 10_000] {
            let body = format!("{}\"s\"{}", "[".repeat(depth), "]".repeat(depth));
            agrees(body.as_bytes()).unwrap();
            let body = format!("{}1{}", "{\"k\":".repeat(depth), "}".repeat(depth));
            agrees(body.as_bytes()).unwrap();
        }
    }

    /// Any JSON value, printed compactly or with spacing.
    fn json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            (-1e300f64..1e300).prop_map(Value::from),
            any::<String>().prop_map(Value::String),
            "[a-z\"\\\\/\u{0}-\u{1f}\u{e9}\u{1f600}]{0,8}".prop_map(Value::String),
        ];
        leaf.prop_recursive(6, 64, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                proptest::collection::btree_map(any::<String>(), inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn valid_documents_give_serde_json_strings(v in json(), pretty in any::<bool>()) {
            let body = if pretty {
                serde_json::to_vec_pretty(&v).unwrap()
            } else {
                serde_json::to_vec(&v).unwrap()
            };
            agrees(&body)?;
        }

        #[test]
        fn damaged_documents_get_serde_json_verdict(
            v in json(),
            cut in any::<prop::sample::Index>(),
            byte in prop::sample::select(b"{}[],:\"\\ 0-.eEtfnu\x01\xc3\xff".to_vec()),
            insert in any::<bool>(),
        ) {
            let mut body = serde_json::to_vec(&v).unwrap();
            let at = cut.index(body.len() + 1);
            if insert || at == body.len() {
                body.insert(at, byte);
            } else {
                body[at] = byte;
            }
            agrees(&body)?;
        }

        #[test]
        fn arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = scanned(&body);
        }
    }
}
