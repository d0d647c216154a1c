//! Paths and configuration, from one place.
//!
//! Precedence: environment (`BANGER_*`) over the config file (`$BANGER_CONFIG_DIR/config.json`,
//! default `/etc/banger/config.json`) over the defaults for an installed host. Tests and
//! unprivileged users relocate everything through the environment.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Default subnet for the guests' bridge.
pub const DEFAULT_SUBNET: &str = "10.200.0.0/24";
/// Default bridge name.
pub const DEFAULT_BRIDGE: &str = "banger0";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path} is not valid JSON")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "config file {path} is valid JSON, but {why} (see banger(7), ENVIRONMENT, for the keys)"
    )]
    Invalid { path: PathBuf, why: String },
    #[error("{var}={value:?} is not valid: {why}")]
    Env {
        var: &'static str,
        value: String,
        why: &'static str,
    },
}

/// The optional config file; every key may be absent.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    pub state_dir: Option<PathBuf>,
    pub run_dir: Option<PathBuf>,
    pub helper_socket: Option<PathBuf>,
    pub root_dir: Option<PathBuf>,
    pub jail_dir: Option<PathBuf>,
    pub subnet: Option<String>,
    pub bridge: Option<String>,
    pub firecracker: Option<PathBuf>,
    pub jailer: Option<PathBuf>,
    /// The static banger-agent binary put into guests that lack one.
    pub agent: Option<PathBuf>,
    pub boot_args_extra: Option<String>,
    pub console_max_bytes: Option<u64>,
    /// Lets the owner forward host ports below 1024 (root always may).
    pub allow_privileged_ports: Option<bool>,
}

/// Default size at which a VM's console log is rotated (one old generation is kept).
pub const DEFAULT_CONSOLE_MAX_BYTES: u64 = 8 << 20;

/// What `banger-system install` writes to `$BANGER_CONFIG_DIR/install.json`: who the helper
/// serves and what was installed, so the client's guidance, `banger-system status`, `update`
/// and `uninstall` all work from the same facts.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
pub struct InstallInfo {
    /// The owner's user name, uid, primary gid and home.
    pub owner: String,
    pub uid: u32,
    pub gid: u32,
    #[serde(default)]
    pub home: PathBuf,
    /// The installed build: version, git commit, and when its binaries were built
    /// (the helper binary's modification time, RFC 3339).
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub commit: String,
    #[serde(default)]
    pub built_at: String,
    #[serde(default)]
    pub installed_at: String,
    /// When `banger-system update` last swapped the binaries, if ever.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub updated_at: String,
    /// The installation prefix (binaries in `PREFIX/bin`).
    #[serde(default)]
    pub prefix: PathBuf,
    /// Every file install wrote (binaries, scripts, man pages, completions), for uninstall.
    #[serde(default)]
    pub files: Vec<PathBuf>,
    /// The systemd units (and the tmpfiles.d snippet) install wrote.
    #[serde(default)]
    pub units: Vec<PathBuf>,
    /// Keys a newer banger wrote, kept when this one rewrites the file.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// The resolved configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where `/etc/banger`-style files live (config.json, install.json).
    pub config_dir: PathBuf,
    /// The owner's state: VM records, VM dirs, images, locks.
    pub state_dir: PathBuf,
    /// Runtime files: API socket symlinks, hosts file.
    pub run_dir: PathBuf,
    /// The root helper's socket.
    pub helper_socket: PathBuf,
    /// The helper's own root-owned state (the ledger).
    pub root_dir: PathBuf,
    /// Base of the jailer chroots.
    pub jail_dir: PathBuf,
    pub subnet: String,
    pub bridge: String,
    pub firecracker: Option<PathBuf>,
    pub jailer: Option<PathBuf>,
    /// The static banger-agent binary put into guests (`agent`, `BANGER_AGENT`); else the
    /// one installed beside banger (see [`crate::agent::guest_binary_path`]).
    pub agent: Option<PathBuf>,
    pub boot_args_extra: String,
    /// A console log is rotated past this size (`console.log` -> `console.log.1`).
    pub console_max_bytes: u64,
    /// Set from install.json, or `BANGER_OWNER_UID` (tests).
    pub owner_uid: Option<u32>,
    /// The owner's primary group (from the passwd entry), or as configured.
    pub owner_gid: Option<u32>,
    /// May the owner forward host ports below 1024 (`allow_privileged_ports`)?
    pub allow_privileged_ports: bool,
}

fn env_path(var: &str) -> Option<PathBuf> {
    std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

fn env_str(var: &str) -> Option<String> {
    std::env::var(var).ok().filter(|v| !v.is_empty())
}

fn env_u32(var: &'static str) -> Result<Option<u32>, ConfigError> {
    match env_str(var) {
        None => Ok(None),
        Some(v) => v.parse().map(Some).map_err(|_| ConfigError::Env {
            var,
            value: v,
            why: "expected a numeric id",
        }),
    }
}

impl Config {
    /// Loads the configuration: environment over config file over defaults.
    pub fn load() -> Result<Config, ConfigError> {
        let config_dir = env_path("BANGER_CONFIG_DIR").unwrap_or_else(|| "/etc/banger".into());
        let file = read_config_file(&config_dir.join("config.json"))?;
        let install = read_install(&config_dir).ok().flatten();
        let owner_uid = env_u32("BANGER_OWNER_UID")?.or(install.as_ref().map(|i| i.uid));
        let owner_gid = env_u32("BANGER_OWNER_GID")?
            .or(install.as_ref().map(|i| i.gid))
            .or_else(|| owner_uid.map(primary_gid));
        Ok(Config {
            state_dir: env_path("BANGER_STATE_DIR")
                .or(file.state_dir)
                .unwrap_or_else(|| "/var/lib/banger".into()),
            run_dir: env_path("BANGER_RUN_DIR")
                .or(file.run_dir)
                .unwrap_or_else(|| "/run/banger".into()),
            helper_socket: env_path("BANGER_HELPER_SOCKET")
                .or(file.helper_socket)
                .unwrap_or_else(|| "/run/banger-root/helper.sock".into()),
            root_dir: env_path("BANGER_ROOT_DIR")
                .or(file.root_dir)
                .unwrap_or_else(|| "/var/lib/banger-root".into()),
            jail_dir: env_path("BANGER_JAIL_DIR")
                .or(file.jail_dir)
                .unwrap_or_else(|| "/srv/jailer".into()),
            subnet: env_str("BANGER_SUBNET")
                .or(file.subnet)
                .unwrap_or_else(|| DEFAULT_SUBNET.into()),
            bridge: env_str("BANGER_BRIDGE")
                .or(file.bridge)
                .unwrap_or_else(|| DEFAULT_BRIDGE.into()),
            firecracker: env_path("BANGER_FIRECRACKER").or(file.firecracker),
            jailer: env_path("BANGER_JAILER").or(file.jailer),
            agent: env_path("BANGER_AGENT").or(file.agent),
            boot_args_extra: env_str("BANGER_BOOT_ARGS_EXTRA")
                .or(file.boot_args_extra)
                .unwrap_or_default(),
            console_max_bytes: match env_str("BANGER_CONSOLE_MAX_BYTES") {
                Some(v) => v
                    .parse()
                    .ok()
                    .filter(|n| *n >= 1024)
                    .ok_or(ConfigError::Env {
                        var: "BANGER_CONSOLE_MAX_BYTES",
                        value: v,
                        why: "expected a number of bytes, at least 1024",
                    })?,
                None => file.console_max_bytes.unwrap_or(DEFAULT_CONSOLE_MAX_BYTES),
            },
            allow_privileged_ports: match env_str("BANGER_ALLOW_PRIVILEGED_PORTS").as_deref() {
                None => file.allow_privileged_ports.unwrap_or(false),
                Some("1" | "true" | "yes") => true,
                Some("0" | "false" | "no") => false,
                Some(v) => {
                    return Err(ConfigError::Env {
                        var: "BANGER_ALLOW_PRIVILEGED_PORTS",
                        value: v.into(),
                        why: "expected true or false",
                    })
                }
            },
            config_dir,
            owner_uid,
            owner_gid,
        })
    }

    /// The owner's credentials, for the owner's files when root runs a step (work done
    /// with them, so root never follows what the owner controls). None when this process is
    /// not root (it works with its own rights anyway) or no owner other than root is
    /// configured; the passwd and group lookup (0.5-0.8 ms, NSS loaded on the first) is made
    /// only when they are needed, and once per process: a step lives for milliseconds (the
    /// long-lived helper looks them up itself, at its start).
    pub fn owner_creds(&self) -> Option<crate::detach::Creds> {
        use crate::detach::Creds;
        static SEEN: std::sync::Mutex<Option<(u32, u32, Creds)>> = std::sync::Mutex::new(None);
        if !rustix::process::geteuid().is_root() {
            return None;
        }
        let uid = self.owner_uid.filter(|u| *u != 0)?;
        let gid = self.owner_gid.unwrap_or(uid);
        let mut seen = SEEN.lock().unwrap_or_else(|p| p.into_inner());
        match &*seen {
            Some((u, g, c)) if (*u, *g) == (uid, gid) => Some(c.clone()),
            _ => {
                let c = Creds::of_user(uid, gid);
                *seen = Some((uid, gid, c.clone()));
                Some(c)
            }
        }
    }

    /// Makes `uid` the owner, with its primary group.
    pub fn set_owner(&mut self, uid: u32) {
        self.owner_uid = Some(uid);
        self.owner_gid = Some(primary_gid(uid));
    }

    /// `state/vms`: one directory per VM, holding `vm.json` and the VM's files.
    pub fn vms_dir(&self) -> PathBuf {
        self.state_dir.join("vms")
    }
    /// `state/vms/NAME`.
    pub fn vm_dir(&self, name: &str) -> PathBuf {
        self.vms_dir().join(name)
    }
    /// `state/images`: the image store.
    pub fn images_dir(&self) -> PathBuf {
        self.state_dir.join("images")
    }
    /// `state/locks`: lock files (never deleted, so flock stays race-free).
    pub fn locks_dir(&self) -> PathBuf {
        self.state_dir.join("locks")
    }
    /// The helper's ledger file.
    pub fn ledger_path(&self) -> PathBuf {
        self.root_dir.join("ledger.json")
    }
    /// install.json, written by `banger-system install`.
    pub fn install_path(&self) -> PathBuf {
        self.config_dir.join("install.json")
    }
    /// Install metadata, if banger was installed on this host.
    pub fn install_info(&self) -> Option<InstallInfo> {
        read_install(&self.config_dir).ok().flatten()
    }
}

/// The primary group of `uid` from its passwd entry; a uid without one (a bare uid in
/// tests) uses the number itself.
pub fn primary_gid(uid: u32) -> u32 {
    match nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)) {
        Ok(Some(u)) => u.gid.as_raw(),
        _ => uid,
    }
}

/// Why `bytes` is not a config file: not JSON at all, or JSON with a key or value banger
/// does not know (named, with the key it may have meant).
fn config_error(path: &Path, source: serde_json::Error) -> ConfigError {
    if source.classify() != serde_json::error::Category::Data {
        return ConfigError::Parse {
            path: path.to_path_buf(),
            source,
        };
    }
    let msg = source.to_string();
    // serde: "unknown field `stat_dir`, expected one of `state_dir`, ... at line 1 column 11"
    let unknown = msg
        .strip_prefix("unknown field `")
        .and_then(|r| r.split_once('`'));
    let why = match unknown {
        Some((key, rest)) => {
            let known: Vec<&str> = rest.split('`').skip(1).step_by(2).collect();
            match crate::cli::closest(key, known) {
                Some(near) => format!("it has the unknown key {key:?} (did you mean {near:?}?)"),
                None => format!("it has the unknown key {key:?}"),
            }
        }
        None => format!(
            "a value has the wrong type ({})",
            msg.split(" at line ").next().unwrap_or(&msg)
        ),
    };
    ConfigError::Invalid {
        path: path.to_path_buf(),
        why,
    }
}

fn read_config_file(path: &Path) -> Result<ConfigFile, ConfigError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| config_error(path, source)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ConfigFile::default()),
        Err(source) => Err(ConfigError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

fn read_install(config_dir: &Path) -> Result<Option<InstallInfo>, ConfigError> {
    let path = config_dir.join("install.json");
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| ConfigError::Parse { path, source }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(ConfigError::Read { path, source }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_file_rejects_unknown_keys() {
        let err = serde_json::from_str::<ConfigFile>(r#"{"stat_dir": "/x"}"#);
        assert!(err.is_err());
        let ok: ConfigFile = serde_json::from_str(r#"{"state_dir": "/x"}"#).unwrap();
        assert_eq!(ok.state_dir, Some(PathBuf::from("/x")));
    }

    #[test]
    fn an_unknown_key_is_named_not_called_invalid_json() {
        let p = Path::new("/etc/banger/config.json");
        let text = br#"{"stat_dir": "/x"}"#;
        let e = serde_json::from_slice::<ConfigFile>(text).unwrap_err();
        let msg = config_error(p, e).to_string();
        assert!(
            msg.contains("valid JSON, but it has the unknown key \"stat_dir\""),
            "{msg}"
        );
        assert!(msg.contains("did you mean \"state_dir\"?"), "{msg}");
        let text = br#"{"subnet": 5}"#;
        let e = serde_json::from_slice::<ConfigFile>(text).unwrap_err();
        let msg = config_error(p, e).to_string();
        assert!(msg.contains("a value has the wrong type"), "{msg}");
        let text = b"{nope";
        let e = serde_json::from_slice::<ConfigFile>(text).unwrap_err();
        assert!(config_error(p, e)
            .to_string()
            .ends_with("is not valid JSON"));
    }

    #[test]
    fn missing_files_are_defaults() {
        let dir = std::env::temp_dir().join(format!("banger-cfg-{}", std::process::id()));
        assert!(read_config_file(&dir.join("config.json")).is_ok());
        assert!(read_install(&dir).unwrap().is_none());
    }
}
