//! `banger-jail teardown` and `banger-jail list`.

use crate::BIN;
use banger::cli;
use banger::client::Helper;
use banger::config::Config;
use banger::find_pid;
use banger::record::{self, Record, Writer};
use banger::step::{Action, StepError};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Keeps the console once the chroot is gone: `$state_dir/vms/NAME/console.log`. Both are
/// the owner's files: the copy is made with the owner's credentials (when root runs this
/// step), no symlink followed and at most the console's rotation size, so it can only copy
/// what the owner could read anyway.
fn keep_console(cfg: &Config, name: &str, console: &Path) {
    let dir = cfg.vm_dir(name);
    let cap = cfg.console_max_bytes.saturating_mul(2);
    let copy = || -> Option<()> {
        let bytes = banger::fsx::read_path_capped(console, cap).ok()?;
        let d = banger::fsx::Dir::open(&dir).ok()?;
        let tmp = format!(".console.log.tmp.{}", std::process::id());
        let _ = d.unlink(&tmp);
        let f = d.create(&tmp, 0o640).ok()?;
        std::io::Write::write_all(&mut &f, &bytes).ok()?;
        rustix::fs::renameat(&d, tmp.as_str(), &d, "console.log").ok()
    };
    let owner = cfg.owner_creds();
    let _ = banger_helper::cred::as_owner(owner.as_ref(), copy);
}

/// Tears one record's jail down and removes its `jail` section.
pub fn one(cfg: &Config, rec: &mut Record, grace_ms: u64) -> Result<Action, StepError> {
    let name = record::name(rec).unwrap_or_default().to_string();
    let jail = record::section(rec, "jail").cloned();
    let keeper = crate::launch::JailSection::of(rec).and_then(|j| {
        Some(crate::keeper::Keeper {
            pid: j.keeper_pid?,
            start_time: j.keeper_start_time?,
        })
    });
    // A Firecracker already gone (the usual case: `banger down` stops the VM first): its
    // keeper drains the FIFO and exits at once; wait for that, so the copy of the console
    // kept below has the guest's last lines.
    if let Some(k) = &keeper {
        if banger::timing::span("find", || find_pid::find_for_record(rec)).is_none() {
            banger::timing::span("keeper", || crate::keeper::stop(k));
        }
    }
    if let Some(c) = jail
        .as_ref()
        .and_then(|j| j.get("console"))
        .and_then(Value::as_str)
    {
        banger::timing::span("console", || keep_console(cfg, &name, Path::new(c)));
    }
    let helper = Helper::new(cfg, Some(banger_helper::local));
    helper
        .call("jail.teardown", json!({"name": name, "grace_ms": grace_ms}))
        .map_err(|e| StepError::new(e.code(), &e))?;
    // Firecracker is gone now in any case: make sure its keeper is too.
    if let Some(k) = keeper {
        banger::timing::span("keeper", || crate::keeper::stop(&k));
    }
    let link = jail
        .as_ref()
        .and_then(|j| j.get("api_sock"))
        .and_then(Value::as_str)
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::launch::api_sock_path(cfg, &name));
    let vsock = jail
        .as_ref()
        .and_then(|j| j.get("vsock_sock"))
        .and_then(Value::as_str)
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::launch::vsock_sock_path(cfg, &name));
    for l in [&link, &vsock] {
        if std::fs::symlink_metadata(l).is_ok_and(|m| m.file_type().is_symlink()) {
            let _ = std::fs::remove_file(l);
        }
    }
    rec.remove("jail");
    Ok(Action::Save)
}

/// Prints the helper's jails as `type: "jail"` records.
/// `jail list --table`: one row per jail, for people.
fn table(jails: &[Value]) -> String {
    let mut rows = vec![["NAME", "LAUNCHER", "RUNNING", "PID", "DIR"]
        .map(String::from)
        .to_vec()];
    for j in jails {
        let s = |k: &str| match j.get(k) {
            Some(Value::String(v)) => v.clone(),
            Some(Value::Null) | None => "-".into(),
            Some(v) => v.to_string(),
        };
        rows.push(vec![
            s("name"),
            s("launcher"),
            if j["running"] == true { "yes" } else { "no" }.into(),
            s("live_pid"),
            s("dir"),
        ]);
    }
    cli::render_table(&rows)
}

pub fn list(cfg: &Config, as_table: bool) -> ExitCode {
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
    if as_table {
        print!("{}", table(&jails));
        return ExitCode::SUCCESS;
    }
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
