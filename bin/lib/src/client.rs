//! The root helper's client, with the in-process fallback for root.
//!
//! A step calls [`Helper::call`]. When the helper's socket answers, the request goes there.
//! When it does not and the caller is root, the same operation runs in this process through
//! the local handler the binary registered (the helper crate's dispatcher: same code, same
//! validation). Otherwise the error says what to run.

use crate::config::Config;
use crate::proto::{self, OpError, Request, Response};
use serde_json::Value;
use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

/// Runs a request in process (the helper's dispatcher). Registered by the binaries.
pub type LocalHandler = fn(&Config, &Request) -> Response;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("banger is not installed on this host (no {install}), so no root helper runs: run: sudo banger system install")]
    NotInstalled { install: PathBuf },
    #[error("banger's root helper is installed but not running (nothing answered on {socket} for {waited_ms} ms): run: sudo banger system restart (its log: journalctl -u banger-helper)")]
    Unreachable {
        socket: PathBuf,
        waited_ms: u128,
        #[source]
        source: std::io::Error,
    },
    #[error("banger is installed for {owner} (uid {uid}); you are uid {you}: run banger as {owner}, or reinstall with: sudo banger system install --owner $USER")]
    NotOwner { owner: String, uid: u32, you: u32 },
    #[error("lost the connection to the root helper on {socket}")]
    Io {
        socket: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the root helper gave an answer that is not valid JSON: {answer:?}")]
    Garbled { answer: String },
    #[error("helper op {op} failed: {error}")]
    Op { op: String, error: OpError },
}

impl ClientError {
    /// A stable code for the `error` section of a record.
    pub fn code(&self) -> &str {
        match self {
            ClientError::NotInstalled { .. } => "helper_not_installed",
            ClientError::Unreachable { .. } => "helper_unreachable",
            ClientError::NotOwner { .. } => proto::code::PERMISSION_DENIED,
            ClientError::Io { .. } | ClientError::Garbled { .. } => "helper_io",
            ClientError::Op { error, .. } => &error.code,
        }
    }
}

/// How long to wait for an answer. Ops that copy a disk can take a while.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(900);

/// How long an installed helper may take to answer a connection again (a restart, an
/// update) before the client gives up; `BANGER_HELPER_WAIT` (seconds) overrides it.
pub const RESTART_WAIT: Duration = Duration::from_secs(5);
/// How often to try again meanwhile.
const RETRY_EVERY: Duration = Duration::from_millis(100);

pub struct Helper {
    cfg: Config,
    local: Option<LocalHandler>,
    wait: Duration,
    answer_timeout: Duration,
}

/// `BANGER_HELPER_WAIT` in seconds (fractions allowed), else [`RESTART_WAIT`].
fn restart_wait() -> Duration {
    std::env::var("BANGER_HELPER_WAIT")
        .ok()
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0 && *s <= 600.0)
        .map_or(RESTART_WAIT, Duration::from_secs_f64)
}

impl Helper {
    pub fn new(cfg: &Config, local: Option<LocalHandler>) -> Helper {
        Helper {
            cfg: cfg.clone(),
            local,
            wait: restart_wait(),
            answer_timeout: ANSWER_TIMEOUT,
        }
    }

    /// Sets how long to wait for the answer (a `ping` needs far less than a disk copy).
    pub fn with_answer_timeout(mut self, t: Duration) -> Helper {
        self.answer_timeout = t;
        self
    }

    /// Sets how long to wait for an installed helper that does not answer yet.
    pub fn with_wait(mut self, wait: Duration) -> Helper {
        self.wait = wait;
        self
    }

    /// Connects to the helper. When the connection is refused (or the socket is missing) and
    /// banger is installed for this caller, the helper is probably restarting: try again for
    /// up to `wait`. Not installed, or not the owner: the answer is known at once.
    fn connect(&self) -> Result<UnixStream, ClientError> {
        let socket = &self.cfg.helper_socket;
        let start = std::time::Instant::now();
        loop {
            let err = match UnixStream::connect(socket) {
                Ok(s) => return Ok(s),
                Err(e) => e,
            };
            let euid = rustix::process::geteuid().as_raw();
            let retry = match self.cfg.install_info() {
                None => false,
                Some(info) => euid == 0 || info.uid == euid,
            };
            // Root with the in-process fallback does not wait for a helper.
            let local = euid == 0 && self.local.is_some();
            if !retry || local || start.elapsed() >= self.wait {
                return Err(self.unreachable(euid, err, start.elapsed()));
            }
            std::thread::sleep(RETRY_EVERY);
        }
    }

    /// Sends one request and returns the `result`, or the error with what to do about it.
    pub fn call(&self, op: &str, args: Value) -> Result<Value, ClientError> {
        crate::timing::span(&format!("helper {op}"), || self.call_timed(op, args))
    }

    fn call_timed(&self, op: &str, args: Value) -> Result<Value, ClientError> {
        let mut req = Request::new(op, args);
        req.timing = crate::timing::collecting();
        let stream = match self.connect() {
            Ok(s) => s,
            Err(e) => {
                if rustix::process::geteuid().is_root() {
                    if let Some(local) = self.local {
                        return self.finish(op, local(&self.cfg, &req));
                    }
                }
                return Err(e);
            }
        };
        let resp = self.exchange(stream, &req)?;
        if let Some(spans) = &resp.timing {
            crate::timing::adopt(spans);
        }
        if let Some(e) = &resp.error {
            if e.code == proto::code::PERMISSION_DENIED {
                let euid = rustix::process::geteuid().as_raw();
                if let Some(info) = self.cfg.install_info() {
                    if info.uid != euid {
                        return Err(ClientError::NotOwner {
                            owner: info.owner,
                            uid: info.uid,
                            you: euid,
                        });
                    }
                }
            }
        }
        self.finish(op, resp)
    }

    fn finish(&self, op: &str, resp: Response) -> Result<Value, ClientError> {
        resp.into_result().map_err(|error| ClientError::Op {
            op: op.into(),
            error,
        })
    }

    fn unreachable(&self, euid: u32, source: std::io::Error, waited: Duration) -> ClientError {
        match self.cfg.install_info() {
            None => ClientError::NotInstalled {
                install: self.cfg.install_path(),
            },
            Some(info) if euid != 0 && info.uid != euid => ClientError::NotOwner {
                owner: info.owner,
                uid: info.uid,
                you: euid,
            },
            Some(_) => ClientError::Unreachable {
                socket: self.cfg.helper_socket.clone(),
                waited_ms: waited.as_millis(),
                source,
            },
        }
    }

    fn exchange(&self, mut stream: UnixStream, req: &Request) -> Result<Response, ClientError> {
        let socket = self.cfg.helper_socket.clone();
        let io = |source| ClientError::Io {
            socket: socket.clone(),
            source,
        };
        let mut line = serde_json::to_vec(req).map_err(|e| io(std::io::Error::other(e)))?;
        line.push(b'\n');
        stream
            .set_write_timeout(Some(Duration::from_secs(10)))
            .map_err(io)?;
        stream
            .set_read_timeout(Some(self.answer_timeout))
            .map_err(io)?;
        let mut answer = String::new();
        match stream.write_all(&line) {
            Ok(()) => {
                BufReader::new(&stream).read_line(&mut answer).map_err(io)?;
            }
            // The helper may answer without reading the request (a refused uid, too many
            // clients) and close: its answer is what the user needs, not "broken pipe".
            Err(e) if matches!(e.kind(), ErrorKind::BrokenPipe | ErrorKind::ConnectionReset) => {
                let _ = BufReader::new(&stream).read_line(&mut answer);
                if answer.is_empty() {
                    return Err(io(e));
                }
            }
            Err(e) => return Err(io(e)),
        }
        if answer.is_empty() {
            return Err(io(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the helper closed the connection without answering",
            )));
        }
        serde_json::from_str(answer.trim_end()).map_err(|_| ClientError::Garbled { answer })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Removes a test's config dir when the test ends, passed or failed.
    struct Cleanup(std::path::PathBuf);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn cfg(tag: &str, install: Option<(&str, u32)>) -> Config {
        let dir = std::env::temp_dir().join(format!("banger-client-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        if let Some((owner, uid)) = install {
            let info = crate::config::InstallInfo {
                owner: owner.into(),
                uid,
                gid: uid,
                version: "x".into(),
                installed_at: "t".into(),
                ..Default::default()
            };
            std::fs::write(dir.join("install.json"), serde_json::to_vec(&info).unwrap()).unwrap();
        }
        Config {
            config_dir: dir.clone(),
            state_dir: dir.join("state"),
            run_dir: dir.join("run"),
            helper_socket: dir.join("nope.sock"),
            root_dir: dir.join("root"),
            jail_dir: dir.join("jail"),
            subnet: "10.200.0.0/24".into(),
            bridge: "banger0".into(),
            firecracker: None,
            jailer: None,
            agent: None,
            boot_args_extra: String::new(),
            console_max_bytes: crate::config::DEFAULT_CONSOLE_MAX_BYTES,
            owner_uid: None,
            owner_gid: None,
            allow_privileged_ports: false,
        }
    }

    fn err() -> std::io::Error {
        std::io::Error::from(std::io::ErrorKind::NotFound)
    }

    #[test]
    fn not_installed_says_install() {
        let c = cfg("none", None);
        let _clean = Cleanup(c.config_dir.clone());
        let h = Helper::new(&c, None);
        let e = h.unreachable(1000, err(), Duration::ZERO);
        assert!(matches!(e, ClientError::NotInstalled { .. }));
        assert!(
            e.to_string().contains("run: sudo banger system install"),
            "{e}"
        );
    }

    #[test]
    fn installed_but_down_says_restart() {
        let c = cfg("down", Some(("alice", 1000)));
        let _clean = Cleanup(c.config_dir.clone());
        let h = Helper::new(&c, None);
        let e = h.unreachable(1000, err(), Duration::ZERO);
        assert!(
            e.to_string().contains("run: sudo banger system restart"),
            "{e}"
        );
        // Root without a local handler gets the same advice.
        let e = h.unreachable(0, err(), Duration::ZERO);
        assert!(e.to_string().contains("restart"), "{e}");
    }

    #[test]
    fn wrong_user_names_the_owner() {
        let c = cfg("other", Some(("alice", 1000)));
        let _clean = Cleanup(c.config_dir.clone());
        let h = Helper::new(&c, None);
        let e = h.unreachable(1001, err(), Duration::ZERO);
        assert!(
            e.to_string().contains("banger is installed for alice"),
            "{e}"
        );
        assert_eq!(e.code(), "permission_denied");
    }

    /// A helper that comes up `after` the client's first try, answers one ping, and exits.
    fn late_helper(sock: PathBuf, after: Duration) -> std::thread::JoinHandle<()> {
        std::thread::spawn(move || {
            std::thread::sleep(after);
            let l = std::os::unix::net::UnixListener::bind(&sock).unwrap();
            let (mut s, _) = l.accept().unwrap();
            let mut line = String::new();
            BufReader::new(&s).read_line(&mut line).unwrap();
            s.write_all(&Response::ok(serde_json::json!({"late": true})).to_line())
                .unwrap();
        })
    }

    #[test]
    fn a_restarting_helper_is_waited_for() {
        let me = rustix::process::geteuid().as_raw();
        let c = cfg("late", Some(("me", me)));
        let _clean = Cleanup(c.config_dir.clone());
        let t = late_helper(c.helper_socket.clone(), Duration::from_millis(300));
        let h = Helper::new(&c, None).with_wait(Duration::from_secs(5));
        let start = std::time::Instant::now();
        let v = h.call("ping", Value::Null).unwrap();
        assert_eq!(v["late"], true);
        assert!(start.elapsed() >= Duration::from_millis(250));
        t.join().unwrap();
    }

    #[test]
    fn a_helper_that_stays_down_is_reported_after_the_wait() {
        let me = rustix::process::geteuid().as_raw();
        let c = cfg("stays-down", Some(("me", me)));
        let _clean = Cleanup(c.config_dir.clone());
        let h = Helper::new(&c, None).with_wait(Duration::from_millis(300));
        let start = std::time::Instant::now();
        let e = h.call("ping", Value::Null).unwrap_err();
        assert!(start.elapsed() >= Duration::from_millis(300), "{e}");
        assert!(matches!(e, ClientError::Unreachable { .. }), "{e}");
        assert!(e.to_string().contains("not running"), "{e}");
    }

    #[test]
    fn not_installed_is_said_at_once() {
        let c = cfg("at-once", None);
        let _clean = Cleanup(c.config_dir.clone());
        let h = Helper::new(&c, None).with_wait(Duration::from_secs(5));
        let start = std::time::Instant::now();
        let e = h.call("ping", Value::Null).unwrap_err();
        assert!(start.elapsed() < Duration::from_secs(1));
        assert!(e.to_string().contains("not installed"), "{e}");
    }

    /// Item 15 of issue 10: a helper that answers without reading the request and closes
    /// (as it does for a refused uid) is understood, not reported as a broken pipe.
    #[test]
    fn an_answer_sent_before_the_request_was_read_is_used() {
        let mut c = cfg("early", None);
        let _clean = Cleanup(c.config_dir.clone());
        c.helper_socket = c.config_dir.join("h.sock");
        let listener = std::os::unix::net::UnixListener::bind(&c.helper_socket).unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let answer = Response::err(proto::code::PERMISSION_DENIED, "uid 1 may not");
            s.write_all(&answer.to_line()).unwrap();
            // Closed with the request unread.
        });
        // A request larger than the socket buffer: the write cannot finish before the close.
        let big = "x".repeat(4 << 20);
        let e = Helper::new(&c, None)
            .call("ping", serde_json::json!({ "pad": big }))
            .unwrap_err();
        server.join().unwrap();
        assert_eq!(e.code(), proto::code::PERMISSION_DENIED, "{e}");
    }

    #[test]
    fn root_falls_back_in_process() {
        fn local(_: &Config, req: &Request) -> Response {
            Response::ok(serde_json::json!({"local": req.op}))
        }
        let c = cfg("local", None);
        let _clean = Cleanup(c.config_dir.clone());
        let h = Helper::new(&c, Some(local));
        if rustix::process::geteuid().is_root() {
            let v = h.call("ping", Value::Null).unwrap();
            assert_eq!(v["local"], "ping");
        } else {
            assert!(matches!(
                h.call("ping", Value::Null),
                Err(ClientError::NotInstalled { .. })
            ));
        }
    }
}
