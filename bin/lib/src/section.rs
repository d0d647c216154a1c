//! The sections of a VM record as typed structs: `spec` (banger-vm new), `snap`
//! (banger-snap), `net` (banger-net), `jail` (banger-jail) and `vm` (banger-vm's life).
//!
//! Every field is optional (a record written by an older banger, or half-made, still reads),
//! and fields a struct does not know are kept in `extra` and written back unchanged. A
//! section of the wrong shape (`"vcpus": "two"`, `"net": "x"`) is an error naming the
//! section: a stored record with one is damaged, not guessed at.

use crate::record::Record;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// One section of a VM record.
pub trait Section: Serialize + DeserializeOwned + Default {
    /// Its key in the record.
    const KEY: &'static str;
}

/// Banger's own top-level keys: the envelope, the sections and `error`. A record on stdin
/// never overrides the store's values of these; every other key passes through.
pub const BANGER_KEYS: &[&str] = &[
    "v", "type", "name", "spec", "snap", "net", "jail", "vm", "error",
];

#[derive(Debug, thiserror::Error)]
#[error("the record's {key} section is not what banger writes")]
pub struct SectionError {
    pub key: &'static str,
    #[source]
    pub source: serde_json::Error,
}

/// The section `S` of `rec`: `None` when absent or null, an error when malformed.
pub fn get<S: Section>(rec: &Record) -> Result<Option<S>, SectionError> {
    match rec.get(S::KEY) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => S::deserialize(v).map(Some).map_err(|source| SectionError {
            key: S::KEY,
            source,
        }),
    }
}

/// Sets the section `S` of `rec` (in place when present, else appended).
pub fn put<S: Section>(rec: &mut Record, s: &S) {
    // Serializing these structs cannot fail: every map key is a string.
    if let Ok(v) = serde_json::to_value(s) {
        rec.insert(S::KEY.into(), v);
    }
}

/// Removes the section `S` of `rec`, keeping the order of the others.
pub fn remove<S: Section>(rec: &mut Record) {
    rec.shift_remove(S::KEY);
}

/// Checks that every section banger knows has the shape banger writes.
pub fn validate(rec: &Record) -> Result<(), SectionError> {
    get::<Spec>(rec)?;
    get::<Snap>(rec)?;
    get::<Net>(rec)?;
    get::<Jail>(rec)?;
    get::<Vm>(rec)?;
    Ok(())
}

/// `spec`: what the user asked for (`banger-vm new`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Spec {
    #[serde(default)]
    pub image: Option<String>,
    #[serde(default)]
    pub vcpus: Option<u32>,
    #[serde(default)]
    pub mem_mib: Option<u32>,
    #[serde(default)]
    pub disk_size: Option<u64>,
    #[serde(default)]
    pub ssh_pubkey: Option<String>,
    /// The private key next to the public one, when banger knows it.
    #[serde(default)]
    pub ssh_key: Option<String>,
    #[serde(default)]
    pub created_at: Option<String>,
    /// Brought up again by `banger-reconcile --boot` when the host starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autostart: Option<bool>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Section for Spec {
    const KEY: &'static str = "spec";
}

/// `snap`: the VM's root disk (`banger-snap create`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Snap {
    #[serde(default)]
    pub method: Option<String>,
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub image: Option<String>,
    #[serde(default)]
    pub size_bytes: Option<u64>,
    /// The guest's SSH host public keys, by key type.
    #[serde(default)]
    pub host_keys: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub customized: Option<bool>,
    /// How the guest gets its agent: `image` (the image's init starts its own),
    /// `init-hook` (written into the disk; `banger-vm start` runs it as `init=`) or `none`.
    #[serde(default)]
    pub agent: Option<String>,
    #[serde(default)]
    pub created_at: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Section for Snap {
    const KEY: &'static str = "snap";
}

/// `net`: the VM's tap, address and forwards (`banger-net up`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Net {
    #[serde(default)]
    pub bridge: Option<String>,
    #[serde(default)]
    pub tap: Option<String>,
    #[serde(default)]
    pub mac: Option<String>,
    /// The guest's IPv4 address (older records may carry `/prefix`).
    #[serde(default)]
    pub ip: Option<String>,
    #[serde(default)]
    pub prefix: Option<u8>,
    #[serde(default)]
    pub gateway: Option<String>,
    /// The guests' DNS servers (one string is read as a list of one).
    #[serde(default, deserialize_with = "one_or_many")]
    pub dns: Vec<String>,
    #[serde(default)]
    pub forwards: Option<Vec<Value>>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Section for Net {
    const KEY: &'static str = "net";
}

fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
        Null(()),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
        OneOrMany::Null(()) => Vec::new(),
    })
}

/// `jail`: the launched Firecracker (`banger-jail launch`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Jail {
    /// `jailer` or `direct`.
    #[serde(default)]
    pub launcher: Option<String>,
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub chroot: Option<String>,
    /// The root-owned directory above the chroot (the jail's own files beside it).
    #[serde(default)]
    pub root: Option<String>,
    /// The short symlink under the run dir that reaches the API socket.
    #[serde(default)]
    pub api_sock: Option<String>,
    /// The API socket itself (inside the chroot for the jailer).
    #[serde(default)]
    pub socket: Option<String>,
    #[serde(default)]
    pub pid: Option<i64>,
    #[serde(default)]
    pub start_time: Option<u64>,
    #[serde(default)]
    pub argv: Option<Vec<String>>,
    #[serde(default)]
    pub console: Option<String>,
    /// The FIFO Firecracker writes the serial console to, and that path as Firecracker
    /// sees it (`PUT /serial`).
    #[serde(default)]
    pub console_fifo: Option<String>,
    #[serde(default)]
    pub serial_out_path: Option<String>,
    /// The vsock device's socket as Firecracker names it (`uds_path` for `PUT /vsock`), and
    /// the run dir's short symlink to it (for the guest agent).
    #[serde(default)]
    pub vsock_uds: Option<String>,
    #[serde(default)]
    pub vsock_sock: Option<String>,
    /// The console keeper copying the FIFO into `console`.
    #[serde(default)]
    pub keeper_pid: Option<i64>,
    #[serde(default)]
    pub keeper_start_time: Option<u64>,
    #[serde(default)]
    pub log: Option<String>,
    #[serde(default)]
    pub metrics: Option<String>,
    #[serde(default)]
    pub pidfile: Option<String>,
    /// Kernel, initrd and root disk as Firecracker sees them.
    #[serde(default)]
    pub kernel: Option<String>,
    #[serde(default)]
    pub initrd: Option<String>,
    #[serde(default)]
    pub rootfs: Option<String>,
    #[serde(default)]
    pub cgroup: Option<String>,
    #[serde(default)]
    pub launched_at: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Section for Jail {
    const KEY: &'static str = "jail";
}

/// `vm`: what banger-vm last did to the guest, and its live state from `status`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Vm {
    /// `running`, `paused`, `stopped`; `status` adds `launched`, `unreachable`, ...
    #[serde(default)]
    pub state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_args: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_start_ms: Option<f64>,
    /// How readiness was decided: `agent`, `ssh`, `console`, `not-waited`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready: Option<String>,
    /// The guest agent's hello when it was the readiness (`banger-vm start`, `wait`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<VmAgent>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live: Option<Live>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Section for Vm {
    const KEY: &'static str = "vm";
}

/// `vm.agent`: who answered on the guest's vsock when the VM became ready.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VmAgent {
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub protocol: Option<u32>,
    /// The guest's boot id (a reboot changes it).
    #[serde(default)]
    pub boot_id: Option<String>,
    #[serde(default)]
    pub kernel: Option<String>,
    #[serde(default)]
    pub hostname: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `vm.live`: what the process table and Firecracker said when `status` looked.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Live {
    #[serde(default)]
    pub pid: Option<i64>,
    #[serde(default)]
    pub found_by: Option<String>,
    #[serde(default)]
    pub api_state: Option<String>,
    /// The guest agent's live hello (or `{"error", "code"}` when it did not answer), for a
    /// running VM that has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<Value>,
    #[serde(default)]
    pub checked_at: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rec(v: Value) -> Record {
        match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    #[test]
    fn unknown_fields_survive_a_round_trip() {
        let mut r = rec(json!({
            "v": 1, "type": "vm", "name": "a",
            "net": {"ip": "10.0.0.2", "future": {"x": [1]}, "tap": "t", "dns": "1.1.1.1"},
        }));
        let mut net: Net = get(&r).unwrap().unwrap();
        assert_eq!(net.dns, vec!["1.1.1.1".to_string()]);
        assert_eq!(net.extra["future"], json!({"x": [1]}));
        net.tap = Some("t2".into());
        put(&mut r, &net);
        assert_eq!(r["net"]["future"], json!({"x": [1]}));
        assert_eq!(r["net"]["tap"], "t2");
        let keys: Vec<&String> = r.keys().collect();
        assert_eq!(keys, ["v", "type", "name", "net"]);
    }

    #[test]
    fn absent_and_null_sections_are_none() {
        let r = rec(json!({"v": 1, "type": "vm", "name": "a", "jail": null}));
        assert!(get::<Jail>(&r).unwrap().is_none());
        assert!(get::<Spec>(&r).unwrap().is_none());
        assert!(validate(&r).is_ok());
    }

    #[test]
    fn wrong_shapes_name_the_section() {
        for (key, bad) in [
            ("spec", json!({"vcpus": "two"})),
            ("net", json!("10.0.0.2")),
            ("jail", json!({"pid": "12"})),
            ("snap", json!({"host_keys": [1]})),
            ("vm", json!({"state": 3})),
        ] {
            let mut r = rec(json!({"v": 1, "type": "vm", "name": "a"}));
            r.insert(key.into(), bad);
            let e = validate(&r).unwrap_err();
            assert_eq!(e.key, key);
            assert!(e.to_string().contains(key), "{e}");
        }
    }

    #[test]
    fn remove_keeps_the_order() {
        let mut r = rec(json!({"v": 1, "type": "vm", "name": "a", "snap": {}, "net": {}, "z": 1}));
        remove::<Snap>(&mut r);
        let keys: Vec<&String> = r.keys().collect();
        assert_eq!(keys, ["v", "type", "name", "net", "z"]);
    }
}
