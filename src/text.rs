//! Text writers for the request path: numbers and addresses appended to a byte buffer without
//! `core::fmt`, whose machinery costs several times what the values themselves do (measured
//! with `benches/instructions.sh`: an IPv4 address through `write!` took about 600
//! instructions, this takes about 70).

use std::io::Write;
use std::net::IpAddr;

const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

/// `bytes` as lowercase hex digits, appended to `out`.
pub fn push_hex(out: &mut String, bytes: &[u8]) {
    out.reserve(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(HEX_DIGITS[usize::from(b >> 4)]));
        out.push(char::from(HEX_DIGITS[usize::from(b & 0xf)]));
    }
}

/// `bytes` as lowercase hex digits into `out`, which holds two per byte (fixed-size ids
/// written without allocating).
pub fn write_hex(out: &mut [u8], bytes: &[u8]) {
    for (pair, b) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = HEX_DIGITS[usize::from(b >> 4)];
        pair[1] = HEX_DIGITS[usize::from(b & 0xf)];
    }
}

/// `bytes` as lowercase hex digits.
pub fn hex(bytes: &[u8]) -> String {
    let mut out = String::new();
    push_hex(&mut out, bytes);
    out
}

/// Append `n` in decimal.
pub fn push_u64(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// Append `n % 1000` as exactly three digits (milliseconds after a decimal point).
pub fn push_3_digits(out: &mut Vec<u8>, n: u64) {
    let n = n % 1000;
    out.extend_from_slice(&[
        b'0' + (n / 100) as u8,
        b'0' + (n / 10 % 10) as u8,
        b'0' + (n % 10) as u8,
    ]);
}

/// Append the address in its usual text form (`Display`). IPv4 is written digit by digit;
/// IPv6, rarer and with its zero-run compression, goes through `fmt`.
pub fn push_ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                if octet >= 100 {
                    out.push(b'0' + octet / 100);
                }
                if octet >= 10 {
                    out.push(b'0' + octet / 10 % 10);
                }
                out.push(b'0' + octet % 10);
            }
        }
        IpAddr::V6(v6) => {
            let _ = write!(out, "{v6}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_into_a_slice_is_hex_into_a_string() {
        let bytes = [0x00, 0x0f, 0xa5, 0xff, 0x10];
        let mut out = [0u8; 10];
        write_hex(&mut out, &bytes);
        assert_eq!(std::str::from_utf8(&out).unwrap(), hex(&bytes));
        assert_eq!(hex(&bytes), "000fa5ff10");
    }

    #[test]
    fn numbers_and_addresses_match_display() {
        for n in [0u64, 7, 10, 999, 1000, 123_456_789, u64::MAX] {
            let mut out = Vec::new();
            push_u64(&mut out, n);
            assert_eq!(out, n.to_string().as_bytes());
        }
        for (n, text) in [
            (0u64, "000"),
            (7, "007"),
            (42, "042"),
            (999, "999"),
            (1234, "234"),
        ] {
            let mut out = Vec::new();
            push_3_digits(&mut out, n);
            assert_eq!(out, text.as_bytes());
        }
        for ip in [
            "0.0.0.0",
            "9.10.99.100",
            "255.255.255.255",
            "::1",
            "2001:db8::8a2e:370:7334",
            "::ffff:10.0.0.1",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            let mut out = Vec::new();
            push_ip(&mut out, ip);
            assert_eq!(out, ip.to_string().as_bytes());
        }
    }
}
