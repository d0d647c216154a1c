//! What the porcelain (`banger up`, `banger down`, `banger rm`) shares: running a pipeline
//! of step binaries, each one's stdout into the next one's stdin and every stderr straight to
//! the user's, and printing for people or for programs.
//!
//! Output: records (JSON lines) when stdout is not a terminal or with `--json`; otherwise a
//! short summary per VM (name, state, address, how to reach it), never the records' keys or
//! other long fields, so nothing meant for programs lands on a terminal by default.

use crate::cli;
use crate::record::{self, Record, Writer};
use crate::section::{self, Net, Spec, Vm};
use std::ffi::OsString;
use std::io::{BufRead, BufReader, IsTerminal};
use std::process::{Child, Command, ExitStatus, Stdio};

/// Records or a summary for people.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Records,
    People,
}

impl Output {
    /// `--json`, or stdout not a terminal: records; else a summary for people.
    pub fn detect(json: bool) -> Output {
        if json || !std::io::stdout().is_terminal() {
            Output::Records
        } else {
            Output::People
        }
    }
}

/// One step of a pipeline: a banger binary (found next to this one, then on PATH) and its
/// arguments.
#[derive(Debug, Clone)]
pub struct Stage {
    pub bin: &'static str,
    pub args: Vec<OsString>,
}

impl Stage {
    pub fn new<I, S>(bin: &'static str, args: I) -> Stage
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        Stage {
            bin,
            args: args.into_iter().map(Into::into).collect(),
        }
    }

    /// The stage as a shell would show it.
    pub fn shown(&self) -> String {
        let mut s = self.bin.to_string();
        for a in &self.args {
            s.push(' ');
            s.push_str(&a.to_string_lossy());
        }
        s
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("{bin} is not installed next to {} or on PATH (reinstall banger)", std::env::current_exe().map(|p| p.display().to_string()).unwrap_or_default())]
    Missing { bin: &'static str },
    #[error("cannot start {bin}")]
    Spawn {
        bin: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// What a pipeline gave: the last step's records and each step's exit status.
#[derive(Debug)]
pub struct Ran {
    pub records: Vec<Record>,
    pub statuses: Vec<(&'static str, ExitStatus)>,
    /// Lines of the last step's stdout that were not records (shown as they came).
    pub other: Vec<String>,
}

impl Ran {
    /// True when every step exited 0 and no record carries `error`.
    pub fn ok(&self) -> bool {
        self.statuses.iter().all(|(_, s)| s.success())
            && !self.records.iter().any(record::has_error)
    }

    /// The first step that failed without a record saying so (it died, or failed before it
    /// read anything).
    pub fn failed_step(&self) -> Option<&'static str> {
        self.statuses
            .iter()
            .find(|(_, s)| !s.success())
            .map(|(b, _)| *b)
    }
}

/// Runs `stages` as `a | b | c`: stdin from /dev/null for the first, the last one's stdout
/// read here, every stderr the user's. Waits for all of them.
pub fn run(stages: &[Stage]) -> Result<Ran, PipelineError> {
    let mut children: Vec<(&'static str, Child)> = Vec::new();
    let mut prev: Option<std::process::ChildStdout> = None;
    let result = (|| {
        for st in stages {
            let path = cli::sibling(st.bin).ok_or(PipelineError::Missing { bin: st.bin })?;
            let stdin = match prev.take() {
                Some(out) => Stdio::from(out),
                None => Stdio::null(),
            };
            let mut child = Command::new(&path)
                .args(&st.args)
                .stdin(stdin)
                .stdout(Stdio::piped())
                .spawn()
                .map_err(|source| PipelineError::Spawn {
                    bin: st.bin,
                    source,
                })?;
            prev = child.stdout.take();
            children.push((st.bin, child));
        }
        Ok(())
    })();
    let mut records = Vec::new();
    let mut other = Vec::new();
    if let Some(out) = prev.take() {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if line.trim().is_empty() {
                continue;
            }
            match record::parse(line.as_bytes(), 1) {
                Ok(r) => records.push(r),
                Err(_) => other.push(line),
            }
        }
    }
    let mut statuses = Vec::new();
    for (bin, mut c) in children {
        match c.wait() {
            Ok(s) => statuses.push((bin, s)),
            Err(_) => {
                let _ = c.kill();
            }
        }
    }
    result.map(|()| Ran {
        records,
        statuses,
        other,
    })
}

/// Prints records as JSON lines on stdout.
pub fn print_records(records: &[Record]) -> bool {
    let mut w = Writer::stdout();
    records.iter().all(|r| w.emit(r).is_ok())
}

/// One line for people about a VM record: `dev1  running  10.200.0.2  2 vCPUs, 1024 MiB,
/// image default`.
pub fn summary(rec: &Record) -> String {
    let name = record::name(rec).unwrap_or("?");
    let spec = section::get::<Spec>(rec).ok().flatten().unwrap_or_default();
    let net = section::get::<Net>(rec).ok().flatten().unwrap_or_default();
    let vm = section::get::<Vm>(rec).ok().flatten().unwrap_or_default();
    let state = vm.state.unwrap_or_else(|| {
        if rec.contains_key("jail") {
            "launched".into()
        } else {
            "stopped".into()
        }
    });
    let mut facts = Vec::new();
    if let Some(ip) = net.ip {
        facts.push(ip);
    }
    let mut shape = Vec::new();
    if let Some(v) = spec.vcpus {
        shape.push(format!("{v} vCPU{}", if v == 1 { "" } else { "s" }));
    }
    if let Some(m) = spec.mem_mib {
        shape.push(format!("{m} MiB"));
    }
    if let Some(i) = spec.image {
        shape.push(format!("image {i}"));
    }
    if !shape.is_empty() {
        facts.push(shape.join(", "));
    }
    if facts.is_empty() {
        format!("{name}: {state}")
    } else {
        format!("{name}: {state}, {}", facts.join(", "))
    }
}

/// The error a record carries, as `step: message`.
pub fn error_of(rec: &Record) -> Option<(String, String)> {
    let e = record::section(rec, "error")?;
    Some((
        e.get("step")
            .and_then(|v| v.as_str())
            .unwrap_or("?")
            .to_string(),
        e.get("message")
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_string(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn summaries_are_short_and_carry_no_keys() {
        let mut r = record::new("vm", "dev1");
        r.insert(
            "spec".into(),
            json!({"image": "default", "vcpus": 2, "mem_mib": 1024, "ssh_pubkey": "ssh-ed25519 AAAASECRET"}),
        );
        r.insert("net".into(), json!({"ip": "10.200.0.2", "tap": "t"}));
        r.insert("vm".into(), json!({"state": "running"}));
        r.insert(
            "snap".into(),
            json!({"host_keys": {"ed25519": "ssh-ed25519 HOSTKEY"}}),
        );
        let s = summary(&r);
        assert_eq!(
            s,
            "dev1: running, 10.200.0.2, 2 vCPUs, 1024 MiB, image default"
        );
        assert!(!s.contains("AAAA") && !s.contains("HOSTKEY"));
        assert_eq!(summary(&record::new("vm", "x")), "x: stopped");
    }

    #[test]
    fn pipelines_chain_and_report_each_status() {
        let ran = run(&[
            Stage::new("sh", ["-c", r#"echo '{"v":1,"type":"vm","name":"a"}'"#]),
            Stage::new("cat", Vec::<String>::new()),
        ])
        .unwrap();
        assert!(ran.ok());
        assert_eq!(ran.records.len(), 1);
        let ran = run(&[
            Stage::new("sh", ["-c", "exit 3"]),
            Stage::new("cat", Vec::<String>::new()),
        ])
        .unwrap();
        assert!(!ran.ok());
        assert_eq!(ran.failed_step(), Some("sh"));
        assert!(matches!(
            run(&[Stage::new("banger-no-such-step", Vec::<String>::new())]),
            Err(PipelineError::Missing { .. })
        ));
    }
}
