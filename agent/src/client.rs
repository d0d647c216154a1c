//! The host's side of the protocol, on any connected stream (the VM's hybrid vsock socket
//! once `CONNECT` is answered, or one end of a socket pair in tests).

use crate::conn::{send, Conn, LineError, LineReader};
use crate::proto::{
    self, ErrorBody, ExitInfo, FileInfo, Frame, HelloInfo, IdentityDone, PutInfo, Reply, Request,
    Started, B64, CHUNK, MAX_FRAME, MAX_REQUEST,
};
use serde::de::DeserializeOwned;
use std::io::{self, Read, Write};
use std::sync::{Arc, Mutex};

#[derive(Debug)]
pub enum ClientError {
    /// Writing to or reading from the connection failed.
    Io(io::Error),
    /// A line could not be read (too long, timed out, cut off).
    Line(LineError),
    /// The agent closed the connection before answering.
    Closed,
    /// The agent answered something the protocol does not allow here.
    Protocol(String),
    /// The agent refused or failed the request.
    Agent(ErrorBody),
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::Io(e) => write!(f, "the connection to the agent failed: {e}"),
            ClientError::Line(e) => write!(f, "reading the agent's answer: {e}"),
            ClientError::Closed => f.write_str("the agent closed the connection without an answer"),
            ClientError::Protocol(m) => write!(f, "the agent's answer breaks the protocol: {m}"),
            ClientError::Agent(e) => write!(f, "the agent answered: {e}"),
        }
    }
}

impl std::error::Error for ClientError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ClientError::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl ClientError {
    /// The agent's error code, when the agent answered with one.
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Agent(e) => Some(&e.code),
            _ => None,
        }
    }
}

impl From<io::Error> for ClientError {
    fn from(e: io::Error) -> ClientError {
        ClientError::Io(e)
    }
}

/// Sends frames on a connection; cloneable, so a stdin thread and a resize watcher share it.
#[derive(Clone)]
pub struct Sender(Arc<Mutex<Conn>>);

impl Sender {
    pub fn send(&self, f: &Frame) -> io::Result<()> {
        let mut c = self.0.lock().unwrap_or_else(|p| p.into_inner());
        send(&mut *c, f)
    }
}

/// One request's connection.
pub struct Client {
    rd: LineReader<Conn>,
    w: Sender,
}

fn typed<T: DeserializeOwned>(v: serde_json::Value, what: &str) -> Result<T, ClientError> {
    serde_json::from_value(v)
        .map_err(|e| ClientError::Protocol(format!("{what}: unexpected result: {e}")))
}

impl Client {
    pub fn new(conn: Conn) -> io::Result<Client> {
        let w = conn.try_clone()?;
        Ok(Client {
            rd: LineReader::new(conn),
            w: Sender(Arc::new(Mutex::new(w))),
        })
    }

    fn line(&mut self, max: usize) -> Result<Vec<u8>, ClientError> {
        match self.rd.read_line(max) {
            Ok(Some(l)) => Ok(l),
            Ok(None) => Err(ClientError::Closed),
            Err(e) => Err(ClientError::Line(e)),
        }
    }

    /// Reads a reply line; an error reply becomes [`ClientError::Agent`].
    fn reply(&mut self) -> Result<serde_json::Value, ClientError> {
        let l = self.line(MAX_REQUEST.max(MAX_FRAME))?;
        let r: Reply = serde_json::from_slice(&l).map_err(|e| {
            ClientError::Protocol(format!(
                "not a reply ({e}): {}",
                String::from_utf8_lossy(&l[..l.len().min(200)])
            ))
        })?;
        match (r.ok, r.error) {
            (true, _) => Ok(r.result.unwrap_or(serde_json::Value::Null)),
            (false, Some(e)) => Err(ClientError::Agent(e)),
            (false, None) => Err(ClientError::Protocol(
                "an error reply without an error".into(),
            )),
        }
    }

    fn frame(&mut self) -> Result<Frame, ClientError> {
        let l = self.line(MAX_FRAME)?;
        proto::parse_frame(&l).map_err(|e| ClientError::Protocol(e.message))
    }

    /// Sends the request and reads the first reply.
    fn request(&mut self, req: &Request) -> Result<serde_json::Value, ClientError> {
        self.w.send_request(req)?;
        self.reply()
    }

    /// `hello`.
    pub fn hello(mut self) -> Result<HelloInfo, ClientError> {
        let v = self.request(&Request::Hello(proto::Hello {}))?;
        typed(v, "hello")
    }

    /// `identity`.
    pub fn identity(mut self, id: proto::Identity) -> Result<IdentityDone, ClientError> {
        let v = self.request(&Request::Identity(id))?;
        typed(v, "identity")
    }

    /// `shutdown`: the agent answers before it acts.
    pub fn shutdown(mut self, force: bool) -> Result<(), ClientError> {
        self.request(&Request::Shutdown(proto::Shutdown { force }))?;
        Ok(())
    }

    /// Starts `exec`: the command runs once this returns.
    pub fn exec(mut self, req: proto::Exec) -> Result<Session, ClientError> {
        let v = self.request(&Request::Exec(req))?;
        let started: Started = typed(v, "exec")?;
        Ok(Session {
            client: self,
            pid: started.pid,
        })
    }

    /// `put`: streams `src` into the file; returns where it went and its size.
    pub fn put(mut self, req: proto::Put, src: &mut dyn Read) -> Result<PutInfo, ClientError> {
        let v = self.request(&Request::Put(req))?;
        let _first: PutInfo = typed(v, "put")?;
        let mut buf = vec![0u8; CHUNK];
        let mut total = 0u64;
        let sent = (|| -> io::Result<()> {
            loop {
                let n = match src.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        return Err(io::Error::new(e.kind(), format!("reading the source: {e}")))
                    }
                };
                total += n as u64;
                self.w.send(&Frame::Data(B64(buf[..n].to_vec())))?;
            }
            self.w.send(&Frame::Eof(total))
        })();
        // The agent may have refused half way (and closed): its answer says why.
        let answer = self.reply();
        match (sent, answer) {
            (_, Ok(v)) => typed(v, "put"),
            (_, Err(e @ ClientError::Agent(_))) => Err(e),
            (Err(e), _) => Err(ClientError::Io(e)),
            (Ok(()), Err(e)) => Err(e),
        }
    }

    /// `get`: the file's metadata and a reader of its bytes (which checks the byte count at
    /// the end).
    pub fn get(mut self, path: &str) -> Result<(FileInfo, GetReader), ClientError> {
        let v = self.request(&Request::Get(proto::Get { path: path.into() }))?;
        let info: FileInfo = typed(v, "get")?;
        Ok((
            info,
            GetReader {
                client: self,
                pending: Vec::new(),
                pos: 0,
                total: 0,
                done: false,
            },
        ))
    }
}

impl Sender {
    fn send_request(&self, req: &Request) -> io::Result<()> {
        let mut c = self.0.lock().unwrap_or_else(|p| p.into_inner());
        send(&mut *c, req)
    }
}

/// A running `exec`.
pub struct Session {
    client: Client,
    pub pid: u32,
}

impl Session {
    /// A sender for `signal` and `resize` frames from other threads.
    pub fn sender(&self) -> Sender {
        self.client.w.clone()
    }

    /// Streams `stdin` (when given) to the command from a thread of its own, and its output
    /// to `out` and `err` as it comes; returns how it ended. A failed write to `out` or `err`
    /// (a closed pipe) ends the session: the agent then kills the command.
    pub fn run(
        mut self,
        stdin: Option<Box<dyn Read + Send>>,
        out: &mut dyn Write,
        err: &mut dyn Write,
    ) -> Result<ExitInfo, ClientError> {
        if let Some(mut input) = stdin {
            let w = self.client.w.clone();
            std::thread::spawn(move || {
                let mut buf = vec![0u8; CHUNK];
                let mut total = 0u64;
                loop {
                    match input.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => {
                            total += n as u64;
                            if w.send(&Frame::In(B64(buf[..n].to_vec()))).is_err() {
                                return;
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(_) => break,
                    }
                }
                let _ = w.send(&Frame::Eof(total));
            });
        }
        loop {
            match self.client.frame()? {
                Frame::Out(b) => {
                    out.write_all(&b.0)?;
                    out.flush()?;
                }
                Frame::Err(b) => {
                    err.write_all(&b.0)?;
                    err.flush()?;
                }
                Frame::Exit(e) => return Ok(e),
                Frame::Error(e) => return Err(ClientError::Agent(e)),
                f => {
                    return Err(ClientError::Protocol(format!(
                        "a {:?} frame during exec",
                        f.name()
                    )))
                }
            }
        }
    }
}

/// The bytes of a `get`, as they arrive.
pub struct GetReader {
    client: Client,
    pending: Vec<u8>,
    pos: usize,
    total: u64,
    done: bool,
}

fn invalid(m: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, m)
}

impl Read for GetReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos >= self.pending.len() {
            if self.done {
                return Ok(0);
            }
            let f = self
                .client
                .frame()
                .map_err(|e| io::Error::other(e.to_string()))?;
            match f {
                Frame::Data(b) => {
                    self.total += b.0.len() as u64;
                    self.pending = b.0;
                    self.pos = 0;
                }
                Frame::Eof(n) if n == self.total => self.done = true,
                Frame::Eof(n) => {
                    return Err(invalid(format!(
                        "the agent says it sent {n} bytes, {} arrived",
                        self.total
                    )))
                }
                Frame::Error(e) => return Err(io::Error::other(e.to_string())),
                f => return Err(invalid(format!("a {:?} frame during get", f.name()))),
            }
        }
        let n = buf.len().min(self.pending.len() - self.pos);
        buf[..n].copy_from_slice(&self.pending[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}
