//! The `snap.*` ops.

use super::{Caller, Ctx, OpResult};
use serde_json::Value;

pub fn dispatch(op: &str, _ctx: &Ctx, _caller: &Caller, _args: &Value) -> Option<OpResult> {
    let _ = op;
    None
}
