//! Benchmark: one ledger update (an entry added, then removed) as the ledger grows (a line of
//! the journal; every 256th update writes a new snapshot, counted in the mean), and what a
//! snapshot's encoding and a copy of the entries cost. The ledger of 50 VMs holds about 250 entries, and
//! a first `banger up` updates it five times. Prints numbers; asserts nothing.
//! Run: cargo bench -p banger-helper --bench ledger

use banger_helper::ledger::{Entry, Ledger};
use serde_json::json;
use std::time::Instant;

/// `vms` VMs' entries as a `banger up` leaves them (an address, a tap, a disk and a jail,
/// with the data the helper keeps: about 860 bytes an entry as written).
fn fill(l: &Ledger, vms: usize) {
    let mut entries = Vec::new();
    for i in 0..vms {
        let vm = format!("vm{i}");
        let dir = format!("/var/lib/banger/jail/firecracker/{vm}");
        let ip = format!("10.200.{}.{}", i / 250, i % 250 + 2);
        entries.push(Entry::new(
            &vm,
            "addr",
            &ip,
            json!({"mac": "06:00:0a:c8:00:09", "tap": "bgr0ac80009"}),
        ));
        entries.push(Entry::new(
            &vm,
            "tap",
            &format!("bgr{i:08x}"),
            json!({"bridge": "banger0", "uid": 1000, "gid": 1000}),
        ));
        entries.push(Entry::new(&vm, "disk", &format!("/home/u/.local/state/banger/vms/{vm}/disk.ext4"), json!({
            "path": format!("/home/u/.local/state/banger/vms/{vm}/disk.ext4"), "method": "reflink",
            "image": "default", "size_bytes": 16777216, "complete": true, "customized": true,
            "host_keys": {"ecdsa": "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBP5A4LNyRacGdTz0dOJSUu7Fb1VN0Q+UpuSfLIBjs23B7CjBeo1vgfOZFXCd/n/TynkGYrA2eI0ZU4UjmC5mKFg= root@vm",
                          "ed25519": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFXM5EnNeHki3fAozoG10eIjvJKINmNiFqRCw9fjVHxH root@vm"},
            "net": {"ip": ip, "prefix": 24, "gateway": "10.200.0.1", "dns": ["10.255.255.53"], "mac": "06:00:0a:c8:00:09"},
            "agent": null, "warm": false})));
        entries.push(Entry::new(&vm, "jail", &dir, json!({
            "launcher": "jailer", "id": vm, "dir": dir, "chroot": format!("{dir}/root"), "root": format!("{dir}/root"),
            "socket": format!("{dir}/root/run/firecracker.socket"), "pidfile": format!("{dir}/root/firecracker.pid"),
            "pid": 32408, "start_time": 3089216, "comm": "firecracker",
            "argv": ["/usr/bin/jailer", "--id", vm, "--exec-file", "/usr/bin/firecracker", "--uid", "1000", "--gid", "1000",
                     "--chroot-base-dir", "/var/lib/banger/jail", "--resource-limit", "no-file=4096", "--daemonize", "--",
                     "--api-sock", "/run/firecracker.socket", "--log-path", "/firecracker.log", "--level", "Info",
                     "--show-level", "--metrics-path", "/metrics.json"],
            "console": format!("{dir}/root/console.log"), "console_fifo": format!("{dir}/root/console.fifo"),
            "serial_out_path": "/console.fifo", "log": format!("{dir}/root/firecracker.log"),
            "metrics": format!("{dir}/root/metrics.json"), "kernel": "/vmlinux", "initrd": null,
            "rootfs": "/rootfs", "cgroup": null})));
    }
    l.add_all(entries).expect("fill");
}

fn main() {
    let base = std::env::temp_dir().join(format!("banger-bench-ledger-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    println!(
        "ledger update (add one entry, then remove it), mean of 400 updates (compactions included), in {}",
        base.display()
    );
    for n in [1usize, 50, 250] {
        let l = Ledger::new(base.join(format!("n{n}/ledger.json")));
        fill(&l, n);
        let n_entries = l.list().expect("list").len();
        let reps = 200;
        let t = Instant::now();
        for i in 0..reps {
            l.add(Entry::new(
                "bench",
                "tap",
                &format!("tap{i}"),
                json!({"ip": "172.16.9.9"}),
            ))
            .expect("add");
            l.remove("bench", "tap", &format!("tap{i}"))
                .expect("remove");
        }
        let per = t.elapsed().as_secs_f64() * 1e3 / f64::from(reps * 2);
        let entries = l.list().expect("list");
        let bytes = std::fs::metadata(l.path()).map(|m| m.len()).unwrap_or(0);
        let t = Instant::now();
        for _ in 0..reps {
            std::hint::black_box(serde_json::to_vec(&entries).ok());
        }
        let enc = t.elapsed().as_secs_f64() * 1e3 / f64::from(reps);
        let t = Instant::now();
        for _ in 0..reps {
            let c = entries.clone();
            std::hint::black_box(c == entries);
        }
        let copy = t.elapsed().as_secs_f64() * 1e3 / f64::from(reps);
        println!(
            "  {n:4} VMs, {n_entries:4} entries ({:4} KiB as a snapshot): {per:.3} ms per update; a snapshot's encoding {enc:.3} ms, a copy and compare {copy:.3} ms",
            bytes / 1024
        );
    }
    let _ = std::fs::remove_dir_all(&base);
}
