//! `ping` and `ledger.list`.

use super::{ledger_err, Caller, Ctx, OpResult};
use crate::validate;
use serde::Deserialize;
use serde_json::{json, Value};

pub fn dispatch(op: &str, ctx: &Ctx, caller: &Caller, args: &Value) -> Option<OpResult> {
    Some(match op {
        "ping" => ping(ctx, caller, args),
        "ledger.list" => ledger_list(ctx, args),
        _ => return None,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoArgs {}

fn ping(ctx: &Ctx, caller: &Caller, args: &Value) -> OpResult {
    let _: NoArgs = validate::args(args)?;
    Ok(json!({
        "version": banger::VERSION,
        "pid": std::process::id(),
        "owner": ctx.cfg.owner_uid,
        "caller": caller.uid,
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LedgerList {
    #[serde(default)]
    vm: Option<String>,
}

fn ledger_list(ctx: &Ctx, args: &Value) -> OpResult {
    let a: LedgerList = validate::args(args)?;
    let entries = match &a.vm {
        Some(vm) => ctx.ledger.for_vm(validate::name(vm)?).map_err(ledger_err)?,
        None => ctx.ledger.list().map_err(ledger_err)?,
    };
    Ok(json!({ "entries": entries }))
}
