//! The Firecracker API client: HTTP/1.1 over the VM's API Unix socket, with ureq and a
//! Unix-socket connector (ureq's minor version is pinned in Cargo.toml because its
//! `unversioned` transport API is outside semver). Every call has a timeout; a 4xx/5xx
//! answer surfaces Firecracker's `fault_message` as is.

use serde_json::{json, Value};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use ureq::unversioned::resolver::{ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{
    Buffers, ConnectionDetails, Connector, LazyBuffers, NextTimeout, Transport,
};

/// Default per-call timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum FcError {
    #[error("cannot reach Firecracker's API on {sock} (is the VM launched? banger-jail launch)")]
    Connect {
        sock: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{method} {path} on {sock}: no answer in time")]
    Timeout {
        method: &'static str,
        path: String,
        sock: PathBuf,
    },
    #[error("Firecracker refused {method} {path} ({status}): {fault}")]
    Fault {
        method: &'static str,
        path: String,
        status: u16,
        fault: String,
    },
    #[error("{method} {path} on {sock} failed")]
    Http {
        method: &'static str,
        path: String,
        sock: PathBuf,
        #[source]
        source: Box<ureq::Error>,
    },
    #[error("{method} {path}: Firecracker's answer is not the JSON expected: {body:?}")]
    Body {
        method: &'static str,
        path: String,
        body: String,
    },
}

impl FcError {
    /// A stable code for a record's `error.code`.
    pub fn code(&self) -> &'static str {
        match self {
            FcError::Connect { .. } => "api_unreachable",
            FcError::Timeout { .. } => "api_timeout",
            FcError::Fault { .. } => "firecracker_fault",
            FcError::Http { .. } | FcError::Body { .. } => "api_error",
        }
    }
}

// ---- the transport: ureq over a Unix socket ----

#[derive(Debug)]
struct UnixConnector {
    sock: PathBuf,
}

impl Connector<()> for UnixConnector {
    type Out = UnixTransport;

    fn connect(
        &self,
        details: &ConnectionDetails,
        _chained: Option<()>,
    ) -> Result<Option<Self::Out>, ureq::Error> {
        let stream = UnixStream::connect(&self.sock)?;
        let cfg = details.config;
        Ok(Some(UnixTransport {
            stream,
            buffers: LazyBuffers::new(cfg.input_buffer_size(), cfg.output_buffer_size()),
        }))
    }
}

#[derive(Debug)]
struct UnixTransport {
    stream: UnixStream,
    buffers: LazyBuffers,
}

fn io_timeout(e: std::io::Error) -> ureq::Error {
    match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
            ureq::Error::Timeout(ureq::Timeout::Global)
        }
        _ => ureq::Error::Io(e),
    }
}

impl Transport for UnixTransport {
    fn buffers(&mut self) -> &mut dyn Buffers {
        &mut self.buffers
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), ureq::Error> {
        let t = timeout.for_write().not_zero().map(|d| *d);
        self.stream.set_write_timeout(t)?;
        let out = &self.buffers.output()[..amount];
        self.stream.write_all(out).map_err(io_timeout)
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, ureq::Error> {
        let t = timeout.for_read().not_zero().map(|d| *d);
        self.stream.set_read_timeout(t)?;
        let buf = self.buffers.input_append_buf();
        let n = loop {
            match self.stream.read(buf) {
                Ok(n) => break n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io_timeout(e)),
            }
        };
        self.buffers.input_appended(n);
        Ok(n > 0)
    }

    fn is_open(&mut self) -> bool {
        // Connections are not pooled (max_idle_connections = 0), so never reused.
        false
    }
}

/// The "host" is the socket: no name resolution happens.
#[derive(Debug)]
struct NoResolver;

impl Resolver for NoResolver {
    fn resolve(
        &self,
        _uri: &ureq::http::Uri,
        _config: &ureq::config::Config,
        _timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let mut v = self.empty();
        v.push(std::net::SocketAddr::from(([127, 0, 0, 1], 80)));
        Ok(v)
    }
}

// ---- the client ----

/// `GET /`: what Firecracker says about itself.
#[derive(Debug, Clone, serde::Deserialize, PartialEq)]
pub struct InstanceInfo {
    pub id: String,
    /// "Not started", "Running" or "Paused".
    pub state: String,
    #[serde(default)]
    pub vmm_version: String,
    #[serde(default)]
    pub app_name: String,
}

/// A client for one VM's API socket.
#[derive(Clone)]
pub struct Client {
    sock: PathBuf,
    agent: Arc<ureq::Agent>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("sock", &self.sock).finish()
    }
}

impl Client {
    pub fn new(sock: &Path) -> Client {
        Client::with_timeout(sock, DEFAULT_TIMEOUT)
    }

    pub fn with_timeout(sock: &Path, timeout: Duration) -> Client {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_idle_connections(0)
            .timeout_global(Some(timeout))
            .user_agent("banger")
            // Firecracker's answers are a few hundred bytes of head and at most a few KiB of
            // body (a larger body streams through). ureq's default 128 KiB buffers are
            // mapped and faulted in afresh for every connection: start's six calls took
            // 1.5-1.7 ms with them, 1.2 ms with these (medians of 20, real Firecracker).
            .max_response_header_size(8 * 1024)
            .input_buffer_size(16 * 1024)
            .output_buffer_size(16 * 1024)
            .build();
        let agent = ureq::Agent::with_parts(
            config,
            UnixConnector {
                sock: sock.to_path_buf(),
            },
            NoResolver,
        );
        Client {
            sock: sock.to_path_buf(),
            agent: Arc::new(agent),
        }
    }

    pub fn sock(&self) -> &Path {
        &self.sock
    }

    fn call(
        &self,
        method: &'static str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, FcError> {
        let url = format!("http://localhost{path}");
        let result = match (method, body) {
            ("GET", _) => self
                .agent
                .get(&url)
                .header("Accept", "application/json")
                .call(),
            ("PUT", Some(b)) => self
                .agent
                .put(&url)
                .header("Content-Type", "application/json")
                .header("Accept", "application/json")
                .send(b.to_string()),
            ("PATCH", Some(b)) => self
                .agent
                .patch(&url)
                .header("Content-Type", "application/json")
                .header("Accept", "application/json")
                .send(b.to_string()),
            _ => unreachable!("only GET, PUT with a body and PATCH with a body are used"),
        };
        let mut resp = result.map_err(|e| self.map_err(method, path, e))?;
        let status = resp.status().as_u16();
        let text = resp
            .body_mut()
            .read_to_string()
            .map_err(|e| self.map_err(method, path, e))?;
        if status >= 400 {
            let fault = serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| {
                    v.get("fault_message")
                        .and_then(Value::as_str)
                        .map(String::from)
                })
                .unwrap_or_else(|| text.trim().to_string());
            return Err(FcError::Fault {
                method,
                path: path.into(),
                status,
                fault,
            });
        }
        if text.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text).map_err(|_| FcError::Body {
            method,
            path: path.into(),
            body: text,
        })
    }

    fn map_err(&self, method: &'static str, path: &str, e: ureq::Error) -> FcError {
        match e {
            ureq::Error::Io(source)
                if matches!(
                    source.kind(),
                    std::io::ErrorKind::NotFound
                        | std::io::ErrorKind::ConnectionRefused
                        | std::io::ErrorKind::PermissionDenied
                ) =>
            {
                FcError::Connect {
                    sock: self.sock.clone(),
                    source,
                }
            }
            ureq::Error::Timeout(_) => FcError::Timeout {
                method,
                path: path.into(),
                sock: self.sock.clone(),
            },
            source => FcError::Http {
                method,
                path: path.into(),
                sock: self.sock.clone(),
                source: Box::new(source),
            },
        }
    }

    pub fn get(&self, path: &str) -> Result<Value, FcError> {
        self.call("GET", path, None)
    }
    pub fn put(&self, path: &str, body: &Value) -> Result<(), FcError> {
        self.call("PUT", path, Some(body)).map(|_| ())
    }
    pub fn patch(&self, path: &str, body: &Value) -> Result<(), FcError> {
        self.call("PATCH", path, Some(body)).map(|_| ())
    }

    /// `GET /`.
    pub fn instance_info(&self) -> Result<InstanceInfo, FcError> {
        let v = self.get("/")?;
        serde_json::from_value(v.clone()).map_err(|_| FcError::Body {
            method: "GET",
            path: "/".into(),
            body: v.to_string(),
        })
    }

    /// `GET /vm/config`: the whole configuration.
    pub fn vm_config(&self) -> Result<Value, FcError> {
        self.get("/vm/config")
    }

    pub fn boot_source(
        &self,
        kernel: &str,
        initrd: Option<&str>,
        boot_args: &str,
    ) -> Result<(), FcError> {
        let mut b = json!({"kernel_image_path": kernel, "boot_args": boot_args});
        if let Some(i) = initrd {
            b["initrd_path"] = json!(i);
        }
        self.put("/boot-source", &b)
    }

    pub fn drive(&self, id: &str, path: &str, root: bool, read_only: bool) -> Result<(), FcError> {
        self.put(
            &format!("/drives/{id}"),
            &json!({"drive_id": id, "path_on_host": path, "is_root_device": root, "is_read_only": read_only}),
        )
    }

    pub fn network_interface(&self, id: &str, tap: &str, mac: &str) -> Result<(), FcError> {
        self.put(
            &format!("/network-interfaces/{id}"),
            &json!({"iface_id": id, "host_dev_name": tap, "guest_mac": mac}),
        )
    }

    pub fn machine_config(&self, vcpus: u64, mem_mib: u64) -> Result<(), FcError> {
        self.put(
            "/machine-config",
            &json!({"vcpu_count": vcpus, "mem_size_mib": mem_mib}),
        )
    }

    pub fn vsock(&self, guest_cid: u32, uds_path: &str) -> Result<(), FcError> {
        self.put(
            "/vsock",
            &json!({"guest_cid": guest_cid, "uds_path": uds_path}),
        )
    }

    pub fn logger(&self, log_path: &str, level: &str) -> Result<(), FcError> {
        self.put("/logger", &json!({"log_path": log_path, "level": level}))
    }

    pub fn metrics(&self, metrics_path: &str) -> Result<(), FcError> {
        self.put("/metrics", &json!({"metrics_path": metrics_path}))
    }

    pub fn serial(&self, out_path: &str) -> Result<(), FcError> {
        self.put("/serial", &json!({"serial_out_path": out_path}))
    }

    /// `PUT /actions`: `InstanceStart`, `SendCtrlAltDel` or `FlushMetrics`.
    pub fn action(&self, action: &str) -> Result<(), FcError> {
        self.put("/actions", &json!({"action_type": action}))
    }

    pub fn pause(&self) -> Result<(), FcError> {
        self.patch("/vm", &json!({"state": "Paused"}))
    }

    pub fn resume(&self) -> Result<(), FcError> {
        self.patch("/vm", &json!({"state": "Resumed"}))
    }

    /// A Full snapshot of a paused VM.
    pub fn snapshot_create(&self, snapshot_path: &str, mem_path: &str) -> Result<(), FcError> {
        self.put(
            "/snapshot/create",
            &json!({"snapshot_type": "Full", "snapshot_path": snapshot_path, "mem_file_path": mem_path}),
        )
    }

    /// Loads a snapshot into a fresh Firecracker.
    pub fn snapshot_load(
        &self,
        snapshot_path: &str,
        mem_path: &str,
        resume: bool,
    ) -> Result<(), FcError> {
        self.put(
            "/snapshot/load",
            &json!({
                "snapshot_path": snapshot_path,
                "mem_backend": {"backend_type": "File", "backend_path": mem_path},
                "resume_vm": resume,
            }),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader};
    use std::os::unix::net::UnixListener;

    /// A one-shot fake API server: answers each connection with the next canned response
    /// and hands back the raw requests it read.
    fn serve(responses: Vec<&'static str>) -> (PathBuf, std::thread::JoinHandle<Vec<String>>) {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "banger-fcapi-{}-{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let sock = dir.join("api.sock");
        let l = UnixListener::bind(&sock).unwrap();
        let h = std::thread::spawn(move || {
            let mut seen = Vec::new();
            for resp in responses {
                let (s, _) = l.accept().unwrap();
                let mut r = BufReader::new(&s);
                let mut req = String::new();
                let mut len = 0usize;
                loop {
                    let mut line = String::new();
                    r.read_line(&mut line).unwrap();
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap();
                    }
                    req.push_str(&line);
                    if line == "\r\n" || line.is_empty() {
                        break;
                    }
                }
                let mut body = vec![0; len];
                r.read_exact(&mut body).unwrap();
                req.push_str(&String::from_utf8(body).unwrap());
                seen.push(req);
                (&s).write_all(resp.as_bytes()).unwrap();
            }
            seen
        });
        (sock, h)
    }

    #[test]
    fn get_instance_info() {
        let body =
            r#"{"id":"a","state":"Running","vmm_version":"1.16.1","app_name":"Firecracker"}"#;
        let resp: &'static str = Box::leak(
            format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len())
                .into_boxed_str(),
        );
        let (sock, h) = serve(vec![resp]);
        let c = Client::new(&sock);
        let info = c.instance_info().unwrap();
        assert_eq!(info.state, "Running");
        let reqs = h.join().unwrap();
        let _ = std::fs::remove_dir_all(sock.parent().unwrap());
        assert!(reqs[0].starts_with("GET / HTTP/1.1\r\n"), "{}", reqs[0]);
    }

    #[test]
    fn put_sends_json_and_accepts_204() {
        let (sock, h) = serve(vec!["HTTP/1.1 204 No Content\r\n\r\n"]);
        Client::new(&sock).machine_config(2, 1024).unwrap();
        let reqs = h.join().unwrap();
        let _ = std::fs::remove_dir_all(sock.parent().unwrap());
        assert!(reqs[0].starts_with("PUT /machine-config HTTP/1.1\r\n"));
        let body = reqs[0].split("\r\n\r\n").nth(1).unwrap();
        let v: Value = serde_json::from_str(body).unwrap();
        assert_eq!(v, json!({"vcpu_count": 2, "mem_size_mib": 1024}));
    }

    #[test]
    fn fault_message_is_shown_as_is() {
        let body = r#"{"fault_message":"The requested operation is not supported after starting the microVM."}"#;
        let resp: &'static str = Box::leak(
            format!("HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len())
                .into_boxed_str(),
        );
        let (sock, h) = serve(vec![resp]);
        let e = Client::new(&sock).boot_source("/k", None, "x").unwrap_err();
        h.join().unwrap();
        let _ = std::fs::remove_dir_all(sock.parent().unwrap());
        assert_eq!(e.code(), "firecracker_fault");
        assert_eq!(
            e.to_string(),
            "Firecracker refused PUT /boot-source (400): The requested operation is not supported after starting the microVM."
        );
    }

    #[test]
    fn missing_socket_is_a_connect_error() {
        let e = Client::new(Path::new("/nonexistent/api.sock"))
            .instance_info()
            .unwrap_err();
        assert_eq!(e.code(), "api_unreachable");
    }

    #[test]
    fn a_silent_server_times_out() {
        let dir = std::env::temp_dir().join(format!("banger-fcapi-silent-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let sock = dir.join("api.sock");
        let l = UnixListener::bind(&sock).unwrap();
        // The server holds the connection, silent, until the client has given up (never
        // for a fixed time: under load a sleep can end before the client's timeout fires).
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let h = std::thread::spawn(move || {
            let (s, _) = l.accept().unwrap();
            let _ = done_rx.recv_timeout(Duration::from_secs(30));
            drop(s);
        });
        let t = std::time::Instant::now();
        let e = Client::with_timeout(&sock, Duration::from_millis(300))
            .instance_info()
            .unwrap_err();
        let took = t.elapsed();
        done_tx.send(()).unwrap();
        assert_eq!(e.code(), "api_timeout", "{e}");
        assert!(took >= Duration::from_millis(300), "gave up after {took:?}");
        assert!(
            took < Duration::from_secs(20),
            "the timeout did not fire: {took:?}"
        );
        h.join().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_answer_larger_than_the_buffers_is_read_whole() {
        let big = "x".repeat(200 * 1024);
        let body = format!("{{\"fault_message\":\"{big}\"}}");
        let resp: &'static str = Box::leak(
            format!(
                "HTTP/1.1 400 Bad Request\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .into_boxed_str(),
        );
        let (sock, h) = serve(vec![resp]);
        let e = Client::new(&sock)
            .drive("rootfs", &big, true, false)
            .unwrap_err();
        let reqs = h.join().unwrap();
        let _ = std::fs::remove_dir_all(sock.parent().unwrap());
        // the request's body (over the output buffer) went out whole, and the answer came back whole
        assert!(reqs[0].contains(&big));
        match e {
            FcError::Fault { fault, .. } => assert_eq!(fault, big),
            other => panic!("{other}"),
        }
    }
}
