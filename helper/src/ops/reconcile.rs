//! The `reconcile.*` ops, for `banger-reconcile` (which runs as the owner):
//!
//! - `reconcile.scan` (read-only): every ledger entry (or one VM's) with what the host says of
//!   its object (`present`, `gone`, `none` for an allocation with no object, `unknown` when it
//!   could not be looked at), a jail's Firecracker when it runs, and (for the whole ledger) the
//!   host objects that look like banger's but that no entry holds: taps named `bgr*`, the
//!   bridge, `table inet banger`, loop devices backed by files under the state dir, mounts and
//!   VM directories under the jail dir, Firecrackers chrooted there. Those are only reported.
//! - `reconcile.drop`: removes one ledger entry whose object is provably gone, checked again
//!   under the lock the entry's own family of ops takes (so never while a `snap`, `net` or
//!   `jail` op of that VM is at work). Only entries are touched, never a host object; the owner
//!   may drop only what the owner made.
//!
//! Files in the owner's state dir are looked at with the owner's credentials; root's own
//! places (the jail dir, /dev, /sys, the mount table) as root, through paths only root writes.

use super::{ledger_err, Caller, Ctx, OpResult};
use crate::jail::{mounts, JailData};
use crate::ledger::Entry;
use crate::net::{self, nft, sys, Net};
use crate::snap::{disk, loopdev};
use crate::validate;
use banger::proto::{code, OpError};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

pub fn dispatch(op: &str, ctx: &Ctx, _caller: &Caller, args: &Value) -> Option<OpResult> {
    Some(match op {
        "reconcile.scan" => scan(ctx, args),
        "reconcile.drop" => drop_entry(ctx, args),
        _ => return None,
    })
}

/// Kinds whose entries `reconcile.drop` may remove once their object is gone. An address
/// (`addr`) is an allocation with no object, a forward (`nft-rule`) is a wish `banger-net up`
/// puts back, and `sysctl` remembers a previous value: none of them is ever "gone".
pub const DROPPABLE: &[&str] = &[
    "disk",
    "loop",
    "dm",
    "jail",
    "mount",
    "cgroup",
    "tap",
    "bridge",
    "nft-table",
];

/// What the host says of one entry's object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Object {
    Present,
    Gone,
    /// An allocation or a setting: nothing on the host to look for.
    None,
    /// It could not be looked at (a tool failed, a placeholder never attached).
    Unknown,
}

impl Object {
    pub fn as_str(self) -> &'static str {
        match self {
            Object::Present => "present",
            Object::Gone => "gone",
            Object::None => "none",
            Object::Unknown => "unknown",
        }
    }
    fn of(b: bool) -> Object {
        if b {
            Object::Present
        } else {
            Object::Gone
        }
    }
}

/// The host, looked at once per scan (each part only when some entry needs it).
#[derive(Default)]
struct Host {
    links: Option<Option<BTreeSet<String>>>,
    table: Option<Option<bool>>,
    rules: Option<Option<BTreeSet<String>>>,
    mounts: Option<BTreeSet<PathBuf>>,
    /// The owner-side files of the disks: path -> exists (one pass as the owner).
    files: BTreeMap<String, bool>,
}

impl Host {
    fn links(&mut self) -> Option<&BTreeSet<String>> {
        self.links
            .get_or_insert_with(|| {
                sys::links()
                    .ok()
                    .map(|l| l.into_iter().map(|l| l.ifname).collect())
            })
            .as_ref()
    }
    fn table(&mut self) -> Option<bool> {
        *self.table.get_or_insert_with(|| nft::table_exists().ok())
    }
    fn rules(&mut self) -> Option<&BTreeSet<String>> {
        if self.table() == Some(false) {
            self.rules = Some(Some(BTreeSet::new()));
        }
        self.rules
            .get_or_insert_with(|| {
                nft::rules()
                    .ok()
                    .map(|r| r.into_iter().map(|(_, _, c)| c).collect())
            })
            .as_ref()
    }
    fn mounts(&mut self, base: &Path) -> &BTreeSet<PathBuf> {
        self.mounts
            .get_or_insert_with(|| mounts::mounts_under(base).into_iter().collect())
    }
}

/// The file that holds a disk's blocks: the disk, or the COW file of a dm-snapshot.
fn disk_file(e: &Entry) -> String {
    e.data["cow"].as_str().unwrap_or(&e.id).to_string()
}

/// Looks at every disk file of `entries` at once, with the owner's credentials.
fn stat_disks(ctx: &Ctx, entries: &[Entry], host: &mut Host) {
    let files: Vec<String> = entries
        .iter()
        .filter(|e| e.kind == "disk")
        .map(disk_file)
        .filter(|f| !host.files.contains_key(f))
        .collect();
    if files.is_empty() {
        return;
    }
    let seen = ctx
        .as_owner(|| {
            files
                .iter()
                .map(|f| (f.clone(), std::fs::symlink_metadata(f).is_ok()))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    host.files.extend(seen);
}

/// A device-mapper name banger made (`banger-*`, no path separator).
fn dm_path(id: &str) -> Option<PathBuf> {
    (id.starts_with("banger-") && !id.contains('/') && id.len() <= 127)
        .then(|| Path::new("/dev/mapper").join(id))
}

/// A jail's directory, when it lies where banger makes them: `<jail dir>/<group>/<vm>`.
fn jail_dir_ok(base: &Path, dir: &Path) -> bool {
    dir.strip_prefix(base).is_ok_and(|r| {
        r.components().count() == 2
            && r.components()
                .all(|c| matches!(c, std::path::Component::Normal(_)))
    })
}

/// What one entry's object looks like, and for a jail its live Firecracker (pid, start time).
fn observe(ctx: &Ctx, host: &mut Host, e: &Entry) -> (Object, Option<(i32, u64)>) {
    let base = ctx.cfg.jail_dir.clone();
    let obj = match e.kind.as_str() {
        "addr" | "sysctl" => Object::None,
        "tap" | "bridge" => match host.links() {
            Some(l) => Object::of(l.contains(&e.id)),
            None => Object::Unknown,
        },
        "nft-table" => host.table().map_or(Object::Unknown, Object::of),
        "nft-rule" => {
            let Some((proto, port)) = e.id.split_once('/') else {
                return (Object::Unknown, None);
            };
            let f = nft::Forward {
                vm: e.vm.clone(),
                proto: proto.into(),
                host_port: port.parse().unwrap_or(0),
                guest_ip: std::net::Ipv4Addr::UNSPECIFIED,
                guest_port: 0,
            };
            match host.rules() {
                Some(r) => Object::of(r.contains(&f.comment())),
                None => Object::Unknown,
            }
        }
        "disk" => {
            stat_disks(ctx, std::slice::from_ref(e), host);
            let file = host.files.get(&disk_file(e)).copied().unwrap_or(false);
            let dev_ok = e.data["method"].as_str() != Some("dm-snapshot")
                || e.data["path"]
                    .as_str()
                    .is_some_and(|p| Path::new(p).exists());
            match (file, dev_ok) {
                (true, true) => Object::Present,
                (false, _) => Object::Gone,
                // The blocks are there but the device over them is not (after a reboot):
                // neither removable nor usable as is.
                (true, false) => Object::Unknown,
            }
        }
        "loop" => {
            if !e.id.starts_with("/dev/loop") {
                Object::Unknown // a placeholder of an attach that may be under way
            } else {
                let want = (
                    e.data["file_dev"].as_u64().unwrap_or(0),
                    e.data["file_ino"].as_u64().unwrap_or(0),
                );
                Object::of(loopdev::backing(&e.id) == Some(want))
            }
        }
        "dm" => dm_path(&e.id).map_or(Object::Unknown, |p| Object::of(p.exists())),
        "mount" => Object::of(host.mounts(&base).contains(Path::new(&e.id))),
        "cgroup" => {
            let p = Path::new(&e.id);
            if p.starts_with(crate::jail::cgroup::ROOT) {
                Object::of(p.exists())
            } else {
                Object::Unknown
            }
        }
        "jail" => {
            let Ok(d) = JailData::deserialize(&*e.data) else {
                return (Object::Unknown, None);
            };
            let live = d.find(&base).map(|f| (f.pid, f.start_time));
            // An lstat of `<jail dir>/<group>/<vm>`: every directory on the way is root's
            // (the jailer makes `<vm>`; only `<vm>/root` is handed to the owner).
            let dir = jail_dir_ok(&base, &d.dir) && std::fs::symlink_metadata(&d.dir).is_ok();
            return (Object::of(dir || live.is_some()), live);
        }
        _ => Object::Unknown,
    };
    (obj, None)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScanArgs {
    #[serde(default)]
    vm: Option<String>,
}

fn scan(ctx: &Ctx, args: &Value) -> OpResult {
    let a: ScanArgs = validate::args(args)?;
    let vm = a.vm.as_deref().map(validate::name).transpose()?;
    let stamp = ctx.ledger.stamp();
    let mut entries = ctx.ledger.list().map_err(ledger_err)?;
    if let Some(v) = vm {
        entries.retain(|e| e.vm == v);
    }
    let mut known = Known::default();
    if vm.is_none() {
        known.add(&entries);
    }
    let mut host = Host::default();
    stat_disks(ctx, &entries, &mut host);
    let mut out = Vec::with_capacity(entries.len());
    for e in entries {
        let (obj, live) = observe(ctx, &mut host, &e);
        let mut m = serde_json::Map::new();
        m.insert("vm".into(), e.vm.into());
        m.insert("kind".into(), e.kind.clone().into());
        m.insert("id".into(), e.id.into());
        if !e.data.is_null() {
            m.insert("data".into(), std::sync::Arc::unwrap_or_clone(e.data));
        }
        m.insert("created_at".into(), e.created_at.into());
        if let Some(b) = e.by {
            m.insert("by".into(), b.into());
        }
        m.insert("object".into(), obj.as_str().into());
        if e.kind == "jail" {
            m.insert("running".into(), live.is_some().into());
            m.insert("live_pid".into(), live.map(|l| l.0).into());
            m.insert("live_start_time".into(), live.map(|l| l.1).into());
        }
        out.push(Value::Object(m));
    }
    let strays = if vm.is_none() {
        // Objects are made after their entry and removed before it: an object seen between
        // two reads of the ledger that neither read holds is no step's work in progress.
        let seen = host_objects(ctx, &mut host);
        if ctx.ledger.stamp() != stamp {
            known.add(&ctx.ledger.list().map_err(ledger_err)?);
        }
        strays(&known, seen)
    } else {
        Vec::new()
    };
    Ok(json!({ "entries": out, "strays": strays }))
}

/// What ledger entries hold: ids by kind, and the jails' directories.
#[derive(Default)]
struct Known {
    by_kind: BTreeMap<String, BTreeSet<String>>,
    jail_dirs: BTreeSet<PathBuf>,
}

impl Known {
    fn add(&mut self, entries: &[Entry]) {
        for e in entries {
            self.by_kind
                .entry(e.kind.clone())
                .or_default()
                .insert(e.id.clone());
            if e.kind == "jail" {
                if let Ok(d) = JailData::deserialize(&*e.data) {
                    self.jail_dirs.insert(d.dir);
                }
            }
        }
    }
    fn has(&self, kind: &str, id: &str) -> bool {
        self.by_kind.get(kind).is_some_and(|s| s.contains(id))
    }
}

/// A host object that looks like banger's: kind, id, and what to say about it.
struct Seen {
    kind: &'static str,
    id: String,
    /// For a jail directory or a jailed Firecracker: the jail's directory.
    dir: Option<PathBuf>,
    extra: Value,
}

/// Every host object that looks like banger's, whether an entry holds it or not.
fn host_objects(ctx: &Ctx, host: &mut Host) -> Vec<Seen> {
    let seen = |kind, id: String, dir, extra| Seen {
        kind,
        id,
        dir,
        extra,
    };
    let mut out = Vec::new();
    if let Some(links) = host.links().cloned() {
        // Taps, and taps retired at `down` on their way out (`crate::net::retire`).
        for l in links
            .iter()
            .filter(|l| l.starts_with("bgr") || l.starts_with(crate::net::retire::PREFIX))
        {
            out.push(seen("tap", l.clone(), None, Value::Null));
        }
        if links.contains(&ctx.cfg.bridge) {
            out.push(seen("bridge", ctx.cfg.bridge.clone(), None, Value::Null));
        }
    }
    if host.table() == Some(true) {
        out.push(seen("nft-table", nft::TABLE_ID.into(), None, Value::Null));
    }
    for (dev, file) in loops_backed_under(&ctx.cfg.state_dir) {
        out.push(seen("loop", dev, None, json!({ "file": file })));
    }
    let base = ctx.cfg.jail_dir.clone();
    for m in host.mounts(&base).clone() {
        if m != base {
            out.push(seen("mount", m.display().to_string(), None, Value::Null));
        }
    }
    for d in jail_dirs(&base) {
        out.push(seen(
            "jail-dir",
            d.display().to_string(),
            Some(d),
            Value::Null,
        ));
    }
    for (pid, id, dir) in jailed_firecrackers(&base) {
        out.push(seen("firecracker", id, Some(dir), json!({ "pid": pid })));
    }
    out
}

/// The objects of `seen` that no entry of `known` holds. Only reported.
fn strays(known: &Known, seen: Vec<Seen>) -> Vec<Value> {
    let jail = |s: &Seen| s.dir.as_ref().is_some_and(|d| known.jail_dirs.contains(d));
    let mut out = Vec::new();
    for s in seen {
        let (held, why) = match s.kind {
            "tap" => (
                known.has("tap", &s.id),
                "a tap named like banger's that no ledger entry holds",
            ),
            "bridge" => (
                known.has("bridge", &s.id),
                "banger's bridge exists but the ledger did not make it",
            ),
            "nft-table" => (
                known.by_kind.contains_key("nft-table"),
                "banger's nftables table exists but the ledger did not make it",
            ),
            "loop" => (
                known.has("loop", &s.id),
                "a loop device over a file in the state dir that no ledger entry holds",
            ),
            "mount" => (
                known.has("mount", &s.id),
                "a mount under the jail dir that no ledger entry holds",
            ),
            "jail-dir" => (
                jail(&s),
                "a VM directory under the jail dir that no ledger entry holds",
            ),
            _ => (
                jail(&s),
                "a Firecracker in a jail under the jail dir that no ledger entry holds",
            ),
        };
        if !held {
            let mut v = json!({"kind": s.kind, "id": s.id, "why": why});
            if let (Some(m), Value::Object(x)) = (v.as_object_mut(), s.extra) {
                m.extend(x);
            }
            out.push(v);
        }
    }
    out
}

/// `(device, backing file)` of loop devices whose backing file lies under `dir`.
fn loops_backed_under(dir: &Path) -> Vec<(String, String)> {
    let Ok(rd) = std::fs::read_dir("/sys/block") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in rd.filter_map(Result::ok) {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with("loop") {
            continue;
        }
        let Ok(file) = std::fs::read_to_string(e.path().join("loop/backing_file")) else {
            continue;
        };
        let file = file.trim_end_matches('\n');
        let file = file.strip_suffix(" (deleted)").unwrap_or(file);
        if Path::new(file).starts_with(dir) {
            out.push((format!("/dev/{name}"), file.to_string()));
        }
    }
    out.sort();
    out
}

/// `<jail dir>/<group>/<vm>` directories (root's, so listed as root).
fn jail_dirs(base: &Path) -> Vec<PathBuf> {
    let Ok(groups) = std::fs::read_dir(base) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for g in groups.filter_map(Result::ok) {
        // `.exec` holds the helper's copy of Firecracker (jail::exec), no jails.
        if !g.file_type().is_ok_and(|t| t.is_dir())
            || g.file_name().to_string_lossy().starts_with('.')
        {
            continue;
        }
        let Ok(vms) = std::fs::read_dir(g.path()) else {
            continue;
        };
        out.extend(
            vms.filter_map(Result::ok)
                .filter(|v| v.file_type().is_ok_and(|t| t.is_dir()))
                .map(|v| v.path()),
        );
    }
    out.sort();
    out
}

/// `(pid, --id, jail dir)` of the Firecrackers whose root (jailer) or API socket (direct)
/// lies under the jail dir.
fn jailed_firecrackers(base: &Path) -> Vec<(i32, String, PathBuf)> {
    let proc = banger::find_pid::Proc::default();
    let mut out = Vec::new();
    for pid in proc.pids() {
        // The name first: most processes are not Firecracker, and one read tells.
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if !comm.starts_with("firecracker") {
            continue;
        }
        let Some(info) = proc.info(pid) else { continue };
        if info.is_dead() || !info.comm.starts_with("firecracker") {
            continue;
        }
        let Some(id) = info
            .cmdline
            .windows(2)
            .find(|w| w[0] == "--id")
            .map(|w| w[1].clone())
        else {
            continue;
        };
        let root = std::fs::read_link(format!("/proc/{pid}/root")).ok();
        let inside = root
            .filter(|r| r.starts_with(base))
            .or_else(|| {
                info.cmdline
                    .iter()
                    .map(PathBuf::from)
                    .find(|p| p.starts_with(base))
            })
            .and_then(|p| {
                let rel = p.strip_prefix(base).ok()?.to_path_buf();
                let mut c = rel.components();
                Some(base.join(c.next()?).join(c.next()?))
            });
        if let Some(dir) = inside {
            out.push((pid, id, dir));
        }
    }
    out
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DropArgs {
    vm: String,
    kind: String,
    id: String,
}

/// Removes one entry whose object is gone, checked again under its family's lock.
fn drop_entry(ctx: &Ctx, args: &Value) -> OpResult {
    let a: DropArgs = validate::args(args)?;
    let shared = matches!(a.kind.as_str(), "bridge" | "nft-table");
    if shared {
        if a.vm != net::SHARED {
            return Err(OpError::new(
                code::INVALID_ARGS,
                format!("a {} entry belongs to \"-\", not to a VM", a.kind),
            ));
        }
    } else {
        validate::name(&a.vm)?;
    }
    if !DROPPABLE.contains(&a.kind.as_str()) {
        return Err(OpError::new(
            code::INVALID_ARGS,
            format!(
                "entries of kind {:?} are never dropped by reconcile (droppable: {})",
                a.kind,
                DROPPABLE.join(", ")
            ),
        ));
    }
    if a.id.is_empty() || a.id.len() > 4096 || a.id.contains(['\0', '\n']) {
        return Err(OpError::new(
            code::INVALID_ARGS,
            "id must be 1-4096 bytes of one line",
        ));
    }
    ctx.check_access(&a.vm)?;
    // The lock of the ops that make and remove this kind of entry.
    let _snap = match a.kind.as_str() {
        "disk" | "loop" | "dm" => Some(disk::lock(ctx, &a.vm)?),
        _ => None,
    };
    let _jail = match a.kind.as_str() {
        "jail" | "mount" | "cgroup" => Some(super::jail::lock(ctx, &a.vm)?),
        _ => None,
    };
    let n;
    let _net = match a.kind.as_str() {
        "tap" | "bridge" | "nft-table" => {
            n = Net::new(ctx)?;
            Some(n.lock()?)
        }
        _ => None,
    };
    let Some(e) = ctx.ledger.get(&a.vm, &a.kind, &a.id).map_err(ledger_err)? else {
        return Ok(json!({"dropped": false, "why": "no such entry"}));
    };
    if ctx.caller.uid != 0 && e.by.is_some_and(|b| b != ctx.caller.uid) {
        return Err(OpError::new(
            code::PERMISSION_DENIED,
            format!(
                "the {} {} of {} was made by uid {}: only that uid or root may drop it",
                e.kind,
                e.id,
                e.vm,
                e.by.unwrap_or(0)
            ),
        ));
    }
    let (obj, _) = observe(ctx, &mut Host::default(), &e);
    if obj != Object::Gone {
        return Err(OpError::new(
            code::CONFLICT,
            format!(
                "the {} {} of {} is {} on this host: its entry stays",
                e.kind,
                e.id,
                e.vm,
                if obj == Object::Present {
                    "still there"
                } else {
                    "not known to be gone"
                }
            ),
        ));
    }
    let dropped = ctx
        .ledger
        .remove(&e.vm, &e.kind, &e.id)
        .map_err(ledger_err)?;
    Ok(json!({"dropped": dropped}))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(tag: &str) -> Ctx {
        let dir = std::env::temp_dir().join(format!("banger-opsrec-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut cfg = banger::config::Config::load().unwrap();
        cfg.root_dir = dir.join("root");
        cfg.state_dir = dir.join("state");
        cfg.jail_dir = dir.join("jail");
        cfg.owner_uid = None;
        Ctx::new(cfg)
    }

    #[test]
    fn the_copy_of_firecracker_beside_the_jails_is_no_jail() {
        let c = ctx("execdir");
        let base = c.cfg.jail_dir.clone();
        for d in ["firecracker/vm1/root", ".exec/1-2-3-4.5"] {
            std::fs::create_dir_all(base.join(d)).unwrap();
        }
        assert_eq!(jail_dirs(&base), vec![base.join("firecracker/vm1")]);
        let _ = std::fs::remove_dir_all(base.parent().unwrap());
    }

    fn call(c: &Ctx, op: &str, args: Value) -> OpResult {
        let caller = Caller {
            uid: 0,
            gid: 0,
            pid: 1,
        };
        dispatch(op, c, &caller, &args).unwrap()
    }

    #[test]
    fn drop_refuses_what_it_must_not_touch() {
        let c = ctx("refuse");
        for (args, want) in [
            (
                json!({"vm": "../x", "kind": "disk", "id": "a"}),
                "invalid_name",
            ),
            (
                json!({"vm": "a", "kind": "addr", "id": "10.0.0.2"}),
                "invalid_args",
            ),
            (
                json!({"vm": "a", "kind": "nft-rule", "id": "tcp/80"}),
                "invalid_args",
            ),
            (
                json!({"vm": "a", "kind": "bridge", "id": "banger0"}),
                "invalid_args",
            ),
            (
                json!({"vm": "a", "kind": "disk", "id": "a\nb"}),
                "invalid_args",
            ),
            (
                json!({"vm": "a", "kind": "disk", "id": "x", "cmd": "rm"}),
                "invalid_args",
            ),
        ] {
            let e = call(&c, "reconcile.drop", args.clone()).unwrap_err();
            assert_eq!(e.code, want, "{args}");
        }
        let _ = std::fs::remove_dir_all(c.cfg.root_dir.parent().unwrap());
    }

    /// An entry is dropped only when its object is gone: a disk file that exists keeps its
    /// entry, a deleted one loses it, and a second drop finds nothing.
    #[test]
    fn only_gone_objects_lose_their_entry() {
        let c = ctx("gone");
        std::fs::create_dir_all(c.cfg.vm_dir("a")).unwrap();
        let disk = c.cfg.vm_dir("a").join("disk.ext4");
        std::fs::write(&disk, b"blocks").unwrap();
        let id = disk.display().to_string();
        c.ledger
            .add(Entry::new(
                "a",
                "disk",
                &id,
                json!({"path": id, "complete": true}),
            ))
            .unwrap();
        let args = json!({"vm": "a", "kind": "disk", "id": id});
        let e = call(&c, "reconcile.drop", args.clone()).unwrap_err();
        assert_eq!(e.code, "conflict");
        let s = call(&c, "reconcile.scan", json!({})).unwrap();
        assert_eq!(s["entries"][0]["object"], "present");
        std::fs::remove_file(&disk).unwrap();
        let s = call(&c, "reconcile.scan", json!({"vm": "a"})).unwrap();
        assert_eq!(s["entries"][0]["object"], "gone");
        assert_eq!(
            call(&c, "reconcile.drop", args.clone()).unwrap()["dropped"],
            true
        );
        assert!(c.ledger.list().unwrap().is_empty());
        assert_eq!(call(&c, "reconcile.drop", args).unwrap()["dropped"], false);
        let _ = std::fs::remove_dir_all(c.cfg.root_dir.parent().unwrap());
    }

    #[test]
    fn the_owner_cannot_drop_what_root_made() {
        let c = ctx("owner");
        c.ledger
            .with_caller(0)
            .add(Entry::new("a", "mount", "/nowhere/x", Value::Null))
            .unwrap();
        let owner = Caller {
            uid: 4343,
            gid: 4343,
            pid: 1,
        };
        let cc = c.for_caller(&owner);
        let e = dispatch(
            "reconcile.drop",
            &cc,
            &owner,
            &json!({"vm": "a", "kind": "mount", "id": "/nowhere/x"}),
        )
        .unwrap()
        .unwrap_err();
        assert_eq!(e.code, "permission_denied");
        assert_eq!(c.ledger.list().unwrap().len(), 1);
        let _ = std::fs::remove_dir_all(c.cfg.root_dir.parent().unwrap());
    }

    #[test]
    fn allocations_have_no_object() {
        let c = ctx("alloc");
        let mut h = Host::default();
        let e = Entry::new("a", "addr", "10.200.0.2", Value::Null);
        assert_eq!(observe(&c, &mut h, &e).0, Object::None);
        let e = Entry::new("a", "loop", "pending-base-a", Value::Null);
        assert_eq!(observe(&c, &mut h, &e).0, Object::Unknown);
        let e = Entry::new("a", "dm", "../../etc", Value::Null);
        assert_eq!(observe(&c, &mut h, &e).0, Object::Unknown);
        let _ = std::fs::remove_dir_all(c.cfg.root_dir.parent().unwrap());
    }
}
