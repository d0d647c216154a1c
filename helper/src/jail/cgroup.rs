//! cgroup v2: whether the host has a usable one, and where a VM's cgroup lives.

use std::path::{Path, PathBuf};

/// `CGROUP2_SUPER_MAGIC` from linux/magic.h (`stat -fc %T` says `cgroup2fs`).
pub const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;
/// Where the unified hierarchy is mounted.
pub const ROOT: &str = "/sys/fs/cgroup";

/// The cgroup v2 root, when it is cgroup2fs, writable by us, and offers the cpu and memory
/// controllers the jailer is asked to set. `None` means: launch without `--cgroup-version 2`.
pub fn usable_v2() -> Option<PathBuf> {
    usable_at(Path::new(ROOT))
}

fn usable_at(root: &Path) -> Option<PathBuf> {
    let fs = rustix::fs::statfs(root).ok()?;
    if fs.f_type as i64 != CGROUP2_SUPER_MAGIC {
        return None;
    }
    rustix::fs::access(
        root.join("cgroup.subtree_control"),
        rustix::fs::Access::WRITE_OK,
    )
    .ok()?;
    let ctl = std::fs::read_to_string(root.join("cgroup.controllers")).ok()?;
    let has = |c: &str| ctl.split_whitespace().any(|x| x == c);
    (has("cpu") && has("memory")).then(|| root.to_path_buf())
}

/// The VM's cgroup the jailer makes: `<root>/<parent>/<id>`.
pub fn vm_cgroup(root: &Path, parent: &str, id: &str) -> PathBuf {
    root.join(parent).join(id)
}

/// Removes a VM's cgroup (it must hold no process any more). Gone already is fine.
pub fn remove(path: &Path) -> std::io::Result<()> {
    if !path.starts_with(ROOT) {
        return Err(std::io::Error::other(format!(
            "refusing to remove {}: not under {ROOT}",
            path.display()
        )));
    }
    match std::fs::remove_dir(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_cgroup2_is_unusable() {
        assert_eq!(usable_at(&std::env::temp_dir()), None);
        assert_eq!(
            vm_cgroup(Path::new(ROOT), "banger", "vm1"),
            PathBuf::from("/sys/fs/cgroup/banger/vm1")
        );
        assert!(remove(Path::new("/tmp/x")).is_err());
    }
}
