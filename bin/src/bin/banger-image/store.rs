//! The image store: `images/NAME/{rootfs.ext4, vmlinux, initrd?, image.json}`. An image is
//! assembled in a hidden staging dir (`images/.stage-NAME-PID-N`) and renamed into place
//! whole, so `list` and the other steps never see half an image; a failure removes the
//! staging dir.

use banger::config::Config;
use banger::record::{self, Record};
use banger::store::{valid_name, Lock};
use rustix::fs::FileType;
use serde_json::{json, Map, Value};
use std::fs::File;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

/// The kernel command line an image gets unless it says otherwise.
pub const DEFAULT_BOOT_ARGS: &str = "console=ttyS0 reboot=k panic=1 pci=off";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "invalid image name {0:?}: use 1-32 characters a-z, 0-9 and '-', starting with a letter"
    )]
    BadName(String),
    #[error("an image named {0:?} already exists (remove it first with: banger-image rm {0})")]
    Exists(String),
    #[error("no image named {0:?} (banger-image list shows the images)")]
    NotFound(String),
    #[error("image {name:?} is used by {vms}: their disks and kernels come from it (remove them first: banger-snap rm {vms})")]
    InUse { name: String, vms: String },
    #[error("cannot {what} {path}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a valid image.json")]
    Corrupt {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot lock the image store")]
    Lock(#[source] banger::store::StoreError),
}

pub fn io<'a>(
    what: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// Files from this size on show their progress (copy, checksum) on stderr.
const LARGE: u64 = 64 << 20;

/// Progress for work on a file of `len` bytes, when it is large.
fn progress_for(what: String, len: u64) -> Option<banger::progress::Progress> {
    (len >= LARGE).then(|| {
        eprintln!("{}: {what} ({} MiB)", crate::BIN, len >> 20);
        banger::progress::Progress::start(crate::BIN, &what)
    })
}

/// SHA-256 of an opened file, streamed (`path` names it in messages).
fn sha256_of(f: File, path: &Path) -> Result<String, StoreError> {
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let mut p = progress_for(format!("checksumming {}", path.display()), len);
    let sum = banger::digest::sha256_read(f, |done| {
        if let Some(p) = p.as_mut() {
            p.bytes(done, len);
        }
    });
    if let Some(p) = p {
        p.finish(sum.is_ok());
    }
    sum.map_err(io("read", path))
}

/// Copies `src` into `d`, a new file already made (`dst` names it in messages): a reflink
/// when the filesystem shares blocks, else an ordinary copy (copy_file_range in 64 MiB steps,
/// which keeps holes on most filesystems, with its progress on stderr for a large file).
fn copy_into(src: &Path, d: File, dst: &Path) -> Result<(), StoreError> {
    let s = File::open(src).map_err(io("read", src))?;
    if rustix::fs::ioctl_ficlone(d.as_fd(), s.as_fd()).is_err() {
        let len = s.metadata().map_err(io("stat", src))?.len();
        let mut p = progress_for(format!("copying {} (no reflink here)", src.display()), len);
        let mut done = 0u64;
        let result = loop {
            let step = (len - done).min(64 << 20) as usize;
            if step == 0 {
                break Ok(());
            }
            match rustix::fs::copy_file_range(&s, None, &d, None, step) {
                Ok(0) => break Ok(()),
                Ok(n) => done += n as u64,
                // No copy_file_range between these files (another filesystem, an old
                // kernel): the plain copy of what is left.
                Err(_) => {
                    let (mut s, mut d) = (&s, &d);
                    break std::io::copy(&mut s, &mut d).map(|_| ());
                }
            }
            if let Some(p) = p.as_mut() {
                p.bytes(done, len);
            }
        };
        if let Some(p) = p {
            p.finish(result.is_ok());
        }
        result.map_err(io("copy into", dst))?;
    }
    d.sync_all().map_err(io("sync", dst))
}

pub struct Images {
    pub dir: PathBuf,
    locks: PathBuf,
    /// The owner's credentials when root works on the owner's store: debugfs parses an image
    /// with them.
    owner: Option<banger::detach::Creds>,
    /// The guest agent this host installs (the configuration's, else the installed one).
    agent: Option<PathBuf>,
}

/// An image being assembled. Removed on drop unless committed.
pub struct Staging {
    pub dir: PathBuf,
    name: String,
    files: Map<String, Value>,
    committed: bool,
    /// More top-level fields for image.json (e.g. `agent`).
    pub extra: Map<String, Value>,
    owner: Option<banger::detach::Creds>,
    agent: Option<PathBuf>,
    /// The staging directory as made: root's, in the owner's image store. The owner cannot
    /// touch its entries but can rename it away and put something else at its path, so what
    /// root does to it after it is made (giving the files to the owner, preparing the
    /// rootfs) goes through this fd, never through the path.
    fd: banger::fsx::Dir,
}

impl Staging {
    /// Copies `src` in as `file` (rootfs.ext4, vmlinux, initrd) and records its sha256.
    pub fn add(&mut self, file: &str, src: &Path) -> Result<(), StoreError> {
        let dst = self.dir.join(file);
        // Made through the staging dir's fd: root never writes where a swapped path points.
        let d = self.fd.create(file, 0o644).map_err(|e| StoreError::Io {
            what: "create",
            path: dst.clone(),
            source: std::io::Error::other(banger::cli::one_line(&e)),
        })?;
        copy_into(src, d, &dst)?;
        self.record(file)
    }
    /// Records a file already written into the staging dir. The root filesystem is first
    /// prepared for fast first boots (its identity slots, see `slots.json`).
    pub fn record(&mut self, file: &str) -> Result<(), StoreError> {
        if file == "rootfs.ext4" {
            self.prepare_slots();
        }
        let p = self.dir.join(file);
        // Through the staging dir's fd, as everything root does in it.
        let (f, st) = self
            .fd
            .open_file(Path::new(file), rustix::fs::OFlags::RDONLY)
            .map_err(|e| StoreError::Io {
                what: "read",
                path: p.clone(),
                source: std::io::Error::other(banger::cli::one_line(&e)),
            })?;
        let size = st.st_size as u64;
        let sum = sha256_of(f, &p)?;
        self.files
            .insert(file.into(), json!({"size": size, "sha256": sum}));
        Ok(())
    }
    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    /// Puts the identity slots into the staged `rootfs.ext4` and writes `slots.json` (see
    /// `banger_helper::snap::slots`): a VM's identity then goes into its new disk without
    /// debugfs. An image that cannot be prepared is kept as it is, with a warning: its VMs
    /// get their identity by debugfs, as before.
    fn prepare_slots(&mut self) {
        use banger_helper::snap::slots::{self, Prepared};
        let p = self.dir.join("rootfs.ext4");
        let warn = |why: String| {
            eprintln!(
                "{}: warning: {}: no identity slots ({why}): each new VM's identity is written with debugfs (a few ms more per first up)",
                crate::BIN,
                p.display()
            )
        };
        let f = match self
            .fd
            .open_file(Path::new("rootfs.ext4"), rustix::fs::OFlags::RDWR)
        {
            Ok((f, st)) if st.st_nlink == 1 => f,
            Ok(_) => return warn("it has more than one link".into()),
            Err(e) => return warn(banger::cli::one_line(&e)),
        };
        // Built by root for the owner: the image is the owner's (as `commit` makes it), and
        // debugfs, run as the owner, opens it again through /dev/fd.
        if let Some(o) = &self.owner {
            let (uid, gid) = (
                rustix::fs::Uid::from_raw(o.uid),
                rustix::fs::Gid::from_raw(o.gid),
            );
            if let Err(e) = rustix::fs::fchown(&f, Some(uid), Some(gid)) {
                return warn(format!("cannot give it to uid {}: {e}", o.uid));
            }
        }
        // The guest agent goes in too when this host has one, as snap.create would install
        // it: a VM asking for the same agent then needs no write of it.
        let agent = self.agent.as_ref().and_then(|a| {
            let b = banger::fsx::read_path_capped(a, 64 << 20).ok()?;
            banger::agent::check_guest_binary(&b).ok()?;
            Some(b)
        });
        let map = match slots::prepare(&f, &p, self.owner.as_ref(), agent.as_deref()) {
            Ok(Prepared::Map(m)) => m,
            Ok(Prepared::Skipped(why)) => return warn(why),
            Err(e) => return warn(banger::cli::one_line(&e)),
        };
        if let Err(e) = f.sync_all() {
            return warn(format!("cannot sync it: {e}"));
        }
        let mut bytes = serde_json::to_vec_pretty(&map).unwrap_or_default();
        bytes.push(b'\n');
        let meta = self.dir.join(slots::FILE);
        if let Err(e) = banger::store::write_atomic(&meta, &bytes, 0o644) {
            warn(format!("cannot write {}: {e}", meta.display()));
        }
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

impl Images {
    pub fn new(cfg: &Config) -> Images {
        Images {
            dir: cfg.images_dir(),
            locks: cfg.locks_dir(),
            owner: cfg.owner_creds(),
            agent: banger::agent::guest_binary_path(cfg),
        }
    }

    pub fn image_dir(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The image's lock (held while its warm artifacts change).
    pub fn lock_image(&self, name: &str) -> Result<Lock, StoreError> {
        self.lock(name)
    }

    fn lock(&self, name: &str) -> Result<Lock, StoreError> {
        std::fs::create_dir_all(&self.locks).map_err(io("create", &self.locks))?;
        Lock::exclusive(&self.locks.join(format!("image-{name}.lock"))).map_err(StoreError::Lock)
    }

    /// A fresh staging dir for image `name` (which must be free).
    pub fn stage(&self, name: &str) -> Result<Staging, StoreError> {
        if !valid_name(name) {
            return Err(StoreError::BadName(name.into()));
        }
        if self.image_dir(name).exists() {
            return Err(StoreError::Exists(name.into()));
        }
        static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        std::fs::create_dir_all(&self.dir).map_err(io("create", &self.dir))?;
        let dir = self.dir.join(format!(
            ".stage-{name}-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        std::fs::create_dir(&dir).map_err(io("create", &dir))?;
        let fd = banger::fsx::Dir::open(&dir).map_err(|e| StoreError::Io {
            what: "open",
            path: dir.clone(),
            source: std::io::Error::other(banger::cli::one_line(&e)),
        })?;
        // Test builds only: `BANGER_TEST_STAGED_HOOK` runs (with the staging dir's path as
        // $1) once it exists, so the tests can play an owner who swaps it for a symlink.
        if cfg!(debug_assertions) {
            if let Ok(hook) = std::env::var("BANGER_TEST_STAGED_HOOK") {
                let _ = std::process::Command::new("sh")
                    .args(["-c", &hook, "hook"])
                    .arg(&dir)
                    .status();
            }
        }
        Ok(Staging {
            fd,
            dir,
            name: name.into(),
            files: Map::new(),
            committed: false,
            extra: Map::new(),
            owner: self.owner.clone(),
            agent: self.agent.clone(),
        })
    }

    /// Writes image.json and renames the staging dir into place. Returns the image record.
    pub fn commit(
        &self,
        mut st: Staging,
        source: Value,
        boot_args: &str,
        owner: Option<(u32, u32)>,
    ) -> Result<Record, StoreError> {
        let mut rec = record::new("image", &st.name);
        rec.insert("created_at".into(), record::now_rfc3339().into());
        rec.insert("arch".into(), crate::check::this_arch().1.into());
        rec.insert("boot_args".into(), boot_args.into());
        rec.insert("source".into(), source);
        rec.insert("files".into(), Value::Object(st.files.clone()));
        for (k, v) in &st.extra {
            rec.insert(k.clone(), v.clone());
        }
        let mut bytes = serde_json::to_vec_pretty(&rec).unwrap_or_default();
        bytes.push(b'\n');
        let meta = st.dir.join("image.json");
        banger::store::write_atomic(&meta, &bytes, 0o644).map_err(io("write", &meta))?;
        if let Some((uid, gid)) = owner {
            // Built as root for the owner: the store is the owner's. Through the staging
            // dir's fd (its entries are root's to name: no symlink followed, no hard link
            // given away), never its path, which the owner could point elsewhere.
            for f in [
                "rootfs.ext4",
                "vmlinux",
                "initrd",
                "image.json",
                "slots.json",
            ] {
                if let Ok(Some(meta)) = st.fd.stat_at(f) {
                    if FileType::from_raw_mode(meta.st_mode) == FileType::RegularFile
                        && meta.st_nlink == 1
                    {
                        let _ = st.fd.chown_at(f, uid, gid);
                    }
                }
            }
            let _ = rustix::fs::fchown(
                &st.fd,
                Some(rustix::fs::Uid::from_raw(uid)),
                Some(rustix::fs::Gid::from_raw(gid)),
            );
        }
        let _g = self.lock(&st.name)?;
        let target = self.image_dir(&st.name);
        if target.exists() {
            return Err(StoreError::Exists(st.name.clone()));
        }
        std::fs::rename(&st.dir, &target).map_err(io("rename into", &target))?;
        st.committed = true;
        if let Ok(d) = File::open(&self.dir) {
            let _ = d.sync_all();
        }
        Ok(rec)
    }

    /// Loads `images/NAME/image.json`.
    pub fn load(&self, name: &str) -> Result<Record, StoreError> {
        if !valid_name(name) {
            return Err(StoreError::BadName(name.into()));
        }
        let p = self.image_dir(name).join("image.json");
        let bytes = match std::fs::read(&p) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StoreError::NotFound(name.into()))
            }
            Err(source) => {
                return Err(StoreError::Io {
                    what: "read",
                    path: p,
                    source,
                })
            }
        };
        serde_json::from_slice(&bytes).map_err(|source| StoreError::Corrupt { path: p, source })
    }

    /// Every image, sorted by name. Staging dirs and strays are skipped.
    pub fn list(&self) -> Result<Vec<Record>, StoreError> {
        let rd = match std::fs::read_dir(&self.dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(StoreError::Io {
                    what: "read",
                    path: self.dir.clone(),
                    source,
                })
            }
        };
        let mut names: Vec<String> = rd
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| valid_name(n))
            .collect();
        names.sort();
        let mut out = Vec::new();
        for n in names {
            match self.load(&n) {
                Ok(r) => out.push(r),
                Err(StoreError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Removes an image unless a VM's disk was made from it. The image vanishes at once
    /// (renamed aside), then its files are deleted.
    pub fn remove(&self, name: &str, store: &banger::store::Store) -> Result<(), StoreError> {
        if !valid_name(name) {
            return Err(StoreError::BadName(name.into()));
        }
        let _g = self.lock(name)?;
        let dir = self.image_dir(name);
        if !dir.join("image.json").exists() && !dir.exists() {
            return Err(StoreError::NotFound(name.into()));
        }
        let users: Vec<String> = store
            .list()
            .unwrap_or_default()
            .iter()
            .filter(|r| {
                record::section(r, "snap")
                    .and_then(|s| s.get("image"))
                    .and_then(Value::as_str)
                    == Some(name)
            })
            .filter_map(|r| record::name(r).map(String::from))
            .collect();
        if !users.is_empty() {
            return Err(StoreError::InUse {
                name: name.into(),
                vms: users.join(" "),
            });
        }
        let aside = self.dir.join(format!(".rm-{name}-{}", std::process::id()));
        std::fs::rename(&dir, &aside).map_err(io("remove", &dir))?;
        std::fs::remove_dir_all(&aside).map_err(io("remove", &aside))
    }
}
