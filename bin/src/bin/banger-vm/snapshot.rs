//! `banger-vm snapshot NAME DIR` and `banger-vm restore NAME DIR`: a Full snapshot of a
//! running VM's memory and state, and its restore into a freshly launched jail with the same
//! disk and network.
//!
//! Firecracker writes and reads snapshot files as the owner, at paths it sees: inside the
//! jail's chroot (whose root the owner owns) for the jailer, host paths for `direct`. The
//! files are moved (or linked, or copied) between there and DIR.

use crate::boot::{client_for, fc_err, set_vm};
use banger::record::{self, Record};
use banger::section::{self, Jail, Snap};
use banger::step::{Action, StepError};
use serde_json::json;
use std::path::{Path, PathBuf};

pub const STATE_FILE: &str = "vmstate";
pub const MEM_FILE: &str = "memory";

fn io(what: String) -> impl Fn(std::io::Error) -> StepError {
    move |e| {
        StepError::new(
            "snapshot_io",
            &std::io::Error::new(e.kind(), format!("{what}: {e}")),
        )
    }
}

/// Where Firecracker sees a snapshot file, and where that is on the host.
fn fc_paths(rec: &Record, dir: &Path, file: &str) -> (String, PathBuf) {
    let chroot = section::get::<Jail>(rec)
        .ok()
        .flatten()
        .and_then(|j| j.chroot);
    match chroot {
        Some(c) => (
            format!("/snapshot.{file}"),
            Path::new(&c).join(format!("snapshot.{file}")),
        ),
        None => {
            let p = dir.join(file);
            (p.display().to_string(), p)
        }
    }
}

/// Moves `from` to `to`: rename, else copy and remove.
fn move_file(from: &Path, to: &Path) -> Result<(), StepError> {
    if from == to {
        return Ok(());
    }
    if std::fs::rename(from, to).is_ok() {
        return Ok(());
    }
    std::fs::copy(from, to).map_err(io(format!("copy {} to {}", from.display(), to.display())))?;
    std::fs::remove_file(from).map_err(io(format!("remove {}", from.display())))
}

/// Puts `from` at `to` for Firecracker to read: hard link, else copy.
fn place_file(from: &Path, to: &Path) -> Result<(), StepError> {
    if from == to {
        return Ok(());
    }
    let _ = std::fs::remove_file(to);
    if std::fs::hard_link(from, to).is_ok() {
        return Ok(());
    }
    std::fs::copy(from, to).map(|_| ()).map_err(io(format!(
        "copy {} to {}",
        from.display(),
        to.display()
    )))
}

fn abs(dir: &Path) -> Result<PathBuf, StepError> {
    std::path::absolute(dir).map_err(io(format!("resolve {}", dir.display())))
}

pub fn snapshot(rec: &mut Record, dir: &Path) -> Result<Action, StepError> {
    let name = record::name(rec).unwrap_or("?").to_string();
    let dir = abs(dir)?;
    std::fs::create_dir_all(&dir).map_err(io(format!("create {}", dir.display())))?;
    let client = client_for(rec)?;
    let info = client.instance_info().map_err(fc_err)?;
    if info.state == "Not started" {
        return Err(StepError::msg(
            "not_running",
            format!("{name} was never started: nothing to snapshot"),
        ));
    }
    let was_running = info.state == "Running";
    if was_running {
        client.pause().map_err(fc_err)?;
    }
    let (state_fc, state_host) = fc_paths(rec, &dir, STATE_FILE);
    let (mem_fc, mem_host) = fc_paths(rec, &dir, MEM_FILE);
    let made = client.snapshot_create(&state_fc, &mem_fc).map_err(fc_err);
    // Resume whatever happened, then report.
    let resumed = if was_running {
        client.resume().map_err(fc_err)
    } else {
        Ok(())
    };
    made?;
    resumed?;
    move_file(&state_host, &dir.join(STATE_FILE))?;
    move_file(&mem_host, &dir.join(MEM_FILE))?;
    let meta = json!({
        "v": 1,
        "type": "snapshot",
        "name": name,
        "created_at": record::now_rfc3339(),
        "spec": rec.get("spec"),
        "net": rec.get("net"),
        "snap": section::get::<Snap>(rec)?.map(|s| json!({"path": s.path, "image": s.image})),
    });
    banger::store::write_atomic(
        &dir.join("snapshot.json"),
        format!("{meta:#}\n").as_bytes(),
        0o644,
    )
    .map_err(io(format!("write {}", dir.join("snapshot.json").display())))?;
    set_vm(rec, |vm| {
        vm.extra.insert(
            "last_snapshot".into(),
            json!({"dir": dir.display().to_string(), "at": record::now_rfc3339()}),
        );
    })?;
    Ok(Action::Save)
}

pub fn restore(rec: &mut Record, dir: &Path) -> Result<Action, StepError> {
    let name = record::name(rec).unwrap_or("?").to_string();
    let dir = abs(dir)?;
    for f in [STATE_FILE, MEM_FILE] {
        if !dir.join(f).is_file() {
            return Err(StepError::msg(
                "no_snapshot",
                format!(
                    "{} has no {f} file: not a banger-vm snapshot directory",
                    dir.display()
                ),
            ));
        }
    }
    let client = client_for(rec)?;
    let info = client.instance_info().map_err(|e| match e {
        banger::fc_api::FcError::Connect { .. } => StepError::msg(
            "not_launched",
            format!("{name} has no live Firecracker to restore into: run 'banger-jail launch {name}' first"),
        ),
        other => fc_err(other),
    })?;
    if info.state != "Not started" {
        return Err(StepError::msg(
            "busy",
            format!(
                "{name}'s Firecracker already runs a guest: 'banger-vm stop {name} | banger-jail teardown | banger-jail launch' for a fresh one"
            ),
        ));
    }
    let (state_fc, state_host) = fc_paths(rec, &dir, STATE_FILE);
    let (mem_fc, mem_host) = fc_paths(rec, &dir, MEM_FILE);
    place_file(&dir.join(STATE_FILE), &state_host)?;
    place_file(&dir.join(MEM_FILE), &mem_host)?;
    client
        .snapshot_load(&state_fc, &mem_fc, true)
        .map_err(fc_err)?;
    set_vm(rec, |vm| {
        vm.state = Some("running".into());
        vm.extra.insert(
            "restored_from".into(),
            json!({"dir": dir.display().to_string(), "at": record::now_rfc3339()}),
        );
    })?;
    Ok(Action::Save)
}
