//! The ledger: every privileged resource the helper created, per VM.
//!
//! Root-owned (directory 0700, file 0600), written atomically under a lock, so it
//! survives restarts and crashes and two helpers (or a helper and an in-process fallback)
//! never lose each other's entries. Teardown and cleanup only ever touch resources that
//! have an entry here.
//!
//! Every write is synced before it takes the ledger's name, so a crash never leaves a torn
//! ledger. A write that adds an entry for something that outlives a reboot (a VM's disk, a
//! jail directory: [`DURABLE_KINDS`]) is also made durable before it returns, since that
//! thing is made next and must never exist unrecorded; other entries (taps, addresses,
//! mounts, loop devices...) name what a power loss takes away anyway, so their newest
//! version may be lost with it.

use banger::store::{write_with, Durability, Lock, StoreError};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("cannot create the ledger directory {path}")]
    Mkdir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot lock the ledger")]
    Lock(#[source] StoreError),
    #[error("cannot read the ledger {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the ledger {path} is corrupt (fix or move it aside; nothing was changed)")]
    Corrupt {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot write the ledger {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// One privileged resource.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Entry {
    /// The VM it belongs to (or `-` for shared resources such as the bridge).
    pub vm: String,
    /// `tap`, `bridge`, `nft-table`, `nft-rule`, `loop`, `dm`, `disk`, `jail`, `mount`, `cgroup`...
    pub kind: String,
    /// The resource's own name: interface name, device path, file path, rule handle.
    pub id: String,
    /// Shared, so that copying the ledger for an update copies no data (compared by pointer
    /// first, too).
    #[serde(default, skip_serializing_if = "no_data")]
    pub data: Arc<Value>,
    #[serde(default)]
    pub created_at: String,
    /// The uid of the caller that made it (root's entries are out of the owner's reach).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<u32>,
}

impl Entry {
    pub fn new(vm: &str, kind: &str, id: &str, data: Value) -> Entry {
        Entry {
            vm: vm.into(),
            kind: kind.into(),
            id: id.into(),
            data: Arc::new(data),
            created_at: banger::record::now_rfc3339(),
            by: None,
        }
    }
    fn same(&self, vm: &str, kind: &str, id: &str) -> bool {
        self.vm == vm && self.kind == kind && self.id == id
    }
}

fn no_data(v: &Arc<Value>) -> bool {
    v.is_null()
}

/// Kinds whose resource survives a reboot: adding one is written durably.
pub const DURABLE_KINDS: &[&str] = &["disk", "jail"];

/// How a change from `before` to `after` is written: durably when it adds an entry of a
/// [`DURABLE_KINDS`] kind, else consistently.
fn durability(before: &[Entry], after: &[Entry]) -> Durability {
    let durable = |e: &&Entry| DURABLE_KINDS.contains(&e.kind.as_str());
    let had: std::collections::HashSet<(&str, &str, &str)> = before
        .iter()
        .filter(durable)
        .map(|e| (e.vm.as_str(), e.kind.as_str(), e.id.as_str()))
        .collect();
    let added_durable = after
        .iter()
        .filter(durable)
        .any(|e| !had.contains(&(e.vm.as_str(), e.kind.as_str(), e.id.as_str())));
    if added_durable {
        Durability::Durable
    } else {
        Durability::Consistent
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct File {
    v: u32,
    entries: Vec<Entry>,
}

/// What identifies one version of the ledger file: every write makes a new file (a rename
/// over the old), so device, inode, size and modification time name its content.
type FileKey = (u64, u64, i64, i64, i64);

/// The entries of the version of the file last read or written by this process, so that the
/// many reads of one operation parse the file once, not once each (the ledger of 50 VMs is a
/// few hundred entries).
#[derive(Debug, Default)]
struct Cache {
    key: Option<FileKey>,
    /// Shared, not copied, with the reads that only look (a copy of 300 entries costs about
    /// a third of a millisecond).
    entries: Arc<Vec<Entry>>,
}

fn key_of(st: &rustix::fs::Stat) -> FileKey {
    (
        st.st_dev,
        st.st_ino,
        st.st_size,
        st.st_mtime,
        st.st_mtime_nsec as i64,
    )
}

/// The ledger at a path.
#[derive(Debug, Clone)]
pub struct Ledger {
    path: PathBuf,
    /// Stamped into the entries this handle adds.
    by: Option<u32>,
    cache: Arc<std::sync::Mutex<Cache>>,
}

impl Ledger {
    pub fn new(path: impl Into<PathBuf>) -> Ledger {
        Ledger {
            path: path.into(),
            by: None,
            cache: Default::default(),
        }
    }

    /// A handle that stamps `uid` as the maker of every entry it adds.
    pub fn with_caller(&self, uid: u32) -> Ledger {
        Ledger {
            path: self.path.clone(),
            by: Some(uid),
            cache: self.cache.clone(),
        }
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn ensure_dir(&self) -> Result<(), LedgerError> {
        let dir = self.path.parent().unwrap_or(Path::new("/"));
        if !dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|source| LedgerError::Mkdir {
                    path: dir.to_path_buf(),
                    source,
                })?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(
                |source| LedgerError::Mkdir {
                    path: dir.to_path_buf(),
                    source,
                },
            )?;
        }
        Ok(())
    }

    fn lock(&self) -> Result<Lock, LedgerError> {
        self.ensure_dir()?;
        Lock::exclusive(&self.path.with_extension("lock")).map_err(LedgerError::Lock)
    }

    /// Reads the file (under the lock), or takes the entries from the cache when the file is
    /// the version they came from.
    fn read(&self) -> Result<Arc<Vec<Entry>>, LedgerError> {
        use std::io::Read;
        let read_err = |source| LedgerError::Read {
            path: self.path.clone(),
            source,
        };
        let mut f = match std::fs::File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Default::default()),
            Err(source) => return Err(read_err(source)),
        };
        let key = key_of(&rustix::fs::fstat(&f).map_err(|e| read_err(e.into()))?);
        {
            let c = self.cache();
            if c.key == Some(key) {
                return Ok(c.entries.clone());
            }
        }
        let mut b = Vec::new();
        f.read_to_end(&mut b).map_err(read_err)?;
        let file: File = serde_json::from_slice(&b).map_err(|source| LedgerError::Corrupt {
            path: self.path.clone(),
            source,
        })?;
        let entries = Arc::new(file.entries);
        let mut c = self.cache();
        c.key = Some(key);
        c.entries = entries.clone();
        Ok(entries)
    }

    /// Remembers what was just written (under the lock).
    fn remember(&self, entries: Vec<Entry>) {
        let mut c = self.cache();
        match rustix::fs::stat(&self.path) {
            Ok(st) => {
                c.key = Some(key_of(&st));
                c.entries = Arc::new(entries);
            }
            Err(_) => c.key = None,
        }
    }

    fn write(&self, f: File, durability: Durability) -> Result<(), LedgerError> {
        let mut bytes = serde_json::to_vec(&f).map_err(|e| LedgerError::Write {
            path: self.path.clone(),
            source: std::io::Error::other(e),
        })?;
        bytes.push(b'\n');
        let res = write_with(&self.path, &bytes, 0o600, None, durability).map_err(|source| {
            LedgerError::Write {
                path: self.path.clone(),
                source,
            }
        });
        match &res {
            Ok(()) => self.remember(f.entries),
            Err(_) => self.cache().key = None,
        }
        res
    }

    /// Read-modify-write under the ledger lock. `f` returns a value passed back to the caller.
    pub fn update<T>(&self, f: impl FnOnce(&mut Vec<Entry>) -> T) -> Result<T, LedgerError> {
        banger::timing::span("ledger-write", || self.update_now(f))
    }

    fn update_now<T>(&self, f: impl FnOnce(&mut Vec<Entry>) -> T) -> Result<T, LedgerError> {
        let _g = self.lock()?;
        let before = self.read()?;
        let mut entries = (*before).clone();
        let out = f(&mut entries);
        if entries != *before {
            let durability = durability(&before, &entries);
            self.write(File { v: 1, entries }, durability)?;
        }
        Ok(out)
    }

    /// The entries as they are now, shared (nothing copied), read under the lock: for the
    /// callers that only look.
    pub fn snapshot(&self) -> Result<Arc<Vec<Entry>>, LedgerError> {
        banger::timing::span("ledger-read", || {
            let _g = self.lock()?;
            self.read()
        })
    }

    /// Every entry.
    pub fn list(&self) -> Result<Vec<Entry>, LedgerError> {
        Ok((*self.snapshot()?).clone())
    }

    /// Entries of one VM.
    pub fn for_vm(&self, vm: &str) -> Result<Vec<Entry>, LedgerError> {
        Ok(self
            .snapshot()?
            .iter()
            .filter(|e| e.vm == vm)
            .cloned()
            .collect())
    }

    /// Adds an entry; an entry with the same vm/kind/id is replaced (idempotent steps).
    pub fn add(&self, mut e: Entry) -> Result<(), LedgerError> {
        if e.by.is_none() {
            e.by = self.by;
        }
        self.update(|v| {
            v.retain(|x| !x.same(&e.vm, &e.kind, &e.id));
            v.push(e);
        })
    }

    /// Adds entries in one write; an entry with the same vm/kind/id is replaced.
    pub fn add_all(&self, entries: Vec<Entry>) -> Result<(), LedgerError> {
        let by = self.by;
        self.update(|v| {
            for mut e in entries {
                if e.by.is_none() {
                    e.by = by;
                }
                v.retain(|x| !x.same(&e.vm, &e.kind, &e.id));
                v.push(e);
            }
        })
    }

    /// Removes entries (vm, kind, id) in one write; returns how many were there.
    pub fn remove_all(&self, keys: &[(&str, &str, &str)]) -> Result<usize, LedgerError> {
        self.update(|v| {
            let n = v.len();
            v.retain(|x| !keys.iter().any(|(vm, kind, id)| x.same(vm, kind, id)));
            n - v.len()
        })
    }

    /// Removes entries (vm, kind, id) and adds others, in one write; returns how many were
    /// removed.
    pub fn swap(
        &self,
        remove: &[(&str, &str, &str)],
        add: Vec<Entry>,
    ) -> Result<usize, LedgerError> {
        let by = self.by;
        self.update(|v| {
            let n = v.len();
            v.retain(|x| !remove.iter().any(|(vm, kind, id)| x.same(vm, kind, id)));
            let removed = n - v.len();
            for mut e in add {
                if e.by.is_none() {
                    e.by = by;
                }
                v.retain(|x| !x.same(&e.vm, &e.kind, &e.id));
                v.push(e);
            }
            removed
        })
    }

    /// Removes an entry; returns whether it was there.
    pub fn remove(&self, vm: &str, kind: &str, id: &str) -> Result<bool, LedgerError> {
        self.update(|v| {
            let n = v.len();
            v.retain(|x| !x.same(vm, kind, id));
            v.len() != n
        })
    }

    /// The entry for vm/kind/id, if the ledger has it.
    pub fn get(&self, vm: &str, kind: &str, id: &str) -> Result<Option<Entry>, LedgerError> {
        Ok(self
            .snapshot()?
            .iter()
            .find(|x| x.same(vm, kind, id))
            .cloned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp() -> Ledger {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let d = std::env::temp_dir().join(format!(
            "banger-ledger-{}-{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&d);
        Ledger::new(d.join("root").join("ledger.json"))
    }

    #[test]
    fn add_list_remove_and_modes() {
        let l = tmp();
        assert!(l.list().unwrap().is_empty());
        l.add(Entry::new("a", "tap", "bgr-a", Value::Null)).unwrap();
        l.add(Entry::new("a", "tap", "bgr-a", Value::Null)).unwrap();
        l.add(Entry::new("b", "tap", "bgr-b", Value::Null)).unwrap();
        assert_eq!(l.list().unwrap().len(), 2);
        assert_eq!(l.for_vm("a").unwrap().len(), 1);
        assert!(l.remove("a", "tap", "bgr-a").unwrap());
        assert!(!l.remove("a", "tap", "bgr-a").unwrap());
        let mode = std::fs::metadata(l.path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dmode = std::fs::metadata(l.path().parent().unwrap())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(dmode, 0o700);
        // A new handle (a restarted helper) sees the same entries.
        let again = Ledger::new(l.path());
        assert_eq!(again.list().unwrap().len(), 1);
        let _ = std::fs::remove_dir_all(l.path().parent().unwrap().parent().unwrap());
    }

    #[test]
    fn concurrent_adds_lose_nothing() {
        let l = tmp();
        let ts: Vec<_> = (0..8)
            .map(|t| {
                let l = l.clone();
                std::thread::spawn(move || {
                    for i in 0..20 {
                        l.add(Entry::new("v", "tap", &format!("t{t}-{i}"), Value::Null))
                            .unwrap();
                    }
                })
            })
            .collect();
        for t in ts {
            t.join().unwrap();
        }
        assert_eq!(l.list().unwrap().len(), 160);
        let _ = std::fs::remove_dir_all(l.path().parent().unwrap().parent().unwrap());
    }

    #[test]
    fn only_a_new_disk_or_jail_is_written_durably() {
        let e = |kind: &str, id: &str| Entry::new("a", kind, id, Value::Null);
        let base = vec![e("disk", "/d"), e("tap", "t0")];
        let with = |x: Entry| {
            let mut v = base.clone();
            v.push(x);
            v
        };
        assert_eq!(
            durability(&base, &with(e("jail", "/j"))),
            Durability::Durable
        );
        assert_eq!(
            durability(&base, &with(e("disk", "/d2"))),
            Durability::Durable
        );
        assert_eq!(
            durability(&base, &with(e("tap", "t1"))),
            Durability::Consistent
        );
        assert_eq!(
            durability(&base, &with(e("addr", "10.0.0.2"))),
            Durability::Consistent
        );
        // Updating the disk entry (complete), or removing it: consistent.
        let mut updated = base.clone();
        updated[0].data = Arc::new(serde_json::json!({"complete": true}));
        assert_eq!(durability(&base, &updated), Durability::Consistent);
        assert_eq!(durability(&base, &base[1..]), Durability::Consistent);
    }

    #[test]
    fn add_all_and_remove_all_are_one_write_each() {
        let l = tmp();
        l.add_all(vec![
            Entry::new("a", "addr", "10.0.0.2", Value::Null),
            Entry::new("a", "tap", "t", Value::Null),
        ])
        .unwrap();
        assert_eq!(l.for_vm("a").unwrap().len(), 2);
        assert_eq!(
            l.remove_all(&[
                ("a", "addr", "10.0.0.2"),
                ("a", "tap", "t"),
                ("a", "tap", "x")
            ])
            .unwrap(),
            2
        );
        assert!(l.list().unwrap().is_empty());
        let _ = std::fs::remove_dir_all(l.path().parent().unwrap().parent().unwrap());
    }

    #[test]
    fn a_change_by_another_handle_is_seen_through_the_cache() {
        let l = tmp();
        l.add(Entry::new("a", "tap", "x", Value::Null)).unwrap();
        assert_eq!(l.list().unwrap().len(), 1);
        // Another process (a fresh handle: its own cache) changes the file.
        let other = Ledger::new(l.path());
        other.add(Entry::new("b", "tap", "y", Value::Null)).unwrap();
        assert_eq!(l.list().unwrap().len(), 2);
        // A hand edit of the same size in place is seen too (mtime changes).
        std::thread::sleep(std::time::Duration::from_millis(10));
        let text = std::fs::read_to_string(l.path())
            .unwrap()
            .replace("\"y\"", "\"z\"");
        std::fs::write(l.path(), text).unwrap();
        assert!(l.list().unwrap().iter().any(|e| e.id == "z"));
        let _ = std::fs::remove_dir_all(l.path().parent().unwrap().parent().unwrap());
    }

    #[test]
    fn corrupt_ledger_is_an_error_not_a_reset() {
        let l = tmp();
        l.add(Entry::new("a", "tap", "x", Value::Null)).unwrap();
        std::fs::write(l.path(), b"{garbage").unwrap();
        assert!(matches!(l.list(), Err(LedgerError::Corrupt { .. })));
        assert!(l.add(Entry::new("b", "tap", "y", Value::Null)).is_err());
        assert_eq!(std::fs::read(l.path()).unwrap(), b"{garbage");
        let _ = std::fs::remove_dir_all(l.path().parent().unwrap().parent().unwrap());
    }
}
