//! TEST STAND-IN, not Firecracker: helpers shared by the stand-in's integration tests.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use serde_json::Value;

/// The stand-in Firecracker under the name the tests need: a hard link named `firecracker`
/// (its `comm`, and the canonical file name the jailer copies into the chroot) in this test
/// target's temp dir. The binary itself is built as `firecracker-standin`, so it can never be mistaken
/// for Firecracker on a PATH.
pub fn firecracker() -> &'static str {
    static P: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    P.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("standin-bin-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let link = dir.join("firecracker");
        let _ = std::fs::remove_file(&link);
        std::fs::hard_link(env!("CARGO_BIN_EXE_firecracker-standin"), &link).unwrap();
        link.display().to_string()
    })
}

/// The stand-in jailer.
pub const JAILER: &str = env!("CARGO_BIN_EXE_jailer-standin");

/// A temporary directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let n = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let p = std::env::temp_dir().join(format!("standin-it-{tag}-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Kills the child it holds when dropped (a failed test leaves no stand-in running).
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Kills the process `pid` (not a child) with SIGKILL when dropped, if it still exists.
pub struct KillPidOnDrop(pub i32);

impl Drop for KillPidOnDrop {
    fn drop(&mut self) {
        if self.0 > 0 && Path::new(&format!("/proc/{}", self.0)).exists() {
            // SAFETY: kill(2) on a pid this test started; no memory is involved.
            unsafe { libc::kill(self.0, libc::SIGKILL) };
        }
    }
}

/// Reads `/proc/<pid>/<file>` once the process has finished exec'ing (both change during
/// execve, and `spawn` may return before the kernel has set them).
pub fn proc_file_with(pid: u32, file: &str, needle: &str) -> String {
    let path = format!("/proc/{pid}/{file}");
    let mut text = String::new();
    wait_for(5, || {
        text = String::from_utf8_lossy(&std::fs::read(&path).unwrap_or_default()).into_owned();
        text.contains(needle)
    });
    text
}

/// Polls `cond` every 10 ms until it holds or `secs` pass.
pub fn wait_for(secs: u64, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    cond()
}

/// Waits for `child` to exit; kills it and fails after `secs`.
pub fn wait_exit(child: &mut Child, secs: u64) -> std::process::ExitStatus {
    let mut status = None;
    wait_for(secs, || {
        status = child.try_wait().ok().flatten();
        status.is_some()
    });
    match status {
        Some(s) => s,
        None => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("process {} did not exit within {secs}s", child.id());
        }
    }
}

/// A keep-alive HTTP/1.1 client on a unix socket.
pub struct Client {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Client {
    pub fn connect(sock: &Path) -> Client {
        // The socket's name appears at bind(), before listen(): a connect in between is
        // refused. Wait for a connect that succeeds, not for the name (under load the gap
        // was long enough for the test to lose the race).
        let mut stream = None;
        let mut last = None;
        wait_for(5, || match UnixStream::connect(sock) {
            Ok(s) => {
                stream = Some(s);
                true
            }
            Err(e) => {
                last = Some(e);
                false
            }
        });
        let stream = stream
            .unwrap_or_else(|| panic!("no API socket answers at {}: {last:?}", sock.display()));
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        Client {
            reader: BufReader::new(stream.try_clone().unwrap()),
            writer: stream,
        }
    }

    /// Sends one request with extra header lines; returns status and body (JSON or null).
    pub fn send(
        &mut self,
        method: &str,
        path: &str,
        body: Option<&str>,
        headers: &str,
    ) -> (u16, Value) {
        let body = body.unwrap_or("");
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\nAccept: application/json\r\n{headers}\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        self.writer.write_all(req.as_bytes()).unwrap();
        let mut line = String::new();
        self.reader.read_line(&mut line).unwrap();
        let status: u16 = line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let mut len = 0;
        loop {
            let mut h = String::new();
            self.reader.read_line(&mut h).unwrap();
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((n, v)) = h.split_once(':') {
                if n.eq_ignore_ascii_case("content-length") {
                    len = v.trim().parse().unwrap();
                }
            }
        }
        let mut buf = vec![0; len];
        self.reader.read_exact(&mut buf).unwrap();
        let v = if len == 0 {
            Value::Null
        } else {
            serde_json::from_slice(&buf).unwrap()
        };
        (status, v)
    }

    pub fn call(&mut self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let text = body.map(|b| b.to_string());
        self.send(method, path, text.as_deref(), "")
    }

    /// Whether the server closed the connection.
    pub fn at_eof(&mut self) -> bool {
        matches!(self.reader.fill_buf(), Ok([]))
    }
}

/// The recorded request lines of a requests file.
pub fn requests(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}
