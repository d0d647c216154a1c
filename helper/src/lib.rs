//! banger-helper: the root helper daemon and the privileged operations.
//!
//! Everything that needs root lives here and nowhere else: the socket server
//! ([`server`]), the closed set of typed operations ([`ops`]), their validation
//! ([`validate`]) and the ledger of every privileged resource created ([`ledger`]).
//! The step binaries call [`local`] in process when they run as root and no helper
//! answers, so the same code and the same validation run either way.

pub mod cred;
pub mod jail;
pub mod ledger;
pub mod net;
pub mod notify;
pub mod ops;
pub mod server;
pub mod snap;
pub mod validate;

use banger::config::Config;
use banger::proto::{Request, Response};

/// Runs one request in this process, as root (the client's fallback).
pub fn local(cfg: &Config, req: &Request) -> Response {
    let ctx = ops::Ctx::new(cfg.clone());
    let caller = ops::Caller {
        uid: rustix::process::geteuid().as_raw(),
        gid: rustix::process::getegid().as_raw(),
        pid: std::process::id() as i32,
    };
    ops::dispatch(&ctx, &caller, req)
}
