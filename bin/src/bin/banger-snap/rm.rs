//! `banger-snap rm`: removes a VM's disk and its device-mapper and loop objects, and the
//! record's `snap` section.

use crate::create::{call, helper};
use crate::BIN;
use banger::config::Config;
use banger::record::{self, Record};
use banger::section::{self, Jail, Section, Snap};
use banger::step::{Action, Input, Step, StepError};
use banger::store::Store;
use serde_json::json;
use std::process::ExitCode;

fn rm_one(h: &banger::client::Helper, rec: &mut Record) -> Result<Action, StepError> {
    let name = record::name(rec).unwrap_or_default().to_string();
    if rec.get(Jail::KEY).is_some_and(|j| !j.is_null()) {
        return Err(StepError::msg(
            "in_use",
            format!("{name} is launched (its record has a jail section): run 'banger-jail teardown {name}' first"),
        ));
    }
    match call(h, "snap.remove", json!({"vm": name})) {
        Ok(_) => {}
        // Nothing in the ledger: the disk is gone already, or was never made (a VM
        // removed before its disk was created); the section goes too.
        Err(e) if e.code == "not_found" => {}
        Err(e) => return Err(e),
    }
    section::remove::<Snap>(rec);
    Ok(Action::Save)
}

pub fn run(cfg: &Config, store: &Store, input: Input) -> ExitCode {
    let h = helper(cfg);
    let step = Step {
        bin: BIN,
        step: "snap",
        store,
        owns: &[Snap::KEY],
    };
    step.run(input, |rec| rm_one(&h, rec))
}
