//! TEST STAND-IN, not Firecracker: the host-side resources the real one opens, opened for real so
//! that banger's setup is checked the same way: backing files, tap devices (`TUNSETIFF` on
//! `/dev/net/tun`), the vsock unix socket, the serial output, and the snapshot files (JSON here,
//! not guest state).

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::process::Stdio;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::model::{FullConfig, SnapshotType};
use crate::NOTICE;

/// Opens a drive's backing file as Firecracker does (read-write unless read-only).
pub fn open_backing_file(path: &str, read_only: bool) -> Result<File, String> {
    OpenOptions::new()
        .read(true)
        .write(!read_only)
        .open(path)
        .map_err(|e| {
            format!(
            "Unable to create the virtio block device: Virtio backend error: Error manipulating \
             the backing file: {e} {path}"
        )
        })
}

#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// Attaches to the tap `name` like Firecracker (`IFF_TAP | IFF_NO_PI | IFF_VNET_HDR`). As root
/// with a missing tap this creates a transient one, as the real one would.
pub fn open_tap(name: &str) -> Result<File, String> {
    let prefix = "Could not create the network device: Open tap device failed";
    let tun = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open("/dev/net/tun")
        .map_err(|e| format!("{prefix}: Couldn't open /dev/net/tun: {e}"))?;
    if name.len() >= libc::IFNAMSIZ || name.as_bytes().contains(&0) {
        return Err(format!("{prefix}: Invalid interface name"));
    }
    let mut req = IfReq {
        name: [0; libc::IFNAMSIZ],
        flags: 0,
        _pad: [0; 22],
    };
    req.name[..name.len()].copy_from_slice(name.as_bytes());
    req.flags = (libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR) as libc::c_short;
    // SAFETY: `tun` is an open fd and `req` is a live, correctly sized `struct ifreq` (40 bytes)
    // that the kernel reads and writes for TUNSETIFF.
    let rc = unsafe { libc::ioctl(tun.as_raw_fd(), libc::TUNSETIFF as _, &mut req) };
    if rc < 0 {
        let e = std::io::Error::last_os_error();
        return Err(format!(
            "{prefix}: Error while creating ifreq structure: {e}. Invalid TUN/TAP Backend \
             provided by {name}. Check our documentation on setting up the network devices."
        ));
    }
    Ok(tun)
}

/// The stand-in guest's agent: a program started for each host-initiated vsock connection to
/// the agent's port once the guest "runs", named on the kernel command line as
/// `standin.agent=PATH` (a host binary, e.g. banger-agent, run with `--stdio` on the
/// connection). Without it the stand-in guest has no agent, like the tiny guest.
static GUEST_AGENT: Mutex<Option<String>> = Mutex::new(None);

/// The agent's vsock port in banger's guests.
const AGENT_PORT: &str = "1023";

/// At InstanceStart: the guest's agent, if its command line names one.
pub fn start_guest_agent(cmdline: &str) {
    let agent = cmdline
        .split_whitespace()
        .find_map(|w| w.strip_prefix("standin.agent="))
        .map(String::from);
    *GUEST_AGENT.lock().unwrap_or_else(|p| p.into_inner()) = agent;
}

/// The stand-in guest's built-in agent (`standin.agent=builtin`): banger's agent library
/// serving in this process, so it works inside a jail where no host program can run. Its
/// "guest" is the directory `standin-guest` beside the stand-in (in its jail, its root): the
/// identity's files are written there; the hostname, the reseeds and the `ip` commands are
/// recorded in `.standin-hostname`, `.standin-reseeds` (hex, one line per reseed) and
/// `.standin-ip` (one command per line). Nothing touches the host.
pub const BUILTIN_AGENT: &str = "builtin";

struct StandinGuest {
    root: std::path::PathBuf,
}

impl StandinGuest {
    fn append(&self, name: &str, line: &str) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.root)?;
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.root.join(name))?;
        writeln!(f, "{line}")
    }
}

impl banger_agent::server::System for StandinGuest {
    fn root(&self) -> &Path {
        &self.root
    }
    fn set_hostname(&self, name: &str) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.root)?;
        std::fs::write(self.root.join(".standin-hostname"), format!("{name}\n"))
    }
    fn reseed(&self, seed: &[u8]) -> std::io::Result<()> {
        let hex: String = seed.iter().map(|b| format!("{b:02x}")).collect();
        self.append(".standin-reseeds", &hex)
    }
    fn ip(&self, args: &[String]) -> std::io::Result<()> {
        self.append(".standin-ip", &args.join(" "))
    }
    fn shutdown(&self, _force: bool) -> std::io::Result<()> {
        Ok(())
    }
}

fn serve_builtin(conn: UnixStream) {
    let root = std::env::current_dir()
        .unwrap_or_else(|_| "/".into())
        .join("standin-guest");
    std::thread::spawn(move || {
        let sys = StandinGuest { root };
        banger_agent::server::serve(banger_agent::conn::Conn::new(OwnedFd::from(conn)), &sys);
    });
}

/// Binds the vsock's host-side unix socket. A connection reads `CONNECT <port>`; for the
/// agent's port, with a stand-in guest agent, Firecracker's `OK <host port>` is answered and
/// the agent serves the connection; otherwise it is closed, as Firecracker does for a guest
/// port nobody listens on.
pub fn bind_vsock(uds_path: &str) -> Result<(), String> {
    let listener = UnixListener::bind(uds_path).map_err(|e| {
        format!("Cannot create backend for vsock device: Error binding to the host-side Unix socket: {e}")
    })?;
    let spawned = std::thread::Builder::new()
        .name("fc_vsock".into())
        .spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let mut line = Vec::new();
                let mut b = [0u8; 1];
                while line.len() < 64 && matches!(conn.read(&mut b), Ok(1)) && b[0] != b'\n' {
                    line.push(b[0]);
                }
                let port = String::from_utf8_lossy(&line)
                    .strip_prefix("CONNECT ")
                    .map(|p| p.trim().to_string());
                let agent = GUEST_AGENT
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone();
                if let (Some(AGENT_PORT), Some(agent)) = (port.as_deref(), agent) {
                    if conn.write_all(b"OK 1073741824\n").is_ok() {
                        if agent == BUILTIN_AGENT {
                            serve_builtin(conn);
                        } else {
                            serve_agent(&agent, conn);
                        }
                    }
                }
            }
        });
    spawned
        .map(|_| ())
        .map_err(|e| format!("Cannot create vsock device: {e}"))
}

/// Runs the stand-in guest's agent on one connection (its stdin and stdout), reaped by a
/// thread of its own.
fn serve_agent(agent: &str, conn: UnixStream) {
    let (Ok(a), Ok(b)) = (conn.try_clone(), conn.try_clone()) else {
        return;
    };
    let child = std::process::Command::new(agent)
        .arg("--stdio")
        .stdin(Stdio::from(OwnedFd::from(a)))
        .stdout(Stdio::from(OwnedFd::from(b)))
        .spawn();
    if let Ok(mut c) = child {
        std::thread::spawn(move || c.wait());
    }
}

/// Where the guest's serial console goes.
pub enum Serial {
    Stdout,
    File(File),
}

impl Serial {
    pub fn write_line(&mut self, line: &str) {
        let text = format!("{line}\n");
        // Like a UART whose reader went away, a failed write is dropped.
        match self {
            Serial::Stdout => {
                let mut out = std::io::stdout().lock();
                let _ = out.write_all(text.as_bytes());
                let _ = out.flush();
            }
            Serial::File(f) => {
                let _ = f.write_all(text.as_bytes());
            }
        }
    }
}

/// The snapshot data format version Firecracker 1.16 writes.
pub const SNAPSHOT_VERSION: &str = "10.0.0";

/// Content of both stand-in snapshot files.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SnapshotFile {
    pub standin_snapshot: String,
    pub snapshot_version: String,
    /// `state` for snapshot_path, `memory` for mem_file_path.
    pub kind: String,
    pub snapshot_type: SnapshotType,
    pub vm_id: String,
    pub config: FullConfig,
}

/// Writes `snap` to `path` (created or truncated).
pub fn write_snapshot(path: &Path, snap: &SnapshotFile) -> Result<(), String> {
    let what = if snap.kind == "state" {
        "snapshot"
    } else {
        "memory"
    };
    let text = serde_json::to_string_pretty(snap).map_err(|e| e.to_string())?;
    let mut f = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(path)
        .map_err(|e| format!("Cannot perform open on the {what} backing file: {e}"))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| format!("Cannot perform write on the {what} backing file: {e}"))
}

/// Reads a stand-in snapshot file written by [`write_snapshot`].
pub fn read_snapshot(path: &Path, kind: &str) -> Result<SnapshotFile, String> {
    let text = std::fs::read(path).map_err(|e| format!("Failed to open snapshot file: {e}"))?;
    let snap: SnapshotFile = serde_json::from_slice(&text).map_err(|e| {
        format!("Failed to load snapshot state from file: not a {NOTICE} snapshot: {e}")
    })?;
    if snap.kind != kind {
        return Err(format!(
            "Failed to load snapshot state from file: expected a {kind} file, found a {} file",
            snap.kind
        ));
    }
    Ok(snap)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_round_trip_and_kind_check() {
        let dir = std::env::temp_dir().join(format!("standin-dev-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let snap = SnapshotFile {
            standin_snapshot: NOTICE.into(),
            snapshot_version: SNAPSHOT_VERSION.into(),
            kind: "state".into(),
            snapshot_type: SnapshotType::Full,
            vm_id: "vm".into(),
            config: FullConfig::default(),
        };
        let p = dir.join("snap");
        write_snapshot(&p, &snap).unwrap();
        assert_eq!(read_snapshot(&p, "state").unwrap().vm_id, "vm");
        assert!(read_snapshot(&p, "memory")
            .unwrap_err()
            .contains("expected a memory file"));
        assert!(read_snapshot(&dir.join("none"), "state")
            .unwrap_err()
            .starts_with("Failed to open"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_tap_names_are_refused() {
        if std::fs::metadata("/dev/net/tun").is_err() {
            return;
        }
        let long = "t".repeat(16);
        let e = open_tap(&long).unwrap_err();
        assert!(
            e.contains("Invalid interface name") || e.contains("Couldn't open"),
            "{e}"
        );
    }

    #[test]
    fn backing_file_errors_name_the_path() {
        let e = open_backing_file("/nonexistent/disk.img", true).unwrap_err();
        assert!(
            e.ends_with("No such file or directory (os error 2) /nonexistent/disk.img"),
            "{e}"
        );
    }
}
