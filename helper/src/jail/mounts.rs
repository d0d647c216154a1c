//! Mounts in a chroot: the library directories a dynamically linked Firecracker needs
//! (read-only binds) and the root disk bind-mounted across filesystems, always after a
//! self-bind of the chroot, so teardown takes them all with one recursive detach of the
//! chroot's root, a path made of root's directories only. Mounts are made while the chroot
//! is still root's (before the jailer, or the direct launcher, hands it to the owner).

use super::JailError;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use std::path::{Path, PathBuf};

/// True when the ELF file at `path` asks for a program interpreter (dynamic linking).
/// Anything that is not a 64-bit little-endian ELF is reported as static. Only the ELF
/// header and the program headers are read (not the megabytes of the whole binary, which
/// took milliseconds on every launch).
pub fn is_dynamic(path: &Path) -> Result<bool, JailError> {
    use std::io::Read;
    let err = |source| JailError::Stage {
        what: "read",
        path: path.to_path_buf(),
        source,
    };
    let f = std::fs::File::open(path).map_err(err)?;
    let mut head = Vec::with_capacity(4096);
    f.take(4096).read_to_end(&mut head).map_err(err)?;
    // The program headers normally follow the ELF header; read further only when not.
    let needed = phdrs_end(&head).unwrap_or(0).min(1 << 20);
    if needed > head.len() as u64 {
        head.clear();
        std::fs::File::open(path)
            .map_err(err)?
            .take(needed)
            .read_to_end(&mut head)
            .map_err(err)?;
    }
    Ok(elf_has_interp(&head))
}

/// Where the program header table of an ELF header ends, if `d` starts with one.
fn phdrs_end(d: &[u8]) -> Option<u64> {
    if d.len() < 64 || &d[..4] != b"\x7fELF" {
        return None;
    }
    let phoff = u64::from_le_bytes(d.get(0x20..0x28)?.try_into().ok()?);
    let phsize = u64::from(u16::from_le_bytes(d.get(0x36..0x38)?.try_into().ok()?));
    let phnum = u64::from(u16::from_le_bytes(d.get(0x38..0x3a)?.try_into().ok()?));
    phoff.checked_add(phsize.checked_mul(phnum)?)
}

fn elf_has_interp(d: &[u8]) -> bool {
    if d.len() < 64 || &d[..4] != b"\x7fELF" || d[4] != 2 || d[5] != 1 {
        return false;
    }
    let u16_at = |o: usize| d.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let u64_at = |o: usize| {
        d.get(o..o + 8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes)
    };
    let (Some(phoff), Some(phsize), Some(phnum)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38))
    else {
        return false;
    };
    (0..usize::from(phnum)).any(|i| {
        let o = usize::try_from(phoff)
            .ok()
            .and_then(|p| p.checked_add(i.checked_mul(usize::from(phsize))?));
        o.and_then(|o| d.get(o..o.checked_add(4)?))
            .is_some_and(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) == 3)
    })
}

/// The directories of the shared libraries (and the loader) `ldd` lists for `exe`.
pub fn lib_dirs(exe: &Path) -> Result<Vec<PathBuf>, JailError> {
    let out = duct::cmd!("ldd", exe)
        .stderr_to_stdout()
        .stdout_capture()
        .unchecked()
        .run()
        .map_err(|source| JailError::Stage {
            what: "run ldd on",
            path: exe.to_path_buf(),
            source,
        })?;
    Ok(parse_ldd(&String::from_utf8_lossy(&out.stdout)))
}

fn parse_ldd(text: &str) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    for word in text.split_whitespace() {
        if !word.starts_with('/') {
            continue;
        }
        if let Some(d) = Path::new(word).parent() {
            if d != Path::new("/") && !dirs.iter().any(|x| x == d) {
                dirs.push(d.to_path_buf());
            }
        }
    }
    dirs
}

/// Mount points at or below `dir` in this mount namespace (from `/proc/self/mountinfo`).
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    text.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape(p)))
        .filter(|p| p.starts_with(dir))
        .collect()
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn err(what: &'static str, path: &Path, e: nix::Error) -> JailError {
    JailError::Mount {
        what,
        path: path.to_path_buf(),
        source: std::io::Error::from_raw_os_error(e as i32),
    }
}

/// Binds `dir` onto itself (so everything mounted below is one subtree).
pub fn self_bind(dir: &Path) -> Result<(), JailError> {
    mount(Some(dir), dir, None::<&str>, MsFlags::MS_BIND, None::<&str>)
        .map_err(|e| err("self-bind", dir, e))?;
    mount(
        None::<&str>,
        dir,
        None::<&str>,
        MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| err("make private", dir, e))
}

/// Binds `src` at `dst`, read-only unless `writable`, nosuid and nodev.
pub fn bind(src: &Path, dst: &Path, writable: bool) -> Result<(), JailError> {
    mount(Some(src), dst, None::<&str>, MsFlags::MS_BIND, None::<&str>)
        .map_err(|e| err("bind-mount", dst, e))?;
    let mut flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    if !writable {
        flags |= MsFlags::MS_RDONLY;
    }
    if let Err(e) = mount(None::<&str>, dst, None::<&str>, flags, None::<&str>) {
        let _ = umount2(dst, MntFlags::MNT_DETACH);
        return Err(err("remount read-only", dst, e));
    }
    Ok(())
}

/// Detaches the mount at `point` and everything mounted below it (`MNT_DETACH` is
/// recursive), without following a symlink at `point`. Not a mount point is fine. Teardown
/// calls it on the chroot's self-bind, whose path only crosses root's directories, so no
/// path inside the owner's chroot is ever resolved to unmount.
pub fn detach_tree(point: &Path) -> Result<(), JailError> {
    match umount2(point, MntFlags::MNT_DETACH | MntFlags::UMOUNT_NOFOLLOW) {
        Ok(()) | Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => Ok(()),
        Err(e) => Err(err("unmount", point, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elf_interp_detection() {
        // This test binary is dynamically linked (the stand-ins are the static ones).
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        assert!(elf_has_interp(&me));
        assert!(!elf_has_interp(b"#!/bin/sh\necho not elf\n"));
        assert!(!elf_has_interp(&[]));
        let mut truncated = me[..64].to_vec();
        truncated[0x20..0x28].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(!elf_has_interp(&truncated));
    }

    #[test]
    fn only_the_headers_are_read_wherever_they_lie() {
        let exe = std::env::current_exe().unwrap();
        assert!(is_dynamic(&exe).unwrap());
        // The same program headers moved past the first read (8 KiB in): still found.
        let me = std::fs::read(&exe).unwrap();
        let end = phdrs_end(&me).unwrap() as usize;
        let phoff = u64::from_le_bytes(me[0x20..0x28].try_into().unwrap()) as usize;
        let mut moved = me[..64].to_vec();
        moved[0x20..0x28].copy_from_slice(&8192u64.to_le_bytes());
        moved.resize(8192, 0);
        moved.extend_from_slice(&me[phoff..end]);
        let p = std::env::temp_dir().join(format!("banger-elf-{}", std::process::id()));
        std::fs::write(&p, &moved).unwrap();
        assert!(is_dynamic(&p).unwrap());
        moved.truncate(8192);
        std::fs::write(&p, &moved).unwrap();
        assert!(!is_dynamic(&p).unwrap());
        let _ = std::fs::remove_file(&p);
    }

    #[test]
    fn ldd_output() {
        let text = "\tlinux-vdso.so.1 (0x00007ffd)\n\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x7f)\n\t/lib64/ld-linux-x86-64.so.2 (0x7f)\n\tlibm.so.6 => /lib/x86_64-linux-gnu/libm.so.6 (0x1)\n";
        assert_eq!(
            parse_ldd(text),
            vec![
                PathBuf::from("/lib/x86_64-linux-gnu"),
                PathBuf::from("/lib64")
            ]
        );
        assert!(parse_ldd("\tstatically linked\n").is_empty());
    }

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape("/a\\040b"), "/a b");
        assert_eq!(unescape("/x\\134y"), "/x\\y");
        assert_eq!(unescape("/plain"), "/plain");
    }

    #[test]
    fn detaching_what_is_not_mounted_is_fine() {
        assert!(detach_tree(Path::new("/nonexistent/banger/root")).is_ok());
    }
}
