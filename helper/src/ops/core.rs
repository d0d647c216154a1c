//! `ping` and `ledger.list`.

use super::{ledger_err, Caller, Ctx, OpResult};
use crate::validate;
use serde::Deserialize;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::OnceLock;

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

/// Who answers: version, commit, the running executable's sha256 (so `banger-system update`
/// can tell that the helper now runs the file it installed), and the Firecracker and jailer
/// binaries this helper will launch, from its own configuration (then root's PATH).
fn ping(ctx: &Ctx, caller: &Caller, args: &Value) -> OpResult {
    let _: NoArgs = validate::args(args)?;
    Ok(json!({
        "version": banger::VERSION,
        "commit": banger::COMMIT,
        "exe_sha256": exe_sha256(),
        "pid": std::process::id(),
        "owner": ctx.cfg.owner_uid,
        "caller": caller.uid,
        "firecracker": binary(ctx.cfg.firecracker.as_ref(), "firecracker"),
        "jailer": binary(ctx.cfg.jailer.as_ref(), "jailer"),
    }))
}

/// Where a binary comes from, as `jail.launch` will find it: `{"path", "from"}` with `from`
/// `config` (config file or the helper's environment) or `path` (root's PATH), or null.
fn binary(configured: Option<&PathBuf>, name: &str) -> Value {
    match configured {
        Some(p) => json!({"path": p, "from": "config"}),
        None => match banger::cli::which(name) {
            Some(p) => json!({"path": p, "from": "path"}),
            None => Value::Null,
        },
    }
}

/// The sha256 of this process's executable (hashed once, on the first ping), or null when it
/// cannot be read.
fn exe_sha256() -> Option<&'static str> {
    static HASH: OnceLock<Option<String>> = OnceLock::new();
    HASH.get_or_init(|| {
        use sha2::Digest;
        use std::io::Read;
        let mut f = std::fs::File::open("/proc/self/exe").ok()?;
        let mut h = sha2::Sha256::new();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            match f.read(&mut buf).ok()? {
                0 => break,
                n => h.update(&buf[..n]),
            }
        }
        Some(
            h.finalize()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>(),
        )
    })
    .as_deref()
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
