//! The closed set of typed operations. Each family lives in its own module and answers
//! `None` for an op it does not know; anything no module knows is `unknown_op`.

mod core;
pub mod jail;
pub mod net;
pub mod snap;

use crate::ledger::Ledger;
use banger::config::Config;
use banger::proto::{code, OpError, Request, Response};
use serde_json::Value;

/// What every op may use.
pub struct Ctx {
    pub cfg: Config,
    pub ledger: Ledger,
}

impl Ctx {
    pub fn new(cfg: Config) -> Ctx {
        let ledger = Ledger::new(cfg.ledger_path());
        Ctx { cfg, ledger }
    }
}

/// Who sent the request (from `SO_PEERCRED`, or this process for the fallback).
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    pub uid: u32,
    pub gid: u32,
    pub pid: i32,
}

/// The result of an op.
pub type OpResult = Result<Value, OpError>;

/// Runs one request.
pub fn dispatch(ctx: &Ctx, caller: &Caller, req: &Request) -> Response {
    let op = req.op.as_str();
    let found = core::dispatch(op, ctx, caller, &req.args)
        .or_else(|| net::dispatch(op, ctx, caller, &req.args))
        .or_else(|| snap::dispatch(op, ctx, caller, &req.args))
        .or_else(|| jail::dispatch(op, ctx, caller, &req.args));
    Response::from_result(found.unwrap_or_else(|| {
        Err(OpError::new(
            code::UNKNOWN_OP,
            format!("unknown op {op:?} (banger-helper {})", banger::VERSION),
        ))
    }))
}

/// Maps a ledger failure to an op error.
pub fn ledger_err(e: crate::ledger::LedgerError) -> OpError {
    OpError::new(code::FAILED, banger::cli::one_line(&e))
}
