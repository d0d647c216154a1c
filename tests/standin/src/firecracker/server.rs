//! TEST STAND-IN, not Firecracker: the API server loop. One thread per connection (so a client
//! holding a keep-alive connection blocks nobody), one lock around the state machine (calls are
//! handled one at a time, as by Firecracker's single VMM thread), and one JSON line recorded per
//! answered request.

use std::fs::OpenOptions;
use std::io::{BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::{json, Value};

use super::logger;
use super::router::route;
use super::vmm::{Data, Exit, Vmm};
use crate::http::{self, ReadError, Request, Response};

/// What every connection thread shares.
pub struct Shared {
    pub vmm: Mutex<Vmm>,
    /// Where request lines are appended.
    pub record_path: PathBuf,
    pub max_payload: usize,
}

static EXITING: AtomicBool = AtomicBool::new(false);

/// Exits the process shortly, after the current answer is written.
pub fn schedule_exit(exit: Exit) {
    if EXITING.swap(true, Ordering::SeqCst) {
        return;
    }
    let run = move || {
        std::thread::sleep(Duration::from_millis(50));
        finish(exit)
    };
    if std::thread::Builder::new()
        .name("fc_vmm".into())
        .spawn(run)
        .is_err()
    {
        finish(exit);
    }
}

/// Logs like Firecracker on its way out and exits.
pub fn finish(exit: Exit) -> ! {
    logger::info(&format!("Vmm is stopping: {}.", exit.reason));
    if exit.code == 0 {
        logger::info("Firecracker exiting successfully. exit_code=0");
    } else {
        eprintln!("Error: {}", exit.reason);
        logger::error(&format!(
            "Firecracker exiting with error. exit_code={}",
            exit.code
        ));
    }
    std::process::exit(i32::from(exit.code))
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Vmm> {
        self.vmm.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends one request line; failures are logged, never fatal.
    fn record(&self, method: &str, path: &str, body: Option<&[u8]>, status: u16) {
        let mut line =
            json!({ "method": method, "path": path, "body": Value::Null, "status": status });
        if let Some(b) = body {
            match serde_json::from_slice::<Value>(b) {
                Ok(v) => line["body"] = v,
                Err(_) => line["raw_body"] = Value::String(String::from_utf8_lossy(b).into_owned()),
            }
        }
        let res = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.record_path)
            .and_then(|mut f| writeln!(f, "{line}").and_then(|()| f.flush()));
        if let Err(e) = res {
            logger::error(&format!(
                "stand-in: cannot record the request in {}: {e}",
                self.record_path.display()
            ));
        }
    }

    /// Answers one request: route, run, log, record. With the answer comes the exit it
    /// causes (a guest that shut down), for the caller to carry out once it wrote the answer.
    pub fn answer(&self, req: &Request) -> (Response, Option<Exit>) {
        let body = req.body.as_deref();
        let method = title_case(&req.method);
        let described = match body {
            Some(b) => format!(
                "{method} request on {:?} with body {:?}",
                req.path,
                String::from_utf8_lossy(b)
            ),
            None => format!("{method} request on {:?}", req.path),
        };
        logger::info(&format!("The API server received a {described}."));
        let mut vmm = self.lock();
        let (result, exit) = match route(&req.method, &req.path, body) {
            Ok(call) => vmm.handle(call),
            Err(refusal) => (Err(refusal), None),
        };
        let resp = match result {
            Ok(Data::Empty) => {
                logger::info("The request was executed successfully. Status code: 204 No Content.");
                Response::no_content()
            }
            Ok(Data::Json(v)) => {
                logger::info("The request was executed successfully. Status code: 200 OK.");
                Response::json(200, v.to_string())
            }
            Err((status, msg)) => {
                logger::error(&format!(
                    "Received Error. Status code: {status} {}. Message: {msg}",
                    http::reason(status)
                ));
                Response::fault(status, &msg)
            }
        };
        self.record(&req.method, &req.path, body, resp.status);
        drop(vmm);
        (resp, exit)
    }
}

/// `PUT` -> `Put`, as Firecracker's log shows methods.
fn title_case(m: &str) -> String {
    let lower = m.to_ascii_lowercase();
    let mut c = lower.chars();
    match c.next() {
        Some(f) => f.to_ascii_uppercase().to_string() + c.as_str(),
        None => String::new(),
    }
}

fn serve_connection(stream: UnixStream, shared: &Shared) {
    let Ok(read_half) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(read_half);
    let mut writer = stream;
    loop {
        let mut exit = None;
        let (resp, close) = match http::read_request(&mut reader, &mut writer, shared.max_payload) {
            Ok(req) => {
                let (resp, e) = shared.answer(&req);
                exit = e;
                (resp, req.wants_close())
            }
            Err(ReadError::Closed) | Err(ReadError::Io(_)) => return,
            Err(ReadError::Bad(msg)) => {
                logger::error(&format!(
                    "API Server error on retrieving incoming request: {msg}"
                ));
                shared.record("?", "?", None, 400);
                (Response::fault(400, &msg), true)
            }
            Err(ReadError::TooLarge { size, limit }) => {
                let msg = format!(
                    "Request payload with size {size} is larger than the limit of {limit} \
                     allowed by server."
                );
                shared.record("?", "?", None, 413);
                (Response::fault(413, &msg), true)
            }
        };
        let written = http::write_response(&mut writer, &resp, close);
        // Like Firecracker, whose VMM stops the moment the guest resets: once the answer
        // is out, not after a pause.
        if let Some(exit) = exit {
            if !EXITING.swap(true, Ordering::SeqCst) {
                finish(exit);
            }
        }
        if written.is_err() || close {
            return;
        }
    }
}

/// Accepts connections forever.
pub fn serve(listener: UnixListener, shared: Arc<Shared>) {
    for conn in listener.incoming() {
        match conn {
            Ok(stream) => {
                let shared = Arc::clone(&shared);
                let spawned = std::thread::Builder::new()
                    .name("fc_api".into())
                    .spawn(move || serve_connection(stream, &shared));
                if let Err(e) = spawned {
                    logger::error(&format!("API server cannot start a connection thread: {e}"));
                }
            }
            Err(e) => logger::error(&format!("API Server error on accepting a connection: {e}")),
        }
    }
}
