//! `banger-snap create`: the record's `snap` section.

use crate::BIN;
use banger::client::Helper;
use banger::config::Config;
use banger::record::{self, Record};
use banger::step::{Action, Input, Step, StepError};
use banger::store::Store;
use serde_json::{json, Map, Value};
use std::process::ExitCode;

pub struct Opts {
    pub method: Option<String>,
    pub disk_size: Option<u64>,
}

/// The helper client: the socket when one answers, else in process when root.
pub fn helper(cfg: &Config) -> Helper {
    Helper::new(cfg, Some(banger_helper::local))
}

pub fn call(h: &Helper, op: &str, args: Value) -> Result<Value, StepError> {
    h.call(op, args).map_err(|e| StepError::new(e.code(), &e))
}

/// The `net` argument for `snap.create`/`snap.customize` from a record's `net` section
/// (`ip` with or without `/prefix`, `prefix`, `gateway`, `dns` as a list or one string,
/// `mac`), or `None` when the record has no address yet.
pub fn net_args(rec: &Record) -> Option<Value> {
    let net = record::section(rec, "net")?;
    let ip_field = net.get("ip")?.as_str()?;
    let (ip, prefix_in_ip) = match ip_field.split_once('/') {
        Some((a, p)) => (a, p.parse::<u64>().ok()),
        None => (ip_field, None),
    };
    let prefix = net
        .get("prefix")
        .and_then(Value::as_u64)
        .or(prefix_in_ip)
        .unwrap_or(24);
    let mut out = Map::new();
    out.insert("ip".into(), ip.into());
    out.insert("prefix".into(), prefix.into());
    if let Some(g) = net.get("gateway").and_then(Value::as_str) {
        out.insert("gateway".into(), g.into());
    }
    let dns: Vec<Value> = match net.get("dns") {
        Some(Value::Array(a)) => a.iter().filter(|v| v.is_string()).cloned().collect(),
        Some(Value::String(s)) => vec![s.clone().into()],
        _ => Vec::new(),
    };
    out.insert("dns".into(), dns.into());
    if let Some(m) = net.get("mac").and_then(Value::as_str) {
        out.insert("mac".into(), m.into());
    }
    Some(Value::Object(out))
}

/// True when the helper's ledger has this VM's disk and the disk is there.
fn has_live_disk(h: &Helper, name: &str) -> Result<bool, StepError> {
    let r = call(h, "snap.list", json!({"vm": name}))?;
    Ok(r["disks"]
        .as_array()
        .is_some_and(|d| d.iter().any(|x| x["exists"] == true)))
}

fn create_one(h: &Helper, rec: &mut Record, opts: &Opts) -> Result<Action, StepError> {
    let name = record::name(rec).unwrap_or_default().to_string();
    if record::section(rec, "snap").is_some_and(|s| s.get("path").is_some()) {
        // Idempotent: the disk exists already; nothing is made twice.
        if has_live_disk(h, &name)? {
            return Ok(Action::Save);
        }
        return Err(StepError::msg(
            "disk_missing",
            format!("{name}'s record has a snap section but its disk is gone: run 'banger-snap rm {name}', then create again"),
        ));
    }
    let spec = record::section(rec, "spec").ok_or_else(|| {
        StepError::msg(
            "no_spec",
            format!("{name}'s record has no spec section: make it with banger-vm new"),
        )
    })?;
    let image = spec
        .get("image")
        .and_then(Value::as_str)
        .ok_or_else(|| StepError::msg("no_image", format!("{name}'s spec has no image")))?
        .to_string();
    let disk_size = opts
        .disk_size
        .or_else(|| spec.get("disk_size").and_then(Value::as_u64));
    let mut args = json!({
        "vm": name,
        "image": image,
        "hostname": name,
        "host_keys": true,
    });
    if let Some(k) = spec.get("ssh_pubkey").and_then(Value::as_str) {
        args["ssh_pubkey"] = k.into();
    }
    if let Some(m) = &opts.method {
        args["method"] = m.as_str().into();
    }
    if let Some(s) = disk_size {
        args["disk_size"] = s.into();
    }
    if let Some(n) = net_args(rec) {
        args["net"] = n;
    }
    let r = call(h, "snap.create", args)?;
    for w in r["warnings"].as_array().into_iter().flatten() {
        if let Some(w) = w.as_str() {
            eprintln!("{BIN}: warning: {name}: {w}");
        }
    }
    rec.insert(
        "snap".into(),
        json!({
            "method": r["method"],
            "path": r["path"],
            "image": r["image"],
            "size_bytes": r["size_bytes"],
            "host_keys": r["host_keys"],
            "customized": r["customized"],
            "created_at": record::now_rfc3339(),
        }),
    );
    Ok(Action::Save)
}

pub fn run(cfg: &Config, store: &Store, input: Input, opts: &Opts) -> ExitCode {
    let h = helper(cfg);
    let step = Step {
        bin: BIN,
        step: "snap",
        store,
    };
    step.run(input, |rec| create_one(&h, rec, opts))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn net_section_to_args() {
        let mut r = record::new("vm", "a");
        assert!(net_args(&r).is_none());
        r.insert(
            "net".into(),
            json!({"ip": "10.200.0.5/24", "gateway": "10.200.0.1", "dns": "10.200.0.1", "mac": "06:00:0a:c8:00:05", "tap": "bgr-a"}),
        );
        let n = net_args(&r).unwrap();
        assert_eq!(
            n,
            json!({"ip": "10.200.0.5", "prefix": 24, "gateway": "10.200.0.1", "dns": ["10.200.0.1"], "mac": "06:00:0a:c8:00:05"})
        );
    }
}
