//! Where a request body ends, followed byte by byte as it streams through.
//!
//! Pingora reads request bodies in large buffers and, on a kept-alive connection, a read can
//! take in the start of the next (pipelined) request too. The connection guard feeds every
//! body byte through [`Framing::advance`] and hands Pingora only the bytes that belong to the
//! current request; the rest waits for the next one. The chunked decoder here only finds the
//! end and refuses malformed framing; Pingora decodes the chunks itself.

/// Longest chunk-size line (size and extensions) or trailer field accepted, in bytes.
const MAX_LINE: usize = 4096;
/// Most bytes of trailer fields accepted after the last chunk.
const MAX_TRAILERS: usize = 16 * 1024;

/// The body framing of the request being read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `n` body bytes still to come.
    Length(u64),
    /// A chunked body, mid-way.
    Chunked(Chunked),
    /// The body (if any) is complete: nothing more belongs to this request.
    Done,
}

/// The body's framing is malformed (a smuggling attempt or a broken client).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Invalid;

impl Framing {
    /// Framing for a body of `length` bytes (0 is no body).
    pub fn length(length: u64) -> Self {
        if length == 0 {
            Self::Done
        } else {
            Self::Length(length)
        }
    }

    /// Framing for a chunked body.
    pub fn chunked() -> Self {
        Self::Chunked(Chunked::default())
    }

    pub fn is_done(&self) -> bool {
        matches!(self, Self::Done)
    }

    /// Take in `bytes` that follow what was seen so far; returns how many of them belong to
    /// this body. Fewer than `bytes.len()` means the body ended and the rest is the next
    /// request's.
    pub fn advance(&mut self, bytes: &[u8]) -> Result<usize, Invalid> {
        match self {
            Self::Done => Ok(0),
            Self::Length(left) => {
                let n = (*left).min(bytes.len() as u64);
                *left -= n;
                if *left == 0 {
                    *self = Self::Done;
                }
                // n <= bytes.len(), so it fits in usize.
                Ok(n as usize)
            }
            Self::Chunked(c) => {
                let n = c.advance(bytes)?;
                if c.state == State::Done {
                    *self = Self::Done;
                }
                Ok(n)
            }
        }
    }
}

/// Position in a chunked body (RFC 9112 7.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Chunked {
    state: State,
    /// Chunk size being read, then data bytes left in the chunk.
    size: u64,
    /// Hex digits of the size read so far.
    digits: u8,
    /// Bytes of the current size line or trailer field.
    line: usize,
    /// Bytes of trailer fields so far.
    trailers: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum State {
    /// Hex digits of a chunk size.
    #[default]
    Size,
    /// Chunk extensions, up to CR.
    Extension,
    /// LF after a size line.
    SizeLf,
    /// Chunk data.
    Data,
    /// CR, then LF, after chunk data.
    DataCr,
    DataLf,
    /// Start of a trailer field line, or the CR of the final empty line.
    TrailerStart,
    /// Inside a trailer field, up to CR.
    Trailer,
    TrailerLf,
    /// LF of the final empty line.
    LastLf,
    Done,
}

impl Chunked {
    fn advance(&mut self, bytes: &[u8]) -> Result<usize, Invalid> {
        let mut i = 0;
        while i < bytes.len() && self.state != State::Done {
            if self.state == State::Data {
                let n = self.size.min((bytes.len() - i) as u64);
                self.size -= n;
                i += n as usize;
                if self.size == 0 {
                    self.state = State::DataCr;
                }
                continue;
            }
            let b = bytes[i];
            i += 1;
            self.state = match self.state {
                State::Size => match crate::urlpath::hex_value(b) {
                    Some(d) => {
                        // 16 hex digits already overflow any body this gateway would take.
                        if self.digits >= 15 {
                            return Err(Invalid);
                        }
                        self.digits += 1;
                        self.size = self.size << 4 | u64::from(d);
                        State::Size
                    }
                    None if self.digits == 0 => return Err(Invalid),
                    None => self.after_size(b)?,
                },
                State::Extension => self.in_line(b, State::Extension, State::SizeLf)?,
                State::SizeLf => match b {
                    b'\n' if self.size == 0 => State::TrailerStart,
                    b'\n' => State::Data,
                    _ => return Err(Invalid),
                },
                State::DataCr => expect(b, b'\r', State::DataLf)?,
                State::DataLf => {
                    self.digits = 0;
                    self.line = 0;
                    expect(b, b'\n', State::Size)?
                }
                State::TrailerStart => match b {
                    b'\r' => State::LastLf,
                    b' ' | b'\t' | b'\n' => return Err(Invalid),
                    _ => {
                        self.line = 1;
                        self.count_trailer()?;
                        State::Trailer
                    }
                },
                State::Trailer => {
                    self.count_trailer()?;
                    self.in_line(b, State::Trailer, State::TrailerLf)?
                }
                State::TrailerLf => expect(b, b'\n', State::TrailerStart)?,
                State::LastLf => expect(b, b'\n', State::Done)?,
                State::Data | State::Done => unreachable_state()?,
            };
        }
        Ok(i)
    }

    /// The byte after a chunk size's last digit: extensions, or the end of the line.
    fn after_size(&mut self, b: u8) -> Result<State, Invalid> {
        self.line = usize::from(self.digits);
        match b {
            b';' | b' ' | b'\t' => self.in_line(b, State::Extension, State::SizeLf),
            b'\r' => Ok(State::SizeLf),
            _ => Err(Invalid),
        }
    }

    /// One byte of a line that ends in CRLF: visible characters and tabs only, and not too
    /// long.
    fn in_line(&mut self, b: u8, stay: State, after_cr: State) -> Result<State, Invalid> {
        self.line += 1;
        if self.line > MAX_LINE {
            return Err(Invalid);
        }
        match b {
            b'\r' => Ok(after_cr),
            b'\t' | b' '..=b'~' | 0x80..=0xff => Ok(stay),
            _ => Err(Invalid),
        }
    }

    fn count_trailer(&mut self) -> Result<(), Invalid> {
        self.trailers += 1;
        if self.trailers > MAX_TRAILERS {
            return Err(Invalid);
        }
        Ok(())
    }
}

fn expect(b: u8, want: u8, next: State) -> Result<State, Invalid> {
    if b == want {
        Ok(next)
    } else {
        Err(Invalid)
    }
}

/// Data and Done are handled before the byte match; reaching here would be a bug, answered as
/// malformed input rather than a panic.
fn unreachable_state() -> Result<State, Invalid> {
    Err(Invalid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn whole(body: &[u8]) -> Result<usize, Invalid> {
        Framing::chunked().advance(body)
    }

    #[test]
    fn length_stops_at_the_end_of_the_body() {
        let mut f = Framing::length(5);
        assert_eq!(f.advance(b"abc"), Ok(3));
        assert_eq!(f.advance(b"deGET /"), Ok(2));
        assert!(f.is_done());
        assert_eq!(f.advance(b"more"), Ok(0));
        assert!(Framing::length(0).is_done());
    }

    #[test]
    fn chunked_finds_the_end() {
        let body = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n";
        let mut next = body.to_vec();
        next.extend_from_slice(b"GET / HTTP/1.1\r\n");
        assert_eq!(whole(&next), Ok(body.len()));
        let mut f = Framing::chunked();
        assert_eq!(f.advance(body), Ok(body.len()));
        assert!(f.is_done());
    }

    #[test]
    fn chunked_with_trailers_and_uppercase_hex() {
        let body = b"A\r\n0123456789\r\n0\r\nX-Sum: 1\r\nY: 2\r\n\r\n";
        let mut f = Framing::chunked();
        assert_eq!(f.advance(body), Ok(body.len()));
        assert!(f.is_done());
    }

    #[test]
    fn chunked_byte_by_byte_matches_whole() {
        let body = b"3\r\nabc\r\n0\r\n\r\n";
        let mut f = Framing::chunked();
        for (i, b) in body.iter().enumerate() {
            assert_eq!(f.advance(std::slice::from_ref(b)), Ok(1), "byte {i}");
        }
        assert!(f.is_done());
    }

    #[test]
    fn malformed_chunked_is_refused() {
        for bad in [
            &b"zz\r\n"[..],
            b"\r\n",
            b"5\nhello\r\n",
            b"5\r\nhelloX\r\n",
            b"5\r\nhello\n0\r\n\r\n",
            b"-5\r\n",
            b"0x5\r\n",
            b"1234567890abcdef0\r\n",
            b"0\r\n\n",
            b"0\r\n obs-fold\r\n\r\n",
            b"5\r\x00",
        ] {
            assert_eq!(
                whole(bad),
                Err(Invalid),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn long_extension_lines_are_refused() {
        let mut body = b"1;".to_vec();
        body.extend(std::iter::repeat_n(b'x', MAX_LINE + 1));
        assert_eq!(whole(&body), Err(Invalid));
    }

    proptest! {
        #[test]
        fn never_consumes_more_than_given(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let mut f = Framing::chunked();
            if let Ok(n) = f.advance(&bytes) {
                prop_assert!(n <= bytes.len());
                prop_assert!(n == bytes.len() || f.is_done());
            }
        }

        #[test]
        fn split_anywhere_gives_the_same_end(split in 0usize..40) {
            let body = b"4\r\nwiki\r\n5;a=b\r\npedia\r\n0\r\nT: v\r\n\r\nNEXT";
            let split = split.min(body.len());
            let mut f = Framing::chunked();
            let a = f.advance(&body[..split]).unwrap();
            let b = f.advance(&body[split..]).unwrap();
            prop_assert_eq!(a + b, body.len() - 4);
        }
    }
}
