//! `banger-vm list` and `banger-vm status`.

use crate::BIN;
use banger::cli;
use banger::record::{self, Record, Writer};
use banger::section::{self, Jail, Net, Section, Snap, Spec, Vm};
use banger::step::{Action, Input, Step, StepError};
use banger::store::{Listed, Store};
use std::process::ExitCode;

/// The state a record says the VM is in, without asking Firecracker.
pub fn recorded_state(rec: &Record) -> String {
    if let Some(s) = section::get::<Vm>(rec).ok().flatten().and_then(|v| v.state) {
        return s;
    }
    if rec.contains_key(Jail::KEY) {
        "launched".into()
    } else if rec.contains_key(Snap::KEY) || rec.contains_key(Net::KEY) {
        "prepared".into()
    } else {
        "created".into()
    }
}

fn dash(v: Option<String>) -> String {
    v.unwrap_or_else(|| "-".into())
}

/// Renders records (and damaged VMs) as an aligned table for people.
pub fn table(entries: &[Listed]) -> String {
    let mut rows = vec![["NAME", "STATE", "IMAGE", "VCPUS", "MEM", "IP"]
        .map(String::from)
        .to_vec()];
    for e in entries {
        match e {
            Listed::Ok(r) => {
                let spec = section::get::<Spec>(r).ok().flatten().unwrap_or_default();
                let net = section::get::<Net>(r).ok().flatten().unwrap_or_default();
                rows.push(vec![
                    record::name(r).unwrap_or("?").to_string(),
                    recorded_state(r),
                    dash(spec.image),
                    dash(spec.vcpus.map(|v| v.to_string())),
                    dash(spec.mem_mib.map(|m| format!("{m}M"))),
                    dash(net.ip),
                ]);
            }
            Listed::Damaged { name, .. } => {
                let mut row = vec![name.clone(), "damaged".into()];
                row.extend(std::iter::repeat_n("-".to_string(), 4));
                rows.push(row);
            }
        }
    }
    banger::cli::render_table(&rows)
}

/// A damaged VM as a record: its name and an `error` saying what is wrong and what to do.
fn damaged_record(name: &str, e: &banger::store::StoreError) -> Record {
    let e = StepError::from_store(e);
    let mut r = record::new("vm", name);
    record::set_error(&mut r, "list", &e.code, &e.message());
    r
}

/// Every VM: its record, or, for a VM whose record cannot be read, a record carrying
/// `error` (code `damaged`) and a message on stderr; then exit 1.
pub fn list(store: &Store, as_table: bool) -> ExitCode {
    let entries = match store.scan() {
        Ok(r) => r,
        Err(e) => {
            cli::report(BIN, &e);
            return ExitCode::from(cli::EXIT_FAILURE);
        }
    };
    let mut failed = false;
    for e in &entries {
        if let Listed::Damaged { name, error } = e {
            failed = true;
            StepError::from_store(error).print(BIN, name);
        }
    }
    if as_table {
        print!("{}", table(&entries));
    } else {
        let mut w = Writer::stdout();
        for e in &entries {
            let res = match e {
                Listed::Ok(r) => w.emit(r),
                Listed::Damaged { name, error } => w.emit(&damaged_record(name, error)),
            };
            if let Err(e) = res {
                cli::report(BIN, &e);
                return ExitCode::from(cli::EXIT_FAILURE);
            }
        }
    }
    ExitCode::from(if failed {
        cli::EXIT_FAILURE
    } else {
        cli::EXIT_OK
    })
}

pub fn status(store: &Store, input: Input, as_table: bool) -> ExitCode {
    let step = Step {
        bin: BIN,
        step: "status",
        store,
        owns: &[Vm::KEY],
    };
    let live = |rec: &mut Record| {
        crate::control::live(rec)?;
        Ok(Action::Emit)
    };
    if !as_table {
        return step.run(input, live);
    }
    // The same records, gathered and shown as list --table shows them.
    if let Err(code) = input.check(BIN) {
        return code;
    }
    let mut out = Vec::new();
    let stdin = std::io::stdin();
    let code = step.run_with(input, stdin.lock(), Writer::new(&mut out), live);
    let entries: Vec<Listed> = String::from_utf8_lossy(&out)
        .lines()
        .filter_map(|l| banger::record::parse(l.as_bytes(), 1).ok())
        .map(Listed::Ok)
        .collect();
    print!("{}", table(&entries));
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_and_states() {
        let mut a = record::new("vm", "a");
        a.insert(
            "spec".into(),
            serde_json::json!({"image": "debian", "vcpus": 2, "mem_mib": 1024}),
        );
        assert_eq!(recorded_state(&a), "created");
        let mut b = record::new("vm", "long-name");
        b.insert("snap".into(), serde_json::json!({}));
        assert_eq!(recorded_state(&b), "prepared");
        b.insert("vm".into(), serde_json::json!({"state": "running"}));
        assert_eq!(recorded_state(&b), "running");
        let t = table(&[
            Listed::Ok(a),
            Listed::Ok(b),
            Listed::Damaged {
                name: "c".into(),
                error: banger::store::StoreError::NotFound { name: "c".into() },
            },
        ]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0], "NAME       STATE    IMAGE   VCPUS  MEM    IP");
        assert_eq!(lines[1], "a          created  debian  2      1024M  -");
        assert!(lines[2].starts_with("long-name  running"));
        assert_eq!(lines[3], "c          damaged  -       -      -      -");
    }
}
