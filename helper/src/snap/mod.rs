//! Privileged snapshot operations: a VM's root disk as a copy-on-write snapshot of its image
//! ([`disk`]), by device-mapper ([`dm`]), reflink or sparse copy ([`clone`]), and the files
//! written into it before first boot without mounting it ([`customize`]).
//!
//! Paths are derived from names here, never taken from a request: the image is
//! `images/IMAGE/rootfs.ext4`, the VM's disk `vms/VM/disk.ext4` (`vms/VM/disk.cow` plus
//! `/dev/mapper/banger-VM` for dm). Every object made is in the ledger before it exists, and a
//! failure half way removes what was made.

pub mod clone;
pub mod customize;
pub mod disk;
pub mod dm;
pub mod export;
pub mod loopdev;
pub mod slots;

use crate::ledger::LedgerError;
use banger::detach::Creds;
use banger::proto::{code, OpError};
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::path::PathBuf;

/// How a VM's disk was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    DmSnapshot,
    Reflink,
    Copy,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::DmSnapshot => "dm-snapshot",
            Method::Reflink => "reflink",
            Method::Copy => "copy",
        }
    }
    pub fn parse(s: &str) -> Option<Method> {
        match s {
            "dm-snapshot" | "dm" => Some(Method::DmSnapshot),
            "reflink" => Some(Method::Reflink),
            "copy" => Some(Method::Copy),
            _ => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SnapError {
    #[error("no image named {image:?} (no {path}): banger-image list shows the images; add one with banger-image import or build")]
    NoImage { image: String, path: PathBuf },
    #[error("no VM named {vm:?} (no {path}): create it first with banger-vm new")]
    NoVm { vm: String, path: PathBuf },
    #[error("VM {vm:?} already has a disk ({path}, made by {method}): remove it first with banger-snap rm {vm}")]
    Exists {
        vm: String,
        path: String,
        method: String,
    },
    #[error("{path} already exists but banger did not make it (it is not in the ledger): move it away first")]
    Stray { path: PathBuf },
    #[error("VM {vm:?} has no disk (nothing in the ledger): run banger-snap create {vm} first")]
    NoDisk { vm: String },
    #[error(
        "--disk-size {want} bytes is smaller than the image ({have} bytes): a disk can only grow"
    )]
    Shrink { want: u64, have: u64 },
    #[error("cannot open {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot create {path}")]
    Create {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot reflink {src} to {dst} (the state dir's filesystem does not share blocks; use XFS or btrfs, or --method copy)")]
    Reflink {
        src: PathBuf,
        dst: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot copy {src} to {dst}")]
    Copy {
        src: PathBuf,
        dst: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot {what} {path}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot run {program} (install the {package} package)")]
    Spawn {
        program: String,
        package: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{command} failed: {stderr}")]
    Tool { command: String, stderr: String },
    #[error(
        "device-mapper does not work on this host ({why}): use --method reflink or --method copy"
    )]
    NoDm { why: String },
    #[error("the disk {path} does not read back what was written: {what}")]
    Verify { path: PathBuf, what: String },
    #[error("test hook: BANGER_TEST_FAIL_AT={0} (failure injected on purpose)")]
    Injected(String),
    #[error("cannot update the ledger")]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Fs(#[from] banger::fsx::FsxError),
    #[error(transparent)]
    Cred(#[from] crate::cred::CredError),
    #[error("loop device: cannot {what} {path}")]
    Loop {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl SnapError {
    /// The op error code for this failure.
    pub fn code(&self) -> &'static str {
        match self {
            SnapError::NoImage { .. } | SnapError::NoVm { .. } | SnapError::NoDisk { .. } => {
                code::NOT_FOUND
            }
            SnapError::Exists { .. } | SnapError::Stray { .. } => code::CONFLICT,
            SnapError::Shrink { .. } => code::INVALID_ARGS,
            SnapError::Fs(e) if e.is_not_found() => code::NOT_FOUND,
            SnapError::Fs(banger::fsx::FsxError::Escape { .. })
            | SnapError::Fs(banger::fsx::FsxError::WrongType { .. })
            | SnapError::Fs(banger::fsx::FsxError::Linked { .. }) => code::INVALID_PATH,
            _ => code::FAILED,
        }
    }
}

impl From<SnapError> for OpError {
    fn from(e: SnapError) -> OpError {
        OpError::new(e.code(), banger::cli::one_line(&e))
    }
}

/// Test hook: when `BANGER_TEST_FAIL_AT` names `point` (e.g. `snap.create:customize`), fail
/// there. Honoured only in debug builds (the test suite's), never in a release build.
pub fn fail_point(point: &str) -> Result<(), SnapError> {
    if cfg!(debug_assertions) {
        if let Ok(v) = std::env::var("BANGER_TEST_FAIL_AT") {
            if v.split(',').any(|p| p.trim() == point) {
                return Err(SnapError::Injected(point.to_string()));
            }
        }
    }
    Ok(())
}

/// A host tool run on files the helper opened: the child inherits `fds` at the same numbers
/// (the arguments name them as `/dev/fd/N`, see [`fd_arg`]), so it works on exactly the files
/// the helper opened, with no path lookup to race with; with `owner` it runs as the owner, so
/// a tool parsing an untrusted filesystem never does so as root. `stdin` is written to it.
pub fn tool_output(
    program: &str,
    args: &[String],
    fds: &[BorrowedFd<'_>],
    stdin: Option<&[u8]>,
    owner: Option<&Creds>,
    package: &'static str,
) -> Result<std::process::Output, SnapError> {
    use std::io::Write;
    use std::os::unix::process::CommandExt;
    let mut cmd = std::process::Command::new(program);
    cmd.args(args)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("LC_ALL", "C")
        .current_dir("/")
        .stdin(if stdin.is_some() {
            std::process::Stdio::piped()
        } else {
            std::process::Stdio::null()
        })
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
    let creds = owner.map(Creds::for_child);
    // SAFETY: the closure runs in the forked child before exec and only makes raw,
    // async-signal-safe system calls (setgroups/setresgid/setresuid, fcntl); the fd numbers
    // and credentials it reads were prepared before the fork and stay valid in the child.
    unsafe {
        cmd.pre_exec(move || {
            if let Some(c) = &creds {
                c.apply()?;
            }
            for &fd in &raw {
                let fd = BorrowedFd::borrow_raw(fd);
                rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::empty())?;
            }
            Ok(())
        });
    }
    let spawn_err = |source| SnapError::Spawn {
        program: program.into(),
        package,
        source,
    };
    let mut child = cmd.spawn().map_err(spawn_err)?;
    let writer = match (stdin, child.stdin.take()) {
        (Some(data), Some(mut pipe)) => {
            let data = data.to_vec();
            Some(std::thread::spawn(move || {
                let _ = pipe.write_all(&data);
            }))
        }
        _ => None,
    };
    let out = child.wait_with_output().map_err(spawn_err)?;
    if let Some(w) = writer {
        let _ = w.join();
    }
    Ok(out)
}

/// How a child names an inherited fd.
pub fn fd_arg(fd: &impl AsRawFd) -> String {
    format!("/dev/fd/{}", fd.as_raw_fd())
}

/// [`tool_output`], failing on a non-zero exit or on an unopenable filesystem reported in
/// stderr (debugfs says so on stderr and exits 0). Returns stdout.
pub fn tool(
    program: &str,
    args: &[String],
    fds: &[BorrowedFd<'_>],
    stdin: Option<&[u8]>,
    owner: Option<&Creds>,
    package: &'static str,
) -> Result<String, SnapError> {
    let out = tool_output(program, args, fds, stdin, owner, package)?;
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    if !out.status.success()
        || stderr.contains("while opening filesystem")
        || stderr.contains("while trying to open")
    {
        return Err(SnapError::Tool {
            command: format!("{program} {}", args.join(" ")),
            stderr: if stderr.is_empty() {
                out.status.to_string()
            } else {
                stderr
            },
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs a program, returns its stdout; a non-zero exit is [`SnapError::Tool`] with stderr.
pub fn run(program: &str, args: &[&str], package: &'static str) -> Result<String, SnapError> {
    run_cmd(std::process::Command::new(program).args(args), package)
}

/// [`run`] for a prepared command.
pub fn run_cmd(
    cmd: &mut std::process::Command,
    package: &'static str,
) -> Result<String, SnapError> {
    Ok(banger::tool::output(cmd, package)?)
}

impl From<banger::tool::ToolError> for SnapError {
    fn from(e: banger::tool::ToolError) -> SnapError {
        match e {
            banger::tool::ToolError::Spawn {
                program,
                package,
                source,
            } => SnapError::Spawn {
                program,
                package,
                source,
            },
            banger::tool::ToolError::Failed { command, stderr } => {
                SnapError::Tool { command, stderr }
            }
        }
    }
}
