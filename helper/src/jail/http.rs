//! A minimal HTTP/1.1 request over a Unix socket: just enough for the readiness check
//! (`GET /`) and `PUT /serial` before banger-vm takes over with the full API client.

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// Longest path `sockaddr_un` holds (108 bytes with the terminating NUL).
pub const SUN_PATH_MAX: usize = 107;

/// Connects to a Unix socket; a path too long for `sockaddr_un` is reached through its
/// directory's descriptor (`/proc/self/fd/N/NAME`).
pub fn connect(path: &Path) -> std::io::Result<UnixStream> {
    if path.as_os_str().len() <= SUN_PATH_MAX {
        return UnixStream::connect(path);
    }
    let (dir, name) = match (path.parent(), path.file_name()) {
        (Some(d), Some(n)) => (d, n),
        _ => return UnixStream::connect(path),
    };
    let dirfd = rustix::fs::open(
        dir,
        rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )?;
    let short = Path::new("/proc/self/fd")
        .join(dirfd.as_raw_fd().to_string())
        .join(name);
    UnixStream::connect(short)
}

/// One request; returns the status code and the body.
pub fn request(
    sock: &Path,
    method: &str,
    uri: &str,
    body: Option<&str>,
    timeout: Duration,
) -> std::io::Result<(u16, String)> {
    let mut s = connect(sock)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    let mut req =
        format!("{method} {uri} HTTP/1.1\r\nHost: localhost\r\nAccept: application/json\r\n");
    if let Some(b) = body {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            b.len()
        ));
    }
    req.push_str("\r\n");
    if let Some(b) = body {
        req.push_str(b);
    }
    s.write_all(req.as_bytes())?;
    read_response(&mut s)
}

fn bad(msg: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg.to_string())
}

/// Reads one response: the status line, headers, and a Content-Length body (Firecracker
/// keeps the connection open, so the body is not read to EOF).
fn read_response(s: &mut UnixStream) -> std::io::Result<(u16, String)> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > 64 * 1024 {
            return Err(bad("HTTP response header too large"));
        }
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return Err(bad("connection closed before a complete HTTP response"));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| bad("not an HTTP response"))?;
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    let len = len.min(1 << 20);
    while buf.len() < head_end + len {
        let n = s.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let end = buf.len().min(head_end + len);
    Ok((
        status,
        String::from_utf8_lossy(&buf[head_end..end]).into_owned(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    #[test]
    fn get_through_a_long_path() {
        let base = std::env::temp_dir().join(format!("banger-http-{}", std::process::id()));
        let long = base.join("d".repeat(60)).join("e".repeat(60));
        std::fs::create_dir_all(&long).unwrap();
        let sock = long.join("api.sock");
        assert!(sock.as_os_str().len() > SUN_PATH_MAX);
        let dirfd = rustix::fs::open(
            &long,
            rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY,
            rustix::fs::Mode::empty(),
        )
        .unwrap();
        let short = format!("/proc/self/fd/{}/api.sock", dirfd.as_raw_fd());
        let l = UnixListener::bind(&short).unwrap();
        let t = std::thread::spawn(move || {
            let (mut c, _) = l.accept().unwrap();
            let mut b = [0u8; 1024];
            let n = c.read(&mut b).unwrap();
            assert!(String::from_utf8_lossy(&b[..n]).starts_with("GET / HTTP/1.1\r\n"));
            c.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n{\"id\":\"a\"}\n")
                .unwrap();
            std::thread::sleep(Duration::from_millis(100));
        });
        let (code, body) = request(&sock, "GET", "/", None, Duration::from_secs(2)).unwrap();
        assert_eq!(code, 200);
        assert_eq!(body, "{\"id\":\"a\"}\n");
        t.join().unwrap();
        let _ = std::fs::remove_dir_all(&base);
    }
}
