//! `banger-system update --from DIR|URL [--sha256 HEX]`: swaps the binaries atomically (the
//! previous ones kept beside them), re-renders the units with the new build's templates and
//! rewrites those whose text changed, restarts the helper and waits until it answers running
//! the new executable. If it never does, everything is put back and the old helper restarted.
//! Running VMs are untouched: the helper's restart never signals a Firecracker.

use crate::fetch;
use crate::files;
use crate::source::Build;
use crate::system::{self, destinations, Sys, SystemError};
use crate::units;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

pub struct Options {
    pub from: String,
    pub sha256: Option<String>,
    /// How long the new helper has to answer.
    pub wait_secs: u64,
}

/// What was changed, so it can be put back.
#[derive(Default)]
struct Undo {
    /// Files replaced or removed, and whether a previous version was kept.
    files: Vec<(PathBuf, bool)>,
    /// Unit files written, with their previous text (None: there was none).
    units: Vec<(PathBuf, Option<String>)>,
}

impl Undo {
    fn rollback(&self, sys: &Sys) -> Vec<String> {
        let mut problems = Vec::new();
        for (path, had) in self.files.iter().rev() {
            if let Err(e) = files::restore_prev(path, *had) {
                problems.push(banger::cli::one_line(&e));
            }
        }
        for (path, old) in &self.units {
            let r = match old {
                Some(text) => files::write_text(path, text, 0o644),
                None => files::remove(path),
            };
            if let Err(e) = r {
                problems.push(banger::cli::one_line(&e));
            }
        }
        if !self.units.is_empty() {
            if let Err(e) = sys.ctl.daemon_reload() {
                problems.push(banger::cli::one_line(&e));
            }
        }
        problems
    }

    fn commit(&self) {
        for (path, had) in &self.files {
            if *had {
                let _ = files::remove(&files::prev_of(path));
            }
        }
    }
}

fn build_dir(opts: &Options, tmp: &Path) -> Result<PathBuf, SystemError> {
    let p = Path::new(&opts.from);
    if fetch::is_url(&opts.from) || p.is_file() {
        return fetch::fetch(&opts.from, opts.sha256.as_deref(), tmp);
    }
    if opts.sha256.is_some() {
        return Err(SystemError::Refused(format!(
            "--sha256 pins an archive; {} is a directory",
            opts.from
        )));
    }
    Ok(p.to_path_buf())
}

fn swap(
    sys: &Sys,
    build: &Build,
    old_files: &[PathBuf],
    undo: &mut Undo,
) -> Result<usize, SystemError> {
    let mut n = 0;
    let mut new_files = Vec::new();
    for (src, dst, mode) in destinations(build, &sys.layout.prefix) {
        new_files.push(dst.clone());
        if files::same(&src, &dst, Some(mode)) {
            continue;
        }
        let had = files::keep_prev(&dst)?;
        undo.files.push((dst.clone(), had));
        files::replace(&src, &dst, mode)?;
        n += 1;
    }
    for old in old_files
        .iter()
        .filter(|f| !new_files.contains(f) && f.exists())
    {
        let had = files::keep_prev(old)?;
        undo.files.push((old.clone(), had));
        files::remove(old)?;
        n += 1;
    }
    Ok(n)
}

pub fn update(sys: &Sys, opts: &Options) -> Result<Value, SystemError> {
    let info = sys.install_info()?;
    let owner = system::owner_of(&info);
    let tmp = fetch::temp_dir("update")?;
    let dir = build_dir(opts, &tmp.0)?;
    let build = Build::find(&dir)?;
    let bindir = sys.layout.bindir();
    let helper_bin = bindir.join("banger-helper");
    let new_helper = build
        .binary("banger-helper")
        .ok_or_else(|| SystemError::Refused("the new build has no banger-helper".into()))?;
    let new_exe = files::sha256(new_helper)?;
    let old_exe = files::sha256(&helper_bin).ok();
    let vms_before = sys.running_vms().ok();
    let before = sys.probe.ping(&sys.cfg, None).ok();
    sys.say(format!(
        "updating banger {} ({}) from {}",
        info.version,
        info.commit,
        dir.display()
    ));

    let mut undo = Undo::default();
    let attempt = (|| -> Result<(usize, Vec<PathBuf>, Value), SystemError> {
        let swapped = swap(sys, &build, &info.files, &mut undo)?;
        let rendered = sys.render_units(&owner, &bindir.join("banger-system"))?;
        for (path, text) in &rendered {
            if !files::same_text(path, text, 0o644) {
                undo.units
                    .push((path.clone(), std::fs::read_to_string(path).ok()));
            }
        }
        let written = sys.write_units(&rendered)?;
        if !written.is_empty() {
            sys.ctl.daemon_reload()?;
        }
        let socket_changed = written
            .iter()
            .any(|w| w.file_name().is_some_and(|n| n == units::SOCKET));
        sys.restart_helper(socket_changed)?;
        let ping = sys.wait_helper(Some(&owner), Some(&new_exe), opts.wait_secs)?;
        Ok((swapped, written, ping))
    })();

    let (swapped, written, ping) = match attempt {
        Ok(done) => done,
        Err(e) => {
            sys.say(format!(
                "update failed: {}; rolling back",
                banger::cli::one_line(&e)
            ));
            let mut problems = undo.rollback(sys);
            let back = sys
                .restart_helper(!undo.units.is_empty())
                .map_err(|e| banger::cli::one_line(&e))
                .and_then(|()| {
                    sys.wait_helper(Some(&owner), old_exe.as_deref(), opts.wait_secs)
                        .map_err(|e| banger::cli::one_line(&e))
                });
            if let Err(p) = back {
                problems.push(p);
            }
            let how = if problems.is_empty() {
                format!(
                    "rolled back to banger {} ({}); the previous helper answers again",
                    info.version, info.commit
                )
            } else {
                format!("the rollback had problems too: {}", problems.join("; "))
            };
            return Err(SystemError::Failed {
                what: format!("update from {} failed and was undone", opts.from),
                why: format!("{}; {how}", banger::cli::one_line(&e)),
            });
        }
    };
    undo.commit();

    let system_bin = bindir.join("banger-system");
    let (version, commit) = system::build_version(&system_bin);
    let mut new_info = info.clone();
    new_info.version = version;
    new_info.commit = commit;
    new_info.built_at = system::mtime(&helper_bin);
    new_info.updated_at = banger::record::now_rfc3339();
    new_info.files = destinations(&build, &sys.layout.prefix)
        .into_iter()
        .map(|(_, d, _)| d)
        .collect();
    sys.write_install_info(&new_info)?;

    let vms_after = sys.running_vms().ok();
    if let (Some(b), Some(a)) = (&vms_before, &vms_after) {
        let lost: Vec<&str> = b
            .iter()
            .filter(|vm| !a.contains(vm))
            .map(|(n, _)| n.as_str())
            .collect();
        if lost.is_empty() {
            sys.say(format!(
                "{} running VM(s) kept running with the same Firecracker PIDs",
                b.len()
            ));
        } else {
            sys.say(format!(
                "warning: these VMs' Firecracker changed or stopped during the update: {}",
                lost.join(", ")
            ));
        }
    }
    sys.say(format!(
        "updated to banger {} ({}): {} file(s) swapped, {} unit file(s) rewritten; the helper (pid {}) answers",
        new_info.version,
        new_info.commit,
        swapped,
        written.len(),
        ping["pid"]
    ));
    Ok(json!({
        "v": 1,
        "type": "system",
        "name": "update",
        "from": opts.from,
        "before": {"version": info.version, "commit": info.commit, "helper_pid": before.as_ref().map(|p| p["pid"].clone())},
        "after": {"version": new_info.version, "commit": new_info.commit, "helper_pid": ping["pid"]},
        "files_swapped": swapped,
        "units_rewritten": written,
        "vms": vms_after.map(|v| v.into_iter().map(|(n, p)| json!({"name": n, "pid": p})).collect::<Vec<_>>()),
    }))
}
