//! `banger-jail launch`: the record's `jail` section.
//!
//! The helper stages the jail and starts Firecracker (`jail.launch`); this step, as the
//! owner, then waits for Firecracker's API, sends it the console FIFO (`PUT /serial`) and
//! starts the console keeper: nothing the helper does as root reads or talks to what the owner
//! controls.

use crate::keeper::{self, Keeper};
use crate::LaunchOpts;
use banger::client::Helper;
use banger::config::Config;
use banger::find_pid;
use banger::record::{self, Record};
use banger::step::{Action, StepError};
use banger_helper::jail::http;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("the record has no {section}.{field} (run {step} first)")]
    Missing {
        section: &'static str,
        field: &'static str,
        step: &'static str,
    },
    #[error("no kernel for image {image} at {path} (banger-image list shows the images)")]
    NoKernel { image: String, path: PathBuf },
    #[error("the API socket path {path} is {len} bytes, over the 107 AF_UNIX allows: use a shorter run dir (BANGER_RUN_DIR)")]
    SockTooLong { path: PathBuf, len: usize },
    #[error("{path} exists and is not a symlink: remove it, then launch again")]
    NotSymlink { path: PathBuf },
    #[error("cannot make the API socket symlink {path}")]
    Symlink {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("Firecracker is not ready on {path}: {why}; {log}")]
    NotReady {
        path: PathBuf,
        why: String,
        log: String,
    },
    #[error("Firecracker's API refused {what}: {answer}")]
    Api { what: &'static str, answer: String },
    #[error("the root helper's answer lacks {0}")]
    Answer(&'static str),
    #[error(transparent)]
    Keeper(#[from] crate::keeper::KeeperError),
}

fn missing(section: &'static str, field: &'static str, step: &'static str) -> LaunchError {
    LaunchError::Missing {
        section,
        field,
        step,
    }
}

/// The short API socket path under the run dir.
pub fn api_sock_path(cfg: &Config, name: &str) -> PathBuf {
    cfg.run_dir.join("vms").join(format!("{name}.sock"))
}

/// The short link to the VM's vsock socket under the run dir.
pub fn vsock_sock_path(cfg: &Config, name: &str) -> PathBuf {
    cfg.run_dir.join("vms").join(format!("{name}.vsock"))
}

/// Points `link` at `target`, replacing an older symlink, never anything else.
fn place_symlink(link: &Path, target: &Path) -> Result<(), LaunchError> {
    let len = link.as_os_str().len();
    if len > http::SUN_PATH_MAX {
        return Err(LaunchError::SockTooLong {
            path: link.to_path_buf(),
            len,
        });
    }
    let err = |source| LaunchError::Symlink {
        path: link.to_path_buf(),
        source,
    };
    if let Some(dir) = link.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    match std::fs::symlink_metadata(link) {
        Ok(m) if m.file_type().is_symlink() => {
            if std::fs::read_link(link).is_ok_and(|t| t == target) {
                return Ok(());
            }
            std::fs::remove_file(link).map_err(err)?;
        }
        Ok(_) => {
            return Err(LaunchError::NotSymlink {
                path: link.to_path_buf(),
            })
        }
        Err(_) => {}
    }
    std::os::unix::fs::symlink(target, link).map_err(err)
}

/// The helper's answer to `jail.launch` (the ledger's view of the jail), typed.
#[derive(Debug, Clone, Deserialize)]
struct Answer {
    launcher: String,
    id: String,
    #[serde(default)]
    chroot: Option<PathBuf>,
    #[serde(default)]
    root: Option<PathBuf>,
    socket: PathBuf,
    pidfile: PathBuf,
    pid: Option<i32>,
    start_time: Option<u64>,
    #[serde(default)]
    argv: Vec<String>,
    console: PathBuf,
    #[serde(default)]
    console_fifo: Option<PathBuf>,
    #[serde(default)]
    serial_out_path: Option<String>,
    log: PathBuf,
    metrics: PathBuf,
    kernel: String,
    #[serde(default)]
    initrd: Option<String>,
    rootfs: String,
    #[serde(default)]
    cgroup: Option<PathBuf>,
}

/// The record's `jail` section (see banger-jail(1)); fields banger does not know pass through.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct JailSection {
    pub launcher: String,
    pub id: String,
    pub chroot: Option<PathBuf>,
    #[serde(default)]
    pub root: Option<PathBuf>,
    pub api_sock: PathBuf,
    pub socket: PathBuf,
    pub pid: Option<i32>,
    pub start_time: Option<u64>,
    pub argv: Vec<String>,
    pub console: PathBuf,
    #[serde(default)]
    pub console_fifo: Option<PathBuf>,
    #[serde(default)]
    pub serial_out_path: Option<String>,
    pub log: PathBuf,
    pub metrics: PathBuf,
    pub pidfile: PathBuf,
    pub kernel: String,
    pub initrd: Option<String>,
    pub rootfs: String,
    pub cgroup: Option<PathBuf>,
    /// The vsock device's socket as Firecracker names it (`uds_path` for `PUT /vsock`,
    /// sent by `banger-vm start`); Firecracker makes it in the jail's root.
    #[serde(default)]
    pub vsock_uds: Option<String>,
    /// The run dir's link to that socket, for the host side of the guest agent.
    #[serde(default)]
    pub vsock_sock: Option<PathBuf>,
    #[serde(default)]
    pub keeper_pid: Option<i32>,
    #[serde(default)]
    pub keeper_start_time: Option<u64>,
    #[serde(default)]
    pub launched_at: String,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl JailSection {
    fn from_answer(cfg: &Config, name: &str, a: Answer) -> JailSection {
        // The jailer's Firecracker sees its chroot as /; the direct one sees host paths.
        let vsock_uds = match (&a.chroot, &a.root) {
            (Some(_), _) => Some(format!("/{}", banger::agent::VSOCK_NAME)),
            (None, Some(root)) => Some(root.join(banger::agent::VSOCK_NAME).display().to_string()),
            (None, None) => None,
        };
        JailSection {
            vsock_sock: vsock_uds.as_ref().map(|_| vsock_sock_path(cfg, name)),
            vsock_uds,
            launcher: a.launcher,
            id: a.id,
            chroot: a.chroot,
            root: a.root,
            api_sock: api_sock_path(cfg, name),
            socket: a.socket,
            pid: a.pid,
            start_time: a.start_time,
            argv: a.argv,
            console: a.console,
            console_fifo: a.console_fifo,
            serial_out_path: a.serial_out_path,
            log: a.log,
            metrics: a.metrics,
            pidfile: a.pidfile,
            kernel: a.kernel,
            initrd: a.initrd,
            rootfs: a.rootfs,
            cgroup: a.cgroup,
            keeper_pid: None,
            keeper_start_time: None,
            launched_at: record::now_rfc3339(),
            extra: Map::new(),
        }
    }

    /// The section from a record, if it has a readable one.
    pub fn of(rec: &Record) -> Option<JailSection> {
        serde_json::from_value(rec.get("jail")?.clone()).ok()
    }

    /// The vsock socket's real path on the host (in the jail's root).
    fn vsock_host_path(&self) -> Option<PathBuf> {
        self.vsock_uds.as_ref()?;
        Some(
            self.root
                .clone()
                .or_else(|| self.chroot.clone())?
                .join(banger::agent::VSOCK_NAME),
        )
    }

    /// Links the run dir to the API socket and, when there is one, the vsock socket.
    fn place_links(&self) -> Result<(), LaunchError> {
        place_symlink(&self.api_sock, &self.socket)?;
        if let (Some(link), Some(target)) = (&self.vsock_sock, self.vsock_host_path()) {
            place_symlink(link, &target)?;
        }
        Ok(())
    }

    fn keeper(&self) -> Option<Keeper> {
        Some(Keeper {
            pid: self.keeper_pid?,
            start_time: self.keeper_start_time?,
        })
    }

    fn store(&self, rec: &mut Record) {
        if let Ok(v) = serde_json::to_value(self) {
            rec.insert("jail".into(), v);
        }
    }
}

fn err(code: &str) -> impl FnOnce(LaunchError) -> StepError + '_ {
    move |e| StepError::new(code, &e)
}

/// The first pause while Firecracker's socket exists but does not accept yet (between its
/// bind and its listen); each further one doubles.
const POLL_MIN: Duration = Duration::from_micros(100);
const POLL_MAX: Duration = Duration::from_millis(10);

/// Waits until Firecracker answers `GET /` through the run dir's symlink, failing early when
/// its process is gone, and returns whether the guest was started yet: Firecracker's `GET /`
/// says `"state": "Not started"` until `InstanceStart`. Until the socket exists, the wait is
/// on the socket's directory (an inotify watch) and Firecracker's pidfd, so it ends when the
/// socket appears or Firecracker exits. The log tail in an error is read as this step's user.
fn wait_api(j: &JailSection, deadline: Instant) -> Result<bool, LaunchError> {
    let proc = find_pid::Proc::default();
    let fc = j
        .pid
        .zip(j.start_time)
        .and_then(|(p, s)| banger::wait::Pidfd::pin(p, s));
    let watch = j
        .socket
        .parent()
        .and_then(|d| banger::wait::DirWatch::new(d).ok());
    let mut pause = POLL_MIN;
    loop {
        let last = match http::request(&j.api_sock, "GET", "/", None, Duration::from_millis(500)) {
            Ok((200, body)) => {
                let state = serde_json::from_str::<Value>(&body)
                    .ok()
                    .and_then(|v| v.get("state")?.as_str().map(str::to_string));
                return Ok(state.as_deref() != Some("Not started"));
            }
            Ok((code, body)) => format!("GET / answered {code}: {}", body.trim()),
            Err(e) => e.to_string(),
        };
        let dead = match &fc {
            Some(p) => p.exited(),
            None => j
                .pid
                .is_none_or(|p| proc.info(p).is_none_or(|i| i.is_dead())),
        };
        if dead || Instant::now() >= deadline {
            return Err(LaunchError::NotReady {
                path: j.api_sock.clone(),
                why: if dead {
                    format!("Firecracker (pid {}) exited", j.pid.unwrap_or(0))
                } else {
                    format!("no answer in time ({last})")
                },
                log: banger::fsx::tail_path(&j.log, 20),
            });
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let bound = std::fs::symlink_metadata(&j.socket).is_ok();
        match &watch {
            Some(w) if !bound => {
                w.wait(left, fc.as_ref().map(|p| p.as_fd()));
            }
            _ => {
                std::thread::sleep(pause.min(left));
                pause = (pause * 2).min(POLL_MAX);
            }
        }
    }
}

/// Sends Firecracker its serial console's FIFO (before `InstanceStart`).
fn put_serial(j: &JailSection) -> Result<(), LaunchError> {
    let Some(path) = &j.serial_out_path else {
        return Ok(());
    };
    let body = json!({ "serial_out_path": path }).to_string();
    match http::request(
        &j.api_sock,
        "PUT",
        "/serial",
        Some(&body),
        Duration::from_secs(2),
    ) {
        Ok((204 | 200, _)) => Ok(()),
        Ok((c, b)) => Err(LaunchError::Api {
            what: "PUT /serial",
            answer: format!("{c} {}", b.trim()),
        }),
        Err(e) => Err(LaunchError::Api {
            what: "PUT /serial",
            answer: e.to_string(),
        }),
    }
}

/// The keeper's stderr file in the jail's root, made as the owner (this step's user, or the
/// owner's credentials when root runs it).
fn keeper_stderr(cfg: &Config, j: &JailSection) -> Option<std::fs::File> {
    let root = j.root.clone().or_else(|| j.chroot.clone())?;
    let make = || {
        banger::fsx::Dir::open(&root)
            .and_then(|d| {
                let _ = d.unlink(keeper::STDERR);
                d.create(keeper::STDERR, 0o640)
            })
            .ok()
    };
    let owner = cfg.owner_creds();
    banger_helper::cred::as_owner(owner.as_ref(), make)
        .ok()
        .flatten()
}

/// Starts the console keeper when the section has none alive (a relaunch that found
/// Firecracker running but its keeper gone starts a new one).
fn ensure_keeper(cfg: &Config, j: &mut JailSection) -> Result<(), LaunchError> {
    if j.keeper().is_some_and(|k| keeper::alive(&k)) {
        return Ok(());
    }
    let (Some(fifo), Some(pid), Some(start_time)) = (j.console_fifo.clone(), j.pid, j.start_time)
    else {
        return Ok(());
    };
    let stderr = keeper_stderr(cfg, j);
    let k = keeper::start(
        cfg,
        &keeper::Spec {
            fifo: &fifo,
            log: &j.console,
            pid,
            start_time,
            stderr: stderr.as_ref(),
        },
    )?;
    j.keeper_pid = Some(k.pid);
    j.keeper_start_time = Some(k.start_time);
    Ok(())
}

/// The checks made before the helper stages anything (the KVM device, and Firecracker and
/// the jailer as the helper will launch them, which asks the helper): started in a thread as
/// the step starts, so in a pipeline they run while the steps before this one work, and
/// taken when a record first needs a launch. A record that needs none never waits for them.
pub struct Preflight {
    pending: std::sync::Mutex<Option<std::thread::JoinHandle<Result<(), String>>>>,
    done: std::sync::OnceLock<Result<(), String>>,
}

impl Preflight {
    pub fn start(cfg: &Config, direct: bool) -> Preflight {
        let cfg = cfg.clone();
        let check = move || {
            // The owner's passwd and group lookup, which the console keeper's start needs when
            // root runs this step, made here while the helper works.
            let _ = cfg.owner_creds();
            banger::preflight::kvm(&cfg, false)
                .and_then(|()| banger::preflight::binaries(&cfg, direct))
                .map_err(|p| p.to_string())
        };
        Preflight {
            pending: std::sync::Mutex::new(std::thread::Builder::new().spawn(check).ok()),
            done: std::sync::OnceLock::new(),
        }
    }

    /// The checks' outcome (waiting for them the first time).
    pub fn result(&self) -> Result<(), String> {
        self.done
            .get_or_init(|| {
                let handle = self.pending.lock().ok().and_then(|mut h| h.take());
                match handle.map(std::thread::JoinHandle::join) {
                    Some(Ok(r)) => r,
                    _ => Err("the checks before the launch could not run".into()),
                }
            })
            .clone()
    }
}

/// Launches one record's Firecracker (or finds it already running) and writes `jail`.
pub fn one(
    cfg: &Config,
    rec: &mut Record,
    opts: &LaunchOpts,
    pre: &Preflight,
) -> Result<Action, StepError> {
    let name = record::name(rec).unwrap_or_default().to_string();
    // Already launched and alive: check the symlink, the identity and the keeper.
    if let Some(found) = find_pid::find_for_record(rec) {
        if let Some(mut j) = JailSection::of(rec) {
            j.pid = Some(found.pid);
            j.start_time = Some(found.start_time);
            j.api_sock = api_sock_path(cfg, &name);
            if j.vsock_sock.is_some() {
                j.vsock_sock = Some(vsock_sock_path(cfg, &name));
            }
            j.place_links().map_err(err("symlink"))?;
            let deadline = Instant::now() + Duration::from_millis(opts.timeout_ms);
            let started = wait_api(&j, deadline).map_err(err("launch"))?;
            if !started {
                put_serial(&j).map_err(err("launch"))?;
            }
            ensure_keeper(cfg, &mut j).map_err(err("keeper"))?;
            j.store(rec);
        }
        return Ok(Action::Save);
    }
    let spec = record::section(rec, "spec")
        .ok_or_else(|| missing("spec", "image", "banger-vm new"))
        .map_err(err("missing_section"))?;
    let image = spec
        .get("image")
        .and_then(Value::as_str)
        .ok_or_else(|| missing("spec", "image", "banger-vm new"))
        .map_err(err("missing_section"))?
        .to_string();
    let vcpus = spec.get("vcpus").and_then(Value::as_u64).unwrap_or(1);
    let mem_mib = spec.get("mem_mib").and_then(Value::as_u64).unwrap_or(512);
    let disk = record::section(rec, "snap")
        .and_then(|s| s.get("path"))
        .and_then(Value::as_str)
        .ok_or_else(|| missing("snap", "path", "banger-snap create"))
        .map_err(err("missing_section"))?
        .to_string();
    let img = cfg.images_dir().join(&image);
    let kernel = img.join("vmlinux");
    if !kernel.is_file() {
        return Err(StepError::new(
            "no_kernel",
            &LaunchError::NoKernel {
                image,
                path: kernel,
            },
        ));
    }
    let initrd = Some(img.join("initrd")).filter(|p| p.is_file());
    // Before the helper stages anything: the KVM device, and Firecracker and the jailer as
    // the helper will launch them (checked since the step started).
    banger::timing::span("preflight", || pre.result())
        .map_err(|p| StepError::msg("preflight", p))?;
    let helper = Helper::new(cfg, Some(banger_helper::local));
    let args = json!({
        "name": name,
        "launcher": if opts.direct { "direct" } else { "jailer" },
        "kernel": kernel,
        "initrd": initrd,
        "rootfs": disk,
        "vcpus": vcpus,
        "mem_mib": mem_mib,
        "timeout_ms": opts.timeout_ms,
    });
    let deadline = Instant::now() + Duration::from_millis(opts.timeout_ms);
    let answer = helper
        .call("jail.launch", args)
        .map_err(|e| StepError::new(e.code(), &e))?;
    let checked = serde_json::from_value::<Answer>(answer)
        .map_err(|_| LaunchError::Answer("the jail's fields"))
        .and_then(|a| {
            // A Firecracker adopted from a launch killed half way may not have its console
            // yet: whatever was adopted, a guest not started yet gets it now.
            use banger::timing::span;
            let mut j = JailSection::from_answer(cfg, &name, a);
            span("symlink", || j.place_links())?;
            // The keeper starts in a thread while this one waits for Firecracker's API (the
            // FIFO holds what is written before the keeper reads): neither waits for the
            // other. `keeper` is what is left of its start once the API answers.
            let (kept, started) = std::thread::scope(|s| {
                let mut jk = j.clone();
                let keeper = s.spawn(move || {
                    ensure_keeper(cfg, &mut jk).map(|()| (jk.keeper_pid, jk.keeper_start_time))
                });
                let started = span("api-wait", || wait_api(&j, deadline));
                let kept = span("keeper", || keeper.join());
                (kept, started)
            });
            let (pid, start_time) =
                kept.map_err(|_| LaunchError::Answer("a console keeper (its start panicked)"))??;
            j.keeper_pid = pid;
            j.keeper_start_time = start_time;
            let started = started?;
            if !started {
                span("serial", || put_serial(&j))?;
            }
            Ok(j)
        });
    match checked {
        Ok(j) => {
            j.store(rec);
            Ok(Action::Save)
        }
        Err(e) => {
            // Launched but unusable from here: take it down again rather than leak it.
            let _ = helper.call("jail.teardown", json!({"name": name, "grace_ms": 0}));
            Err(StepError::new("launch", &e))
        }
    }
}
