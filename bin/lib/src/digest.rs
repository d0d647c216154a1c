//! SHA-256 as the project writes it everywhere: lowercase hex, of bytes or streamed from a
//! reader (images, warm artifacts, installed binaries, the agent).

use sha2::{Digest, Sha256};
use std::io::{Read, Write};

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 of `bytes`, hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// SHA-256 of all `r` holds, read in 1 MiB steps; `done` hears the bytes read so far after
/// each step (for progress).
pub fn sha256_read(mut r: impl Read, mut done: impl FnMut(u64)) -> std::io::Result<String> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        h.update(&buf[..n]);
        total += n as u64;
        done(total);
    }
    Ok(hex(&h.finalize()))
}

/// [`sha256_read`] of `r` while copying it into `w` (a download kept and checked at once).
/// An error writing is the copy's error.
pub fn sha256_copy(r: impl Read, w: impl Write, done: impl FnMut(u64)) -> std::io::Result<String> {
    struct Tee<R, W> {
        r: R,
        w: W,
    }
    impl<R: Read, W: Write> Read for Tee<R, W> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.r.read(buf)?;
            self.w.write_all(&buf[..n])?;
            Ok(n)
        }
    }
    sha256_read(Tee { r, w }, done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_digests() {
        let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(sha256_hex(b"abc"), abc);
        let mut seen = Vec::new();
        assert_eq!(sha256_read(&b"abc"[..], |n| seen.push(n)).unwrap(), abc);
        assert_eq!(seen, [3]);
        let mut copy = Vec::new();
        assert_eq!(sha256_copy(&b"abc"[..], &mut copy, |_| ()).unwrap(), abc);
        assert_eq!(copy, b"abc");
        assert_eq!(hex(&[0, 0xab, 0x10]), "00ab10");
    }
}
