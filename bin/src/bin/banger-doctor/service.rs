//! Checks of the installed service: install.json and its owner, the units, and the helper's
//! own view (its version, and the Firecracker and jailer it will launch, which are what
//! count, not the caller's environment).

use crate::checks::{Check, Status};
use banger::config::{Config, InstallInfo};
use serde_json::Value;
use std::path::Path;

/// install.json present, and the caller is its owner (or root).
pub fn install(cfg: &Config, info: Option<&InstallInfo>) -> Check {
    let euid = rustix::process::geteuid().as_raw();
    match info {
        None => Check::new(
            "install",
            if euid == 0 { Status::Warn } else { Status::Fail },
            format!(
                "banger is not installed as a service (no {})",
                cfg.install_path().display()
            ),
            Some("run: sudo banger system install"),
        ),
        Some(i) if euid != 0 && i.uid != euid => Check::new(
            "install",
            Status::Fail,
            format!(
                "banger is installed for {} (uid {}); you are uid {euid}",
                i.owner, i.uid
            ),
            Some(&format!(
                "run banger as {}, or reinstall for yourself: sudo banger system install --owner $USER",
                i.owner
            )),
        ),
        Some(i) => Check::new(
            "install",
            Status::Ok,
            format!(
                "banger {} ({}) is installed for {} (uid {}) under {}",
                i.version,
                i.commit,
                i.owner,
                i.uid,
                i.prefix.display()
            ),
            None,
        ),
    }
}

fn systemctl(args: &[&str]) -> Option<String> {
    let out = std::process::Command::new("systemctl")
        .args(args)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    Some(
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .unwrap_or("unknown")
            .to_string(),
    )
}

/// The socket and the timer enabled and active.
pub fn units() -> Check {
    let mut bad = Vec::new();
    let mut states = Vec::new();
    for u in ["banger-helper.socket", "banger-reconcile.timer"] {
        let (Some(e), Some(a)) = (systemctl(&["is-enabled", u]), systemctl(&["is-active", u]))
        else {
            return Check::new(
                "units",
                Status::Warn,
                "cannot run systemctl to look at banger's units",
                None,
            );
        };
        if e != "enabled" || a != "active" {
            bad.push(format!("{u} is {e} and {a}"));
        }
        states.push(format!("{u} {e}, {a}"));
    }
    if bad.is_empty() {
        Check::new("units", Status::Ok, states.join("; "), None)
    } else {
        Check::new(
            "units",
            Status::Fail,
            bad.join("; "),
            Some("sudo banger system install (puts the units back and starts them)"),
        )
    }
}

/// The helper runs the same version and commit as this client.
pub fn helper_version(ping: &Value) -> Check {
    let (v, c) = (
        ping["version"].as_str().unwrap_or("?"),
        ping["commit"].as_str().unwrap_or("?"),
    );
    if v == banger::VERSION && c == banger::COMMIT {
        Check::new(
            "helper-version",
            Status::Ok,
            format!("the helper and this client are banger {v} ({c})"),
            None,
        )
    } else {
        Check::new(
            "helper-version",
            Status::Warn,
            format!(
                "the helper runs banger {v} ({c}), this client is {} ({})",
                banger::VERSION,
                banger::COMMIT
            ),
            Some("sudo banger system restart (or update, to install the same build)"),
        )
    }
}

/// The Firecracker (or jailer) the helper will launch: from its ping, checked here.
pub fn helper_binary(ping: &Value, what: &str, mine: Option<&Path>, var: &str) -> Check {
    let name = format!("helper-{what}");
    let b = &ping[what];
    let Some(path) = b["path"].as_str() else {
        return Check::new(
            &name,
            Status::Fail,
            format!("the helper has no {what} binary (none in its config, none on root's PATH)"),
            Some(&format!("sudo banger system install --{what} PATH")),
        );
    };
    if !banger::cli::is_executable(Path::new(path)) {
        return Check::new(
            &name,
            Status::Fail,
            format!("the helper will launch {path}, which is not an executable file"),
            Some(&format!("sudo banger system install --{what} PATH")),
        );
    }
    let from = b["from"].as_str().unwrap_or("?");
    match mine {
        Some(m) if m != Path::new(path) => Check::new(
            &name,
            Status::Warn,
            format!(
                "the helper will launch {path} (from its {from}), not {} from your {var}",
                m.display()
            ),
            Some(&format!(
                "unset {var}, or make the helper use it: sudo banger system install --{what} {}",
                m.display()
            )),
        ),
        _ => Check::new(
            &name,
            Status::Ok,
            format!("the helper will launch {path} (from its {from})"),
            None,
        ),
    }
}
