//! The console keeper of a VM, on the owner's side: started detached by `banger-jail launch`
//! once the helper has launched Firecracker (and again when a relaunch finds Firecracker alive
//! but its keeper gone), and waited for by `banger-jail teardown`.
//!
//! As the owner, the keeper is simply started detached. As root (the in-process fallback) it is
//! started as root, so its binary need not be reachable by the owner (a checkout under a 0700
//! directory), and becomes the owner itself (`--user`) before it opens anything.

use banger::config::Config;
use banger::detach;
use banger::find_pid::Proc;
use std::path::Path;
use std::time::{Duration, Instant};

/// The keeper's program (found next to the running binary, then on PATH).
pub const KEEPER: &str = "banger-console-keeper";

#[derive(Debug, thiserror::Error)]
pub enum KeeperError {
    #[error("{KEEPER} is not installed next to {} or on PATH (reinstall banger)", std::env::current_exe().map(|p| p.display().to_string()).unwrap_or_default())]
    Missing,
    #[error("cannot start the console keeper")]
    Start(#[source] detach::DetachError),
    #[error("the console keeper (pid {pid}) exited at once; see {stderr}")]
    Died { pid: i32, stderr: String },
}

/// The keeper's stderr file, in the jail's root.
pub const STDERR: &str = "console-keeper.stderr";

/// A started keeper: its pid and start time, for the identity check at teardown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keeper {
    pub pid: i32,
    pub start_time: u64,
}

/// True when `k` still runs as a console keeper.
pub fn alive(k: &Keeper) -> bool {
    Proc::default().info(k.pid).is_some_and(|i| {
        !i.is_dead() && i.start_time == k.start_time && i.comm.starts_with("banger-console")
    })
}

/// What the keeper is given.
pub struct Spec<'a> {
    pub fifo: &'a Path,
    pub log: &'a Path,
    pub pid: i32,
    pub start_time: u64,
    /// Where the keeper's own stderr goes (a file in the owner's jail root), if it opened.
    pub stderr: Option<&'a std::fs::File>,
}

/// Starts the keeper for Firecracker `s.pid`, detached.
pub fn start(cfg: &Config, s: &Spec) -> Result<Keeper, KeeperError> {
    let exe = banger::cli::sibling(KEEPER).ok_or(KeeperError::Missing)?;
    let mut argv: Vec<String> = vec![
        exe.display().to_string(),
        "--fifo".into(),
        s.fifo.display().to_string(),
        "--log".into(),
        s.log.display().to_string(),
        "--max-bytes".into(),
        cfg.console_max_bytes.to_string(),
        "--pid".into(),
        s.pid.to_string(),
        "--start-time".into(),
        s.start_time.to_string(),
    ];
    if rustix::process::geteuid().is_root() {
        if let Some(uid) = cfg.owner_uid.filter(|u| *u != 0) {
            let gid = cfg.owner_gid.unwrap_or(uid);
            argv.extend(["--user".into(), format!("{uid}:{gid}")]);
        }
    }
    let pid = detach::spawn(&argv, None, s.stderr, &[]).map_err(KeeperError::Start)?;
    // The pid is known at once; its start time too (the process exists: it was just
    // exec'd). A keeper that fails its arguments exits at once: report that.
    let info = Proc::default().info(pid);
    match info {
        Some(i) if !i.is_dead() => Ok(Keeper {
            pid,
            start_time: i.start_time,
        }),
        _ => Err(KeeperError::Died {
            pid,
            stderr: STDERR.into(),
        }),
    }
}

/// After Firecracker is gone the keeper drains the FIFO and exits by itself: give it two
/// seconds (waited on its pidfd, so the wait ends the moment it exits), then kill it (only if
/// it is still that keeper).
pub fn stop(k: &Keeper) {
    if let Some(p) = banger::wait::Pidfd::pin(k.pid, k.start_time) {
        if !p.wait(Duration::from_secs(2)) && alive(k) {
            let _ = rustix::process::pidfd_send_signal(&p, rustix::process::Signal::KILL);
        }
        return;
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut pause = Duration::from_millis(1);
    while Instant::now() < deadline {
        if !alive(k) {
            return;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    }
    if alive(k) {
        if let Some(p) = rustix::process::Pid::from_raw(k.pid) {
            let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
        }
    }
}
