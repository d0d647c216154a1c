//! `banger-system status`: is banger installed, for whom, are its units enabled and active,
//! does the helper answer (pid, version, commit, the Firecracker and jailer it will use), how
//! many VMs run, and where its log is. One record per unit and one for the whole; works as
//! the owner.

use crate::system::{Sys, SystemError};
use crate::units;
use serde_json::{json, Value};

pub const LOG_HINT: &str = "journalctl -u banger-helper.service -u banger-helper.socket";

/// The records, and whether all is well (installed, units active, helper answering).
pub fn status(sys: &Sys) -> Result<(Vec<Value>, bool), SystemError> {
    let info = match sys.install_info() {
        Ok(i) => Some(i),
        Err(SystemError::NotInstalled { .. }) => None,
        Err(e) => return Err(e),
    };
    let mut records = Vec::new();
    let mut healthy = info.is_some();
    for u in [
        units::SOCKET,
        units::SERVICE,
        units::TIMER,
        units::RECONCILE,
        units::BOOT,
    ] {
        let enabled = sys.ctl.is_enabled(u);
        let active = sys.ctl.is_active(u);
        let want_active = matches!(u, units::SOCKET | units::TIMER);
        if info.is_some() && want_active && (enabled != "enabled" || active != "active") {
            healthy = false;
        }
        records.push(json!({
            "v": 1, "type": "unit", "name": u, "enabled": enabled, "active": active,
        }));
    }
    let ping = sys.probe.ping(&sys.cfg, None);
    let (helper, vms) = match &ping {
        Ok(p) => {
            let installed_exe =
                crate::files::sha256(&sys.layout.bindir().join("banger-helper")).ok();
            let current = installed_exe
                .as_deref()
                .is_some_and(|e| p["exe_sha256"].as_str() == Some(e));
            let vms = sys.running_vms().ok().map(|v| v.len());
            (
                json!({
                    "answers": true,
                    "pid": p["pid"],
                    "version": p["version"],
                    "commit": p["commit"],
                    "runs_installed_binary": current,
                    "firecracker": p["firecracker"],
                    "jailer": p["jailer"],
                }),
                vms,
            )
        }
        Err(e) => {
            healthy = false;
            (json!({"answers": false, "error": e}), None)
        }
    };
    let c = &sys.cfg;
    let mut rec = json!({
        "v": 1,
        "type": "system",
        "name": "banger",
        "installed": info.is_some(),
        "helper": helper,
        "vms_running": vms,
        "paths": {
            "prefix": sys.layout.prefix,
            "config": c.config_dir,
            "state": c.state_dir,
            "run": c.run_dir,
            "root": c.root_dir,
            "jail": c.jail_dir,
            "socket": c.helper_socket,
        },
        "log": LOG_HINT,
    });
    match &info {
        Some(i) => {
            rec["owner"] = json!({"name": i.owner, "uid": i.uid, "gid": i.gid, "home": i.home});
            rec["version"] = json!(i.version);
            rec["commit"] = json!(i.commit);
            rec["built_at"] = json!(i.built_at);
            rec["installed_at"] = json!(i.installed_at);
            if !i.updated_at.is_empty() {
                rec["updated_at"] = json!(i.updated_at);
            }
        }
        None => {
            rec["fix"] = json!("run: sudo banger system install");
        }
    }
    records.push(rec);
    Ok((records, healthy))
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// The records as a table for people.
pub fn table(records: &[Value]) -> String {
    let mut rows = vec![vec!["UNIT".to_string(), "ENABLED".into(), "ACTIVE".into()]];
    let mut out = String::new();
    for r in records.iter().filter(|r| r["type"] == "unit") {
        rows.push(vec![s(&r["name"]), s(&r["enabled"]), s(&r["active"])]);
    }
    out.push_str(&banger::cli::render_table(&rows));
    out.push('\n');
    if let Some(r) = records.iter().find(|r| r["type"] == "system") {
        let h = &r["helper"];
        let bin = |b: &Value| {
            if b.is_null() {
                "none found".to_string()
            } else {
                format!("{} (from {})", s(&b["path"]), s(&b["from"]))
            }
        };
        let mut kv: Vec<Vec<String>> = vec![
            vec!["installed".into(), s(&r["installed"])],
            vec![
                "owner".into(),
                match &r["owner"] {
                    Value::Null => "-".into(),
                    o => format!("{} (uid {})", s(&o["name"]), s(&o["uid"])),
                },
            ],
            vec![
                "version".into(),
                format!("{} ({})", s(&r["version"]), s(&r["commit"])),
            ],
        ];
        if h["answers"] == true {
            kv.push(vec![
                "helper".into(),
                format!(
                    "pid {}, {} ({}){}",
                    s(&h["pid"]),
                    s(&h["version"]),
                    s(&h["commit"]),
                    if h["runs_installed_binary"] == true {
                        ""
                    } else {
                        ", NOT the installed binary: sudo banger system restart"
                    }
                ),
            ]);
            kv.push(vec!["firecracker".into(), bin(&h["firecracker"])]);
            kv.push(vec!["jailer".into(), bin(&h["jailer"])]);
        } else {
            kv.push(vec![
                "helper".into(),
                format!("not answering: {}", s(&h["error"])),
            ]);
        }
        kv.push(vec!["VMs running".into(), s(&r["vms_running"])]);
        for k in ["prefix", "config", "state", "run", "root", "jail", "socket"] {
            kv.push(vec![k.into(), s(&r["paths"][k])]);
        }
        kv.push(vec!["log".into(), s(&r["log"])]);
        if let Some(f) = r.get("fix") {
            kv.push(vec!["fix".into(), s(f)]);
        }
        out.push_str(&banger::cli::render_table(&kv));
    }
    out
}
