//! `banger-vm exec` through the guest agent, and `banger-vm cp`: a command or a file over
//! the VM's vsock, without the guest network or an SSH handshake.

use crate::BIN;
use banger::agent::{self, proto, AgentError, Client, ClientError};
use banger::record::{self, Record};
use banger::step::StepError;
use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long connecting to the agent (`CONNECT` and its `OK`) may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a file transfer may stall.
const IDLE: Duration = Duration::from_secs(60);

/// Exit statuses of `exec` when the guest cannot run the command, as a shell reports them
/// (banger's own failures, before or around the command, exit 1 as everywhere in banger).
pub const EXIT_NOT_FOUND: u8 = 127;
pub const EXIT_CANNOT_RUN: u8 = 126;

/// `--via`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Agent,
    Ssh,
}

impl Via {
    pub fn parse(s: &str) -> Result<Via, String> {
        match s {
            "agent" => Ok(Via::Agent),
            "ssh" => Ok(Via::Ssh),
            _ => Err(format!("--via {s:?}: expected agent or ssh")),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct ExecOpts {
    pub via: Option<Via>,
    pub tty: bool,
    pub env: Vec<(String, String)>,
    pub cwd: Option<String>,
    pub timeout: Option<Duration>,
}

fn agent_err(e: AgentError) -> StepError {
    StepError::new(e.code(), &e)
}

/// The VM's vsock link, or why there is none.
fn sock_of(rec: &Record) -> Result<PathBuf, StepError> {
    let name = record::name(rec).unwrap_or("?").to_string();
    agent::vsock_sock(rec).ok_or_else(|| agent_err(AgentError::NoVsock { name }))
}

/// Connects to the VM's agent for `exec`, when it should: `None` means use SSH (asked for,
/// or the VM has no agent, or it does not answer and SSH was not ruled out).
pub fn agent_for_exec(rec: &Record, via: Option<Via>) -> Result<Option<Client>, StepError> {
    let name = record::name(rec).unwrap_or("?");
    match via {
        Some(Via::Ssh) => return Ok(None),
        None if agent::snap_agent(rec).is_none() || agent::vsock_sock(rec).is_none() => {
            return Ok(None)
        }
        _ => {}
    }
    let sock = sock_of(rec)?;
    // The command may take its time to start (a slow guest) and to print: no read timeout
    // once connected; the user interrupts a command that hangs.
    let connected = agent::connect(&sock, CONNECT_TIMEOUT).and_then(|conn| {
        conn.set_read_timeout(None)
            .and_then(|()| conn.set_write_timeout(None))
            .and_then(|()| Client::new(conn))
            .map_err(|e| AgentError::Client(ClientError::Io(e)))
    });
    match connected {
        Ok(c) => Ok(Some(c)),
        Err(e) if via.is_none() && e.not_yet() => {
            eprintln!(
                "{BIN}: {name}: the agent does not answer ({}); using ssh",
                banger::cli::one_line(&e)
            );
            Ok(None)
        }
        Err(e) => Err(agent_err(e)),
    }
}

/// Puts the local terminal in raw mode while it lives (a TTY exec).
struct RawMode(Option<rustix::termios::Termios>);

impl RawMode {
    fn new() -> RawMode {
        let stdin = std::io::stdin();
        if !stdin.is_terminal() {
            return RawMode(None);
        }
        let Ok(old) = rustix::termios::tcgetattr(&stdin) else {
            return RawMode(None);
        };
        let mut raw = old.clone();
        raw.make_raw();
        let ok = rustix::termios::tcsetattr(&stdin, rustix::termios::OptionalActions::Now, &raw);
        RawMode(ok.ok().map(|()| old))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(old) = &self.0 {
            let _ = rustix::termios::tcsetattr(
                std::io::stdin(),
                rustix::termios::OptionalActions::Now,
                old,
            );
        }
    }
}

fn local_winsize() -> Option<proto::Winsize> {
    let w = rustix::termios::tcgetwinsize(std::io::stdout()).ok()?;
    (w.ws_row > 0 && w.ws_col > 0).then_some(proto::Winsize {
        rows: w.ws_row,
        cols: w.ws_col,
    })
}

/// Runs `argv` through the agent; returns the status to exit with.
pub fn exec(client: Client, argv: &[String], o: &ExecOpts) -> Result<u8, StepError> {
    let tty = o
        .tty
        .then(|| local_winsize().unwrap_or(proto::Winsize { rows: 24, cols: 80 }));
    let req = proto::Exec {
        argv: argv.to_vec(),
        env: o.env.iter().cloned().collect(),
        cwd: o.cwd.clone(),
        stdin: true,
        tty,
        timeout_ms: o.timeout.map(|d| d.as_millis().max(1) as u64),
    };
    let session = match client.exec(req) {
        Ok(s) => s,
        Err(ClientError::Agent(e)) if e.code == proto::code::NOT_FOUND => {
            eprintln!("{BIN}: {}", e.message);
            return Ok(EXIT_NOT_FOUND);
        }
        Err(ClientError::Agent(e)) if e.code == proto::code::PERMISSION_DENIED => {
            eprintln!("{BIN}: {}", e.message);
            return Ok(EXIT_CANNOT_RUN);
        }
        Err(e) => return Err(agent_err(e.into())),
    };
    let _raw = tty.map(|_| RawMode::new());
    if tty.is_some() && std::io::stdout().is_terminal() {
        // Resizes of the local terminal follow the remote one.
        let sender = session.sender();
        std::thread::spawn(move || {
            let mut last = local_winsize();
            loop {
                std::thread::sleep(Duration::from_millis(250));
                let now = local_winsize();
                if now != last {
                    if let Some(w) = now {
                        if sender.send(&proto::Frame::Resize(w)).is_err() {
                            return;
                        }
                    }
                    last = now;
                }
            }
        });
    }
    let stdin: Box<dyn Read + Send> = Box::new(std::io::stdin());
    let (mut out, mut err) = (std::io::stdout().lock(), std::io::stderr().lock());
    match session.run(Some(stdin), &mut out, &mut err) {
        Ok(exit) => {
            if let Some(e) = &exit.error {
                eprintln!("{BIN}: the agent ended the command: {e}");
            }
            if exit.timed_out {
                eprintln!("{BIN}: the command was killed after --timeout");
            }
            Ok(exit.status().clamp(0, 255) as u8)
        }
        // Our stdout went away (`| head`): stop quietly; the agent kills the command.
        Err(ClientError::Io(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(0),
        Err(e) => Err(agent_err(e.into())),
    }
}

/// One side of `cp`.
#[derive(Debug, Clone, PartialEq)]
pub enum Side {
    Local(PathBuf),
    /// `-`: stdin or stdout.
    Stdio,
    Vm {
        name: String,
        path: String,
    },
}

fn is_vm_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 32
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

impl Side {
    /// `NAME:PATH` (a relative PATH is below /root), `-`, or a local path (write `./a:b`
    /// for a local file with a colon).
    pub fn parse(s: &str) -> Side {
        if s == "-" {
            return Side::Stdio;
        }
        match s.split_once(':') {
            Some((n, p)) if is_vm_name(n) && !p.is_empty() => Side::Vm {
                name: n.into(),
                path: if p.starts_with('/') {
                    p.into()
                } else {
                    format!("/root/{p}")
                },
            },
            _ => Side::Local(PathBuf::from(s)),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct CpOpts {
    pub mode: Option<u32>,
    pub owner: Option<(u32, Option<u32>)>,
}

fn io_err(what: &str, path: &Path, e: std::io::Error) -> StepError {
    StepError::new(
        "cp",
        &std::io::Error::new(e.kind(), format!("cannot {what} {}: {e}", path.display())),
    )
}

fn transfer_client(rec: &Record) -> Result<Client, StepError> {
    let sock = sock_of(rec)?;
    let conn = agent::connect(&sock, CONNECT_TIMEOUT).map_err(agent_err)?;
    let set = conn
        .set_read_timeout(Some(IDLE))
        .and_then(|()| conn.set_write_timeout(Some(IDLE)));
    set.map_err(|e| agent_err(AgentError::Client(ClientError::Io(e))))?;
    Client::new(conn).map_err(|e| agent_err(AgentError::Client(ClientError::Io(e))))
}

/// Copies a local file (or stdin) into the guest.
pub fn upload(rec: &Record, src: &Side, path: &str, o: &CpOpts) -> Result<u64, StepError> {
    let (mut input, size, mode, name): (Box<dyn Read>, Option<u64>, u32, Option<String>) = match src
    {
        Side::Stdio => (Box::new(std::io::stdin()), None, 0o644, None),
        Side::Local(p) => {
            let f = std::fs::File::open(p).map_err(|e| io_err("open", p, e))?;
            let m = f.metadata().map_err(|e| io_err("stat", p, e))?;
            if !m.is_file() {
                return Err(StepError::msg(
                    "cp",
                    format!("{} is not a regular file (cp copies one file)", p.display()),
                ));
            }
            use std::os::unix::fs::PermissionsExt;
            let name = p.file_name().map(|n| n.to_string_lossy().into_owned());
            (
                Box::new(f),
                Some(m.len()),
                m.permissions().mode() & 0o7777,
                name,
            )
        }
        Side::Vm { .. } => return Err(StepError::msg("cp", "one side must be local")),
    };
    let req = proto::Put {
        path: path.into(),
        name,
        size,
        mode: Some(o.mode.unwrap_or(mode)),
        uid: o.owner.map(|(u, _)| u),
        gid: o.owner.and_then(|(_, g)| g),
    };
    let info = transfer_client(rec)?
        .put(req, &mut input)
        .map_err(|e| agent_err(e.into()))?;
    Ok(info.size)
}

/// Copies a file out of the guest to a local file (or stdout), atomically.
pub fn download(rec: &Record, path: &str, dst: &Side) -> Result<u64, StepError> {
    let (info, mut reader) = transfer_client(rec)?
        .get(path)
        .map_err(|e| agent_err(e.into()))?;
    let target = match dst {
        Side::Stdio => {
            let mut out = std::io::stdout().lock();
            let n = std::io::copy(&mut reader, &mut out).map_err(|e| {
                StepError::new("cp", &std::io::Error::new(e.kind(), format!("{path}: {e}")))
            })?;
            out.flush()
                .map_err(|e| io_err("write", Path::new("stdout"), e))?;
            return Ok(n);
        }
        Side::Local(p) if p.is_dir() => {
            let base = Path::new(path)
                .file_name()
                .map(|n| n.to_os_string())
                .unwrap_or_else(|| "file".into());
            p.join(base)
        }
        Side::Local(p) => p.clone(),
        Side::Vm { .. } => return Err(StepError::msg("cp", "one side must be local")),
    };
    // As cp(1): an existing destination that is not a regular file (a device, a FIFO) is
    // written into, never replaced; a symlink is followed to the file it names, which is
    // then replaced atomically.
    let target = match std::fs::metadata(&target) {
        Ok(m) if !m.is_file() => {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .open(&target)
                .map_err(|e| io_err("open", &target, e))?;
            return std::io::copy(&mut reader, &mut f).map_err(|e| {
                StepError::new("cp", &std::io::Error::new(e.kind(), format!("{path}: {e}")))
            });
        }
        Ok(_) => std::fs::canonicalize(&target).map_err(|e| io_err("resolve", &target, e))?,
        Err(_) => target,
    };
    let dir = match target.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let base = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{base}.banger-cp.{}", std::process::id()));
    let written = (|| -> Result<u64, StepError> {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| io_err("create", &tmp, e))?;
        let n = std::io::copy(&mut reader, &mut f).map_err(|e| {
            StepError::new("cp", &std::io::Error::new(e.kind(), format!("{path}: {e}")))
        })?;
        f.set_permissions(std::fs::Permissions::from_mode(info.mode & 0o777))
            .map_err(|e| io_err("chmod", &tmp, e))?;
        f.sync_all().map_err(|e| io_err("sync", &tmp, e))?;
        std::fs::rename(&tmp, &target).map_err(|e| io_err("rename into", &target, e))?;
        Ok(n)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cp_sides() {
        assert_eq!(
            Side::parse("t1:/etc/hostname"),
            Side::Vm {
                name: "t1".into(),
                path: "/etc/hostname".into()
            }
        );
        assert_eq!(
            Side::parse("t1:notes.txt"),
            Side::Vm {
                name: "t1".into(),
                path: "/root/notes.txt".into()
            }
        );
        assert_eq!(Side::parse("-"), Side::Stdio);
        assert_eq!(Side::parse("./t1:x"), Side::Local("./t1:x".into()));
        assert_eq!(Side::parse("/tmp/a:b"), Side::Local("/tmp/a:b".into()));
        assert_eq!(Side::parse("T1:/x"), Side::Local("T1:/x".into()));
        assert_eq!(Side::parse("t1:"), Side::Local("t1:".into()));
        assert_eq!(Side::parse("file"), Side::Local("file".into()));
    }

    #[test]
    fn via() {
        assert_eq!(Via::parse("agent"), Ok(Via::Agent));
        assert_eq!(Via::parse("ssh"), Ok(Via::Ssh));
        assert!(Via::parse("telnet").is_err());
    }
}
