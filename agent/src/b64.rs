//! Base64 (RFC 4648, standard alphabet, padded): how bytes travel in the agent's JSON lines.
//! Decoding is strict: a wrong length, a character outside the alphabet or misplaced padding
//! is an error, never silently skipped.

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// The encoded length of `n` bytes.
pub fn encoded_len(n: usize) -> usize {
    n.div_ceil(3) * 4
}

/// Appends the encoding of `data` to `out`.
pub fn encode_into(data: &[u8], out: &mut String) {
    out.reserve(encoded_len(data.len()));
    let mut chunks = data.chunks_exact(3);
    for c in &mut chunks {
        let n = (u32::from(c[0]) << 16) | (u32::from(c[1]) << 8) | u32::from(c[2]);
        for shift in [18, 12, 6, 0] {
            out.push(ALPHABET[((n >> shift) & 63) as usize] as char);
        }
    }
    match *chunks.remainder() {
        [a] => {
            let n = u32::from(a) << 16;
            out.push(ALPHABET[((n >> 18) & 63) as usize] as char);
            out.push(ALPHABET[((n >> 12) & 63) as usize] as char);
            out.push_str("==");
        }
        [a, b] => {
            let n = (u32::from(a) << 16) | (u32::from(b) << 8);
            out.push(ALPHABET[((n >> 18) & 63) as usize] as char);
            out.push(ALPHABET[((n >> 12) & 63) as usize] as char);
            out.push(ALPHABET[((n >> 6) & 63) as usize] as char);
            out.push('=');
        }
        _ => {}
    }
}

pub fn encode(data: &[u8]) -> String {
    let mut s = String::new();
    encode_into(data, &mut s);
    s
}

/// Why a string is not base64.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// The length is not a multiple of 4.
    Length(usize),
    /// A character outside the alphabet (or padding where data must be), at this offset.
    Char(usize),
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::Length(n) => write!(f, "base64 of length {n} (not a multiple of 4)"),
            DecodeError::Char(i) => write!(f, "not base64 at offset {i}"),
        }
    }
}

impl std::error::Error for DecodeError {}

fn value(c: u8) -> Option<u32> {
    Some(match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => return None,
    } as u32)
}

pub fn decode(s: &str) -> Result<Vec<u8>, DecodeError> {
    let b = s.as_bytes();
    if !b.len().is_multiple_of(4) {
        return Err(DecodeError::Length(b.len()));
    }
    let mut out = Vec::with_capacity(b.len() / 4 * 3);
    let quads = b.len() / 4;
    for (q, c) in b.chunks_exact(4).enumerate() {
        let last = q + 1 == quads;
        let pad = if last {
            c.iter().rev().take_while(|&&x| x == b'=').count()
        } else {
            0
        };
        if pad > 2 {
            return Err(DecodeError::Char(q * 4 + 1));
        }
        let mut n = 0u32;
        for (i, &ch) in c[..4 - pad].iter().enumerate() {
            let v = value(ch).ok_or(DecodeError::Char(q * 4 + i))?;
            n |= v << (18 - 6 * i);
        }
        out.push((n >> 16) as u8);
        if pad < 2 {
            out.push((n >> 8) as u8);
        }
        if pad < 1 {
            out.push(n as u8);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc4648_vectors() {
        let v = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (plain, enc) in v {
            assert_eq!(encode(plain.as_bytes()), enc);
            assert_eq!(decode(enc).unwrap(), plain.as_bytes());
        }
    }

    #[test]
    fn every_byte_round_trips() {
        let all: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        for n in 0..all.len() {
            let e = encode(&all[..n]);
            assert_eq!(e.len(), encoded_len(n));
            assert_eq!(decode(&e).unwrap(), &all[..n]);
        }
    }

    #[test]
    fn bad_input_is_refused() {
        assert_eq!(decode("Zg="), Err(DecodeError::Length(3)));
        assert_eq!(decode("Z!=="), Err(DecodeError::Char(1)));
        assert_eq!(decode("Zg==Zg=="), Err(DecodeError::Char(2)));
        assert_eq!(decode("Z==="), Err(DecodeError::Char(1)));
        assert_eq!(decode("Zm9v\n"), Err(DecodeError::Length(5)));
        assert_eq!(decode("Zm 9"), Err(DecodeError::Char(2)));
    }
}
