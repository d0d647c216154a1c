//! The VM's serial console, bounded in size: Firecracker writes it to a FIFO in the jail
//! (`PUT /serial`), and `banger-console-keeper`, started here detached as the owner, copies
//! it into `console.log` and rotates that past the configured size (one old generation,
//! `console.log.1`, is kept). Firecracker opens the FIFO read-write and non-blocking, so a
//! missing or dead keeper can never block or kill the guest: its output is dropped instead.

use super::{process, stage, JailError};
use banger::find_pid::Proc;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The FIFO's name in the jail's root.
pub const FIFO: &str = "console.fifo";
/// The keeper's program (found next to the running binary, then on PATH).
pub const KEEPER: &str = "banger-console-keeper";

/// Makes the FIFO, owned by the owner, mode 0600.
pub fn make_fifo(root: &Path, uid: u32, gid: u32) -> Result<PathBuf, JailError> {
    let p = root.join(FIFO);
    let err = |what: &'static str| {
        let p = p.clone();
        move |e: rustix::io::Errno| JailError::Stage {
            what,
            path: p,
            source: e.into(),
        }
    };
    rustix::fs::mkfifoat(rustix::fs::CWD, &p, rustix::fs::Mode::from_raw_mode(0o600))
        .map_err(err("create the console FIFO"))?;
    rustix::fs::chown(
        &p,
        Some(rustix::fs::Uid::from_raw(uid)),
        Some(rustix::fs::Gid::from_raw(gid)),
    )
    .map_err(err("chown"))?;
    Ok(p)
}

/// A started keeper: its pid and start time, for teardown's identity check.
#[derive(Debug, Clone, Copy)]
pub struct Keeper {
    pub pid: i32,
    pub start_time: u64,
}

/// Starts the keeper for Firecracker `pid` as the owner, detached (its own session, not a
/// child of the helper), and finds it.
#[allow(clippy::too_many_arguments)]
pub fn start_keeper(
    root: &Path,
    fifo: &Path,
    log: &Path,
    max_bytes: u64,
    pid: i32,
    start_time: u64,
    uid: u32,
    gid: u32,
) -> Result<Keeper, JailError> {
    let exe = banger::cli::sibling(KEEPER).ok_or(JailError::NoHelperBinary { name: KEEPER })?;
    let stderr = stage::empty(root, "console-keeper.stderr", 0o640, uid, gid)?;
    let argv: Vec<String> = vec![
        exe.display().to_string(),
        "--fifo".into(),
        fifo.display().to_string(),
        "--log".into(),
        log.display().to_string(),
        "--max-bytes".into(),
        max_bytes.to_string(),
        "--pid".into(),
        pid.to_string(),
        "--start-time".into(),
        start_time.to_string(),
    ];
    process::spawn_direct(&argv, uid, gid, &stderr)?;
    let pattern = format!("--fifo {}", fifo.display());
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Some(i) = Proc::default().newest_matching(&pattern) {
            if i.comm.starts_with("banger-console") {
                return Ok(Keeper {
                    pid: i.pid,
                    start_time: i.start_time,
                });
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Err(JailError::Timeout {
        what: "the console keeper to start",
        detail: process::tail(&stderr, 10),
    })
}

/// After Firecracker is gone the keeper drains the FIFO and exits by itself within a
/// second; give it two, then kill it (only if it is still that keeper).
pub fn stop_keeper(pid: i32, start_time: u64) {
    let same = || {
        Proc::default().info(pid).is_some_and(|i| {
            !i.is_dead() && i.start_time == start_time && i.comm.starts_with("banger-console")
        })
    };
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        if !same() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    if same() {
        if let Some(p) = rustix::process::Pid::from_raw(pid) {
            let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
        }
    }
}
