//! `banger-net up` and `banger-net down`.

use crate::{dns, hosts, BIN};
use banger::client::{ClientError, Helper};
use banger::config::Config;
use banger::record::{self, Record};
use banger::section::{self, Net, Section, Snap};
use banger::step::{Action, Input, Step, StepError};
use banger::store::Store;
use serde_json::{json, Value};
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
    hosts_warning(hosts::refresh(cfg, helper));
}

fn hosts_warning(r: Result<std::path::PathBuf, hosts::HostsError>) {
    if let Err(e) = r {
        eprintln!(
            "{BIN}: warning: VM names may not resolve: {}",
            banger::cli::one_line(&e)
        );
    }
}

/// Runs the helper op `op` holding the hosts file's lock, then rewrites that file from the
/// addresses the answer carries: no `net.list` round trip, and no other writer in between.
fn call_and_refresh(
    cfg: &Config,
    helper: &Helper,
    op: &str,
    args: Value,
) -> Result<Value, StepError> {
    let held = hosts::lock(cfg);
    let answer = call(helper, op, args)?;
    hosts_warning(held.and_then(|l| hosts::refresh_after(cfg, helper, l, &answer)));
    Ok(answer)
}

pub fn up(cfg: &Config, store: &Store, input: Input, dns_flag: &[Ipv4Addr]) -> ExitCode {
    let helper = helper(cfg);
    let step = Step {
        bin: BIN,
        step: "net",
        store,
        owns: &[Net::KEY],
    };
    step.run(input, |rec| up_one(cfg, &helper, rec, dns_flag))
}

/// True when what the guest sees of its network (what `snap.customize` writes into the
/// disk) differs between `a` and `b`.
fn guest_view_differs(a: &Net, b: &Net) -> bool {
    (&a.ip, a.prefix, &a.gateway, &a.dns, &a.mac) != (&b.ip, b.prefix, &b.gateway, &b.dns, &b.mac)
}

fn up_one(
    cfg: &Config,
    helper: &Helper,
    rec: &mut Record,
    dns_flag: &[Ipv4Addr],
) -> Result<Action, StepError> {
    let name = name_of(rec);
    let old = section::get::<Net>(rec)?;
    let mut args = json!({"vm": name});
    if let Some(ip) = old.as_ref().and_then(|n| n.ip.as_deref()) {
        args["ip"] = ip.into();
    }
    let info = call_and_refresh(cfg, helper, "net.up", args)?;
    let made = finish_up(helper, rec, &name, old.as_ref(), &info, dns_flag);
    if made.is_err() && old.is_none() {
        // This run allocated the address and tap: give them back rather than leave them
        // held by a VM whose record never got its net section.
        if let Err(e) = call(
            helper,
            "net.down",
            json!({"vm": name, "keep_bridge": false}),
        ) {
            eprintln!(
                "{BIN}: warning: {name}: could not release the network made a moment ago: {}",
                e.message()
            );
        }
        refresh_hosts(cfg, helper);
    }
    made
}

/// The part of `net up` after the helper's `net.up` (and the hosts file): the section, the
/// guest's config in its disk.
fn finish_up(
    helper: &Helper,
    rec: &mut Record,
    name: &str,
    old: Option<&Net>,
    info: &Value,
    dns_flag: &[Ipv4Addr],
) -> Result<Action, StepError> {
    let dns: Vec<String> = if !dns_flag.is_empty() {
        dns_flag.iter().map(|d| d.to_string()).collect()
    } else if let Some(d) = old.map(|n| &n.dns).filter(|d| !d.is_empty()) {
        d.clone()
    } else {
        dns::host_resolvers()
            .iter()
            .map(|d| d.to_string())
            .collect()
    };
    if dns.is_empty() {
        eprintln!(
            "{BIN}: warning: {name}: the host has no upstream DNS server a guest can reach; pass --dns ADDR"
        );
    }
    let text = |k: &str| info[k].as_str().map(String::from);
    let net = Net {
        bridge: text("bridge"),
        tap: text("tap"),
        mac: text("mac"),
        ip: text("ip"),
        prefix: info["prefix"].as_u64().and_then(|p| u8::try_from(p).ok()),
        gateway: text("gateway"),
        dns,
        forwards: Some(
            info.get("forwards")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default(),
        ),
        // Fields of the old section banger does not know stay.
        extra: old.map(|n| n.extra.clone()).unwrap_or_default(),
    };
    section::put(rec, &net);
    // Write into the disk only when what the guest sees changed: a running VM's disk must
    // not be written under it, and an unchanged config needs no write.
    let changed = old.is_none_or(|o| guest_view_differs(o, &net));
    if rec.get(Snap::KEY).is_some_and(|s| !s.is_null()) && changed {
        customize(helper, name, &net)?;
    }
    Ok(Action::Save)
}

/// Writes the guest's network config into its disk (the snap step's helper op).
fn customize(helper: &Helper, name: &str, net: &Net) -> Result<(), StepError> {
    let n = json!({
        "ip": net.ip,
        "prefix": net.prefix,
        "gateway": net.gateway,
        "dns": net.dns,
        "mac": net.mac,
    });
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
        owns: &[Net::KEY],
    };
    step.run(input, |rec| {
        let name = name_of(rec);
        call_and_refresh(
            cfg,
            &helper,
            "net.down",
            json!({"vm": name, "keep_bridge": keep_bridge}),
        )?;
        section::remove::<Net>(rec);
        Ok(Action::Save)
    })
}
