//! Creating, listing and removing VM disks. Every object is put in the ledger before it is
//! made (so a crash leaves an entry cleanup can act on, never an orphan), and a failure
//! half way undoes everything made so far, in reverse, ledger entries included.

use super::customize::{self, Custom};
use super::{clone, dm, fail_point, Method, SnapError};
use crate::ledger::{Entry, Ledger};
use banger::config::Config;
use banger::store::Lock;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Kinds of ledger entries this module owns.
pub const KINDS: &[&str] = &["dm", "loop", "disk"];

/// What `create` asks for.
#[derive(Debug, Clone, Default)]
pub struct CreateReq {
    pub vm: String,
    pub image: String,
    pub method: Option<Method>,
    pub disk_size: Option<u64>,
    pub custom: Custom,
}

/// The result: the record's `snap` section, plus warnings for the user's stderr.
#[derive(Debug, Clone)]
pub struct Created {
    pub method: Method,
    pub path: String,
    pub image: String,
    pub size_bytes: u64,
    pub host_keys: BTreeMap<String, String>,
    pub customized: bool,
    pub warnings: Vec<String>,
}

impl Created {
    pub fn to_json(&self) -> Value {
        json!({
            "method": self.method.as_str(),
            "path": self.path,
            "image": self.image,
            "size_bytes": self.size_bytes,
            "host_keys": self.host_keys,
            "customized": self.customized,
            "warnings": self.warnings,
        })
    }
}

/// Paths of one VM's disk, derived from names only.
pub struct Paths {
    pub image_rootfs: PathBuf,
    pub vm_dir: PathBuf,
    pub disk: PathBuf,
    pub cow: PathBuf,
}

impl Paths {
    pub fn new(cfg: &Config, vm: &str, image: &str) -> Paths {
        let vm_dir = cfg.vm_dir(vm);
        Paths {
            image_rootfs: cfg.images_dir().join(image).join("rootfs.ext4"),
            disk: vm_dir.join("disk.ext4"),
            cow: vm_dir.join("disk.cow"),
            vm_dir,
        }
    }
}

/// One lock per VM for snap ops, in the helper's root-owned dir.
fn lock(cfg: &Config, vm: &str) -> Result<Lock, SnapError> {
    let dir = cfg.root_dir.join("locks");
    std::fs::create_dir_all(&dir).map_err(|source| SnapError::Create {
        path: dir.clone(),
        source,
    })?;
    Lock::exclusive(&dir.join(format!("snap-{vm}.lock"))).map_err(|e| SnapError::Io {
        what: "lock",
        path: dir,
        source: std::io::Error::other(banger::cli::one_line(&e)),
    })
}

/// Undo log: what was made, undone in reverse on drop unless committed.
struct Undo<'a> {
    ledger: &'a Ledger,
    vm: String,
    made: Vec<Entry>,
    committed: bool,
}

impl<'a> Undo<'a> {
    fn new(ledger: &'a Ledger, vm: &str) -> Undo<'a> {
        Undo {
            ledger,
            vm: vm.into(),
            made: Vec::new(),
            committed: false,
        }
    }
    /// Records the entry in the ledger (before the object exists) and in the undo log.
    fn add(&mut self, kind: &str, id: &str, data: Value) -> Result<(), SnapError> {
        let e = Entry::new(&self.vm, kind, id, data);
        self.ledger.add(e.clone())?;
        self.made.push(e);
        Ok(())
    }
    /// Drops the last entry without releasing anything (the object was never made).
    fn forget_last(&mut self) {
        if let Some(e) = self.made.pop() {
            let _ = self.ledger.remove(&e.vm, &e.kind, &e.id);
        }
    }
    /// Replaces the last entry's id (a loop device is known only once attached).
    fn set_last_id(&mut self, id: &str) -> Result<(), SnapError> {
        if let Some(last) = self.made.pop() {
            let mut e = last.clone();
            e.id = id.into();
            self.ledger.add(e.clone())?;
            self.ledger.remove(&last.vm, &last.kind, &last.id)?;
            self.made.push(e);
        }
        Ok(())
    }
}

impl Drop for Undo<'_> {
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        for e in self.made.iter().rev() {
            if release(e).is_ok() {
                let _ = self.ledger.remove(&e.vm, &e.kind, &e.id);
            }
        }
    }
}

/// Releases one object this module made. Already gone is success.
fn release(e: &Entry) -> Result<(), SnapError> {
    match e.kind.as_str() {
        "dm" => dm::dm_remove(&e.id),
        "loop" => {
            if !e.id.starts_with("/dev/loop") {
                return Ok(()); // a placeholder never attached
            }
            let file = e.data.get("file").and_then(Value::as_str).unwrap_or("");
            dm::loop_detach(&e.id, file)
        }
        "disk" => match std::fs::remove_file(&e.id) {
            Ok(()) => Ok(()),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(SnapError::Io {
                what: "remove",
                path: PathBuf::from(&e.id),
                source,
            }),
        },
        _ => Ok(()),
    }
}

fn snap_entries(ledger: &Ledger, vm: &str) -> Result<Vec<Entry>, SnapError> {
    Ok(ledger
        .for_vm(vm)?
        .into_iter()
        .filter(|e| KINDS.contains(&e.kind.as_str()))
        .collect())
}

/// The VM's disk entry, if it has one.
pub fn disk_entry(ledger: &Ledger, vm: &str) -> Result<Option<Entry>, SnapError> {
    Ok(snap_entries(ledger, vm)?
        .into_iter()
        .find(|e| e.kind == "disk"))
}

fn new_file(path: &Path) -> Result<File, SnapError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .mode(0o600)
        .open(path)
        .map_err(|source| match source.kind() {
            std::io::ErrorKind::AlreadyExists => SnapError::Stray {
                path: path.to_path_buf(),
            },
            _ => SnapError::Create {
                path: path.to_path_buf(),
                source,
            },
        })
}

fn owner(cfg: &Config) -> Option<(u32, u32)> {
    cfg.owner_uid.map(|u| (u, cfg.owner_gid.unwrap_or(u)))
}

fn chown(path: &Path, cfg: &Config) -> Result<(), SnapError> {
    if let Some((u, g)) = owner(cfg) {
        std::os::unix::fs::chown(path, Some(u), Some(g)).map_err(|source| SnapError::Io {
            what: "chown",
            path: path.to_path_buf(),
            source,
        })?;
    }
    Ok(())
}

/// Which method to use when none was forced: dm where it works, else reflink (tried by
/// the clone itself, falling back to copy).
fn auto_method() -> Method {
    if dm::available().is_ok() {
        Method::DmSnapshot
    } else {
        Method::Reflink
    }
}

/// Creates the VM's disk and customizes it. Paths were validated by the op layer.
pub fn create(cfg: &Config, ledger: &Ledger, req: &CreateReq) -> Result<Created, SnapError> {
    let p = Paths::new(cfg, &req.vm, &req.image);
    let _g = lock(cfg, &req.vm)?;
    if let Some(e) = disk_entry(ledger, &req.vm)? {
        return Err(SnapError::Exists {
            vm: req.vm.clone(),
            path: e.data["path"].as_str().unwrap_or(&e.id).to_string(),
            method: e.data["method"].as_str().unwrap_or("?").to_string(),
        });
    }
    match std::fs::symlink_metadata(&p.vm_dir) {
        Ok(m) if m.is_dir() => {}
        _ => {
            return Err(SnapError::NoVm {
                vm: req.vm.clone(),
                path: p.vm_dir.clone(),
            })
        }
    }
    let image_meta = match std::fs::symlink_metadata(&p.image_rootfs) {
        Ok(m) if m.is_file() => m,
        _ => {
            return Err(SnapError::NoImage {
                image: req.image.clone(),
                path: p.image_rootfs.clone(),
            })
        }
    };
    let image_size = image_meta.len();
    let size = match req.disk_size {
        Some(s) if s < image_size => {
            return Err(SnapError::Shrink {
                want: s,
                have: image_size,
            })
        }
        Some(s) => s.div_ceil(4096) * 4096,
        None => image_size,
    };
    let method = req.method.unwrap_or_else(auto_method);
    let mut undo = Undo::new(ledger, &req.vm);
    let mut warnings = Vec::new();
    let (method, path) = match method {
        Method::DmSnapshot => (
            Method::DmSnapshot,
            make_dm(&mut undo, &p, &req.vm, &req.image, image_size, size)?,
        ),
        m => {
            let m = make_file(&mut undo, &p, &req.image, m, req.method.is_some(), size)?;
            if m == Method::Copy {
                warnings.push(format!(
                    "{}: made by a full copy of the image (O(image size) in time and space): put the state dir on XFS or btrfs for reflink clones",
                    p.disk.display()
                ));
            }
            (m, p.disk.clone())
        }
    };
    chown(&path, cfg)?;
    if size > image_size {
        clone::grow_fs(&path, owner(cfg))?;
    }
    fail_point("snap.create:grow")?;
    let mut host_keys = BTreeMap::new();
    let customized = !req.custom.is_empty();
    if customized {
        host_keys = customize::apply(&path, &req.vm, &req.custom, owner(cfg))?;
    }
    fail_point("snap.create:customize")?;
    undo.committed = true;
    Ok(Created {
        method,
        path: path.display().to_string(),
        image: req.image.clone(),
        size_bytes: size,
        host_keys,
        customized,
        warnings,
    })
}

/// reflink or copy into `vms/VM/disk.ext4`. Returns the method that was used.
fn make_file(
    undo: &mut Undo,
    p: &Paths,
    image: &str,
    method: Method,
    forced: bool,
    size: u64,
) -> Result<Method, SnapError> {
    let disk = p.disk.display().to_string();
    undo.add(
        "disk",
        &disk,
        json!({"path": disk, "method": method.as_str(), "image": image, "size_bytes": size}),
    )?;
    let mut dst = new_file(&p.disk).inspect_err(|_| undo.forget_last())?;
    let mut src = File::open(&p.image_rootfs).map_err(|source| SnapError::Open {
        path: p.image_rootfs.clone(),
        source,
    })?;
    let used = match method {
        Method::Reflink => match clone::reflink(&src, &dst) {
            Ok(()) => Method::Reflink,
            Err(e) if !forced && clone::reflink_unsupported(&e) => Method::Copy,
            Err(source) => {
                return Err(SnapError::Reflink {
                    src: p.image_rootfs.clone(),
                    dst: p.disk.clone(),
                    source,
                })
            }
        },
        _ => Method::Copy,
    };
    if used == Method::Copy {
        clone::sparse_copy(&mut src, &mut dst).map_err(|source| SnapError::Copy {
            src: p.image_rootfs.clone(),
            dst: p.disk.clone(),
            source,
        })?;
    }
    fail_point("snap.create:clone")?;
    if size > dst.metadata().map(|m| m.len()).unwrap_or(0) {
        dst.set_len(size).map_err(|source| SnapError::Io {
            what: "grow",
            path: p.disk.clone(),
            source,
        })?;
    }
    dst.sync_all().map_err(|source| SnapError::Io {
        what: "sync",
        path: p.disk.clone(),
        source,
    })?;
    if used != method {
        undo.ledger.add(Entry::new(
            &undo.vm,
            "disk",
            &disk,
            json!({"path": disk, "method": used.as_str(), "image": image, "size_bytes": size}),
        ))?;
    }
    Ok(used)
}

/// The dm-snapshot: COW file, two loop devices, optional grown origin, the snapshot.
fn make_dm(
    undo: &mut Undo,
    p: &Paths,
    vm: &str,
    image: &str,
    image_size: u64,
    size: u64,
) -> Result<PathBuf, SnapError> {
    let name = dm::dm_name(vm);
    let mapper = dm::mapper_path(&name);
    let cow = p.cow.display().to_string();
    undo.add(
        "disk",
        &cow,
        json!({"path": mapper, "cow": cow, "method": "dm-snapshot", "image": image, "size_bytes": size}),
    )?;
    let cow_file = new_file(&p.cow).inspect_err(|_| undo.forget_last())?;
    cow_file.set_len(size).map_err(|source| SnapError::Io {
        what: "size",
        path: p.cow.clone(),
        source,
    })?;
    drop(cow_file);
    let rootfs = p.image_rootfs.display().to_string();
    undo.add(
        "loop",
        &format!("pending-base-{vm}"),
        json!({"file": rootfs, "role": "base"}),
    )?;
    let base = dm::loop_attach(&p.image_rootfs, true)?;
    undo.set_last_id(&base)?;
    fail_point("snap.create:loop")?;
    undo.add(
        "loop",
        &format!("pending-cow-{vm}"),
        json!({"file": cow, "role": "cow"}),
    )?;
    let cow_dev = dm::loop_attach(&p.cow, false)?;
    undo.set_last_id(&cow_dev)?;
    let origin = if size > image_size {
        let bn = dm::base_name(vm);
        undo.add("dm", &bn, json!({"role": "origin"}))?;
        dm::dm_create(&bn, &dm::origin_table(&base, image_size, size))?;
        dm::mapper_path(&bn)
    } else {
        base.clone()
    };
    undo.add("dm", &name, json!({"role": "snapshot", "path": mapper}))?;
    dm::dm_create(&name, &dm::snapshot_table(&origin, &cow_dev, size)).map_err(|e| {
        match dm::available() {
            Err(why) => SnapError::NoDm { why },
            Ok(()) => e,
        }
    })?;
    Ok(PathBuf::from(mapper))
}

/// Removes the VM's disk and everything made with it, in reverse order of making. Returns
/// what was removed. Only ledger entries are touched.
pub fn remove(cfg: &Config, ledger: &Ledger, vm: &str) -> Result<Vec<Entry>, SnapError> {
    let _g = lock(cfg, vm)?;
    let entries = snap_entries(ledger, vm)?;
    if entries.is_empty() {
        return Err(SnapError::NoDisk { vm: vm.into() });
    }
    let rank = |e: &Entry| match (e.kind.as_str(), e.data["role"].as_str()) {
        ("dm", Some("snapshot")) => 0,
        ("dm", _) => 1,
        ("loop", _) => 2,
        _ => 3,
    };
    let mut sorted = entries.clone();
    sorted.sort_by_key(rank);
    let mut removed = Vec::new();
    for e in sorted {
        release(&e)?;
        ledger.remove(&e.vm, &e.kind, &e.id)?;
        removed.push(e);
    }
    Ok(removed)
}

/// Writes `c` into an existing disk (the one the ledger names for `vm`).
pub fn customize(
    cfg: &Config,
    ledger: &Ledger,
    vm: &str,
    c: &Custom,
) -> Result<(BTreeMap<String, String>, String), SnapError> {
    let _g = lock(cfg, vm)?;
    let e = disk_entry(ledger, vm)?.ok_or_else(|| SnapError::NoDisk { vm: vm.into() })?;
    let path = PathBuf::from(e.data["path"].as_str().unwrap_or(&e.id));
    let keys = customize::apply(&path, vm, c, owner(cfg))?;
    Ok((keys, path.display().to_string()))
}

/// One disk for `snap.list`.
pub fn describe(e: &Entry) -> Value {
    let path = e.data["path"].as_str().unwrap_or(&e.id).to_string();
    // The file that holds the VM's blocks: the disk, or the COW file for dm.
    let file = e.data["cow"].as_str().unwrap_or(&e.id);
    let meta = std::fs::symlink_metadata(file).ok();
    let size = e.data["size_bytes"]
        .as_u64()
        .or(meta.as_ref().map(|m| m.len()));
    json!({
        "vm": e.vm,
        "method": e.data["method"],
        "path": path,
        "image": e.data["image"],
        "size_bytes": size,
        "disk_bytes": meta.as_ref().map(|m| m.blocks() * 512),
        "exists": meta.is_some(),
        "created_at": e.created_at,
    })
}

/// Every VM's disk (or one VM's).
pub fn list(ledger: &Ledger, vm: Option<&str>) -> Result<Vec<Value>, SnapError> {
    let entries = match vm {
        Some(v) => ledger.for_vm(v)?,
        None => ledger.list()?,
    };
    let mut out: Vec<Value> = entries
        .iter()
        .filter(|e| e.kind == "disk")
        .map(describe)
        .collect();
    out.sort_by(|a, b| a["vm"].as_str().cmp(&b["vm"].as_str()));
    Ok(out)
}
