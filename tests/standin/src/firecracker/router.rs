//! TEST STAND-IN, not Firecracker: turns a method, a path and a body into an API call, refusing
//! what Firecracker's request parser refuses, with its status codes and messages.

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::model::*;

/// Which kind of device a `DELETE` names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceKind {
    Block,
    Net,
    Pmem,
}

/// The guest memory source of a snapshot load, after merging `mem_file_path`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadParams {
    pub snapshot_path: std::path::PathBuf,
    pub mem_backend: MemBackend,
    pub track_dirty_pages: bool,
    pub resume_vm: bool,
    pub network_overrides: Vec<NetworkOverride>,
    pub vsock_override: Option<VsockOverride>,
}

/// One API call understood by the stand-in.
#[derive(Clone, Debug, PartialEq)]
pub enum Call {
    GetInstanceInfo,
    GetVersion,
    GetFullConfig,
    GetMachineConfig,
    GetMmds,
    PutBootSource(BootSource),
    UpdateMachineConfig(MachineConfigUpdate),
    PutDrive(Drive),
    PatchDrive(DriveUpdate),
    PutNet(NetworkInterface),
    PatchNet(NetworkInterfaceUpdate),
    PutVsock(Vsock),
    PutLogger(LoggerConfig),
    PutMetrics(MetricsConfig),
    PutSerial(SerialConfig),
    PutEntropy(Entropy),
    Action(ActionType),
    PatchVm(VmStateRequest),
    CreateSnapshot(SnapshotCreate),
    LoadSnapshot(LoadParams),
    PutMmds(Value),
    PatchMmds(Value),
    PutMmdsConfig(MmdsConfig),
    Unplug(DeviceKind, String),
    /// An endpoint the real Firecracker has but the stand-in does not imitate.
    NotImplemented(String),
}

/// A refused request: status and `fault_message`.
pub type Refusal = (u16, String);

fn bad(msg: impl Into<String>) -> Refusal {
    (400, msg.into())
}

fn json<T: DeserializeOwned>(body: &[u8]) -> Result<T, Refusal> {
    serde_json::from_slice(body).map_err(|e| {
        bad(format!(
            "An error occurred when deserializing the json body of a request: {e}."
        ))
    })
}

/// Firecracker's check of resource ids in paths.
fn checked_id(id: Option<&str>) -> Result<&str, Refusal> {
    match id {
        None | Some("") => Err(bad("The ID cannot be empty.")),
        Some(id) if id.chars().all(|c| c == '_' || c.is_alphanumeric()) => Ok(id),
        Some(_) => Err(bad(
            "API Resource IDs can only contain alphanumeric characters and underscores.",
        )),
    }
}

fn same_id(path_id: &str, body_id: &str) -> Result<(), Refusal> {
    if path_id == body_id {
        Ok(())
    } else {
        Err(bad(
            "The id from the path does not match the id from the body!",
        ))
    }
}

fn same_iface(path_id: &str, body_id: &str) -> Result<(), Refusal> {
    if path_id == body_id {
        Ok(())
    } else {
        Err(bad(format!(
            "The id from the path [{path_id}] does not match the id from the body [{body_id}]!"
        )))
    }
}

fn load_params(body: &[u8]) -> Result<LoadParams, Refusal> {
    let l: SnapshotLoad = json(body)?;
    let prefix = "An error occurred when deserializing the json body of a request";
    let mem_backend = match (l.mem_backend, l.mem_file_path) {
        (Some(_), Some(_)) => {
            return Err(bad(format!(
                "{prefix}: too many fields: either `mem_backend` or `mem_file_path` \
                 exclusively is required."
            )))
        }
        (None, None) => {
            return Err(bad(format!(
                "{prefix}: missing field: either `mem_backend` or `mem_file_path` is required."
            )))
        }
        (Some(b), None) => b,
        (None, Some(p)) => MemBackend {
            backend_path: p,
            backend_type: MemBackendType::File,
        },
    };
    Ok(LoadParams {
        snapshot_path: l.snapshot_path,
        mem_backend,
        track_dirty_pages: l.track_dirty_pages || l.enable_diff_snapshots,
        resume_vm: l.resume_vm,
        network_overrides: l.network_overrides,
        vsock_override: l.vsock_override,
    })
}

/// Routes one request. `body` is `None` when the request had no body.
pub fn route(method: &str, path: &str, body: Option<&[u8]>) -> Result<Call, Refusal> {
    let mut tokens = path.trim_start_matches('/').split_terminator('/');
    let first = tokens.next().unwrap_or("");
    let second = tokens.next();
    let stub = |what: &str| Ok(Call::NotImplemented(format!("{method} {what}")));
    match (method, first, body) {
        ("GET", "", None) => Ok(Call::GetInstanceInfo),
        ("GET", "version", None) => Ok(Call::GetVersion),
        ("GET", "vm", None) if second == Some("config") => Ok(Call::GetFullConfig),
        ("GET", "machine-config", None) => Ok(Call::GetMachineConfig),
        ("GET", "mmds", None) => Ok(Call::GetMmds),
        ("GET", "balloon", None) => stub("/balloon"),
        ("GET", "hotplug", None) if second == Some("memory") => stub("/hotplug/memory"),
        ("GET", _, Some(_)) => Err(bad("GET request cannot have a body.")),
        ("PUT", "actions", Some(b)) => Ok(Call::Action(json::<Action>(b)?.action_type)),
        ("PUT", "boot-source", Some(b)) => Ok(Call::PutBootSource(json(b)?)),
        ("PUT", "drives", Some(b)) => {
            let id = checked_id(second)?;
            let d: Drive = json(b)?;
            same_id(id, &d.drive_id)?;
            Ok(Call::PutDrive(d))
        }
        ("PUT", "logger", Some(b)) => Ok(Call::PutLogger(json(b)?)),
        ("PUT", "serial", Some(b)) => Ok(Call::PutSerial(json(b)?)),
        ("PUT", "machine-config", Some(b)) => {
            Ok(Call::UpdateMachineConfig(json::<MachineConfig>(b)?.into()))
        }
        ("PUT", "metrics", Some(b)) => Ok(Call::PutMetrics(json(b)?)),
        ("PUT", "mmds", Some(b)) => match second {
            None => Ok(Call::PutMmds(json(b)?)),
            Some("config") => Ok(Call::PutMmdsConfig(json(b)?)),
            Some(other) => Err(bad(format!(
                "Invalid request method and/or path: PUT {other}."
            ))),
        },
        ("PUT", "network-interfaces", Some(b)) => {
            let id = checked_id(second)?;
            let n: NetworkInterface = json(b)?;
            same_iface(id, &n.iface_id)?;
            Ok(Call::PutNet(n))
        }
        ("PUT", "snapshot", Some(b)) => match second {
            Some("create") => Ok(Call::CreateSnapshot(json(b)?)),
            Some("load") => Ok(Call::LoadSnapshot(load_params(b)?)),
            Some(other) => Err(bad(format!(
                "Invalid request method and/or path: PUT /snapshot/{other}."
            ))),
            None => Err(bad("Missing snapshot operation type.")),
        },
        ("PUT", "vsock", Some(b)) => Ok(Call::PutVsock(json(b)?)),
        ("PUT", "entropy", Some(b)) => Ok(Call::PutEntropy(json(b)?)),
        ("PUT", "balloon" | "cpu-config" | "pmem", Some(_)) => stub(&format!("/{first}")),
        ("PUT", "hotplug", Some(_)) if second == Some("memory") => stub("/hotplug/memory"),
        ("PUT", _, None) => Err(bad("Empty PUT request.")),
        ("PATCH", "drives", Some(b)) => {
            let id = checked_id(second)?;
            let d: DriveUpdate = json(b)?;
            same_id(id, &d.drive_id)?;
            Ok(Call::PatchDrive(d))
        }
        ("PATCH", "machine-config", Some(b)) => {
            let u: MachineConfigUpdate = json(b)?;
            if u == MachineConfigUpdate::default() {
                return Err(bad("Empty PATCH request."));
            }
            Ok(Call::UpdateMachineConfig(u))
        }
        ("PATCH", "mmds", Some(b)) => Ok(Call::PatchMmds(json(b)?)),
        ("PATCH", "network-interfaces", Some(b)) => {
            let id = checked_id(second)?;
            let n: NetworkInterfaceUpdate = json(b)?;
            same_iface(id, &n.iface_id)?;
            Ok(Call::PatchNet(n))
        }
        ("PATCH", "vm", Some(b)) => Ok(Call::PatchVm(json::<VmPatch>(b)?.state)),
        ("PATCH", "balloon", _) => stub("/balloon"),
        ("PATCH", "pmem", Some(_)) => stub("/pmem"),
        ("PATCH", "hotplug", Some(_)) if second == Some("memory") => stub("/hotplug/memory"),
        ("PATCH", _, None) => Err(bad("Empty PATCH request.")),
        ("DELETE", "drives" | "network-interfaces" | "pmem", None) => {
            let id = checked_id(second)?;
            let kind = match first {
                "drives" => DeviceKind::Block,
                "network-interfaces" => DeviceKind::Net,
                _ => DeviceKind::Pmem,
            };
            Ok(Call::Unplug(kind, id.to_string()))
        }
        ("DELETE", _, Some(_)) => Err(bad("Empty Delete request.")),
        ("GET" | "PUT" | "PATCH" | "DELETE", other, _) => Err(bad(format!(
            "Invalid request method and/or path: {method} {other}."
        ))),
        _ => Err(bad("Invalid HTTP Method: Unsupported HTTP method.")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(method: &str, path: &str, body: Option<&str>) -> Result<Call, Refusal> {
        route(method, path, body.map(str::as_bytes))
    }

    fn msg(res: Result<Call, Refusal>) -> String {
        let (status, m) = res.unwrap_err();
        assert_eq!(status, 400);
        m
    }

    #[test]
    fn routes_known_calls() {
        assert_eq!(r("GET", "/", None).unwrap(), Call::GetInstanceInfo);
        assert_eq!(r("GET", "/vm/config", None).unwrap(), Call::GetFullConfig);
        assert_eq!(
            r(
                "PUT",
                "/actions",
                Some(r#"{"action_type":"InstanceStart"}"#)
            )
            .unwrap(),
            Call::Action(ActionType::InstanceStart)
        );
        assert_eq!(
            r("PATCH", "/vm", Some(r#"{"state":"Paused"}"#)).unwrap(),
            Call::PatchVm(VmStateRequest::Paused)
        );
        let d = r#"{"drive_id":"rootfs","path_on_host":"/x","is_root_device":true}"#;
        assert!(matches!(
            r("PUT", "/drives/rootfs", Some(d)).unwrap(),
            Call::PutDrive(_)
        ));
        let l = r#"{"snapshot_path":"s","mem_file_path":"m","resume_vm":true}"#;
        let Call::LoadSnapshot(p) = r("PUT", "/snapshot/load", Some(l)).unwrap() else {
            panic!("not a load")
        };
        assert_eq!(p.mem_backend.backend_type, MemBackendType::File);
        assert!(p.resume_vm);
    }

    #[test]
    fn refuses_like_firecracker() {
        assert_eq!(
            msg(r("GET", "/nope", None)),
            "Invalid request method and/or path: GET nope."
        );
        assert_eq!(
            msg(r("GET", "/vm", None)),
            "Invalid request method and/or path: GET vm."
        );
        assert_eq!(
            msg(r("GET", "/", Some("{}"))),
            "GET request cannot have a body."
        );
        assert_eq!(msg(r("PUT", "/boot-source", None)), "Empty PUT request.");
        assert_eq!(
            msg(r("PATCH", "/machine-config", Some("{}"))),
            "Empty PATCH request."
        );
        assert_eq!(
            msg(r("PUT", "/drives", Some("{}"))),
            "The ID cannot be empty."
        );
        assert!(msg(r("PUT", "/drives/a-b", Some("{}"))).starts_with("API Resource IDs"));
        let d = r#"{"drive_id":"other","path_on_host":"/x","is_root_device":true}"#;
        assert_eq!(
            msg(r("PUT", "/drives/rootfs", Some(d))),
            "The id from the path does not match the id from the body!"
        );
        let n = r#"{"iface_id":"eth1","host_dev_name":"tap0"}"#;
        assert_eq!(
            msg(r("PUT", "/network-interfaces/eth0", Some(n))),
            "The id from the path [eth0] does not match the id from the body [eth1]!"
        );
        assert!(
            msg(r("PUT", "/boot-source", Some("{not json"))).starts_with(
                "An error occurred when deserializing the json body of a request: key must be"
            )
        );
        assert!(
            msg(r("PUT", "/actions", Some(r#"{"action_type":"Reboot"}"#)))
                .contains("unknown variant `Reboot`")
        );
        assert!(
            msg(r("PUT", "/snapshot/load", Some(r#"{"snapshot_path":"s"}"#)))
                .ends_with("missing field: either `mem_backend` or `mem_file_path` is required.")
        );
        assert_eq!(
            msg(r("PUT", "/snapshot", Some("{}"))),
            "Missing snapshot operation type."
        );
        assert!(msg(r("POST", "/", None)).contains("Unsupported HTTP method"));
        assert!(matches!(
            r("PUT", "/balloon", Some("{}")).unwrap(),
            Call::NotImplemented(_)
        ));
    }
}
