//! The agent's wire protocol: JSON lines over one stream connection.
//!
//! A connection carries one request. The host writes the request line
//! (`{"op": "hello"}`, `{"op": "exec", "argv": [...]}`, ...) and the agent answers with a
//! [`Reply`] line: `{"ok": true, "result": {...}}` or
//! `{"ok": false, "error": {"code": "...", "message": "..."}}`. The streaming requests then
//! go on with [`Frame`] lines, one JSON object with one key each:
//!
//! - `exec`: the host sends `{"in": B64}` (stdin), `{"eof": N}` (stdin closed after N bytes),
//!   `{"signal": 15}` and, with a TTY, `{"resize": {"rows": R, "cols": C}}`; the agent sends
//!   `{"out": B64}` and `{"err": B64}` as the command writes, and last
//!   `{"exit": {"code": 3}}` (or `{"exit": {"signal": 9}}`).
//! - `put`: after the first reply the host sends `{"data": B64}` frames and `{"eof": N}`;
//!   the agent answers a second reply once the file is in place.
//! - `get`: the first reply carries size, mode and owner; `{"data": B64}` frames follow, then
//!   `{"eof": N}` (or `{"error": {...}}`).
//!
//! Everything is bounded: a request line by [`MAX_REQUEST`], a frame by [`MAX_FRAME`], a file
//! by [`MAX_FILE`]; a request must arrive within [`REQUEST_TIMEOUT`] and a transfer may pause
//! for at most [`IDLE_TIMEOUT`]. Bad input gets an error line, never a crash.

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

/// The protocol's version, in `hello`.
pub const PROTOCOL: u32 = 1;
/// The guest's vsock port. Below 1024, so only root in the guest can listen on it.
pub const PORT: u32 = 1023;
/// The CID host-initiated connections come from (Firecracker's host side).
pub const HOST_CID: u32 = 2;
/// The largest request line, newline included.
pub const MAX_REQUEST: usize = 64 * 1024;
/// The largest frame line after the request.
pub const MAX_FRAME: usize = 1024 * 1024;
/// Bytes of payload per data frame (its base64 is a third larger).
pub const CHUNK: usize = 64 * 1024;
/// The largest file `put` or `get` moves.
pub const MAX_FILE: u64 = 16 << 30;
/// The longest path the agent accepts.
pub const MAX_PATH: usize = 4096;
/// Connections served at once; more get a `busy` error.
pub const MAX_CONNECTIONS: usize = 32;
/// How long the request line may take to arrive.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a file transfer may pause.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// The longest `timeout_ms` an exec may ask for (a week).
pub const MAX_EXEC_TIMEOUT_MS: u64 = 7 * 24 * 3600 * 1000;
/// Entropy bytes an `identity` request may carry.
pub const MAX_ENTROPY: usize = 4096;

/// Error codes. Stable: scripts may match on them.
pub mod code {
    pub const BAD_REQUEST: &str = "bad_request";
    pub const TOO_LARGE: &str = "too_large";
    pub const TIMEOUT: &str = "timeout";
    pub const UNKNOWN_OP: &str = "unknown_op";
    pub const INVALID_ARGS: &str = "invalid_args";
    pub const NOT_FOUND: &str = "not_found";
    pub const PERMISSION_DENIED: &str = "permission_denied";
    pub const BUSY: &str = "busy";
    pub const FAILED: &str = "failed";
}

/// The operations, as named in `op`.
pub const OPS: &[&str] = &["hello", "exec", "put", "get", "identity", "shutdown"];

/// One request (the first line of a connection).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum Request {
    /// Who is there: version, boot id, uptime, hostname.
    Hello(Hello),
    Exec(Exec),
    Put(Put),
    Get(Get),
    Identity(Identity),
    Shutdown(Shutdown),
}

/// `hello` takes no arguments.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hello {}

/// Terminal size, in character cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Winsize {
    pub rows: u16,
    pub cols: u16,
}

/// Run a command. Its environment is a clean root login's (`PATH`, `HOME`, `USER`,
/// `LOGNAME`, `SHELL`, `TERM`) plus `env`; it runs in its own session and process group.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Exec {
    pub argv: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Default: `/root` when it exists, else `/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    /// The host streams stdin (`in` frames); else the command's stdin is empty.
    #[serde(default)]
    pub stdin: bool,
    /// Run on a pseudo-terminal of this size (stdout and stderr merged into `out`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tty: Option<Winsize>,
    /// Kill the command's process group after this long.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
}

/// Write a file atomically: a temporary file beside it, then a rename.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Put {
    /// Absolute; when it names a directory, `name` is the file's name in it.
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The size the host will send, when it knows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// Default 0644.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<u32>,
    /// Default root (0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gid: Option<u32>,
}

/// Read a regular file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Get {
    pub path: String,
}

/// The guest network, as banger allocates it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Net {
    pub ip: std::net::Ipv4Addr,
    pub prefix: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<std::net::Ipv4Addr>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns: Vec<std::net::IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// The interface (default `eth0`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dev: Option<String>,
}

/// One SSH host key pair.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostKey {
    /// `ed25519`, `ecdsa` or `rsa`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The OpenSSH private key file's content.
    pub private: String,
    /// The public key line.
    pub public: String,
}

/// A new identity for the guest, applied in this order: the RNG is reseeded with `entropy`
/// first, then the hostname, root's authorized keys, the SSH host keys (every other host
/// key is removed) and the network. A guest restored from a snapshot gets its own identity
/// this way before anything else runs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Identity {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entropy: Option<B64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorized_keys: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_keys: Option<Vec<HostKey>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub net: Option<Net>,
}

/// Shut the guest down: like Ctrl-Alt-Del (SIGINT to PID 1), or at once (`force`: sync,
/// then reboot, which ends a Firecracker VM).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Shutdown {
    #[serde(default)]
    pub force: bool,
}

/// An error the agent answers with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub code: String,
    pub message: String,
}

impl ErrorBody {
    pub fn new(code: &str, message: impl Into<String>) -> ErrorBody {
        ErrorBody {
            code: code.into(),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for ErrorBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.code)
    }
}

impl std::error::Error for ErrorBody {}

/// The answer to a request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
}

impl Reply {
    pub fn ok(result: impl Serialize) -> Reply {
        Reply {
            ok: true,
            result: Some(serde_json::to_value(result).unwrap_or(Value::Null)),
            error: None,
        }
    }
    pub fn err(e: ErrorBody) -> Reply {
        Reply {
            ok: false,
            result: None,
            error: Some(e),
        }
    }
}

/// `hello`'s answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HelloInfo {
    pub agent: String,
    pub version: String,
    pub protocol: u32,
    /// `/proc/sys/kernel/random/boot_id` (null before /proc is mounted).
    pub boot_id: Option<String>,
    /// Seconds since boot (CLOCK_BOOTTIME).
    pub uptime_s: f64,
    pub hostname: String,
    /// The kernel release (`uname -r`).
    pub kernel: String,
    pub pid: u32,
}

/// `exec`'s first answer: the command runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Started {
    pub pid: u32,
}

/// How a command ended.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ExitInfo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    /// Killed because `timeout_ms` passed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub timed_out: bool,
    /// Killed because the stream broke (a bad frame).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
}

impl ExitInfo {
    /// The exit status a shell would report: the code, or 128 + the signal.
    pub fn status(&self) -> i32 {
        match (self.code, self.signal) {
            (Some(c), _) => c,
            (None, Some(s)) => 128 + s,
            (None, None) => 255,
        }
    }
}

/// `put`'s answers: where the file goes (first), then what was written (last).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PutInfo {
    pub path: String,
    #[serde(default)]
    pub size: u64,
}

/// `get`'s first answer: the file's metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileInfo {
    pub path: String,
    pub size: u64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: i64,
}

/// `identity`'s answer: the parts applied, in order, and how long each took (ms).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct IdentityDone {
    pub done: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ms: BTreeMap<String, u64>,
}

/// A frame after the request: one key per line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Frame {
    In(B64),
    Out(B64),
    Err(B64),
    Data(B64),
    /// The end of a byte stream, with the number of bytes it carried.
    Eof(u64),
    Signal(i32),
    Resize(Winsize),
    Exit(ExitInfo),
    Error(ErrorBody),
}

impl Frame {
    /// The frame's name, for messages.
    pub fn name(&self) -> &'static str {
        match self {
            Frame::In(_) => "in",
            Frame::Out(_) => "out",
            Frame::Err(_) => "err",
            Frame::Data(_) => "data",
            Frame::Eof(_) => "eof",
            Frame::Signal(_) => "signal",
            Frame::Resize(_) => "resize",
            Frame::Exit(_) => "exit",
            Frame::Error(_) => "error",
        }
    }
}

/// Bytes, carried as a base64 string.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct B64(pub Vec<u8>);

impl std::fmt::Debug for B64 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "B64({} bytes)", self.0.len())
    }
}

impl Serialize for B64 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&crate::b64::encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for B64 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<B64, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = B64;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a base64 string")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<B64, E> {
                crate::b64::decode(s).map(B64).map_err(E::custom)
            }
        }
        d.deserialize_str(V)
    }
}

/// One JSON line (`\n` appended).
pub fn line(msg: &impl Serialize) -> Vec<u8> {
    let mut v = serde_json::to_vec(msg).unwrap_or_else(|_| b"{}".to_vec());
    v.push(b'\n');
    v
}

/// Parses a request line: not JSON or not an object is `bad_request`, an op the agent does
/// not know `unknown_op`, wrong or unknown fields `invalid_args`.
pub fn parse_request(line: &[u8]) -> Result<Request, ErrorBody> {
    let v: Value = serde_json::from_slice(line).map_err(|e| {
        ErrorBody::new(
            code::BAD_REQUEST,
            format!("the request is not a JSON line: {e}"),
        )
    })?;
    let op = match v.as_object().map(|o| o.get("op")) {
        None => {
            return Err(ErrorBody::new(
                code::BAD_REQUEST,
                "the request is not a JSON object",
            ))
        }
        Some(None) => {
            return Err(ErrorBody::new(
                code::BAD_REQUEST,
                "the request has no \"op\"",
            ))
        }
        Some(Some(op)) => op.as_str().unwrap_or("").to_string(),
    };
    if !OPS.contains(&op.as_str()) {
        return Err(ErrorBody::new(
            code::UNKNOWN_OP,
            format!("unknown op {op:?} (the agent knows {})", OPS.join(", ")),
        ));
    }
    serde_json::from_value(v).map_err(|e| ErrorBody::new(code::INVALID_ARGS, format!("{op}: {e}")))
}

/// Parses a frame line.
pub fn parse_frame(line: &[u8]) -> Result<Frame, ErrorBody> {
    serde_json::from_slice(line)
        .map_err(|e| ErrorBody::new(code::BAD_REQUEST, format!("not a frame: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn req(v: Value) -> Result<Request, ErrorBody> {
        parse_request(v.to_string().as_bytes())
    }

    #[test]
    fn requests_parse() {
        assert_eq!(req(json!({"op": "hello"})), Ok(Request::Hello(Hello {})));
        let e = req(json!({"op": "exec", "argv": ["uname", "-r"], "stdin": true})).unwrap();
        assert_eq!(
            e,
            Request::Exec(Exec {
                argv: vec!["uname".into(), "-r".into()],
                stdin: true,
                ..Default::default()
            })
        );
        let p = req(json!({"op": "put", "path": "/x", "size": 3, "mode": 0o600})).unwrap();
        assert!(matches!(
            p,
            Request::Put(Put {
                size: Some(3),
                mode: Some(0o600),
                ..
            })
        ));
        let i = req(
            json!({"op": "identity", "hostname": "t2", "entropy": "AAEC",
            "net": {"ip": "10.200.0.6", "prefix": 24}}),
        )
        .unwrap();
        let Request::Identity(i) = i else { panic!() };
        assert_eq!(i.entropy, Some(B64(vec![0, 1, 2])));
        assert_eq!(i.net.unwrap().prefix, 24);
    }

    #[test]
    fn every_request_error_has_its_code() {
        let code_of = |s: &[u8]| parse_request(s).unwrap_err().code;
        assert_eq!(code_of(b"not json"), code::BAD_REQUEST);
        assert_eq!(code_of(b"[1,2]"), code::BAD_REQUEST);
        assert_eq!(code_of(b"{\"argv\": []}"), code::BAD_REQUEST);
        assert_eq!(code_of(b"{\"op\": \"rm-rf\"}"), code::UNKNOWN_OP);
        assert_eq!(code_of(b"{\"op\": 7}"), code::UNKNOWN_OP);
        assert_eq!(code_of(b"{\"op\": \"exec\"}"), code::INVALID_ARGS);
        assert_eq!(
            code_of(b"{\"op\": \"exec\", \"argv\": [\"a\"], \"shell\": true}"),
            code::INVALID_ARGS
        );
        assert_eq!(
            code_of(b"{\"op\": \"hello\", \"extra\": 1}"),
            code::INVALID_ARGS
        );
        assert_eq!(
            code_of(b"{\"op\": \"identity\", \"entropy\": \"!!\"}"),
            code::INVALID_ARGS
        );
        assert_eq!(
            code_of(b"{\"op\": \"identity\", \"net\": {\"ip\": \"x\", \"prefix\": 1}}"),
            code::INVALID_ARGS
        );
    }

    #[test]
    fn frames_are_one_key_objects() {
        let f = Frame::Out(B64(b"hi\n".to_vec()));
        assert_eq!(line(&f), b"{\"out\":\"aGkK\"}\n");
        assert_eq!(parse_frame(b"{\"eof\":12}"), Ok(Frame::Eof(12)));
        assert_eq!(
            parse_frame(b"{\"exit\":{\"code\":3}}"),
            Ok(Frame::Exit(ExitInfo {
                code: Some(3),
                ..Default::default()
            }))
        );
        assert_eq!(
            line(&Frame::Resize(Winsize { rows: 2, cols: 3 })),
            b"{\"resize\":{\"rows\":2,\"cols\":3}}\n"
        );
        for bad in [
            &b"{}"[..],
            b"{\"in\":\"x\"}",
            b"{\"in\":1}",
            b"{\"in\":\"AA==\",\"out\":\"AA==\"}",
            b"{\"nope\":1}",
            b"\"in\"",
        ] {
            assert_eq!(
                parse_frame(bad).unwrap_err().code,
                code::BAD_REQUEST,
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn exit_status_like_a_shell() {
        let e = |code, signal| ExitInfo {
            code,
            signal,
            ..Default::default()
        };
        assert_eq!(e(Some(3), None).status(), 3);
        assert_eq!(e(None, Some(9)).status(), 137);
        assert_eq!(e(None, None).status(), 255);
    }

    #[test]
    fn replies() {
        let r = Reply::err(ErrorBody::new(code::BUSY, "too many"));
        assert_eq!(
            String::from_utf8(line(&r)).unwrap(),
            "{\"ok\":false,\"error\":{\"code\":\"busy\",\"message\":\"too many\"}}\n"
        );
        let r = Reply::ok(Started { pid: 7 });
        assert_eq!(
            String::from_utf8(line(&r)).unwrap(),
            "{\"ok\":true,\"result\":{\"pid\":7}}\n"
        );
    }
}
