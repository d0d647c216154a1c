//! `$run_dir/hosts`: `IP NAME NAME.banger` for every VM with a network, in hosts(5) format,
//! so the host resolves VM names (`banger-vm ssh`, or `HOSTALIASES`/an /etc/hosts include).
//!
//! Rewritten atomically under `$run_dir/hosts.lock` from the helper's list fetched *inside*
//! the lock, so the last writer always has the newest view and parallel pipelines cannot
//! drop each other's lines.

use banger::client::Helper;
use banger::config::Config;
use banger::store::{write_with, Durability, Lock};
use serde_json::{json, Value};
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum HostsError {
    #[error("cannot create {path}")]
    Mkdir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot lock {path}")]
    Lock {
        path: PathBuf,
        #[source]
        source: banger::store::StoreError,
    },
    #[error("cannot list the VM networks")]
    List(#[source] banger::client::ClientError),
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The file's text from `net.list`'s answer.
pub fn render(list: &Value) -> String {
    let mut out = String::from("# VM names, written by banger-net; do not edit\n");
    for v in list["vms"].as_array().into_iter().flatten() {
        if let (Some(ip), Some(name)) = (v["ip"].as_str(), v["vm"].as_str()) {
            out.push_str(&format!("{ip}\t{name} {name}.banger\n"));
        }
    }
    out
}

/// Takes the hosts file's lock (making the run dir if need be). Whoever holds it writes the
/// file from a list fetched while holding it.
pub fn lock(cfg: &Config) -> Result<Lock, HostsError> {
    let dir = &cfg.run_dir;
    std::fs::create_dir_all(dir).map_err(|source| HostsError::Mkdir {
        path: dir.clone(),
        source,
    })?;
    let lock_path = dir.join("hosts.lock");
    Lock::exclusive(&lock_path).map_err(|source| HostsError::Lock {
        path: lock_path,
        source,
    })
}

/// Writes the file from `list` (`net.list`'s answer, or `{"vms": hosts}` from the
/// `hosts` of a `net.up`/`net.down` answer), under the lock `_held`.
pub fn write(cfg: &Config, _held: &Lock, list: &Value) -> Result<PathBuf, HostsError> {
    let path = cfg.run_dir.join("hosts");
    // Derived from the ledger and rewritten on every up and down: never worth a sync.
    let bytes = render(list);
    write_with(&path, bytes.as_bytes(), 0o644, None, Durability::Volatile).map_err(|source| {
        HostsError::Write {
            path: path.clone(),
            source,
        }
    })?;
    Ok(path)
}

/// Rewrites the hosts file from the helper's `net.list`.
pub fn refresh(cfg: &Config, helper: &Helper) -> Result<PathBuf, HostsError> {
    let held = lock(cfg)?;
    let list = helper
        .call("net.list", json!({}))
        .map_err(HostsError::List)?;
    write(cfg, &held, &list)
}

/// Rewrites the hosts file after an op that answered with every VM's address (`hosts`),
/// made while `held` (from [`lock`]) was held, so no other writer came between; from
/// `net.list` when the answer has no `hosts` (an older helper).
#[allow(dead_code)] // banger-reconcile shares this file and refreshes from net.list only
pub fn refresh_after(
    cfg: &Config,
    helper: &Helper,
    held: Lock,
    answer: &Value,
) -> Result<PathBuf, HostsError> {
    match answer.get("hosts").filter(|h| h.is_array()) {
        Some(h) => write(cfg, &held, &json!({ "vms": h })),
        None => {
            let list = helper
                .call("net.list", json!({}))
                .map_err(HostsError::List)?;
            write(cfg, &held, &list)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_lines() {
        let l = json!({"vms": [{"vm": "a", "ip": "10.200.0.2"}, {"vm": "b"}, {"vm": "c", "ip": "10.200.0.4"}]});
        assert_eq!(
            render(&l),
            "# VM names, written by banger-net; do not edit\n10.200.0.2\ta a.banger\n10.200.0.4\tc c.banger\n"
        );
    }
}
