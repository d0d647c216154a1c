//! TEST STAND-IN, not Firecracker: the microVM state machine behind the API.
//!
//! Not started: configuration calls are taken (they mark the "boot path", after which a
//! snapshot can no longer be loaded); runtime calls answer "not supported before starting".
//! `InstanceStart` or a snapshot load moves to Running/Paused; then configuration calls answer
//! "not supported after starting". Messages are Firecracker's (`VmmActionError` wording).

mod config;
mod lifecycle;

use std::fs::File;
use std::io::Write;
use std::path::PathBuf;

use serde_json::{json, Value};

use super::devices::Serial;
use super::logger;
use super::model::*;
use super::router::Call;
use crate::NOTICE;

/// The version the stand-in reports (Firecracker's, marked as a stand-in).
pub const VERSION: &str = "1.16.1-standin";

const POST_BOOT: &str = "The requested operation is not supported after starting the microVM.";
const PRE_BOOT: &str = "The requested operation is not supported before starting the microVM.";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VmState {
    NotStarted,
    Running,
    Paused,
}

impl VmState {
    pub fn name(self) -> &'static str {
        match self {
            VmState::NotStarted => "Not started",
            VmState::Running => "Running",
            VmState::Paused => "Paused",
        }
    }
}

/// A successful answer: 204, or 200 with a JSON body.
#[derive(Debug, PartialEq)]
pub enum Data {
    Empty,
    Json(Value),
}

/// The process should exit with `code` once the answer is out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exit {
    pub code: u8,
    /// Why, for the log and stderr.
    pub reason: &'static str,
}

/// Outcome of one call: the answer (or status and message) and maybe an exit.
pub type Outcome = (Result<Data, (u16, String)>, Option<Exit>);

/// TEST STAND-IN state of one microVM: what was configured and where it stands.
pub struct Vmm {
    pub id: String,
    pub state: VmState,
    pub pci: bool,
    pub mmds_limit: usize,
    boot_path: bool,
    boot: Option<(BootSource, File)>,
    machine: MachineConfig,
    drives: Vec<Drive>,
    nets: Vec<(NetworkInterface, File)>,
    vsock: Option<Vsock>,
    entropy: Option<Entropy>,
    serial_path: Option<PathBuf>,
    serial: Option<Serial>,
    metrics: Option<File>,
    mmds: Value,
    mmds_config: Option<MmdsConfig>,
    reboot_on_resume: bool,
}

fn err<T>(msg: impl Into<String>) -> Result<T, (u16, String)> {
    Err((400, msg.into()))
}

impl Vmm {
    pub fn new(id: &str, pci: bool, mmds_limit: usize) -> Self {
        Vmm {
            id: id.to_string(),
            state: VmState::NotStarted,
            pci,
            mmds_limit,
            boot_path: false,
            boot: None,
            machine: MachineConfig::default(),
            drives: Vec::new(),
            nets: Vec::new(),
            vsock: None,
            entropy: None,
            serial_path: None,
            serial: None,
            metrics: None,
            mmds: Value::Null,
            mmds_config: None,
            reboot_on_resume: false,
        }
    }

    fn started(&self) -> bool {
        self.state != VmState::NotStarted
    }

    /// Handles one call.
    pub fn handle(&mut self, call: Call) -> Outcome {
        match call {
            Call::Action(ActionType::InstanceStart) if !self.started() => self.start(),
            Call::Action(ActionType::SendCtrlAltDel) if self.started() => self.ctrl_alt_del(),
            Call::PatchVm(s) if self.started() => self.set_state(s),
            Call::LoadSnapshot(p) if !self.started() => self.load_snapshot(&p),
            other => (self.handle_simple(other), None),
        }
    }

    fn handle_simple(&mut self, call: Call) -> Result<Data, (u16, String)> {
        let started = self.started();
        match call {
            Call::GetInstanceInfo => Ok(Data::Json(json!({
                "id": self.id,
                "state": self.state.name(),
                "vmm_version": VERSION,
                "app_name": "Firecracker",
            }))),
            Call::GetVersion => Ok(Data::Json(json!({ "firecracker_version": VERSION }))),
            Call::GetMachineConfig => Ok(Data::Json(json!(self.machine))),
            Call::GetFullConfig => Ok(Data::Json(json!(self.full_config()))),
            Call::GetMmds => Ok(Data::Json(match &self.mmds {
                Value::Null => json!({}),
                v => v.clone(),
            })),
            Call::PutMmds(v) => self.set_mmds(v),
            Call::PatchMmds(patch) => {
                let mut v = self.mmds.clone();
                merge_patch(&mut v, &patch);
                self.set_mmds(v)
            }
            Call::NotImplemented(what) => err(format!(
                "{NOTICE}: {what} is not implemented by the stand-in."
            )),
            Call::Action(ActionType::FlushMetrics) if started => self.flush_metrics(),
            Call::PatchDrive(u) if started => self.patch_drive(u),
            Call::PatchNet(u) if started => self.patch_net(u),
            Call::CreateSnapshot(c) if started => self.create_snapshot(&c),
            Call::PutDrive(d) if started => self.hotplug(|vmm| vmm.insert_drive(d)),
            Call::PutNet(n) if started => self.hotplug(|vmm| vmm.insert_net(n)),
            Call::Unplug(kind, id) if started => self.hotplug(|vmm| vmm.unplug(kind, &id)),
            Call::Action(ActionType::InstanceStart) if started => err(POST_BOOT),
            Call::Action(_)
            | Call::PatchDrive(_)
            | Call::PatchNet(_)
            | Call::CreateSnapshot(_)
            | Call::PatchVm(_)
            | Call::Unplug(..) => err(PRE_BOOT),
            _ if started => err(POST_BOOT),
            Call::PutBootSource(b) => self.set_boot_source(b),
            Call::UpdateMachineConfig(u) => {
                self.boot_path = true;
                self.machine = self
                    .machine
                    .updated(&u)
                    .map_err(|m| (400, format!("Machine config error: {m}")))?;
                Ok(Data::Empty)
            }
            Call::PutDrive(d) => {
                self.boot_path = true;
                self.insert_drive(d)
            }
            Call::PutNet(n) => {
                self.boot_path = true;
                self.insert_net(n)
            }
            Call::PutVsock(v) => {
                self.boot_path = true;
                self.set_vsock(v)
            }
            Call::PutEntropy(e) => {
                self.boot_path = true;
                self.entropy = Some(e);
                Ok(Data::Empty)
            }
            Call::PutMmdsConfig(c) => {
                self.boot_path = true;
                self.set_mmds_config(c)
            }
            Call::PutLogger(cfg) => {
                logger::update(&cfg).map_err(|m| (400, format!("Logger error: {m}")))?;
                Ok(Data::Empty)
            }
            Call::PutMetrics(m) => self
                .init_metrics(&m)
                .map(|()| Data::Empty)
                .map_err(|m| (400, m)),
            Call::PutSerial(s) => {
                self.serial_path = s.serial_out_path;
                Ok(Data::Empty)
            }
            // Reached only in states the arms above exclude.
            Call::LoadSnapshot(_) => err(POST_BOOT),
        }
    }

    /// Opens the metrics file (once per process, as in Firecracker).
    pub fn init_metrics(&mut self, m: &MetricsConfig) -> Result<(), String> {
        let prefix = "Metrics error: Cannot initialize the metrics system due to bad user input";
        if self.metrics.is_some() {
            return Err(format!(
                "{prefix}: Reinitialization of metrics not allowed."
            ));
        }
        let f = logger::open_nonblock(&m.metrics_path).map_err(|e| format!("{prefix}: {e}"))?;
        self.metrics = Some(f);
        Ok(())
    }

    fn flush_metrics(&mut self) -> Result<Data, (u16, String)> {
        if let Some(f) = &mut self.metrics {
            let ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis())
                .unwrap_or(0);
            let line =
                json!({ "utc_timestamp_ms": ms, "standin": NOTICE, "vm_state": self.state.name() });
            let _ = writeln!(f, "{line}");
        }
        Ok(Data::Empty)
    }

    /// The configuration as `GET /vm/config` shows it.
    pub fn full_config(&self) -> FullConfig {
        FullConfig {
            drives: self.drives.clone(),
            boot_source: self
                .boot
                .as_ref()
                .map(|(b, _)| b.clone())
                .unwrap_or_default(),
            machine_config: Some(self.machine.clone()),
            mmds_config: self.mmds_config.clone(),
            network_interfaces: self.nets.iter().map(|(n, _)| n.clone()).collect(),
            vsock: self.vsock.clone(),
            entropy: self.entropy.clone(),
            ..FullConfig::default()
        }
    }
}

#[cfg(test)]
mod tests;

/// RFC 7396 JSON merge patch, as `PATCH /mmds` applies it.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    if let Value::Object(t) = target {
        for (k, v) in p {
            if v.is_null() {
                t.remove(k);
            } else {
                merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    }
}
