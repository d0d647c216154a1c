//! The ledger: every privileged resource the helper created, per VM.
//!
//! Root-owned (directory 0700, files 0600), changed only under a lock, so it survives
//! restarts and crashes and two helpers (or a helper and an in-process fallback) never lose
//! each other's entries. Teardown and cleanup only ever touch resources that have an entry
//! here.
//!
//! It is two files (see `journal.rs`): `ledger.json`, a snapshot, and `ledger.journal`, one line per
//! update since, so an update costs the same with 1 VM or 250. A crash leaves the journal a
//! prefix of the updates (an earlier, consistent ledger), never a torn one. An update that
//! adds an entry for something that outlives a reboot (a VM's disk, a jail directory:
//! [`DURABLE_KINDS`]) is made durable before it returns, since that thing is made next and
//! must never exist unrecorded; other entries (taps, addresses, mounts, loop devices...) name
//! what a power loss takes away anyway, so their newest updates may be lost with it.

mod journal;

use banger::store::{sweep_temps, write_with, Durability, Lock, StoreError};
use journal::{Change, Snapshot, COMPACT_BYTES, COMPACT_LINES};
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

/// What identifies one version of a file: the snapshot is replaced by a rename at every
/// write, the journal grows at every write, so device, inode, size and modification time name
/// their content.
type FileKey = (u64, u64, i64, i64, i64);

/// The ledger as this process last read or wrote it, so that the many reads of one operation
/// read the files once, not once each, and an update reads nothing when no other process
/// wrote in between.
#[derive(Debug, Default)]
struct Cache {
    /// Whether the rest describes the files (false after an error half way).
    valid: bool,
    /// The snapshot's version (None: there is none), its `gen` and its entries.
    snap: Option<FileKey>,
    gen: Option<String>,
    base: Arc<Vec<Entry>>,
    /// The journal's version (None: there is none), its size, how many of its bytes and
    /// updates belong to this state, and whether its directory entry is known to be on disk.
    journal: Option<FileKey>,
    journal_len: u64,
    valid_len: u64,
    lines: usize,
    dir_synced: bool,
    /// The snapshot with the journal applied: the ledger. Shared, not copied, with the reads
    /// that only look (a copy of 300 entries costs about a third of a millisecond).
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

/// The file at `path` opened for reading, or None when there is none.
fn open_if_there(path: &Path) -> std::io::Result<Option<(std::fs::File, FileKey)>> {
    match std::fs::File::open(path) {
        Ok(f) => {
            let key = key_of(&rustix::fs::fstat(&f)?);
            Ok(Some((f, key)))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn read_all(f: Option<(std::fs::File, FileKey)>) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut b = Vec::new();
    if let Some((mut f, _)) = f {
        f.read_to_end(&mut b)?;
    }
    Ok(b)
}

/// See [`Ledger::stamp`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp(Option<FileKey>, Option<FileKey>);

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

    /// The snapshot, `ledger.json`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What names the ledger's content now (both files' identity, read without the lock):
    /// any update changes it.
    pub fn stamp(&self) -> Stamp {
        let key = |p: &Path| rustix::fs::stat(p).ok().map(|st| key_of(&st));
        Stamp(key(&self.path), key(&self.journal_path()))
    }

    /// The journal beside it, `ledger.journal`.
    pub fn journal_path(&self) -> PathBuf {
        self.path.with_extension("journal")
    }

    fn dir(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("/"))
    }

    fn ensure_dir(&self) -> Result<(), LedgerError> {
        let dir = self.dir();
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

    /// Brings the cache up to the files (under the lock): reads nothing when neither changed
    /// since, only the journal when only it did.
    fn refresh(&self, c: &mut Cache) -> Result<(), LedgerError> {
        let read_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| LedgerError::Read { path, source }
        };
        let jpath = self.journal_path();
        let snap = open_if_there(&self.path).map_err(read_err(&self.path))?;
        let journal = open_if_there(&jpath).map_err(read_err(&jpath))?;
        let skey = snap.as_ref().map(|s| s.1);
        let jkey = journal.as_ref().map(|j| j.1);
        if c.valid && c.snap == skey && c.journal == jkey {
            return Ok(());
        }
        if !(c.valid && c.snap == skey) {
            c.valid = false;
            let b = read_all(snap).map_err(read_err(&self.path))?;
            let s: Snapshot = if skey.is_none() {
                Snapshot::default()
            } else {
                serde_json::from_slice(&b).map_err(|source| LedgerError::Corrupt {
                    path: self.path.clone(),
                    source,
                })?
            };
            c.snap = skey;
            c.gen = s.gen;
            c.base = Arc::new(s.entries);
        }
        c.valid = false;
        let b = read_all(journal).map_err(read_err(&jpath))?;
        let r = journal::replay(&c.base, c.gen.as_deref(), &b).map_err(|source| {
            LedgerError::Corrupt {
                path: jpath.clone(),
                source,
            }
        })?;
        c.journal = jkey;
        c.journal_len = b.len() as u64;
        c.valid_len = r.valid;
        c.lines = r.lines;
        c.dir_synced = false;
        c.entries = r.entries;
        c.valid = true;
        Ok(())
    }

    /// Writes one update as a line of the journal (starting it, or a new one over another
    /// snapshot's, with its header); syncs it when `durability` asks.
    fn append(
        &self,
        c: &mut Cache,
        gen: &str,
        change: Change,
        durability: Durability,
    ) -> Result<(), LedgerError> {
        use std::os::unix::fs::{FileExt, OpenOptionsExt};
        let jpath = self.journal_path();
        let write_err = |source| LedgerError::Write {
            path: jpath.clone(),
            source,
        };
        let mut buf = if c.valid_len == 0 {
            journal::header(gen)
        } else {
            Vec::new()
        };
        buf.extend(journal::line(&change).map_err(|e| write_err(std::io::Error::other(e)))?);
        let f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .mode(0o600)
            .open(&jpath)
            .map_err(write_err)?;
        if c.journal_len != c.valid_len {
            // A torn last line, or another snapshot's journal: written over.
            f.set_len(c.valid_len).map_err(write_err)?;
        }
        f.write_all_at(&buf, c.valid_len).map_err(write_err)?;
        if durability == Durability::Durable {
            banger::timing::span("sync", || f.sync_data()).map_err(write_err)?;
            if !c.dir_synced {
                banger::timing::span("dirsync", || std::fs::File::open(self.dir())?.sync_all())
                    .map_err(write_err)?;
                c.dir_synced = true;
            }
        }
        let st = rustix::fs::fstat(&f).map_err(|e| write_err(e.into()))?;
        // In place unless a reader still holds the entries (then they are copied).
        change.apply(Arc::make_mut(&mut c.entries));
        c.journal = Some(key_of(&st));
        c.valid_len += buf.len() as u64;
        c.journal_len = c.valid_len;
        c.lines += 1;
        Ok(())
    }

    /// Writes `entries` as a new snapshot and removes the journal. Durable when the journal
    /// held updates (some may have been synced: the snapshot that replaces them must be too).
    fn compact(
        &self,
        c: &mut Cache,
        entries: Vec<Entry>,
        durability: Durability,
    ) -> Result<(), LedgerError> {
        let write_err = |source| LedgerError::Write {
            path: self.path.clone(),
            source,
        };
        let gen = journal::new_gen();
        let bytes = journal::snapshot_bytes(&gen, &entries)
            .map_err(|e| write_err(std::io::Error::other(e)))?;
        let durability = if c.lines > 0 {
            Durability::Durable
        } else {
            durability
        };
        write_with(&self.path, &bytes, 0o600, None, durability).map_err(write_err)?;
        if c.journal.is_some() {
            // Another snapshot's from now on, ignored even where this fails.
            let _ = std::fs::remove_file(self.journal_path());
        }
        let st = rustix::fs::stat(&self.path).map_err(|e| write_err(e.into()))?;
        c.snap = Some(key_of(&st));
        c.gen = Some(gen);
        c.base = Arc::new(entries);
        c.entries = c.base.clone();
        c.journal = None;
        c.journal_len = 0;
        c.valid_len = 0;
        c.lines = 0;
        c.dir_synced = false;
        Ok(())
    }

    /// Writes `change` (made of the cache's entries: under the lock, refreshed), unless it
    /// changes nothing.
    fn commit(&self, c: &mut Cache, change: Change) -> Result<(), LedgerError> {
        let change = change.against(&c.entries);
        if change.is_empty() {
            return Ok(());
        }
        let durability = change.durability(&c.entries);
        // What writers killed in a compaction left (a readdir of this small directory).
        if let Some(name) = self.path.file_name().and_then(|n| n.to_str()) {
            sweep_temps(self.dir(), name);
        }
        match c.gen.clone() {
            Some(gen) if c.lines < COMPACT_LINES && c.valid_len < COMPACT_BYTES => {
                self.append(c, &gen, change, durability)
            }
            _ => banger::timing::span("compact", || {
                let mut after = (*c.entries).clone();
                change.apply(&mut after);
                self.compact(c, after, durability)
            }),
        }
    }

    /// A change made from the entries as they are (under the lock), then written; `f` returns
    /// the change and a value passed back to the caller. Nothing is copied or compared whole.
    fn change<T>(&self, f: impl FnOnce(&[Entry]) -> (Change, T)) -> Result<T, LedgerError> {
        banger::timing::span("ledger-write", || {
            let _g = self.lock()?;
            let mut c = self.cache();
            let res = (|| {
                self.refresh(&mut c)?;
                let (change, out) = f(&c.entries);
                self.commit(&mut c, change)?;
                Ok(out)
            })();
            if res.is_err() {
                c.valid = false;
            }
            res
        })
    }

    /// Folds the journal into a new snapshot (durably) and removes it, under the lock; returns
    /// whether there was anything to fold. For a helper that stops: a helper from before the
    /// journal (a downgrade) reads the snapshot alone.
    pub fn compact_journal(&self) -> Result<bool, LedgerError> {
        let _g = self.lock()?;
        let mut c = self.cache();
        let res = (|| {
            self.refresh(&mut c)?;
            if c.journal.is_none() {
                return Ok(false);
            }
            let entries = (*c.entries).clone();
            self.compact(&mut c, entries, Durability::Durable)?;
            Ok(true)
        })();
        if res.is_err() {
            c.valid = false;
        }
        res
    }

    /// The entries as they are now, shared (nothing copied), read under the lock: for the
    /// callers that only look.
    pub fn snapshot(&self) -> Result<Arc<Vec<Entry>>, LedgerError> {
        banger::timing::span("ledger-read", || {
            let _g = self.lock()?;
            let mut c = self.cache();
            self.refresh(&mut c)?;
            Ok(c.entries.clone())
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

    fn stamp_by(&self, mut e: Entry) -> Entry {
        if e.by.is_none() {
            e.by = self.by;
        }
        e
    }

    /// Adds an entry; an entry with the same vm/kind/id is replaced (idempotent steps).
    pub fn add(&self, e: Entry) -> Result<(), LedgerError> {
        self.add_all(vec![e])
    }

    /// Adds entries in one write; an entry with the same vm/kind/id is replaced.
    pub fn add_all(&self, entries: Vec<Entry>) -> Result<(), LedgerError> {
        let put = entries.into_iter().map(|e| self.stamp_by(e)).collect();
        self.change(|_| (Change { del: vec![], put }, ()))
    }

    /// Removes entries (vm, kind, id) in one write; returns how many were there.
    pub fn remove_all(&self, keys: &[(&str, &str, &str)]) -> Result<usize, LedgerError> {
        self.swap(keys, Vec::new())
    }

    /// Removes entries (vm, kind, id) and adds others, in one write; returns how many were
    /// removed.
    pub fn swap(
        &self,
        remove: &[(&str, &str, &str)],
        add: Vec<Entry>,
    ) -> Result<usize, LedgerError> {
        let put = add.into_iter().map(|e| self.stamp_by(e)).collect();
        self.change(|entries| {
            let removed = entries
                .iter()
                .filter(|x| remove.iter().any(|(vm, kind, id)| x.same(vm, kind, id)))
                .count();
            let del = remove
                .iter()
                .map(|(v, k, i)| (v.to_string(), k.to_string(), i.to_string()))
                .collect();
            (Change { del, put }, removed)
        })
    }

    /// Removes an entry; returns whether it was there.
    pub fn remove(&self, vm: &str, kind: &str, id: &str) -> Result<bool, LedgerError> {
        Ok(self.remove_all(&[(vm, kind, id)])? > 0)
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
mod tests;
