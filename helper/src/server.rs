//! The socket server: systemd socket activation or a bound socket, `SO_PEERCRED`
//! authentication, one JSON line in and one out per connection, a 64 KiB request limit,
//! a deadline for reading the request, and a bounded number of connections at once.

use crate::ops::{self, Caller, Ctx};
use banger::proto::{self, code, OpError, Response, MAX_REQUEST};
use std::io::{ErrorKind, Read, Write};
use std::os::fd::{FromRawFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot create the socket directory {path}")]
    Mkdir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("another banger-helper already answers on {path}")]
    InUse { path: PathBuf },
    #[error("cannot bind {path}")]
    Bind {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("LISTEN_FDS={0:?} is not a usable socket-activation setup (expected 1)")]
    Activation(String),
}

/// How the server runs.
#[derive(Debug, Clone)]
pub struct Options {
    pub socket: PathBuf,
    /// The one non-root uid allowed to call.
    pub owner: Option<u32>,
    pub max_clients: usize,
    /// Deadline for reading a whole request.
    pub read_timeout: Duration,
}

/// The listening socket from systemd (`LISTEN_PID`/`LISTEN_FDS`), if this process got one.
pub fn activated_listener() -> Result<Option<UnixListener>, ServerError> {
    let pid_ok = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|p| p.parse::<u32>().ok())
        .is_some_and(|p| p == std::process::id());
    let fds = std::env::var("LISTEN_FDS").ok();
    match (pid_ok, fds.as_deref()) {
        (true, Some("1")) => {
            const SD_LISTEN_FDS_START: RawFd = 3;
            // SAFETY: systemd passed us fd 3 as a listening socket (LISTEN_PID is ours and
            // LISTEN_FDS=1); nothing else in this process owns or closes fd 3.
            let l = unsafe { UnixListener::from_raw_fd(SD_LISTEN_FDS_START) };
            let _ = rustix::io::fcntl_setfd(&l, rustix::io::FdFlags::CLOEXEC);
            std::env::remove_var("LISTEN_PID");
            std::env::remove_var("LISTEN_FDS");
            std::env::remove_var("LISTEN_FDNAMES");
            Ok(Some(l))
        }
        (true, other) => Err(ServerError::Activation(other.unwrap_or("").into())),
        (false, _) => Ok(None),
    }
}

/// Binds the socket: creates its directory, replaces a stale socket (nobody answering),
/// refuses to start when another helper answers. The socket is world-connectable; the
/// access check is `SO_PEERCRED` on every connection, so refusals are answered and logged.
pub fn bind(path: &Path) -> Result<UnixListener, ServerError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| ServerError::Mkdir {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    if std::fs::symlink_metadata(path).is_ok() {
        if UnixStream::connect(path).is_ok() {
            return Err(ServerError::InUse {
                path: path.to_path_buf(),
            });
        }
        let _ = std::fs::remove_file(path);
    }
    // The socket is made 0666 by the umask in force at bind (a chmod by path afterwards
    // could be redirected by whoever can write the socket's directory). This runs before any
    // other thread exists, so the process-wide umask change is seen by nothing else.
    let old = rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o111));
    let bound = UnixListener::bind(path);
    rustix::process::umask(old);
    bound.map_err(|source| ServerError::Bind {
        path: path.to_path_buf(),
        source,
    })
}

pub fn log(msg: std::fmt::Arguments) {
    // Under systemd the journal names the unit and pid itself (JOURNAL_STREAM is set when
    // stderr goes to it): no second prefix there.
    if std::env::var_os("JOURNAL_STREAM").is_some() {
        eprintln!("{msg}");
    } else {
        eprintln!("banger-helper[{}]: {msg}", std::process::id());
    }
}

/// Connections served at once, counted per kind of caller so that the owner can never take
/// the slots root needs: the owner (or anyone not root) gets at most `max - reserve`, root
/// all of them.
struct Slots {
    max: usize,
    reserve: usize,
    root: AtomicUsize,
    others: AtomicUsize,
}

/// A slot taken; given back on drop, whatever happens to the connection (a failed thread
/// spawn, a panic).
struct Slot {
    slots: Arc<Slots>,
    root: bool,
}

impl Slots {
    fn new(max: usize) -> Slots {
        Slots {
            max,
            reserve: (max / 4).max(1).min(max.saturating_sub(1)),
            root: AtomicUsize::new(0),
            others: AtomicUsize::new(0),
        }
    }

    fn take(self: &Arc<Self>, root: bool) -> Option<Slot> {
        let mine = if root { &self.root } else { &self.others };
        let limit = if root {
            self.max
        } else {
            self.max - self.reserve
        };
        let n = mine.fetch_add(1, Ordering::SeqCst);
        let total = n + if root {
            self.others.load(Ordering::SeqCst)
        } else {
            self.root.load(Ordering::SeqCst)
        };
        if n >= limit || total >= self.max {
            mine.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        Some(Slot {
            slots: self.clone(),
            root,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let c = if self.root {
            &self.slots.root
        } else {
            &self.slots.others
        };
        c.fetch_sub(1, Ordering::SeqCst);
    }
}

fn busy(mut s: UnixStream) {
    let _ = s.set_write_timeout(Some(Duration::from_millis(200)));
    let _ = s.write_all(
        &Response::err(code::BUSY, "too many connections to the helper; try again").to_line(),
    );
}

/// Serves forever.
pub fn serve(listener: UnixListener, ctx: Ctx, opts: Options) -> ! {
    let ctx = Arc::new(ctx);
    let slots = Arc::new(Slots::new(opts.max_clients));
    log(format_args!(
        "listening on {} (owner uid {}, at most {} clients, {} of them kept for root)",
        opts.socket.display(),
        opts.owner.map_or("none".to_string(), |u| u.to_string()),
        opts.max_clients,
        slots.reserve
    ));
    loop {
        let stream = match listener.accept() {
            Ok((s, _)) => s,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                log(format_args!("accept failed: {e}"));
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        let is_root = rustix::net::sockopt::socket_peercred(&stream)
            .map(|c| c.uid.is_root())
            .unwrap_or(false);
        let Some(slot) = slots.take(is_root) else {
            busy(stream);
            continue;
        };
        let (ctx, opts) = (ctx.clone(), opts.clone());
        // The stream moves into the thread and is lost if the spawn fails: a second handle
        // answers `busy` then.
        let answer_on_failure = stream.try_clone().ok();
        let spawned = std::thread::Builder::new()
            .name("conn".into())
            .spawn(move || {
                let _slot = slot;
                handle(&ctx, &opts, stream);
            });
        if let Err(e) = spawned {
            // The closure (and the slot in it) was dropped: the slot is back.
            log(format_args!("cannot start a thread: {e}"));
            if let Some(s) = answer_on_failure {
                busy(s);
            }
        }
    }
}

/// Reads one request line within the deadline. The error is the answer to send.
fn read_request(stream: &mut UnixStream, deadline: Instant) -> Result<Vec<u8>, OpError> {
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(OpError::new(code::TIMEOUT, "request not received in time"));
        }
        let _ = stream.set_read_timeout(Some(left));
        match stream.read(&mut chunk) {
            Ok(0) => {
                if buf.is_empty() {
                    return Err(OpError::new(code::BAD_REQUEST, "empty request"));
                }
                return Ok(buf);
            }
            Ok(n) => {
                if let Some(i) = chunk[..n].iter().position(|&b| b == b'\n') {
                    if buf.len() + i > MAX_REQUEST {
                        return Err(too_large());
                    }
                    buf.extend_from_slice(&chunk[..i]);
                    return Ok(buf);
                }
                buf.extend_from_slice(&chunk[..n]);
                if buf.len() > MAX_REQUEST {
                    return Err(too_large());
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Err(OpError::new(code::TIMEOUT, "request not received in time"));
            }
            Err(e) => return Err(OpError::new(code::BAD_REQUEST, format!("read failed: {e}"))),
        }
    }
}

fn too_large() -> OpError {
    OpError::new(
        code::TOO_LARGE,
        format!("request larger than {MAX_REQUEST} bytes"),
    )
}

fn handle(ctx: &Ctx, opts: &Options, mut stream: UnixStream) {
    let _ = stream.set_write_timeout(Some(Duration::from_secs(10)));
    let cred = match rustix::net::sockopt::socket_peercred(&stream) {
        Ok(c) => c,
        Err(e) => {
            log(format_args!("cannot read peer credentials: {e}"));
            return;
        }
    };
    let caller = Caller {
        uid: cred.uid.as_raw(),
        gid: cred.gid.as_raw(),
        pid: cred.pid.as_raw_nonzero().get(),
    };
    let answer = if caller.uid != 0 && Some(caller.uid) != opts.owner {
        log(format_args!(
            "refused uid {} (pid {}): not root and not the owner",
            caller.uid, caller.pid
        ));
        Response::err(
            code::PERMISSION_DENIED,
            format!(
                "uid {} may not use banger's helper (only root and the owner uid {})",
                caller.uid,
                opts.owner.map_or("(none)".to_string(), |u| u.to_string())
            ),
        )
    } else {
        let deadline = Instant::now() + opts.read_timeout;
        match read_request(&mut stream, deadline) {
            Err(e) => {
                log(format_args!("uid {} pid {}: {}", caller.uid, caller.pid, e));
                Response::from_result(Err(e))
            }
            Ok(line) => match proto::parse_request(&line) {
                Err(e) => {
                    log(format_args!("uid {} pid {}: {}", caller.uid, caller.pid, e));
                    Response::from_result(Err(e))
                }
                Ok(req) => {
                    let t = Instant::now();
                    if req.timing {
                        banger::timing::begin();
                    }
                    let mut resp = ops::dispatch(ctx, &caller, &req);
                    if req.timing {
                        resp.timing = Some(banger::timing::take());
                    }
                    let outcome = match &resp.error {
                        None => "ok".to_string(),
                        Some(e) => format!("{} ({})", e.code, e.message),
                    };
                    // A ping that answers is how clients, the preflight, `banger system
                    // status` and the doctor look for the helper: not worth a line each.
                    if !(req.op == "ping" && resp.error.is_none()) {
                        log(format_args!(
                            "uid {} pid {}: {}: {} in {} ms",
                            caller.uid,
                            caller.pid,
                            req.op,
                            outcome,
                            t.elapsed().as_millis()
                        ));
                    }
                    resp
                }
            },
        }
    };
    let _ = stream.write_all(&answer.to_line());
    let _ = stream.shutdown(std::net::Shutdown::Both);
}
