//! Starting Firecracker so it outlives the helper, waiting for it, and stopping it.
//!
//! The jailer runs with `--daemonize`: it forks twice and calls `setsid()` itself, so its
//! foreground process exits at once (we reap it) and Firecracker ends up in its own session,
//! re-parented away from the helper. The direct launcher does the same through
//! [`banger::detach`], so no Firecracker is ever the helper's child and no zombie is left
//! behind. With systemd's `KillMode=process`, restarting the helper leaves them running.

use super::JailError;
use banger::find_pid::{self, Proc, Target};
use banger::fsx::Dir;
use std::fs::File;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The first pause while waiting for something with no event to wait on (the jailer's
/// pidfile, the exec); each further pause doubles, up to [`POLL_MAX`].
const POLL_MIN: Duration = Duration::from_micros(250);
const POLL_MAX: Duration = Duration::from_millis(10);

/// Longest tail of a log quoted in an error.
const TAIL_BYTES: u64 = 16 * 1024;

/// The last `n` non-empty lines of a file the helper itself created and still holds open
/// (never one it would have to look up again by path), or a note that it is empty.
pub fn tail(f: &File, name: &Path, n: usize) -> String {
    use std::os::unix::fs::FileExt;
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let start = len.saturating_sub(TAIL_BYTES);
    let mut buf = vec![0u8; (len - start) as usize];
    let got = f.read_at(&mut buf, start).unwrap_or(0);
    buf.truncate(got);
    let text = String::from_utf8_lossy(&buf).into_owned();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    if lines.is_empty() {
        return format!("({} is empty)", name.display());
    }
    let first = lines.len().saturating_sub(n);
    format!("{}:\n  {}", name.display(), lines[first..].join("\n  "))
}

/// Runs the jailer with its stdout and stderr on `out` (a file root made beside the chroot).
pub fn run_jailer(
    argv: &[String],
    out: &File,
    name: &Path,
    timeout: Duration,
) -> Result<(), JailError> {
    let dup = |f: &File| {
        f.try_clone().map_err(|source| JailError::Stage {
            what: "open",
            path: name.to_path_buf(),
            source,
        })
    };
    let mut child = Command::new(&argv[0])
        .args(&argv[1..])
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(dup(out)?)
        .stderr(dup(out)?)
        .spawn()
        .map_err(|source| JailError::Spawn {
            path: argv[0].clone().into(),
            source,
        })?;
    // The jailer's foreground process exits once it has daemonized: wait on its pidfd.
    let pidfd = rustix::process::Pid::from_raw(child.id() as i32)
        .and_then(|p| rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()).ok());
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(st)) if st.success() => return Ok(()),
            Ok(Some(st)) => {
                return Err(JailError::JailerFailed {
                    status: st.to_string(),
                    output: tail(out, name, 20),
                })
            }
            Ok(None) if Instant::now() < deadline => {
                let left = deadline.saturating_duration_since(Instant::now());
                match &pidfd {
                    Some(fd) => wait_readable(fd, left),
                    None => std::thread::sleep(POLL_MAX.min(left)),
                }
            }
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(JailError::Timeout {
                    what: "the jailer to finish",
                    detail: tail(out, name, 20),
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

/// Waits until `fd` is readable (a pidfd: the process ended) or `timeout` passes.
fn wait_readable(fd: &impl std::os::fd::AsFd, timeout: Duration) {
    let mut fds = [rustix::event::PollFd::new(fd, rustix::event::PollFlags::IN)];
    let ts = rustix::event::Timespec {
        tv_sec: timeout.as_secs() as i64,
        tv_nsec: i64::from(timeout.subsec_nanos()),
    };
    let _ = rustix::event::poll(&mut fds, Some(&ts));
}

/// Reads the pid the jailer wrote to `<chroot>/<name>` once it appears: read through the
/// chroot's directory fd (opened while it was still root's), never following a symlink,
/// never blocking on a FIFO, refusing a hard link, at most 32 bytes. Its content is only a
/// hint: the caller verifies the process before trusting it. Between two reads the wait is
/// on an inotify watch of that same directory (added through its fd, no path looked up), so
/// it ends when the jailer writes the file.
pub fn wait_pidfile(
    root: &Dir,
    name: &str,
    deadline: Instant,
    log: &File,
    log_name: &Path,
) -> Result<i32, JailError> {
    let watch = banger::wait::DirWatch::on_fd(root).ok();
    let mut pause = POLL_MIN;
    loop {
        let last = match root.read_capped_single(Path::new(name), 32) {
            Ok(b) => match std::str::from_utf8(&b)
                .ok()
                .and_then(|t| t.trim().parse::<i32>().ok())
            {
                Some(p) if p > 0 => return Ok(p),
                _ => "it does not hold a pid".to_string(),
            },
            Err(e) => banger::cli::one_line(&e),
        };
        if Instant::now() >= deadline {
            return Err(JailError::Timeout {
                what: "the jailer's pidfile",
                detail: format!(
                    "{}: {last}\n{}",
                    root.join(name).display(),
                    tail(log, log_name, 20)
                ),
            });
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match &watch {
            Some(w) => {
                w.wait(left, None);
            }
            None => {
                std::thread::sleep(pause.min(left));
                pause = (pause * 2).min(POLL_MAX);
            }
        }
    }
}

/// Waits until `pid` is the target's Firecracker (it has exec'd: comm and `--id` match).
/// Returns its start time. Fails early when the process ends.
pub fn wait_exec(
    t: &Target,
    pid: i32,
    deadline: Instant,
    log: &File,
    log_name: &Path,
) -> Result<u64, JailError> {
    let proc = Proc::default();
    let started = Instant::now();
    let mut pause = POLL_MIN;
    loop {
        if let Some(i) = find_pid::verify(&proc, t, pid) {
            return Ok(i.start_time);
        }
        if proc.info(pid).is_none_or(|i| i.is_dead()) {
            return Err(JailError::Died {
                pid,
                log: tail(log, log_name, 20),
            });
        }
        if Instant::now() >= deadline {
            return Err(JailError::Unidentified { pid });
        }
        std::thread::sleep(pause);
        // The exec follows the pidfile within a millisecond or two (nothing signals it): at the
        // shortest pause for the first EXEC_SOON, so the wait ends within a quarter of a
        // millisecond of it (doubling from the start, it ended up to a millisecond late).
        if started.elapsed() >= EXEC_SOON {
            pause = (pause * 2).min(POLL_MAX);
        }
    }
}

/// See [`wait_exec`].
const EXEC_SOON: Duration = Duration::from_millis(10);

/// Has the process behind `pidfd` ended (a pidfd polls readable then)?
fn exited(pidfd: &impl std::os::fd::AsFd) -> bool {
    let mut fds = [rustix::event::PollFd::new(
        pidfd,
        rustix::event::PollFlags::IN,
    )];
    let zero = rustix::event::Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    matches!(rustix::event::poll(&mut fds, Some(&zero)), Ok(n) if n > 0)
}

/// Stops the target's Firecracker if it still runs: SIGTERM, then SIGKILL after `grace`.
/// The process is pinned with a pidfd and its identity checked again after pinning, so the
/// signals can only reach that very process (never a reused pid), and its exit is waited on
/// the pidfd itself. Returns the PID it stopped.
pub fn stop(t: &Target, grace: Duration) -> Result<Option<i32>, JailError> {
    let Some(found) = find_pid::find_pid(t) else {
        return Ok(None);
    };
    let pid = found.pid;
    let Some(pidfd) = rustix::process::Pid::from_raw(pid)
        .and_then(|p| rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()).ok())
    else {
        return Ok(Some(pid)); // gone in between
    };
    let pinned = Target {
        pid: Some(pid),
        start_time: Some(found.start_time),
        ..t.clone()
    };
    let same = find_pid::verify(&Proc::default(), &pinned, pid)
        .is_some_and(|i| i.start_time == found.start_time);
    if !same {
        return Ok(Some(pid));
    }
    for (sig, wait) in [
        (rustix::process::Signal::TERM, grace),
        (rustix::process::Signal::KILL, Duration::from_secs(5)),
    ] {
        if exited(&pidfd) {
            return Ok(Some(pid));
        }
        let _ = rustix::process::pidfd_send_signal(&pidfd, sig);
        wait_readable(&pidfd, wait);
    }
    if !exited(&pidfd) {
        return Err(JailError::WontDie { pid });
    }
    Ok(Some(pid))
}
