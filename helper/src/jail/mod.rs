//! Privileged jail operations: stage a VM's chroot, launch Firecracker through the jailer (or
//! directly as the owner), find it again, and tear it all down.
//!
//! Every resource is written to the ledger before it is made (`jail` for the VM's jail
//! directory, `mount` for each mount point, `cgroup` for the VM's cgroup), so a failure half
//! way, a crash or a restarted helper leaves nothing teardown cannot find; teardown touches
//! ledger entries only.

pub mod argv;
pub mod cgroup;
pub mod console;
pub mod http;
pub mod mounts;
pub mod process;
pub mod stage;

use crate::ledger::{Entry, LedgerError};
use crate::ops::Ctx;
use banger::find_pid::{self, Target};
use banger::proto::code;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum JailError {
    #[error(
        "no {what} binary: set {var} or the config key \"{key}\" (or put {what} on root's PATH)"
    )]
    NoBinary {
        what: &'static str,
        var: &'static str,
        key: &'static str,
    },
    #[error(
        "{name} is not installed next to the running banger binary or on PATH (reinstall banger)"
    )]
    NoHelperBinary { name: &'static str },
    #[error("cannot {what} {path}")]
    Stage {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("refused {path}: a component is a symlink")]
    Symlink { path: PathBuf },
    #[error("{path} is not a regular file (or, for a disk, a block device)")]
    NotAFile { path: PathBuf },
    #[error("{path} is on another filesystem")]
    CrossDevice { path: PathBuf },
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
    #[error("Firecracker's API refused {what}: {answer}")]
    Api { what: &'static str, answer: String },
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
    Ledger(#[from] LedgerError),
}

impl JailError {
    /// The helper's error code for this failure.
    pub fn code(&self) -> &'static str {
        match self {
            JailError::NoBinary { .. } | JailError::NoHelperBinary { .. } => code::NOT_FOUND,
            JailError::Symlink { .. } | JailError::NotAFile { .. } => code::INVALID_PATH,
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

/// What `jail.launch` needs once validated.
#[derive(Debug, Clone)]
pub struct LaunchSpec {
    pub name: String,
    pub launcher: Launcher,
    pub kernel: PathBuf,
    pub initrd: Option<PathBuf>,
    /// A file under the VM dirs, or a block device the ledger knows.
    pub rootfs: PathBuf,
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
    /// The chroot (`<dir>/root`), or null for direct.
    pub chroot: Option<PathBuf>,
    /// The API socket's real path on the host.
    pub socket: PathBuf,
    pub pidfile: PathBuf,
    pub pid: Option<i32>,
    pub start_time: Option<u64>,
    pub comm: String,
    pub argv: Vec<String>,
    /// Host paths of the console, log and metrics files.
    pub console: PathBuf,
    pub log: PathBuf,
    pub metrics: PathBuf,
    /// Paths as Firecracker sees them.
    pub kernel: String,
    pub initrd: Option<String>,
    pub rootfs: String,
    pub cgroup: Option<PathBuf>,
    /// The console keeper (banger-console-keeper) and its start time.
    #[serde(default)]
    pub keeper_pid: Option<i32>,
    #[serde(default)]
    pub keeper_start_time: Option<u64>,
}

impl JailData {
    fn target(&self) -> Target {
        Target {
            id: self.id.clone(),
            comm: self.comm.clone(),
            pid: self.pid,
            start_time: self.start_time,
            api_sock: None,
            pidfile: Some(self.pidfile.clone()),
        }
    }
}

fn jail_entries(ctx: &Ctx, vm: &str) -> Result<Vec<(Entry, JailData)>, JailError> {
    Ok(ctx
        .ledger
        .for_vm(vm)?
        .into_iter()
        .filter(|e| e.kind == "jail")
        .filter_map(|e| {
            let d = serde_json::from_value(e.data.clone()).ok()?;
            Some((e, d))
        })
        .collect())
}

/// The owner's uid and gid (root when none is configured).
pub fn owner(ctx: &Ctx) -> (u32, u32) {
    let uid = ctx.cfg.owner_uid.unwrap_or(0);
    (uid, ctx.cfg.owner_gid.unwrap_or(uid))
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

/// Launches (or finds running) the VM's Firecracker. On any failure everything made is
/// removed again.
pub fn launch(ctx: &Ctx, spec: &LaunchSpec) -> Result<Value, JailError> {
    for (entry, data) in jail_entries(ctx, &spec.name)? {
        if let Some(f) = find_pid::find_pid(&data.target()) {
            let mut data = data;
            data.pid = Some(f.pid);
            data.start_time = Some(f.start_time);
            ctx.ledger.add(Entry {
                data: serde_json::to_value(&data).unwrap_or(Value::Null),
                ..entry
            })?;
            return Ok(answer(&data, true));
        }
    }
    // Remnants of an earlier launch whose Firecracker is gone.
    teardown(ctx, &spec.name, Duration::ZERO)?;
    // The jailer canonicalizes --exec-file and names the chroot after the real file, so
    // banger does too: a `firecracker` symlink to `firecracker-v1.16.1-x86_64` is common.
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
    let base = &ctx.cfg.jail_dir;
    let (dir, chroot) = match spec.launcher {
        Launcher::Jailer => {
            let d = base.join(&exec_name).join(&spec.name);
            (d.clone(), Some(d.join("root")))
        }
        Launcher::Direct => (base.join("direct").join(&spec.name), None),
    };
    if std::fs::symlink_metadata(&dir).is_ok() {
        return Err(JailError::Exists { path: dir });
    }
    let root = chroot.clone().unwrap_or_else(|| dir.clone());
    let (socket, seen_root) = match spec.launcher {
        Launcher::Jailer => (
            root.join(argv::JAILED_API_SOCK.trim_start_matches('/')),
            PathBuf::from("/"),
        ),
        Launcher::Direct => (root.join("firecracker.socket"), root.clone()),
    };
    let (uid, gid) = owner(ctx);
    let seen = |name: &str| seen_root.join(name).display().to_string();
    let mut data = JailData {
        launcher: match spec.launcher {
            Launcher::Jailer => "jailer".into(),
            Launcher::Direct => "direct".into(),
        },
        id: spec.name.clone(),
        dir: dir.clone(),
        chroot: chroot.clone(),
        socket: socket.clone(),
        // The jailer names its pidfile after the exec file: `<chroot>/<exec name>.pid`.
        pidfile: match spec.launcher {
            Launcher::Jailer => root.join(format!("{exec_name}.pid")),
            Launcher::Direct => root.join("firecracker.pid"),
        },
        pid: None,
        start_time: None,
        comm: find_pid::comm_of(&firecracker.display().to_string()),
        argv: Vec::new(),
        console: root.join(stage::CONSOLE),
        log: root.join(stage::LOG),
        metrics: root.join(stage::METRICS),
        kernel: seen(stage::KERNEL),
        initrd: spec.initrd.as_ref().map(|_| seen(stage::INITRD)),
        rootfs: seen(stage::ROOTFS),
        cgroup: None,
        keeper_pid: None,
        keeper_start_time: None,
    };
    let plan = argv::Plan {
        id: spec.name.clone(),
        jailer: jailer.clone().unwrap_or_default(),
        firecracker: firecracker.clone(),
        uid,
        gid,
        chroot_base: base.clone(),
        root: seen_root.clone(),
        vcpus: spec.vcpus,
        mem_mib: spec.mem_mib,
        cgroup_v2: spec.launcher == Launcher::Jailer && cgroup::usable_v2().is_some(),
    };
    data.argv = match spec.launcher {
        Launcher::Jailer => plan.jailer_argv(),
        Launcher::Direct => plan.direct_argv(&socket),
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
    match build(ctx, spec, &mut data, uid, gid) {
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

/// Stages, starts and waits; `data` gains the pid. Anything it made is in the ledger.
fn build(
    ctx: &Ctx,
    spec: &LaunchSpec,
    data: &mut JailData,
    uid: u32,
    gid: u32,
) -> Result<(), JailError> {
    let deadline = Instant::now() + spec.timeout;
    let base = &ctx.cfg.jail_dir;
    let jailed = spec.launcher == Launcher::Jailer;
    // Shared parents are root's and world-traversable; the VM's own directory too (the owner
    // reads its console inside), its root is the owner's alone once the jailer chowns it.
    if !base.exists() {
        std::fs::create_dir_all(base).map_err(|source| JailError::Stage {
            what: "create",
            path: base.clone(),
            source,
        })?;
    }
    if let Some(parent) = data.dir.parent() {
        stage::mkdir(parent, 0o755, true)?;
    }
    stage::mkdir(&data.dir, 0o755, false)?;
    let root = data.chroot.clone().unwrap_or_else(|| data.dir.clone());
    if jailed {
        stage::mkdir(&root, 0o700, false)?;
    } else {
        stage::chown_dir(&root, uid, gid, 0o700)?;
    }
    stage::file(&spec.kernel, &root, stage::KERNEL, uid, gid)?;
    if let Some(i) = &spec.initrd {
        stage::file(i, &root, stage::INITRD, uid, gid)?;
    }
    let mut self_bound = false;
    let mut self_bind = |ctx: &Ctx| -> Result<(), JailError> {
        if !self_bound {
            ctx.ledger.add(Entry::new(
                &spec.name,
                "mount",
                &root.display().to_string(),
                json!({"self": true}),
            ))?;
            mounts::self_bind(&root)?;
            self_bound = true;
        }
        Ok(())
    };
    if stage::disk(&spec.rootfs, &root, uid, gid)? == stage::Disk::NeedsBind {
        self_bind(ctx)?;
        let dst = root.join(stage::ROOTFS);
        ctx.ledger.add(Entry::new(
            &spec.name,
            "mount",
            &dst.display().to_string(),
            json!({"source": spec.rootfs}),
        ))?;
        let fd = stage::open_no_symlinks(&spec.rootfs)?;
        mounts::bind(
            Path::new(&format!(
                "/proc/self/fd/{}",
                std::os::fd::AsRawFd::as_raw_fd(&fd)
            )),
            &dst,
            true,
        )?;
    }
    stage::empty(&root, stage::CONSOLE, 0o640, uid, gid)?;
    let fifo = console::make_fifo(&root, uid, gid)?;
    stage::empty(&root, stage::LOG, 0o640, uid, gid)?;
    stage::empty(&root, stage::METRICS, 0o640, uid, gid)?;
    let firecracker = PathBuf::from(data.argv_exec());
    if jailed && mounts::is_dynamic(&firecracker)? {
        self_bind(ctx)?;
        for lib in mounts::lib_dirs(&firecracker)? {
            let dst = root.join(lib.strip_prefix("/").unwrap_or(&lib));
            std::fs::create_dir_all(&dst).map_err(|source| JailError::Stage {
                what: "create",
                path: dst.clone(),
                source,
            })?;
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
    let (pid, start_time) = if jailed {
        let left = deadline.saturating_duration_since(Instant::now());
        process::run_jailer(&data.argv, &data.dir.join("jailer.log"), left)?;
        let pid = process::wait_pidfile(&data.pidfile, deadline, &data.dir.join("jailer.log"))?;
        process::wait_api(&data.socket, Some(pid), deadline, &[&data.log])?;
        let info = find_pid::verify(&find_pid::Proc::default(), &t, pid)
            .ok_or(JailError::Unidentified { pid })?;
        (pid, info.start_time)
    } else {
        let stderr = stage::empty(&root, "firecracker.stderr", 0o640, uid, gid)?;
        process::spawn_direct(&data.argv, uid, gid, &stderr)?;
        let (pid, start) =
            process::find_direct(&t, &data.socket, deadline).ok_or_else(|| JailError::Timeout {
                what: "the direct Firecracker to start",
                detail: process::tail(&stderr, 20),
            })?;
        std::fs::write(&data.pidfile, pid.to_string()).map_err(|source| JailError::Stage {
            what: "write",
            path: data.pidfile.clone(),
            source,
        })?;
        process::wait_api(&data.socket, Some(pid), deadline, &[&data.log, &stderr])?;
        (pid, start)
    };
    data.pid = Some(pid);
    data.start_time = Some(start_time);
    let keeper = console::start_keeper(
        &root,
        &fifo,
        &data.console,
        ctx.cfg.console_max_bytes,
        pid,
        start_time,
        uid,
        gid,
    )?;
    data.keeper_pid = Some(keeper.pid);
    data.keeper_start_time = Some(keeper.start_time);
    // With --daemonize the jailer sends the serial console to /dev/null: Firecracker writes
    // it to the keeper's FIFO instead (before InstanceStart, which banger-vm sends later).
    let console_seen = if jailed {
        format!("/{}", console::FIFO)
    } else {
        fifo.display().to_string()
    };
    let body = json!({ "serial_out_path": console_seen }).to_string();
    match http::request(
        &data.socket,
        "PUT",
        "/serial",
        Some(&body),
        Duration::from_secs(2),
    ) {
        Ok((204, _)) | Ok((200, _)) => Ok(()),
        Ok((c, b)) => Err(JailError::Api {
            what: "PUT /serial",
            answer: format!("{c} {}", b.trim()),
        }),
        Err(e) => Err(JailError::Api {
            what: "PUT /serial",
            answer: e.to_string(),
        }),
    }
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
/// after the identity checks), unmounts (guarded), removes the cgroup and the jail
/// directory. The VM's disk is never touched: only its hard link, node or bind mount.
pub fn teardown(ctx: &Ctx, vm: &str, grace: Duration) -> Result<Value, JailError> {
    let entries = ctx.ledger.for_vm(vm)?;
    let jails = jail_entries(ctx, vm)?;
    let mut stopped = Vec::new();
    for (_, d) in &jails {
        if let Some(pid) = process::stop(&d.target(), grace)? {
            stopped.push(pid);
        }
        if let (Some(p), Some(t)) = (d.keeper_pid, d.keeper_start_time) {
            console::stop_keeper(p, t);
        }
    }
    let mut removed = Vec::new();
    // Mounts: deepest first, each below its own jail directory.
    let mut mnts: Vec<&Entry> = entries.iter().filter(|e| e.kind == "mount").collect();
    mnts.sort_by_key(|e| std::cmp::Reverse(e.id.len()));
    for m in mnts {
        let point = PathBuf::from(&m.id);
        let guard = jails
            .iter()
            .map(|(_, d)| &d.dir)
            .find(|d| point.starts_with(d))
            .ok_or(JailError::Refused {
                path: point.clone(),
                why: "no jail of this VM holds it",
            })?;
        mounts::unmount(&point, guard)?;
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
        remove_dir(&ctx.cfg.jail_dir, &d.dir)?;
        ctx.ledger.remove(vm, "jail", &e.id)?;
        removed.push(e.id.clone());
    }
    Ok(json!({ "name": vm, "stopped": stopped, "removed": removed }))
}

/// Removes a jail directory, only below the jail base and only with no mount left below it.
fn remove_dir(base: &Path, dir: &Path) -> Result<(), JailError> {
    if !dir.starts_with(base) || dir.components().count() < base.components().count() + 2 {
        return Err(JailError::Refused {
            path: dir.to_path_buf(),
            why: "not a VM's directory under the jail base",
        });
    }
    let left = mounts::mounts_under(dir);
    if !left.is_empty() {
        let list: Vec<String> = left.iter().map(|p| p.display().to_string()).collect();
        return Err(JailError::MountsRemain {
            path: dir.to_path_buf(),
            mounts: list.join(", "),
        });
    }
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(JailError::Remove {
            path: dir.to_path_buf(),
            source: e,
        }),
        _ => Ok(()),
    }
}

/// Every jail in the ledger (or one VM's), with whether its Firecracker lives.
pub fn list(ctx: &Ctx, vm: Option<&str>) -> Result<Value, JailError> {
    let entries = match vm {
        Some(v) => ctx.ledger.for_vm(v)?,
        None => ctx.ledger.list()?,
    };
    let mut out = Vec::new();
    for e in entries.into_iter().filter(|e| e.kind == "jail") {
        let Ok(d) = serde_json::from_value::<JailData>(e.data.clone()) else {
            continue;
        };
        let found = find_pid::find_pid(&d.target());
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
