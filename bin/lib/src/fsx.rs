//! File operations through directory fds, for code that must not be redirected.
//!
//! The root helper works in places the owner can write (the owner's state dir, a jail chroot
//! after the jailer hands it to the owner). Resolving a path there as root lets a symlink, a
//! hard link, a FIFO or a rename swapped in at the right moment redirect the operation. The
//! rules this module enforces:
//!
//! - a directory is opened once ([`Dir`]) and everything below it is reached with
//!   `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)`;
//! - a root-side anchor ([`Dir::open_trusted`]) is checked with its ancestors: every component
//!   owned by root and writable by nobody else (a sticky world-writable dir such as `/tmp`
//!   passes, since nobody else can rename or remove root's entries in it);
//! - files are created with `O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC`, and what is opened is
//!   `fstat`ed and refused unless it is the expected type;
//! - reads of owner-controlled files are non-blocking (a FIFO cannot hang the reader), only of
//!   regular files, and capped in size ([`Dir::read_capped`]);
//! - removal is `unlinkat` from a directory fd, recursive removal never follows a symlink and
//!   never crosses into another mount ([`Dir::remove_tree`]).

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags, Stat};
use std::ffi::OsStr;
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum FsxError {
    #[error("cannot {what} {path}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("refused {path}: a symlink or a path leaving its directory")]
    Escape { path: PathBuf },
    #[error("refused {path}: it is a {found}, not a {want}")]
    WrongType {
        path: PathBuf,
        found: &'static str,
        want: &'static str,
    },
    #[error("refused {path}: {why}")]
    Untrusted { path: PathBuf, why: String },
    #[error("refused {path}: larger than {cap} bytes")]
    TooLarge { path: PathBuf, cap: u64 },
    #[error("refused {path}: it has {nlink} hard links (expected 1)")]
    Linked { path: PathBuf, nlink: u64 },
    #[error("refused {name:?}: not a single file name")]
    BadName { name: PathBuf },
}

impl FsxError {
    /// The errno behind an I/O failure, if any.
    pub fn errno(&self) -> Option<i32> {
        match self {
            FsxError::Io { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
    /// True when the object was missing.
    pub fn is_not_found(&self) -> bool {
        self.errno() == Some(rustix::io::Errno::NOENT.raw_os_error())
    }
    /// True when the object already existed (a create with `O_EXCL`).
    pub fn is_exists(&self) -> bool {
        self.errno() == Some(rustix::io::Errno::EXIST.raw_os_error())
    }
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(rustix::io::Errno) -> FsxError + 'a {
    move |e| FsxError::Io {
        what,
        path: path.to_path_buf(),
        source: e.into(),
    }
}

/// The name of a file type, for messages.
pub fn type_name(st: &Stat) -> &'static str {
    match FileType::from_raw_mode(st.st_mode) {
        FileType::RegularFile => "regular file",
        FileType::Directory => "directory",
        FileType::Symlink => "symlink",
        FileType::Fifo => "FIFO",
        FileType::Socket => "socket",
        FileType::CharacterDevice => "character device",
        FileType::BlockDevice => "block device",
        FileType::Unknown => "file of unknown type",
    }
}

/// `fstat` and check the type.
pub fn expect_type(fd: impl AsFd, path: &Path, want: FileType) -> Result<Stat, FsxError> {
    let st = rustix::fs::fstat(fd).map_err(io("stat", path))?;
    if FileType::from_raw_mode(st.st_mode) != want {
        let want = match want {
            FileType::Directory => "directory",
            FileType::BlockDevice => "block device",
            FileType::Socket => "socket",
            FileType::Fifo => "FIFO",
            _ => "regular file",
        };
        return Err(FsxError::WrongType {
            path: path.to_path_buf(),
            found: type_name(&st),
            want,
        });
    }
    Ok(st)
}

/// `/proc/self/fd/N` for an fd: how a child process or a path-only API reaches exactly the
/// object this process opened.
pub fn fd_path(fd: impl AsFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_fd().as_raw_fd()))
}

/// A relative path of normal components only (no `..`, no `.`, not absolute, not empty).
fn relative(rel: &Path) -> Result<(), FsxError> {
    let ok = rel.components().next().is_some()
        && rel.components().all(|c| matches!(c, Component::Normal(_)));
    if ok {
        Ok(())
    } else {
        Err(FsxError::Escape {
            path: rel.to_path_buf(),
        })
    }
}

/// One file name (no `/`).
fn single(name: &OsStr) -> Result<(), FsxError> {
    let b = name.as_bytes();
    if b.is_empty() || b == b"." || b == b".." || b.contains(&b'/') || b.contains(&0) {
        return Err(FsxError::BadName { name: name.into() });
    }
    Ok(())
}

const BENEATH: ResolveFlags = ResolveFlags::BENEATH
    .union(ResolveFlags::NO_SYMLINKS)
    .union(ResolveFlags::NO_MAGICLINKS);

/// An open directory. Its path is kept for messages only; nothing is resolved through it
/// after it was opened.
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
    path: PathBuf,
}

impl AsFd for Dir {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Is this directory safe for root to resolve names in: owned by root (or `also`), and
/// writable by nobody else unless sticky?
fn trusted_dir(st: &Stat, also: Option<u32>) -> Result<(), String> {
    let uid = st.st_uid;
    if uid != 0 && Some(uid) != also {
        return Err(format!("owned by uid {uid}, not root"));
    }
    let mode = st.st_mode;
    let sticky = mode & 0o1000 != 0;
    if mode & 0o022 != 0 && !sticky {
        return Err(format!(
            "writable by group or others (mode {:o})",
            mode & 0o7777
        ));
    }
    Ok(())
}

impl Dir {
    /// Opens a directory by path, following nothing in its last component. For paths the
    /// caller already trusts (or when it works with the owner's credentials).
    pub fn open(path: &Path) -> Result<Dir, FsxError> {
        let fd = rustix::fs::open(
            path,
            OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
            Mode::empty(),
        )
        .map_err(io("open", path))?;
        expect_type(&fd, path, FileType::Directory)?;
        Ok(Dir {
            fd,
            path: path.to_path_buf(),
        })
    }

    /// Opens an absolute directory path that only root controls: walked from `/` one
    /// component at a time without following symlinks, and every component (the directory
    /// itself included) owned by root and writable by nobody else unless sticky. This is the
    /// anchor for anything root creates or removes by name.
    pub fn open_trusted(path: &Path) -> Result<Dir, FsxError> {
        Self::open_trusted_for(path, None)
    }

    /// [`Dir::open_trusted`], where the last component may also belong to `uid` (a
    /// directory root made for the owner and that root then only reads through fds).
    pub fn open_trusted_for(path: &Path, last_owner: Option<u32>) -> Result<Dir, FsxError> {
        if !path.is_absolute() {
            return Err(FsxError::Untrusted {
                path: path.to_path_buf(),
                why: "not an absolute path".into(),
            });
        }
        let mut dir = Dir::open(Path::new("/"))?;
        let untrusted = |p: &Path, why: String| FsxError::Untrusted {
            path: p.to_path_buf(),
            why,
        };
        let st = rustix::fs::fstat(&dir.fd).map_err(io("stat", Path::new("/")))?;
        trusted_dir(&st, None).map_err(|w| untrusted(Path::new("/"), w))?;
        let comps: Vec<Component> = path.components().collect();
        let n = comps.len();
        for (i, c) in comps.into_iter().enumerate() {
            let name = match c {
                Component::RootDir => continue,
                Component::Normal(n) => n,
                _ => return Err(untrusted(path, "contains '.' or '..'".into())),
            };
            let next = dir.open_dir(Path::new(name))?;
            let st = rustix::fs::fstat(&next.fd).map_err(io("stat", &next.path))?;
            let also = if i + 1 == n { last_owner } else { None };
            trusted_dir(&st, also).map_err(|w| untrusted(&next.path, w))?;
            dir = next;
        }
        dir.path = path.to_path_buf();
        Ok(dir)
    }

    /// A second handle on the same directory.
    pub fn try_clone(&self) -> Result<Dir, FsxError> {
        let fd = self.fd.try_clone().map_err(|source| FsxError::Io {
            what: "duplicate",
            path: self.path.clone(),
            source,
        })?;
        Ok(Dir {
            fd,
            path: self.path.clone(),
        })
    }

    /// The path this directory was opened by (for messages).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The directory's own status.
    pub fn stat(&self) -> Result<Stat, FsxError> {
        rustix::fs::fstat(&self.fd).map_err(io("stat", &self.path))
    }

    fn beneath(&self, rel: &Path, flags: OFlags, mode: u32) -> Result<OwnedFd, FsxError> {
        relative(rel)?;
        let full = self.path.join(rel);
        let flags = flags | OFlags::CLOEXEC | OFlags::NOFOLLOW;
        let mode = Mode::from_raw_mode(mode);
        let opened = match rustix::fs::openat2(&self.fd, rel, flags, mode, BENEATH) {
            // No openat2 (a kernel before 5.6, or a seccomp filter such as systemd's
            // RestrictSUIDSGID=, which cannot look into its arguments): the same walk by hand.
            Err(rustix::io::Errno::NOSYS) => self.walk(rel, flags, mode),
            other => other,
        };
        opened.map_err(|e| match e {
            rustix::io::Errno::LOOP | rustix::io::Errno::XDEV => FsxError::Escape { path: full },
            // O_DIRECTORY | O_NOFOLLOW on a symlink says ENOTDIR: name it for what it is.
            rustix::io::Errno::NOTDIR
                if rustix::fs::statat(&self.fd, rel, AtFlags::SYMLINK_NOFOLLOW)
                    .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Symlink) =>
            {
                FsxError::Escape { path: full }
            }
            e => io("open", &full)(e),
        })
    }

    /// `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)` by hand: one `openat` per component,
    /// each with `O_NOFOLLOW` (a symlink, magic links included, is never followed), the
    /// directories as `O_PATH`; `..` and absolute paths were refused by the caller.
    fn walk(&self, rel: &Path, flags: OFlags, mode: Mode) -> Result<OwnedFd, rustix::io::Errno> {
        let comps: Vec<&OsStr> = rel.iter().collect();
        let Some((last, dirs)) = comps.split_last() else {
            return Err(rustix::io::Errno::INVAL);
        };
        let mut cur: Option<OwnedFd> = None;
        for c in dirs {
            let at = cur.as_ref().map_or(self.fd.as_fd(), |f| f.as_fd());
            let next = rustix::fs::openat(
                at,
                *c,
                OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )?;
            cur = Some(next);
        }
        let at = cur.as_ref().map_or(self.fd.as_fd(), |f| f.as_fd());
        let fd = rustix::fs::openat(at, *last, flags, mode)?;
        if flags.contains(OFlags::PATH) {
            // O_PATH | O_NOFOLLOW opens a symlink itself: refuse it like openat2 would.
            let st = rustix::fs::fstat(&fd)?;
            if FileType::from_raw_mode(st.st_mode) == FileType::Symlink {
                return Err(rustix::io::Errno::LOOP);
            }
        }
        Ok(fd)
    }

    /// The full path of `rel` (for messages).
    pub fn join(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.path.join(rel)
    }

    /// Opens a directory below this one (no symlink anywhere).
    pub fn open_dir(&self, rel: &Path) -> Result<Dir, FsxError> {
        let fd = self.beneath(rel, OFlags::DIRECTORY | OFlags::RDONLY, 0)?;
        let path = self.path.join(rel);
        expect_type(&fd, &path, FileType::Directory)?;
        Ok(Dir { fd, path })
    }

    /// Opens a file below this one with `flags` (no symlink anywhere, never a FIFO's
    /// blocking open: `O_NONBLOCK` is added and cleared again for regular files) and checks
    /// it is a regular file.
    pub fn open_file(&self, rel: &Path, flags: OFlags) -> Result<(File, Stat), FsxError> {
        let fd = self.beneath(rel, flags | OFlags::NONBLOCK, 0)?;
        let path = self.path.join(rel);
        let st = expect_type(&fd, &path, FileType::RegularFile)?;
        let fl = rustix::fs::fcntl_getfl(&fd).map_err(io("open", &path))?;
        rustix::fs::fcntl_setfl(&fd, fl - OFlags::NONBLOCK).map_err(io("open", &path))?;
        Ok((File::from(fd), st))
    }

    /// An `O_PATH` handle on anything below this one (no symlink anywhere), with its status.
    pub fn open_path(&self, rel: &Path) -> Result<(OwnedFd, Stat), FsxError> {
        let fd = self.beneath(rel, OFlags::PATH, 0)?;
        let st = rustix::fs::fstat(&fd).map_err(io("stat", &self.path.join(rel)))?;
        Ok((fd, st))
    }

    /// Creates a new file `name` (exclusive, no symlink followed) with `mode`.
    pub fn create(&self, name: impl AsRef<OsStr>, mode: u32) -> Result<File, FsxError> {
        let name = name.as_ref();
        single(name)?;
        let path = self.path.join(name);
        let fd = rustix::fs::openat(
            &self.fd,
            name,
            OFlags::RDWR | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(mode),
        )
        .map_err(io("create", &path))?;
        // The umask may have taken bits away; the caller asked for exactly `mode`.
        rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode)).map_err(io("chmod", &path))?;
        Ok(File::from(fd))
    }

    /// Makes a new directory `name` with `mode` and opens it.
    pub fn mkdir(&self, name: impl AsRef<OsStr>, mode: u32) -> Result<Dir, FsxError> {
        let name = name.as_ref();
        single(name)?;
        let path = self.path.join(name);
        rustix::fs::mkdirat(&self.fd, name, Mode::from_raw_mode(mode))
            .map_err(io("create", &path))?;
        let d = self.open_dir(Path::new(name))?;
        rustix::fs::fchmod(&d.fd, Mode::from_raw_mode(mode)).map_err(io("chmod", &path))?;
        Ok(d)
    }

    /// Opens directory `name`, making it first when missing. An existing one must be a
    /// directory (not a symlink).
    pub fn ensure_dir(&self, name: impl AsRef<OsStr>, mode: u32) -> Result<Dir, FsxError> {
        let name = name.as_ref();
        match self.mkdir(name, mode) {
            Ok(d) => Ok(d),
            Err(e) if e.is_exists() => self.open_dir(Path::new(name)),
            Err(e) => Err(e),
        }
    }

    /// Makes a FIFO `name` with `mode`.
    pub fn mkfifo(&self, name: impl AsRef<OsStr>, mode: u32) -> Result<(), FsxError> {
        let name = name.as_ref();
        single(name)?;
        rustix::fs::mkfifoat(&self.fd, name, Mode::from_raw_mode(mode))
            .map_err(io("create the FIFO", &self.path.join(name)))
    }

    /// Makes a block device node `name`.
    pub fn mknod_block(
        &self,
        name: impl AsRef<OsStr>,
        mode: u32,
        dev: rustix::fs::Dev,
    ) -> Result<(), FsxError> {
        let name = name.as_ref();
        single(name)?;
        rustix::fs::mknodat(
            &self.fd,
            name,
            FileType::BlockDevice,
            Mode::from_raw_mode(mode),
            dev,
        )
        .map_err(io("mknod", &self.path.join(name)))
    }

    /// `fchownat(name, AT_SYMLINK_NOFOLLOW)`: only for entries of a directory nobody but
    /// root can write (so the name cannot be swapped between creating and chowning it).
    pub fn chown_at(&self, name: impl AsRef<OsStr>, uid: u32, gid: u32) -> Result<(), FsxError> {
        let name = name.as_ref();
        single(name)?;
        rustix::fs::chownat(
            &self.fd,
            name,
            Some(rustix::fs::Uid::from_raw(uid)),
            Some(rustix::fs::Gid::from_raw(gid)),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(io("chown", &self.path.join(name)))
    }

    /// Status of entry `name` without following it; `None` when it does not exist.
    pub fn stat_at(&self, name: impl AsRef<OsStr>) -> Result<Option<Stat>, FsxError> {
        let name = name.as_ref();
        single(name)?;
        match rustix::fs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some(st)),
            Err(rustix::io::Errno::NOENT) => Ok(None),
            Err(e) => Err(io("stat", &self.path.join(name))(e)),
        }
    }

    /// Removes the file (or symlink, FIFO, socket, node) `name`. Missing is fine.
    pub fn unlink(&self, name: impl AsRef<OsStr>) -> Result<(), FsxError> {
        let name = name.as_ref();
        single(name)?;
        match rustix::fs::unlinkat(&self.fd, name, AtFlags::empty()) {
            Ok(()) | Err(rustix::io::Errno::NOENT) => Ok(()),
            Err(e) => Err(io("remove", &self.path.join(name))(e)),
        }
    }

    /// Removes `name` and everything below it. Symlinks are removed, never followed; a
    /// directory on another filesystem (a mount point) is refused rather than entered.
    /// Missing is fine.
    pub fn remove_tree(&self, name: impl AsRef<OsStr>) -> Result<(), FsxError> {
        let name = name.as_ref();
        single(name)?;
        let dev = self.stat()?.st_dev;
        self.remove_entry(name, dev, 0)
    }

    fn remove_entry(&self, name: &OsStr, dev: u64, depth: u32) -> Result<(), FsxError> {
        let path = self.path.join(name);
        let st = match rustix::fs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(rustix::io::Errno::NOENT) => return Ok(()),
            Err(e) => return Err(io("stat", &path)(e)),
        };
        if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
            return self.unlink(name);
        }
        if st.st_dev != dev {
            return Err(FsxError::Untrusted {
                path,
                why: "another filesystem is mounted there".into(),
            });
        }
        if depth > 64 {
            return Err(FsxError::Untrusted {
                path,
                why: "nested more than 64 directories deep".into(),
            });
        }
        let sub = self.open_dir(Path::new(name))?;
        if sub.stat()?.st_dev != dev {
            return Err(FsxError::Untrusted {
                path,
                why: "another filesystem is mounted there".into(),
            });
        }
        for child in sub.names()? {
            sub.remove_entry(&child, dev, depth + 1)?;
        }
        match rustix::fs::unlinkat(&self.fd, name, AtFlags::REMOVEDIR) {
            Ok(()) | Err(rustix::io::Errno::NOENT) => Ok(()),
            Err(e) => Err(io("remove", &path)(e)),
        }
    }

    /// The names in this directory (without `.` and `..`).
    pub fn names(&self) -> Result<Vec<std::ffi::OsString>, FsxError> {
        let fd = rustix::fs::openat(
            &self.fd,
            ".",
            OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(io("open", &self.path))?;
        let mut dir = rustix::fs::Dir::new(fd).map_err(io("read", &self.path))?;
        let mut out = Vec::new();
        while let Some(e) = dir.read() {
            let e = e.map_err(io("read", &self.path))?;
            let n = e.file_name().to_bytes();
            if n != b"." && n != b".." {
                out.push(OsStr::from_bytes(n).to_os_string());
            }
        }
        Ok(out)
    }

    /// Reads a small regular file below this one: opened without blocking (a FIFO is refused,
    /// never waited on), no symlink anywhere, at most `cap` bytes.
    pub fn read_capped(&self, rel: &Path, cap: u64) -> Result<Vec<u8>, FsxError> {
        let (f, st) = self.open_file(rel, OFlags::RDONLY)?;
        read_all_capped(f, &st, &self.path.join(rel), cap)
    }

    /// [`Dir::read_capped`] that also refuses a file with more than one hard link (a link the
    /// owner made to a file they cannot read themselves).
    pub fn read_capped_single(&self, rel: &Path, cap: u64) -> Result<Vec<u8>, FsxError> {
        let (f, st) = self.open_file(rel, OFlags::RDONLY)?;
        let path = self.path.join(rel);
        if st.st_nlink != 1 {
            return Err(FsxError::Linked {
                path,
                nlink: st.st_nlink,
            });
        }
        read_all_capped(f, &st, &path, cap)
    }
}

/// Reads an opened regular file, at most `cap` bytes.
pub fn read_all_capped(f: File, st: &Stat, path: &Path, cap: u64) -> Result<Vec<u8>, FsxError> {
    if st.st_size as u64 > cap {
        return Err(FsxError::TooLarge {
            path: path.to_path_buf(),
            cap,
        });
    }
    let mut buf = Vec::new();
    f.take(cap + 1)
        .read_to_end(&mut buf)
        .map_err(|source| FsxError::Io {
            what: "read",
            path: path.to_path_buf(),
            source,
        })?;
    if buf.len() as u64 > cap {
        return Err(FsxError::TooLarge {
            path: path.to_path_buf(),
            cap,
        });
    }
    Ok(buf)
}

/// Reads a small regular file by absolute path without blocking and without following a
/// symlink in its last component, at most `cap` bytes. For callers that work with their own
/// credentials (the owner's steps); root uses [`Dir`].
pub fn read_path_capped(path: &Path, cap: u64) -> Result<Vec<u8>, FsxError> {
    let fd = rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(io("open", path))?;
    let st = expect_type(&fd, path, FileType::RegularFile)?;
    read_all_capped(File::from(fd), &st, path, cap)
}

/// The last `lines` non-empty lines of a log (at most its last 16 KiB), opened like
/// [`read_path_capped`] (no symlink in the last component, no FIFO, regular files only), for
/// error messages; a note when it is empty or unreadable.
pub fn tail_path(path: &Path, lines: usize) -> String {
    use std::os::unix::fs::FileExt;
    const TAIL: u64 = 16 * 1024;
    let opened = rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(io("open", path))
    .and_then(|fd| {
        let st = expect_type(&fd, path, FileType::RegularFile)?;
        Ok((File::from(fd), st))
    });
    let (f, st) = match opened {
        Ok(x) => x,
        Err(e) => return format!("({})", crate::cli::one_line(&e)),
    };
    let len = st.st_size as u64;
    let start = len.saturating_sub(TAIL);
    let mut buf = vec![0u8; (len - start) as usize];
    let n = f.read_at(&mut buf, start).unwrap_or(0);
    buf.truncate(n);
    let text = String::from_utf8_lossy(&buf);
    let all: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    if all.is_empty() {
        return format!("({} is empty)", path.display());
    }
    let first = all.len().saturating_sub(lines);
    format!("{}:\n  {}", path.display(), all[first..].join("\n  "))
}

/// Splits an absolute path into its parent directory and its last component.
pub fn split(path: &Path) -> Result<(&Path, &OsStr), FsxError> {
    match (path.parent(), path.file_name()) {
        (Some(p), Some(n)) if path.is_absolute() => Ok((p, n)),
        _ => Err(FsxError::BadName {
            name: path.to_path_buf(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};

    fn tmp(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("banger-fsx-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn beneath_refuses_symlinks_dots_and_absolute_paths() {
        let d = tmp("beneath");
        std::fs::create_dir_all(d.join("a/b")).unwrap();
        std::fs::write(d.join("a/b/f"), b"x").unwrap();
        symlink(d.join("a"), d.join("link")).unwrap();
        symlink("/etc/passwd", d.join("a/pw")).unwrap();
        let dir = Dir::open(&d).unwrap();
        assert_eq!(dir.read_capped(Path::new("a/b/f"), 10).unwrap(), b"x");
        for bad in ["link/b/f", "a/pw", "../x", "a/../a/b/f", "/etc/passwd", ""] {
            assert!(
                dir.read_capped(Path::new(bad), 10).is_err(),
                "{bad} was followed"
            );
        }
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn the_walk_without_openat2_refuses_the_same() {
        let d = tmp("walk");
        std::fs::create_dir_all(d.join("a/b")).unwrap();
        std::fs::write(d.join("a/b/f"), b"x").unwrap();
        symlink(d.join("a"), d.join("link")).unwrap();
        symlink("/etc/passwd", d.join("a/pw")).unwrap();
        let dir = Dir::open(&d).unwrap();
        let rd = OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW;
        assert!(dir.walk(Path::new("a/b/f"), rd, Mode::empty()).is_ok());
        for bad in ["link/b/f", "a/pw", "link"] {
            assert!(
                dir.walk(Path::new(bad), rd, Mode::empty()).is_err(),
                "{bad} was followed"
            );
            assert!(
                dir.walk(
                    Path::new(bad),
                    OFlags::PATH | OFlags::NOFOLLOW,
                    Mode::empty()
                )
                .is_err(),
                "{bad} was followed (O_PATH)"
            );
        }
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn fifos_are_refused_without_blocking_and_reads_are_capped() {
        let d = tmp("fifo");
        let dir = Dir::open(&d).unwrap();
        dir.mkfifo("p", 0o600).unwrap();
        let t = std::time::Instant::now();
        let e = dir.read_capped(Path::new("p"), 10).unwrap_err();
        assert!(matches!(e, FsxError::WrongType { .. }), "{e}");
        assert!(t.elapsed() < std::time::Duration::from_secs(1));
        std::fs::write(d.join("big"), vec![b'a'; 100]).unwrap();
        assert!(matches!(
            dir.read_capped(Path::new("big"), 99),
            Err(FsxError::TooLarge { .. })
        ));
        assert_eq!(dir.read_capped(Path::new("big"), 100).unwrap().len(), 100);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn hard_links_are_refused_where_asked() {
        let d = tmp("nlink");
        std::fs::write(d.join("f"), b"1").unwrap();
        std::fs::hard_link(d.join("f"), d.join("g")).unwrap();
        let dir = Dir::open(&d).unwrap();
        assert!(matches!(
            dir.read_capped_single(Path::new("g"), 10),
            Err(FsxError::Linked { nlink: 2, .. })
        ));
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn create_is_exclusive_and_never_follows() {
        let d = tmp("create");
        let dir = Dir::open(&d).unwrap();
        symlink(d.join("target"), d.join("link")).unwrap();
        assert!(dir.create("link", 0o600).is_err());
        assert!(!d.join("target").exists());
        dir.create("f", 0o640).unwrap();
        assert!(dir.create("f", 0o600).unwrap_err().is_exists());
        let mode = std::fs::metadata(d.join("f")).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o640);
        assert!(dir.create("a/b", 0o600).is_err());
        assert!(dir.create("..", 0o600).is_err());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn remove_tree_removes_links_not_their_targets() {
        let d = tmp("rmtree");
        let keep = d.join("keep");
        std::fs::create_dir_all(&keep).unwrap();
        std::fs::write(keep.join("precious"), b"p").unwrap();
        let t = d.join("t");
        std::fs::create_dir_all(t.join("x/y")).unwrap();
        std::fs::write(t.join("x/y/f"), b"").unwrap();
        symlink(&keep, t.join("x/to-keep")).unwrap();
        std::fs::hard_link(keep.join("precious"), t.join("hl")).unwrap();
        let dir = Dir::open(&d).unwrap();
        dir.remove_tree("t").unwrap();
        assert!(!t.exists());
        assert_eq!(std::fs::read(keep.join("precious")).unwrap(), b"p");
        dir.remove_tree("t").unwrap();
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn trusted_paths_need_root_owned_unshared_ancestors() {
        if !rustix::process::geteuid().is_root() {
            return;
        }
        let d = tmp("trusted");
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::create_dir_all(d.join("ok/deeper")).unwrap();
        assert!(Dir::open_trusted(&d.join("ok/deeper")).is_ok());
        std::fs::create_dir_all(d.join("open/inner")).unwrap();
        std::fs::set_permissions(d.join("open"), std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(matches!(
            Dir::open_trusted(&d.join("open/inner")),
            Err(FsxError::Untrusted { .. })
        ));
        std::fs::set_permissions(d.join("open"), std::fs::Permissions::from_mode(0o1777)).unwrap();
        assert!(Dir::open_trusted(&d.join("open/inner")).is_ok());
        std::fs::create_dir_all(d.join("theirs/inner")).unwrap();
        std::os::unix::fs::chown(d.join("theirs"), Some(4343), Some(4343)).unwrap();
        assert!(Dir::open_trusted(&d.join("theirs/inner")).is_err());
        assert!(Dir::open_trusted_for(&d.join("theirs"), Some(4343)).is_ok());
        symlink(d.join("ok"), d.join("sym")).unwrap();
        assert!(Dir::open_trusted(&d.join("sym/deeper")).is_err());
        let _ = std::fs::remove_dir_all(&d);
    }
}
