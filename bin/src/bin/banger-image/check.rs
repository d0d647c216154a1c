//! What `import` checks: the kernel is an uncompressed ELF vmlinux for this machine (not a
//! bzImage, not some other ELF), the rootfs is an ext4 image. And the extraction of the ELF
//! vmlinux from a bzImage, for `build --debian`.

use std::io::{Read, Write};

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is a bzImage (compressed kernel); pass the uncompressed ELF vmlinux (extract it with the kernel's scripts/extract-vmlinux, or use the vmlinux from the kernel build)")]
    BzImage { path: PathBuf },
    #[error("{path} is not a kernel: not an ELF file (pass the uncompressed ELF vmlinux)")]
    NotElf { path: PathBuf },
    #[error("{path} is an ELF file but not a {arch} kernel vmlinux ({why}); pass the uncompressed ELF vmlinux")]
    WrongElf {
        path: PathBuf,
        arch: &'static str,
        why: String,
    },
    #[error("{path} is not an ext4 image (no ext2/3/4 superblock); make one with mkfs.ext4 -d DIR, or banger-image build --from-dir DIR")]
    NotExt4 { path: PathBuf },
    #[error("{path} is not a regular file")]
    NotFile { path: PathBuf },
    #[error("no compressed ELF kernel found inside {path} (tried gzip, xz, zstd, lz4, bzip2, lzma, lzo payloads; are xz-utils, zstd and lz4 installed?)")]
    NoPayload { path: PathBuf },
}

/// The machine this binary runs on, as ELF `e_machine` and a name.
pub fn this_arch() -> (u16, &'static str) {
    if cfg!(target_arch = "aarch64") {
        (183, "aarch64")
    } else {
        (62, "x86_64")
    }
}

fn read_head(path: &Path, n: usize) -> Result<Vec<u8>, CheckError> {
    let meta = std::fs::metadata(path).map_err(|source| CheckError::Read {
        path: path.into(),
        source,
    })?;
    if !meta.is_file() {
        return Err(CheckError::NotFile { path: path.into() });
    }
    let mut f = std::fs::File::open(path).map_err(|source| CheckError::Read {
        path: path.into(),
        source,
    })?;
    let mut buf = Vec::with_capacity(n);
    Read::by_ref(&mut f)
        .take(n as u64)
        .read_to_end(&mut buf)
        .map_err(|source| CheckError::Read {
            path: path.into(),
            source,
        })?;
    Ok(buf)
}

/// Checks the first bytes of a would-be kernel.
pub fn kernel_bytes(path: &Path, head: &[u8]) -> Result<(), CheckError> {
    if head.len() >= 0x206 && &head[0x202..0x206] == b"HdrS" {
        return Err(CheckError::BzImage { path: path.into() });
    }
    if head.len() < 64 || &head[..4] != b"\x7fELF" {
        return Err(CheckError::NotElf { path: path.into() });
    }
    let (want, arch) = this_arch();
    let wrong = |why: String| CheckError::WrongElf {
        path: path.into(),
        arch,
        why,
    };
    if head[4] != 2 {
        return Err(wrong("32-bit ELF".into()));
    }
    if head[5] != 1 {
        return Err(wrong("big-endian ELF".into()));
    }
    let e_type = u16::from_le_bytes([head[16], head[17]]);
    let machine = u16::from_le_bytes([head[18], head[19]]);
    if machine != want {
        return Err(wrong(format!("machine {machine}, expected {want}")));
    }
    if e_type != 2 {
        let what = match e_type {
            1 => "a relocatable object",
            3 => "a shared object or position-independent program",
            4 => "a core dump",
            _ => "not an executable",
        };
        return Err(wrong(format!("{what}, a kernel is a static executable")));
    }
    Ok(())
}

/// Checks that `path` is an uncompressed ELF vmlinux for this machine.
pub fn kernel(path: &Path) -> Result<(), CheckError> {
    kernel_bytes(path, &read_head(path, 0x210)?)
}

/// Checks that `path` holds an ext2/3/4 filesystem (superblock magic 0xEF53 at 1080).
pub fn ext4(path: &Path) -> Result<(), CheckError> {
    let head = read_head(path, 2048)?;
    if head.len() < 1082 || head[1080] != 0x53 || head[1081] != 0xEF {
        return Err(CheckError::NotExt4 { path: path.into() });
    }
    Ok(())
}

/// Decompressors and the magic their payload starts with.
const PAYLOADS: &[(&[u8], &str, &[&str])] = &[
    (b"\x1f\x8b\x08", "gzip", &["-dc"]),
    (b"\xfd7zXZ\x00", "xz", &["-dc"]),
    (b"\x28\xb5\x2f\xfd", "zstd", &["-dc"]),
    (b"\x02\x21\x4c\x18", "lz4", &["-dc"]),
    (b"BZh", "bzip2", &["-dc"]),
    (b"\x5d\x00\x00\x00", "unlzma", &["-c"]),
    (b"\x89LZO", "lzop", &["-dc"]),
];

fn decompress(program: &str, args: &[&str], data: &[u8]) -> Option<Vec<u8>> {
    let mut child = std::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok()?;
    let mut stdin = child.stdin.take()?;
    let data = data.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&data);
    });
    let mut out = Vec::new();
    let _ = child.stdout.take()?.read_to_end(&mut out);
    let _ = child.wait();
    let _ = writer.join();
    // Trailing bytes after the payload make some tools exit non-zero; the output counts.
    Some(out)
}

/// Finds the compressed payload in a bzImage and returns the ELF vmlinux inside (what the
/// kernel's scripts/extract-vmlinux does).
pub fn extract_vmlinux(path: &Path) -> Result<Vec<u8>, CheckError> {
    let data = std::fs::read(path).map_err(|source| CheckError::Read {
        path: path.into(),
        source,
    })?;
    if data.starts_with(b"\x7fELF") {
        return Ok(data);
    }
    for (magic, program, args) in PAYLOADS {
        let mut from = 0;
        while let Some(i) = find(&data[from..], magic) {
            let at = from + i;
            if let Some(out) = decompress(program, args, &data[at..]) {
                if kernel_bytes(path, &out).is_ok() {
                    return Ok(out);
                }
            }
            from = at + 1;
        }
    }
    Err(CheckError::NoPayload { path: path.into() })
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn elf(e_type: u16, machine: u16) -> Vec<u8> {
        let mut h = vec![0u8; 64];
        h[..4].copy_from_slice(b"\x7fELF");
        h[4] = 2;
        h[5] = 1;
        h[16..18].copy_from_slice(&e_type.to_le_bytes());
        h[18..20].copy_from_slice(&machine.to_le_bytes());
        h
    }

    #[test]
    fn kernels() {
        let p = Path::new("k");
        let (m, _) = this_arch();
        assert!(kernel_bytes(p, &elf(2, m)).is_ok());
        let e = kernel_bytes(p, &elf(3, m)).unwrap_err().to_string();
        assert!(e.contains("position-independent"), "{e}");
        assert!(kernel_bytes(p, &elf(2, 40)).is_err());
        let mut bz = vec![0u8; 0x300];
        bz[0x202..0x206].copy_from_slice(b"HdrS");
        let e = kernel_bytes(p, &bz).unwrap_err().to_string();
        assert!(
            e.contains("bzImage") && e.contains("extract-vmlinux"),
            "{e}"
        );
        assert!(matches!(
            kernel_bytes(p, b"garbage"),
            Err(CheckError::NotElf { .. })
        ));
    }
}
