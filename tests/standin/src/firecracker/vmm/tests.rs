//! TEST STAND-IN, not Firecracker: unit tests of the state machine, driven through the router
//! exactly as the API server drives it.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::*;
use crate::firecracker::router::route;

struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Dir {
        let n = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let p = std::env::temp_dir().join(format!("standin-vmm-{tag}-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&p).unwrap();
        Dir(p)
    }

    fn file(&self, name: &str, content: &str) -> String {
        let p = self.0.join(name);
        std::fs::write(&p, content).unwrap();
        p.display().to_string()
    }

    fn path(&self, name: &str) -> String {
        self.0.join(name).display().to_string()
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Sends one request; returns the status, the JSON body (or null) and the exit, if any.
fn call(
    vmm: &mut Vmm,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value, Option<Exit>) {
    let raw = body.map(|b| b.to_string());
    let (res, exit) = match route(method, path, raw.as_deref().map(str::as_bytes)) {
        Ok(c) => vmm.handle(c),
        Err(r) => (Err(r), None),
    };
    match res {
        Ok(Data::Empty) => (204, Value::Null, exit),
        Ok(Data::Json(v)) => (200, v, exit),
        Err((s, m)) => (s, json!({ "fault_message": m }), exit),
    }
}

fn fault(v: &Value) -> &str {
    v["fault_message"].as_str().unwrap_or("")
}

/// A VM with boot source, machine config, a root drive and serial output configured.
fn configured(dir: &Dir, boot_args: &str) -> Vmm {
    let mut vmm = Vmm::new("vm-1", false, 51200);
    let kernel = dir.file("vmlinux", "ELF");
    let rootfs = dir.file("rootfs.ext4", "fs");
    let serial = dir.path("serial.log");
    let body = json!({ "kernel_image_path": kernel, "boot_args": boot_args });
    assert_eq!(call(&mut vmm, "PUT", "/boot-source", Some(body)).0, 204);
    let mc = json!({ "vcpu_count": 2, "mem_size_mib": 256 });
    assert_eq!(call(&mut vmm, "PUT", "/machine-config", Some(mc)).0, 204);
    let d = json!({ "drive_id": "rootfs", "path_on_host": rootfs, "is_root_device": true });
    assert_eq!(call(&mut vmm, "PUT", "/drives/rootfs", Some(d)).0, 204);
    assert_eq!(
        call(
            &mut vmm,
            "PUT",
            "/serial",
            Some(json!({ "serial_out_path": serial }))
        )
        .0,
        204
    );
    vmm
}

fn start(vmm: &mut Vmm) -> Option<Exit> {
    let (status, body, exit) = call(
        vmm,
        "PUT",
        "/actions",
        Some(json!({ "action_type": "InstanceStart" })),
    );
    assert_eq!(status, 204, "{body}");
    exit
}

#[test]
fn boot_prints_ready_line_and_changes_state() {
    let dir = Dir::new("boot");
    let mut vmm = configured(&dir, "console=ttyS0 reboot=k");
    let (s, info, _) = call(&mut vmm, "GET", "/", None);
    assert_eq!(s, 200);
    assert_eq!(info["state"], "Not started");
    assert_eq!(info["app_name"], "Firecracker");
    assert_eq!(info["id"], "vm-1");
    assert_eq!(start(&mut vmm), None);
    let serial = std::fs::read_to_string(dir.path("serial.log")).unwrap();
    assert_eq!(
        serial,
        "STANDIN_GUEST_READY cmdline=console=ttyS0 reboot=k\n"
    );
    assert_eq!(call(&mut vmm, "GET", "/", None).1["state"], "Running");
    let (s, v, _) = call(&mut vmm, "GET", "/version", None);
    assert_eq!((s, v["firecracker_version"].as_str()), (200, Some(VERSION)));
    let (s, mc, _) = call(&mut vmm, "GET", "/machine-config", None);
    assert_eq!(
        (s, mc["vcpu_count"].as_u64(), mc["mem_size_mib"].as_u64()),
        (200, Some(2), Some(256))
    );
}

#[test]
fn exit_word_makes_the_guest_exit() {
    let dir = Dir::new("exit");
    let mut vmm = configured(&dir, "console=ttyS0 standin.exit");
    assert_eq!(start(&mut vmm).map(|e| e.code), Some(0));
    let serial = std::fs::read_to_string(dir.path("serial.log")).unwrap();
    assert!(serial.ends_with("STANDIN_GUEST_EXIT\n"), "{serial}");
}

#[test]
fn start_needs_a_boot_source() {
    let mut vmm = Vmm::new("vm", false, 100);
    let (s, b, _) = call(
        &mut vmm,
        "PUT",
        "/actions",
        Some(json!({ "action_type": "InstanceStart" })),
    );
    assert_eq!(s, 400);
    assert_eq!(
        fault(&b),
        "Start microvm error: Cannot start microvm without kernel configuration."
    );
    assert_eq!(vmm.state, VmState::NotStarted);
}

#[test]
fn configuration_after_start_is_refused() {
    let dir = Dir::new("post");
    let mut vmm = configured(&dir, "console=ttyS0");
    start(&mut vmm);
    let post = "The requested operation is not supported after starting the microVM.";
    let kernel = dir.path("vmlinux");
    for (path, body) in [
        ("/boot-source", json!({ "kernel_image_path": kernel })),
        (
            "/machine-config",
            json!({ "vcpu_count": 1, "mem_size_mib": 128 }),
        ),
        ("/logger", json!({ "level": "Info" })),
        ("/serial", json!({ "serial_out_path": "x" })),
        ("/vsock", json!({ "guest_cid": 3, "uds_path": "v.sock" })),
        ("/entropy", json!({})),
        ("/actions", json!({ "action_type": "InstanceStart" })),
        (
            "/snapshot/load",
            json!({ "snapshot_path": "s", "mem_file_path": "m" }),
        ),
    ] {
        let (s, b, _) = call(&mut vmm, "PUT", path, Some(body));
        assert_eq!((s, fault(&b)), (400, post), "{path}");
    }
    let (s, b, _) = call(
        &mut vmm,
        "PATCH",
        "/machine-config",
        Some(json!({ "vcpu_count": 1 })),
    );
    assert_eq!((s, fault(&b)), (400, post));
    // Hotplug needs PCI.
    let d = json!({ "drive_id": "data", "path_on_host": kernel, "is_root_device": false });
    let (s, b, _) = call(&mut vmm, "PUT", "/drives/data", Some(d));
    assert_eq!((s, fault(&b)), (400, "PCI is not enabled"));
}

#[test]
fn runtime_calls_before_start_are_refused() {
    let mut vmm = Vmm::new("vm", false, 100);
    let pre = "The requested operation is not supported before starting the microVM.";
    for (method, path, body) in [
        ("PATCH", "/vm", json!({ "state": "Paused" })),
        (
            "PUT",
            "/actions",
            json!({ "action_type": "SendCtrlAltDel" }),
        ),
        ("PUT", "/actions", json!({ "action_type": "FlushMetrics" })),
        (
            "PUT",
            "/snapshot/create",
            json!({ "snapshot_path": "s", "mem_file_path": "m" }),
        ),
        ("PATCH", "/drives/rootfs", json!({ "drive_id": "rootfs" })),
        (
            "PATCH",
            "/network-interfaces/eth0",
            json!({ "iface_id": "eth0" }),
        ),
    ] {
        let (s, b, _) = call(&mut vmm, method, path, Some(body));
        assert_eq!((s, fault(&b)), (400, pre), "{method} {path}");
    }
}

#[test]
fn bad_bodies_and_missing_files() {
    let dir = Dir::new("bad");
    let mut vmm = Vmm::new("vm", false, 100);
    let (s, b, _) = call(
        &mut vmm,
        "PUT",
        "/boot-source",
        Some(json!({ "boot_args": "x" })),
    );
    assert_eq!(s, 400);
    assert!(
        fault(&b).contains("missing field `kernel_image_path`"),
        "{b}"
    );
    let body = json!({ "kernel_image_path": dir.path("nope") });
    let (s, b, _) = call(&mut vmm, "PUT", "/boot-source", Some(body));
    assert_eq!(s, 400);
    assert!(
        fault(&b).starts_with("Boot source error: The kernel file cannot be opened: No such file")
    );
    let body = json!({ "kernel_image_path": dir.file("k", "k"), "initrd_path": dir.path("nope") });
    let (s, b, _) = call(&mut vmm, "PUT", "/boot-source", Some(body));
    assert_eq!(s, 400);
    assert!(fault(&b).starts_with("Boot source error: The initrd file cannot be opened"));
    let d = json!({ "drive_id": "r", "path_on_host": dir.path("nope"), "is_root_device": true });
    let (s, b, _) = call(&mut vmm, "PUT", "/drives/r", Some(d));
    assert_eq!(s, 400);
    assert!(fault(&b).starts_with("Drive config error: Unable to create the virtio block device"));
    let d = json!({ "drive_id": "r", "path_on_host": dir.file("d", ""), "is_root_device": true, "x": 1 });
    let (s, b, _) = call(&mut vmm, "PUT", "/drives/r", Some(d));
    assert_eq!(s, 400);
    assert!(fault(&b).contains("unknown field `x`"), "{b}");
    let (s, b, _) = call(
        &mut vmm,
        "PUT",
        "/machine-config",
        Some(json!({ "vcpu_count": 0, "mem_size_mib": 1 })),
    );
    assert_eq!(s, 400);
    assert!(fault(&b).starts_with("Machine config error: The number of vCPUs"));
    let (s, _, _) = call(
        &mut vmm,
        "PUT",
        "/logger",
        Some(json!({ "log_path": "/nonexistent/dir/log" })),
    );
    assert_eq!(s, 400);
    let (s, _, _) = call(
        &mut vmm,
        "PUT",
        "/balloon",
        Some(json!({ "amount_mib": 1 })),
    );
    assert_eq!(s, 400);
    // The VM is still configurable and nothing was half-applied.
    assert!(vmm.full_config().drives.is_empty());
}

#[test]
fn second_root_drive_is_refused() {
    let dir = Dir::new("root");
    let mut vmm = configured(&dir, "x");
    let d = json!({ "drive_id": "other", "path_on_host": dir.path("rootfs.ext4"), "is_root_device": true });
    let (s, b, _) = call(&mut vmm, "PUT", "/drives/other", Some(d));
    assert_eq!(
        (s, fault(&b)),
        (
            400,
            "Drive config error: A root block device already exists!"
        )
    );
    // Replacing the root drive itself is allowed.
    let d = json!({ "drive_id": "rootfs", "path_on_host": dir.path("rootfs.ext4"), "is_root_device": true, "is_read_only": true });
    assert_eq!(call(&mut vmm, "PUT", "/drives/rootfs", Some(d)).0, 204);
    let cfg = json!(vmm.full_config());
    assert_eq!(cfg["drives"][0]["is_read_only"], true);
    assert_eq!(cfg["drives"][0]["io_engine"], "Sync");
}

#[test]
fn pause_snapshot_resume_and_ctrl_alt_del() {
    let dir = Dir::new("snap");
    let mut vmm = configured(&dir, "console=ttyS0");
    start(&mut vmm);
    let snap = json!({ "snapshot_path": dir.path("vm.snap"), "mem_file_path": dir.path("vm.mem") });
    let (s, b, _) = call(&mut vmm, "PUT", "/snapshot/create", Some(snap.clone()));
    assert_eq!(s, 400);
    assert!(fault(&b).contains("save/restore unavailable while running"));
    assert_eq!(
        call(&mut vmm, "PATCH", "/vm", Some(json!({ "state": "Paused" }))).0,
        204
    );
    assert_eq!(call(&mut vmm, "GET", "/", None).1["state"], "Paused");
    assert_eq!(
        call(&mut vmm, "PATCH", "/vm", Some(json!({ "state": "Paused" }))).0,
        204
    );
    assert_eq!(call(&mut vmm, "PUT", "/snapshot/create", Some(snap)).0, 204);
    let state: Value =
        serde_json::from_slice(&std::fs::read(dir.path("vm.snap")).unwrap()).unwrap();
    assert_eq!(state["config"]["machine-config"]["mem_size_mib"], 256);
    assert_eq!(state["config"]["drives"][0]["drive_id"], "rootfs");
    assert!(Path::new(&dir.path("vm.mem")).exists());
    // Ctrl-Alt-Del while paused takes effect on resume.
    let cad = json!({ "action_type": "SendCtrlAltDel" });
    assert_eq!(call(&mut vmm, "PUT", "/actions", Some(cad.clone())).2, None);
    let (s, _, exit) = call(
        &mut vmm,
        "PATCH",
        "/vm",
        Some(json!({ "state": "Resumed" })),
    );
    assert_eq!((s, exit.map(|e| e.code)), (204, Some(0)));
    let (s, _, exit) = call(&mut vmm, "PUT", "/actions", Some(cad));
    assert_eq!((s, exit.map(|e| e.code)), (204, Some(0)));
}

#[test]
fn snapshot_load_restores_or_fails_fatally() {
    let dir = Dir::new("load");
    let mut vmm = configured(&dir, "console=ttyS0");
    start(&mut vmm);
    call(&mut vmm, "PATCH", "/vm", Some(json!({ "state": "Paused" })));
    let snap = json!({ "snapshot_path": dir.path("s"), "mem_file_path": dir.path("m") });
    assert_eq!(call(&mut vmm, "PUT", "/snapshot/create", Some(snap)).0, 204);

    let mut fresh = Vmm::new("vm-2", false, 100);
    let load = json!({
        "snapshot_path": dir.path("s"),
        "mem_backend": { "backend_type": "File", "backend_path": dir.path("m") },
        "resume_vm": true,
    });
    assert_eq!(call(&mut fresh, "PUT", "/snapshot/load", Some(load)).0, 204);
    assert_eq!(fresh.state, VmState::Running);
    assert_eq!(
        json!(fresh.full_config())["machine-config"]["vcpu_count"],
        2
    );

    // Not after boot-specific configuration.
    let mut used = Vmm::new("vm-3", false, 100);
    let mc = json!({ "vcpu_count": 1, "mem_size_mib": 128 });
    call(&mut used, "PUT", "/machine-config", Some(mc));
    let load = json!({ "snapshot_path": dir.path("s"), "mem_file_path": dir.path("m") });
    let (s, b, exit) = call(&mut used, "PUT", "/snapshot/load", Some(load));
    assert_eq!((s, exit), (400, None));
    assert!(fault(&b).contains("not allowed after configuring boot-specific resources"));

    // A missing or swapped file is fatal: 400, then exit 1.
    let mut broken = Vmm::new("vm-4", false, 100);
    let load = json!({ "snapshot_path": dir.path("m"), "mem_file_path": dir.path("s") });
    let (s, b, exit) = call(&mut broken, "PUT", "/snapshot/load", Some(load));
    assert_eq!((s, exit.map(|e| e.code)), (400, Some(1)));
    assert!(fault(&b).starts_with("Load snapshot error: Failed to restore from snapshot"));
}

#[test]
fn mmds_put_patch_get() {
    let mut vmm = Vmm::new("vm", false, 40);
    assert_eq!(call(&mut vmm, "GET", "/mmds", None).1, json!({}));
    assert_eq!(
        call(&mut vmm, "PUT", "/mmds", Some(json!({ "a": { "b": 1 } }))).0,
        204
    );
    assert_eq!(
        call(&mut vmm, "PATCH", "/mmds", Some(json!({ "a": { "c": 2 } }))).0,
        204
    );
    assert_eq!(
        call(&mut vmm, "GET", "/mmds", None).1,
        json!({ "a": { "b": 1, "c": 2 } })
    );
    let big = json!({ "x": "y".repeat(50) });
    assert_eq!(call(&mut vmm, "PUT", "/mmds", Some(big)).0, 413);
    let cfg = json!({ "network_interfaces": ["eth0"] });
    let (s, b, _) = call(&mut vmm, "PUT", "/mmds/config", Some(cfg));
    assert_eq!(s, 400);
    assert!(fault(&b).contains("does not correspond to any existing network interface"));
}

#[test]
fn full_config_shape() {
    let dir = Dir::new("cfg");
    let vmm = configured(&dir, "console=ttyS0");
    let cfg = json!(vmm.full_config());
    for key in [
        "boot-source",
        "drives",
        "machine-config",
        "network-interfaces",
        "vsock",
        "balloon",
    ] {
        assert!(cfg.get(key).is_some(), "{key} missing in {cfg}");
    }
    assert_eq!(cfg["boot-source"]["boot_args"], "console=ttyS0");
}
