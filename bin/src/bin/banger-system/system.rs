//! What install, update, status and uninstall share: where things go, the install metadata
//! and config files, the directories, and rendering and applying the units.

use crate::files::{self, FileError};
use crate::owner::{Owner, OwnerError};
use crate::probe::Probe;
use crate::source::{Build, SourceError};
use crate::systemd::{Systemctl, SystemdError};
use crate::units::{self, UnitError};
use banger::config::{Config, ConfigFile, InstallInfo};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum SystemError {
    #[error("banger-system {what} must run as root: sudo banger system {what}")]
    NotRoot { what: &'static str },
    #[error("banger is not installed on this host (no {path}): run: sudo banger system install")]
    NotInstalled { path: PathBuf },
    #[error("cannot read {path}")]
    Meta {
        path: PathBuf,
        #[source]
        source: banger::config::ConfigError,
    },
    #[error(transparent)]
    Owner(#[from] OwnerError),
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    File(#[from] FileError),
    #[error(transparent)]
    Unit(#[from] UnitError),
    #[error(transparent)]
    Systemd(#[from] SystemdError),
    #[error("{what} {path} is not an executable file")]
    NotExecutable { what: &'static str, path: PathBuf },
    #[error("cannot {what} {path}")]
    Dir {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot render the units with {bin}: {why}")]
    Render { bin: PathBuf, why: String },
    #[error("the helper does not answer {who} after {secs} s: {last}; its log: journalctl -u banger-helper.service")]
    NoAnswer {
        who: String,
        secs: u64,
        last: String,
    },
    #[error("{0}")]
    Refused(String),
    #[error("{what}: {why}")]
    Failed { what: String, why: String },
}

/// Where banger's files and units go.
#[derive(Debug, Clone)]
pub struct Layout {
    pub prefix: PathBuf,
    pub unit_dir: PathBuf,
    pub tmpfiles_dir: PathBuf,
}

impl Layout {
    pub fn system(prefix: &Path) -> Layout {
        Layout {
            prefix: prefix.to_path_buf(),
            unit_dir: "/etc/systemd/system".into(),
            tmpfiles_dir: "/etc/tmpfiles.d".into(),
        }
    }
    pub fn bindir(&self) -> PathBuf {
        self.prefix.join("bin")
    }
}

/// Everything a subcommand works with.
pub struct Sys<'a> {
    pub ctl: &'a dyn Systemctl,
    pub probe: &'a dyn Probe,
    pub cfg: Config,
    pub layout: Layout,
    /// Lines for people, on stderr.
    pub quiet: bool,
    /// Render the units with the installed build's own `banger-system units` when it is not
    /// the running binary (always, outside tests).
    pub units_from_build: bool,
}

impl Sys<'_> {
    pub fn say(&self, msg: impl AsRef<str>) {
        if !self.quiet {
            eprintln!("banger-system: {}", msg.as_ref());
        }
    }

    pub fn config_path(&self) -> PathBuf {
        self.cfg.config_dir.join("config.json")
    }

    /// install.json, or the error that says to install.
    pub fn install_info(&self) -> Result<InstallInfo, SystemError> {
        let path = self.cfg.install_path();
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(SystemError::NotInstalled { path })
            }
            Err(source) => {
                return Err(SystemError::Meta {
                    path: path.clone(),
                    source: banger::config::ConfigError::Read { path, source },
                })
            }
        };
        serde_json::from_slice(&bytes).map_err(|source| SystemError::Meta {
            path: path.clone(),
            source: banger::config::ConfigError::Parse { path, source },
        })
    }

    /// Writes install.json when its content changes. Returns whether it did.
    pub fn write_install_info(&self, info: &InstallInfo) -> Result<bool, SystemError> {
        let mut text = serde_json::to_string_pretty(info).unwrap_or_default();
        text.push('\n');
        write_if_changed(&self.cfg.install_path(), &text, 0o644)
    }

    /// The config file's keys (absent file: none).
    pub fn config_file(&self) -> Result<ConfigFile, SystemError> {
        let path = self.config_path();
        match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|source| SystemError::Meta {
                path: path.clone(),
                source: banger::config::ConfigError::Parse { path, source },
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ConfigFile::default()),
            Err(source) => Err(SystemError::Meta {
                path: path.clone(),
                source: banger::config::ConfigError::Read { path, source },
            }),
        }
    }

    /// Writes config.json (absent keys left out) when it changes.
    pub fn write_config_file(&self, file: &ConfigFile) -> Result<bool, SystemError> {
        let mut v = serde_json::to_value(file).unwrap_or_default();
        if let Some(m) = v.as_object_mut() {
            m.retain(|_, v| !v.is_null());
        }
        let mut text = serde_json::to_string_pretty(&v).unwrap_or_default();
        text.push('\n');
        write_if_changed(&self.config_path(), &text, 0o644)
    }

    /// The unit parameters for this host and owner.
    pub fn params(&self, owner: &Owner) -> units::Params {
        units::Params {
            owner: owner.name.clone(),
            group: owner.group.clone(),
            bindir: self.layout.bindir(),
            socket: self.cfg.helper_socket.clone(),
            state_dir: self.cfg.state_dir.clone(),
            run_dir: self.cfg.run_dir.clone(),
            root_dir: self.cfg.root_dir.clone(),
            jail_dir: self.cfg.jail_dir.clone(),
        }
    }

    /// Every unit file (and the tmpfiles.d snippet) this install has.
    pub fn unit_paths(&self) -> Vec<PathBuf> {
        units::TEMPLATES
            .iter()
            .map(|(n, _)| units::target(n, &self.layout.unit_dir, &self.layout.tmpfiles_dir))
            .collect()
    }

    /// Makes banger's directories, or fixes their owner and mode. Returns what changed.
    pub fn make_dirs(&self, owner: &Owner) -> Result<Vec<String>, SystemError> {
        let dirs: [(&Path, u32, u32, u32); 5] = [
            (&self.cfg.config_dir, 0, 0, 0o755),
            (&self.cfg.state_dir, owner.uid, owner.gid, 0o750),
            (&self.cfg.run_dir, owner.uid, owner.gid, 0o750),
            (&self.cfg.root_dir, 0, 0, 0o700),
            (&self.cfg.jail_dir, 0, 0, 0o755),
        ];
        let mut changed = Vec::new();
        for (dir, uid, gid, mode) in dirs {
            if let Some(what) = ensure_dir(dir, uid, gid, mode)? {
                changed.push(format!("{what} {}", dir.display()));
            }
        }
        Ok(changed)
    }

    /// Renders the units with the build's own templates: in process when the running
    /// banger-system is that build's, else by running the build's `banger-system units`.
    pub fn render_units(
        &self,
        owner: &Owner,
        system_bin: &Path,
    ) -> Result<Vec<(PathBuf, String)>, SystemError> {
        let same = !self.units_from_build
            || std::env::current_exe()
                .ok()
                .is_some_and(|me| files::same(&me, system_bin, None));
        let rendered: Vec<(String, String)> = if same {
            units::render(&self.params(owner))?
                .into_iter()
                .map(|(n, t)| (n.to_string(), t))
                .collect()
        } else {
            self.render_with(owner, system_bin)?
        };
        Ok(rendered
            .into_iter()
            .map(|(name, text)| {
                (
                    units::target(&name, &self.layout.unit_dir, &self.layout.tmpfiles_dir),
                    text,
                )
            })
            .collect())
    }

    fn render_with(&self, owner: &Owner, bin: &Path) -> Result<Vec<(String, String)>, SystemError> {
        let fail = |why: String| SystemError::Render {
            bin: bin.to_path_buf(),
            why,
        };
        let dir = crate::fetch::temp_dir("units")?;
        let tmp = dir.0.clone();
        let out = std::process::Command::new(bin)
            .arg("units")
            .arg("--owner")
            .arg(&owner.name)
            .arg("--prefix")
            .arg(&self.layout.prefix)
            .arg("--out")
            .arg(&tmp)
            .env("BANGER_CONFIG_DIR", &self.cfg.config_dir)
            .output()
            .map_err(|e| fail(e.to_string()))?;
        let result = (|| {
            if !out.status.success() {
                return Err(fail(
                    String::from_utf8_lossy(&out.stderr).trim().to_string(),
                ));
            }
            let mut v = Vec::new();
            for (name, _) in units::TEMPLATES {
                // An older build may lack a template this one has; it renders what it has.
                if let Ok(text) = std::fs::read_to_string(tmp.join(name)) {
                    v.push((name.to_string(), text));
                }
            }
            Ok(v)
        })();
        drop(dir);
        result
    }

    /// Writes the units whose text changed; returns the paths written.
    pub fn write_units(&self, rendered: &[(PathBuf, String)]) -> Result<Vec<PathBuf>, SystemError> {
        let mut written = Vec::new();
        for (path, text) in rendered {
            if write_if_changed(path, text, 0o644)? {
                written.push(path.clone());
            }
        }
        Ok(written)
    }

    /// Enables and starts the socket and the timer, and enables the boot run (what is already
    /// so is left alone).
    pub fn enable_and_start(&self) -> Result<Vec<String>, SystemError> {
        let mut did = Vec::new();
        for u in units::ENABLED_AT_BOOT {
            if self.ctl.is_enabled(u) != "enabled" {
                self.ctl.must(&["enable", u])?;
                did.push(format!("enabled {u}"));
            }
        }
        for u in units::ENABLED {
            if self.ctl.is_enabled(u) != "enabled" {
                self.ctl.must(&["enable", u])?;
                did.push(format!("enabled {u}"));
            }
            if self.ctl.is_active(u) != "active" {
                self.ctl.must(&["start", u])?;
                did.push(format!("started {u}"));
            }
        }
        Ok(did)
    }

    /// Restarts the helper: the service alone (the socket keeps queueing connections), or
    /// with its socket when the socket unit itself changed. Firecracker is never signalled
    /// (KillMode=process).
    pub fn restart_helper(&self, with_socket: bool) -> Result<(), SystemError> {
        // A helper that failed (or restarted often, as updates and rollbacks do) may have hit
        // systemd's start limit, which fails the socket too: clear that first.
        let _ = self
            .ctl
            .run(&["reset-failed", units::SERVICE, units::SOCKET]);
        if with_socket {
            self.ctl.must(&["stop", units::SERVICE, units::SOCKET])?;
            self.ctl.must(&["start", units::SOCKET])?;
        } else {
            self.ctl.must(&["start", units::SOCKET])?;
            self.ctl.must(&["restart", units::SERVICE])?;
        }
        Ok(())
    }

    /// Waits until the helper answers `ping` as `owner` would, running `exe` when given.
    pub fn wait_helper(
        &self,
        owner: Option<&Owner>,
        exe: Option<&str>,
        secs: u64,
    ) -> Result<serde_json::Value, SystemError> {
        let who = owner.map(|o| (o.uid, o.gid));
        crate::probe::wait_ping(
            self.probe,
            &self.cfg,
            who,
            exe,
            std::time::Duration::from_secs(secs),
        )
        .map_err(|last| SystemError::NoAnswer {
            who: owner.map_or("root".into(), |o| format!("{} (uid {})", o.name, o.uid)),
            secs,
            last,
        })
    }

    /// The VMs whose Firecracker runs, by the helper's ledger: (name, pid).
    pub fn running_vms(&self) -> Result<Vec<(String, i64)>, SystemError> {
        let v = self
            .probe
            .call(&self.cfg, "jail.list", serde_json::json!({}))
            .map_err(|why| SystemError::Failed {
                what:
                    "cannot ask the helper which VMs run (sudo banger system restart, then retry)"
                        .into(),
                why,
            })?;
        Ok(v["jails"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter(|j| j["running"] == true)
                    .map(|j| {
                        (
                            j["name"].as_str().unwrap_or("?").to_string(),
                            j["live_pid"].as_i64().unwrap_or(0),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default())
    }
}

/// Writes `text` to `path` unless it already holds exactly that. Returns whether it wrote.
pub fn write_if_changed(path: &Path, text: &str, mode: u32) -> Result<bool, SystemError> {
    if files::same_text(path, text, mode) {
        return Ok(false);
    }
    files::write_text(path, text, mode)?;
    Ok(true)
}

/// Makes `dir` (mode, owner) or fixes an existing one; never follows a symlink. Returns what
/// it did, if anything.
pub fn ensure_dir(
    dir: &Path,
    uid: u32,
    gid: u32,
    mode: u32,
) -> Result<Option<&'static str>, SystemError> {
    let err = |what: &'static str| {
        let path = dir.to_path_buf();
        move |source| SystemError::Dir { what, path, source }
    };
    let made = match std::fs::symlink_metadata(dir) {
        Ok(m) if m.is_dir() => false,
        Ok(_) => {
            return Err(SystemError::Dir {
                what: "use",
                path: dir.to_path_buf(),
                source: std::io::Error::other("it exists and is not a directory"),
            })
        }
        Err(_) => {
            if let Some(parent) = dir.parent() {
                files::mkdirs(parent)?;
            }
            std::fs::create_dir(dir).map_err(err("create"))?;
            true
        }
    };
    let m = std::fs::symlink_metadata(dir).map_err(err("stat"))?;
    let mut fixed = false;
    if m.uid() != uid || m.gid() != gid {
        std::os::unix::fs::lchown(dir, Some(uid), Some(gid)).map_err(err("chown"))?;
        fixed = true;
    }
    if m.permissions().mode() & 0o7777 != mode {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
            .map_err(err("chmod"))?;
        fixed = true;
    }
    Ok(match (made, fixed) {
        (true, _) => Some("created"),
        (false, true) => Some("fixed owner/mode of"),
        (false, false) => None,
    })
}

/// The owner recorded in install.json (looked up again, so a renamed group is seen).
pub fn owner_of(info: &InstallInfo) -> Owner {
    Owner::resolve(Some(&info.uid.to_string())).unwrap_or_else(|_| Owner {
        name: info.owner.clone(),
        uid: info.uid,
        gid: info.gid,
        group: info.gid.to_string(),
        home: info.home.clone(),
    })
}

/// Requires root.
pub fn require_root(what: &'static str) -> Result<(), SystemError> {
    if rustix::process::geteuid().is_root() {
        Ok(())
    } else {
        Err(SystemError::NotRoot { what })
    }
}

/// A build's version and commit, from its `banger-system --version`
/// (`banger-system 0.1.0 (commit abc)`).
pub fn build_version(system_bin: &Path) -> (String, String) {
    let out = std::process::Command::new(system_bin)
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    parse_version(&out)
}

pub fn parse_version(line: &str) -> (String, String) {
    let mut words = line.split_whitespace().skip(1);
    let version = words.next().unwrap_or("unknown").to_string();
    let commit = line
        .split_once("(commit ")
        .and_then(|(_, r)| r.strip_suffix(')'))
        .unwrap_or("unknown")
        .to_string();
    (version, commit)
}

/// When a file was last modified, RFC 3339 (the build time of a freshly linked binary).
pub fn mtime(path: &Path) -> String {
    std::fs::metadata(path)
        .ok()
        .map(|m| banger::record::rfc3339(m.mtime().max(0) as u64))
        .unwrap_or_default()
}

/// The files a build installs under `prefix`: (source, destination, mode).
pub fn destinations(build: &Build, prefix: &Path) -> Vec<(PathBuf, PathBuf, u32)> {
    build
        .items
        .iter()
        .map(|i| (i.src.clone(), prefix.join(&i.rel), i.mode))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse() {
        assert_eq!(
            parse_version("banger-system 0.1.0 (commit 41e6932abcde)"),
            ("0.1.0".to_string(), "41e6932abcde".to_string())
        );
        assert_eq!(
            parse_version("banger-system 0.1.0"),
            ("0.1.0".to_string(), "unknown".to_string())
        );
        assert_eq!(
            parse_version(""),
            ("unknown".to_string(), "unknown".to_string())
        );
    }
}
