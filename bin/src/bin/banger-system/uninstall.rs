//! `banger-system uninstall [--stop-vms] [--purge]`: disables and removes the units and the
//! installed files. Without `--purge` the owner's records, images and disks stay, and running
//! VMs are a reason to refuse (unless `--stop-vms`). `--purge` stops every VM, releases every
//! resource in the helper's ledger, and deletes banger's state, runtime, jail and config dirs.

use crate::files;
use crate::owner::Owner;
use crate::system::{self, Sys, SystemError};
use crate::units;
use serde_json::{json, Value};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

pub struct Options {
    pub stop_vms: bool,
    pub purge: bool,
}

/// Runs a banger command as the owner, with a clean environment (the owner's own steps, so
/// the records stay the owner's files).
fn as_owner(sys: &Sys, owner: &Owner, argv: &[&str]) -> Result<(), SystemError> {
    let bin = sys.layout.bindir().join(argv[0]);
    let path = format!(
        "{}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        sys.layout.bindir().display()
    );
    let mut cmd = std::process::Command::new(&bin);
    cmd.args(&argv[1..])
        .env_clear()
        .env("PATH", path)
        .env("HOME", &owner.home)
        .env("USER", &owner.name)
        .env("LOGNAME", &owner.name)
        .current_dir("/")
        .uid(owner.uid)
        .gid(owner.gid)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null());
    // The paths this process was given (a relocated test install) hold for the owner too.
    for var in [
        "BANGER_CONFIG_DIR",
        "BANGER_STATE_DIR",
        "BANGER_RUN_DIR",
        "BANGER_HELPER_SOCKET",
        "BANGER_ROOT_DIR",
        "BANGER_JAIL_DIR",
    ] {
        if let Some(v) = std::env::var_os(var) {
            cmd.env(var, v);
        }
    }
    let st = cmd.status().map_err(|e| SystemError::Failed {
        what: format!("cannot run {}", bin.display()),
        why: e.to_string(),
    })?;
    if st.success() {
        Ok(())
    } else {
        Err(SystemError::Failed {
            what: format!("{} failed as {}", argv.join(" "), owner.name),
            why: format!("{st}; fix what it said and run the uninstall again"),
        })
    }
}

/// The VMs the store has (names), for purge.
fn stored_vms(sys: &Sys) -> Vec<String> {
    banger::store::Store::from_config(&sys.cfg)
        .names()
        .unwrap_or_default()
}

/// Releases what the ledger still holds, VM by VM, through the helper's own ops.
fn release_ledger(sys: &Sys) -> Result<(), SystemError> {
    let list = |sys: &Sys| -> Result<Vec<Value>, SystemError> {
        sys.probe
            .call(&sys.cfg, "ledger.list", json!({}))
            .map(|v| v["entries"].as_array().cloned().unwrap_or_default())
            .map_err(|why| SystemError::Failed {
                what: "cannot read the helper's ledger (sudo banger system restart, then retry)"
                    .into(),
                why,
            })
    };
    let mut vms: Vec<String> = list(sys)?
        .iter()
        .filter_map(|e| e["vm"].as_str().map(String::from))
        .filter(|v| v != "-")
        .collect();
    vms.sort();
    vms.dedup();
    for vm in &vms {
        for (op, args) in [
            ("jail.teardown", json!({"name": vm})),
            ("net.down", json!({"vm": vm})),
            ("snap.remove", json!({"vm": vm})),
        ] {
            if let Err(why) = sys.probe.call(&sys.cfg, op, args) {
                sys.say(format!("{op} {vm}: {why}"));
            }
        }
    }
    let left = list(sys)?;
    if left.is_empty() {
        Ok(())
    } else {
        let names: Vec<String> = left
            .iter()
            .map(|e| {
                format!(
                    "{} {} {}",
                    e["vm"].as_str().unwrap_or("?"),
                    e["kind"].as_str().unwrap_or("?"),
                    e["id"].as_str().unwrap_or("?")
                )
            })
            .collect();
        Err(SystemError::Failed {
            what: "the helper's ledger still holds resources; nothing was removed".into(),
            why: names.join(", "),
        })
    }
}

/// A directory --purge may delete: absolute, not a system directory, not a home itself, and
/// with nothing mounted below it in this mount namespace.
fn purgeable(dir: &Path, owner: &Owner) -> Result<(), SystemError> {
    let refuse = |why: &str| {
        Err(SystemError::Refused(format!(
            "refusing to delete {}: {why}; remove it by hand if it is banger's",
            dir.display()
        )))
    };
    const SYSTEM: &[&str] = &[
        "/",
        "/bin",
        "/boot",
        "/dev",
        "/etc",
        "/home",
        "/lib",
        "/media",
        "/mnt",
        "/opt",
        "/proc",
        "/root",
        "/run",
        "/sbin",
        "/srv",
        "/sys",
        "/tmp",
        "/usr",
        "/usr/local",
        "/var",
        "/var/cache",
        "/var/lib",
        "/var/log",
        "/var/tmp",
    ];
    let system = SYSTEM.iter().any(|s| Path::new(s) == dir);
    let api = ["/proc", "/sys", "/dev"].iter().any(|a| dir.starts_with(a));
    if !dir.is_absolute() || system || api || owner.home.starts_with(dir) {
        return refuse("it is a system directory or holds the owner's home, not one banger made");
    }
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    for line in mountinfo.lines() {
        if let Some(mp) = line.split(' ').nth(4) {
            let mp = mp.replace("\\040", " ");
            if Path::new(&mp).starts_with(dir) {
                return refuse(&format!("{mp} is mounted below it"));
            }
        }
    }
    Ok(())
}

fn remove_tree(sys: &Sys, dir: &Path, done: &mut Vec<String>) -> Result<(), SystemError> {
    match std::fs::symlink_metadata(dir) {
        Err(_) => Ok(()),
        Ok(m) if !m.is_dir() => Err(SystemError::Refused(format!(
            "refusing to delete {}: not a directory",
            dir.display()
        ))),
        Ok(_) => {
            std::fs::remove_dir_all(dir).map_err(|source| SystemError::Dir {
                what: "delete",
                path: dir.to_path_buf(),
                source,
            })?;
            sys.say(format!("deleted {}", dir.display()));
            done.push(format!("deleted {}", dir.display()));
            Ok(())
        }
    }
}

pub fn uninstall(sys: &Sys, opts: &Options) -> Result<Value, SystemError> {
    let info = sys.install_info()?;
    let owner = system::owner_of(&info);
    let mut done: Vec<String> = Vec::new();

    // VMs first, while the helper still runs.
    let running = sys.running_vms()?;
    if !running.is_empty() && !opts.stop_vms && !opts.purge {
        let names: Vec<&str> = running.iter().map(|(n, _)| n.as_str()).collect();
        return Err(SystemError::Refused(format!(
            "VMs are running: {}; stop them first (banger down NAME, as {}), or pass --stop-vms",
            names.join(", "),
            owner.name
        )));
    }
    for (name, _) in &running {
        as_owner(sys, &owner, &["banger-down", name])?;
        done.push(format!("stopped VM {name}"));
        sys.say(format!("stopped VM {name}"));
    }
    if opts.purge {
        for name in stored_vms(sys) {
            as_owner(sys, &owner, &["banger-rm", &name, "--yes"])?;
            done.push(format!("removed VM {name}"));
            sys.say(format!("removed VM {name} and its disk"));
        }
        release_ledger(sys)?;
        // Check every directory before deleting any.
        for d in [
            &sys.cfg.state_dir,
            &sys.cfg.run_dir,
            &sys.cfg.root_dir,
            &sys.cfg.jail_dir,
        ] {
            purgeable(d, &owner)?;
        }
    }

    // Units.
    let all = [
        units::TIMER,
        units::RECONCILE,
        units::BOOT,
        units::SOCKET,
        units::SERVICE,
    ];
    for u in [units::TIMER, units::BOOT, units::SOCKET] {
        if sys.ctl.is_enabled(u) == "enabled" {
            sys.ctl.must(&["disable", u])?;
        }
    }
    let mut stop = vec!["stop"];
    stop.extend(all);
    sys.ctl.must(&stop)?;
    let mut unit_files: Vec<PathBuf> = sys.unit_paths();
    unit_files.extend(info.units.iter().cloned());
    unit_files.sort();
    unit_files.dedup();
    for f in &unit_files {
        if f.exists() {
            files::remove(f)?;
            done.push(format!("removed {}", f.display()));
        }
    }
    sys.ctl.daemon_reload()?;
    let _ = sys
        .ctl
        .run(&["reset-failed", all[0], all[1], all[2], all[3]]);
    sys.say(format!(
        "stopped, disabled and removed {} unit files",
        unit_files.len()
    ));

    // Files.
    let mut removed = 0;
    for f in &info.files {
        if std::fs::symlink_metadata(f).is_ok() {
            files::remove(f)?;
            removed += 1;
        }
        let _ = files::remove(&files::prev_of(f));
    }
    sys.say(format!("removed {removed} installed files"));
    files::remove(&sys.cfg.install_path())?;
    done.push(format!("removed {}", sys.cfg.install_path().display()));
    // The socket's directory, which the socket unit made (only when empty).
    if let Some(d) = sys.cfg.helper_socket.parent() {
        let _ = std::fs::remove_dir(d);
    }

    if opts.purge {
        for d in [
            &sys.cfg.jail_dir,
            &sys.cfg.run_dir,
            &sys.cfg.state_dir,
            &sys.cfg.root_dir,
        ] {
            remove_tree(sys, d, &mut done)?;
        }
        files::remove(&sys.config_path())?;
        let _ = std::fs::remove_dir(&sys.cfg.config_dir);
        done.push(format!("removed {}", sys.config_path().display()));
    } else {
        sys.say(format!(
            "kept {}'s records, images and disks in {} (and {}); --purge deletes them",
            owner.name,
            sys.cfg.state_dir.display(),
            sys.config_path().display()
        ));
    }
    Ok(json!({
        "v": 1,
        "type": "system",
        "name": "uninstall",
        "owner": owner.name,
        "purged": opts.purge,
        "vms_stopped": running.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>(),
        "files_removed": removed,
        "done": done,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purge_never_deletes_a_system_directory_or_a_home() {
        let owner = Owner {
            name: "alice".into(),
            uid: 1000,
            gid: 1000,
            group: "alice".into(),
            home: "/home/alice".into(),
        };
        for d in [
            "/var/lib",
            "/srv",
            "/run",
            "/home",
            "/home/alice",
            "/",
            "/proc/1",
            "relative",
        ] {
            assert!(purgeable(Path::new(d), &owner).is_err(), "{d}");
        }
        assert!(purgeable(Path::new("/var/lib/banger-purge-test-nonexistent"), &owner).is_ok());
        assert!(purgeable(Path::new("/home/alice/banger"), &owner).is_ok());
    }
}
