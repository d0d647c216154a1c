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

/// Rewrites the hosts file.
pub fn refresh(cfg: &Config, helper: &Helper) -> Result<PathBuf, HostsError> {
    let dir = &cfg.run_dir;
    std::fs::create_dir_all(dir).map_err(|source| HostsError::Mkdir {
        path: dir.clone(),
        source,
    })?;
    let lock_path = dir.join("hosts.lock");
    let _g = Lock::exclusive(&lock_path).map_err(|source| HostsError::Lock {
        path: lock_path,
        source,
    })?;
    let list = helper
        .call("net.list", json!({}))
        .map_err(HostsError::List)?;
    let path = dir.join("hosts");
    // Derived from the ledger and rewritten on every up and down: never worth a sync.
    let bytes = render(&list);
    write_with(&path, bytes.as_bytes(), 0o644, None, Durability::Volatile).map_err(|source| {
        HostsError::Write {
            path: path.clone(),
            source,
        }
    })?;
    Ok(path)
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
