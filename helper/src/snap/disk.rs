//! Creating, adopting, listing and removing VM disks.
//!
//! Every object is put in the ledger before it is made (so a crash leaves an entry cleanup can
//! act on, never an orphan), and a failure half way undoes everything made so far, in
//! reverse, ledger entries included. A disk entry is marked `complete` once the disk is
//! whole and customized: a later `create` for the same VM adopts it (the step that asked for
//! it may have been killed before saving its record) instead of refusing.
//!
//! The owner's state dir is the owner's: every file there (the image read, the disk and COW
//! file made, removed, listed) is handled with the owner's credentials ([`Ctx::as_owner`]),
//! so the kernel gives the owner nothing they could not do themselves. Root's part is the
//! ledger, loop devices (attached from the fds opened as the owner) and device-mapper.

use super::customize::{self, Custom};
use super::loopdev::{self, Attached};
use super::{clone, dm, fail_point, Method, SnapError};
use crate::ledger::{Entry, Ledger};
use crate::ops::Ctx;
use banger::fsx::{Dir, FsxError};
use banger::store::Lock;
use rustix::fs::OFlags;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Kinds of ledger entries this module owns.
pub const KINDS: &[&str] = &["dm", "loop", "disk"];

/// The disk's file name in the VM's directory, and the COW file's for dm.
pub const DISK: &str = "disk.ext4";
pub const COW: &str = "disk.cow";

/// What `create` asks for.
#[derive(Debug, Clone, Default)]
pub struct CreateReq {
    pub vm: String,
    pub image: String,
    pub method: Option<Method>,
    pub disk_size: Option<u64>,
    pub custom: Custom,
    /// From the image's warm disk (`images/IMAGE/warm/disk.ext4`) rather than its rootfs.
    pub warm: bool,
}

impl CreateReq {
    /// The base file, relative to the image store.
    pub fn base(&self) -> PathBuf {
        if self.warm {
            Path::new(&self.image)
                .join(banger::warm::DIR)
                .join(banger::warm::DISK)
        } else {
            Path::new(&self.image).join("rootfs.ext4")
        }
    }
}

/// `agent` in the answer when banger wrote the agent: it starts as the kernel's init=.
pub const AGENT_INIT_HOOK: &str = "init-hook";

/// The result: the record's `snap` section, plus warnings for the user's stderr.
#[derive(Debug, Clone)]
pub struct Created {
    pub method: Method,
    pub path: String,
    pub image: String,
    pub size_bytes: u64,
    pub host_keys: BTreeMap<String, String>,
    pub customized: bool,
    /// `init-hook` when the agent was written into the disk.
    pub agent: Option<String>,
    pub warnings: Vec<String>,
    /// True when an earlier, complete disk was adopted rather than made now.
    pub adopted: bool,
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
            "agent": self.agent,
            "warnings": self.warnings,
            "adopted": self.adopted,
        })
    }
}

/// One lock per VM for snap ops, in the helper's root-owned dir.
pub(crate) fn lock(ctx: &Ctx, vm: &str) -> Result<Lock, SnapError> {
    let root = ctx.root_dir().map_err(|e| SnapError::Io {
        what: "open",
        path: ctx.cfg.root_dir.clone(),
        source: std::io::Error::other(e.message),
    })?;
    let locks = root.ensure_dir("locks", 0o700)?;
    Lock::exclusive(&locks.join(format!("snap-{vm}.lock"))).map_err(|e| SnapError::Io {
        what: "lock",
        path: locks.path().to_path_buf(),
        source: std::io::Error::other(banger::cli::one_line(&e)),
    })
}

/// Undo log: what was made, undone in reverse on drop unless committed.
struct Undo<'a> {
    ctx: &'a Ctx,
    vm: String,
    made: Vec<Entry>,
    committed: bool,
}

impl<'a> Undo<'a> {
    fn new(ctx: &'a Ctx, vm: &str) -> Undo<'a> {
        Undo {
            ctx,
            vm: vm.into(),
            made: Vec::new(),
            committed: false,
        }
    }
    /// Records the entry in the ledger (before the object exists) and in the undo log.
    fn add(&mut self, kind: &str, id: &str, data: Value) -> Result<(), SnapError> {
        let e = Entry::new(&self.vm, kind, id, data);
        self.ctx.ledger.add(e.clone())?;
        self.made.push(e);
        Ok(())
    }
    /// Drops the last entry without releasing anything (the object was never made).
    fn forget_last(&mut self) {
        if let Some(e) = self.made.pop() {
            let _ = self.ctx.ledger.remove(&e.vm, &e.kind, &e.id);
        }
    }
    /// Replaces the last entry (a loop device is known only once attached).
    fn replace_last(&mut self, id: &str, data: Value) -> Result<(), SnapError> {
        if let Some(last) = self.made.pop() {
            let e = Entry {
                id: id.into(),
                data: std::sync::Arc::new(data),
                ..last.clone()
            };
            self.ctx.ledger.add(e.clone())?;
            self.ctx.ledger.remove(&last.vm, &last.kind, &last.id)?;
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
            if release(self.ctx, e).is_ok() {
                let _ = self.ctx.ledger.remove(&e.vm, &e.kind, &e.id);
            }
        }
    }
}

/// Removes a file the ledger names, with the owner's credentials. Already gone is fine.
fn remove_owner_file(ctx: &Ctx, path: &Path) -> Result<(), SnapError> {
    let (dir, name) = banger::fsx::split(path)?;
    ctx.as_owner(|| match Dir::open(dir) {
        Ok(d) => d.unlink(name),
        Err(e) if e.is_not_found() => Ok(()),
        Err(e) => Err(e),
    })
    .map_err(op_to_snap)??;
    Ok(())
}

fn op_to_snap(e: banger::proto::OpError) -> SnapError {
    SnapError::Io {
        what: "work as the owner on",
        path: PathBuf::from("the state dir"),
        source: std::io::Error::other(e.message),
    }
}

fn loop_of(e: &Entry) -> Option<Attached> {
    Some(Attached {
        device: e.id.clone(),
        file_dev: e.data.get("file_dev")?.as_u64()?,
        file_ino: e.data.get("file_ino")?.as_u64()?,
    })
}

/// Releases one object this module made. Already gone is success.
fn release(ctx: &Ctx, e: &Entry) -> Result<(), SnapError> {
    match e.kind.as_str() {
        "dm" => dm::dm_remove(&e.id),
        // A placeholder never attached, or an entry without the file's identity: nothing
        // banger can prove is its own.
        "loop" => loop_of(e).map_or(Ok(()), |a| loopdev::detach(&a)),
        "disk" => remove_owner_file(ctx, Path::new(&e.id)),
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

/// Which method to use when none was forced: dm where it works, else reflink (tried by
/// the clone itself, falling back to copy).
fn auto_method() -> Method {
    if dm::available().is_ok() {
        Method::DmSnapshot
    } else {
        Method::Reflink
    }
}

/// What the owner's side of `create` opened: the VM's directory and the image.
struct Sources {
    vm_dir: Dir,
    image: File,
    image_size: u64,
}

/// Opens the VM's directory and the image's rootfs, as the owner.
fn open_sources(ctx: &Ctx, req: &CreateReq) -> Result<Sources, SnapError> {
    let cfg = &ctx.cfg;
    ctx.as_owner(|| -> Result<Sources, SnapError> {
        let missing_vm = |e: FsxError| match e {
            e if e.is_not_found() => SnapError::NoVm {
                vm: req.vm.clone(),
                path: cfg.vm_dir(&req.vm),
            },
            e => e.into(),
        };
        let vm_dir = Dir::open(&cfg.vms_dir())
            .and_then(|d| d.open_dir(Path::new(&req.vm)))
            .map_err(missing_vm)?;
        let rootfs = req.base();
        let (image, st) = Dir::open(&cfg.images_dir())
            .and_then(|d| d.open_file(&rootfs, OFlags::RDONLY))
            .map_err(|e| match e {
                e if e.is_not_found() => SnapError::NoImage {
                    image: req.image.clone(),
                    path: cfg.images_dir().join(&rootfs),
                },
                e => e.into(),
            })?;
        Ok(Sources {
            vm_dir,
            image,
            image_size: st.st_size as u64,
        })
    })
    .map_err(op_to_snap)?
}

/// The image's identity slot map (`images/IMAGE/slots.json`), read as the owner; None when
/// it has none.
fn read_slots(ctx: &Ctx, image: &str) -> Option<super::slots::SlotMap> {
    ctx.as_owner(|| {
        Dir::open(&ctx.cfg.images_dir())
            .ok()
            .and_then(|d| super::slots::read(&d, image))
    })
    .ok()
    .flatten()
}

/// A disk made earlier for this VM: adopted when complete and still there, cleared away when
/// it was left half made (or its file is gone). Returns the adopted disk.
fn adopt(ctx: &Ctx, e: &Entry, req: &CreateReq) -> Result<Option<Created>, SnapError> {
    let path = e.data["path"].as_str().unwrap_or(&e.id).to_string();
    let method = e.data["method"].as_str().and_then(Method::parse);
    let complete = e.data["complete"].as_bool() == Some(true);
    let file = e.data["cow"].as_str().unwrap_or(&e.id).to_string();
    let exists = ctx
        .as_owner(|| std::fs::symlink_metadata(&file).is_ok())
        .unwrap_or(false)
        && (method != Some(Method::DmSnapshot) || Path::new(&path).exists());
    if complete && exists {
        let image = e.data["image"].as_str().unwrap_or_default();
        if image != req.image {
            return Err(SnapError::Exists {
                vm: req.vm.clone(),
                path,
                method: e.data["method"].as_str().unwrap_or("?").to_string(),
            });
        }
        let host_keys = e.data["host_keys"]
            .as_object()
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                    .collect()
            })
            .unwrap_or_default();
        return Ok(Some(Created {
            method: method.unwrap_or(Method::Copy),
            path,
            image: image.to_string(),
            size_bytes: e.data["size_bytes"].as_u64().unwrap_or(0),
            host_keys,
            customized: e.data["customized"].as_bool().unwrap_or(false),
            agent: e.data["agent"].as_str().map(String::from),
            warnings: Vec::new(),
            adopted: true,
        }));
    }
    // Half made (a killed helper) or removed by hand: undo what the ledger holds.
    remove_locked(ctx, &req.vm)?;
    Ok(None)
}

/// Creates the VM's disk and customizes it, or adopts the complete one made earlier.
pub fn create(ctx: &Ctx, req: &CreateReq) -> Result<Created, SnapError> {
    use banger::timing::span;
    let _g = span("lock", || lock(ctx, &req.vm))?;
    if let Some(e) = disk_entry(&ctx.ledger, &req.vm)? {
        if e.data["warm"].as_bool().unwrap_or(false) != req.warm
            && e.data["complete"].as_bool() == Some(true)
        {
            return Err(SnapError::Exists {
                vm: req.vm.clone(),
                path: e.data["path"].as_str().unwrap_or(&e.id).to_string(),
                method: e.data["method"].as_str().unwrap_or("?").to_string(),
            });
        }
        if let Some(c) = span("adopt", || adopt(ctx, &e, req))? {
            return Ok(c);
        }
    }
    let src = span("open", || open_sources(ctx, req))?;
    let size = match req.disk_size {
        Some(s) if s < src.image_size => {
            return Err(SnapError::Shrink {
                want: s,
                have: src.image_size,
            })
        }
        Some(s) => s.div_ceil(4096) * 4096,
        None => src.image_size,
    };
    let method = req.method.unwrap_or_else(|| span("method", auto_method));
    let mut undo = Undo::new(ctx, &req.vm);
    let mut warnings = Vec::new();
    let (method, path, disk) = match method {
        Method::DmSnapshot => {
            let (path, f) = make_dm(&mut undo, req, &src, size)?;
            (Method::DmSnapshot, path, f)
        }
        m => {
            let (m, f) = make_file(&mut undo, req, &src, m, size)?;
            let path = ctx.cfg.vm_dir(&req.vm).join(DISK);
            if m == Method::Copy {
                warnings.push(format!(
                    "{}: made by a full copy of the image (O(image size) in time and space): put the state dir on XFS or btrfs for reflink clones",
                    path.display()
                ));
            }
            (m, path, f)
        }
    };
    if size > src.image_size {
        clone::grow_fs(&disk, &path, ctx.owner.as_ref())?;
    }
    fail_point("snap.create:grow")?;
    let mut host_keys = BTreeMap::new();
    let customized = !req.custom.is_empty();
    let agent = req
        .custom
        .agent
        .is_some()
        .then(|| AGENT_INIT_HOOK.to_string());
    if customized {
        // A disk cloned from a prepared image gets its identity in the image's slots (not
        // after a resize: resize2fs may move blocks).
        let slots = if req.warm {
            None
        } else {
            span("slot-map", || read_slots(ctx, &req.image))
        };
        let fast = size == src.image_size;
        host_keys = span("customize", || {
            customize::apply(
                &disk,
                &path,
                &req.vm,
                &req.custom,
                ctx.owner.as_ref(),
                slots.as_ref(),
                fast,
            )
        })?;
    }
    fail_point("snap.create:customize")?;
    // The disk is whole: say so, with what a later create needs to adopt it.
    if let Some(e) = undo.made.iter().find(|e| e.kind == "disk").cloned() {
        let mut data = (*e.data).clone();
        if let Some(m) = data.as_object_mut() {
            m.insert("method".into(), method.as_str().into());
            m.insert("complete".into(), true.into());
            m.insert("customized".into(), customized.into());
            m.insert("host_keys".into(), json!(host_keys));
            if let Some(n) = &req.custom.net {
                m.insert(NET_WRITTEN.into(), json!(n));
            }
            m.insert("agent".into(), json!(agent));
            m.insert("warm".into(), req.warm.into());
        }
        ctx.ledger.add(Entry {
            data: std::sync::Arc::new(data),
            ..e
        })?;
    }
    undo.committed = true;
    Ok(Created {
        method,
        path: path.display().to_string(),
        image: req.image.clone(),
        size_bytes: size,
        host_keys,
        customized,
        agent,
        warnings,
        adopted: false,
    })
}

/// The new file `name` in the VM's directory, made as the owner; an existing one is not
/// banger's ([`SnapError::Stray`]).
fn new_owner_file(ctx: &Ctx, src: &Sources, name: &str) -> Result<File, SnapError> {
    ctx.as_owner(|| src.vm_dir.create(name, 0o600))
        .map_err(op_to_snap)?
        .map_err(|e| match e {
            e if e.is_exists() => SnapError::Stray {
                path: src.vm_dir.join(name),
            },
            e => e.into(),
        })
}

/// reflink or copy into `vms/VM/disk.ext4`. Returns the method used and the disk.
fn make_file(
    undo: &mut Undo,
    req: &CreateReq,
    src: &Sources,
    method: Method,
    size: u64,
) -> Result<(Method, File), SnapError> {
    let ctx = undo.ctx;
    let path = src.vm_dir.join(DISK);
    let disk = path.display().to_string();
    undo.add(
        "disk",
        &disk,
        json!({"path": disk, "method": method.as_str(), "image": req.image, "size_bytes": size, "complete": false}),
    )?;
    let dst = new_owner_file(ctx, src, DISK).inspect_err(|_| undo.forget_last())?;
    let forced = req.method.is_some();
    let images = ctx.cfg.images_dir().join(req.base());
    let used = banger::timing::span("clone", || {
        ctx.as_owner(|| -> Result<Method, SnapError> {
            let used = match method {
                Method::Reflink => match clone::reflink(&src.image, &dst) {
                    Ok(()) => Method::Reflink,
                    Err(e) if !forced && clone::reflink_unsupported(&e) => Method::Copy,
                    Err(source) => {
                        return Err(SnapError::Reflink {
                            src: images.clone(),
                            dst: path.clone(),
                            source,
                        })
                    }
                },
                _ => Method::Copy,
            };
            if used == Method::Copy {
                clone::sparse_copy(&src.image, &dst).map_err(|source| SnapError::Copy {
                    src: images.clone(),
                    dst: path.clone(),
                    source,
                })?;
            }
            fail_point("snap.create:clone")?;
            if size > dst.metadata().map(|m| m.len()).unwrap_or(0) {
                dst.set_len(size).map_err(|source| SnapError::Io {
                    what: "grow",
                    path: path.clone(),
                    source,
                })?;
            }
            // On disk before the ledger calls it complete. The tools that write into it next
            // (debugfs, e2fsck/resize2fs) sync it when they close it; only a disk nothing
            // else will touch is synced here.
            if req.custom.is_empty() && size <= src.image_size {
                dst.sync_all().map_err(|source| SnapError::Io {
                    what: "sync",
                    path: path.clone(),
                    source,
                })?;
            }
            Ok(used)
        })
        .map_err(op_to_snap)
    })??;
    Ok((used, dst))
}

/// The dm-snapshot: COW file, two loop devices (attached from the fds the owner's side
/// opened), optional grown origin, the snapshot. Returns the mapper path and its open device.
fn make_dm(
    undo: &mut Undo,
    req: &CreateReq,
    src: &Sources,
    size: u64,
) -> Result<(PathBuf, File), SnapError> {
    let ctx = undo.ctx;
    let vm = &req.vm;
    let name = dm::dm_name(vm);
    let mapper = dm::mapper_path(&name);
    let cow = src.vm_dir.join(COW).display().to_string();
    undo.add(
        "disk",
        &cow,
        json!({"path": mapper, "cow": cow, "method": "dm-snapshot", "image": req.image, "size_bytes": size, "complete": false}),
    )?;
    let cow_file = new_owner_file(ctx, src, COW).inspect_err(|_| undo.forget_last())?;
    cow_file.set_len(size).map_err(|source| SnapError::Io {
        what: "size",
        path: PathBuf::from(&cow),
        source,
    })?;
    let rootfs = ctx.cfg.images_dir().join(req.base());
    let rootfs = rootfs.display().to_string();
    let loop_data = |file: &str, role: &str, a: &Attached| json!({"file": file, "role": role, "file_dev": a.file_dev, "file_ino": a.file_ino});
    undo.add(
        "loop",
        &format!("pending-base-{vm}"),
        json!({"file": rootfs, "role": "base"}),
    )?;
    let base = loopdev::attach(&src.image, true, &format!("banger-{vm}-base"))?;
    undo.replace_last(&base.device, loop_data(&rootfs, "base", &base))?;
    fail_point("snap.create:loop")?;
    undo.add(
        "loop",
        &format!("pending-cow-{vm}"),
        json!({"file": cow, "role": "cow"}),
    )?;
    let cow_dev = loopdev::attach(&cow_file, false, &format!("banger-{vm}-cow"))?;
    undo.replace_last(&cow_dev.device, loop_data(&cow, "cow", &cow_dev))?;
    let origin = if size > src.image_size {
        let bn = dm::base_name(vm);
        undo.add("dm", &bn, json!({"role": "origin"}))?;
        dm::dm_create(&bn, &dm::origin_table(&base.device, src.image_size, size))?;
        dm::mapper_path(&bn)
    } else {
        base.device.clone()
    };
    undo.add("dm", &name, json!({"role": "snapshot", "path": mapper}))?;
    dm::dm_create(&name, &dm::snapshot_table(&origin, &cow_dev.device, size)).map_err(|e| {
        match dm::available() {
            Err(why) => SnapError::NoDm { why },
            Ok(()) => e,
        }
    })?;
    let dev = open_mapper(&mapper)?;
    Ok((PathBuf::from(mapper), dev))
}

/// Opens banger's own `/dev/mapper/banger-*` device: /dev is root's (checked), and what
/// opens must be a block device.
fn open_mapper(path: &str) -> Result<File, SnapError> {
    let p = Path::new(path);
    let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    if p.parent() != Some(Path::new("/dev/mapper")) || !name.starts_with("banger-") {
        return Err(SnapError::Fs(FsxError::Escape { path: p.into() }));
    }
    Dir::open_trusted(Path::new("/dev/mapper"))?;
    let f = File::options()
        .read(true)
        .write(true)
        .open(p)
        .map_err(|source| SnapError::Open {
            path: p.to_path_buf(),
            source,
        })?;
    banger::fsx::expect_type(&f, p, rustix::fs::FileType::BlockDevice)?;
    Ok(f)
}

/// Opens the disk the ledger names for `vm` read-write: a file as the owner (the owner can
/// only get a disk they could write), or banger's own mapper device.
pub(crate) fn open_ledger_disk(ctx: &Ctx, e: &Entry) -> Result<(PathBuf, File), SnapError> {
    let path = PathBuf::from(e.data["path"].as_str().unwrap_or(&e.id));
    if e.data["method"].as_str() == Some("dm-snapshot") {
        let f = open_mapper(&path.display().to_string())?;
        return Ok((path, f));
    }
    let (dir, name) = banger::fsx::split(&path)?;
    let (f, _) = ctx
        .as_owner(|| Dir::open(dir)?.open_file(Path::new(name), OFlags::RDWR))
        .map_err(op_to_snap)??;
    Ok((path, f))
}

fn remove_locked(ctx: &Ctx, vm: &str) -> Result<Vec<Entry>, SnapError> {
    let entries = snap_entries(&ctx.ledger, vm)?;
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
        release(ctx, &e)?;
        ctx.ledger.remove(&e.vm, &e.kind, &e.id)?;
        removed.push(e);
    }
    Ok(removed)
}

/// Removes the VM's disk and everything made with it, in reverse order of making. Returns
/// what was removed. Only ledger entries are touched; a VM with nothing in the ledger has
/// nothing to remove.
pub fn remove(ctx: &Ctx, vm: &str) -> Result<Vec<Entry>, SnapError> {
    let g = lock(ctx, vm)?;
    let removed = remove_locked(ctx, vm)?;
    // Nothing of the disk is left: neither is its lock file.
    drop(g.remove_at_release());
    Ok(removed)
}

/// The disk entry's record of the guest network last written into the disk.
const NET_WRITTEN: &str = "net";

/// What [`customize`] did.
#[derive(Debug, Clone)]
pub struct Customized {
    pub path: String,
    pub host_keys: BTreeMap<String, String>,
    /// False when nothing was written: only the network was asked for, and the disk has it
    /// already (as the ledger says banger last wrote it).
    pub written: bool,
}

/// Writes `c` into an existing disk (the one the ledger names for `vm`), unless all it asks
/// for is the network config the disk already has.
pub fn customize(ctx: &Ctx, vm: &str, c: &Custom) -> Result<Customized, SnapError> {
    let _g = lock(ctx, vm)?;
    let e = disk_entry(&ctx.ledger, vm)?.ok_or_else(|| SnapError::NoDisk { vm: vm.into() })?;
    let path_of = |e: &Entry| e.data["path"].as_str().unwrap_or(&e.id).to_string();
    let net_only =
        c.hostname.is_none() && c.ssh_pubkey.is_none() && !c.host_keys && c.agent.is_none();
    if let (true, Some(n)) = (net_only, &c.net) {
        if e.data.get(NET_WRITTEN) == Some(&json!(n)) {
            return Ok(Customized {
                path: path_of(&e),
                host_keys: BTreeMap::new(),
                written: false,
            });
        }
    }
    let (path, disk) = open_ledger_disk(ctx, &e)?;
    let keys = customize::apply(&disk, &path, vm, c, ctx.owner.as_ref(), None, false)?;
    if c.host_keys || c.net.is_some() || c.agent.is_some() {
        let mut data = (*e.data).clone();
        if let Some(m) = data.as_object_mut() {
            if c.host_keys {
                m.insert("host_keys".into(), json!(keys));
            }
            if let Some(n) = &c.net {
                m.insert(NET_WRITTEN.into(), json!(n));
            }
            if c.agent.is_some() {
                m.insert("agent".into(), AGENT_INIT_HOOK.into());
            }
        }
        ctx.ledger.add(Entry {
            data: std::sync::Arc::new(data),
            ..e
        })?;
    }
    Ok(Customized {
        path: path.display().to_string(),
        host_keys: keys,
        written: true,
    })
}

/// One disk for `snap.list` (the file is looked at as the owner).
fn describe(ctx: &Ctx, e: &Entry) -> Value {
    let path = e.data["path"].as_str().unwrap_or(&e.id).to_string();
    // The file that holds the VM's blocks: the disk, or the COW file for dm.
    let file = e.data["cow"].as_str().unwrap_or(&e.id).to_string();
    let meta = ctx
        .as_owner(|| std::fs::symlink_metadata(&file).ok())
        .ok()
        .flatten();
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
        "complete": e.data.get("complete").and_then(Value::as_bool).unwrap_or(true),
        "created_at": e.created_at,
    })
}

/// Every VM's disk (or one VM's).
pub fn list(ctx: &Ctx, vm: Option<&str>) -> Result<Vec<Value>, SnapError> {
    let entries = match vm {
        Some(v) => ctx.ledger.for_vm(v)?,
        None => ctx.ledger.list()?,
    };
    let mut out: Vec<Value> = entries
        .iter()
        .filter(|e| e.kind == "disk")
        .map(|e| describe(ctx, e))
        .collect();
    out.sort_by(|a, b| a["vm"].as_str().cmp(&b["vm"].as_str()));
    Ok(out)
}
