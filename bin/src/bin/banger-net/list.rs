//! `banger-net list`: the bridge (a `bridge` record) and one `net` record per VM network,
//! as the helper's ledger has them, with the live state of each tap.

use crate::updown::helper;
use crate::BIN;
use banger::cli;
use banger::config::Config;
use banger::record::{self, Record, Writer};
use serde_json::{json, Value};
use std::process::ExitCode;

/// The records to print from `net.list`'s answer.
pub fn records(list: &Value) -> Vec<Record> {
    let mut out = Vec::new();
    if let Some(b) = list["bridge"].as_object() {
        let mut r = record::new("bridge", b["name"].as_str().unwrap_or("?"));
        for k in ["subnet", "gateway", "exists", "up"] {
            r.insert(k.into(), b.get(k).cloned().unwrap_or(Value::Null));
        }
        r.insert("nat".into(), list["nat"].clone());
        out.push(r);
    }
    for v in list["vms"].as_array().into_iter().flatten() {
        let mut r = record::new("net", v["vm"].as_str().unwrap_or("?"));
        for k in ["ip", "prefix", "mac", "tap", "tap_state", "forwards"] {
            r.insert(k.into(), v.get(k).cloned().unwrap_or(Value::Null));
        }
        out.push(r);
    }
    out
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The records as an aligned table.
pub fn table(recs: &[Record]) -> String {
    let mut rows = vec![["NAME", "IP", "MAC", "TAP", "STATE", "FORWARDS"]
        .map(String::from)
        .to_vec()];
    for r in recs.iter().filter(|r| r["type"] == "net") {
        let fwd: Vec<String> = r["forwards"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|f| {
                format!(
                    "{}:{}/{}",
                    f["host_port"],
                    f["guest_port"],
                    text(&f["proto"])
                )
            })
            .collect();
        rows.push(vec![
            text(&r["name"]),
            text(&r["ip"]),
            text(&r["mac"]),
            text(&r["tap"]),
            text(&r["tap_state"]),
            if fwd.is_empty() {
                "-".into()
            } else {
                fwd.join(",")
            },
        ]);
    }
    banger::cli::render_table(&rows)
}

pub fn run(cfg: &Config, as_table: bool) -> ExitCode {
    let list = match helper(cfg).call("net.list", json!({})) {
        Ok(v) => v,
        Err(e) => {
            cli::report(BIN, &e);
            return ExitCode::from(cli::EXIT_FAILURE);
        }
    };
    let recs = records(&list);
    if as_table {
        print!("{}", table(&recs));
        return ExitCode::from(cli::EXIT_OK);
    }
    let mut w = Writer::stdout();
    for r in &recs {
        if let Err(e) = w.emit(r) {
            cli::report(BIN, &e);
            return ExitCode::from(cli::EXIT_FAILURE);
        }
    }
    ExitCode::from(cli::EXIT_OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_records_and_table() {
        let l = json!({"bridge": {"name": "banger0", "subnet": "10.200.0.0/24", "gateway": "10.200.0.1", "exists": true, "up": true},
            "nat": true,
            "vms": [{"vm": "a", "ip": "10.200.0.2", "prefix": 24, "mac": "06:00:0a:c8:00:02", "tap": "bgr0ac80002", "tap_state": "up",
                     "forwards": [{"host_port": 8080, "guest_port": 80, "proto": "tcp"}]}]});
        let r = records(&l);
        assert_eq!(r.len(), 2);
        assert_eq!(r[0]["type"], "bridge");
        assert_eq!(r[1]["type"], "net");
        assert_eq!(r[1]["name"], "a");
        let t = table(&r);
        assert!(
            t.lines().nth(1).unwrap().ends_with("up     8080:80/tcp"),
            "{t}"
        );
        assert!(records(&json!({"bridge": null, "vms": []})).is_empty());
    }
}
