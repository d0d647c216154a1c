//! Starting Firecracker so it outlives the helper, waiting for it, and stopping it.
//!
//! The jailer runs with `--daemonize`: it forks twice and calls `setsid()` itself, so its
//! foreground process exits at once (we reap it) and Firecracker ends up in its own session,
//! re-parented away from the helper. The direct launcher does the same by hand: the child
//! drops to the owner's uid, calls `setsid()`, forks, and the intermediate exits (reaped by
//! us), so no Firecracker is ever the helper's child and no zombie is left behind. With
//! systemd's `KillMode=process`, restarting the helper leaves them running.

use super::JailError;
use banger::find_pid::{self, Proc, Target};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How often to look again while waiting.
const POLL: Duration = Duration::from_millis(5);

/// The last `n` lines of a text file (for error messages), or a note that it is empty.
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    if lines.is_empty() {
        return format!("({} is empty)", path.display());
    }
    let start = lines.len().saturating_sub(n);
    format!("{}:\n  {}", path.display(), lines[start..].join("\n  "))
}

/// Runs the jailer; its own output goes to `out` (a root-owned file beside the chroot).
pub fn run_jailer(argv: &[String], out: &Path, timeout: Duration) -> Result<(), JailError> {
    let f = std::fs::File::create(out).map_err(|source| JailError::Stage {
        what: "create",
        path: out.to_path_buf(),
        source,
    })?;
    let f2 = f.try_clone().map_err(|source| JailError::Stage {
        what: "open",
        path: out.to_path_buf(),
        source,
    })?;
    let mut child = Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(f)
        .stderr(f2)
        .spawn()
        .map_err(|source| JailError::Spawn {
            path: argv[0].clone().into(),
            source,
        })?;
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(st)) if st.success() => return Ok(()),
            Ok(Some(st)) => {
                return Err(JailError::JailerFailed {
                    status: st.to_string(),
                    output: tail(out, 20),
                })
            }
            Ok(None) if Instant::now() < deadline => std::thread::sleep(POLL),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(JailError::Timeout {
                    what: "the jailer to finish",
                    detail: tail(out, 20),
                });
            }
            Err(source) => {
                return Err(JailError::Spawn {
                    path: argv[0].clone().into(),
                    source,
                })
            }
        }
    }
}

/// Starts Firecracker as `uid:gid`, in its own session, not as our child.
pub fn spawn_direct(argv: &[String], uid: u32, gid: u32, stderr: &Path) -> Result<(), JailError> {
    let err = std::fs::OpenOptions::new()
        .append(true)
        .open(stderr)
        .map_err(|source| JailError::Stage {
            what: "open",
            path: stderr.to_path_buf(),
            source,
        })?;
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .uid(uid)
        .gid(gid)
        .current_dir("/")
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(err);
    // SAFETY: the closure runs in the forked child before exec and only makes async-signal-safe
    // system calls (setsid, fork, _exit); it touches no lock or allocation of the parent.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid().map_err(std::io::Error::from)?;
            match nix::unistd::fork().map_err(std::io::Error::from)? {
                nix::unistd::ForkResult::Parent { .. } => nix::libc::_exit(0),
                nix::unistd::ForkResult::Child => Ok(()),
            }
        });
    }
    // spawn() returns once the grandchild has exec'd (or reports its exec error); the child
    // it knows of is the intermediate, which exits at once.
    let mut child = cmd.spawn().map_err(|source| JailError::Spawn {
        path: argv[0].clone().into(),
        source,
    })?;
    let _ = child.wait();
    Ok(())
}

/// Waits for the jailer's pidfile and reads it.
pub fn wait_pidfile(path: &Path, deadline: Instant, log: &Path) -> Result<i32, JailError> {
    loop {
        match find_pid::read_pidfile(path) {
            Ok(pid) => return Ok(pid),
            Err(_) if Instant::now() < deadline => std::thread::sleep(POLL),
            Err(e) => {
                return Err(JailError::Timeout {
                    what: "the jailer's pidfile",
                    detail: format!("{e}\n{}", tail(log, 20)),
                })
            }
        }
    }
}

/// Waits until Firecracker answers `GET /` on `sock` with 200, failing early when `pid` dies.
pub fn wait_api(
    sock: &Path,
    pid: Option<i32>,
    deadline: Instant,
    logs: &[&Path],
) -> Result<(), JailError> {
    let tails = || {
        logs.iter()
            .map(|l| tail(l, 20))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let proc = Proc::default();
    loop {
        let last = match super::http::request(sock, "GET", "/", None, Duration::from_millis(500)) {
            Ok((200, _)) => return Ok(()),
            Ok((code, body)) => format!("GET / answered {code}: {}", body.trim()),
            Err(e) => e.to_string(),
        };
        if let Some(p) = pid {
            if proc.info(p).is_none_or(|i| i.is_dead()) {
                return Err(JailError::Died {
                    pid: p,
                    log: tails(),
                });
            }
        }
        if Instant::now() >= deadline {
            return Err(JailError::Timeout {
                what: "Firecracker's API to answer GET /",
                detail: format!("{}: {last}\n{}", sock.display(), tails()),
            });
        }
        std::thread::sleep(POLL);
    }
}

/// Finds the direct launcher's Firecracker by its API socket path in its command line.
pub fn find_direct(t: &Target, sock: &Path, deadline: Instant) -> Option<(i32, u64)> {
    let proc = Proc::default();
    loop {
        if let Some(i) = proc.newest_matching(&sock.display().to_string()) {
            if find_pid::verify(&proc, t, i.pid).is_some() {
                return Some((i.pid, i.start_time));
            }
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(POLL);
    }
}

fn signal(pid: i32, sig: rustix::process::Signal) {
    if let Some(p) = rustix::process::Pid::from_raw(pid) {
        let _ = rustix::process::kill_process(p, sig);
    }
}

/// Stops the target's Firecracker if it still runs: SIGTERM, then SIGKILL after `grace`.
/// The identity checks are made again before each signal. Returns the PID it stopped.
pub fn stop(t: &Target, grace: Duration) -> Result<Option<i32>, JailError> {
    let Some(found) = find_pid::find_pid(t) else {
        return Ok(None);
    };
    let pid = found.pid;
    let pinned = Target {
        pid: Some(pid),
        start_time: Some(found.start_time),
        ..t.clone()
    };
    let proc = Proc::default();
    let alive = |proc: &Proc| {
        find_pid::verify(proc, &pinned, pid).is_some_and(|i| i.start_time == found.start_time)
    };
    for (sig, wait) in [
        (rustix::process::Signal::TERM, grace),
        (rustix::process::Signal::KILL, Duration::from_secs(5)),
    ] {
        if !alive(&proc) {
            return Ok(Some(pid));
        }
        signal(pid, sig);
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline {
            if !alive(&proc) {
                return Ok(Some(pid));
            }
            std::thread::sleep(POLL);
        }
    }
    if alive(&proc) {
        return Err(JailError::WontDie { pid });
    }
    Ok(Some(pid))
}
