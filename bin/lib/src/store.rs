//! The state store: one file per VM (`vms/NAME/vm.json`), written atomically (temp file,
//! fsync, rename; see [`Durability`]), with a per-VM `flock` held while a step works on
//! that VM and a store-wide lock for allocations (names, addresses).
//!
//! The store is the truth: a record is read back only if it is a `vm` record of at most
//! [`MAX_RECORD_BYTES`] whose `name` is its directory's name and whose sections have the
//! shape banger writes; anything else is [`StoreError::Damaged`], listed as such and
//! removable with `banger rm --force NAME`. A writer killed mid-write leaves a temp file
//! that the next writer of the same file removes; lock files go with their VM.

use crate::atomic::temp_owner;
pub use crate::atomic::{
    sweep_temps, write_atomic, write_atomic_owned, write_with, Durability, Lock,
};
use crate::record::{self, Record, MAX_RECORD_BYTES};
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("no VM named {name:?} (banger-vm list shows the VMs; banger-vm new makes one)")]
    NotFound { name: String },
    #[error("a VM named {name:?} already exists (pick another name, or remove it with: banger-vm rm {name})")]
    Exists { name: String },
    #[error(
        "invalid VM name {name:?}: use 1-32 characters a-z, 0-9 and '-', starting with a letter"
    )]
    BadName { name: String },
    #[error("{name}'s record {path} is damaged: {why} (banger rm --force {name} releases what the root helper holds for it and removes it)")]
    Damaged {
        name: String,
        path: PathBuf,
        why: String,
    },
    #[error("{name}'s record would be {size} bytes, over the {max}-byte limit of a record")]
    TooLarge {
        name: String,
        size: usize,
        max: usize,
    },
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

/// The state store rooted at the state dir.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
    /// When root works on the owner's store: what root creates is given to the owner
    /// (uid, gid), so the owner's own steps can go on with it.
    owner: Option<(u32, u32)>,
}

/// One entry of [`Store::scan`]: a record, or a VM directory whose record cannot be read.
#[derive(Debug)]
pub enum Listed {
    Ok(Record),
    Damaged { name: String, error: StoreError },
}

/// Why a stored record's text is not a record, for [`StoreError::Damaged`].
fn parse_stored(bytes: &[u8]) -> Result<Record, String> {
    record::parse(bytes, 1).map_err(|e| match e {
        record::ReadError::Json { source, .. } => format!("not valid JSON ({source})"),
        record::ReadError::Duplicate { path, .. } => format!("the key {path:?} appears twice"),
        record::ReadError::NotObject { found, .. } => format!("not a JSON object but {found}"),
        other => other.to_string(),
    })
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

    /// `vms/NAME/vm.json`.
    pub fn record_path(&self, name: &str) -> PathBuf {
        self.vm_dir(name).join("vm.json")
    }

    fn lock_path(&self, name: &str) -> PathBuf {
        self.root.join("locks").join(format!("{name}.lock"))
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

    /// Locks one VM for the duration of a step's work on it. The lock file is removed at
    /// release when the VM's directory is gone by then (removed, or never made).
    pub fn lock_vm(&self, name: &str) -> Result<Lock, StoreError> {
        Self::check_name(name)?;
        let dir = self.root.join("locks");
        self.mkdir(&dir)?;
        Ok(Lock::exclusive_owned(&self.lock_path(name), self.owner)?
            .remove_unless(&self.vm_dir(name)))
    }

    /// Like [`Store::lock_vm`], but `None` at once while someone else (a step) holds it.
    pub fn try_lock_vm(&self, name: &str) -> Result<Option<Lock>, StoreError> {
        Self::check_name(name)?;
        let dir = self.root.join("locks");
        self.mkdir(&dir)?;
        Ok(
            Lock::try_exclusive_owned(&self.lock_path(name), self.owner)?
                .map(|l| l.remove_unless(&self.vm_dir(name))),
        )
    }

    /// Locks a VM that exists: `NotFound` (and no lock file made) when it has no directory.
    pub fn lock_existing(&self, name: &str) -> Result<Lock, StoreError> {
        Self::check_name(name)?;
        if std::fs::symlink_metadata(self.vm_dir(name)).is_err() {
            return Err(StoreError::NotFound { name: name.into() });
        }
        self.lock_vm(name)
    }

    /// True while some process holds the VM's lock (a step is working on it).
    pub fn busy(&self, name: &str) -> bool {
        valid_name(name) && Lock::try_held(&self.lock_path(name))
    }

    /// Locks the whole store, for allocations that must be race-free across VMs.
    pub fn lock_store(&self) -> Result<Lock, StoreError> {
        let dir = self.root.join("locks");
        self.mkdir(&dir)?;
        Lock::exclusive_owned(&dir.join(".store.lock"), self.owner)
    }

    /// The lock that keeps `banger-reconcile` runs apart (steps never take it). With `wait`
    /// false, `None` at once while another run holds it.
    pub fn lock_reconcile(&self, wait: bool) -> Result<Option<Lock>, StoreError> {
        let dir = self.root.join("locks");
        self.mkdir(&dir)?;
        let path = dir.join(".reconcile.lock");
        if wait {
            Lock::exclusive_owned(&path, self.owner).map(Some)
        } else {
            Lock::try_exclusive_owned(&path, self.owner)
        }
    }

    /// True when a record file exists for `name` (readable or not).
    pub fn exists(&self, name: &str) -> bool {
        valid_name(name) && self.record_path(name).exists()
    }

    fn damaged(&self, name: &str, why: impl Into<String>) -> StoreError {
        StoreError::Damaged {
            name: name.into(),
            path: self.record_path(name),
            why: why.into(),
        }
    }

    /// Loads a VM's record, checked: a `vm` record named after its directory, at most
    /// [`MAX_RECORD_BYTES`], its sections of the shape banger writes.
    pub fn load(&self, name: &str) -> Result<Record, StoreError> {
        Self::check_name(name)?;
        let path = self.record_path(name);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return match std::fs::symlink_metadata(self.vm_dir(name)) {
                    Err(_) => Err(StoreError::NotFound { name: name.into() }),
                    Ok(_) => Err(self.damaged(name, self.why_no_record(name))),
                };
            }
            Err(source) => return Err(StoreError::Read { path, source }),
        };
        let mut bytes = Vec::new();
        file.take(MAX_RECORD_BYTES as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(|source| StoreError::Read {
                path: path.clone(),
                source,
            })?;
        if bytes.len() > MAX_RECORD_BYTES {
            return Err(self.damaged(
                name,
                format!("larger than the {MAX_RECORD_BYTES}-byte limit of a record"),
            ));
        }
        let rec = parse_stored(&bytes).map_err(|why| self.damaged(name, why))?;
        record::check_envelope(&rec, "vm").map_err(|why| self.damaged(name, why))?;
        match record::name(&rec) {
            Some(n) if n == name => {}
            other => {
                return Err(self.damaged(
                    name,
                    format!(
                        "it names the VM {:?}, not {name:?} (a copied or renamed directory?)",
                        other.unwrap_or_default()
                    ),
                ))
            }
        }
        crate::section::validate(&rec)
            .map_err(|e| self.damaged(name, format!("{e}: {}", e.source)))?;
        Ok(rec)
    }

    /// The names in a VM directory.
    fn vm_dir_files(&self, name: &str) -> Vec<String> {
        std::fs::read_dir(self.vm_dir(name))
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter_map(|e| e.file_name().into_string().ok())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Whether NAME's directory holds nothing but an unfinished first write of `vm.json`
    /// (a `banger-vm new` killed before its rename): no record was ever made, nothing else
    /// is in it, and removing the directory loses nothing.
    pub fn only_unfinished_new(&self, name: &str) -> bool {
        if Self::check_name(name).is_err() {
            return false;
        }
        let files = self.vm_dir_files(name);
        !files.is_empty() && files.iter().all(|f| temp_owner(f, "vm.json").is_some())
    }

    /// What a VM directory without `vm.json` holds, for the damaged message.
    fn why_no_record(&self, name: &str) -> String {
        let files = self.vm_dir_files(name);
        if files.iter().all(|f| temp_owner(f, "vm.json").is_some()) {
            "there is no vm.json, only an unfinished write (a banger-vm new that was killed)".into()
        } else {
            format!(
                "there is no vm.json (the directory holds {})",
                files.join(", ")
            )
        }
    }

    /// Saves a record atomically. The caller holds the VM's lock.
    pub fn save(&self, rec: &Record) -> Result<(), StoreError> {
        let name = record::name(rec).unwrap_or_default().to_string();
        Self::check_name(&name)?;
        let path = self.record_path(&name);
        let mut bytes = serde_json::to_vec_pretty(rec).map_err(|e| StoreError::Write {
            path: path.clone(),
            source: std::io::Error::other(e),
        })?;
        bytes.push(b'\n');
        if bytes.len() > MAX_RECORD_BYTES {
            return Err(StoreError::TooLarge {
                name,
                size: bytes.len(),
                max: MAX_RECORD_BYTES,
            });
        }
        self.mkdir(&self.vm_dir(&name))?;
        // Consistent, not durable: after a power loss (every VM stopped with it) a record may
        // be a step behind, never torn; the steps repair or redo what it lacks (a disk made
        // is adopted from the ledger, an address is allocated again).
        write_with(&path, &bytes, 0o644, self.owner, Durability::Consistent)
            .map_err(|source| StoreError::Write { path, source })
    }

    /// Saves a new record; fails if the name is taken. Takes the store lock and the VM's lock.
    pub fn create(&self, rec: &Record) -> Result<(), StoreError> {
        let name = record::name(rec).unwrap_or_default().to_string();
        Self::check_name(&name)?;
        let _g = self.lock_store()?;
        let _v = self.lock_vm(&name)?;
        if self.record_path(&name).exists() {
            return Err(StoreError::Exists { name });
        }
        self.save(rec)
    }

    /// Removes a VM's directory, its record last (a remover killed half-way leaves a record
    /// to run `rm` on again). The caller holds the VM's lock and has made sure no resource
    /// still depends on the directory's content.
    pub fn remove(&self, name: &str) -> Result<(), StoreError> {
        Self::check_name(name)?;
        let dir = self.vm_dir(name);
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StoreError::NotFound { name: name.into() })
            }
            Err(source) => return Err(StoreError::Remove { path: dir, source }),
        };
        for e in entries.filter_map(Result::ok) {
            if e.file_name() == "vm.json" {
                continue;
            }
            let p = e.path();
            let res = match e.file_type() {
                Ok(t) if t.is_dir() => std::fs::remove_dir_all(&p),
                _ => std::fs::remove_file(&p),
            };
            match res {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(StoreError::Remove { path: p, source }),
            }
        }
        let rec = dir.join("vm.json");
        match std::fs::remove_file(&rec) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(StoreError::Remove { path: rec, source }),
        }
        std::fs::remove_dir(&dir).map_err(|source| StoreError::Remove { path: dir, source })
    }

    /// Names of every VM directory (readable record or not), sorted.
    pub fn names(&self) -> Result<Vec<String>, StoreError> {
        let dir = self.root.join("vms");
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(StoreError::Read { path: dir, source }),
        };
        let mut names: Vec<String> = entries
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| valid_name(n))
            .collect();
        names.sort();
        Ok(names)
    }

    /// Every VM, sorted by name: its record, or why it cannot be read. A VM that vanished
    /// mid-listing, or whose directory a step is making or removing right now, is skipped.
    pub fn scan(&self) -> Result<Vec<Listed>, StoreError> {
        let mut out = Vec::new();
        for n in self.names()? {
            match self.load(&n) {
                Ok(r) => out.push(Listed::Ok(r)),
                Err(StoreError::NotFound { .. }) => {}
                // Half-made or half-removed under its lock: not damaged, just not done.
                Err(StoreError::Damaged { .. }) if self.busy(&n) => {}
                Err(error) => out.push(Listed::Damaged { name: n, error }),
            }
        }
        Ok(out)
    }

    /// The readable records, sorted by name (damaged ones are left out: see [`Store::scan`]).
    pub fn list(&self) -> Result<Vec<Record>, StoreError> {
        Ok(self
            .scan()?
            .into_iter()
            .filter_map(|l| match l {
                Listed::Ok(r) => Some(r),
                Listed::Damaged { .. } => None,
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::atomic::dead_pid;
    use std::sync::atomic::{AtomicU64, Ordering};

    fn tmp_store(tag: &str) -> Store {
        static N: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "banger-store-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
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
        assert!(!s.vm_dir("a").exists());
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
        let e = s.load("a").unwrap_err();
        assert!(matches!(e, StoreError::Damaged { .. }), "{e}");
        let e = e.to_string();
        assert!(e.contains("vm.json"), "{e}");
        assert!(e.contains("banger rm --force a"), "{e}");
        let _ = std::fs::remove_dir_all(s.root());
    }

    fn put_raw(s: &Store, dir: &str, text: &str) {
        std::fs::create_dir_all(s.vm_dir(dir)).unwrap();
        std::fs::write(s.vm_dir(dir).join("vm.json"), text).unwrap();
    }

    /// Item 1 of issue 10: a copied directory must not pass for the VM it names.
    #[test]
    fn a_record_naming_another_vm_is_damaged() {
        let s = tmp_store("mismatch");
        put_raw(&s, "copyofalpha", r#"{"v":1,"type":"vm","name":"alpha"}"#);
        let e = s.load("copyofalpha").unwrap_err().to_string();
        assert!(
            e.contains(r#"it names the VM "alpha", not "copyofalpha""#),
            "{e}"
        );
        let _ = std::fs::remove_dir_all(s.root());
    }

    #[test]
    fn envelopes_sections_sizes_and_duplicates_are_checked_on_load() {
        let s = tmp_store("shape");
        for (text, want) in [
            (
                r#"{"v":2,"type":"vm","name":"a"}"#,
                "unsupported record version",
            ),
            (r#"{"v":1,"type":"image","name":"a"}"#, "\"image\""),
            (r#"{"v":1,"type":"vm","name":7}"#, "\"name\" is a number"),
            (
                r#"{"v":1,"type":"vm","name":"a","name":"a"}"#,
                "appears twice",
            ),
            (r#"{"v":1,"type":"vm","name":"a","net":"x"}"#, "net section"),
            (r#"[1]"#, "not a JSON object"),
        ] {
            put_raw(&s, "a", text);
            let e = s.load("a").unwrap_err().to_string();
            assert!(e.contains(want), "{text}: {e}");
        }
        let big = format!(
            r#"{{"v":1,"type":"vm","name":"a","x":"{}"}}"#,
            "y".repeat(MAX_RECORD_BYTES)
        );
        put_raw(&s, "a", &big);
        assert!(s.load("a").unwrap_err().to_string().contains("limit"));
        let mut r = record::new("vm", "b");
        r.insert("x".into(), "y".repeat(MAX_RECORD_BYTES).into());
        assert!(matches!(s.save(&r), Err(StoreError::TooLarge { .. })));
        assert!(
            !s.vm_dir("b").exists(),
            "an oversized record creates nothing"
        );
        let _ = std::fs::remove_dir_all(s.root());
    }

    /// Item 14: a VM directory that holds only a killed writer's temp file is listed as
    /// damaged (not invisible), and creating the VM again cleans it up.
    #[test]
    fn a_dir_with_only_a_temp_file_is_listed_and_recreatable() {
        let s = tmp_store("onlytmp");
        std::fs::create_dir_all(s.vm_dir("a")).unwrap();
        let tmp = s.vm_dir("a").join(format!(".vm.json.tmp.{}.0", dead_pid()));
        std::fs::write(&tmp, b"{").unwrap();
        let l = s.scan().unwrap();
        assert_eq!(l.len(), 1);
        match &l[0] {
            Listed::Damaged { name, error } => {
                assert_eq!(name, "a");
                assert!(error.to_string().contains("unfinished write"), "{error}");
            }
            other => panic!("{other:?}"),
        }
        s.create(&record::new("vm", "a")).unwrap();
        assert!(!tmp.exists());
        assert!(s.load("a").is_ok());
        let _ = std::fs::remove_dir_all(s.root());
    }

    /// Item 11: one damaged record does not hide the others.
    #[test]
    fn scan_lists_good_and_damaged_records() {
        let s = tmp_store("scan");
        s.create(&record::new("vm", "a")).unwrap();
        put_raw(&s, "b", "{garbage");
        s.create(&record::new("vm", "c")).unwrap();
        let l = s.scan().unwrap();
        let kinds: Vec<String> = l
            .iter()
            .map(|x| match x {
                Listed::Ok(r) => format!("ok {}", record::name(r).unwrap()),
                Listed::Damaged { name, .. } => format!("damaged {name}"),
            })
            .collect();
        assert_eq!(kinds, ["ok a", "damaged b", "ok c"]);
        assert_eq!(s.list().unwrap().len(), 2);
        let _ = std::fs::remove_dir_all(s.root());
    }

    /// Item 14: a VM's lock file goes with the VM, and a lock on a name that has no VM
    /// leaves no file behind.
    #[test]
    fn lock_files_go_with_their_vm() {
        let s = tmp_store("locks");
        s.create(&record::new("vm", "a")).unwrap();
        {
            let _g = s.lock_vm("a").unwrap();
            s.remove("a").unwrap();
        }
        assert!(!s.root().join("locks/a.lock").exists());
        drop(s.lock_vm("ghost").unwrap());
        assert!(!s.root().join("locks/ghost.lock").exists());
        assert!(matches!(
            s.lock_existing("ghost"),
            Err(StoreError::NotFound { .. })
        ));
        assert!(!s.root().join("locks/ghost.lock").exists());
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
