//! The state store: one file per VM (`vms/NAME/vm.json`), written atomically (temp file,
//! fsync, rename, fsync of the directory), with a per-VM `flock` held while a step works on
//! that VM and a store-wide lock for allocations (names, addresses).

use crate::record::{self, Record};
use rustix::fs::{flock, FlockOperation};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("no VM named {name:?} (banger-vm list shows the VMs)")]
    NotFound { name: String },
    #[error("a VM named {name:?} already exists (pick another name, or remove it with: banger-vm rm {name})")]
    Exists { name: String },
    #[error(
        "invalid VM name {name:?}: use 1-32 characters a-z, 0-9 and '-', starting with a letter"
    )]
    BadName { name: String },
    #[error("cannot create directory {path}")]
    Mkdir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot lock {path}")]
    Lock {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a valid record")]
    Corrupt {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot remove {path}")]
    Remove {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// True when `name` matches `^[a-z][a-z0-9-]{0,31}$`, the rule for every VM and image name.
pub fn valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 32
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

/// An exclusive `flock` on a lock file, released on drop.
#[derive(Debug)]
pub struct Lock {
    _file: File,
}

impl Lock {
    /// Takes an exclusive lock on `path`, creating the file; blocks until it is free. The
    /// file is opened read-only (flock needs no more), so a lock file another user made
    /// still locks; a symlink is never followed.
    pub fn exclusive(path: &Path) -> Result<Lock, StoreError> {
        Self::exclusive_owned(path, None)
    }

    /// [`Lock::exclusive`], giving a lock file it creates to `owner` (uid, gid).
    pub fn exclusive_owned(path: &Path, owner: Option<(u32, u32)>) -> Result<Lock, StoreError> {
        use rustix::fs::{Mode, OFlags};
        let err = |e: rustix::io::Errno| StoreError::Lock {
            path: path.to_path_buf(),
            source: e.into(),
        };
        let fd = rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o644),
        )
        .map_err(err)?;
        if let Some((u, g)) = owner {
            let _ = rustix::fs::fchown(
                &fd,
                Some(rustix::fs::Uid::from_raw(u)),
                Some(rustix::fs::Gid::from_raw(g)),
            );
        }
        let file = File::from(fd);
        flock(&file, FlockOperation::LockExclusive).map_err(err)?;
        Ok(Lock { _file: file })
    }
}

/// The state store rooted at the state dir.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
    /// When root works on the owner's store: what root creates is given to the owner
    /// (uid, gid), so the owner's own steps can go on with it.
    owner: Option<(u32, u32)>,
}

static TMP_SEQ: AtomicU64 = AtomicU64::new(0);

/// Writes `bytes` to `path` atomically: a temp file in the same directory, fsync, rename,
/// fsync of the directory. Readers see the old or the new content, never a mix.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    write_atomic_owned(path, bytes, mode, None)
}

/// [`write_atomic`], the new file given to `owner` (uid, gid) before it takes the name.
pub fn write_atomic_owned(
    path: &Path,
    bytes: &[u8],
    mode: u32,
    owner: Option<(u32, u32)>,
) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(
        ".{file_name}.tmp.{}.{}",
        std::process::id(),
        TMP_SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let res = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .mode(mode)
            .open(&tmp)?;
        if let Some((u, g)) = owner {
            std::os::unix::fs::fchown(&f, Some(u), Some(g))?;
        }
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res
}

impl Store {
    pub fn new(state_dir: impl Into<PathBuf>) -> Store {
        Store {
            root: state_dir.into(),
            owner: None,
        }
    }

    /// The store of the configuration's state dir; when root opens the store of a host with
    /// an owner, what it creates there is the owner's.
    pub fn from_config(cfg: &crate::config::Config) -> Store {
        let owner = if rustix::process::geteuid().is_root() {
            cfg.owner_uid
                .filter(|u| *u != 0)
                .map(|u| (u, cfg.owner_gid.unwrap_or(u)))
        } else {
            None
        };
        Store {
            root: cfg.state_dir.clone(),
            owner,
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `vms/NAME`: the VM's directory (its record, disk, console log).
    pub fn vm_dir(&self, name: &str) -> PathBuf {
        self.root.join("vms").join(name)
    }

    fn record_path(&self, name: &str) -> PathBuf {
        self.vm_dir(name).join("vm.json")
    }

    /// Makes `path` and its missing parents; those it makes below the store's root are given
    /// to the store's owner (see [`Store::from_config`]).
    fn mkdir(&self, path: &Path) -> Result<(), StoreError> {
        let err = |source| StoreError::Mkdir {
            path: path.to_path_buf(),
            source,
        };
        if path.is_dir() {
            return Ok(());
        }
        let Some((u, g)) = self.owner else {
            return std::fs::create_dir_all(path).map_err(err);
        };
        let mut missing = Vec::new();
        let mut p = path;
        while !p.exists() {
            missing.push(p.to_path_buf());
            match p.parent() {
                Some(parent) => p = parent,
                None => break,
            }
        }
        for d in missing.into_iter().rev() {
            match std::fs::create_dir(&d) {
                Ok(()) => {
                    if d.starts_with(&self.root) {
                        let fd = rustix::fs::open(
                            &d,
                            rustix::fs::OFlags::DIRECTORY
                                | rustix::fs::OFlags::NOFOLLOW
                                | rustix::fs::OFlags::CLOEXEC,
                            rustix::fs::Mode::empty(),
                        )
                        .map_err(|e| err(e.into()))?;
                        rustix::fs::fchown(
                            &fd,
                            Some(rustix::fs::Uid::from_raw(u)),
                            Some(rustix::fs::Gid::from_raw(g)),
                        )
                        .map_err(|e| err(e.into()))?;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(err(e)),
            }
        }
        Ok(())
    }

    fn check_name(name: &str) -> Result<(), StoreError> {
        if valid_name(name) {
            Ok(())
        } else {
            Err(StoreError::BadName { name: name.into() })
        }
    }

    /// Locks one VM for the duration of a step's work on it.
    pub fn lock_vm(&self, name: &str) -> Result<Lock, StoreError> {
        Self::check_name(name)?;
        let dir = self.root.join("locks");
        self.mkdir(&dir)?;
        Lock::exclusive_owned(&dir.join(format!("{name}.lock")), self.owner)
    }

    /// Locks the whole store, for allocations that must be race-free across VMs.
    pub fn lock_store(&self) -> Result<Lock, StoreError> {
        let dir = self.root.join("locks");
        self.mkdir(&dir)?;
        Lock::exclusive_owned(&dir.join(".store.lock"), self.owner)
    }

    /// True when a record exists for `name`.
    pub fn exists(&self, name: &str) -> bool {
        valid_name(name) && self.record_path(name).exists()
    }

    /// Loads a VM's record.
    pub fn load(&self, name: &str) -> Result<Record, StoreError> {
        Self::check_name(name)?;
        let path = self.record_path(name);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StoreError::NotFound { name: name.into() })
            }
            Err(source) => return Err(StoreError::Read { path, source }),
        };
        serde_json::from_slice(&bytes).map_err(|source| StoreError::Corrupt { path, source })
    }

    /// Saves a record atomically. The caller holds the VM's lock.
    pub fn save(&self, rec: &Record) -> Result<(), StoreError> {
        let name = record::name(rec).unwrap_or_default().to_string();
        Self::check_name(&name)?;
        let dir = self.vm_dir(&name);
        self.mkdir(&dir)?;
        let path = dir.join("vm.json");
        let mut bytes = serde_json::to_vec_pretty(rec).map_err(|e| StoreError::Write {
            path: path.clone(),
            source: std::io::Error::other(e),
        })?;
        bytes.push(b'\n');
        write_atomic_owned(&path, &bytes, 0o644, self.owner)
            .map_err(|source| StoreError::Write { path, source })
    }

    /// Saves a new record; fails if the name is taken. Takes the store lock itself.
    pub fn create(&self, rec: &Record) -> Result<(), StoreError> {
        let name = record::name(rec).unwrap_or_default().to_string();
        Self::check_name(&name)?;
        let _g = self.lock_store()?;
        if self.record_path(&name).exists() {
            return Err(StoreError::Exists { name });
        }
        self.save(rec)
    }

    /// Removes a VM's record and directory. The caller holds the VM's lock and has made sure
    /// no resource still depends on the directory's content.
    pub fn remove(&self, name: &str) -> Result<(), StoreError> {
        Self::check_name(name)?;
        let dir = self.vm_dir(name);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(StoreError::NotFound { name: name.into() })
            }
            Err(source) => Err(StoreError::Remove { path: dir, source }),
        }
    }

    /// Names of all VMs, sorted.
    pub fn names(&self) -> Result<Vec<String>, StoreError> {
        let dir = self.root.join("vms");
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(StoreError::Read { path: dir, source }),
        };
        let mut names: Vec<String> = entries
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| valid_name(n) && self.record_path(n).exists())
            .collect();
        names.sort();
        Ok(names)
    }

    /// All records, sorted by name. A record that vanished mid-listing is skipped.
    pub fn list(&self) -> Result<Vec<Record>, StoreError> {
        let mut out = Vec::new();
        for n in self.names()? {
            match self.load(&n) {
                Ok(r) => out.push(r),
                Err(StoreError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp_store(tag: &str) -> Store {
        let dir = std::env::temp_dir().join(format!(
            "banger-store-{tag}-{}-{}",
            std::process::id(),
            TMP_SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        Store::new(dir)
    }

    #[test]
    fn names() {
        assert!(valid_name("a"));
        assert!(valid_name("dev-1"));
        assert!(valid_name(&"a".repeat(32)));
        assert!(!valid_name(&"a".repeat(33)));
        assert!(!valid_name(""));
        assert!(!valid_name("1a"));
        assert!(!valid_name("-a"));
        assert!(!valid_name("A"));
        assert!(!valid_name("a_b"));
        assert!(!valid_name("../a"));
        assert!(!valid_name("a/b"));
    }

    #[test]
    fn create_load_save_remove() {
        let s = tmp_store("crud");
        let mut r = record::new("vm", "a");
        s.create(&r).unwrap();
        assert!(matches!(s.create(&r), Err(StoreError::Exists { .. })));
        r.insert("spec".into(), serde_json::json!({"vcpus": 2}));
        s.save(&r).unwrap();
        assert_eq!(s.load("a").unwrap(), r);
        assert_eq!(s.names().unwrap(), vec!["a".to_string()]);
        s.remove("a").unwrap();
        assert!(matches!(s.load("a"), Err(StoreError::NotFound { .. })));
        assert!(matches!(s.remove("a"), Err(StoreError::NotFound { .. })));
        let _ = std::fs::remove_dir_all(s.root());
    }

    #[test]
    fn bad_names_never_touch_the_filesystem() {
        let s = tmp_store("bad");
        assert!(matches!(s.load("../etc"), Err(StoreError::BadName { .. })));
        assert!(matches!(s.lock_vm("a/b"), Err(StoreError::BadName { .. })));
        let r = record::new("vm", "../../x");
        assert!(matches!(s.save(&r), Err(StoreError::BadName { .. })));
        assert!(!s.root().exists());
    }

    #[test]
    fn corrupt_record_is_reported_with_path() {
        let s = tmp_store("corrupt");
        std::fs::create_dir_all(s.vm_dir("a")).unwrap();
        std::fs::write(s.vm_dir("a").join("vm.json"), b"{nope").unwrap();
        let e = s.load("a").unwrap_err().to_string();
        assert!(e.contains("vm.json"), "{e}");
        let _ = std::fs::remove_dir_all(s.root());
    }

    #[test]
    fn atomic_write_leaves_no_temp_files() {
        let s = tmp_store("atomic");
        std::fs::create_dir_all(s.root()).unwrap();
        let p = s.root().join("f");
        for i in 0..20 {
            write_atomic(&p, format!("{i}").as_bytes(), 0o600).unwrap();
        }
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "19");
        let n = std::fs::read_dir(s.root()).unwrap().count();
        assert_eq!(n, 1);
        let _ = std::fs::remove_dir_all(s.root());
    }

    /// Several threads doing read-modify-write on one record under the VM lock lose nothing.
    /// (flock locks belong to open file descriptions, so threads contend like processes; the
    /// cross-process version of this test is in tests/bats/store.bats.)
    #[test]
    fn concurrent_increments_lose_nothing() {
        let s = tmp_store("conc");
        let mut r = record::new("vm", "c");
        r.insert("n".into(), 0.into());
        s.create(&r).unwrap();
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let s = s.clone();
                std::thread::spawn(move || {
                    for _ in 0..25 {
                        let _g = s.lock_vm("c").unwrap();
                        let mut r = s.load("c").unwrap();
                        let n = r["n"].as_u64().unwrap();
                        r.insert("n".into(), (n + 1).into());
                        s.save(&r).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(s.load("c").unwrap()["n"], 200);
        let _ = std::fs::remove_dir_all(s.root());
    }
}
