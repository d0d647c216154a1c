//! `banger-jail teardown` and `banger-jail list`.

use crate::BIN;
use banger::cli;
use banger::client::Helper;
use banger::config::Config;
use banger::record::{self, Record, Writer};
use banger::step::{Action, StepError};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Keeps the console once the chroot is gone: `$state_dir/vms/NAME/console.log`.
fn keep_console(cfg: &Config, name: &str, console: &Path) {
    let dir = cfg.vm_dir(name);
    if !dir.is_dir() || !console.is_file() {
        return;
    }
    let dst = dir.join("console.log");
    // Never write through a symlink someone left there.
    if std::fs::symlink_metadata(&dst).is_ok_and(|m| !m.is_file()) {
        return;
    }
    if std::fs::copy(console, &dst).is_ok() {
        if let (true, Some(uid)) = (rustix::process::geteuid().is_root(), cfg.owner_uid) {
            let _ = std::os::unix::fs::lchown(&dst, Some(uid), cfg.owner_gid);
        }
    }
}

/// Tears one record's jail down and removes its `jail` section.
pub fn one(cfg: &Config, rec: &mut Record, grace_ms: u64) -> Result<Action, StepError> {
    let name = record::name(rec).unwrap_or_default().to_string();
    let jail = record::section(rec, "jail").cloned();
    if let Some(c) = jail
        .as_ref()
        .and_then(|j| j.get("console"))
        .and_then(Value::as_str)
    {
        keep_console(cfg, &name, Path::new(c));
    }
    let helper = Helper::new(cfg, Some(banger_helper::local));
    helper
        .call("jail.teardown", json!({"name": name, "grace_ms": grace_ms}))
        .map_err(|e| StepError::new(e.code(), &e))?;
    let link = jail
        .as_ref()
        .and_then(|j| j.get("api_sock"))
        .and_then(Value::as_str)
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::launch::api_sock_path(cfg, &name));
    if std::fs::symlink_metadata(&link).is_ok_and(|m| m.file_type().is_symlink()) {
        let _ = std::fs::remove_file(&link);
    }
    rec.remove("jail");
    Ok(Action::Save)
}

/// Prints the helper's jails as `type: "jail"` records.
pub fn list(cfg: &Config) -> ExitCode {
    let helper = Helper::new(cfg, Some(banger_helper::local));
    let answer = match helper.call("jail.list", json!({})) {
        Ok(a) => a,
        Err(e) => {
            cli::report(BIN, &e);
            return ExitCode::from(cli::EXIT_FAILURE);
        }
    };
    let mut w = Writer::stdout();
    let jails = answer
        .get("jails")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for j in jails {
        let name = j.get("name").and_then(Value::as_str).unwrap_or("?");
        let mut r = record::new("jail", name);
        if let Value::Object(m) = j {
            for (k, v) in m {
                if k != "name" {
                    r.insert(k, v);
                }
            }
        }
        if let Err(e) = w.emit(&r) {
            cli::report(BIN, &e);
            return ExitCode::from(cli::EXIT_FAILURE);
        }
    }
    ExitCode::SUCCESS
}
