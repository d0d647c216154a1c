//! Files written atomically and the lock files that guard them.
//!
//! [`write_atomic`] writes a temp file `.FILE.tmp.PID.SEQ` beside FILE, fsyncs it, renames it
//! over FILE and fsyncs the directory, so readers see the old or the new content, never a mix;
//! [`write_with`] syncs less where a crash costs less (see [`Durability`]).
//! A writer killed in between leaves its temp file; the next writer of FILE removes those whose
//! writer is dead. [`Lock`] is an exclusive `flock` on a lock file that its holder may unlink:
//! every taker checks after `flock` that the path still names the file it locked.
//!
//! A process that holds a lock may hand it to a child it waits for ([`Lock::hand_to`]):
//! the child inherits the locked open file (a flock belongs to the open file, so both hold
//! the one lock) and [`HELD_LOCK_ENV`] names its descriptor; when the child locks the same
//! file it takes that descriptor instead of waiting for its own parent. That is how
//! `banger-reconcile` runs a step on a VM it has locked without letting a pipeline in between.

use crate::store::StoreError;
use rustix::fs::{flock, FlockOperation};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// The environment variable naming the descriptor of a lock handed down by the parent.
pub const HELD_LOCK_ENV: &str = "BANGER_HELD_LOCK_FD";

/// The descriptor named by [`HELD_LOCK_ENV`], when it is open in this process; made
/// close-on-exec on first use, so no program this process starts inherits the lock.
fn inherited() -> Option<RawFd> {
    static FD: OnceLock<Option<RawFd>> = OnceLock::new();
    *FD.get_or_init(|| {
        let fd: RawFd = std::env::var(HELD_LOCK_ENV).ok()?.trim().parse().ok()?;
        if fd < 3 {
            return None;
        }
        // Looked at through /proc first, so no descriptor that is not open is ever used.
        std::fs::metadata(format!("/proc/self/fd/{fd}")).ok()?;
        // SAFETY: the descriptor is open (checked just above, before any thread of this
        // process could close it) and is only borrowed here, never closed.
        let b = unsafe { BorrowedFd::borrow_raw(fd) };
        rustix::io::fcntl_setfd(b, rustix::io::FdFlags::CLOEXEC).ok()?;
        Some(fd)
    })
}

/// Makes a lock handed down by the parent close-on-exec at once (the step binaries call this
/// first thing), so that nothing this process starts can hold it.
pub fn seal_inherited_lock() {
    let _ = inherited();
}

/// An exclusive `flock` on a lock file, released on drop.
///
/// Lock files may be unlinked by whoever holds them: after taking the lock, the holder
/// checks that the path still names the file it locked, and starts over if not. So a lock
/// file can be removed (see [`Lock::remove_unless`]) without two processes ever holding
/// "the" lock at once.
#[derive(Debug)]
pub struct Lock {
    file: File,
    path: PathBuf,
    /// When this path is gone at release, the lock file is unlinked (still locked).
    remove_unless: Option<PathBuf>,
}

fn same_file(f: &File, path: &Path) -> bool {
    match (f.metadata(), std::fs::symlink_metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
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
        if let Some(l) = Self::take_inherited(path) {
            return Ok(l);
        }
        loop {
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
            if same_file(&file, path) {
                return Ok(Lock {
                    file,
                    path: path.to_path_buf(),
                    remove_unless: None,
                });
            }
            // Unlinked (or replaced) while we waited: lock the file the path names now.
        }
    }

    /// The lock on `path` handed down by the parent ([`Lock::hand_to`]), if that is the file
    /// the inherited descriptor holds. The flock belongs to the shared open file, so taking
    /// it again through a duplicate returns at once.
    fn take_inherited(path: &Path) -> Option<Lock> {
        Self::take_from(inherited()?, path)
    }

    /// The lock on `path` through the open descriptor `fd`, when `fd` is that file.
    fn take_from(fd: RawFd, path: &Path) -> Option<Lock> {
        let held = std::fs::metadata(format!("/proc/self/fd/{fd}")).ok()?;
        let named = std::fs::symlink_metadata(path).ok()?;
        if (held.dev(), held.ino()) != (named.dev(), named.ino()) {
            return None;
        }
        // SAFETY: the descriptor is open (its /proc entry was just read, and the callers own
        // or inherited it); it is only borrowed to be duplicated.
        let b = unsafe { BorrowedFd::borrow_raw(fd) };
        let file = File::from(rustix::io::fcntl_dupfd_cloexec(b, 3).ok()?);
        flock(&file, FlockOperation::LockExclusive).ok()?;
        same_file(&file, path).then(|| Lock {
            file,
            path: path.to_path_buf(),
            remove_unless: None,
        })
    }

    /// Like [`Lock::exclusive_owned`], but `None` at once when someone else holds it.
    pub fn try_exclusive_owned(
        path: &Path,
        owner: Option<(u32, u32)>,
    ) -> Result<Option<Lock>, StoreError> {
        use rustix::fs::{Mode, OFlags};
        let err = |e: rustix::io::Errno| StoreError::Lock {
            path: path.to_path_buf(),
            source: e.into(),
        };
        if let Some(l) = Self::take_inherited(path) {
            return Ok(Some(l));
        }
        loop {
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
            match flock(&file, FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => {}
                Err(rustix::io::Errno::WOULDBLOCK) => return Ok(None),
                Err(e) => return Err(err(e)),
            }
            if same_file(&file, path) {
                return Ok(Some(Lock {
                    file,
                    path: path.to_path_buf(),
                    remove_unless: None,
                }));
            }
        }
    }

    /// Lets the child that `cmd` starts take this lock over: it inherits the locked file and
    /// learns its descriptor from [`HELD_LOCK_ENV`]. The caller must wait for the child
    /// before dropping the lock.
    pub fn hand_to(&self, cmd: &mut std::process::Command) {
        use std::os::unix::process::CommandExt;
        let fd = self.file.as_raw_fd();
        cmd.env(HELD_LOCK_ENV, fd.to_string());
        // SAFETY: runs in the forked child before exec and only calls fcntl, which is
        // async-signal-safe; `fd` is open there (inherited from this process, which keeps it
        // open until the child has been waited for).
        unsafe {
            cmd.pre_exec(move || {
                let b = BorrowedFd::borrow_raw(fd);
                rustix::io::fcntl_setfd(b, rustix::io::FdFlags::empty())?;
                Ok(())
            });
        }
    }

    /// True when someone holds the lock at `path` right now. Never creates the file (a
    /// missing lock file is a free lock).
    pub fn try_held(path: &Path) -> bool {
        let Ok(file) = File::open(path) else {
            return false;
        };
        matches!(
            flock(&file, FlockOperation::NonBlockingLockShared),
            Err(rustix::io::Errno::WOULDBLOCK)
        )
    }

    /// Unlinks the lock file at release (still holding it): for a lock whose object is gone.
    pub fn remove_at_release(mut self) -> Lock {
        self.remove_unless = Some(PathBuf::new());
        self
    }

    /// Unlinks the lock file at release when `path` no longer exists then.
    pub fn remove_unless(mut self, path: &Path) -> Lock {
        self.remove_unless = Some(path.to_path_buf());
        self
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        if let Some(p) = &self.remove_unless {
            let gone = p.as_os_str().is_empty() || std::fs::symlink_metadata(p).is_err();
            if gone && same_file(&self.file, &self.path) {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }
}

static TMP_SEQ: AtomicU64 = AtomicU64::new(0);

/// True while process `pid` exists (in this PID namespace).
fn pid_alive(pid: i32) -> bool {
    match rustix::process::Pid::from_raw(pid) {
        None => false,
        Some(p) => !matches!(
            rustix::process::test_kill_process(p),
            Err(rustix::io::Errno::SRCH)
        ),
    }
}

/// The writer's PID of a temp file `.FILE.tmp.PID.SEQ` of `file_name`, if `entry` is one.
pub(crate) fn temp_owner(entry: &str, file_name: &str) -> Option<i32> {
    let rest = entry
        .strip_prefix('.')?
        .strip_prefix(file_name)?
        .strip_prefix(".tmp.")?;
    let (pid, seq) = rest.split_once('.')?;
    seq.parse::<u64>().ok()?;
    pid.parse().ok()
}

/// Removes the temp files of `file_name` in `dir` whose writer is dead (a writer killed
/// between creating its temp file and the rename). Returns how many went.
pub fn sweep_temps(dir: &Path, file_name: &str) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let me = std::process::id() as i32;
    let mut n = 0;
    for e in entries.filter_map(Result::ok) {
        let name = e.file_name();
        let Some(pid) = name.to_str().and_then(|s| temp_owner(s, file_name)) else {
            continue;
        };
        if pid != me && !pid_alive(pid) && std::fs::remove_file(e.path()).is_ok() {
            n += 1;
        }
    }
    n
}

/// What a write through [`write_with`] survives. Readers never see a mix of old and new:
/// the new content is written to a temp file and renamed over the old.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// fsync the data, rename, fsync the directory: once the call returns, the new content
    /// survives a power loss. For what must be on disk before something else exists (a ledger
    /// entry before the disk or jail it names).
    Durable,
    /// fsync the data, rename: after a power loss the file holds the new content or the one
    /// before it, never a torn or empty file; the rename is made durable by the filesystem's
    /// next commit (seconds; at once on ext4 with the next fsync anywhere on it). For state
    /// whose newest version may be lost with a crash that also stopped every VM (a record's
    /// sections, a ledger entry of a tap or a mount).
    Consistent,
    /// rename only: for files derived from other state and rewritten on every change (the
    /// hosts file).
    Volatile,
}

/// Writes `bytes` to `path` atomically: a temp file in the same directory, fsync, rename,
/// fsync of the directory. Readers see the old or the new content, never a mix. Temp files
/// of `path` left by killed writers are removed first.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    write_with(path, bytes, mode, None, Durability::Durable)
}

/// [`write_atomic`], the new file given to `owner` (uid, gid) before it takes the name.
pub fn write_atomic_owned(
    path: &Path,
    bytes: &[u8],
    mode: u32,
    owner: Option<(u32, u32)>,
) -> std::io::Result<()> {
    write_with(path, bytes, mode, owner, Durability::Durable)
}

/// Writes `bytes` to `path` through a temp file and a rename, the new file given to `owner`
/// before it takes the name, synced as `durability` says.
pub fn write_with(
    path: &Path,
    bytes: &[u8],
    mode: u32,
    owner: Option<(u32, u32)>,
    durability: Durability,
) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    sweep_temps(dir, &file_name);
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
        if durability != Durability::Volatile {
            crate::timing::span("sync", || f.sync_data())?;
        }
        std::fs::rename(&tmp, path)?;
        if durability == Durability::Durable {
            crate::timing::span("dirsync", || File::open(dir)?.sync_all())?;
        }
        Ok(())
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res
}

/// A pid that is certainly dead: a child that has exited and been reaped (for tests).
#[cfg(test)]
pub(crate) fn dead_pid() -> u32 {
    let mut c = std::process::Command::new("true")
        .spawn()
        .expect("spawn true");
    let pid = c.id();
    let _ = c.wait();
    pid
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp_dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "banger-atomic-{tag}-{}-{}",
            std::process::id(),
            TMP_SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn atomic_write_leaves_no_temp_files() {
        let d = tmp_dir("atomic");
        let p = d.join("f");
        for i in 0..20 {
            write_atomic(&p, format!("{i}").as_bytes(), 0o600).unwrap();
        }
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "19");
        let n = std::fs::read_dir(&d).unwrap().count();
        assert_eq!(n, 1);
        let _ = std::fs::remove_dir_all(&d);
    }

    /// A waiter on a lock file that its holder unlinks takes the lock on the new file, so
    /// two holders never overlap.
    #[test]
    fn unlinked_lock_files_never_give_two_holders() {
        let d = tmp_dir("relock");
        let path = d.join("x.lock");
        let inside = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
        let threads: Vec<_> = (0..6)
            .map(|_| {
                let (path, inside, dir) = (path.clone(), inside.clone(), d.join("none"));
                std::thread::spawn(move || {
                    for _ in 0..50 {
                        let _g = Lock::exclusive(&path).unwrap().remove_unless(&dir);
                        assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0, "two holders");
                        std::thread::yield_now();
                        inside.fetch_sub(1, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert!(!path.exists());
        let _ = std::fs::remove_dir_all(&d);
    }

    /// A lock reached through a descriptor of the locked file (what a child is handed) is
    /// taken at once, while a fresh open of the same file waits; another file is not taken.
    #[test]
    fn a_handed_lock_is_taken_through_its_descriptor() {
        let d = tmp_dir("hand");
        let path = d.join("vm.lock");
        let held = Lock::exclusive(&path).unwrap();
        let fd = held.file.as_raw_fd();
        let again = Lock::take_from(fd, &path).expect("the same open file is the same lock");
        assert!(Lock::try_exclusive_owned(&path, None).unwrap().is_none());
        assert!(Lock::take_from(fd, &d.join("other.lock")).is_none());
        drop(again);
        // The duplicate's close does not release the holder's lock.
        assert!(Lock::try_exclusive_owned(&path, None).unwrap().is_none());
        drop(held);
        assert!(Lock::try_exclusive_owned(&path, None).unwrap().is_some());
        let _ = std::fs::remove_dir_all(&d);
    }

    /// Item 14: temp files of killed writers are removed by the next writer; a live
    /// writer's temp file is left alone.
    #[test]
    fn the_next_writer_removes_dead_writers_temp_files() {
        let d = tmp_dir("sweep");
        let dead = d.join(format!(".f.tmp.{}.3", dead_pid()));
        let live = d.join(format!(".f.tmp.{}.0", std::os::unix::process::parent_id()));
        let other = d.join(format!(".g.tmp.{}.0", dead_pid()));
        for p in [&dead, &live, &other] {
            std::fs::write(p, b"half").unwrap();
        }
        write_atomic(&d.join("f"), b"new", 0o600).unwrap();
        assert!(!dead.exists());
        assert!(live.exists(), "a live writer's temp file stays");
        assert!(
            other.exists(),
            "another file's temp files are not this writer's to judge"
        );
        let _ = std::fs::remove_dir_all(&d);
    }
}
