//! The guest's side: one connection, one request. [`serve`] reads the request line within
//! [`REQUEST_TIMEOUT`] and at most [`MAX_REQUEST`] bytes, answers a bad one with an error
//! line, and hands a good one to its op.
//!
//! What touches the system beyond files and processes (the hostname, the network, the RNG,
//! rebooting) goes through [`System`], so the tests drive every op on the host without
//! changing it.

mod exec;
mod files;
pub(crate) mod identity;

use crate::conn::{send, Conn, LineError, LineReader};
use crate::proto::{
    code, parse_request, ErrorBody, HelloInfo, Reply, Request, IDLE_TIMEOUT, MAX_REQUEST, PROTOCOL,
    REQUEST_TIMEOUT,
};
use std::path::{Path, PathBuf};

pub use identity::{ip_commands, RealSystem};

/// The agent's version (the workspace's).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// What the agent does to the guest beyond reading and writing files and running commands.
pub trait System: Send + Sync {
    /// Where the guest's files are (`/`; a temp dir in tests).
    fn root(&self) -> &Path;
    fn set_hostname(&self, name: &str) -> std::io::Result<()>;
    /// Mixes `seed` into the kernel's entropy pool and reseeds its CRNG.
    fn reseed(&self, seed: &[u8]) -> std::io::Result<()>;
    /// Runs `ip ARGS` (iproute2, or busybox's), failing on a non-zero exit.
    fn ip(&self, args: &[String]) -> std::io::Result<()>;
    /// Asks PID 1 to shut down (as Ctrl-Alt-Del does), or syncs and reboots at once.
    fn shutdown(&self, force: bool) -> std::io::Result<()>;
    /// Gives the interface the MAC, address and default route of `n` (default: the `ip`
    /// commands of [`ip_commands`]).
    fn net(&self, n: &crate::proto::Net) -> std::io::Result<()> {
        for c in ip_commands(n) {
            self.ip(&c)?;
        }
        Ok(())
    }
    /// Has a running SSH server load the new host keys (default: nothing to do).
    fn reload_sshd(&self) {}
    /// Writes what the guest's filesystems hold in memory to their disks.
    fn sync(&self) {
        rustix::fs::sync();
    }
}

/// `path` (absolute, as the guest names it) below the system's root.
pub fn guest_path(sys: &dyn System, path: &str) -> PathBuf {
    sys.root().join(path.trim_start_matches('/'))
}

pub fn line_error(e: LineError, what: &str) -> ErrorBody {
    match e {
        LineError::TooLong(n) => ErrorBody::new(code::TOO_LARGE, format!("{what} over {n} bytes")),
        LineError::Timeout => ErrorBody::new(code::TIMEOUT, format!("no {what} in time")),
        LineError::Truncated => ErrorBody::new(
            code::BAD_REQUEST,
            format!("the connection closed in the middle of the {what}"),
        ),
        LineError::Io(e) => ErrorBody::new(code::FAILED, format!("reading the {what}: {e}")),
    }
}

/// An I/O error as an answer: its kind picks the code.
pub fn io_error(what: &str, e: &std::io::Error) -> ErrorBody {
    let c = match e.kind() {
        std::io::ErrorKind::NotFound => code::NOT_FOUND,
        std::io::ErrorKind::PermissionDenied => code::PERMISSION_DENIED,
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => code::TIMEOUT,
        _ => code::FAILED,
    };
    ErrorBody::new(c, format!("{what}: {e}"))
}

/// After an error answer, reads (and drops) what the host still sends, for a moment, before
/// the connection closes: closing on unread data would reset the connection, and the host
/// could lose the answer that says what went wrong.
pub fn linger(w: &Conn, rd: &Conn) {
    use std::io::Read;
    w.shutdown_write();
    let _ = rd.set_read_timeout(Some(std::time::Duration::from_millis(500)));
    let mut buf = [0u8; 16 * 1024];
    let mut left: usize = 16 << 20;
    while left > 0 {
        match (&*rd).read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => left = left.saturating_sub(n),
        }
    }
}

/// Serves one connection to its end.
pub fn serve(conn: Conn, sys: &dyn System) {
    let _ = conn.set_read_timeout(Some(REQUEST_TIMEOUT));
    let _ = conn.set_write_timeout(Some(IDLE_TIMEOUT));
    let Ok(reader) = conn.try_clone() else {
        return;
    };
    let mut rd = LineReader::new(reader);
    let mut w = conn;
    let line = match rd.read_line(MAX_REQUEST) {
        Ok(Some(l)) => l,
        Ok(None) => return,
        Err(e) => {
            let _ = send(&mut w, &Reply::err(line_error(e, "request line")));
            return linger(&w, rd.get_ref());
        }
    };
    let req = match parse_request(&line) {
        Ok(r) => r,
        Err(e) => {
            let _ = send(&mut w, &Reply::err(e));
            return linger(&w, rd.get_ref());
        }
    };
    match req {
        Request::Hello(_) => {
            let _ = send(&mut w, &Reply::ok(hello()));
        }
        Request::Exec(x) => exec::run(x, rd, w),
        Request::Put(p) => files::put(sys, p, rd, w),
        Request::Get(g) => files::get(sys, g, w),
        Request::Identity(i) => {
            let (r, wrote) = match identity::apply(sys, &i) {
                Ok(done) => {
                    let wrote = done.done.iter().any(|p| p != "entropy");
                    (Reply::ok(done), wrote)
                }
                Err(e) => (Reply::err(e), true),
            };
            let _ = send(&mut w, &r);
            // The files reach the disk after the answer: the host waits for nothing that a
            // guest already running needs (its own reads see them at once).
            if wrote {
                sys.sync();
            }
        }
        Request::Shutdown(s) => {
            // Answer first: the guest may be gone a moment later.
            let _ = send(&mut w, &Reply::ok(serde_json::json!({"force": s.force})));
            w.shutdown_write();
            std::thread::sleep(std::time::Duration::from_millis(100));
            if let Err(e) = sys.shutdown(s.force) {
                eprintln!("banger-agent: shutdown failed: {e}");
            }
        }
    }
}

fn read_small(path: &str) -> Option<String> {
    use std::io::Read;
    let mut s = String::new();
    std::fs::File::open(path)
        .ok()?
        .take(256)
        .read_to_string(&mut s)
        .ok()?;
    Some(s.trim().to_string()).filter(|s| !s.is_empty())
}

/// `hello`: from system calls, so it answers before /proc is mounted (boot id then null).
pub fn hello() -> HelloInfo {
    let u = rustix::system::uname();
    let up = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
    HelloInfo {
        agent: "banger-agent".into(),
        version: VERSION.into(),
        protocol: PROTOCOL,
        boot_id: read_small("/proc/sys/kernel/random/boot_id"),
        uptime_s: ((up.tv_sec as f64 + up.tv_nsec as f64 / 1e9) * 1000.0).round() / 1000.0,
        hostname: u.nodename().to_string_lossy().into_owned(),
        kernel: u.release().to_string_lossy().into_owned(),
        pid: rustix::process::getpid().as_raw_nonzero().get() as u32,
    }
}

#[cfg(test)]
mod tests;
