//! The root helper's client, with the in-process fallback for root.
//!
//! A step calls [`Helper::call`]. When the helper's socket answers, the request goes there.
//! When it does not and the caller is root, the same operation runs in this process through
//! the local handler the binary registered (the helper crate's dispatcher: same code, same
//! validation). Otherwise the error says what to run.

use crate::config::Config;
use crate::proto::{self, OpError, Request, Response};
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

/// Runs a request in process (the helper's dispatcher). Registered by the binaries.
pub type LocalHandler = fn(&Config, &Request) -> Response;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("banger's root helper is not installed (no {install}): run: sudo banger system install --owner $USER")]
    NotInstalled { install: PathBuf },
    #[error("banger's root helper does not answer on {socket}: run: sudo banger system restart")]
    Unreachable {
        socket: PathBuf,
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

pub struct Helper {
    cfg: Config,
    local: Option<LocalHandler>,
}

impl Helper {
    pub fn new(cfg: &Config, local: Option<LocalHandler>) -> Helper {
        Helper {
            cfg: cfg.clone(),
            local,
        }
    }

    /// Sends one request and returns the `result`, or the error with what to do about it.
    pub fn call(&self, op: &str, args: Value) -> Result<Value, ClientError> {
        let req = Request::new(op, args);
        let socket = &self.cfg.helper_socket;
        let stream = match UnixStream::connect(socket) {
            Ok(s) => s,
            Err(connect_err) => {
                let euid = rustix::process::geteuid().as_raw();
                if euid == 0 {
                    if let Some(local) = self.local {
                        return self.finish(op, local(&self.cfg, &req));
                    }
                }
                return Err(self.unreachable(euid, connect_err));
            }
        };
        let resp = self.exchange(stream, &req)?;
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

    fn unreachable(&self, euid: u32, source: std::io::Error) -> ClientError {
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
        stream.set_read_timeout(Some(ANSWER_TIMEOUT)).map_err(io)?;
        stream.write_all(&line).map_err(io)?;
        let mut answer = String::new();
        BufReader::new(&stream).read_line(&mut answer).map_err(io)?;
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
        let e = h.unreachable(1000, err());
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
        let e = h.unreachable(1000, err());
        assert!(
            e.to_string().contains("run: sudo banger system restart"),
            "{e}"
        );
        // Root without a local handler gets the same advice.
        let e = h.unreachable(0, err());
        assert!(e.to_string().contains("restart"), "{e}");
    }

    #[test]
    fn wrong_user_names_the_owner() {
        let c = cfg("other", Some(("alice", 1000)));
        let _clean = Cleanup(c.config_dir.clone());
        let h = Helper::new(&c, None);
        let e = h.unreachable(1001, err());
        assert!(
            e.to_string().contains("banger is installed for alice"),
            "{e}"
        );
        assert_eq!(e.code(), "permission_denied");
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
