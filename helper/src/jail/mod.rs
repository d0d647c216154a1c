//! Privileged jail operations: stage a VM's chroot, launch Firecracker through the jailer (or
//! directly as the owner), find it again, and tear it all down.
//!
//! Every resource is written to the ledger before it is made (`jail` for the VM's jail
//! directory, `mount` for the chroot's self-bind and what is mounted below it, `cgroup` for
//! the VM's cgroup), so a failure half way, a crash or a restarted helper leaves nothing
//! teardown cannot find; teardown touches ledger entries only.
//!
//! The layout, `<jail dir>/<exec name>/<vm>/` for the jailer and `<jail dir>/direct/<vm>/`
//! for the direct launcher: the VM's directory is root's (0755) and holds root's files
//! (`jailer.log`, the direct launcher's `firecracker.pid` and `firecracker.stderr`); its
//! `root/` is staged while it is root's (0700) and then handed to the owner (by the jailer's
//! chown, or the direct launcher's `fchown`). From then on the helper never resolves a path
//! inside `root/`: it reads the jailer's pidfile through the directory fd it opened before,
//! and unmounts by detaching the self-bind at `<vm>/root` (root's path). Waiting for the API,
//! `PUT /serial` and the console keeper are the owner's `banger-jail`'s business.

pub mod argv;
pub mod cgroup;
pub mod console;
pub mod exec;
pub mod http;
pub mod mounts;
pub mod process;
pub mod stage;

use crate::ledger::{Entry, LedgerError};
use crate::ops::Ctx;
use banger::find_pid::{self, Target};
use banger::fsx::{Dir, FsxError};
use banger::proto::code;
use rustix::fs::OFlags;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum JailError {
    #[error(
        "no {what} binary: set the helper's config key \"{key}\" in /etc/banger/config.json (or {var} in the helper's environment, or put {what} on root's PATH)"
    )]
    NoBinary {
        what: &'static str,
        var: &'static str,
        key: &'static str,
    },
    #[error("cannot {what} {path}")]
    Stage {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a regular file (or, for a disk, a block device)")]
    NotAFile { path: PathBuf },
    #[error("{path} already exists and banger's ledger does not know it: remove it by hand if no Firecracker uses it")]
    Exists { path: PathBuf },
    #[error("cannot {what} {path}")]
    Mount {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("refused to unmount {path}: {why}")]
    Refused { path: PathBuf, why: &'static str },
    #[error("cannot start {path}")]
    Spawn {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the jailer failed ({status}); its output was {output}")]
    JailerFailed { status: String, output: String },
    #[error("timed out waiting for {what}; {detail}")]
    Timeout { what: &'static str, detail: String },
    #[error("Firecracker (pid {pid}) exited during launch; {log}")]
    Died { pid: i32, log: String },
    #[error(
        "the Firecracker launched as pid {pid} could not be identified (comm and --id checks)"
    )]
    Unidentified { pid: i32 },
    #[error("Firecracker (pid {pid}) did not exit after SIGTERM and SIGKILL")]
    WontDie { pid: i32 },
    #[error("cannot remove {path}: mounts remain below it ({mounts})")]
    MountsRemain { path: PathBuf, mounts: String },
    #[error("cannot remove {path}")]
    Remove {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Fs(#[from] FsxError),
    #[error(transparent)]
    Cred(#[from] crate::cred::CredError),
    #[error(transparent)]
    Detach(#[from] banger::detach::DetachError),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

impl JailError {
    /// The helper's error code for this failure.
    pub fn code(&self) -> &'static str {
        match self {
            JailError::NoBinary { .. } => code::NOT_FOUND,
            JailError::NotAFile { .. } => code::INVALID_PATH,
            JailError::Fs(e) if e.is_not_found() => code::NOT_FOUND,
            JailError::Fs(FsxError::Escape { .. })
            | JailError::Fs(FsxError::WrongType { .. })
            | JailError::Fs(FsxError::Linked { .. })
            | JailError::Fs(FsxError::Untrusted { .. }) => code::INVALID_PATH,
            JailError::Exists { .. } => code::CONFLICT,
            JailError::Timeout { .. } => code::TIMEOUT,
            _ => code::FAILED,
        }
    }
}

/// Which launcher runs Firecracker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Launcher {
    Jailer,
    Direct,
}

/// The root disk: a file below the VM dirs, or banger's own block device.
#[derive(Debug, Clone, PartialEq)]
pub enum RootDisk {
    /// Relative to the VM dirs (`VM/disk.ext4`).
    File(PathBuf),
    /// A device this VM's ledger entries name (`/dev/mapper/banger-VM`).
    Device(PathBuf),
}

/// What `jail.launch` needs once validated. Kernel and initrd are relative to the image
/// store; everything is opened with the owner's credentials.
#[derive(Debug, Clone)]
pub struct LaunchSpec {
    pub name: String,
    pub launcher: Launcher,
    pub kernel: PathBuf,
    pub initrd: Option<PathBuf>,
    pub rootfs: RootDisk,
    pub vcpus: u32,
    pub mem_mib: u32,
    pub timeout: Duration,
}

/// What the ledger keeps about a launched jail (its `data`), and what launch answers.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct JailData {
    pub launcher: String,
    pub id: String,
    /// The directory teardown removes: `<jail dir>/<exec name>/<id>` or `<jail dir>/direct/<id>`.
    pub dir: PathBuf,
    /// The jailer's chroot (`<dir>/root`); null for the direct launcher, whose Firecracker
    /// sees host paths.
    pub chroot: Option<PathBuf>,
    /// Where Firecracker's files are on the host (`<dir>/root`, for either launcher).
    #[serde(default)]
    pub root: PathBuf,
    /// The API socket's real path on the host.
    pub socket: PathBuf,
    pub pidfile: PathBuf,
    pub pid: Option<i32>,
    pub start_time: Option<u64>,
    pub comm: String,
    pub argv: Vec<String>,
    /// Host paths of the console log, the console FIFO, Firecracker's log and metrics.
    pub console: PathBuf,
    #[serde(default)]
    pub console_fifo: PathBuf,
    /// The FIFO as Firecracker names it (`serial_out_path` for `PUT /serial`).
    #[serde(default)]
    pub serial_out_path: String,
    pub log: PathBuf,
    pub metrics: PathBuf,
    /// Paths as Firecracker sees them.
    pub kernel: String,
    pub initrd: Option<String>,
    pub rootfs: String,
    pub cgroup: Option<PathBuf>,
}

impl JailData {
    /// What identifies this jail's Firecracker: the recorded pid and start time (the helper
    /// never reads a pidfile by path).
    fn target(&self) -> Target {
        Target {
            id: self.id.clone(),
            comm: self.comm.clone(),
            pid: self.pid,
            start_time: self.start_time,
            api_sock: None,
            pidfile: None,
        }
    }

    /// The pid in the pidfile, read safely: through root's directories and, for the jailer's
    /// pidfile inside the owner's chroot, through the chroot's fd; only a hint to verify.
    fn pidfile_pid(&self, base: &Path) -> Option<i32> {
        if !self.dir.starts_with(base) {
            return None;
        }
        let dir = Dir::open_trusted(&self.dir).ok()?;
        let name = self.pidfile.file_name()?;
        let bytes = if self.pidfile.parent() == Some(self.dir.as_path()) {
            dir.read_capped_single(Path::new(name), 32).ok()?
        } else {
            let root = dir.open_dir(Path::new("root")).ok()?;
            root.read_capped_single(Path::new(name), 32).ok()?
        };
        std::str::from_utf8(&bytes).ok()?.trim().parse().ok()
    }

    /// Finds this jail's live Firecracker: the recorded pid, else the pidfile's (verified).
    pub(crate) fn find(&self, base: &Path) -> Option<find_pid::Found> {
        let t = self.target();
        if let Some(f) = find_pid::find_pid(&t) {
            return Some(f);
        }
        if self.pid.is_some() {
            return None; // the recorded one is gone: a pidfile cannot name a newer one
        }
        let pid = self.pidfile_pid(base)?;
        let info = find_pid::verify(&find_pid::Proc::default(), &t, pid)?;
        Some(find_pid::Found {
            pid,
            start_time: info.start_time,
            how: find_pid::How::Pidfile,
        })
    }
}

fn jail_entries(ctx: &Ctx, vm: &str) -> Result<Vec<(Entry, JailData)>, JailError> {
    Ok(ctx
        .ledger
        .for_vm(vm)?
        .into_iter()
        .filter(|e| e.kind == "jail")
        .filter_map(|e| {
            let d = JailData::deserialize(&*e.data).ok()?;
            Some((e, d))
        })
        .collect())
}

fn binary(
    cfg: Option<&PathBuf>,
    name: &'static str,
    var: &'static str,
) -> Result<PathBuf, JailError> {
    cfg.cloned()
        .or_else(|| banger::cli::which(name))
        .ok_or(JailError::NoBinary {
            what: name,
            var,
            key: name,
        })
}

/// The jail base (made when missing), checked to be root's with every directory above it.
fn jail_base(ctx: &Ctx) -> Result<Dir, JailError> {
    let base = &ctx.cfg.jail_dir;
    if !base.exists() {
        std::fs::create_dir_all(base).map_err(|source| JailError::Stage {
            what: "create",
            path: base.clone(),
            source,
        })?;
    }
    Ok(Dir::open_trusted(base)?)
}

/// The files Firecracker needs, opened with the owner's credentials: what the owner cannot
/// read (write, for a disk file) is refused by the kernel.
struct Sources {
    kernel: File,
    initrd: Option<File>,
    disk: File,
}

fn open_sources(ctx: &Ctx, spec: &LaunchSpec) -> Result<Sources, JailError> {
    let images = ctx.cfg.images_dir();
    let vms = ctx.cfg.vms_dir();
    let (kernel, initrd, disk) = ctx
        .as_owner(|| -> Result<(File, Option<File>, Option<File>), FsxError> {
            let img = Dir::open(&images)?;
            let (kernel, _) = img.open_file(&spec.kernel, OFlags::RDONLY)?;
            let initrd = match &spec.initrd {
                Some(p) => Some(img.open_file(p, OFlags::RDONLY)?.0),
                None => None,
            };
            let disk = match &spec.rootfs {
                RootDisk::File(rel) => Some(Dir::open(&vms)?.open_file(rel, OFlags::RDWR)?.0),
                RootDisk::Device(_) => None,
            };
            Ok((kernel, initrd, disk))
        })
        .map_err(|e| JailError::Stage {
            what: "work as the owner on",
            path: images.clone(),
            source: std::io::Error::other(e.message),
        })??;
    let disk = match (disk, &spec.rootfs) {
        (Some(d), _) => d,
        (None, RootDisk::Device(dev)) => {
            // banger's own device (the ledger names it), under root's /dev.
            if let Some(parent) = dev.parent() {
                Dir::open_trusted(parent)?;
            }
            let f = File::options()
                .read(true)
                .write(true)
                .open(dev)
                .map_err(|source| JailError::Stage {
                    what: "open",
                    path: dev.clone(),
                    source,
                })?;
            banger::fsx::expect_type(&f, dev, rustix::fs::FileType::BlockDevice)?;
            f
        }
        (None, RootDisk::File(p)) => {
            return Err(JailError::NotAFile { path: p.clone() });
        }
    };
    Ok(Sources {
        kernel,
        initrd,
        disk,
    })
}

/// Launches (or finds running) the VM's Firecracker. On any failure everything made is
/// removed again.
pub fn launch(ctx: &Ctx, spec: &LaunchSpec) -> Result<Value, JailError> {
    use banger::timing::span;
    let base = span("base", || jail_base(ctx))?;
    for (entry, data) in jail_entries(ctx, &spec.name)? {
        if let Some(f) = data.find(base.path()) {
            let mut data = data;
            data.pid = Some(f.pid);
            data.start_time = Some(f.start_time);
            ctx.ledger.add(Entry {
                data: std::sync::Arc::new(serde_json::to_value(&data).unwrap_or(Value::Null)),
                ..entry
            })?;
            return Ok(answer(&data, true));
        }
    }
    // Remnants of an earlier launch whose Firecracker is gone.
    span("clear", || teardown(ctx, &spec.name, Duration::ZERO))?;
    // The jailer canonicalizes --exec-file and names the chroot after the real file, so
    // banger does too: a `firecracker` symlink to `firecracker-v1.16.1-x86_64` is common.
    // These come from the helper's own configuration, never from a request.
    let firecracker = binary(
        ctx.cfg.firecracker.as_ref(),
        "firecracker",
        "BANGER_FIRECRACKER",
    )?;
    let firecracker = std::fs::canonicalize(&firecracker).map_err(|source| JailError::Stage {
        what: "resolve",
        path: firecracker.clone(),
        source,
    })?;
    let jailer = match spec.launcher {
        Launcher::Jailer => Some(binary(ctx.cfg.jailer.as_ref(), "jailer", "BANGER_JAILER")?),
        Launcher::Direct => None,
    };
    let exec_name = firecracker
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "firecracker".into());
    let group = match spec.launcher {
        Launcher::Jailer => exec_name.clone(),
        Launcher::Direct => "direct".into(),
    };
    let parent = base.ensure_dir(&group, 0o755)?;
    if parent.stat_at(&spec.name)?.is_some() {
        return Err(JailError::Exists {
            path: parent.join(&spec.name),
        });
    }
    let dir = parent.join(&spec.name);
    let root = dir.join("root");
    let jailed = spec.launcher == Launcher::Jailer;
    let (socket, seen_root) = if jailed {
        (
            root.join(argv::JAILED_API_SOCK.trim_start_matches('/')),
            PathBuf::from("/"),
        )
    } else {
        (root.join("firecracker.socket"), root.clone())
    };
    let (uid, gid) = ctx.owner_ids();
    let seen = |name: &str| seen_root.join(name).display().to_string();
    let mut data = JailData {
        launcher: if jailed { "jailer" } else { "direct" }.into(),
        id: spec.name.clone(),
        dir: dir.clone(),
        chroot: jailed.then(|| root.clone()),
        root: root.clone(),
        socket: socket.clone(),
        // The jailer names its pidfile after the exec file: `<chroot>/<exec name>.pid`.
        // The direct launcher's is root's, beside the root.
        pidfile: if jailed {
            root.join(format!("{exec_name}.pid"))
        } else {
            dir.join("firecracker.pid")
        },
        pid: None,
        start_time: None,
        comm: find_pid::comm_of(&firecracker.display().to_string()),
        argv: Vec::new(),
        console: root.join(stage::CONSOLE),
        console_fifo: root.join(console::FIFO),
        serial_out_path: seen(console::FIFO),
        log: root.join(stage::LOG),
        metrics: root.join(stage::METRICS),
        kernel: seen(stage::KERNEL),
        initrd: spec.initrd.as_ref().map(|_| seen(stage::INITRD)),
        rootfs: seen(stage::ROOTFS),
        cgroup: None,
    };
    // The jailer copies its exec file into the chroot: from the jail dir's own filesystem,
    // where that copy shares blocks.
    let exec_file = if jailed {
        span("exec-file", || exec::for_jailer(&base, &firecracker))?
    } else {
        firecracker.clone()
    };
    let plan = argv::Plan {
        id: spec.name.clone(),
        jailer: jailer.clone().unwrap_or_default(),
        firecracker: exec_file,
        uid,
        gid,
        chroot_base: ctx.cfg.jail_dir.clone(),
        root: seen_root.clone(),
        vcpus: spec.vcpus,
        mem_mib: spec.mem_mib,
        cgroup_v2: jailed && cgroup::usable_v2().is_some(),
    };
    data.argv = if jailed {
        plan.jailer_argv()
    } else {
        plan.direct_argv(&socket)
    };
    if plan.cgroup_v2 {
        data.cgroup = Some(cgroup::vm_cgroup(
            Path::new(cgroup::ROOT),
            argv::PARENT_CGROUP,
            &spec.name,
        ));
    }
    let record = |data: &JailData| {
        Entry::new(
            &spec.name,
            "jail",
            &data.dir.display().to_string(),
            serde_json::to_value(data).unwrap_or(Value::Null),
        )
    };
    ctx.ledger.add(record(&data))?;
    match span("build", || build(ctx, spec, &parent, &mut data)) {
        Ok(()) => {
            ctx.ledger.add(record(&data))?;
            Ok(answer(&data, false))
        }
        Err(e) => {
            if let Err(undo) = teardown(ctx, &spec.name, Duration::ZERO) {
                eprintln!(
                    "banger-helper: jail {}: cleanup after a failed launch failed too: {}",
                    spec.name,
                    banger::cli::one_line(&undo)
                );
            }
            Err(e)
        }
    }
}

fn answer(d: &JailData, existing: bool) -> Value {
    let mut v = serde_json::to_value(d).unwrap_or(Value::Null);
    if let Some(m) = v.as_object_mut() {
        m.insert("already_running".into(), existing.into());
    }
    v
}

/// Stages, starts and finds Firecracker; `data` gains the pid. Anything made is in the
/// ledger before it exists.
fn build(ctx: &Ctx, spec: &LaunchSpec, parent: &Dir, data: &mut JailData) -> Result<(), JailError> {
    let deadline = Instant::now() + spec.timeout;
    let jailed = spec.launcher == Launcher::Jailer;
    let (uid, gid) = ctx.owner_ids();
    // The VM's directory is root's and world-traversable (the owner reads its console
    // inside); its root is root's alone (0700) while it is staged.
    let vmdir = parent.mkdir(&spec.name, 0o755)?;
    let root = vmdir.mkdir("root", 0o700)?;
    let root_path = data.dir.join("root");
    let src = banger::timing::span("open", || open_sources(ctx, spec))?;
    banger::timing::span("kernel", || {
        stage::file(&src.kernel, &root, stage::KERNEL, uid, gid)?;
        if let Some(i) = &src.initrd {
            stage::file(i, &root, stage::INITRD, uid, gid)?;
        }
        Ok::<_, JailError>(())
    })?;
    let mut self_bound = false;
    let mut self_bind = |ctx: &Ctx| -> Result<(), JailError> {
        if !self_bound {
            ctx.ledger.add(Entry::new(
                &spec.name,
                "mount",
                &root_path.display().to_string(),
                json!({"self": true}),
            ))?;
            mounts::self_bind(&root_path)?;
            self_bound = true;
        }
        Ok(())
    };
    let disk = banger::timing::span("disk", || stage::disk(&src.disk, &root, uid, gid))?;
    if disk == stage::Disk::NeedsBind {
        self_bind(ctx)?;
        let dst = root_path.join(stage::ROOTFS);
        ctx.ledger.add(Entry::new(
            &spec.name,
            "mount",
            &dst.display().to_string(),
            json!({"source": "disk"}),
        ))?;
        mounts::bind(&banger::fsx::fd_path(&src.disk), &dst, true)?;
    }
    banger::timing::span("files", || {
        stage::empty(&root, stage::CONSOLE, 0o640, uid, gid)?;
        console::make_fifo(&root, uid, gid)?;
        stage::empty(&root, stage::LOG, 0o640, uid, gid)?;
        stage::empty(&root, stage::METRICS, 0o640, uid, gid)
    })?;
    let firecracker = PathBuf::from(data.argv_exec());
    if jailed && banger::timing::span("elf", || mounts::is_dynamic(&firecracker))? {
        self_bind(ctx)?;
        for lib in mounts::lib_dirs(&firecracker)? {
            let mut d = root.try_clone()?;
            for c in lib.components().filter_map(|c| match c {
                std::path::Component::Normal(n) => Some(n),
                _ => None,
            }) {
                d = d.ensure_dir(c, 0o755)?;
            }
            let dst = root_path.join(lib.strip_prefix("/").unwrap_or(&lib));
            ctx.ledger.add(Entry::new(
                &spec.name,
                "mount",
                &dst.display().to_string(),
                json!({"source": lib}),
            ))?;
            mounts::bind(&lib, &dst, false)?;
        }
    }
    if let Some(cg) = &data.cgroup {
        ctx.ledger.add(Entry::new(
            &spec.name,
            "cgroup",
            &cg.display().to_string(),
            Value::Null,
        ))?;
    }
    let t = data.target();
    let pid = if jailed {
        let log_name = data.dir.join("jailer.log");
        let log = vmdir.create("jailer.log", 0o640)?;
        let left = deadline.saturating_duration_since(Instant::now());
        banger::timing::span("jailer", || {
            process::run_jailer(&data.argv, &log, &log_name, left)
        })?;
        let name = data
            .pidfile
            .file_name()
            .map(|n| n.to_string_lossy().into_owned());
        let pid = banger::timing::span("pidfile", || {
            process::wait_pidfile(&root, &name.unwrap_or_default(), deadline, &log, &log_name)
        })?;
        data.start_time = Some(banger::timing::span("exec", || {
            process::wait_exec(&t, pid, deadline, &log, &log_name)
        })?);
        pid
    } else {
        // Staged: the root is the owner's from here on (Firecracker makes its socket there),
        // and the helper resolves nothing in it any more.
        rustix::fs::fchown(
            &root,
            Some(rustix::fs::Uid::from_raw(uid)),
            Some(rustix::fs::Gid::from_raw(gid)),
        )
        .map_err(|e| JailError::Stage {
            what: "chown",
            path: root_path.clone(),
            source: e.into(),
        })?;
        let err_name = data.dir.join("firecracker.stderr");
        let stderr = stage::empty(&vmdir, "firecracker.stderr", 0o640, uid, gid)?;
        let pid = banger::detach::spawn(&data.argv, ctx.owner.as_ref(), Some(&stderr), &[])?;
        let pidfile = vmdir.create("firecracker.pid", 0o644)?;
        std::io::Write::write_all(&mut &pidfile, pid.to_string().as_bytes()).map_err(|source| {
            JailError::Stage {
                what: "write",
                path: data.pidfile.clone(),
                source,
            }
        })?;
        data.start_time = Some(process::wait_exec(&t, pid, deadline, &stderr, &err_name)?);
        pid
    };
    data.pid = Some(pid);
    Ok(())
}

impl JailData {
    /// The Firecracker binary the argv runs.
    fn argv_exec(&self) -> String {
        if self.launcher == "direct" {
            return self.argv.first().cloned().unwrap_or_default();
        }
        self.argv
            .windows(2)
            .find(|w| w[0] == "--exec-file")
            .map(|w| w[1].clone())
            .unwrap_or_default()
    }
}

/// Tears down everything the ledger holds for the VM's jail: stops its Firecracker (only
/// after the identity checks), detaches the chroot's mounts, removes the cgroup and the jail
/// directory. The VM's disk is never touched: only its hard link, node or bind mount.
pub fn teardown(ctx: &Ctx, vm: &str, grace: Duration) -> Result<Value, JailError> {
    let base = jail_base(ctx)?;
    let entries = ctx.ledger.for_vm(vm)?;
    let jails = jail_entries(ctx, vm)?;
    let mut stopped = Vec::new();
    for (_, d) in &jails {
        let t = match d.find(base.path()) {
            Some(f) => Target {
                pid: Some(f.pid),
                start_time: Some(f.start_time),
                ..d.target()
            },
            None => d.target(),
        };
        if let Some(pid) = banger::timing::span("stop", || process::stop(&t, grace))? {
            stopped.push(pid);
        }
    }
    let mut removed = Vec::new();
    // Mounts: one recursive detach of each jail's self-bound root takes them all.
    let mnts: Vec<&Entry> = entries.iter().filter(|e| e.kind == "mount").collect();
    for m in &mnts {
        let point = PathBuf::from(&m.id);
        if !jails.iter().any(|(_, d)| point.starts_with(&d.dir)) {
            return Err(JailError::Refused {
                path: point,
                why: "no jail of this VM holds it",
            });
        }
    }
    if !mnts.is_empty() {
        for (_, d) in &jails {
            if d.dir.starts_with(base.path()) {
                mounts::detach_tree(&d.dir.join("root"))?;
            }
        }
    }
    for m in mnts {
        ctx.ledger.remove(vm, "mount", &m.id)?;
        removed.push(m.id.clone());
    }
    for c in entries.iter().filter(|e| e.kind == "cgroup") {
        cgroup::remove(Path::new(&c.id)).map_err(|source| JailError::Remove {
            path: PathBuf::from(&c.id),
            source,
        })?;
        ctx.ledger.remove(vm, "cgroup", &c.id)?;
        removed.push(c.id.clone());
    }
    for (e, d) in &jails {
        banger::timing::span("rm", || remove_dir(&base, &d.dir))?;
        ctx.ledger.remove(vm, "jail", &e.id)?;
        removed.push(e.id.clone());
    }
    Ok(json!({ "name": vm, "stopped": stopped, "removed": removed }))
}

/// Removes a VM's jail directory `<base>/<group>/<vm>`: only there, only with no mount left
/// below it, through directory fds that never follow a symlink or cross into a mount.
fn remove_dir(base: &Dir, dir: &Path) -> Result<(), JailError> {
    let rel = dir.strip_prefix(base.path()).ok().filter(|r| {
        r.components().count() == 2
            && r.components()
                .all(|c| matches!(c, std::path::Component::Normal(_)))
    });
    let Some(rel) = rel else {
        return Err(JailError::Refused {
            path: dir.to_path_buf(),
            why: "not a VM's directory under the jail base",
        });
    };
    let left = mounts::mounts_under(dir);
    if !left.is_empty() {
        let list: Vec<String> = left.iter().map(|p| p.display().to_string()).collect();
        return Err(JailError::MountsRemain {
            path: dir.to_path_buf(),
            mounts: list.join(", "),
        });
    }
    let mut parts = rel.components();
    let (Some(group), Some(name)) = (parts.next(), parts.next()) else {
        return Ok(());
    };
    let group_dir = match base.open_dir(Path::new(group.as_os_str())) {
        Ok(d) => d,
        Err(e) if e.is_not_found() => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    group_dir.remove_tree(name.as_os_str())?;
    Ok(())
}

/// Every jail in the ledger (or one VM's), with whether its Firecracker lives.
pub fn list(ctx: &Ctx, vm: Option<&str>) -> Result<Value, JailError> {
    let entries = match vm {
        Some(v) => ctx.ledger.for_vm(v)?,
        None => ctx.ledger.list()?,
    };
    let base = ctx.cfg.jail_dir.clone();
    let mut out = Vec::new();
    for e in entries.into_iter().filter(|e| e.kind == "jail") {
        let Ok(d) = JailData::deserialize(&*e.data) else {
            continue;
        };
        let found = d.find(&base);
        let mut v = serde_json::to_value(&d).unwrap_or(Value::Null);
        if let Some(m) = v.as_object_mut() {
            m.insert("name".into(), e.vm.clone().into());
            m.insert("running".into(), found.is_some().into());
            m.insert("live_pid".into(), found.map(|f| f.pid).into());
        }
        out.push(v);
    }
    Ok(json!({ "jails": out }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pidfile_is_only_read_below_the_jail_base() {
        let d = JailData {
            dir: PathBuf::from("/etc"),
            pidfile: PathBuf::from("/etc/shadow"),
            ..Default::default()
        };
        assert_eq!(d.pidfile_pid(Path::new("/srv/jailer")), None);
    }
}
