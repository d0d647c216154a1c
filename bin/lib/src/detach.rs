//! Starting a long-lived process detached from its caller: in its own session, not the
//! caller's child (a double fork: the intermediate exits at once and is reaped here), with
//! stdin and stdout on /dev/null, stderr on a file the caller opened, no inherited fd beyond
//! those, an empty environment, and optionally another user's credentials (uid, primary gid and
//! supplementary groups, set with raw per-process system calls before `exec`).
//!
//! Used for Firecracker by the direct launcher (in the helper) and for the console keeper (by
//! `banger-jail`): neither may die with the process that started it, nor hold a pipeline's
//! stdout open.

use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

#[derive(Debug, thiserror::Error)]
pub enum DetachError {
    #[error("cannot start {program}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot learn the pid of the detached {program}")]
    Pid {
        program: String,
        #[source]
        source: std::io::Error,
    },
}

/// Whose credentials the process runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Creds {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
}

impl Creds {
    /// The owner's credentials: uid, primary gid and the supplementary groups of its passwd
    /// entry (just the gid when the uid has none).
    pub fn of_user(uid: u32, gid: u32) -> Creds {
        let groups = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
            .ok()
            .flatten()
            .and_then(|u| {
                let name = std::ffi::CString::new(u.name).ok()?;
                nix::unistd::getgrouplist(&name, nix::unistd::Gid::from_raw(gid)).ok()
            })
            .map(|g| g.into_iter().map(|g| g.as_raw()).collect())
            .unwrap_or_else(|| vec![gid]);
        Creds { uid, gid, groups }
    }
}

/// [`Creds`] in the form a forked child applies before `exec` (built before the fork, so the
/// child allocates nothing).
#[derive(Debug, Clone)]
pub struct ChildCreds {
    uid: rustix::fs::Uid,
    gid: rustix::fs::Gid,
    groups: Vec<rustix::fs::Gid>,
}

impl Creds {
    /// What a child needs to become this user.
    pub fn for_child(&self) -> ChildCreds {
        ChildCreds {
            uid: rustix::fs::Uid::from_raw(self.uid),
            gid: rustix::fs::Gid::from_raw(self.gid),
            groups: self
                .groups
                .iter()
                .map(|g| rustix::fs::Gid::from_raw(*g))
                .collect(),
        }
    }
}

impl ChildCreds {
    /// Becomes the user: supplementary groups, then gid, then uid (real, effective and saved,
    /// which also drops every capability). Only raw system calls: safe between fork and exec.
    pub fn apply(&self) -> std::io::Result<()> {
        rustix::thread::set_thread_groups(&self.groups)?;
        rustix::thread::set_thread_res_gid(self.gid, self.gid, self.gid)?;
        rustix::thread::set_thread_res_uid(self.uid, self.uid, self.uid)?;
        Ok(())
    }
}

/// Starts `argv` detached. `stderr` receives the process's stderr; `keep` are further fds the
/// process inherits at the same numbers. Returns the detached process's pid.
pub fn spawn(
    argv: &[String],
    creds: Option<&Creds>,
    stderr: Option<&File>,
    keep: &[RawFd],
) -> Result<i32, DetachError> {
    let program = argv.first().cloned().unwrap_or_default();
    let spawn_err = |source| DetachError::Spawn {
        program: program.clone(),
        source,
    };
    let (rd, wr): (OwnedFd, OwnedFd) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(|e| spawn_err(e.into()))?;
    let wr_fd = wr.as_raw_fd();
    let mut cmd = Command::new(&program);
    cmd.args(&argv[1..])
        .current_dir("/")
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    match stderr {
        Some(f) => {
            let f = f.try_clone().map_err(spawn_err)?;
            cmd.stderr(f);
        }
        None => {
            cmd.stderr(Stdio::null());
        }
    }
    let creds = creds.map(Creds::for_child);
    let keep: Vec<RawFd> = keep.to_vec();
    // SAFETY: the closure runs in the forked child before exec and makes only
    // async-signal-safe system calls (setgroups/setresgid/setresuid as raw syscalls, fcntl,
    // close_range, setsid, fork, write, _exit); it allocates nothing: the vectors it reads
    // were built before the fork and are only borrowed.
    unsafe {
        cmd.pre_exec(move || {
            if let Some(c) = &creds {
                c.apply()?;
            }
            // Only stdio and the kept fds survive the exec: anything else the caller
            // inherited (a test harness's fd 3, a pipeline's other ends) must not be held open
            // by a process that lives on. CLOSE_RANGE_CLOEXEC marks them all close-on-exec
            // (the pipe std uses to report an exec failure is already, and must stay open).
            const CLOSE_RANGE_CLOEXEC: nix::libc::c_uint = 4;
            if nix::libc::syscall(
                nix::libc::SYS_close_range,
                3 as nix::libc::c_uint,
                u32::MAX as nix::libc::c_uint,
                CLOSE_RANGE_CLOEXEC,
            ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            for &fd in &keep {
                let b = std::os::fd::BorrowedFd::borrow_raw(fd);
                rustix::io::fcntl_setfd(b, rustix::io::FdFlags::empty())?;
            }
            nix::unistd::setsid().map_err(std::io::Error::from)?;
            match nix::unistd::fork().map_err(std::io::Error::from)? {
                nix::unistd::ForkResult::Parent { child } => {
                    let b = child.as_raw().to_ne_bytes();
                    nix::libc::write(wr_fd, b.as_ptr().cast(), b.len());
                    nix::libc::_exit(0)
                }
                nix::unistd::ForkResult::Child => Ok(()),
            }
        });
    }
    // spawn() returns once the grandchild has exec'd (or reports its exec error); the child it
    // knows of is the intermediate, which exits at once.
    let mut child = cmd.spawn().map_err(spawn_err)?;
    drop(wr);
    let _ = child.wait();
    let mut b = [0u8; 4];
    File::from(rd)
        .read_exact(&mut b)
        .map_err(|source| DetachError::Pid {
            program: program.clone(),
            source,
        })?;
    Ok(i32::from_ne_bytes(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The parent and session of a process, from `/proc/<which>/stat`.
    fn ppid_and_sid(which: &str) -> (i32, i32) {
        let stat = std::fs::read_to_string(format!("/proc/{which}/stat")).unwrap();
        let after = &stat[stat.rfind(')').unwrap() + 2..];
        let f: Vec<&str> = after.split(' ').collect();
        (f[1].parse().unwrap(), f[3].parse().unwrap())
    }

    #[test]
    fn the_detached_process_is_not_our_child_and_has_its_own_session() {
        let argv: Vec<String> = ["/bin/sleep", "5"].iter().map(|s| s.to_string()).collect();
        let pid = spawn(&argv, None, None, &[]).unwrap();
        let (ppid, sid) = ppid_and_sid(&pid.to_string());
        assert_ne!(ppid, std::process::id() as i32);
        // Our own session as /proc shows it: 0 when its leader is outside this pid
        // namespace (a CI container), where getsid(2) answers 0 too.
        let (_, ours) = ppid_and_sid("self");
        assert_ne!(sid, ours, "in a session of its own");
        assert_ne!(
            sid, pid,
            "not a session leader: it can never take a terminal"
        );
        let _ = rustix::process::kill_process(
            rustix::process::Pid::from_raw(pid).unwrap(),
            rustix::process::Signal::KILL,
        );
    }

    #[test]
    fn a_missing_program_is_a_spawn_error() {
        let argv = vec!["/nonexistent/banger-x".to_string()];
        assert!(matches!(
            spawn(&argv, None, None, &[]),
            Err(DetachError::Spawn { .. })
        ));
    }
}
