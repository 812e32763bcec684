//! Path spellings refused unless a route allows them.
//!
//! The gateway matches routes and applies their auth on the path as the client sent it,
//! but upstreams disagree on what a path means: some drop `;` parameters, decode `%2F` into
//! `/`, treat `\` as `/`, trim whitespace, or decode invalid UTF-8 leniently. Each such
//! spelling lets a request reach, through a route whose checks it passed, a resource the
//! upstream serves under a different route (`/public%2F..%2Fprivate`). Refusing them at the
//! edge closes that gap; a route whose upstream needs one of them allows it explicitly.

use crate::urlpath::hex_value;
use memchr::memchr3;

use crate::edge::Reason;

/// Spellings a route accepts although they are refused by default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PathAllow(u8);

impl PathAllow {
    /// `%2F` (an encoded `/`).
    pub const ENCODED_SLASH: Self = Self(1 << 0);
    /// `\` or `%5C`.
    pub const BACKSLASH: Self = Self(1 << 1);
    /// `;` (path parameters).
    pub const PATH_PARAMETERS: Self = Self(1 << 2);
    /// Encoded control characters (`%00`-`%1F`, `%7F`).
    pub const CONTROL_CHARACTERS: Self = Self(1 << 3);
    /// Encoded bytes that are not valid UTF-8.
    pub const INVALID_UTF8: Self = Self(1 << 4);
    /// A segment ending in encoded whitespace.
    pub const TRAILING_WHITESPACE: Self = Self(1 << 5);
    /// Nothing allowed: the default.
    pub const NONE: Self = Self(0);

    /// Config names, in flag order.
    pub const NAMES: [&'static str; 6] = [
        "encoded_slash",
        "backslash",
        "path_parameters",
        "control_characters",
        "invalid_utf8",
        "trailing_whitespace",
    ];

    /// Both sets of spellings.
    #[must_use]
    pub const fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    /// Whether every spelling in `other` is allowed.
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// The flag for a config name: "encoded_slash", "backslash", "path_parameters",
    /// "control_characters", "invalid_utf8", "trailing_whitespace".
    pub fn from_name(name: &str) -> Option<Self> {
        Self::NAMES
            .iter()
            .position(|n| *n == name)
            .map(|i| Self(1 << i))
    }
}

/// Check the path as the client sent it (no query string).
///
/// Refusals, each skipped when `allow` contains its flag: `%2F` → [`Reason::EncodedSlash`];
/// `\` or `%5C` → [`Reason::Backslash`]; `;` → [`Reason::PathParameters`]; `%00`-`%1F` or
/// `%7F` → [`Reason::ControlCharacter`]; a run of consecutive escapes whose decoded bytes are
/// not valid UTF-8 (overlong forms, `%FF`, truncated sequences) → [`Reason::InvalidUtf8`]; a
/// segment whose last character is encoded whitespace (`%20`, `%09`, `%C2%A0`...) →
/// [`Reason::TrailingWhitespace`]. The first problem from the left is reported.
///
/// Raw control bytes and raw non-ASCII bytes are refused by the request parser before this;
/// here they count as [`Reason::ControlCharacter`] and [`Reason::InvalidUtf8`] too, so the
/// function is safe on its own. Broken escapes (`%G1`, a trailing `%`) are left to the
/// normalizer, which refuses them.
pub fn check(raw_path: &[u8], allow: PathAllow) -> Result<(), Reason> {
    // Almost every path has no escape, backslash or parameter: one vectorized scan, plus
    // the raw-byte check the parser has normally made already.
    if memchr3(b'%', b'\\', b';', raw_path).is_none()
        && raw_path.iter().all(|&b| (0x20..0x7f).contains(&b))
    {
        return Ok(());
    }
    Checker {
        allow,
        run: Run::default(),
    }
    .check(raw_path)
}

/// The refusal for `reason` unless `allow` contains `flag`.
fn refuse(allow: PathAllow, flag: PathAllow, reason: Reason) -> Result<(), Reason> {
    if allow.contains(flag) {
        Ok(())
    } else {
        Err(reason)
    }
}

/// The decoded bytes of the current run of consecutive `%XX` escapes, validated as UTF-8
/// byte by byte, without allocating however long the run is. Validating as each byte
/// arrives also reports invalid UTF-8 before any problem further right.
#[derive(Default)]
struct Run {
    /// The start of a character still incomplete (at most 3 bytes).
    pending: [u8; 4],
    pending_len: usize,
    /// Whether any byte was pushed since the run began.
    active: bool,
    /// Whether invalid UTF-8 was found in this run.
    invalid: bool,
    /// The last (up to) four decoded bytes, newest last, for the trailing-whitespace check:
    /// the last character of a run is at most four bytes long.
    tail: [u8; 4],
    tail_len: usize,
}

impl Run {
    /// Adds a decoded byte.
    fn push(&mut self, b: u8) {
        self.active = true;
        self.tail.copy_within(1.., 0);
        self.tail[3] = b;
        self.tail_len = (self.tail_len + 1).min(4);
        if self.invalid {
            return;
        }
        // `pending` held an incomplete character (3 bytes at most), so there is room.
        if let Some(slot) = self.pending.get_mut(self.pending_len) {
            *slot = b;
            self.pending_len += 1;
        }
        // std's validator rejects overlong forms, surrogates and code points past U+10FFFF.
        match std::str::from_utf8(&self.pending[..self.pending_len]) {
            Ok(_) => self.pending_len = 0,
            // Incomplete so far: wait for the next byte.
            Err(e) if e.error_len().is_none() => {}
            Err(_) => {
                self.invalid = true;
                self.pending_len = 0;
            }
        }
    }

    /// Whether the run so far ends in a whitespace character.
    fn ends_in_whitespace(&self) -> bool {
        let tail = &self.tail[4 - self.tail_len..];
        // Only the suffix that is exactly the last character decodes as one character:
        // shorter ones start with a continuation byte, longer ones hold more.
        (1..=tail.len()).any(|k| {
            std::str::from_utf8(&tail[tail.len() - k..]).is_ok_and(|s| {
                let mut chars = s.chars();
                matches!((chars.next(), chars.next()), (Some(c), None) if c.is_whitespace())
            })
        })
    }

    /// Ends the run: whether everything decoded was valid UTF-8 (a character left
    /// incomplete is not). Resets for the next run.
    fn finish(&mut self) -> bool {
        let valid = !self.invalid && self.pending_len == 0;
        *self = Self::default();
        valid
    }
}

/// The state of one [`check`] over a path with something to look at.
struct Checker {
    allow: PathAllow,
    run: Run,
}

impl Checker {
    fn check(mut self, raw: &[u8]) -> Result<(), Reason> {
        let mut i = 0;
        while i < raw.len() {
            let b = raw[i];
            if b == b'%' {
                if let Some(d) = raw
                    .get(i + 1..i + 3)
                    .and_then(|h| Some(hex_value(h[0])? << 4 | hex_value(h[1])?))
                {
                    self.escape(d)?;
                    i += 3;
                    continue;
                }
                // A broken escape ends the run; the normalizer refuses it.
            }
            self.end_run(is_segment_end(b))?;
            match b {
                b'\\' => refuse(self.allow, PathAllow::BACKSLASH, Reason::Backslash)?,
                b';' => refuse(
                    self.allow,
                    PathAllow::PATH_PARAMETERS,
                    Reason::PathParameters,
                )?,
                0x00..=0x1f | 0x7f => refuse(
                    self.allow,
                    PathAllow::CONTROL_CHARACTERS,
                    Reason::ControlCharacter,
                )?,
                0x80..=0xff => refuse(self.allow, PathAllow::INVALID_UTF8, Reason::InvalidUtf8)?,
                _ => {}
            }
            i += 1;
        }
        self.end_run(true)
    }

    /// One decoded escape.
    fn escape(&mut self, d: u8) -> Result<(), Reason> {
        match d {
            b'/' => {
                refuse(self.allow, PathAllow::ENCODED_SLASH, Reason::EncodedSlash)?;
                // Allowed, it still ends a segment for an upstream that decodes it.
                self.trailing_whitespace()?;
            }
            b'\\' => {
                refuse(self.allow, PathAllow::BACKSLASH, Reason::Backslash)?;
                self.trailing_whitespace()?;
            }
            0x00..=0x1f | 0x7f => refuse(
                self.allow,
                PathAllow::CONTROL_CHARACTERS,
                Reason::ControlCharacter,
            )?,
            _ => {}
        }
        self.run.push(d);
        if self.run.invalid {
            refuse(self.allow, PathAllow::INVALID_UTF8, Reason::InvalidUtf8)?;
        }
        Ok(())
    }

    /// The segment ends here: refuse if the run just before ends in whitespace.
    fn trailing_whitespace(&self) -> Result<(), Reason> {
        if self.run.active && self.run.ends_in_whitespace() {
            refuse(
                self.allow,
                PathAllow::TRAILING_WHITESPACE,
                Reason::TrailingWhitespace,
            )?;
        }
        Ok(())
    }

    /// A byte that is not an escape ends the current run; `segment_end` when it also ends
    /// a segment.
    fn end_run(&mut self, segment_end: bool) -> Result<(), Reason> {
        if !self.run.active {
            return Ok(());
        }
        if segment_end {
            self.trailing_whitespace()?;
        }
        if !self.run.finish() {
            refuse(self.allow, PathAllow::INVALID_UTF8, Reason::InvalidUtf8)?;
        }
        Ok(())
    }
}

/// Whether a raw byte ends a path segment for some upstream: `/`, and `\` and `;` for those
/// that treat `\` as `/` or drop parameters (each refused unless allowed, but when allowed
/// the segment before them still must not end in whitespace).
fn is_segment_end(b: u8) -> bool {
    matches!(b, b'/' | b'\\' | b';')
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ALL: PathAllow = PathAllow::ENCODED_SLASH
        .union(PathAllow::BACKSLASH)
        .union(PathAllow::PATH_PARAMETERS)
        .union(PathAllow::CONTROL_CHARACTERS)
        .union(PathAllow::INVALID_UTF8)
        .union(PathAllow::TRAILING_WHITESPACE);

    fn c(path: &str) -> Result<(), Reason> {
        check(path.as_bytes(), PathAllow::NONE)
    }

    #[test]
    fn flags() {
        let flags = [
            PathAllow::ENCODED_SLASH,
            PathAllow::BACKSLASH,
            PathAllow::PATH_PARAMETERS,
            PathAllow::CONTROL_CHARACTERS,
            PathAllow::INVALID_UTF8,
            PathAllow::TRAILING_WHITESPACE,
        ];
        for (i, name) in PathAllow::NAMES.iter().enumerate() {
            assert_eq!(PathAllow::from_name(name), Some(flags[i]));
            for (j, other) in flags.iter().enumerate() {
                assert_eq!(flags[i].contains(*other), i == j);
            }
            assert!(ALL.contains(flags[i]));
            assert!(!PathAllow::NONE.contains(flags[i]));
        }
        assert_eq!(PathAllow::default(), PathAllow::NONE);
        assert_eq!(PathAllow::from_name("Encoded_Slash"), None);
        assert_eq!(PathAllow::from_name("encoded-slash"), None);
        assert_eq!(PathAllow::from_name(""), None);
        let two = PathAllow::BACKSLASH.union(PathAllow::INVALID_UTF8);
        assert!(two.contains(PathAllow::BACKSLASH.union(PathAllow::INVALID_UTF8)));
        assert!(!two.contains(PathAllow::BACKSLASH.union(PathAllow::ENCODED_SLASH)));
        assert!(two.contains(PathAllow::NONE));
    }

    /// The spellings the module exists to refuse, with the reason and the flag that lets
    /// each through.
    const REFUSED: &[(&str, Reason, PathAllow)] = &[
        (
            "/private;x=1",
            Reason::PathParameters,
            PathAllow::PATH_PARAMETERS,
        ),
        (
            "/private%2Fx",
            Reason::EncodedSlash,
            PathAllow::ENCODED_SLASH,
        ),
        (
            "/%2Fprivate",
            Reason::EncodedSlash,
            PathAllow::ENCODED_SLASH,
        ),
        (
            "/private%2fx",
            Reason::EncodedSlash,
            PathAllow::ENCODED_SLASH,
        ),
        ("/\\private", Reason::Backslash, PathAllow::BACKSLASH),
        (
            "/public%5C..%5Cprivate",
            Reason::Backslash,
            PathAllow::BACKSLASH,
        ),
        (
            "/public%5c..%5cprivate",
            Reason::Backslash,
            PathAllow::BACKSLASH,
        ),
        (
            "/public/..%2Fprivate",
            Reason::EncodedSlash,
            PathAllow::ENCODED_SLASH,
        ),
        (
            "/private%00",
            Reason::ControlCharacter,
            PathAllow::CONTROL_CHARACTERS,
        ),
        (
            "/private%1f/x",
            Reason::ControlCharacter,
            PathAllow::CONTROL_CHARACTERS,
        ),
        (
            "/private%7F",
            Reason::ControlCharacter,
            PathAllow::CONTROL_CHARACTERS,
        ),
        (
            "/private%20",
            Reason::TrailingWhitespace,
            PathAllow::TRAILING_WHITESPACE,
        ),
        (
            "/private%20/x",
            Reason::TrailingWhitespace,
            PathAllow::TRAILING_WHITESPACE,
        ),
        (
            "/%20/x",
            Reason::TrailingWhitespace,
            PathAllow::TRAILING_WHITESPACE,
        ),
        (
            "/private%C2%A0",
            Reason::TrailingWhitespace,
            PathAllow::TRAILING_WHITESPACE,
        ),
        (
            "/private%E3%80%80/x",
            Reason::TrailingWhitespace,
            PathAllow::TRAILING_WHITESPACE,
        ),
        (
            "/%C0%AFprivate",
            Reason::InvalidUtf8,
            PathAllow::INVALID_UTF8,
        ),
        (
            "/%c0%afprivate",
            Reason::InvalidUtf8,
            PathAllow::INVALID_UTF8,
        ),
        (
            "/%E0%80%AFprivate",
            Reason::InvalidUtf8,
            PathAllow::INVALID_UTF8,
        ),
        ("/private%FF", Reason::InvalidUtf8, PathAllow::INVALID_UTF8),
        ("/caf%C3", Reason::InvalidUtf8, PathAllow::INVALID_UTF8),
        ("/caf%C3/x", Reason::InvalidUtf8, PathAllow::INVALID_UTF8),
        ("/caf%C3e", Reason::InvalidUtf8, PathAllow::INVALID_UTF8),
        ("/caf%A9", Reason::InvalidUtf8, PathAllow::INVALID_UTF8),
        ("/x%ED%A0%80", Reason::InvalidUtf8, PathAllow::INVALID_UTF8),
        (
            "/x%F4%90%80%80",
            Reason::InvalidUtf8,
            PathAllow::INVALID_UTF8,
        ),
    ];

    #[test]
    fn refused_by_default_and_allowed_by_their_flag() {
        for &(path, reason, flag) in REFUSED {
            assert_eq!(c(path), Err(reason), "{path}");
            assert_eq!(check(path.as_bytes(), flag), Ok(()), "{path} with its flag");
            assert_eq!(
                check(path.as_bytes(), ALL),
                Ok(()),
                "{path} with everything"
            );
            // Any other single flag does not help.
            for name in PathAllow::NAMES {
                let other = PathAllow::from_name(name).unwrap();
                if other != flag {
                    assert_eq!(
                        check(path.as_bytes(), other),
                        Err(reason),
                        "{path} with {name}"
                    );
                }
            }
        }
    }

    #[test]
    fn ordinary_paths_pass() {
        for path in [
            "",
            "/",
            "/a/b",
            "/a/b/",
            "/search%3Fq",
            "/caf%C3%A9",
            "/caf%c3%a9/x",
            "/a%20b/c",
            "/%41",
            "/%41%42%43",
            "/a%2520b",
            "/%E2%82%AC",
            "/%F0%9F%98%80",
            "/a%25",
            "/~user/file.tar.gz",
            "/a%3Bb",
            "/a%2E%2E/b",
        ] {
            assert_eq!(c(path), Ok(()), "{path}");
        }
    }

    #[test]
    fn broken_escapes_are_left_to_the_normalizer() {
        for path in ["/%G1", "/a%", "/a%2", "/%%41", "/%2G/x", "/x%2"] {
            assert_eq!(c(path), Ok(()), "{path}");
        }
        // A broken escape ends a run, so the character before it is truncated.
        assert_eq!(c("/%C3%"), Err(Reason::InvalidUtf8));
        // A broken escape interrupts a run: `%C3` then `%A9` are two runs, each invalid.
        assert_eq!(c("/%C3%%A9"), Err(Reason::InvalidUtf8));
    }

    #[test]
    fn raw_bytes_the_parser_refuses() {
        assert_eq!(
            check(b"/a\x00b", PathAllow::NONE),
            Err(Reason::ControlCharacter)
        );
        assert_eq!(
            check(b"/a\tb", PathAllow::NONE),
            Err(Reason::ControlCharacter)
        );
        assert_eq!(
            check(b"/a\x7fb", PathAllow::NONE),
            Err(Reason::ControlCharacter)
        );
        assert_eq!(
            check(b"/caf\xc3\xa9", PathAllow::NONE),
            Err(Reason::InvalidUtf8)
        );
        assert_eq!(check(b"/\xff", PathAllow::NONE), Err(Reason::InvalidUtf8));
        assert_eq!(check(b"/a\x00b", PathAllow::CONTROL_CHARACTERS), Ok(()));
        assert_eq!(check(b"/\xff", PathAllow::INVALID_UTF8), Ok(()));
        // With an escape elsewhere, too (the slow path).
        assert_eq!(
            check(b"/%41\x01", PathAllow::NONE),
            Err(Reason::ControlCharacter)
        );
        assert_eq!(
            check(b"/%41\xff", PathAllow::NONE),
            Err(Reason::InvalidUtf8)
        );
    }

    #[test]
    fn trailing_whitespace_where_segments_end() {
        let tw = Err(Reason::TrailingWhitespace);
        assert_eq!(c("/a%20"), tw);
        assert_eq!(c("/a%20%20"), tw);
        assert_eq!(c("/a%20%41%20/"), tw);
        assert_eq!(c("/a%20b"), Ok(()));
        assert_eq!(c("/a%20%41"), Ok(()));
        assert_eq!(c("/%20a"), Ok(()));
        // `%09` is a control character first; allowed as that, it is still trailing
        // whitespace.
        assert_eq!(c("/a%09"), Err(Reason::ControlCharacter));
        assert_eq!(check(b"/a%09", PathAllow::CONTROL_CHARACTERS), tw);
        assert_eq!(check(b"/a%0D%0A/b", PathAllow::CONTROL_CHARACTERS), tw);
        // ...but other control characters are not whitespace.
        assert_eq!(check(b"/a%00", PathAllow::CONTROL_CHARACTERS), Ok(()));
        assert_eq!(check(b"/a%01/b", PathAllow::CONTROL_CHARACTERS), Ok(()));
        // Segments also end at allowed `;`, `\`, `%2F` and `%5C`: upstreams that drop
        // parameters or split there would see the whitespace last.
        assert_eq!(check(b"/a%20;x", PathAllow::PATH_PARAMETERS), tw);
        assert_eq!(check(b"/a%20\\x", PathAllow::BACKSLASH), tw);
        assert_eq!(check(b"/a%20%2Fx", PathAllow::ENCODED_SLASH), tw);
        assert_eq!(check(b"/a%20%5Cx", PathAllow::BACKSLASH), tw);
        // Left to right: the whitespace comes before the `;`.
        assert_eq!(c("/a%20;x"), tw);
        // A broken escape after the whitespace: the segment does not end there.
        assert_eq!(c("/a%20%G"), Ok(()));
        // Invalid UTF-8 then whitespace, with invalid UTF-8 allowed.
        assert_eq!(check(b"/a%FF%20", PathAllow::INVALID_UTF8), tw);
        assert_eq!(check(b"/a%20%FF", PathAllow::INVALID_UTF8), Ok(()));
        // A continuation byte alone is not a whitespace character.
        assert_eq!(check(b"/a%A0", PathAllow::INVALID_UTF8), Ok(()));
        assert_eq!(check(b"/a%85", PathAllow::INVALID_UTF8), Ok(()));
        // U+0085 (NEL) and U+2028 are.
        assert_eq!(c("/a%C2%85"), tw);
        assert_eq!(c("/a%E2%80%A8"), tw);
    }

    #[test]
    fn first_problem_from_the_left_is_reported() {
        assert_eq!(c("/a;b%2Fc"), Err(Reason::PathParameters));
        assert_eq!(c("/a%2Fb;c"), Err(Reason::EncodedSlash));
        assert_eq!(c("/a%00\\"), Err(Reason::ControlCharacter));
        assert_eq!(c("/a%FF%2F"), Err(Reason::InvalidUtf8));
    }

    #[test]
    fn long_runs() {
        let ok = "/".to_string() + &"%C3%A9".repeat(100);
        assert_eq!(c(&ok), Ok(()));
        let ok3 = "/x".to_string() + &"%E2%82%AC".repeat(100);
        assert_eq!(c(&ok3), Ok(()));
        // An overlong form deep in a long run.
        let bad = "/".to_string() + &"%C3%A9".repeat(50) + "%C0%AF" + &"%41".repeat(50);
        assert_eq!(c(&bad), Err(Reason::InvalidUtf8));
        // Truncated at the very end of a long run.
        let trunc = "/".to_string() + &"%41".repeat(63) + "%E2%82";
        assert_eq!(c(&trunc), Err(Reason::InvalidUtf8));
        // Whitespace ending a long run.
        let ws = "/".to_string() + &"%C3%A9".repeat(40) + "%E3%80%80";
        assert_eq!(c(&ws), Err(Reason::TrailingWhitespace));
        for n in 0..200 {
            let p = "/".to_string() + &"%41".repeat(n) + "%F0%9F%98%80";
            assert_eq!(c(&p), Ok(()), "{n}");
            let p = "/".to_string() + &"%41".repeat(n) + "%F0%9F%98";
            assert_eq!(c(&p), Err(Reason::InvalidUtf8), "{n}");
        }
    }

    /// The decoded UTF-8 check against a simple reference: decode every run into a `Vec`.
    fn reference_invalid_utf8(raw: &[u8]) -> bool {
        let mut i = 0;
        let mut run = Vec::new();
        let mut bad = false;
        while i < raw.len() {
            if raw[i] == b'%' {
                if let (Some(h), Some(l)) = (
                    raw.get(i + 1).copied().and_then(hex_value),
                    raw.get(i + 2).copied().and_then(hex_value),
                ) {
                    run.push(h << 4 | l);
                    i += 3;
                    continue;
                }
            }
            bad |= std::str::from_utf8(&run).is_err();
            run.clear();
            i += 1;
        }
        bad | std::str::from_utf8(&run).is_err()
    }

    fn arb_escape_path() -> impl Strategy<Value = Vec<u8>> {
        let piece = prop_oneof![
            any::<u8>().prop_map(|b| format!("%{b:02X}").into_bytes()),
            (0x80u8..=0xff).prop_map(|b| format!("%{b:02x}").into_bytes()),
            Just(b"%C3%A9".to_vec()),
            Just(b"%E2%80%80".to_vec()),
            Just(b"/".to_vec()),
            Just(b"a".to_vec()),
            Just(b"%".to_vec()),
            Just(b";".to_vec()),
            Just(b"\\".to_vec()),
        ];
        proptest::collection::vec(piece, 0..80).prop_map(|v| v.concat())
    }

    proptest! {
        #[test]
        fn check_never_panics(raw in proptest::collection::vec(any::<u8>(), 0..300), bits in any::<u8>()) {
            let _ = check(&raw, PathAllow(bits));
            prop_assert_eq!(check(&raw, ALL), Ok(()));
        }

        #[test]
        fn escapes_never_panic_and_all_allowed_passes(raw in arb_escape_path(), bits in 0u8..64) {
            let _ = check(&raw, PathAllow(bits));
            prop_assert_eq!(check(&raw, ALL), Ok(()));
        }

        #[test]
        fn utf8_check_agrees_with_a_vec_decoder(raw in arb_escape_path()) {
            let everything_else = ALL.0 & !PathAllow::INVALID_UTF8.0;
            let got = check(&raw, PathAllow(everything_else));
            prop_assert_eq!(got.is_err(), reference_invalid_utf8(&raw));
            if let Err(r) = got {
                prop_assert_eq!(r, Reason::InvalidUtf8);
            }
        }

        #[test]
        fn plain_paths_pass(raw in "[A-Za-z0-9/._~!$&'()*+,=:@-]{0,100}") {
            prop_assert_eq!(c(&raw), Ok(()));
        }
    }
}
