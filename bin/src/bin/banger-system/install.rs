//! `banger-system install`: the binaries, man pages and completions in their system places,
//! install.json and config.json, banger's directories, the units; then the helper answering
//! the owner. Running it again changes nothing that is already right.

use crate::files;
use crate::owner::Owner;
use crate::source::Build;
use crate::system::{self, destinations, Sys, SystemError};
use crate::units;
use banger::config::InstallInfo;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

pub struct Options {
    pub owner: Option<String>,
    pub from: PathBuf,
    pub firecracker: Option<PathBuf>,
    pub jailer: Option<PathBuf>,
}

/// Where a Firecracker binary comes from: the flag, config.json, the environment, root's PATH.
fn find_binary(
    what: &'static str,
    flag: Option<&PathBuf>,
    configured: Option<&PathBuf>,
    var: &str,
) -> Result<Option<(PathBuf, &'static str)>, SystemError> {
    let env = std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from);
    let found = flag
        .map(|p| (p.clone(), "--flag"))
        .or_else(|| configured.map(|p| (p.clone(), "config.json")))
        .or_else(|| env.map(|p| (p, "environment")))
        .or_else(|| banger::cli::which(what).map(|p| (p, "PATH")));
    let Some((path, from)) = found else {
        return Ok(None);
    };
    let abs = if path.is_absolute() {
        path
    } else {
        std::env::current_dir()
            .map(|d| d.join(&path))
            .unwrap_or(path)
    };
    if !banger::cli::is_executable(&abs) {
        return Err(SystemError::NotExecutable { what, path: abs });
    }
    Ok(Some((abs, from)))
}

/// What install did, as a record for stdout.
pub fn install(sys: &Sys, opts: &Options) -> Result<Value, SystemError> {
    let owner = Owner::resolve(opts.owner.as_deref())?;
    let previous = sys.install_info().ok();
    if let Some(p) = previous.as_ref().filter(|p| p.uid != owner.uid) {
        sys.say(format!(
            "the owner changes from {} (uid {}) to {} (uid {})",
            p.owner, p.uid, owner.name, owner.uid
        ));
    }
    let build = Build::find(&opts.from)?;
    let mut changed: Vec<String> = Vec::new();

    // config.json: the Firecracker and jailer the helper and the owner's steps will use.
    let mut file = sys.config_file()?;
    let fc = find_binary(
        "firecracker",
        opts.firecracker.as_ref(),
        file.firecracker.as_ref(),
        "BANGER_FIRECRACKER",
    )?;
    let jailer = find_binary(
        "jailer",
        opts.jailer.as_ref(),
        file.jailer.as_ref(),
        "BANGER_JAILER",
    )?;
    for (what, found) in [("firecracker", &fc), ("jailer", &jailer)] {
        match found {
            Some((p, from)) => sys.say(format!("{what}: {} (from {from})", p.display())),
            None => sys.say(format!(
                "warning: no {what} found (flag, config.json, BANGER_{}, PATH): VMs cannot start until you rerun with --{what} PATH",
                what.to_uppercase()
            )),
        }
    }
    file.firecracker = fc.map(|(p, _)| p);
    file.jailer = jailer.map(|(p, _)| p);
    system::ensure_dir(&sys.cfg.config_dir, 0, 0, 0o755)?;
    if sys.write_config_file(&file)? {
        changed.push(format!("wrote {}", sys.config_path().display()));
    }

    // Directories.
    changed.extend(sys.make_dirs(&owner)?);

    // Files.
    let mut installed: Vec<PathBuf> = Vec::new();
    let mut wrote_files = 0usize;
    for (src, dst, mode) in destinations(&build, &sys.layout.prefix) {
        if !files::same(&src, &dst, Some(mode)) {
            files::replace(&src, &dst, mode)?;
            wrote_files += 1;
        }
        installed.push(dst);
    }
    if wrote_files > 0 {
        changed.push(format!(
            "installed {wrote_files} of {} files (binaries, scripts, man pages, completions) under {}",
            installed.len(),
            sys.layout.prefix.display()
        ));
    }
    // What an earlier install put there and this build no longer has.
    if let Some(p) = &previous {
        for old in p.files.iter().filter(|f| !installed.contains(f)) {
            if old.exists() {
                files::remove(old)?;
                changed.push(format!("removed {} (not in this build)", old.display()));
            }
        }
    }

    // install.json.
    let bindir = sys.layout.bindir();
    let system_bin = bindir.join("banger-system");
    let helper_bin = bindir.join("banger-helper");
    let (version, commit) = system::build_version(&system_bin);
    let info = InstallInfo {
        owner: owner.name.clone(),
        uid: owner.uid,
        gid: owner.gid,
        home: owner.home.clone(),
        version,
        commit,
        built_at: system::mtime(&helper_bin),
        installed_at: previous
            .as_ref()
            .map(|p| p.installed_at.clone())
            .filter(|t| !t.is_empty())
            .unwrap_or_else(banger::record::now_rfc3339),
        updated_at: previous
            .as_ref()
            .map(|p| p.updated_at.clone())
            .unwrap_or_default(),
        prefix: sys.layout.prefix.clone(),
        files: installed,
        units: sys.unit_paths(),
        extra: previous
            .as_ref()
            .map(|p| p.extra.clone())
            .unwrap_or_default(),
    };
    let owner_changed = previous.as_ref().is_none_or(|p| p.uid != owner.uid);
    if sys.write_install_info(&info)? {
        changed.push(format!("wrote {}", sys.cfg.install_path().display()));
    }

    // Units.
    let rendered = sys.render_units(&owner, &system_bin)?;
    let written = sys.write_units(&rendered)?;
    for w in &written {
        changed.push(format!("wrote {}", w.display()));
    }
    if !written.is_empty() {
        sys.ctl.daemon_reload()?;
    }
    let socket_changed = written
        .iter()
        .any(|w| w.file_name().is_some_and(|n| n == units::SOCKET));
    let service_active = sys.ctl.is_active(units::SERVICE) == "active";
    if service_active && (socket_changed || owner_changed) {
        sys.restart_helper(true)?;
        changed.push("restarted the helper and its socket".into());
    } else if service_active && !changed.is_empty() {
        sys.restart_helper(false)?;
        changed.push("restarted the helper".into());
    }
    changed.extend(sys.enable_and_start()?);

    // The helper must answer the owner, running the file just installed.
    let exe = files::sha256(&helper_bin)?;
    let ping = sys.wait_helper(Some(&owner), Some(&exe), 20)?;
    if changed.is_empty() {
        sys.say("nothing to change: everything was already installed as it should be");
    } else {
        for c in &changed {
            sys.say(c);
        }
    }
    sys.say(format!(
        "banger {} ({}) is installed for {}; the helper (pid {}) answers on {}",
        info.version,
        info.commit,
        owner.name,
        ping["pid"],
        sys.cfg.helper_socket.display()
    ));
    Ok(json!({
        "v": 1,
        "type": "system",
        "name": "install",
        "owner": owner.name,
        "uid": owner.uid,
        "version": info.version,
        "commit": info.commit,
        "prefix": sys.layout.prefix,
        "files": info.files.len(),
        "files_written": wrote_files,
        "changed": changed,
        "helper": {"pid": ping["pid"], "version": ping["version"], "commit": ping["commit"]},
        "firecracker": file.firecracker,
        "jailer": file.jailer,
    }))
}

/// The directory a build is taken from by default: the running binary's.
pub fn default_from() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("."))
}
