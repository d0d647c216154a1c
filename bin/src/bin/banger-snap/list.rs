//! `banger-snap list`: the disks the helper's ledger holds, one JSON line each
//! (`type: "disk"`), or a table.

use crate::create::helper;
use crate::BIN;
use banger::cli;
use banger::config::Config;
use banger::record::{self, Record, Writer};
use serde_json::Value;
use std::process::ExitCode;

fn human(bytes: &Value) -> String {
    let Some(b) = bytes.as_u64() else {
        return "-".into();
    };
    const UNITS: &[(&str, u64)] = &[
        ("T", 1 << 40),
        ("G", 1 << 30),
        ("M", 1 << 20),
        ("K", 1 << 10),
    ];
    for (u, n) in UNITS {
        if b >= *n {
            return format!("{:.1}{u}", b as f64 / *n as f64);
        }
    }
    format!("{b}B")
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A disk from `snap.list` as a record.
pub fn to_record(d: &Value) -> Record {
    let mut r = record::new("disk", d["vm"].as_str().unwrap_or("?"));
    for k in [
        "method",
        "path",
        "image",
        "size_bytes",
        "disk_bytes",
        "exists",
        "created_at",
    ] {
        r.insert(k.into(), d[k].clone());
    }
    r
}

pub fn table(recs: &[Record]) -> String {
    let mut rows = vec![["NAME", "METHOD", "IMAGE", "SIZE", "ON-DISK", "PATH"]
        .map(String::from)
        .to_vec()];
    for r in recs {
        let g = |k: &str| r.get(k).cloned().unwrap_or(Value::Null);
        rows.push(vec![
            record::name(r).unwrap_or("?").to_string(),
            text(&g("method")),
            text(&g("image")),
            human(&g("size_bytes")),
            human(&g("disk_bytes")),
            if g("exists") == false {
                format!("{} (missing)", text(&g("path")))
            } else {
                text(&g("path"))
            },
        ]);
    }
    banger::cli::render_table(&rows)
}

pub fn run(cfg: &Config, names: &[String], as_table: bool) -> ExitCode {
    for n in names {
        if !banger::store::valid_name(n) {
            eprintln!("{BIN}: error: invalid VM name {n:?}: use 1-32 characters a-z, 0-9 and '-', starting with a letter");
            return ExitCode::from(cli::EXIT_FAILURE);
        }
    }
    let h = helper(cfg);
    let disks = match h.call("snap.list", serde_json::json!({})) {
        Ok(v) => v["disks"].as_array().cloned().unwrap_or_default(),
        Err(e) => {
            cli::report(BIN, &e);
            return ExitCode::from(cli::EXIT_FAILURE);
        }
    };
    let recs: Vec<Record> = disks
        .iter()
        .map(to_record)
        .filter(|r| names.is_empty() || names.iter().any(|n| Some(n.as_str()) == record::name(r)))
        .collect();
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
