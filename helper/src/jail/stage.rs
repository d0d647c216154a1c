//! Staging a VM's files where Firecracker will see them: the kernel and initrd hard-linked
//! (reflinked or copied across filesystems), the root disk hard-linked (bind-mounted across
//! filesystems, never copied: the guest's writes must reach the VM's disk) or `mknod`ed with
//! the same major:minor when it is a block device, and the console, log and metrics files
//! created empty. Everything is chowned to the owner.

use super::JailError;
use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags, CWD};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

/// Names inside the staging dir.
pub const KERNEL: &str = "vmlinux";
pub const INITRD: &str = "initrd";
pub const ROOTFS: &str = "rootfs";
pub const CONSOLE: &str = "console.log";
pub const LOG: &str = "firecracker.log";
pub const METRICS: &str = "metrics.json";

fn io<'a>(path: &'a Path, what: &'static str) -> impl FnOnce(std::io::Error) -> JailError + 'a {
    move |source| JailError::Stage {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// Opens `path` (`O_PATH`) refusing a symlink in any component, so a path that passed
/// validation cannot be redirected out of its root between the check and the use.
pub fn open_no_symlinks(path: &Path) -> Result<OwnedFd, JailError> {
    let flags = OFlags::PATH | OFlags::CLOEXEC | OFlags::NOFOLLOW;
    match rustix::fs::openat2(CWD, path, flags, Mode::empty(), ResolveFlags::NO_SYMLINKS) {
        Ok(fd) => Ok(fd),
        Err(rustix::io::Errno::NOSYS) => {
            rustix::fs::open(path, flags, Mode::empty()).map_err(|e| JailError::Stage {
                what: "open",
                path: path.to_path_buf(),
                source: e.into(),
            })
        }
        Err(rustix::io::Errno::LOOP) | Err(rustix::io::Errno::XDEV) => Err(JailError::Symlink {
            path: path.to_path_buf(),
        }),
        Err(e) => Err(JailError::Stage {
            what: "open",
            path: path.to_path_buf(),
            source: e.into(),
        }),
    }
}

fn fd_path(fd: &OwnedFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// Hard-links the file behind `src` to `dst`; across filesystems, reflinks or copies it when
/// `may_copy`, else reports `CrossDevice`.
fn link_or_copy(
    src: &OwnedFd,
    src_path: &Path,
    dst: &Path,
    may_copy: bool,
) -> Result<bool, JailError> {
    match rustix::fs::linkat(CWD, fd_path(src), CWD, dst, AtFlags::SYMLINK_FOLLOW) {
        Ok(()) => return Ok(true),
        Err(rustix::io::Errno::XDEV) if may_copy => {}
        Err(rustix::io::Errno::XDEV) => {
            return Err(JailError::CrossDevice {
                path: src_path.to_path_buf(),
            })
        }
        Err(e) => return Err(io(dst, "hard-link")(e.into())),
    }
    let from = rustix::fs::open(
        fd_path(src),
        OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| io(src_path, "open")(e.into()))?;
    let to = rustix::fs::open(
        dst,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o640),
    )
    .map_err(|e| io(dst, "create")(e.into()))?;
    if rustix::fs::ioctl_ficlone(&to, &from).is_ok() {
        return Ok(false);
    }
    let mut r = std::fs::File::from(from);
    let mut w = std::fs::File::from(to);
    std::io::copy(&mut r, &mut w).map_err(io(dst, "copy"))?;
    Ok(false)
}

fn chown(path: &Path, uid: u32, gid: u32) -> Result<(), JailError> {
    rustix::fs::chownat(
        CWD,
        path,
        Some(rustix::fs::Uid::from_raw(uid)),
        Some(rustix::fs::Gid::from_raw(gid)),
        AtFlags::SYMLINK_NOFOLLOW,
    )
    .map_err(|e| io(path, "chown")(e.into()))
}

/// Stages a regular file (kernel, initrd).
pub fn file(src: &Path, dir: &Path, name: &str, uid: u32, gid: u32) -> Result<(), JailError> {
    let fd = open_no_symlinks(src)?;
    let st = rustix::fs::fstat(&fd).map_err(|e| io(src, "stat")(e.into()))?;
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
        return Err(JailError::NotAFile {
            path: src.to_path_buf(),
        });
    }
    let dst = dir.join(name);
    link_or_copy(&fd, src, &dst, true)?;
    chown(&dst, uid, gid)
}

/// How the root disk reached the staging dir.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disk {
    Linked,
    /// Across filesystems: an empty file to bind-mount the disk onto (the caller mounts).
    NeedsBind,
    Node,
}

/// Stages the root disk: a block device is `mknod`ed with its major:minor; a file is
/// hard-linked, or left for a bind mount across filesystems.
pub fn disk(src: &Path, dir: &Path, uid: u32, gid: u32) -> Result<Disk, JailError> {
    let dst = dir.join(ROOTFS);
    let is_dev = src.starts_with("/dev");
    if is_dev {
        // /dev is root's; the device was checked against the ledger by the caller.
        let st = rustix::fs::stat(src).map_err(|e| io(src, "stat")(e.into()))?;
        if FileType::from_raw_mode(st.st_mode) != FileType::BlockDevice {
            return Err(JailError::NotAFile {
                path: src.to_path_buf(),
            });
        }
        rustix::fs::mknodat(
            CWD,
            &dst,
            FileType::BlockDevice,
            Mode::from_raw_mode(0o600),
            st.st_rdev,
        )
        .map_err(|e| io(&dst, "mknod")(e.into()))?;
        chown(&dst, uid, gid)?;
        return Ok(Disk::Node);
    }
    let fd = open_no_symlinks(src)?;
    let st = rustix::fs::fstat(&fd).map_err(|e| io(src, "stat")(e.into()))?;
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
        return Err(JailError::NotAFile {
            path: src.to_path_buf(),
        });
    }
    match link_or_copy(&fd, src, &dst, false) {
        Ok(_) => {
            chown(&dst, uid, gid)?;
            Ok(Disk::Linked)
        }
        Err(JailError::CrossDevice { .. }) => {
            empty(dir, ROOTFS, 0o600, uid, gid)?;
            Ok(Disk::NeedsBind)
        }
        Err(e) => Err(e),
    }
}

/// Creates an empty file owned by the owner (fails if anything is already there).
pub fn empty(dir: &Path, name: &str, mode: u32, uid: u32, gid: u32) -> Result<PathBuf, JailError> {
    let p = dir.join(name);
    let fd = rustix::fs::open(
        &p,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(mode),
    )
    .map_err(|e| io(&p, "create")(e.into()))?;
    rustix::fs::fchown(
        &fd,
        Some(rustix::fs::Uid::from_raw(uid)),
        Some(rustix::fs::Gid::from_raw(gid)),
    )
    .map_err(|e| io(&p, "chown")(e.into()))?;
    rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode)).map_err(|e| io(&p, "chmod")(e.into()))?;
    Ok(p)
}

/// Makes a directory owned by root with `mode`; `exist_ok` for shared parents.
pub fn mkdir(path: &Path, mode: u32, exist_ok: bool) -> Result<(), JailError> {
    match rustix::fs::mkdir(path, Mode::from_raw_mode(mode)) {
        Ok(()) => {
            let _ = rustix::fs::chmod(path, Mode::from_raw_mode(mode));
            Ok(())
        }
        Err(rustix::io::Errno::EXIST) if exist_ok => {
            let st = rustix::fs::lstat(path).map_err(|e| io(path, "stat")(e.into()))?;
            if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
                Ok(())
            } else {
                Err(JailError::NotAFile {
                    path: path.to_path_buf(),
                })
            }
        }
        Err(rustix::io::Errno::EXIST) => Err(JailError::Exists {
            path: path.to_path_buf(),
        }),
        Err(e) => Err(io(path, "mkdir")(e.into())),
    }
}

/// `chown` for directories made during staging.
pub fn chown_dir(path: &Path, uid: u32, gid: u32, mode: u32) -> Result<(), JailError> {
    chown(path, uid, gid)?;
    rustix::fs::chmod(path, Mode::from_raw_mode(mode)).map_err(|e| io(path, "chmod")(e.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlinks_anywhere_in_the_path_are_refused() {
        let base = std::env::temp_dir().join(format!("banger-stage-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(base.join("real")).unwrap();
        std::fs::write(base.join("real/f"), b"k").unwrap();
        std::os::unix::fs::symlink(base.join("real"), base.join("link")).unwrap();
        assert!(open_no_symlinks(&base.join("real/f")).is_ok());
        assert!(matches!(
            open_no_symlinks(&base.join("link/f")),
            Err(JailError::Symlink { .. })
        ));
        let dir = base.join("stage");
        std::fs::create_dir_all(&dir).unwrap();
        let uid = rustix::process::geteuid().as_raw();
        let gid = rustix::process::getegid().as_raw();
        file(&base.join("real/f"), &dir, KERNEL, uid, gid).unwrap();
        assert_eq!(std::fs::read(dir.join(KERNEL)).unwrap(), b"k");
        assert!(matches!(
            file(&base.join("real/f"), &dir, KERNEL, uid, gid),
            Err(JailError::Stage {
                what: "hard-link",
                ..
            })
        ));
        let _ = std::fs::remove_dir_all(&base);
    }
}
