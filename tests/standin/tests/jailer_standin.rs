//! TEST STAND-IN, not Firecracker's jailer: runs the built stand-in `jailer` on the stand-in
//! `firecracker` with a temporary chroot base. Needs root (mknod, pivot_root, setuid); skipped
//! with a message otherwise.

mod common;

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{
    proc_file_with, requests, wait_exit, wait_for, Client, KillOnDrop, KillPidOnDrop, TempDir,
};

use common::JAILER;
const NOBODY: u32 = 65534;

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn jailer(base: &Path, id: &str, extra: &[&str]) -> Command {
    let mut cmd = Command::new(JAILER);
    cmd.args([
        "--id",
        id,
        "--exec-file",
        common::firecracker(),
        "--uid",
        "65534",
        "--gid",
        "65534",
    ])
    .arg("--chroot-base-dir")
    .arg(base)
    .args(extra)
    .args(["--", "--api-sock", "/run/firecracker.socket"])
    .stdout(Stdio::null());
    cmd
}

fn read_pid(chroot: &Path) -> Option<i32> {
    std::fs::read_to_string(chroot.join("firecracker.pid"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn status_field(pid: i32, field: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| {
            l.strip_prefix(&format!("{field}:"))
                .map(|v| v.trim().to_string())
        })
        .unwrap_or_default()
}

fn assert_char_dev(path: PathBuf, major: u64, minor: u64) {
    let m = std::fs::metadata(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        m.file_type().is_char_device(),
        "{} is not a char device",
        path.display()
    );
    let rdev = m.rdev();
    assert_eq!(
        (libc::major(rdev) as u64, libc::minor(rdev) as u64),
        (major, minor),
        "{}",
        path.display()
    );
    assert_eq!((m.uid(), m.gid()), (NOBODY, NOBODY), "{}", path.display());
}

fn userfaultfd_minor() -> Option<u64> {
    let misc = std::fs::read_to_string("/proc/misc").ok()?;
    misc.lines().find_map(|l| {
        let (minor, name) = l.trim().split_once(' ')?;
        (name.trim() == "userfaultfd")
            .then(|| minor.parse().ok())
            .flatten()
    })
}

#[test]
fn standin_jailer_builds_the_jail_and_execs_firecracker() {
    if !is_root() {
        println!("SKIPPED standin_jailer_builds_the_jail_and_execs_firecracker: needs root");
        return;
    }
    let base = TempDir::new("jail");
    let chroot = base.join("firecracker").join("vm-jail-1").join("root");
    let mut child = KillOnDrop(
        jailer(&base.0, "vm-jail-1", &["--cgroup", "cpu.weight=50"])
            .spawn()
            .unwrap(),
    );
    let pid = child.0.id() as i32;
    assert!(wait_for(5, || read_pid(&chroot).is_some()), "no pidfile");
    // Without --daemonize the jailer execs in place: same pid.
    assert_eq!(read_pid(&chroot), Some(pid));
    let sock = chroot.join("run/firecracker.socket");
    let mut c = Client::connect(&sock);
    let (s, info) = c.call("GET", "/", None);
    assert_eq!((s, info["id"].as_str()), (200, Some("vm-jail-1")));

    let comm = proc_file_with(pid as u32, "comm", "firecracker");
    assert_eq!(comm.trim(), "firecracker");
    assert_eq!(status_field(pid, "Uid"), "65534\t65534\t65534\t65534");
    assert_eq!(status_field(pid, "Gid"), "65534\t65534\t65534\t65534");
    assert_eq!(status_field(pid, "Groups"), "");
    let argv: Vec<String> = std::fs::read(format!("/proc/{pid}/cmdline"))
        .unwrap()
        .split(|b| *b == 0)
        .filter(|w| !w.is_empty())
        .map(|w| String::from_utf8_lossy(w).into_owned())
        .collect();
    assert_eq!(argv[..3], ["/firecracker", "--id", "vm-jail-1"]);
    assert_eq!(argv[3], "--start-time-us");
    assert_eq!(argv[5], "--start-time-cpu-us");
    assert_eq!(argv[7], "--parent-cpu-time-us");
    assert_eq!(argv[9..], ["--api-sock", "/run/firecracker.socket"]);
    assert_eq!(std::fs::read(format!("/proc/{pid}/environ")).unwrap(), b"");

    let root = std::fs::metadata(&chroot).unwrap();
    assert_eq!(
        (root.uid(), root.gid(), root.mode() & 0o777),
        (NOBODY, NOBODY, 0o700)
    );
    for dir in ["dev", "dev/net", "run"] {
        let m = std::fs::metadata(chroot.join(dir)).unwrap();
        assert_eq!((m.uid(), m.mode() & 0o777), (NOBODY, 0o700), "{dir}");
    }
    assert_char_dev(chroot.join("dev/kvm"), 10, 232);
    assert_char_dev(chroot.join("dev/net/tun"), 10, 200);
    assert_char_dev(chroot.join("dev/urandom"), 1, 9);
    if let Some(minor) = userfaultfd_minor() {
        assert_char_dev(chroot.join("dev/userfaultfd"), 10, minor);
    }
    let exe = std::fs::metadata(chroot.join("firecracker")).unwrap();
    assert_eq!(
        (exe.uid(), exe.len()),
        (
            NOBODY,
            std::fs::metadata(common::firecracker()).unwrap().len()
        )
    );
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(chroot.join("standin-jailer.json")).unwrap())
            .unwrap();
    assert_eq!(record["cgroups"][0]["file"], "cpu.weight");
    assert_eq!(record["argv"][0], JAILER);
    // The jailer clears the environment, so the requests file is beside the socket.
    assert_eq!(
        requests(&chroot.join("run/standin-requests.jsonl")).len(),
        1
    );

    child.0.kill().unwrap();
    wait_exit(&mut child.0, 5);
}

#[test]
fn standin_jailer_daemonizes() {
    if !is_root() {
        println!("SKIPPED standin_jailer_daemonizes: needs root");
        return;
    }
    let base = TempDir::new("daemon");
    let chroot = base.join("firecracker").join("vm-jail-2").join("root");
    let mut child = jailer(&base.0, "vm-jail-2", &["--daemonize"])
        .spawn()
        .unwrap();
    let status = wait_exit(&mut child, 5);
    assert_eq!(status.code(), Some(0));
    assert!(wait_for(5, || read_pid(&chroot).is_some()), "no pidfile");
    let pid = read_pid(&chroot).unwrap_or(0);
    let _guard = KillPidOnDrop(pid);
    assert_ne!(pid, child.id() as i32);
    assert!(wait_for(5, || chroot
        .join("run/firecracker.socket")
        .exists()));
    let comm = proc_file_with(pid as u32, "comm", "firecracker");
    assert_eq!(comm.trim(), "firecracker");
    let stdin = std::fs::read_link(format!("/proc/{pid}/fd/0")).unwrap();
    assert_eq!(stdin, Path::new("/dev/null"));
    // SAFETY: plain kill(2) of the daemon this test started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    let gone =
        || status_field(pid, "State").is_empty() || status_field(pid, "State").starts_with('Z');
    assert!(wait_for(5, gone));
}

#[test]
fn standin_jailer_failure_leaves_nothing() {
    if !is_root() {
        println!("SKIPPED standin_jailer_failure_leaves_nothing: needs root");
        return;
    }
    let base = TempDir::new("fail");
    let out = jailer(&base.0, "vm-jail-3", &["--netns", "/nonexistent/netns"])
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("Failed to open file /nonexistent/netns"),
        "{err}"
    );
    assert!(!base.join("firecracker").exists());

    let out = Command::new(JAILER)
        .args([
            "--id",
            "bad_id",
            "--exec-file",
            common::firecracker(),
            "--uid",
            "0",
            "--gid",
            "0",
            "--daemonise",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Found argument 'daemonise'"));
}
