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

use crate::ledger::LedgerError;
use banger::proto::{code, OpError};
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

/// Runs `program args... /dev/fd/N` where N is `disk`, an open file the child inherits: the
/// child works on exactly the file the helper opened (no path lookup to race with), and
/// with `owner` it runs as the disk's owner, so a tool parsing an untrusted filesystem
/// never does so as root.
pub fn output_on_disk(
    program: &str,
    args: &[&str],
    disk: &std::fs::File,
    owner: Option<(u32, u32)>,
    package: &'static str,
) -> Result<std::process::Output, SnapError> {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let fd = disk.as_raw_fd();
    let mut cmd = std::process::Command::new(program);
    cmd.args(args)
        .arg(format!("/dev/fd/{fd}"))
        .stdin(std::process::Stdio::null());
    if let Some((uid, gid)) = owner {
        cmd.uid(uid).gid(gid);
    }
    // SAFETY: the closure runs in the forked child before exec and only calls fcntl(2),
    // which is async-signal-safe; it borrows nothing but the fd number, which stays open
    // in the parent (and so in the child) until the child has exec'd.
    unsafe {
        cmd.pre_exec(move || {
            let fd = std::os::fd::BorrowedFd::borrow_raw(fd);
            rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::empty())?;
            Ok(())
        });
    }
    cmd.output().map_err(|source| SnapError::Spawn {
        program: program.into(),
        package,
        source,
    })
}

/// [`output_on_disk`], failing on a non-zero exit or on `bad` in stderr (debugfs reports
/// an unopenable filesystem on stderr and exits 0).
pub fn run_on_disk(
    program: &str,
    args: &[&str],
    disk: &std::fs::File,
    owner: Option<(u32, u32)>,
    package: &'static str,
) -> Result<String, SnapError> {
    let out = output_on_disk(program, args, disk, owner, package)?;
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

/// Opens a VM's disk for a tool: a regular file without following a symlink, or the
/// helper's own `/dev/mapper` device.
pub fn open_disk(path: &std::path::Path) -> Result<std::fs::File, SnapError> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut o = std::fs::OpenOptions::new();
    o.read(true).write(true);
    if !path.starts_with("/dev/mapper") {
        o.custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32);
    }
    let f = o.open(path).map_err(|source| SnapError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(f)
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
