//! `banger-vm rm`: removes VM records whose resources are gone. With `--force` it first runs
//! the inverse steps for whatever the record still holds (jail teardown, net down, snap rm).

use crate::BIN;
use banger::cli;
use banger::record::{self, Reader, Writer};
use banger::step::{Input, StepError};
use banger::store::Store;
use std::process::ExitCode;

/// Sections that mean a resource still exists, with the step that releases it, in the
/// order they must be released.
const INVERSES: &[(&str, &str, &str)] = &[
    ("jail", "banger-jail", "teardown"),
    ("net", "banger-net", "down"),
    ("snap", "banger-snap", "rm"),
];

fn held(rec: &record::Record) -> Vec<&'static (&'static str, &'static str, &'static str)> {
    INVERSES
        .iter()
        .filter(|(s, _, _)| rec.get(*s).is_some_and(|v| !v.is_null()))
        .collect()
}

fn run_inverse(bin: &str, sub: &str, name: &str) -> Result<(), StepError> {
    let path = cli::sibling(bin).ok_or_else(|| {
        StepError::msg(
            "missing_binary",
            format!("{bin} not found next to {BIN} or on PATH"),
        )
    })?;
    let out = std::process::Command::new(&path)
        .args([sub, name])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .status()
        .map_err(|e| StepError::new("spawn", &e))?;
    if out.success() {
        Ok(())
    } else {
        Err(StepError::msg(
            "inverse_failed",
            format!("{bin} {sub} {name} failed; the record is kept"),
        ))
    }
}

fn remove_one(store: &Store, name: &str, force: bool) -> Result<(), StepError> {
    if force {
        let rec = store.load(name)?;
        for (_, bin, sub) in held(&rec) {
            run_inverse(bin, sub, name)?;
        }
    }
    let _g = store.lock_vm(name)?;
    let rec = store.load(name)?;
    let left = held(&rec);
    if let Some((section, bin, sub)) = left.first() {
        return Err(StepError::msg(
            "in_use",
            format!(
                "{name} still has its {section} resources: run '{bin} {sub} {name}' first, or 'banger-vm rm --force {name}'"
            ),
        ));
    }
    store.remove(name)?;
    Ok(())
}

pub fn run(store: &Store, input: Input, force: bool) -> ExitCode {
    let mut failed = false;
    let mut w = Writer::stdout();
    let mut names = Vec::new();
    match input {
        Input::Names(n) => names = n,
        Input::Stdin => {
            for item in Reader::new(std::io::stdin().lock()) {
                match item {
                    Ok((_, rec)) if record::has_error(&rec) => {
                        // Forward failures unchanged so the pipeline names the failing step.
                        failed = true;
                        if w.emit(&rec).is_err() {
                            return ExitCode::from(cli::EXIT_FAILURE);
                        }
                    }
                    Ok((line, rec)) => match record::name(&rec) {
                        Some(n) => names.push(n.to_string()),
                        None => {
                            failed = true;
                            eprintln!("{BIN}: error: line {line}: record has no \"name\"");
                        }
                    },
                    Err(e) => {
                        failed = true;
                        cli::report(BIN, &e);
                    }
                }
            }
        }
    }
    for name in names {
        if let Err(e) = remove_one(store, &name, force) {
            failed = true;
            eprintln!("{BIN}: error: {name}: {}", e.message());
            let mut rec = record::new("vm", &name);
            record::set_error(&mut rec, "rm", &e.code, &e.message());
            if w.emit(&rec).is_err() {
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
