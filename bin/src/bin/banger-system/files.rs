//! Installing files by atomic replace: the new content goes to a temp file in the target's
//! directory (created exclusively, never following a symlink), is synced, and is renamed over
//! the target, so a reader sees the old file or the new one, never half of either. Updates
//! keep the old file as a hard link beside it until the new build is known good.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("cannot {what} {path}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> FileError {
    let path = path.to_path_buf();
    move |source| FileError::Io { what, path, source }
}

/// True when `a` and `b` are both regular files with the same bytes and `b` has `mode`.
pub fn same(a: &Path, b: &Path, mode: Option<u32>) -> bool {
    let (Ok(ma), Ok(mb)) = (std::fs::metadata(a), std::fs::symlink_metadata(b)) else {
        return false;
    };
    if !mb.is_file() || ma.len() != mb.len() {
        return false;
    }
    if mode.is_some_and(|m| mb.permissions().mode() & 0o7777 != m) {
        return false;
    }
    let (Ok(mut fa), Ok(mut fb)) = (File::open(a), File::open(b)) else {
        return false;
    };
    let mut ba = vec![0u8; 1 << 16];
    let mut bb = vec![0u8; 1 << 16];
    loop {
        let n = match fa.read(&mut ba) {
            Ok(n) => n,
            Err(_) => return false,
        };
        if n == 0 {
            return true;
        }
        if fb.read_exact(&mut bb[..n]).is_err() || ba[..n] != bb[..n] {
            return false;
        }
    }
}

/// True when `path` is a regular file holding exactly `text` with `mode`.
pub fn same_text(path: &Path, text: &str, mode: u32) -> bool {
    match (std::fs::symlink_metadata(path), std::fs::read(path)) {
        (Ok(m), Ok(bytes)) => {
            m.is_file() && m.permissions().mode() & 0o7777 == mode && bytes == text.as_bytes()
        }
        _ => false,
    }
}

/// Makes `dir` and its missing parents, mode 0755.
pub fn mkdirs(dir: &Path) -> Result<(), FileError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)
        .map_err(io("create", dir))
}

use std::os::unix::fs::DirBuilderExt;

fn temp_beside(dst: &Path) -> PathBuf {
    let name = dst
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    dst.with_file_name(format!(".{name}.banger-new.{}", std::process::id()))
}

/// Writes `dst` atomically from a reader, with `mode`.
fn replace_with(
    dst: &Path,
    mode: u32,
    fill: impl FnOnce(&mut File) -> std::io::Result<()>,
) -> Result<(), FileError> {
    let parent = dst.parent().unwrap_or(Path::new("/"));
    mkdirs(parent)?;
    let tmp = temp_beside(dst);
    let _ = std::fs::remove_file(&tmp);
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .mode(mode)
            .open(&tmp)
            .map_err(io("create", &tmp))?;
        fill(&mut f).map_err(io("write", &tmp))?;
        f.set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(io("chmod", &tmp))?;
        f.sync_all().map_err(io("sync", &tmp))?;
        std::fs::rename(&tmp, dst).map_err(io("rename into place", dst))?;
        if let Ok(d) = File::open(parent) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Copies `src` over `dst` atomically with `mode`.
pub fn replace(src: &Path, dst: &Path, mode: u32) -> Result<(), FileError> {
    let mut from = File::open(src).map_err(io("open", src))?;
    replace_with(dst, mode, |f| std::io::copy(&mut from, f).map(|_| ()))
}

/// Writes `text` to `dst` atomically with `mode`.
pub fn write_text(dst: &Path, text: &str, mode: u32) -> Result<(), FileError> {
    replace_with(dst, mode, |f| f.write_all(text.as_bytes()))
}

/// Where an update keeps the previous version of `dst` until the new build answers.
pub fn prev_of(dst: &Path) -> PathBuf {
    let name = dst
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    dst.with_file_name(format!(".{name}.banger-prev"))
}

/// Keeps `dst` (if it exists) as its `prev_of` hard link. Returns whether there was one.
pub fn keep_prev(dst: &Path) -> Result<bool, FileError> {
    let prev = prev_of(dst);
    let _ = std::fs::remove_file(&prev);
    match std::fs::hard_link(dst, &prev) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io("keep the previous version of", dst)(e)),
    }
}

/// Puts the kept previous version back (or removes `dst` when there was none).
pub fn restore_prev(dst: &Path, had_prev: bool) -> Result<(), FileError> {
    if had_prev {
        std::fs::rename(prev_of(dst), dst).map_err(io("restore the previous version of", dst))
    } else {
        remove(dst)
    }
}

/// Removes a file; gone already is fine.
pub fn remove(path: &Path) -> Result<(), FileError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io("remove", path)(e)),
        _ => Ok(()),
    }
}

/// The sha256 of a file, hex.
pub fn sha256(path: &Path) -> Result<String, FileError> {
    let f = File::open(path).map_err(io("open", path))?;
    banger::digest::sha256_read(f, |_| {}).map_err(io("read", path))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Tmp(PathBuf);
    impl Drop for Tmp {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    fn tmp(tag: &str) -> Tmp {
        let d = std::env::temp_dir().join(format!("banger-files-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        Tmp(d)
    }

    #[test]
    fn replace_is_atomic_and_idempotent() {
        let t = tmp("replace");
        let src = t.0.join("src");
        std::fs::write(&src, b"new bytes").unwrap();
        let dst = t.0.join("sub/dir/dst");
        assert!(!same(&src, &dst, Some(0o755)));
        replace(&src, &dst, 0o755).unwrap();
        assert!(same(&src, &dst, Some(0o755)));
        assert!(!same(&src, &dst, Some(0o644)));
        // No temp file left beside it.
        let names: Vec<_> = std::fs::read_dir(dst.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["dst"]);
        write_text(&dst, "text\n", 0o644).unwrap();
        assert!(same_text(&dst, "text\n", 0o644));
        assert!(!same_text(&dst, "text\n", 0o600));
    }

    #[test]
    fn a_symlink_target_is_replaced_not_followed() {
        let t = tmp("symlink");
        let victim = t.0.join("victim");
        std::fs::write(&victim, b"keep").unwrap();
        let dst = t.0.join("dst");
        std::os::unix::fs::symlink(&victim, &dst).unwrap();
        let src = t.0.join("src");
        std::fs::write(&src, b"new").unwrap();
        assert!(!same(&src, &dst, None));
        replace(&src, &dst, 0o644).unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep");
        assert!(std::fs::symlink_metadata(&dst).unwrap().is_file());
    }

    #[test]
    fn prev_versions_roll_back() {
        let t = tmp("prev");
        let dst = t.0.join("bin");
        std::fs::write(&dst, b"old").unwrap();
        assert!(keep_prev(&dst).unwrap());
        write_text(&dst, "new", 0o755).unwrap();
        restore_prev(&dst, true).unwrap();
        assert_eq!(std::fs::read(&dst).unwrap(), b"old");
        assert!(!prev_of(&dst).exists());
        let fresh = t.0.join("fresh");
        assert!(!keep_prev(&fresh).unwrap());
        write_text(&fresh, "x", 0o755).unwrap();
        restore_prev(&fresh, false).unwrap();
        assert!(!fresh.exists());
        assert_eq!(
            sha256(&dst).unwrap(),
            "cba06b5736faf67e54b07b561eae94395e774c517a7d910a54369e1263ccfbd4"
        );
    }
}
