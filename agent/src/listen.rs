//! The agent's listener: a vsock socket on [`PORT`] that accepts only the host (CID 2, which
//! Firecracker's host-initiated connections come from), serves each connection on a thread
//! of its own, and answers `busy` past [`MAX_CONNECTIONS`].

use crate::conn::{send, Conn};
use crate::proto::{code, ErrorBody, Reply, HOST_CID, MAX_CONNECTIONS};
use crate::server::{serve, System};
use nix::sys::socket::{self, AddressFamily, Backlog, SockFlag, SockType, VsockAddr};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Any CID (`VMADDR_CID_ANY`).
const CID_ANY: u32 = u32::MAX;

/// Counts a connection while it is served.
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Listens on vsock `port` and serves connections until the process ends. Returns only when
/// the socket cannot be set up.
pub fn run(port: u32, sys: Arc<dyn System>) -> std::io::Result<std::convert::Infallible> {
    let fd = socket::socket(
        AddressFamily::Vsock,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    socket::bind(fd.as_raw_fd(), &VsockAddr::new(CID_ANY, port))?;
    socket::listen(&fd, Backlog::new(16).unwrap_or(Backlog::MAXCONN))?;
    eprintln!(
        "banger-agent {}: listening on vsock port {port}",
        crate::server::VERSION
    );
    let active = Arc::new(AtomicUsize::new(0));
    loop {
        let raw = match socket::accept4(fd.as_raw_fd(), SockFlag::SOCK_CLOEXEC) {
            Ok(r) => r,
            Err(nix::errno::Errno::EINTR) | Err(nix::errno::Errno::ECONNABORTED) => continue,
            Err(e) => {
                // Out of descriptors or memory: wait rather than spin.
                eprintln!("banger-agent: accept: {e}");
                std::thread::sleep(std::time::Duration::from_millis(100));
                continue;
            }
        };
        // SAFETY: accept4 returned a new descriptor that nothing else owns.
        let conn = Conn::new(unsafe { OwnedFd::from_raw_fd(raw) });
        // Only the host: a process in the guest (vsock loopback) must not get root's exec.
        match socket::getpeername::<VsockAddr>(conn.as_fd().as_raw_fd()) {
            Ok(a) if a.cid() == HOST_CID => {}
            _ => continue,
        }
        if active.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
            let _slot = Slot(active.clone());
            let _ = conn.set_write_timeout(Some(std::time::Duration::from_secs(1)));
            let mut c = conn;
            let _ = send(
                &mut c,
                &Reply::err(ErrorBody::new(
                    code::BUSY,
                    format!("the agent serves {MAX_CONNECTIONS} connections at once; try again"),
                )),
            );
            continue;
        }
        let slot = Slot(active.clone());
        let sys = sys.clone();
        let spawned = std::thread::Builder::new()
            .name("conn".into())
            .spawn(move || {
                let _slot = slot;
                serve(conn, &*sys);
            });
        if let Err(e) = spawned {
            eprintln!("banger-agent: cannot start a thread: {e}");
        }
    }
}
