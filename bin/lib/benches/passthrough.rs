//! Benchmark: the cost of one pass-through step on 10,000 records.
//!
//! - forward: records that carry `error` go straight through (parse + emit only);
//! - step: the whole per-record work of a step that changes nothing but still locks the
//!   VM, reads its stored record, saves it atomically (temp file, fsync, rename, fsync dir)
//!   and emits it.
//!
//! Prints numbers; asserts nothing. Run: cargo bench -p banger-lib --bench passthrough

use banger::record::Writer;
use banger::step::{Action, Input, Step};
use banger::store::Store;
use std::time::Instant;

fn records(n: usize, with_error: bool) -> String {
    let mut s = String::new();
    for i in 0..n {
        let err = if with_error {
            r#","error":{"step":"net","code":"x","message":"m"}"#
        } else {
            ""
        };
        s.push_str(&format!(
            "{{\"v\":1,\"type\":\"vm\",\"name\":\"vm-{i}\",\"spec\":{{\"image\":\"debian\",\"vcpus\":2,\"mem_mib\":1024,\"ssh_pubkey\":\"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPLCtRqyrkxsFfSJMsfr6 banger\"}},\"net\":{{\"ip\":\"10.200.0.2\",\"tap\":\"bgr2\"}}{err}}}\n"
        ));
    }
    s
}

fn main() {
    let n = 10_000;
    let dir = std::env::temp_dir().join(format!("banger-bench-pass-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let store = Store::new(&dir);
    let step = Step {
        bin: "bench",
        step: "bench",
        store: &store,
        owns: &["net"],
    };
    // Steps work on stored VMs only: make them first.
    for i in 0..n {
        store
            .create(&banger::record::new("vm", &format!("vm-{i}")))
            .expect("create a VM record");
    }

    let input = records(n, true);
    let t = Instant::now();
    let _ = step.run_with(
        Input::Stdin,
        input.as_bytes(),
        Writer::new(std::io::sink()),
        |_| Ok(Action::Emit),
    );
    let forward = t.elapsed();

    let input = records(n, false);
    let t = Instant::now();
    let _ = step.run_with(
        Input::Stdin,
        input.as_bytes(),
        Writer::new(std::io::sink()),
        |_| Ok(Action::Emit),
    );
    let emit_only = t.elapsed();

    let t = Instant::now();
    let _ = step.run_with(
        Input::Stdin,
        input.as_bytes(),
        Writer::new(std::io::sink()),
        |_| Ok(Action::Save),
    );
    let save = t.elapsed();

    let per = |d: std::time::Duration| d.as_secs_f64() * 1e6 / n as f64;
    println!(
        "pass-through step over {n} records ({} bytes each):",
        input.len() / n
    );
    println!(
        "  forward (error records, parse+emit):  {:>8.1} ms total, {:>6.2} us/record",
        forward.as_secs_f64() * 1e3,
        per(forward)
    );
    println!(
        "  step, no save (lock+check+emit):       {:>8.1} ms total, {:>6.2} us/record",
        emit_only.as_secs_f64() * 1e3,
        per(emit_only)
    );
    println!(
        "  step with atomic save (fsync):         {:>8.1} ms total, {:>6.2} us/record",
        save.as_secs_f64() * 1e3,
        per(save)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
