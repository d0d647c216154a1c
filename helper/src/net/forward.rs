//! Port forwards (`forward`) and the view of every VM's network (`list`).

use super::nft::{self, Forward};
use super::sys;
use super::vm::{forward_json, forward_of};
use super::{Net, NetError, KIND_ADDR, KIND_BRIDGE, KIND_RULE, KIND_TAP, SHARED};
use crate::ledger::Entry;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

/// One forward to add or remove.
#[derive(Debug, Clone)]
pub struct ForwardReq {
    pub vm: String,
    pub proto: String,
    pub host_port: u16,
    /// Needed to add; ignored when removing.
    pub guest_port: Option<u16>,
    pub remove: bool,
}

/// Adds (or removes) a port forward for a VM that is up. Returns the VM's forwards.
pub fn forward(net: &Net, req: &ForwardReq) -> Result<Vec<Value>, NetError> {
    let _g = net.lock()?;
    let vm = req.vm.as_str();
    let all = net.ledger.snapshot()?;
    let ip: Ipv4Addr = all
        .iter()
        .filter(|e| e.vm == vm && e.kind == KIND_ADDR)
        .find_map(|e| e.id.parse().ok())
        .ok_or_else(|| NetError::NoNet { vm: vm.into() })?;
    let id = format!("{}/{}", req.proto, req.host_port);
    let existing = all.iter().find(|e| e.kind == KIND_RULE && e.id == id);
    if req.remove {
        let e = existing
            .filter(|e| e.vm == vm)
            .ok_or_else(|| NetError::NoForward {
                vm: vm.into(),
                id: id.clone(),
            })?;
        if let Some(f) = forward_of(e) {
            nft::delete_commented(&f.comment())?;
        }
        net.ledger.remove(vm, KIND_RULE, &id)?;
    } else {
        let f = Forward {
            vm: vm.into(),
            proto: req.proto.clone(),
            host_port: req.host_port,
            guest_ip: ip,
            guest_port: req.guest_port.unwrap_or(req.host_port),
        };
        match existing {
            Some(e) if e.vm == vm && forward_of(e).as_ref() == Some(&f) => {}
            Some(e) => {
                return Err(NetError::Forwarded {
                    spec: format!("{}/{}", req.host_port, req.proto),
                    id,
                    owner: e.vm.clone(),
                })
            }
            None => {
                if sys::port_in_use(&f.proto, f.host_port) {
                    return Err(NetError::PortInUse { id });
                }
                net.ledger.add(Entry::new(
                    vm,
                    KIND_RULE,
                    &id,
                    json!({"guest_ip": ip.to_string(), "guest_port": f.guest_port, "comment": f.comment()}),
                ))?;
                if let Err(e) = nft::apply(&f.add_script()) {
                    let _ = nft::delete_commented(&f.comment());
                    let _ = net.ledger.remove(vm, KIND_RULE, &id);
                    return Err(e);
                }
            }
        }
    }
    Ok(net
        .ledger
        .for_vm(vm)?
        .iter()
        .filter(|e| e.kind == KIND_RULE)
        .filter_map(forward_of)
        .map(|f| forward_json(&f))
        .collect())
}

/// Every VM's address as the ledger has it (`[{"vm", "ip"}]`, by name): what the hosts file
/// of `banger-net` lists. `net.up` and `net.down` send it with their answer, so the step
/// writes that file without asking `net.list`.
pub fn hosts(net: &Net) -> Result<Value, NetError> {
    let all = net.ledger.snapshot()?;
    let mut by_vm: BTreeMap<&str, &str> = BTreeMap::new();
    for e in all.iter().filter(|e| e.vm != SHARED && e.kind == KIND_ADDR) {
        by_vm.insert(&e.vm, &e.id);
    }
    Ok(by_vm
        .into_iter()
        .map(|(vm, ip)| json!({"vm": vm, "ip": ip}))
        .collect())
}

/// Every VM's network as the ledger has it, with whether its tap and the bridge exist.
pub fn list(net: &Net, only: Option<&str>) -> Result<Value, NetError> {
    let all = net.ledger.snapshot()?;
    let links = sys::links()?;
    let live = |name: &str| links.iter().find(|l| l.ifname == name);
    let mut vms: BTreeMap<String, Value> = BTreeMap::new();
    for e in all.iter().filter(|e| e.vm != SHARED) {
        if only.is_some_and(|o| o != e.vm) {
            continue;
        }
        let v = vms
            .entry(e.vm.clone())
            .or_insert_with(|| json!({"vm": e.vm, "forwards": []}));
        match e.kind.as_str() {
            KIND_ADDR => {
                v["ip"] = e.id.clone().into();
                v["mac"] = e.data["mac"].clone();
                v["prefix"] = net.subnet.prefix.into();
            }
            KIND_TAP => {
                let l = live(&e.id);
                v["tap"] = e.id.clone().into();
                v["tap_state"] = match l {
                    None => "missing",
                    Some(l) if l.master.as_deref() != Some(net.bridge.as_str()) => "detached",
                    Some(l) if l.is_up() => "up",
                    Some(_) => "down",
                }
                .into();
            }
            KIND_RULE => {
                if let (Some(f), Some(a)) = (forward_of(e), v["forwards"].as_array_mut()) {
                    a.push(forward_json(&f));
                }
            }
            _ => {}
        }
    }
    let bridge = all
        .iter()
        .find(|e| e.kind == KIND_BRIDGE && e.id == net.bridge)
        .map(|e| {
            json!({
                "name": e.id,
                "subnet": e.data["subnet"],
                "gateway": e.data["gateway"],
                "exists": live(&e.id).is_some(),
                "up": live(&e.id).is_some_and(sys::Link::is_up),
            })
        });
    Ok(json!({
        "bridge": bridge,
        "nat": nft::table_exists()?,
        "vms": vms.into_values().collect::<Vec<_>>(),
    }))
}
