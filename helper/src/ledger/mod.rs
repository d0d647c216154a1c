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

    /// Read-modify-write under the ledger lock. `f` returns a value passed back to the caller.
    pub fn update<T>(&self, f: impl FnOnce(&mut Vec<Entry>) -> T) -> Result<T, LedgerError> {
        banger::timing::span("ledger-write", || {
            let _g = self.lock()?;
            let mut c = self.cache();
            let res = self.update_locked(&mut c, f);
            if res.is_err() {
                c.valid = false;
            }
            res
        })
    }

    fn update_locked<T>(
        &self,
        c: &mut Cache,
        f: impl FnOnce(&mut Vec<Entry>) -> T,
    ) -> Result<T, LedgerError> {
        self.refresh(c)?;
        let mut after = (*c.entries).clone();
        let out = f(&mut after);
        let change = Change::between(&c.entries, &after);
        self.commit(c, change)?;
        Ok(out)
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
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

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
        let durability = |before: &[Entry], after: &[Entry]| {
            Change::between(before, after)
                .against(before)
                .durability(before)
        };
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
        // A hand edit of the snapshot, of the same size and in place, is seen too (mtime
        // changes), with the journal's update still applied over it.
        std::thread::sleep(std::time::Duration::from_millis(10));
        let text = std::fs::read_to_string(l.path())
            .unwrap()
            .replace("\"x\"", "\"w\"");
        std::fs::write(l.path(), text).unwrap();
        let ids: Vec<String> = l.list().unwrap().into_iter().map(|e| e.id).collect();
        assert_eq!(ids, ["w", "y"]);
        let _ = std::fs::remove_dir_all(l.path().parent().unwrap().parent().unwrap());
    }

    fn journal_lines(l: &Ledger) -> usize {
        std::fs::read_to_string(l.journal_path())
            .map(|t| t.lines().count())
            .unwrap_or(0)
    }

    #[test]
    fn an_update_appends_a_line_and_leaves_the_snapshot_alone() {
        let l = tmp();
        l.add(Entry::new("a", "tap", "x", Value::Null)).unwrap();
        // The first update writes a snapshot (there was none to name a journal).
        assert_eq!(journal_lines(&l), 0);
        let snap = std::fs::read(l.path()).unwrap();
        let ino = std::fs::metadata(l.path()).unwrap().ino();
        l.add(Entry::new("b", "disk", "/d", Value::Null)).unwrap();
        l.add(Entry::new("a", "tap", "x", serde_json::json!({"up": true})))
            .unwrap();
        l.remove("b", "disk", "/d").unwrap();
        assert_eq!(std::fs::read(l.path()).unwrap(), snap);
        assert_eq!(std::fs::metadata(l.path()).unwrap().ino(), ino);
        assert_eq!(journal_lines(&l), 4, "the header and one line per update");
        let mode = std::fs::metadata(l.journal_path())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
        // A restarted helper sees the snapshot with the journal applied.
        let again = Ledger::new(l.path());
        let got = again.list().unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(*got[0].data, serde_json::json!({"up": true}));
        let _ = std::fs::remove_dir_all(l.path().parent().unwrap().parent().unwrap());
    }

    #[test]
    fn a_long_journal_is_compacted_into_a_new_snapshot() {
        let l = tmp();
        for i in 0..COMPACT_LINES + 1 {
            l.add(Entry::new("a", "tap", &format!("t{i}"), Value::Null))
                .unwrap();
        }
        assert_eq!(journal_lines(&l), COMPACT_LINES + 1);
        // The next update writes everything into the snapshot and removes the journal.
        l.add(Entry::new("a", "tap", "last", Value::Null)).unwrap();
        assert!(!l.journal_path().exists());
        let text = std::fs::read_to_string(l.path()).unwrap();
        let s: Snapshot = serde_json::from_str(&text).unwrap();
        assert_eq!(s.entries.len(), COMPACT_LINES + 2);
        assert!(s.gen.is_some());
        assert_eq!(
            Ledger::new(l.path()).list().unwrap().len(),
            COMPACT_LINES + 2
        );
        let _ = std::fs::remove_dir_all(l.path().parent().unwrap().parent().unwrap());
    }

    #[test]
    fn a_snapshot_written_by_hand_or_by_an_older_helper_is_the_whole_ledger() {
        let l = tmp();
        l.add(Entry::new("a", "tap", "x", Value::Null)).unwrap();
        l.add(Entry::new("b", "tap", "y", Value::Null)).unwrap();
        assert_eq!(journal_lines(&l), 2);
        // Written without a gen (as the helper did before the journal): the journal, which
        // belongs to the snapshot before, is not applied over it.
        std::fs::write(
            l.path(),
            r#"{"v":1,"entries":[{"vm":"c","kind":"loop","id":"/dev/loop9","created_at":"t"}]}"#,
        )
        .unwrap();
        let ids =
            |l: &Ledger| -> Vec<String> { l.list().unwrap().into_iter().map(|e| e.id).collect() };
        assert_eq!(ids(&l), ["/dev/loop9"]);
        assert_eq!(ids(&Ledger::new(l.path())), ["/dev/loop9"]);
        // The next update writes a snapshot with a gen, and the old journal is gone.
        l.add(Entry::new("d", "tap", "z", Value::Null)).unwrap();
        assert!(!l.journal_path().exists());
        assert_eq!(ids(&Ledger::new(l.path())), ["/dev/loop9", "z"]);
        let _ = std::fs::remove_dir_all(l.path().parent().unwrap().parent().unwrap());
    }

    #[test]
    fn a_torn_last_line_is_dropped_and_written_over() {
        let l = tmp();
        l.add(Entry::new("a", "tap", "x", Value::Null)).unwrap();
        l.add(Entry::new("b", "tap", "y", Value::Null)).unwrap();
        // A writer killed half way through its line.
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(l.journal_path())
            .unwrap();
        std::io::Write::write_all(&mut f, br#"{"put":[{"vm":"c","kind":"t"#).unwrap();
        let fresh = Ledger::new(l.path());
        assert_eq!(fresh.list().unwrap().len(), 2);
        fresh.add(Entry::new("d", "tap", "z", Value::Null)).unwrap();
        let text = std::fs::read_to_string(l.journal_path()).unwrap();
        assert!(
            !text.contains(r#""vm":"c""#),
            "the torn line is written over: {text}"
        );
        assert_eq!(journal_lines(&l), 3);
        assert_eq!(Ledger::new(l.path()).list().unwrap().len(), 3);
        // The first handle sees the other's update too.
        assert_eq!(l.list().unwrap().len(), 3);
        let _ = std::fs::remove_dir_all(l.path().parent().unwrap().parent().unwrap());
    }

    #[test]
    fn an_append_removes_what_a_killed_compaction_left() {
        let l = tmp();
        l.add(Entry::new("a", "tap", "x", Value::Null)).unwrap();
        let mut c = std::process::Command::new("true").spawn().unwrap();
        let dead = c.id();
        c.wait().unwrap();
        let left = l
            .path()
            .with_file_name(format!(".ledger.json.tmp.{dead}.7"));
        std::fs::write(&left, vec![0u8; 85000]).unwrap();
        l.add(Entry::new("b", "tap", "y", Value::Null)).unwrap();
        assert_eq!(journal_lines(&l), 2, "written as a line, not a snapshot");
        assert!(!left.exists());
        let _ = std::fs::remove_dir_all(l.path().parent().unwrap().parent().unwrap());
    }

    #[test]
    fn every_update_changes_the_stamp() {
        let l = tmp();
        let mut seen = vec![l.stamp()];
        l.add(Entry::new("a", "tap", "x", Value::Null)).unwrap();
        seen.push(l.stamp());
        for i in 0..COMPACT_LINES + 2 {
            l.add(Entry::new("a", "mount", &format!("m{i}"), Value::Null))
                .unwrap();
            seen.push(l.stamp());
        }
        let n = seen.len();
        seen.sort_by_key(|s| format!("{s:?}"));
        seen.dedup();
        assert_eq!(seen.len(), n);
        // Reading changes nothing.
        let s = l.stamp();
        l.list().unwrap();
        assert_eq!(l.stamp(), s);
        let _ = std::fs::remove_dir_all(l.path().parent().unwrap().parent().unwrap());
    }

    #[test]
    fn compact_journal_leaves_the_whole_ledger_in_the_snapshot() {
        let l = tmp();
        assert!(!l.compact_journal().unwrap(), "nothing to fold");
        l.add(Entry::new("a", "tap", "x", Value::Null)).unwrap();
        l.add(Entry::new("b", "tap", "y", Value::Null)).unwrap();
        l.remove("a", "tap", "x").unwrap();
        assert!(l.compact_journal().unwrap());
        assert!(!l.journal_path().exists());
        let s: Snapshot = serde_json::from_slice(&std::fs::read(l.path()).unwrap()).unwrap();
        let ids: Vec<&str> = s.entries.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids, ["y"]);
        assert!(!l.compact_journal().unwrap());
        // Updates go on in a journal of the new snapshot.
        l.add(Entry::new("c", "tap", "z", Value::Null)).unwrap();
        assert_eq!(Ledger::new(l.path()).list().unwrap().len(), 2);
        let _ = std::fs::remove_dir_all(l.path().parent().unwrap().parent().unwrap());
    }

    /// Not a test of its own: the writer `a_writer_killed_at_any_point_leaves_a_prefix` runs
    /// in a child process (this test binary again). It adds entries 0, 1, 2... and prints
    /// each number once its add returned.
    #[test]
    fn ledger_writer_child() {
        let Some(path) = std::env::var_os("BANGER_LEDGER_WRITER") else {
            return;
        };
        let l = Ledger::new(PathBuf::from(path));
        let start = l.list().unwrap().len();
        for i in start.. {
            let data = serde_json::json!({"pad": "x".repeat(i % 700)});
            l.add(Entry::new("w", "mount", &format!("m{i}"), data))
                .unwrap();
            println!("{i}");
        }
    }

    #[test]
    fn a_writer_killed_at_any_point_leaves_a_prefix() {
        use std::io::BufRead;
        let l = tmp();
        std::fs::create_dir_all(l.path().parent().unwrap()).unwrap();
        let mut acked: Option<usize> = None;
        // Kills at many points: mid-line, mid-compaction (every 256 lines), between.
        for round in 0..24u64 {
            let mut child = std::process::Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "ledger::tests::ledger_writer_child",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env("BANGER_LEDGER_WRITER", l.path())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap();
            let out = child.stdout.take().unwrap();
            let mut lines = std::io::BufReader::new(out).lines();
            // Let it write a varying number of entries, then kill it at once.
            let want = 5 + (round * 37) % 90;
            let mut seen = 0;
            for line in lines.by_ref() {
                if let Ok(i) = line.unwrap_or_default().trim().parse::<usize>() {
                    acked = Some(i);
                    seen += 1;
                    if seen >= want {
                        break;
                    }
                }
            }
            child.kill().unwrap();
            // Whatever it printed before the kill was acknowledged.
            for line in lines.map_while(Result::ok) {
                if let Ok(i) = line.trim().parse::<usize>() {
                    acked = Some(i);
                }
            }
            child.wait().unwrap();
            let acked = acked.expect("the writer wrote");
            // A fresh reader: a ledger that parses and holds exactly 0..=acked, or one more
            // (an add that wrote but was killed before it said so).
            let got: Vec<String> = Ledger::new(l.path())
                .list()
                .unwrap_or_else(|e| panic!("round {round}: {e}"))
                .into_iter()
                .map(|e| e.id)
                .collect();
            let n = got.len();
            assert!(
                n == acked + 1 || n == acked + 2,
                "round {round}: {n} entries, {acked} acknowledged"
            );
            for (i, id) in got.iter().enumerate() {
                assert_eq!(id, &format!("m{i}"), "round {round}: a prefix, in order");
            }
        }
        assert!(
            acked.unwrap_or(0) > COMPACT_LINES,
            "the kills spanned a compaction"
        );
        let _ = std::fs::remove_dir_all(l.path().parent().unwrap().parent().unwrap());
    }

    #[test]
    fn a_damaged_journal_is_an_error_not_a_reset() {
        let l = tmp();
        l.add(Entry::new("a", "tap", "x", Value::Null)).unwrap();
        l.add(Entry::new("b", "tap", "y", Value::Null)).unwrap();
        l.add(Entry::new("c", "tap", "z", Value::Null)).unwrap();
        let text = std::fs::read_to_string(l.journal_path()).unwrap();
        let damaged = text.replacen(r#""vm":"b""#, r#""vm":b""#, 1);
        std::fs::write(l.journal_path(), &damaged).unwrap();
        let fresh = Ledger::new(l.path());
        assert!(matches!(fresh.list(), Err(LedgerError::Corrupt { .. })));
        assert!(fresh.add(Entry::new("d", "tap", "w", Value::Null)).is_err());
        assert_eq!(std::fs::read_to_string(l.journal_path()).unwrap(), damaged);
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
