//! Firecracker's binary beside the jails. The jailer copies its `--exec-file` into every
//! chroot; from another filesystem that is a full copy of megabytes per launch (5.5 MB of
//! v1.16.1: 2 ms on a quiet host, 7 ms once 50 VMs' copies are being written back), where
//! within one filesystem its `copy_file_range` shares the blocks on XFS or btrfs. So when the
//! jail dir lies on another filesystem than Firecracker, the helper keeps one copy of it in
//! the jail dir (`<jail dir>/.exec/<key>/<name>`, root's, made once per Firecracker file) and
//! gives the jailer that.
//!
//! The key names the source file's identity (device, inode, size, modification time), so an
//! upgraded Firecracker gets a new copy; copies of files replaced more than an hour ago are
//! removed when a new one is made. Everything is done through directory fds of root's jail
//! dir; the copy is written under a temporary name, synced and renamed into place, so a
//! crash never leaves a torn binary under the name the jailer is given.

use super::JailError;
use banger::fsx::Dir;
use rustix::fs::{FileType, OFlags};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The directory of the jail dir holding the copies (a dot name: no jail group).
pub const EXEC_DIR: &str = ".exec";

/// Copies for an older Firecracker are kept this long after a newer one is copied (a launch
/// may still be handing one to its jailer).
const KEEP_OLD: Duration = Duration::from_secs(3600);

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> JailError + 'a {
    move |source| JailError::Stage {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// What to pass the jailer as `--exec-file` for `firecracker` (canonical, from the helper's
/// configuration), with `base` the jail dir: `firecracker` itself when both lie on one
/// filesystem, else the copy beside the jails (made now if there is none yet).
pub fn for_jailer(base: &Dir, firecracker: &Path) -> Result<PathBuf, JailError> {
    // Canonical already, so no symlink at its end; non-blocking so that a FIFO put there
    // cannot hold the helper; only a regular file is copied or handed on.
    let src = rustix::fs::open(
        firecracker,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map(File::from)
    .map_err(|e| io("open", firecracker)(e.into()))?;
    let st = rustix::fs::fstat(&src).map_err(|e| io("stat", firecracker)(e.into()))?;
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
        return Err(io("use", firecracker)(std::io::Error::other(
            "Firecracker is not a regular file",
        )));
    }
    if st.st_dev == base.stat()?.st_dev {
        return Ok(firecracker.to_path_buf());
    }
    let name = firecracker
        .file_name()
        .ok_or_else(|| io("name", firecracker)(std::io::ErrorKind::InvalidInput.into()))?;
    let key = format!(
        "{:x}-{:x}-{:x}-{:x}.{:x}",
        st.st_dev, st.st_ino, st.st_size, st.st_mtime, st.st_mtime_nsec
    );
    let store = base.ensure_dir(EXEC_DIR, 0o700)?;
    let dir = store.ensure_dir(&key, 0o700)?;
    let path = dir.join(name);
    if let Some(have) = dir.stat_at(name)? {
        if FileType::from_raw_mode(have.st_mode) == FileType::RegularFile
            && have.st_size == st.st_size
        {
            return Ok(path);
        }
        dir.unlink(name)?;
    }
    // A helper killed while copying left its temporary file: gone after a minute.
    for n in dir.names().unwrap_or_default() {
        let stale = n.to_string_lossy().starts_with(".tmp.")
            && dir
                .stat_at(&n)
                .ok()
                .flatten()
                .is_some_and(|st| now_secs() - st.st_mtime > 60);
        if stale {
            let _ = dir.unlink(&n);
        }
    }
    // Unique to this call: two launches in one helper may copy at once (the later rename
    // wins, with the same content).
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let tmp = format!(
        ".tmp.{}.{}",
        std::process::id(),
        SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let copy = (|| {
        let out = dir.create(&tmp, 0o755)?;
        if rustix::fs::ioctl_ficlone(&out, &src).is_err() {
            std::io::copy(&mut &src, &mut &out).map_err(io("copy", &path))?;
        }
        out.sync_data().map_err(io("sync", &path))?;
        rustix::fs::renameat(&dir, tmp.as_str(), &dir, name)
            .map_err(|e| io("rename", &path)(e.into()))
    })();
    if let Err(e) = copy {
        let _ = dir.unlink(&tmp);
        return Err(e);
    }
    forget_old(&store, &key);
    Ok(path)
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Removes the copies other than `key`'s whose directory was last changed over an hour ago.
fn forget_old(store: &Dir, key: &str) {
    let Ok(names) = store.names() else {
        return;
    };
    let now = now_secs();
    for n in names.iter().filter(|n| n.to_str() != Some(key)) {
        let old = store
            .stat_at(n)
            .ok()
            .flatten()
            .is_some_and(|st| now - st.st_mtime > KEEP_OLD.as_secs() as i64);
        if old {
            let _ = store.remove_tree(n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(root: &Path, tag: &str) -> PathBuf {
        let d = root.join(format!("banger-exec-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn one_filesystem_needs_no_copy() {
        let d = tmp(&std::env::temp_dir(), "same");
        let fc = d.join("firecracker");
        std::fs::write(&fc, b"\x7fELF binary").unwrap();
        let base = Dir::open_trusted(&d).unwrap();
        assert_eq!(for_jailer(&base, &fc).unwrap(), fc);
        assert!(!d.join(EXEC_DIR).exists());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn only_a_regular_file_is_taken() {
        let d = tmp(&std::env::temp_dir(), "fifo");
        let fc = d.join("firecracker");
        rustix::fs::mkfifoat(rustix::fs::CWD, &fc, rustix::fs::Mode::from_raw_mode(0o600)).unwrap();
        let base = Dir::open_trusted(&d).unwrap();
        let e = for_jailer(&base, &fc).unwrap_err();
        assert!(
            banger::cli::one_line(&e).contains("not a regular file"),
            "{e}"
        );
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn another_filesystem_gets_one_copy_per_binary() {
        // /dev/shm is a tmpfs on the hosts this runs on; where it is not another filesystem
        // than the temp dir, there is nothing to test.
        if !Path::new("/dev/shm").is_dir() {
            return;
        }
        let src_dir = tmp(&std::env::temp_dir(), "src");
        let jail = tmp(Path::new("/dev/shm"), "jail");
        let fc = src_dir.join("firecracker-v1");
        std::fs::write(&fc, b"\x7fELF one").unwrap();
        let base = Dir::open_trusted(&jail).unwrap();
        if base.stat().unwrap().st_dev
            == std::fs::metadata(&src_dir)
                .map(|m| {
                    use std::os::unix::fs::MetadataExt;
                    m.dev()
                })
                .unwrap()
        {
            return;
        }
        let first = for_jailer(&base, &fc).unwrap();
        assert!(first.starts_with(jail.join(EXEC_DIR)));
        assert_eq!(first.file_name().unwrap(), "firecracker-v1");
        assert_eq!(std::fs::read(&first).unwrap(), b"\x7fELF one");
        let ino = |p: &Path| {
            use std::os::unix::fs::MetadataExt;
            std::fs::metadata(p).unwrap().ino()
        };
        let first_ino = ino(&first);
        // Again: the same copy, not made again.
        assert_eq!(for_jailer(&base, &fc).unwrap(), first);
        assert_eq!(ino(&first), first_ino);
        // A new Firecracker (another file at the name): another copy; the first one stays
        // (it was made less than an hour ago).
        std::fs::remove_file(&fc).unwrap();
        std::fs::write(&fc, b"\x7fELF two, longer").unwrap();
        let second = for_jailer(&base, &fc).unwrap();
        assert_ne!(second, first);
        assert_eq!(std::fs::read(&second).unwrap(), b"\x7fELF two, longer");
        assert!(first.exists());
        // No temporary file left.
        for d in [first.parent().unwrap(), second.parent().unwrap()] {
            let names: Vec<_> = std::fs::read_dir(d)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            assert_eq!(names.len(), 1, "{names:?}");
        }
        let _ = std::fs::remove_dir_all(&src_dir);
        let _ = std::fs::remove_dir_all(&jail);
    }
}
