//! TEST STAND-IN, not Firecracker: runs the built stand-in `firecracker` binary on a temporary
//! socket through a whole lifecycle, and checks its answers, its exit and its requests file.

mod common;

use std::process::{Command, Stdio};

use common::{proc_file_with, requests, wait_exit, Client, KillOnDrop, KillPidOnDrop, TempDir};
use serde_json::{json, Value};

#[test]
fn standin_lifecycle_over_the_api() {
    let dir = TempDir::new("life");
    let sock = dir.join("api.sock");
    let kernel = dir.join("vmlinux");
    let rootfs = dir.join("rootfs.ext4");
    let serial = dir.join("serial.out");
    let log = dir.join("fc.log");
    std::fs::write(&kernel, b"\x7fELF stand-in kernel").unwrap();
    std::fs::write(&rootfs, vec![0u8; 4096]).unwrap();
    let mut child = KillOnDrop(
        Command::new(common::firecracker())
            .args(["--api-sock"])
            .arg(&sock)
            .args(["--id", "standin-vm-1", "--log-path"])
            .arg(&log)
            .env_remove("STANDIN_REQUESTS")
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let cmdline = proc_file_with(child.0.id(), "cmdline", "standin-vm-1");
    assert!(cmdline.contains("--id\0standin-vm-1\0"), "{cmdline:?}");
    let comm = proc_file_with(child.0.id(), "comm", "firecracker");
    assert_eq!(comm.trim(), "firecracker");

    let mut c = Client::connect(&sock);
    let mut sent = Vec::new();
    let mut expect =
        |c: &mut Client, method: &str, path: &str, body: Option<Value>, status: u16| {
            let (got, resp) = c.call(method, path, body);
            assert_eq!(got, status, "{method} {path}: {resp}");
            sent.push((method.to_string(), path.to_string(), status));
            resp
        };
    let info = expect(&mut c, "GET", "/", None, 200);
    assert_eq!(info["state"], "Not started");
    assert_eq!(info["id"], "standin-vm-1");
    let boot =
        json!({ "kernel_image_path": kernel, "boot_args": "console=ttyS0 reboot=k panic=1" });
    expect(&mut c, "PUT", "/boot-source", Some(boot), 204);
    expect(
        &mut c,
        "PUT",
        "/machine-config",
        Some(json!({ "vcpu_count": 1, "mem_size_mib": 128 })),
        204,
    );
    let drive = json!({ "drive_id": "rootfs", "path_on_host": rootfs, "is_root_device": true, "is_read_only": false });
    expect(&mut c, "PUT", "/drives/rootfs", Some(drive), 204);
    expect(
        &mut c,
        "PUT",
        "/serial",
        Some(json!({ "serial_out_path": serial })),
        204,
    );
    let bad = expect(
        &mut c,
        "PUT",
        "/machine-config",
        Some(json!({ "vcpu_count": 1 })),
        400,
    );
    assert!(bad["fault_message"]
        .as_str()
        .unwrap()
        .contains("missing field `mem_size_mib`"));
    expect(
        &mut c,
        "PUT",
        "/actions",
        Some(json!({ "action_type": "InstanceStart" })),
        204,
    );
    let info = expect(&mut c, "GET", "/", None, 200);
    assert_eq!(info["state"], "Running");
    let late = expect(
        &mut c,
        "PUT",
        "/boot-source",
        Some(json!({ "kernel_image_path": kernel })),
        400,
    );
    assert_eq!(
        late["fault_message"],
        "The requested operation is not supported after starting the microVM."
    );
    expect(
        &mut c,
        "PATCH",
        "/vm",
        Some(json!({ "state": "Paused" })),
        204,
    );
    let snap = json!({ "snapshot_type": "Full", "snapshot_path": dir.join("vm.snap"), "mem_file_path": dir.join("vm.mem") });
    expect(&mut c, "PUT", "/snapshot/create", Some(snap), 204);
    expect(
        &mut c,
        "PATCH",
        "/vm",
        Some(json!({ "state": "Resumed" })),
        204,
    );
    let cfg = expect(&mut c, "GET", "/vm/config", None, 200);
    assert_eq!(cfg["drives"][0]["path_on_host"], json!(rootfs));
    // A second connection works while the first is kept alive.
    let mut other = Client::connect(&sock);
    let v = expect(&mut other, "GET", "/version", None, 200);
    assert_eq!(v["firecracker_version"], "1.16.1-standin");
    expect(
        &mut c,
        "PUT",
        "/actions",
        Some(json!({ "action_type": "SendCtrlAltDel" })),
        204,
    );

    let status = wait_exit(&mut child.0, 5);
    assert_eq!(status.code(), Some(0));

    let recorded = requests(&dir.join("standin-requests.jsonl"));
    assert_eq!(recorded.len(), sent.len(), "{recorded:?}");
    for (line, (method, path, status)) in recorded.iter().zip(&sent) {
        assert_eq!(line["method"], json!(method));
        assert_eq!(line["path"], json!(path));
        assert_eq!(line["status"], json!(status));
    }
    assert_eq!(
        recorded[1]["body"]["boot_args"],
        "console=ttyS0 reboot=k panic=1"
    );
    assert!(recorded[0]["body"].is_null());
    let out = std::fs::read_to_string(&serial).unwrap();
    assert_eq!(
        out,
        "STANDIN_GUEST_READY cmdline=console=ttyS0 reboot=k panic=1\n"
    );
    let snapshot: Value =
        serde_json::from_slice(&std::fs::read(dir.join("vm.snap")).unwrap()).unwrap();
    assert_eq!(
        snapshot["config"]["boot-source"]["kernel_image_path"],
        json!(kernel)
    );
    assert!(dir.join("vm.mem").exists());
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(
        log.contains("[standin-vm-1:main] Running Firecracker v1.16.1-standin"),
        "{log}"
    );
    assert!(
        log.contains("The API server received a Put request on \"/actions\""),
        "{log}"
    );
    assert!(
        log.contains("Firecracker exiting successfully. exit_code=0"),
        "{log}"
    );
}

#[test]
fn standin_guest_exit_word_and_requests_env() {
    let dir = TempDir::new("exit");
    let sock = dir.join("fc.sock");
    let kernel = dir.join("vmlinux");
    let record = dir.join("elsewhere.jsonl");
    std::fs::write(&kernel, b"k").unwrap();
    let child = Command::new(common::firecracker())
        .arg("--api-sock")
        .arg(&sock)
        .env("STANDIN_REQUESTS", &record)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let _guard = KillPidOnDrop(child.id() as i32);
    let mut c = Client::connect(&sock);
    let boot = json!({ "kernel_image_path": kernel, "boot_args": "console=ttyS0 tiny.exit" });
    assert_eq!(c.call("PUT", "/boot-source", Some(boot)).0, 204);
    let start = json!({ "action_type": "InstanceStart" }).to_string();
    let (s, _) = c.send("PUT", "/actions", Some(&start), "Connection: close\r\n");
    assert_eq!(s, 204);
    assert!(c.at_eof(), "the server must close after Connection: close");
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout
            .contains("STANDIN_GUEST_READY cmdline=console=ttyS0 tiny.exit\nSTANDIN_GUEST_EXIT\n"),
        "{stdout}"
    );
    assert_eq!(requests(&record).len(), 2);
    assert!(!dir.join("standin-requests.jsonl").exists());
}

#[test]
fn standin_refuses_a_socket_in_use_and_unknown_flags() {
    let dir = TempDir::new("busy");
    let sock = dir.join("api.sock");
    std::fs::write(&sock, b"").unwrap();
    let out = Command::new(common::firecracker())
        .arg("--api-sock")
        .arg(&sock)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("FailedToBindSocket"), "{err}");

    let out = Command::new(common::firecracker())
        .args(["--api-sock", "x", "--frobnicate"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(153));
    assert!(String::from_utf8_lossy(&out.stderr).contains("UnexpectedArgument(\"frobnicate\")"));
    let out = Command::new(common::firecracker())
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("TEST STAND-IN, not Firecracker"));
}
