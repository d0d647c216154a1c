//! The host's way to a VM's guest agent, and the agent binary banger puts into guests.
//!
//! A VM's Firecracker serves its hybrid vsock on a Unix socket it makes in the jail
//! (`jail.vsock_uds` as Firecracker names it); `banger-jail launch` links it from the run
//! dir (`jail.vsock_sock`, short enough for `sun_path`). A connection writes
//! `CONNECT 1023\n`, reads `OK <host port>\n` (or EOF when nothing listens in the guest),
//! then speaks the agent's protocol ([`banger_agent::client`]).

use crate::config::Config;
use crate::record::Record;
use crate::section::{self, Jail, Snap};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use banger_agent::client::{Client, ClientError, GetReader, Sender, Session};
pub use banger_agent::conn::Conn;
pub use banger_agent::guest;
pub use banger_agent::hook::boot_args as hook_boot_args;
pub use banger_agent::proto;

/// The name of the vsock socket in a jail's root.
pub const VSOCK_NAME: &str = "agent.vsock";

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("{name} has no vsock socket in its record (jail.vsock_sock): it is not launched ('banger up {name}'), or an older banger launched it ('banger down {name}', then 'banger up {name}')")]
    NoVsock { name: String },
    #[error("cannot connect to the VM's vsock socket {path} (is the VM running?)")]
    Connect {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no agent answers on vsock port {port} in the guest (still booting, or the image has no banger-agent)")]
    NoAgent { port: u32 },
    #[error("Firecracker answered {answer:?} to CONNECT {port}")]
    BadAck { port: u32, answer: String },
    #[error("no answer through {path} in time: the guest did not take the connection (still booting, or it has no vsock driver or agent)")]
    Timeout { path: PathBuf },
    #[error(transparent)]
    Client(#[from] ClientError),
}

impl AgentError {
    /// A short code for a record's error section.
    pub fn code(&self) -> &'static str {
        match self {
            AgentError::NoVsock { .. } => "no_vsock",
            AgentError::Connect { .. } => "vsock_connect",
            AgentError::NoAgent { .. } => "no_agent",
            AgentError::BadAck { .. } => "vsock_protocol",
            AgentError::Timeout { .. } => "agent_timeout",
            AgentError::Client(ClientError::Agent(_)) => "agent_error",
            AgentError::Client(_) => "agent_failed",
        }
    }

    /// True when trying again later may work (the guest is not up yet).
    pub fn not_yet(&self) -> bool {
        matches!(
            self,
            AgentError::NoAgent { .. } | AgentError::Connect { .. } | AgentError::Timeout { .. }
        )
    }
}

/// The run dir's link to a VM's vsock socket, from its record.
pub fn vsock_sock(rec: &Record) -> Option<PathBuf> {
    section::get::<Jail>(rec)
        .ok()
        .flatten()?
        .vsock_sock
        .map(PathBuf::from)
}

/// How the record's disk got its agent (`snap.agent`): `image` (its own, started by its
/// init), `init-hook` (written by banger-snap, started as the kernel's init=), or none.
pub fn snap_agent(rec: &Record) -> Option<String> {
    section::get::<Snap>(rec)
        .ok()
        .flatten()?
        .agent
        .filter(|s| s != "none")
}

/// Connects to the agent through `sock`: `CONNECT`, then the `OK` line, each within
/// `timeout` (the connection keeps that timeout for reads and writes; change it to suit).
pub fn connect_port(sock: &Path, port: u32, timeout: Duration) -> Result<Conn, AgentError> {
    let s = UnixStream::connect(sock).map_err(|source| AgentError::Connect {
        path: sock.to_path_buf(),
        source,
    })?;
    let timed = |e: std::io::Error| {
        if matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ) {
            AgentError::Timeout {
                path: sock.to_path_buf(),
            }
        } else {
            AgentError::Connect {
                path: sock.to_path_buf(),
                source: e,
            }
        }
    };
    s.set_read_timeout(Some(timeout)).map_err(timed)?;
    s.set_write_timeout(Some(timeout)).map_err(timed)?;
    (&s).write_all(format!("CONNECT {port}\n").as_bytes())
        .map_err(timed)?;
    // Byte by byte: nothing after the newline belongs to the acknowledgement.
    let mut ack = Vec::new();
    let mut b = [0u8; 1];
    loop {
        match (&s).read(&mut b) {
            Ok(0) => return Err(AgentError::NoAgent { port }),
            Ok(_) if b[0] == b'\n' => break,
            Ok(_) if ack.len() < 64 => ack.push(b[0]),
            Ok(_) => {
                return Err(AgentError::BadAck {
                    port,
                    answer: String::from_utf8_lossy(&ack).into_owned(),
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            // Firecracker resets the connection when nobody listens on the port.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return Err(AgentError::NoAgent { port })
            }
            Err(e) => return Err(timed(e)),
        }
    }
    let text = String::from_utf8_lossy(&ack);
    let ok = text
        .strip_prefix("OK ")
        .is_some_and(|n| n.trim().parse::<u32>().is_ok());
    if !ok {
        return Err(AgentError::BadAck {
            port,
            answer: text.into_owned(),
        });
    }
    Ok(Conn::from(s))
}

/// [`connect_port`] on the agent's port.
pub fn connect(sock: &Path, timeout: Duration) -> Result<Conn, AgentError> {
    connect_port(sock, proto::PORT, timeout)
}

/// How long an agent that took the connection gets to answer `hello` (a busy guest).
const HELLO_ANSWER: Duration = Duration::from_secs(10);

/// `hello` through `sock`: the connection taken within `timeout`, the answer within 10 s
/// more (the agent is there once it took the connection).
pub fn hello(sock: &Path, timeout: Duration) -> Result<proto::HelloInfo, AgentError> {
    let conn = connect(sock, timeout)?;
    let c = conn
        .set_read_timeout(Some(HELLO_ANSWER))
        .and_then(|()| Client::new(conn))
        .map_err(|e| AgentError::Client(ClientError::Io(e)))?;
    Ok(c.hello()?)
}

/// Where the agent binary for guests is: the config's `agent` (`BANGER_AGENT`), else
/// `lib/banger/banger-agent` beside the `bin/` of the running program (`make install`).
pub fn guest_binary_path(cfg: &Config) -> Option<PathBuf> {
    if let Some(p) = &cfg.agent {
        return Some(p.clone());
    }
    let exe = std::env::current_exe().ok()?;
    let p = exe.parent()?.parent()?.join("lib/banger/banger-agent");
    p.is_file().then_some(p)
}

/// The ELF machine of this host's binaries.
fn host_machine() -> u16 {
    if cfg!(target_arch = "x86_64") {
        62
    } else if cfg!(target_arch = "aarch64") {
        183
    } else {
        0
    }
}

/// Checks that `bytes` is an agent a guest of this host can run as its first process: a
/// 64-bit little-endian ELF executable for this machine, statically linked (no program
/// interpreter: a guest may have no libc, or another one).
pub fn check_guest_binary(bytes: &[u8]) -> Result<(), String> {
    if bytes.len() < 64 || &bytes[..4] != b"\x7fELF" {
        return Err("not an ELF executable".into());
    }
    if bytes[4] != 2 || bytes[5] != 1 {
        return Err("not a 64-bit little-endian ELF".into());
    }
    let u16_at = |o: usize| {
        bytes
            .get(o..o + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    };
    let u32_at = |o: usize| {
        bytes
            .get(o..o + 4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_le_bytes)
    };
    let u64_at = |o: usize| {
        bytes
            .get(o..o + 8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes)
    };
    match u16_at(0x10) {
        Some(2 | 3) => {}
        _ => return Err("not an executable (ELF type)".into()),
    }
    let machine = u16_at(0x12).unwrap_or(0);
    if machine != host_machine() {
        return Err(format!(
            "built for ELF machine {machine}, this host is {}",
            host_machine()
        ));
    }
    let (Some(phoff), Some(phsize), Some(phnum)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38))
    else {
        return Err("a truncated ELF header".into());
    };
    for i in 0..usize::from(phnum) {
        let o = usize::try_from(phoff)
            .ok()
            .and_then(|p| p.checked_add(i * usize::from(phsize)))
            .ok_or("a program header out of range")?;
        match u32_at(o) {
            Some(3) => {
                return Err(
                    "dynamically linked (it has a program interpreter): build it static with 'make agent'"
                        .into(),
                )
            }
            Some(_) => {}
            None => return Err("a program header out of range".into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    fn elf(machine: u16, interp: bool) -> Vec<u8> {
        let mut b = vec![0u8; 64 + 56 * 2];
        b[..4].copy_from_slice(b"\x7fELF");
        b[4] = 2;
        b[5] = 1;
        b[0x10..0x12].copy_from_slice(&2u16.to_le_bytes());
        b[0x12..0x14].copy_from_slice(&machine.to_le_bytes());
        b[0x20..0x28].copy_from_slice(&64u64.to_le_bytes());
        b[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        b[0x38..0x3a].copy_from_slice(&2u16.to_le_bytes());
        b[64..68].copy_from_slice(&1u32.to_le_bytes());
        b[120..124].copy_from_slice(&(if interp { 3u32 } else { 1 }).to_le_bytes());
        b
    }

    #[test]
    fn guest_binaries_are_checked() {
        let m = host_machine();
        assert!(check_guest_binary(&elf(m, false)).is_ok());
        assert!(check_guest_binary(&elf(m, true))
            .unwrap_err()
            .contains("dynamically linked"));
        assert!(check_guest_binary(&elf(m + 1, false))
            .unwrap_err()
            .contains("ELF machine"));
        assert!(check_guest_binary(b"#!/bin/sh\necho hi\n").is_err());
        let mut cut = elf(m, false);
        cut.truncate(100);
        assert!(check_guest_binary(&cut).is_err());
        // The test binary itself is dynamically linked.
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let _ = check_guest_binary(&me);
    }

    /// A stand-in Firecracker vsock socket: answers CONNECT the way `answer` says.
    fn fake_fc(answer: &'static [u8]) -> (PathBuf, std::thread::JoinHandle<String>) {
        let dir = std::env::temp_dir().join(format!(
            "banger-vsock-{}-{}",
            std::process::id(),
            answer.len()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("v.sock");
        let l = UnixListener::bind(&path).unwrap();
        let t = std::thread::spawn(move || {
            let (mut c, _) = l.accept().unwrap();
            let mut line = [0u8; 13];
            c.read_exact(&mut line).unwrap();
            c.write_all(answer).unwrap();
            String::from_utf8_lossy(&line).into_owned()
        });
        (path, t)
    }

    #[test]
    fn connect_speaks_firecrackers_hybrid_vsock() {
        let (p, t) = fake_fc(b"OK 1073741824\n");
        assert!(connect(&p, Duration::from_secs(2)).is_ok());
        assert_eq!(t.join().unwrap(), "CONNECT 1023\n");
        let _ = std::fs::remove_dir_all(p.parent().unwrap());
        let (p, t) = fake_fc(b"");
        let e = connect(&p, Duration::from_secs(2)).unwrap_err();
        assert!(matches!(e, AgentError::NoAgent { port: 1023 }), "{e}");
        assert!(e.not_yet());
        t.join().unwrap();
        let _ = std::fs::remove_dir_all(p.parent().unwrap());
        let (p, t) = fake_fc(b"NO\n");
        assert!(matches!(
            connect(&p, Duration::from_secs(2)).unwrap_err(),
            AgentError::BadAck { .. }
        ));
        t.join().unwrap();
        let _ = std::fs::remove_dir_all(p.parent().unwrap());
        let e = connect(Path::new("/nonexistent/v.sock"), Duration::from_secs(1)).unwrap_err();
        assert!(matches!(e, AgentError::Connect { .. }));
    }
}
