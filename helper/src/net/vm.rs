//! `up` and `down`: a VM's address, tap and the shared bridge, NAT table and forwarding.

use super::nft::{self, Forward};
use super::retire;
use super::subnet::{bridge_mac, mac_for, tap_for};
use super::sys::{self, Link, Rtnl};
use super::{
    Net, NetError, KIND_ADDR, KIND_BRIDGE, KIND_RULE, KIND_SYSCTL, KIND_TABLE, KIND_TAP, SHARED,
    SYSCTL_FORWARD,
};
use crate::ledger::Entry;
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

/// What `up` made or found, for the record's `net` section.
#[derive(Debug, Clone, Serialize)]
pub struct UpInfo {
    pub bridge: String,
    pub tap: String,
    pub mac: String,
    pub ip: String,
    pub prefix: u8,
    pub gateway: String,
    pub uplink: Option<String>,
    pub forwards: Vec<Value>,
    /// True when the address was allocated by this call (false: an existing one).
    pub allocated: bool,
}

/// What `down` removed.
#[derive(Debug, Clone, Serialize)]
pub struct DownInfo {
    pub removed: Vec<String>,
    pub bridge_removed: bool,
}

/// What this call created, so a failure half way can remove exactly that.
#[derive(Default)]
struct Made {
    addr: Option<Ipv4Addr>,
    /// The tap's ledger entry was added with the address (the tap itself not made yet).
    tap_entry: Option<String>,
    tap: Option<String>,
    bridge: bool,
    table: bool,
    sysctl: bool,
}

/// Ensures the VM's network: address, bridge, NAT, forwarding, tap. Idempotent: a VM that
/// already has an address keeps it, and missing pieces are repaired.
pub fn up(net: &Net, vm: &str, want: Option<Ipv4Addr>) -> Result<UpInfo, NetError> {
    use banger::timing::span;
    let _g = span("lock", || net.lock())?;
    let entries = net.ledger.snapshot()?;
    let mut made = Made::default();
    let (ip, fresh) = span("claim", || claim(net, &entries, vm, want))?;
    if fresh {
        made.addr = Some(ip);
        made.tap_entry = Some(tap_for(ip));
    }
    match build(net, vm, ip, &mut made) {
        Ok(mut info) => {
            info.allocated = fresh;
            Ok(info)
        }
        Err(e) => {
            undo(net, vm, &made);
            Err(e)
        }
    }
}

/// The VM's address: its ledger entry, else `want` if it is free, else the lowest free. A
/// new address is recorded with its tap in one ledger write, before the tap is made; a tap
/// of that name that exists already is not banger's ([`NetError::Collision`]).
fn claim(
    net: &Net,
    entries: &[Entry],
    vm: &str,
    want: Option<Ipv4Addr>,
) -> Result<(Ipv4Addr, bool), NetError> {
    if let Some(ip) = entries
        .iter()
        .filter(|e| e.vm == vm && e.kind == KIND_ADDR)
        .find_map(|e| e.id.parse::<Ipv4Addr>().ok())
    {
        return Ok((ip, false));
    }
    let mut taken: BTreeSet<Ipv4Addr> = entries
        .iter()
        .filter(|e| e.kind == KIND_ADDR)
        .filter_map(|e| e.id.parse().ok())
        .collect();
    taken.extend(held_by_records(net, vm));
    let ip = match want {
        Some(w) if net.subnet.is_guest(w) && !taken.contains(&w) => w,
        _ => net
            .subnet
            .first_free(&taken)
            .ok_or_else(|| NetError::Exhausted {
                subnet: net.subnet.to_string(),
                capacity: net.subnet.capacity(),
            })?,
    };
    let tap = tap_for(ip);
    if sys::exists(&tap) {
        return Err(NetError::Collision { name: tap });
    }
    net.ledger.add_all(vec![
        Entry::new(
            vm,
            KIND_ADDR,
            &ip.to_string(),
            json!({"mac": mac_for(ip), "tap": tap}),
        ),
        tap_entry(net, vm, &tap),
    ])?;
    Ok((ip, true))
}

fn tap_entry(net: &Net, vm: &str, tap: &str) -> Entry {
    Entry::new(
        vm,
        KIND_TAP,
        tap,
        json!({"bridge": net.bridge, "uid": net.owner_uid, "gid": net.owner_gid}),
    )
}

/// Addresses written in other VMs' records (`net.ip`): never handed out while a record
/// holds them, even if the ledger lost them. The records are the owner's: they are read with
/// the owner's credentials, without following a symlink, never blocking on a FIFO, at most
/// 1 MiB each.
///
/// A record is read again only when its file changed (each save is a new file): the addresses
/// are kept by the file's identity, so a resident helper allocating the 50th address reads one
/// record, not 49.
fn held_by_records(net: &Net, except: &str) -> Vec<Ipv4Addr> {
    type Key = (u64, u64, i64, i64, i64);
    static SEEN: std::sync::Mutex<BTreeMap<std::path::PathBuf, (Key, Option<Ipv4Addr>)>> =
        std::sync::Mutex::new(BTreeMap::new());
    let vms_dir = net.vms_dir.clone();
    let read = || -> Vec<Ipv4Addr> {
        let Ok(dir) = banger::fsx::Dir::open(&vms_dir) else {
            return Vec::new();
        };
        let mut seen = SEEN.lock().unwrap_or_else(|p| p.into_inner());
        let names = dir.names().unwrap_or_default();
        let mut out = Vec::new();
        let mut present = BTreeSet::new();
        for n in names.iter().filter_map(|n| n.to_str()) {
            if n == except || !banger::store::valid_name(n) {
                continue;
            }
            let rel = std::path::Path::new(n).join("vm.json");
            let Ok(Some(st)) = dir
                .open_dir(std::path::Path::new(n))
                .and_then(|d| d.stat_at("vm.json"))
            else {
                continue;
            };
            let key = (
                st.st_dev,
                st.st_ino,
                st.st_size,
                st.st_mtime,
                st.st_mtime_nsec as i64,
            );
            let path = vms_dir.join(&rel);
            present.insert(path.clone());
            let ip = match seen.get(&path) {
                Some((k, ip)) if *k == key => *ip,
                _ => {
                    let ip = dir.read_capped(&rel, 1 << 20).ok().and_then(|bytes| {
                        let v: Value = serde_json::from_slice(&bytes).ok()?;
                        v.get("net")?.get("ip")?.as_str()?.parse().ok()
                    });
                    seen.insert(path, (key, ip));
                    ip
                }
            };
            out.extend(ip);
        }
        seen.retain(|p, _| {
            p.parent().and_then(|d| d.parent()) != Some(&vms_dir) || present.contains(p)
        });
        out
    };
    net.ctx.as_owner(read).unwrap_or_default()
}

fn build(net: &Net, vm: &str, ip: Ipv4Addr, made: &mut Made) -> Result<UpInfo, NetError> {
    use banger::timing::span;
    made.bridge = span("bridge", || ensure_bridge(net))?;
    let uplink = span("uplink", sys::uplink)?;
    made.table = span("nat", || ensure_nat(net, uplink.as_deref()))?;
    made.sysctl = span("forwarding", || ensure_forwarding(net))?;
    let tap = tap_for(ip);
    if !sys::exists(&tap) {
        // Made now (a new address recorded it with the tap), or put back (gone behind
        // banger's back, or its entry lost): in the ledger before it exists.
        if made.tap_entry.is_none() && net.ledger.get(vm, KIND_TAP, &tap)?.is_none() {
            net.ledger.add(tap_entry(net, vm, &tap))?;
        }
        made.tap = Some(tap.clone());
        span("tap-add", || {
            super::tap::add(&tap, net.owner_uid, net.owner_gid)
        })?;
    } else if net.ledger.get(vm, KIND_TAP, &tap)?.is_none() {
        return Err(NetError::Collision { name: tap });
    }
    span("tap-up", || Rtnl::open()?.set_up(&tap, Some(&net.bridge)))?;
    let forwards = span("forwards", || ensure_forwards(net, vm))?;
    Ok(UpInfo {
        bridge: net.bridge.clone(),
        tap,
        mac: mac_for(ip),
        ip: ip.to_string(),
        prefix: net.subnet.prefix,
        gateway: net.subnet.gateway().to_string(),
        uplink,
        forwards,
        allocated: false,
    })
}

/// The bridge, with the gateway address, up. Returns whether it was created now.
fn ensure_bridge(net: &Net) -> Result<bool, NetError> {
    let b = &net.bridge;
    let entry = net.ledger.get(SHARED, KIND_BRIDGE, b)?;
    let exists = Rtnl::open()?.link(b)?;
    let subnet = net.subnet.to_string();
    if let Some(e) = &entry {
        let old = e.data["subnet"].as_str().unwrap_or_default();
        if old != subnet {
            return Err(NetError::SubnetChanged {
                bridge: b.clone(),
                old: old.into(),
                new: subnet,
            });
        }
    }
    let gw = net.subnet.gateway();
    let prefix = net.subnet.prefix;
    let created = match (&exists, &entry) {
        (Some(_), None) => return Err(NetError::ForeignBridge { name: b.clone() }),
        (Some(_), Some(_)) => false,
        (None, _) => {
            if let Some(what) = sys::overlap(&net.subnet, b)? {
                return Err(NetError::Overlap {
                    subnet: subnet.clone(),
                    what,
                });
            }
            let mac = bridge_mac(gw);
            net.ledger.add(Entry::new(
                SHARED,
                KIND_BRIDGE,
                b,
                json!({"subnet": subnet, "gateway": gw.to_string(), "mac": mac}),
            ))?;
            if let Err(e) = Rtnl::open().and_then(|mut nl| nl.add_bridge(b, &mac)) {
                let _ = net.ledger.remove(SHARED, KIND_BRIDGE, b);
                return Err(e);
            }
            true
        }
    };
    if created || !sys::has_addr(b, gw, prefix)? {
        Rtnl::open()?.replace_addr(b, gw, prefix)?;
    }
    if created || !exists.as_ref().is_some_and(Link::is_up) {
        Rtnl::open()?.set_up(b, None)?;
    }
    Ok(created)
}

/// banger's nftables table with the masquerade rule for the current uplink. The ledger
/// entry keeps the script last applied: when it is the one wanted now and the table still
/// holds its chains and rule (read over netlink), nothing is run.
fn ensure_nat(net: &Net, uplink: Option<&str>) -> Result<bool, NetError> {
    let entry = net.ledger.get(SHARED, KIND_TABLE, nft::TABLE_ID)?;
    let exists = nft::table_exists()?;
    if exists && entry.is_none() {
        return Err(NetError::ForeignTable);
    }
    let script = nft::ensure_script(&net.subnet, &net.bridge, uplink);
    let applied = entry
        .as_ref()
        .and_then(|e| e.data.get(NAT_APPLIED))
        .and_then(|v| v.as_str());
    if exists && applied == Some(script.as_str()) && nft::nat_in_place()? {
        return Ok(false);
    }
    let data = json!({"subnet": net.subnet.to_string(), NAT_APPLIED: script});
    if entry.is_none() {
        // In the ledger before it exists; the script is recorded once it applied.
        net.ledger.add(Entry::new(
            SHARED,
            KIND_TABLE,
            nft::TABLE_ID,
            json!({"subnet": net.subnet.to_string()}),
        ))?;
    }
    let res = nft::apply(&script);
    if res.is_err() && !exists {
        let _ = nft::delete_table();
        let _ = net.ledger.remove(SHARED, KIND_TABLE, nft::TABLE_ID);
    }
    res?;
    let mut e = entry.unwrap_or_else(|| Entry::new(SHARED, KIND_TABLE, nft::TABLE_ID, Value::Null));
    e.data = std::sync::Arc::new(data);
    net.ledger.add(e)?;
    Ok(!exists)
}

/// The ledger key of the table entry that holds the NAT script last applied.
const NAT_APPLIED: &str = "applied";

/// IPv4 forwarding on; the previous value is kept in the ledger to restore later.
fn ensure_forwarding(net: &Net) -> Result<bool, NetError> {
    let cur = sys::ip_forward()?;
    if cur == "1" {
        return Ok(false);
    }
    if net
        .ledger
        .get(SHARED, KIND_SYSCTL, SYSCTL_FORWARD)?
        .is_none()
    {
        net.ledger.add(Entry::new(
            SHARED,
            KIND_SYSCTL,
            SYSCTL_FORWARD,
            json!({"previous": cur}),
        ))?;
    }
    sys::set_ip_forward("1")?;
    Ok(true)
}

/// The VM's forwards from the ledger, with any rule that went missing put back.
pub(super) fn ensure_forwards(net: &Net, vm: &str) -> Result<Vec<Value>, NetError> {
    let mine: Vec<Entry> = net
        .ledger
        .for_vm(vm)?
        .into_iter()
        .filter(|e| e.kind == KIND_RULE)
        .collect();
    if mine.is_empty() {
        return Ok(Vec::new());
    }
    let present: BTreeSet<String> = nft::rules()?.into_iter().map(|r| r.2).collect();
    let mut out = Vec::new();
    for e in mine {
        let Some(f) = forward_of(&e) else { continue };
        if !present.contains(&f.comment()) {
            nft::apply(&f.add_script())?;
        }
        out.push(forward_json(&f));
    }
    Ok(out)
}

/// The forward a ledger entry describes.
pub(super) fn forward_of(e: &Entry) -> Option<Forward> {
    let (proto, port) = e.id.split_once('/')?;
    Some(Forward {
        vm: e.vm.clone(),
        proto: proto.into(),
        host_port: port.parse().ok()?,
        guest_ip: e.data["guest_ip"].as_str()?.parse().ok()?,
        guest_port: u16::try_from(e.data["guest_port"].as_u64()?).ok()?,
    })
}

/// A forward as the record's `net.forwards` holds it.
pub(super) fn forward_json(f: &Forward) -> Value {
    json!({"host_port": f.host_port, "guest_port": f.guest_port, "proto": f.proto})
}

fn undo(net: &Net, vm: &str, made: &Made) {
    if let Some(tap) = &made.tap {
        let _ = Rtnl::open().and_then(|mut nl| nl.del_link(tap));
    }
    let ip = made.addr.map(|ip| ip.to_string());
    let mut keys: Vec<(&str, &str, &str)> = Vec::new();
    if let Some(tap) = made.tap.as_ref().or(made.tap_entry.as_ref()) {
        keys.push((vm, KIND_TAP, tap));
    }
    if let Some(ip) = &ip {
        keys.push((vm, KIND_ADDR, ip));
    }
    if !keys.is_empty() {
        let _ = net.ledger.remove_all(&keys);
    }
    if made.bridge || made.table || made.sysctl {
        let _ = remove_shared(net, made.bridge, made.table, made.sysctl);
    }
}

/// Removes the VM's forwards, tap and address; then the shared pieces when no VM holds an
/// address any more, unless `keep_bridge`.
pub fn down(net: &Net, vm: &str, keep_bridge: bool) -> Result<DownInfo, NetError> {
    use banger::timing::span;
    let _g = span("lock", || net.lock())?;
    let mut removed = Vec::new();
    let entries = net.ledger.for_vm(vm)?;
    for e in entries.iter().filter(|e| e.kind == KIND_RULE) {
        if let Some(f) = forward_of(e) {
            nft::delete_commented(&f.comment())?;
        }
        net.ledger.remove(vm, KIND_RULE, &e.id)?;
        removed.push(format!("nft-rule {}", e.id));
    }
    // The taps go first (removed, or retired for the helper's reaper to remove: see
    // [`retire`]); the VM's taps and addresses leave the ledger in one write, in which the
    // retired taps come in.
    let mut keys: Vec<(&str, &str, &str)> = Vec::new();
    let mut retiring: Vec<(String, String)> = Vec::new();
    let reaper = retire::reaper();
    if entries.iter().any(|e| e.kind == KIND_TAP) {
        // By name, one ioctl each: no dump of every interface (50 VMs' taps).
        for e in entries.iter().filter(|e| e.kind == KIND_TAP) {
            if sys::exists(&e.id) {
                // A name still taken by a tap retired before (down, up, down in a few ms)
                // is removed now instead.
                match retire::retired_name(&e.id).filter(|r| reaper.is_some() && !sys::exists(r)) {
                    Some(r) => retiring.push((e.id.clone(), r)),
                    None => span("tap-del", || Rtnl::open()?.del_link(&e.id))?,
                }
            }
            keys.push((vm, KIND_TAP, &e.id));
            removed.push(format!("tap {}", e.id));
        }
    }
    for e in entries.iter().filter(|e| e.kind == KIND_ADDR) {
        keys.push((vm, KIND_ADDR, &e.id));
        removed.push(format!("addr {}", e.id));
    }
    if !keys.is_empty() {
        let add = retiring
            .iter()
            .map(|(tap, r)| retire::entry(vm, tap, r))
            .collect();
        net.ledger.swap(&keys, add)?;
    }
    if !retiring.is_empty() {
        retire::crash_point("net.down:retire");
    }
    for (tap, r) in retiring {
        let renamed = span("tap-retire", || Rtnl::open()?.retire(&tap, &r));
        let sent = renamed.is_ok() && reaper.as_ref().is_some_and(|s| s.send(r.clone()).is_ok());
        if !sent {
            // Not renamed (or no reaper to take it): removed now, whichever name it has.
            let name = if renamed.is_ok() { &r } else { &tap };
            span("tap-del", || Rtnl::open()?.del_link(name))?;
            net.ledger.remove(SHARED, KIND_TAP, &r)?;
        }
    }
    let mut bridge_removed = false;
    if !keep_bridge {
        bridge_removed = remove_shared(net, true, true, true)?;
    }
    Ok(DownInfo {
        removed,
        bridge_removed,
    })
}

/// Removes the shared pieces (those selected, and only those in the ledger) when no VM
/// holds an address or a tap. Returns whether the bridge went.
fn remove_shared(net: &Net, bridge: bool, table: bool, sysctl: bool) -> Result<bool, NetError> {
    let all = net.ledger.snapshot()?;
    // A retired tap (off the bridge, on its way out) holds nothing up.
    if all
        .iter()
        .any(|e| e.kind == KIND_ADDR || (e.kind == KIND_TAP && !retire::is_retired(e)))
    {
        return Ok(false);
    }
    if table
        && all
            .iter()
            .any(|e| e.kind == KIND_TABLE && e.id == nft::TABLE_ID)
    {
        nft::delete_table()?;
        net.ledger.remove(SHARED, KIND_TABLE, nft::TABLE_ID)?;
    }
    let mut gone = false;
    if bridge {
        for e in all.iter().filter(|e| e.kind == KIND_BRIDGE) {
            if sys::exists(&e.id) {
                Rtnl::open()?.del_link(&e.id)?;
            }
            net.ledger.remove(SHARED, KIND_BRIDGE, &e.id)?;
            gone = true;
        }
    }
    if sysctl {
        if let Some(e) = all
            .iter()
            .find(|e| e.kind == KIND_SYSCTL && e.id == SYSCTL_FORWARD)
        {
            if let Some(prev) = e.data["previous"].as_str() {
                if prev == "0" || prev == "1" {
                    sys::set_ip_forward(prev)?;
                }
            }
            net.ledger.remove(SHARED, KIND_SYSCTL, SYSCTL_FORWARD)?;
        }
    }
    Ok(gone)
}
