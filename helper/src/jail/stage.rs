//! Staging a VM's files where Firecracker will see them, from open files into a directory only
//! root can write (the chroot before the jailer hands it to the owner, or the direct
//! launcher's root before the helper does).
//!
//! The kernel, initrd and disk are opened by the caller with the owner's credentials (so they
//! are files the owner could read, and write for the disk), then hard-linked from their fds
//! (`linkat` through `/proc/self/fd`, which links exactly the opened inode). The linked inode
//! is never chowned: it is the owner's already, or root's image the owner may read. Across
//! filesystems the kernel and initrd are copied into new files; the disk is bind-mounted (the
//! guest's writes must reach the VM's disk), never copied. A block device (banger's own dm
//! device) gets a node with the same major:minor. The console, log and metrics files are
//! created empty, exclusively, and chowned to the owner through their fds.

use super::JailError;
use banger::fsx::{fd_path, Dir};
use rustix::fs::{AtFlags, FileType, CWD};
use std::fs::File;
use std::os::fd::AsFd;
use std::path::Path;

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

/// Hard-links the open file `src` into `dir` as `name`. `Ok(false)` across filesystems.
fn link_fd(src: &File, dir: &Dir, name: &str) -> Result<bool, JailError> {
    match rustix::fs::linkat(CWD, fd_path(src), dir, name, AtFlags::SYMLINK_FOLLOW) {
        Ok(()) => Ok(true),
        Err(rustix::io::Errno::XDEV) => Ok(false),
        Err(e) => Err(io(&dir.join(name), "hard-link")(e.into())),
    }
}

/// Stages a regular file (kernel, initrd) opened as the owner: a hard link, or across
/// filesystems a reflinked or copied new file owned by the owner.
pub fn file(src: &File, dir: &Dir, name: &str, uid: u32, gid: u32) -> Result<(), JailError> {
    if link_fd(src, dir, name)? {
        return Ok(());
    }
    let dst_path = dir.join(name);
    let to = dir.create(name, 0o640)?;
    if rustix::fs::ioctl_ficlone(&to, src).is_err() {
        let mut r = src;
        let mut w = &to;
        std::io::copy(&mut r, &mut w).map_err(io(&dst_path, "copy"))?;
    }
    rustix::fs::fchown(
        &to,
        Some(rustix::fs::Uid::from_raw(uid)),
        Some(rustix::fs::Gid::from_raw(gid)),
    )
    .map_err(|e| io(&dst_path, "chown")(e.into()))
}

/// How the root disk reached the staging dir.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disk {
    Linked,
    /// Across filesystems: an empty file to bind-mount the disk onto (the caller mounts).
    NeedsBind,
    Node,
}

/// Stages the root disk, opened by the caller: a block device gets a node with its
/// major:minor (owned by the owner); a file is hard-linked, or left for a bind mount across
/// filesystems.
pub fn disk(src: &File, dir: &Dir, uid: u32, gid: u32) -> Result<Disk, JailError> {
    let st = rustix::fs::fstat(src).map_err(|e| io(&dir.join(ROOTFS), "stat")(e.into()))?;
    match FileType::from_raw_mode(st.st_mode) {
        FileType::BlockDevice => {
            dir.mknod_block(ROOTFS, 0o600, st.st_rdev)?;
            dir.chown_at(ROOTFS, uid, gid)?;
            Ok(Disk::Node)
        }
        FileType::RegularFile => {
            if link_fd(src, dir, ROOTFS)? {
                Ok(Disk::Linked)
            } else {
                empty(dir, ROOTFS, 0o600, uid, gid)?;
                Ok(Disk::NeedsBind)
            }
        }
        _ => Err(JailError::NotAFile {
            path: dir.join(ROOTFS),
        }),
    }
}

/// Creates an empty file owned by the owner (fails if anything is already there).
pub fn empty(dir: &Dir, name: &str, mode: u32, uid: u32, gid: u32) -> Result<File, JailError> {
    let f = dir.create(name, mode)?;
    rustix::fs::fchown(
        f.as_fd(),
        Some(rustix::fs::Uid::from_raw(uid)),
        Some(rustix::fs::Gid::from_raw(gid)),
    )
    .map_err(|e| io(&dir.join(name), "chown")(e.into()))?;
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn staging_links_the_opened_inode_not_what_the_path_says_now() {
        let base = std::env::temp_dir().join(format!("banger-stage-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(base.join("stage")).unwrap();
        std::fs::write(base.join("k"), b"kernel").unwrap();
        let src = File::open(base.join("k")).unwrap();
        // The source path is swapped after it was opened.
        std::fs::rename(base.join("k"), base.join("k.old")).unwrap();
        std::fs::write(base.join("k"), b"other").unwrap();
        let dir = Dir::open(&base.join("stage")).unwrap();
        let uid = rustix::process::geteuid().as_raw();
        let gid = rustix::process::getegid().as_raw();
        file(&src, &dir, KERNEL, uid, gid).unwrap();
        assert_eq!(
            std::fs::read(base.join("stage").join(KERNEL)).unwrap(),
            b"kernel"
        );
        assert_eq!(
            std::fs::metadata(base.join("stage").join(KERNEL))
                .unwrap()
                .ino(),
            std::fs::metadata(base.join("k.old")).unwrap().ino()
        );
        assert!(file(&src, &dir, KERNEL, uid, gid).is_err(), "exclusive");
        let _ = std::fs::remove_dir_all(&base);
    }
}
