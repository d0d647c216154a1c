//! TEST STAND-IN, not Firecracker: the lifecycle calls of the state machine: InstanceStart,
//! SendCtrlAltDel, pause/resume, snapshot create and load.

use super::{err, Data, Exit, Outcome, VmState, Vmm};
use crate::firecracker::devices::{self, Serial, SnapshotFile, SNAPSHOT_VERSION};
use crate::firecracker::logger;
use crate::firecracker::model::*;
use crate::firecracker::router::LoadParams;
use crate::NOTICE;

impl Vmm {
    pub(super) fn serial_out(&mut self) -> Result<&mut Serial, String> {
        if self.serial.is_none() {
            self.serial = Some(match &self.serial_path {
                Some(p) => Serial::File(logger::open_nonblock(p).map_err(|e| e.to_string())?),
                None => Serial::Stdout,
            });
        }
        self.serial.as_mut().ok_or_else(|| "no serial".to_string())
    }

    /// `InstanceStart`: "boots" by printing the guest's ready line on the serial output.
    pub(super) fn start(&mut self) -> Outcome {
        let Some((b, _kernel)) = &self.boot else {
            let m = "Start microvm error: Cannot start microvm without kernel configuration.";
            return (err(m), None);
        };
        let cmdline = b
            .boot_args
            .clone()
            .unwrap_or_else(|| DEFAULT_KERNEL_CMDLINE.to_string());
        let serial = match self.serial_out() {
            Ok(s) => s,
            Err(e) => {
                let m = format!("Start microvm error: Cannot create the serial device: {e}");
                return (err(m), None);
            }
        };
        serial.write_line(&format!("STANDIN_GUEST_READY cmdline={cmdline}"));
        devices::start_guest_agent(&cmdline);
        let exit = if cmdline.contains("standin.exit") || cmdline.contains("tiny.exit") {
            serial.write_line("STANDIN_GUEST_EXIT");
            Some(Exit {
                code: 0,
                reason: "the guest shut down",
            })
        } else {
            None
        };
        self.state = VmState::Running;
        logger::info("The stand-in microVM is running (no guest code executes).");
        (Ok(Data::Empty), exit)
    }

    /// Like a guest booted with `reboot=k`: the keystroke makes it reset, and Firecracker exits.
    pub(super) fn ctrl_alt_del(&mut self) -> Outcome {
        if self.state == VmState::Paused {
            self.reboot_on_resume = true;
            return (Ok(Data::Empty), None);
        }
        (
            Ok(Data::Empty),
            Some(Exit {
                code: 0,
                reason: "the guest rebooted (SendCtrlAltDel)",
            }),
        )
    }

    pub(super) fn set_state(&mut self, s: VmStateRequest) -> Outcome {
        match s {
            VmStateRequest::Paused => self.state = VmState::Paused,
            VmStateRequest::Resumed => {
                self.state = VmState::Running;
                if std::mem::take(&mut self.reboot_on_resume) {
                    let exit = Exit {
                        code: 0,
                        reason: "the guest rebooted (SendCtrlAltDel)",
                    };
                    return (Ok(Data::Empty), Some(exit));
                }
            }
        }
        (Ok(Data::Empty), None)
    }

    pub(super) fn create_snapshot(&mut self, c: &SnapshotCreate) -> Result<Data, (u16, String)> {
        let prefix = "Create snapshot error";
        if self.state != VmState::Paused {
            return err(format!(
                "{prefix}: Cannot save the microVM state: Operation not allowed: save/restore \
                 unavailable while running"
            ));
        }
        let mut snap = SnapshotFile {
            standin_snapshot: NOTICE.to_string(),
            snapshot_version: SNAPSHOT_VERSION.to_string(),
            kind: "state".to_string(),
            snapshot_type: c.snapshot_type,
            vm_id: self.id.clone(),
            config: self.full_config(),
        };
        devices::write_snapshot(&c.snapshot_path, &snap)
            .map_err(|m| (400, format!("{prefix}: {m}")))?;
        snap.kind = "memory".to_string();
        devices::write_snapshot(&c.mem_file_path, &snap)
            .map_err(|m| (400, format!("{prefix}: {m}")))?;
        Ok(Data::Empty)
    }

    /// `PUT /snapshot/load`. A failure after the checks is fatal, as in Firecracker: the
    /// process answers 400 and exits with status 1.
    pub(super) fn load_snapshot(&mut self, p: &LoadParams) -> Outcome {
        let prefix = "Load snapshot error";
        if self.boot_path {
            let m = format!(
                "{prefix}: Loading a microVM snapshot not allowed after configuring \
                 boot-specific resources."
            );
            return (err(m), None);
        }
        match self.restore(p) {
            Ok(()) => (Ok(Data::Empty), None),
            Err(m) => (
                err(format!("{prefix}: Failed to restore from snapshot: {m}")),
                Some(Exit {
                    code: 1,
                    reason: "RunWithApi(BuildMicroVmError(Restore))",
                }),
            ),
        }
    }

    pub(super) fn restore(&mut self, p: &LoadParams) -> Result<(), String> {
        let snap = devices::read_snapshot(&p.snapshot_path, "state")
            .map_err(|m| format!("Failed to get snapshot state from file: {m}"))?;
        let mem_err = |m: String| format!("Failed to load guest memory: {m}");
        match p.mem_backend.backend_type {
            MemBackendType::File => {
                devices::read_snapshot(&p.mem_backend.backend_path, "memory")
                    .map_err(|m| mem_err(format!("Error creating guest memory from file: {m}")))?;
            }
            MemBackendType::Uffd => {
                std::os::unix::net::UnixStream::connect(&p.mem_backend.backend_path)
                    .map_err(|e| mem_err(format!("Error creating guest memory from uffd: {e}")))?;
            }
        }
        let cfg = snap.config;
        // The restored guest runs what it ran: its agent too.
        if let Some(args) = &cfg.boot_source.boot_args {
            devices::start_guest_agent(args);
        }
        let mut nets = cfg.network_interfaces;
        for o in &p.network_overrides {
            let Some(n) = nets.iter_mut().find(|n| n.iface_id == o.iface_id) else {
                return Err(
                    "Failed to get snapshot state from file: Unknown Network Device.".into(),
                );
            };
            n.host_dev_name = o.host_dev_name.clone();
        }
        let mut vsock = cfg.vsock;
        if let Some(o) = &p.vsock_override {
            let Some(v) = vsock.as_mut() else {
                return Err("Failed to get snapshot state from file: Unknown Vsock Device.".into());
            };
            v.uds_path = o.uds_path.clone();
        }
        let build = |m: String| format!("Failed to build microVM from snapshot: {m}");
        for d in &cfg.drives {
            if let Some(path) = &d.path_on_host {
                devices::open_backing_file(path, d.is_read_only.unwrap_or(false)).map_err(build)?;
            }
        }
        for n in nets {
            let tap = devices::open_tap(&n.host_dev_name).map_err(build)?;
            self.nets.push((n, tap));
        }
        if let Some(v) = vsock {
            devices::bind_vsock(&v.uds_path).map_err(build)?;
            self.vsock = Some(v);
        }
        let mut machine = cfg.machine_config.unwrap_or_default();
        machine.track_dirty_pages = p.track_dirty_pages;
        machine.cpu_template = None;
        self.machine = machine;
        self.drives = cfg.drives;
        self.entropy = cfg.entropy;
        self.mmds_config = cfg.mmds_config;
        self.state = if p.resume_vm {
            VmState::Running
        } else {
            VmState::Paused
        };
        Ok(())
    }
}
