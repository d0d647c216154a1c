//! `exec`: runs a command in its own session, streams stdin in and stdout/stderr out as they
//! come, and ends with how it exited.
//!
//! Two threads per command: this one polls the command's output, its pidfd and a wake pipe,
//! and is the only one that signals the command (only before it is reaped, so a signal can
//! never reach a recycled process group); the reader thread takes the host's frames (stdin,
//! signals, resizes) and hands signals over. When the host goes away the command is killed.

use super::{io_error, line_error, linger};
use crate::conn::{send, Conn, LineError, LineReader};
use crate::proto::{
    code, parse_frame, ErrorBody, Exec, ExitInfo, Frame, Reply, Started, Winsize, B64, CHUNK,
    MAX_EXEC_TIMEOUT_MS, MAX_FRAME,
};
use rustix::event::{PollFd, PollFlags};
use rustix::process::{Pid, Signal};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{BorrowedFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A root login's PATH.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// After the command exits, output still in flight (from its children, say) is forwarded
/// for at most this long, and only while it keeps coming.
const DRAIN_MAX: Duration = Duration::from_secs(2);
const DRAIN_IDLE: Duration = Duration::from_millis(100);

fn invalid(m: impl Into<String>) -> ErrorBody {
    ErrorBody::new(code::INVALID_ARGS, m)
}

/// Checks an exec request before anything runs.
pub fn validate(x: &Exec) -> Result<(), ErrorBody> {
    match x.argv.first() {
        None => return Err(invalid("exec: argv is empty")),
        Some(a) if a.is_empty() => return Err(invalid("exec: argv[0] is empty")),
        _ => {}
    }
    if x.argv.iter().any(|a| a.contains('\0')) {
        return Err(invalid("exec: an argument contains a NUL byte"));
    }
    for (k, v) in &x.env {
        if k.is_empty() || k.contains('=') || k.contains('\0') || v.contains('\0') {
            return Err(invalid(format!(
                "exec: env {k:?}: names are non-empty, without '=' or NUL"
            )));
        }
    }
    if let Some(c) = &x.cwd {
        if !c.starts_with('/') || c.contains('\0') {
            return Err(invalid(format!("exec: cwd {c:?} is not an absolute path")));
        }
    }
    if let Some(w) = x.tty {
        if w.rows == 0 || w.cols == 0 {
            return Err(invalid("exec: tty rows and cols must be at least 1"));
        }
    }
    if let Some(t) = x.timeout_ms {
        if t == 0 || t > MAX_EXEC_TIMEOUT_MS {
            return Err(invalid(format!(
                "exec: timeout_ms {t} must be 1 to {MAX_EXEC_TIMEOUT_MS}"
            )));
        }
    }
    Ok(())
}

/// The command's environment: a root login's, then the request's.
pub fn environment(x: &Exec) -> Vec<(String, String)> {
    let mut env: std::collections::BTreeMap<String, String> = [
        ("PATH", DEFAULT_PATH),
        ("HOME", "/root"),
        ("USER", "root"),
        ("LOGNAME", "root"),
        ("SHELL", "/bin/sh"),
        (
            "TERM",
            if x.tty.is_some() {
                "xterm-256color"
            } else {
                "dumb"
            },
        ),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for (k, v) in &x.env {
        env.insert(k.clone(), v.clone());
    }
    env.into_iter().collect()
}

/// The running command's ends.
struct Ends {
    /// What the command writes: (file, is stderr).
    outputs: Vec<(File, bool)>,
    /// Where the host's stdin goes (a pipe, or the pty's master).
    input: Option<File>,
    /// The pty's master, for resizes.
    master: Option<File>,
}

fn winsize(w: Winsize) -> rustix::termios::Winsize {
    rustix::termios::Winsize {
        ws_row: w.rows,
        ws_col: w.cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    }
}

fn open_pty(w: Winsize) -> std::io::Result<(File, File)> {
    use rustix::pty::{grantpt, openpt, ptsname, unlockpt, OpenptFlags};
    let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC)?;
    grantpt(&master)?;
    unlockpt(&master)?;
    let name = ptsname(&master, Vec::new())?;
    let slave = rustix::fs::open(
        name.as_c_str(),
        rustix::fs::OFlags::RDWR | rustix::fs::OFlags::NOCTTY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )?;
    rustix::termios::tcsetwinsize(&slave, winsize(w))?;
    Ok((File::from(master), File::from(slave)))
}

fn spawn(x: &Exec) -> Result<(Child, Ends), ErrorBody> {
    let mut cmd = Command::new(&x.argv[0]);
    cmd.args(&x.argv[1..]).env_clear().envs(environment(x));
    let cwd = match &x.cwd {
        Some(c) => {
            if !std::path::Path::new(c).is_dir() {
                return Err(ErrorBody::new(
                    code::NOT_FOUND,
                    format!("exec: cwd {c} is not a directory"),
                ));
            }
            c.clone()
        }
        // /root, unless this agent may not enter it (a stand-in guest that is not root).
        None if rustix::fs::access("/root", rustix::fs::Access::EXEC_OK).is_ok() => "/root".into(),
        None => "/".into(),
    };
    cmd.current_dir(&cwd);
    let pty = match x.tty {
        Some(w) => Some(open_pty(w).map_err(|e| io_error("exec: cannot open a pty", &e))?),
        None => None,
    };
    let err = |e: std::io::Error| io_error("exec: cannot set up the command's stdio", &e);
    if let Some((_, slave)) = &pty {
        cmd.stdin(Stdio::from(slave.try_clone().map_err(err)?))
            .stdout(Stdio::from(slave.try_clone().map_err(err)?))
            .stderr(Stdio::from(slave.try_clone().map_err(err)?));
    } else {
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
    }
    let tty = pty.is_some();
    // SAFETY: the closure runs in the forked child before exec and makes only
    // async-signal-safe system calls (setsid, and ioctl(TIOCSCTTY) on fd 0, which the
    // standard library has already made the pty's slave).
    unsafe {
        cmd.pre_exec(move || {
            rustix::process::setsid()?;
            if tty {
                rustix::process::ioctl_tiocsctty(BorrowedFd::borrow_raw(0))?;
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(|e| {
        let c = match e.kind() {
            std::io::ErrorKind::NotFound => code::NOT_FOUND,
            std::io::ErrorKind::PermissionDenied => code::PERMISSION_DENIED,
            _ => code::FAILED,
        };
        ErrorBody::new(c, format!("exec: cannot run {:?}: {e}", x.argv[0]))
    })?;
    let ends = match pty {
        Some((master, slave)) => {
            drop(slave);
            let input = master.try_clone().ok();
            let resize = master.try_clone().ok();
            Ends {
                outputs: vec![(master, false)],
                input,
                master: resize,
            }
        }
        None => {
            let mut outputs = Vec::new();
            if let Some(o) = child.stdout.take() {
                outputs.push((File::from(OwnedFd::from(o)), false));
            }
            if let Some(e) = child.stderr.take() {
                outputs.push((File::from(OwnedFd::from(e)), true));
            }
            let stdin = child.stdin.take();
            Ends {
                outputs,
                input: if x.stdin {
                    stdin.map(|s| File::from(OwnedFd::from(s)))
                } else {
                    None
                },
                master: None,
            }
        }
    };
    Ok((child, ends))
}

/// What the reader thread tells the main one.
enum Control {
    Signal(i32),
    /// The host went away or broke the stream: kill the command.
    Gone(Option<ErrorBody>),
}

/// The reader thread: the host's frames until the stream ends.
fn read_frames(
    mut rd: LineReader<Conn>,
    mut input: Option<File>,
    master: Option<File>,
    tx: mpsc::Sender<Control>,
    wake: OwnedFd,
) {
    let tell = |c: Control| {
        let _ = tx.send(c);
        let _ = rustix::io::write(&wake, b"x");
    };
    loop {
        let line = match rd.read_line(MAX_FRAME) {
            Ok(Some(l)) => l,
            Ok(None) | Err(LineError::Io(_)) | Err(LineError::Truncated) => {
                return tell(Control::Gone(None))
            }
            Err(e) => return tell(Control::Gone(Some(line_error(e, "frame")))),
        };
        match parse_frame(&line) {
            Ok(Frame::In(b)) => {
                // A command that stopped reading its stdin: the rest is dropped.
                if input.as_mut().is_some_and(|i| i.write_all(&b.0).is_err()) {
                    input = None;
                }
            }
            Ok(Frame::Eof(_)) => input = None,
            Ok(Frame::Signal(n)) => tell(Control::Signal(n)),
            Ok(Frame::Resize(w)) => {
                if let Some(m) = &master {
                    let _ = rustix::termios::tcsetwinsize(m, winsize(w));
                }
            }
            Ok(f) => {
                return tell(Control::Gone(Some(ErrorBody::new(
                    code::BAD_REQUEST,
                    format!("a {:?} frame during exec", f.name()),
                ))))
            }
            Err(e) => return tell(Control::Gone(Some(e))),
        }
    }
}

fn kill_group(pgid: Option<Pid>, sig: Signal) {
    if let Some(p) = pgid {
        let _ = rustix::process::kill_process_group(p, sig);
    }
}

/// Runs one exec request to its end on this connection.
pub fn run(x: Exec, rd: LineReader<Conn>, mut w: Conn) {
    if let Err(e) = validate(&x) {
        let _ = send(&mut w, &Reply::err(e));
        return linger(&w, rd.get_ref());
    }
    // A command may run and print for as long as it likes, and the host may take its time.
    let _ = w.set_write_timeout(None);
    let _ = rd.get_ref().set_read_timeout(None);
    let (mut child, ends) = match spawn(&x) {
        Ok(c) => c,
        Err(e) => {
            let _ = send(&mut w, &Reply::err(e));
            return linger(&w, rd.get_ref());
        }
    };
    let pgid = Pid::from_raw(child.id() as i32);
    let setup = (|| -> std::io::Result<(OwnedFd, OwnedFd)> {
        let (r, wk) = rustix::pipe::pipe_with(
            rustix::pipe::PipeFlags::CLOEXEC | rustix::pipe::PipeFlags::NONBLOCK,
        )?;
        send(&mut w, &Reply::ok(Started { pid: child.id() }))?;
        Ok((r, wk))
    })();
    let (wake_r, wake_w) = match setup {
        Ok(p) => p,
        Err(_) => {
            kill_group(pgid, Signal::KILL);
            let _ = child.wait();
            return;
        }
    };
    let (tx, rx) = mpsc::channel();
    let Ends {
        mut outputs,
        input,
        master,
    } = ends;
    let reader = std::thread::Builder::new()
        .name("exec-in".into())
        .spawn(move || read_frames(rd, input, master, tx, wake_w));
    if reader.is_err() {
        kill_group(pgid, Signal::KILL);
    }
    let pidfd = pgid
        .and_then(|p| rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()).ok());
    let deadline = x
        .timeout_ms
        .map(|ms| Instant::now() + Duration::from_millis(ms));
    let mut status: Option<ExitStatus> = None;
    let mut exited_at: Option<Instant> = None;
    let mut last_data = Instant::now();
    let mut timed_out = false;
    let mut error: Option<ErrorBody> = None;
    let mut host_gone = false;
    let mut buf = vec![0u8; CHUNK];
    loop {
        if status.is_none() {
            if let Ok(Some(s)) = child.try_wait() {
                status = Some(s);
                exited_at = Some(Instant::now());
            }
        }
        let now = Instant::now();
        if let Some(t) = exited_at {
            if outputs.is_empty()
                || host_gone
                || now >= t + DRAIN_MAX
                || now.duration_since(last_data.max(t)) >= DRAIN_IDLE
            {
                break;
            }
        }
        // What to wait for, and for how long.
        let mut timeout: Option<Duration> = None;
        let mut shorten = |d: Duration| timeout = Some(timeout.map_or(d, |t: Duration| t.min(d)));
        if let (Some(d), None, false) = (deadline, status, timed_out) {
            shorten(d.saturating_duration_since(now));
        }
        if exited_at.is_some() {
            shorten(DRAIN_IDLE);
        } else if pidfd.is_none() {
            shorten(Duration::from_millis(50));
        }
        let ready: Vec<bool> = {
            let mut fds: Vec<PollFd> = outputs
                .iter()
                .map(|(f, _)| PollFd::new(f, PollFlags::IN))
                .collect();
            if let (Some(p), None) = (&pidfd, status) {
                fds.push(PollFd::new(p, PollFlags::IN));
            }
            fds.push(PollFd::new(&wake_r, PollFlags::IN));
            let ts = timeout.map(|d| rustix::time::Timespec {
                tv_sec: d.as_secs() as i64,
                tv_nsec: d.subsec_nanos() as i64,
            });
            match rustix::event::poll(&mut fds, ts.as_ref()) {
                Ok(_) => fds.iter().map(|f| !f.revents().is_empty()).collect(),
                Err(rustix::io::Errno::INTR) => continue,
                Err(_) => vec![false; fds.len()],
            }
        };
        let mut closed = Vec::new();
        for (i, (f, is_err)) in outputs.iter_mut().enumerate() {
            if !ready[i] {
                continue;
            }
            match f.read(&mut buf) {
                // EIO: a pty whose every slave is closed.
                Ok(0) | Err(_) => closed.push(i),
                Ok(n) => {
                    last_data = Instant::now();
                    let b = B64(buf[..n].to_vec());
                    let frame = if *is_err {
                        Frame::Err(b)
                    } else {
                        Frame::Out(b)
                    };
                    if !host_gone && send(&mut w, &frame).is_err() {
                        host_gone = true;
                        if status.is_none() {
                            kill_group(pgid, Signal::KILL);
                        }
                    }
                }
            }
        }
        for i in closed.into_iter().rev() {
            outputs.remove(i);
        }
        if ready.last() == Some(&true) {
            let mut sink = [0u8; 64];
            while matches!(rustix::io::read(&wake_r, &mut sink), Ok(n) if n > 0) {}
        }
        while let Ok(c) = rx.try_recv() {
            match c {
                Control::Signal(n) => {
                    if let (None, Some(sig)) = (status, Signal::from_named_raw(n)) {
                        kill_group(pgid, sig);
                    }
                }
                Control::Gone(e) => {
                    match e {
                        Some(e) => error = error.or(Some(e)),
                        None => host_gone = true,
                    }
                    if status.is_none() {
                        kill_group(pgid, Signal::KILL);
                    }
                }
            }
        }
        if let (Some(d), None, false) = (deadline, status, timed_out) {
            if Instant::now() >= d {
                timed_out = true;
                kill_group(pgid, Signal::KILL);
            }
        }
    }
    let status = status.or_else(|| child.wait().ok());
    let info = ExitInfo {
        code: status.and_then(|s| s.code()),
        signal: status.and_then(|s| s.signal()),
        timed_out,
        error,
    };
    if !host_gone {
        let _ = send(&mut w, &Frame::Exit(info));
    }
    // Wakes the reader thread, which then ends.
    w.shutdown();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exec(argv: &[&str]) -> Exec {
        Exec {
            argv: argv.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn requests_are_checked() {
        let bad = |x: Exec| validate(&x).unwrap_err().code;
        assert_eq!(bad(exec(&[])), code::INVALID_ARGS);
        assert_eq!(bad(exec(&[""])), code::INVALID_ARGS);
        assert_eq!(bad(exec(&["a\0b"])), code::INVALID_ARGS);
        let mut x = exec(&["env"]);
        x.env.insert("A=B".into(), "c".into());
        assert_eq!(bad(x), code::INVALID_ARGS);
        let mut x = exec(&["env"]);
        x.cwd = Some("tmp".into());
        assert_eq!(bad(x), code::INVALID_ARGS);
        let mut x = exec(&["env"]);
        x.tty = Some(Winsize { rows: 0, cols: 80 });
        assert_eq!(bad(x), code::INVALID_ARGS);
        let mut x = exec(&["env"]);
        x.timeout_ms = Some(0);
        assert_eq!(bad(x), code::INVALID_ARGS);
        let mut x = exec(&["env"]);
        x.timeout_ms = Some(MAX_EXEC_TIMEOUT_MS + 1);
        assert_eq!(bad(x), code::INVALID_ARGS);
        assert!(validate(&exec(&["uname", "-r"])).is_ok());
    }

    #[test]
    fn the_environment_is_a_root_login_plus_the_request() {
        let mut x = exec(&["env"]);
        x.env.insert("PATH".into(), "/x".into());
        x.env.insert("LANG".into(), "C.UTF-8".into());
        let env: std::collections::BTreeMap<_, _> = environment(&x).into_iter().collect();
        assert_eq!(env["PATH"], "/x");
        assert_eq!(env["HOME"], "/root");
        assert_eq!(env["TERM"], "dumb");
        assert_eq!(env["LANG"], "C.UTF-8");
        x.tty = Some(Winsize { rows: 24, cols: 80 });
        let env: std::collections::BTreeMap<_, _> = environment(&x).into_iter().collect();
        assert_eq!(env["TERM"], "xterm-256color");
    }
}
