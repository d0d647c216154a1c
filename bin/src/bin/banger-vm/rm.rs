//! `banger-vm rm`: removes VM records whose resources are gone. With `--force` it first runs
//! the inverse steps (jail teardown, net down, snap rm), which release whatever the root
//! helper's ledger holds for the VM, even when its record is damaged or missing.

use crate::BIN;
use banger::cli;
use banger::client::Helper;
use banger::config::Config;
use banger::record::{self, Reader, Writer};
use banger::step::{Input, StepError};
use banger::store::{Store, StoreError};
use serde_json::json;
use std::process::ExitCode;

/// The inverse steps, in the order they must run, with the record section each releases.
const INVERSES: &[(&str, &str, &str)] = &[
    ("jail", "banger-jail", "teardown"),
    ("net", "banger-net", "down"),
    ("snap", "banger-snap", "rm"),
];

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

/// The kinds of resource (`disk`, `tap`, `jail`, ...) the root helper's ledger holds for
/// `name`, sorted and without repeats.
fn ledger_kinds(helper: &Helper, name: &str) -> Result<Vec<String>, StepError> {
    let answer = helper
        .call("ledger.list", json!({"vm": name}))
        .map_err(|e| StepError::new(e.code(), &e))?;
    let mut kinds: Vec<String> = answer["entries"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["vm"] == name)
        .filter_map(|e| e["kind"].as_str().map(String::from))
        .collect();
    kinds.sort();
    kinds.dedup();
    Ok(kinds)
}

/// Puts a bare record (`v`, `type`, `name`) in place of a damaged or missing one, so the
/// inverse steps, which work on stored VMs only, can release what the ledger holds.
fn bare_record(store: &Store, name: &str, why: &str) -> Result<(), StepError> {
    let _g = store.lock_vm(name)?;
    let path = store.record_path(name);
    if path.exists() {
        let aside = path.with_extension("json.damaged");
        std::fs::rename(&path, &aside).map_err(|e| StepError::new("store", &e))?;
    }
    eprintln!("{BIN}: {name}: {why}; releasing what the root helper holds for it");
    store.save(&record::new("vm", name))?;
    Ok(())
}

/// `--force`: release everything the ledger holds for `name`.
fn release(helper: &Helper, store: &Store, name: &str) -> Result<(), StepError> {
    match store.load(name) {
        Ok(_) => {}
        Err(StoreError::Damaged { why, .. }) => {
            bare_record(store, name, &format!("its record is damaged ({why})"))?;
        }
        Err(StoreError::NotFound { .. }) => {
            let kinds = ledger_kinds(helper, name)?;
            if kinds.is_empty() {
                return Err(StoreError::NotFound { name: name.into() }.into());
            }
            bare_record(
                store,
                name,
                &format!(
                    "it has no record, but the ledger holds: {}",
                    kinds.join(", ")
                ),
            )?;
        }
        Err(e) => return Err(e.into()),
    }
    for (_, bin, sub) in INVERSES {
        run_inverse(bin, sub, name)?;
    }
    Ok(())
}

fn remove_one(helper: &Helper, store: &Store, name: &str, force: bool) -> Result<(), StepError> {
    if !banger::store::valid_name(name) {
        return Err(StoreError::BadName { name: name.into() }.into());
    }
    if force {
        release(helper, store, name)?;
    }
    let _g = store.lock_existing(name)?;
    let rec = store.load(name)?;
    let in_record = INVERSES
        .iter()
        .find(|(s, _, _)| rec.get(*s).is_some_and(|v| !v.is_null()));
    if let Some((section, bin, sub)) = in_record {
        return Err(StepError::msg(
            "in_use",
            format!(
                "{name} still has its {section} resources: run '{bin} {sub} {name}' first, or 'banger-vm rm --force {name}'"
            ),
        ));
    }
    // The record may lack what a killed step made: the ledger is the truth about that.
    let kinds = ledger_kinds(helper, name)?;
    if !kinds.is_empty() {
        return Err(StepError::msg(
            "in_use",
            format!(
                "the root helper still holds {} for {name} (not in its record): 'banger-vm rm --force {name}' releases them",
                kinds.join(", ")
            ),
        ));
    }
    store.remove(name)?;
    // banger-vm ssh's pinned host keys for NAME go with it: a new VM of that name has others.
    let _ = std::fs::remove_file(crate::access::known_hosts_path(store.root(), name));
    Ok(())
}

pub fn run(cfg: &Config, store: &Store, input: Input, force: bool) -> ExitCode {
    if let Err(code) = input.check(BIN) {
        return code;
    }
    let mut failed = false;
    let mut w = Writer::stdout();
    let mut names = Vec::new();
    match input {
        Input::Names(n) => names = n,
        Input::Stdin => {
            let mut records = 0;
            for item in Reader::new(std::io::stdin().lock()) {
                records += 1;
                match item {
                    Ok((_, rec)) if record::has_error(&rec) => {
                        // Forward failures unchanged so the pipeline names the failing step.
                        failed = true;
                        if w.emit(&rec).is_err() {
                            return ExitCode::from(cli::EXIT_FAILURE);
                        }
                    }
                    Ok((line, rec)) => match record::check_envelope(&rec, "vm") {
                        Ok(()) => names.push(record::name(&rec).unwrap_or_default().to_string()),
                        Err(why) => {
                            failed = true;
                            eprintln!("{BIN}: error: line {line}: {why}");
                        }
                    },
                    Err(e) => {
                        failed = true;
                        cli::report(BIN, &e);
                    }
                }
            }
            if records == 0 {
                eprintln!("{BIN}: error: no records on stdin: give VM names, or pipe records in");
                failed = true;
            }
        }
    }
    let helper = Helper::new(cfg, Some(banger_helper::local));
    for name in names {
        if let Err(e) = remove_one(&helper, store, &name, force) {
            failed = true;
            e.print(BIN, &name);
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
