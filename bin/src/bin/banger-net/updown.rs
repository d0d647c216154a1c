//! `banger-net up` and `banger-net down`.

use crate::{dns, hosts, BIN};
use banger::client::{ClientError, Helper};
use banger::config::Config;
use banger::record::{self, Record};
use banger::step::{Action, Input, Step, StepError};
use banger::store::Store;
use serde_json::{json, Map, Value};
use std::net::Ipv4Addr;
use std::process::ExitCode;

/// The helper client: the socket, else in process as root.
pub fn helper(cfg: &Config) -> Helper {
    Helper::new(cfg, Some(banger_helper::local))
}

/// A helper call whose failure is the step's failure.
pub fn call(helper: &Helper, op: &str, args: Value) -> Result<Value, StepError> {
    helper
        .call(op, args)
        .map_err(|e| StepError::new(e.code(), &e))
}

fn name_of(rec: &Record) -> String {
    record::name(rec).unwrap_or_default().to_string()
}

/// Refreshes the hosts file; a failure is a warning (the network itself is fine).
fn refresh_hosts(cfg: &Config, helper: &Helper) {
    if let Err(e) = hosts::refresh(cfg, helper) {
        eprintln!(
            "{BIN}: warning: VM names may not resolve: {}",
            banger::cli::one_line(&e)
        );
    }
}

pub fn up(cfg: &Config, store: &Store, input: Input, dns_flag: &[Ipv4Addr]) -> ExitCode {
    let helper = helper(cfg);
    let step = Step {
        bin: BIN,
        step: "net",
        store,
    };
    step.run(input, |rec| up_one(cfg, &helper, rec, dns_flag))
}

fn up_one(
    cfg: &Config,
    helper: &Helper,
    rec: &mut Record,
    dns_flag: &[Ipv4Addr],
) -> Result<Action, StepError> {
    let name = name_of(rec);
    let old = record::section(rec, "net").cloned().unwrap_or_default();
    let mut args = json!({"vm": name});
    if let Some(ip) = old.get("ip").and_then(Value::as_str) {
        args["ip"] = ip.into();
    }
    let info = call(helper, "net.up", args)?;
    let dns: Vec<Value> = if !dns_flag.is_empty() {
        dns_flag.iter().map(|d| d.to_string().into()).collect()
    } else if let Some(Value::Array(d)) = old
        .get("dns")
        .filter(|d| d.as_array().is_some_and(|a| !a.is_empty()))
    {
        d.clone()
    } else {
        dns::host_resolvers()
            .iter()
            .map(|d| d.to_string().into())
            .collect()
    };
    if dns.is_empty() {
        eprintln!(
            "{BIN}: warning: {name}: the host has no upstream DNS server a guest can reach; pass --dns ADDR"
        );
    }
    let mut net = Map::new();
    for k in ["bridge", "tap", "mac", "ip", "prefix", "gateway"] {
        net.insert(k.into(), info[k].clone());
    }
    net.insert("dns".into(), Value::Array(dns));
    net.insert(
        "forwards".into(),
        info.get("forwards").cloned().unwrap_or_else(|| json!([])),
    );
    rec.insert("net".into(), Value::Object(net.clone()));
    refresh_hosts(cfg, helper);
    // Write into the disk only when what the guest sees changed: a running VM's disk must
    // not be written under it, and an unchanged config needs no write.
    let guest_view = |m: &Map<String, Value>| -> Vec<Value> {
        ["ip", "prefix", "gateway", "dns", "mac"]
            .iter()
            .map(|k| m.get(*k).cloned().unwrap_or(Value::Null))
            .collect()
    };
    if rec.get("snap").is_some_and(|s| !s.is_null()) && guest_view(&old) != guest_view(&net) {
        customize(helper, &name, &net)?;
    }
    Ok(Action::Save)
}

/// Writes the guest's network config into its disk (the snap step's helper op).
fn customize(helper: &Helper, name: &str, net: &Map<String, Value>) -> Result<(), StepError> {
    let mut n = Map::new();
    for k in ["ip", "prefix", "gateway", "dns", "mac"] {
        n.insert(k.into(), net[k].clone());
    }
    match helper.call("snap.customize", json!({"vm": name, "net": n})) {
        Ok(_) => Ok(()),
        Err(ClientError::Op { error, .. }) if error.code == "unknown_op" => {
            eprintln!(
                "{BIN}: note: {name}: this helper cannot write the network config into the disk yet (no snap.customize); the guest must configure itself (kernel ip= argument)"
            );
            Ok(())
        }
        Err(e) => Err(StepError::new(e.code(), &e)),
    }
}

pub fn down(cfg: &Config, store: &Store, input: Input, keep_bridge: bool) -> ExitCode {
    let helper = helper(cfg);
    let step = Step {
        bin: BIN,
        step: "net",
        store,
    };
    step.run(input, |rec| {
        let name = name_of(rec);
        call(
            &helper,
            "net.down",
            json!({"vm": name, "keep_bridge": keep_bridge}),
        )?;
        rec.remove("net");
        refresh_hosts(cfg, &helper);
        Ok(Action::Save)
    })
}
