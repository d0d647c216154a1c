//! `sd_notify(3)` without libsystemd: under `Type=notify`, tell systemd `READY=1` once the
//! helper serves, so `systemctl start` and `restart` return only when requests are answered.
//! Outside systemd (`NOTIFY_SOCKET` unset) it does nothing.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("NOTIFY_SOCKET={0:?} is not a socket path or an abstract name")]
    BadAddress(String),
    #[error("cannot send {state:?} to systemd on {addr}")]
    Send {
        state: String,
        addr: String,
        #[source]
        source: std::io::Error,
    },
}

/// The notification socket's address: a path, or an abstract name written `@name`.
fn address(raw: &str) -> Result<SocketAddr, NotifyError> {
    let bad = || NotifyError::BadAddress(raw.to_string());
    match raw.strip_prefix('@') {
        Some(name) if !name.is_empty() => {
            SocketAddr::from_abstract_name(name.as_bytes()).map_err(|_| bad())
        }
        Some(_) => Err(bad()),
        None if raw.starts_with('/') => SocketAddr::from_pathname(raw).map_err(|_| bad()),
        None => Err(bad()),
    }
}

/// Sends `state` (e.g. `READY=1\nSTATUS=...`) to `$NOTIFY_SOCKET`; `Ok(false)` when there is
/// no such socket (not started by systemd with `Type=notify`).
pub fn notify(state: &str) -> Result<bool, NotifyError> {
    let Some(raw) = std::env::var_os("NOTIFY_SOCKET") else {
        return Ok(false);
    };
    let raw = raw.to_string_lossy().into_owned();
    send_to(&raw, state).map(|()| true)
}

fn send_to(raw: &str, state: &str) -> Result<(), NotifyError> {
    let addr = address(raw)?;
    let err = |source| NotifyError::Send {
        state: state.to_string(),
        addr: raw.to_string(),
        source,
    };
    let sock = UnixDatagram::unbound().map_err(err)?;
    sock.send_to_addr(state.as_bytes(), &addr).map_err(err)?;
    Ok(())
}

/// `READY=1`, with a status line for `systemctl status`.
pub fn ready(status: &str) -> Result<bool, NotifyError> {
    notify(&format!(
        "READY=1\nSTATUS={status}\nMAINPID={}",
        std::process::id()
    ))
}

/// Called once the socket is listening, right before the accept loop: tells systemd the
/// helper is ready, reports a failure on stderr (the journal) without stopping, and removes
/// `NOTIFY_SOCKET` so no child (ip, the jailer, Firecracker) inherits it. Call it while the
/// process has a single thread.
pub fn serving(socket: &std::path::Path) {
    if let Err(e) = ready(&format!("serving on {}", socket.display())) {
        banger::cli::report("banger-helper", &e);
    }
    std::env::remove_var("NOTIFY_SOCKET");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert!(address("/run/systemd/notify").is_ok());
        assert!(address("@abstract/notify").is_ok());
        assert!(address("@").is_err());
        assert!(address("relative").is_err());
        assert!(address("").is_err());
    }

    #[test]
    fn sends_one_datagram_to_a_path_and_to_an_abstract_name() {
        let dir = std::env::temp_dir().join(format!("banger-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify.sock");
        let rx = UnixDatagram::bind(&path).unwrap();
        send_to(path.to_str().unwrap(), "READY=1").unwrap();
        let mut buf = [0u8; 64];
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
        let _ = std::fs::remove_dir_all(&dir);

        let name = format!("banger-notify-test-{}", std::process::id());
        let rx = UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap())
            .unwrap();
        send_to(&format!("@{name}"), "READY=1\nSTATUS=x").unwrap();
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\nSTATUS=x");
    }

    #[test]
    fn a_dead_socket_is_an_error_not_a_panic() {
        let e = send_to("/nonexistent/banger/notify", "READY=1").unwrap_err();
        assert!(e.to_string().contains("READY=1"), "{e}");
    }
}
