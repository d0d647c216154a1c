//! `banger-vm list` and `banger-vm status`.

use crate::BIN;
use banger::cli;
use banger::record::{self, Record, Writer};
use banger::step::{Action, Input, Step};
use banger::store::Store;
use serde_json::Value;
use std::process::ExitCode;

/// The state a record says the VM is in, without asking Firecracker.
pub fn recorded_state(rec: &Record) -> String {
    if let Some(s) = record::section(rec, "vm")
        .and_then(|v| v.get("state"))
        .and_then(Value::as_str)
    {
        return s.to_string();
    }
    if rec.contains_key("jail") {
        "launched".into()
    } else if rec.contains_key("snap") || rec.contains_key("net") {
        "prepared".into()
    } else {
        "created".into()
    }
}

fn field<'a>(rec: &'a Record, section: &str, key: &str) -> &'a Value {
    record::section(rec, section)
        .and_then(|s| s.get(key))
        .unwrap_or(&Value::Null)
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Renders records as an aligned table for people.
pub fn table(recs: &[Record]) -> String {
    let mut rows = vec![["NAME", "STATE", "IMAGE", "VCPUS", "MEM", "IP"]
        .map(String::from)
        .to_vec()];
    for r in recs {
        rows.push(vec![
            record::name(r).unwrap_or("?").to_string(),
            recorded_state(r),
            text(field(r, "spec", "image")),
            text(field(r, "spec", "vcpus")),
            match field(r, "spec", "mem_mib") {
                Value::Null => "-".into(),
                v => format!("{}M", text(v)),
            },
            text(field(r, "net", "ip")),
        ]);
    }
    banger::cli::render_table(&rows)
}

pub fn list(store: &Store, as_table: bool) -> ExitCode {
    let recs = match store.list() {
        Ok(r) => r,
        Err(e) => {
            cli::report(BIN, &e);
            return ExitCode::from(cli::EXIT_FAILURE);
        }
    };
    if as_table {
        print!("{}", table(&recs));
        return ExitCode::SUCCESS;
    }
    let mut w = Writer::stdout();
    for r in &recs {
        if let Err(e) = w.emit(r) {
            cli::report(BIN, &e);
            return ExitCode::from(cli::EXIT_FAILURE);
        }
    }
    ExitCode::SUCCESS
}

pub fn status(store: &Store, input: Input) -> ExitCode {
    let step = Step {
        bin: BIN,
        step: "status",
        store,
    };
    let from_stdin = input == Input::Stdin;
    step.run(input, |rec| {
        if from_stdin {
            // A record on stdin is refreshed from the store, which is the truth.
            let name = record::name(rec).unwrap_or_default().to_string();
            *rec = store.load(&name)?;
        }
        crate::control::live(rec);
        Ok(Action::Emit)
    })
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
        let t = table(&[a, b]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0], "NAME       STATE    IMAGE   VCPUS  MEM    IP");
        assert_eq!(lines[1], "a          created  debian  2      1024M  -");
        assert!(lines[2].starts_with("long-name  running"));
    }
}
