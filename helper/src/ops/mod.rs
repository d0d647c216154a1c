//! The closed set of typed operations. Each family lives in its own module and answers
//! `None` for an op it does not know; anything no module knows is `unknown_op`.

mod core;
pub mod jail;
pub mod net;
pub mod reconcile;
pub mod snap;

use crate::ledger::Ledger;
use banger::config::Config;
use banger::detach::Creds;
use banger::fsx::Dir;
use banger::proto::{code, OpError, Request, Response};
use serde_json::Value;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};

/// What every op may use.
#[derive(Clone)]
pub struct Ctx {
    pub cfg: Config,
    /// The ledger, stamping the caller's uid into what it adds.
    pub ledger: Ledger,
    /// The owner's credentials: file work in the owner's state dir runs with them
    /// ([`crate::cred::as_owner`]). None when no owner is configured (root alone uses banger).
    pub owner: Option<Creds>,
    /// Who sent the request being served.
    pub caller: Caller,
}

impl Ctx {
    pub fn new(cfg: Config) -> Ctx {
        let ledger = Ledger::new(cfg.ledger_path());
        let owner = cfg
            .owner_uid
            .filter(|u| *u != 0)
            .map(|u| Creds::of_user(u, cfg.owner_gid.unwrap_or(u)));
        Ctx {
            cfg,
            ledger,
            owner,
            caller: Caller {
                uid: 0,
                gid: 0,
                pid: std::process::id() as i32,
            },
        }
    }

    /// This context for one request from `caller`.
    pub fn for_caller(&self, caller: &Caller) -> Ctx {
        Ctx {
            cfg: self.cfg.clone(),
            ledger: self.ledger.with_caller(caller.uid),
            owner: self.owner.clone(),
            caller: *caller,
        }
    }

    /// The owner's uid and primary gid (root's when no owner is configured).
    pub fn owner_ids(&self) -> (u32, u32) {
        self.owner.as_ref().map_or((0, 0), |c| (c.uid, c.gid))
    }

    /// Runs `f` with the owner's filesystem identity (see [`crate::cred`]).
    pub fn as_owner<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T, OpError> {
        Ok(crate::cred::as_owner(self.owner.as_ref(), f)?)
    }

    /// The helper's own directory (the ledger, its locks): made 0700 when missing, and
    /// refused unless it and every directory above it are root's and writable by nobody
    /// else, since the helper resolves names in it as root.
    pub fn root_dir(&self) -> Result<Dir, OpError> {
        let dir = &self.cfg.root_dir;
        if !dir.exists() {
            let made = std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .and_then(|()| {
                    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                });
            if let Err(e) = made {
                return Err(OpError::new(
                    code::FAILED,
                    format!(
                        "cannot create the helper's directory {}: {e}",
                        dir.display()
                    ),
                ));
            }
        }
        Dir::open_trusted(dir).map_err(|e| OpError::new(code::FAILED, banger::cli::one_line(&e)))
    }

    /// Refuses an owner acting on a VM whose privileged resources another uid (root) made.
    pub fn check_access(&self, vm: &str) -> Result<(), OpError> {
        if self.caller.uid == 0 {
            return Ok(());
        }
        let entries = self.ledger.for_vm(vm).map_err(ledger_err)?;
        if let Some(e) = entries
            .iter()
            .find(|e| e.by.is_some_and(|b| b != self.caller.uid))
        {
            let who = match e.by {
                Some(0) => "root".to_string(),
                Some(u) => format!("uid {u}"),
                None => "someone else".to_string(),
            };
            return Err(OpError::new(
                code::PERMISSION_DENIED,
                format!("VM {vm} was set up by {who}: only {who} may change it (its {} {} is in the helper's ledger)", e.kind, e.id),
            ));
        }
        Ok(())
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
    let ctx = &ctx.for_caller(caller);
    if op != "ping" {
        if let Err(e) = ctx.root_dir() {
            return Response::from_result(Err(e));
        }
    }
    let found = core::dispatch(op, ctx, caller, &req.args)
        .or_else(|| net::dispatch(op, ctx, caller, &req.args))
        .or_else(|| snap::dispatch(op, ctx, caller, &req.args))
        .or_else(|| jail::dispatch(op, ctx, caller, &req.args))
        .or_else(|| reconcile::dispatch(op, ctx, caller, &req.args));
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
