//! From what is known about a VM ([`View`]) to findings: what differs between its record, the
//! helper's ledger and the host, and what `--apply` does about it. Pure: nothing here looks at
//! the host or changes anything.
//!
//! The rules (the record is the truth about what the user asked for, the ledger about what the
//! helper made, the host about what exists):
//! - a jail section whose Firecracker is gone: the VM is marked stopped and its jail, keeper
//!   and network are released; its disk stays;
//! - a live Firecracker the record lost (no jail section) or names by an old pid, a console
//!   keeper or API link that is gone: re-adopted, the Firecracker untouched;
//! - a ledger entry whose object is gone: dropped;
//! - what the ledger holds beyond the record (a step killed half way, a VM without a record):
//!   undone in reverse order of making, with `--gc` only; a whole disk is adopted, never
//!   removed;
//! - a disk the record names that is gone, a damaged record, a host object no entry holds: a
//!   person decides.

use crate::view::{Held, Rec, Stray, View};
use banger::section::{self, Spec, Vm};
use std::path::PathBuf;

/// What to do about a finding.
#[derive(Debug, Clone, PartialEq)]
pub enum Act {
    /// Nothing banger may do: reported for a person.
    Person,
    /// `vm.state` becomes stopped, with the reason.
    MarkStopped,
    /// Mark stopped (unless the record says so already), then release the jail (and keeper)
    /// and, with `net`, the network.
    StopAndRelease { net: bool },
    /// The record's pid and start time become the live Firecracker's.
    Readopt { pid: i32, start_time: u64 },
    /// `banger-jail launch NAME`: adopts the running Firecracker (jail section, API link,
    /// console keeper); never reached unless the Firecracker was just seen alive.
    Relaunch,
    /// `reconcile.drop` of one ledger entry whose object is gone.
    Drop { kind: String, id: String },
    /// `banger-net down NAME`.
    ReleaseNet,
    /// `banger-net up NAME` (puts back a missing forward).
    RepairNet,
    /// `banger-snap create NAME` (adopts the whole disk the ledger holds).
    AdoptDisk,
    /// `banger-jail teardown NAME` of a jail the record does not have.
    UndoJail,
    /// `banger-snap rm NAME` of a half-made disk the record does not have.
    UndoDisk,
    /// The helper's jail.teardown, net.down and snap.remove for a VM without a record, each
    /// only when the ledger holds something of its kind.
    UndoLedger { jail: bool, net: bool, disk: bool },
    /// Removes run dir links of a VM that has no jail.
    RemoveLinks(Vec<PathBuf>),
    /// Removes a VM directory that holds only the unfinished first write of its record.
    RemoveUnfinished,
    /// `banger up NAME --no-wait` (autostart at boot).
    Up { direct: bool },
}

impl Act {
    /// The `action` field.
    pub fn name(&self) -> &'static str {
        match self {
            Act::Person => "none",
            Act::MarkStopped => "mark-stopped",
            Act::StopAndRelease { .. } => "mark-stopped-and-release",
            Act::Readopt { .. } | Act::Relaunch => "re-adopt",
            Act::Drop { .. } => "drop-entry",
            Act::ReleaseNet => "release-net",
            Act::RepairNet => "repair-net",
            Act::AdoptDisk => "adopt-disk",
            Act::UndoJail | Act::UndoDisk | Act::UndoLedger { .. } => "undo",
            Act::RemoveLinks(_) => "remove-links",
            Act::RemoveUnfinished => "remove-unfinished",
            Act::Up { .. } => "up",
        }
    }
    /// The order of actions on one VM: entries first, then the jail, the network, the disk.
    fn rank(&self) -> u8 {
        match self {
            Act::Drop { .. } => 0,
            Act::MarkStopped | Act::StopAndRelease { .. } => 1,
            Act::Readopt { .. } => 2,
            Act::Relaunch | Act::UndoJail => 3,
            Act::ReleaseNet | Act::RepairNet => 4,
            Act::AdoptDisk | Act::UndoDisk => 5,
            Act::UndoLedger { .. } => 6,
            Act::RemoveLinks(_) | Act::RemoveUnfinished => 7,
            Act::Up { .. } => 8,
            Act::Person => 9,
        }
    }
}

/// One difference between the record, the ledger and the host.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub name: String,
    pub kind: &'static str,
    pub observed: String,
    pub act: Act,
    pub reason: String,
    /// Acted on only with `--gc`.
    pub gc: bool,
    /// A person must look even after the action.
    pub person: bool,
}

impl Finding {
    fn new(name: &str, kind: &'static str, observed: String, act: Act, reason: &str) -> Finding {
        let person = act == Act::Person;
        Finding {
            name: name.to_string(),
            kind,
            observed,
            act,
            reason: reason.to_string(),
            gc: false,
            person,
        }
    }
    fn gc(mut self) -> Finding {
        self.gc = true;
        self
    }
    fn person(mut self) -> Finding {
        self.person = true;
        self
    }
}

/// What the run knows beyond the view.
#[derive(Debug, Clone, Default)]
pub struct Context {
    /// When the host started, as RFC 3339 (records launched before it belong to a past boot).
    pub booted_at: Option<String>,
}

/// Entry kinds a gone object of which is simply dropped.
const DROP_KINDS: &[&str] = &["disk", "loop", "dm", "mount", "cgroup", "jail"];

fn kinds(held: &[&Held]) -> String {
    let mut k: Vec<&str> = held.iter().map(|h| h.kind.as_str()).collect();
    k.sort();
    k.dedup();
    k.join(", ")
}

/// The findings for one VM, in the order their actions must run.
pub fn judge(v: &View, cx: &Context) -> Vec<Finding> {
    let mut out = match &v.rec {
        Rec::Ok(_) => judge_record(v, cx),
        Rec::Damaged(why) => {
            let mut out = vec![Finding::new(
                &v.name,
                "damaged",
                why.clone(),
                Act::Person,
                &format!(
                    "banger rm --force {} releases what the helper holds for it and removes it",
                    v.name
                ),
            )];
            out.extend(drops(v, &[]));
            out
        }
        Rec::Unfinished(why) => {
            // What the ledger holds for it is a VM's without a record; then the directory.
            let mut out = judge_missing(v);
            out.push(
                Finding::new(
                    &v.name,
                    "unfinished-new",
                    why.clone(),
                    Act::RemoveUnfinished,
                    "a banger-vm new was killed before its record was written: nothing else is in the directory",
                )
                .gc(),
            );
            out
        }
        Rec::Missing => judge_missing(v),
    };
    out.sort_by_key(|f| f.act.rank());
    out
}

/// Drops of entries whose object is gone, except the kinds in `skip`.
fn drops(v: &View, skip: &[&str]) -> Vec<Finding> {
    v.held
        .iter()
        .filter(|h| h.gone() && DROP_KINDS.contains(&h.kind.as_str()))
        .filter(|h| !skip.contains(&h.kind.as_str()))
        .map(|h| {
            Finding::new(
                &v.name,
                "entry-gone",
                format!(
                    "the ledger holds {} {}, which is gone from the host",
                    h.kind, h.id
                ),
                Act::Drop {
                    kind: h.kind.clone(),
                    id: h.id.clone(),
                },
                "an entry for an object that no longer exists only misleads",
            )
        })
        .collect()
}

fn judge_record(v: &View, cx: &Context) -> Vec<Finding> {
    let name = v.name.as_str();
    let rec = v.record().expect("a record");
    let jail = v.jail();
    let has_jail = v.has("jail");
    let state = section::get::<Vm>(rec)
        .ok()
        .flatten()
        .and_then(|vm| vm.state)
        .unwrap_or_default();
    let jails: Vec<&Held> = v.held("jail").collect();
    let running = jails.iter().find_map(|h| h.live_pid);
    let mut out = Vec::new();
    let mut skip: Vec<&str> = Vec::new();
    // The record's Firecracker is gone and its network goes with its jail.
    let mut down = false;
    // The Firecracker.
    if has_jail {
        let j = jail.clone().unwrap_or_default();
        match &v.live.fc {
            None => {
                skip.extend(["jail", "mount", "cgroup"]);
                let was = if state.is_empty() { "launched" } else { &state };
                let rebooted = matches!(
                    (&j.launched_at, &cx.booted_at),
                    (Some(l), Some(b)) if l < b
                );
                // A VM stopped on purpose (banger-vm stop) keeps its network; one that crashed
                // or went with the host gives it back, as `banger down` would.
                let net = state != "stopped"
                    && (v.has("net")
                        || v.held
                            .iter()
                            .any(|h| matches!(h.kind.as_str(), "tap" | "addr" | "nft-rule")));
                down = net;
                out.push(Finding::new(
                    name,
                    "firecracker-gone",
                    format!(
                        "the record says {was} (Firecracker pid {}), but no Firecracker with --id {name} runs",
                        j.pid.map_or("?".into(), |p| p.to_string())
                    ),
                    Act::StopAndRelease { net },
                    if rebooted {
                        "the host restarted since it was launched; its disk stays"
                    } else {
                        "its Firecracker exited or was killed; its disk stays"
                    },
                ));
            }
            Some(f) => {
                if j.pid != Some(i64::from(f.pid)) || j.start_time != Some(f.start_time) {
                    out.push(Finding::new(
                        name,
                        "pid-changed",
                        format!(
                            "its Firecracker runs as pid {} (found by its {}), the record says pid {}",
                            f.pid,
                            f.how.as_str(),
                            j.pid.map_or("?".into(), |p| p.to_string())
                        ),
                        Act::Readopt {
                            pid: f.pid,
                            start_time: f.start_time,
                        },
                        "the record follows the running Firecracker, which is not touched",
                    ));
                }
                let mut lost = Vec::new();
                if v.live.keeper == Some(false) {
                    lost.push(format!(
                        "its console keeper (pid {}) is gone",
                        j.keeper_pid.unwrap_or(0)
                    ));
                }
                if !v.live.api_link {
                    lost.push(format!(
                        "its API link {} does not lead to its socket",
                        j.api_sock.as_deref().unwrap_or("?")
                    ));
                }
                if !lost.is_empty() {
                    out.push(Finding::new(
                        name,
                        "readopt",
                        lost.join("; "),
                        Act::Relaunch,
                        "banger-jail launch finds the running Firecracker and puts back what it lacks",
                    ));
                }
                if jails.is_empty() {
                    out.push(Finding::new(
                        name,
                        "jail-unheld",
                        format!("its Firecracker (pid {}) runs but the helper's ledger holds no jail for {name}", f.pid),
                        Act::Person,
                        "without the ledger's entry the helper cannot tear this jail down: stop the VM by hand (banger vm kill), then banger rm --force",
                    ));
                }
            }
        }
    } else {
        if let Some(pid) = running {
            skip.extend(["jail", "mount", "cgroup"]);
            out.push(Finding::new(
                name,
                "firecracker-unrecorded",
                format!("a Firecracker (pid {pid}) runs in {name}'s jail but the record has no jail section"),
                Act::Relaunch,
                "a launch was interrupted after the helper started Firecracker: it is adopted, not touched",
            ));
        } else {
            let left: Vec<&Held> = v
                .held
                .iter()
                .filter(|h| matches!(h.kind.as_str(), "jail" | "mount" | "cgroup") && !h.gone())
                .collect();
            if !left.is_empty() {
                skip.extend(["jail", "mount", "cgroup"]);
                out.push(
                    Finding::new(
                        name,
                        "jail-half-made",
                        format!(
                            "the ledger holds {name}'s {} but no Firecracker runs and the record has no jail section",
                            kinds(&left)
                        ),
                        Act::UndoJail,
                        "a launch or teardown was interrupted: banger-jail teardown finishes it",
                    )
                    .gc(),
                );
            }
            if !v.links.is_empty() {
                out.push(Finding::new(
                    name,
                    "link-stale",
                    format!(
                        "run dir links without a jail: {}",
                        v.links
                            .iter()
                            .map(|p| p.display().to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    Act::RemoveLinks(v.links.clone()),
                    "they lead nowhere",
                ));
            }
        }
        // A Firecracker that runs is adopted with the state the record has.
        if running.is_none() && matches!(state.as_str(), "running" | "paused") {
            out.push(Finding::new(
                name,
                "state-without-jail",
                format!("the record says {state} but has no jail section"),
                Act::MarkStopped,
                "a VM without a jail does not run",
            ));
        }
    }
    // The network.
    if !down {
        out.extend(judge_net(v, has_jail && v.live.fc.is_some()));
    }
    // The disk.
    out.extend(judge_disk(v, rec, &mut skip));
    out.extend(drops(v, &skip));
    out
}

fn judge_net(v: &View, alive: bool) -> Vec<Finding> {
    let name = v.name.as_str();
    let taps: Vec<&Held> = v.held("tap").collect();
    let mut out = Vec::new();
    let tap_of_record = v
        .record()
        .and_then(|r| section::get::<section::Net>(r).ok().flatten())
        .and_then(|n| n.tap)
        .unwrap_or_else(|| "?".into());
    if v.has("net") {
        let gone = taps.iter().find(|h| h.gone());
        if taps.is_empty() {
            let observed = format!(
                "the record names tap {tap_of_record} but the helper's ledger holds no tap for {name}"
            );
            out.push(if alive {
                Finding::new(name, "net-unheld", observed, Act::Person,
                    "the running guest's network is not banger's to release: banger down, then banger up")
            } else {
                Finding::new(name, "net-unheld", observed, Act::ReleaseNet,
                    "the net section is released; banger up gives the VM its network again")
            });
        } else if let Some(t) = gone {
            let observed = format!("its tap {} is gone from the host", t.id);
            out.push(if alive {
                Finding::new(name, "tap-gone", observed, Act::Person,
                    &format!("the guest has no network until it is restarted: banger down {name}; banger up {name}"))
            } else {
                Finding::new(name, "tap-gone", observed, Act::ReleaseNet,
                    "its network is released; banger up gives it a new one")
            });
        } else if let Some(r) = v.held("nft-rule").find(|h| h.gone()) {
            out.push(Finding::new(
                name,
                "forward-missing",
                format!("its forward {} is missing from table inet banger", r.id),
                Act::RepairNet,
                "banger-net up puts back what is missing",
            ));
        }
    } else {
        let held: Vec<&Held> = v
            .held
            .iter()
            .filter(|h| matches!(h.kind.as_str(), "tap" | "addr" | "nft-rule"))
            .collect();
        if !held.is_empty() {
            out.push(
                Finding::new(
                    name,
                    "net-half-made",
                    format!(
                        "the ledger holds {name}'s {} but the record has no net section",
                        kinds(&held)
                    ),
                    Act::ReleaseNet,
                    "a banger-net up was interrupted: banger-net down gives back what it made",
                )
                .gc(),
            );
        }
    }
    out
}

fn judge_disk(v: &View, rec: &banger::record::Record, skip: &mut Vec<&str>) -> Vec<Finding> {
    let name = v.name.as_str();
    let disk = v.held("disk").next();
    let mut out = Vec::new();
    skip.push("disk");
    if v.has("snap") {
        let path = section::get::<section::Snap>(rec)
            .ok()
            .flatten()
            .and_then(|s| s.path)
            .unwrap_or_else(|| "?".into());
        match disk {
            None => out.push(Finding::new(
                name,
                "disk-unheld",
                format!("the record names disk {path} but the helper's ledger holds no disk for {name}"),
                Act::Person,
                &format!("banger cannot vouch for this disk: keep what you need from it, then banger rm {name}"),
            )),
            Some(d) if d.gone() => out.push(
                Finding::new(
                    name,
                    "disk-gone",
                    format!("its disk {path} is gone from the host"),
                    Act::Drop {
                        kind: d.kind.clone(),
                        id: d.id.clone(),
                    },
                    &format!("{name} cannot start again: banger rm {name} removes what is left"),
                )
                .person(),
            ),
            Some(d) if !d.present() => out.push(Finding::new(
                name,
                "disk-device-gone",
                format!("its disk's blocks ({}) are there but its device is not", d.id),
                Act::Person,
                "the device-mapper snapshot over them went with a restart of the host; the blocks are kept",
            )),
            Some(_) => {}
        }
        return out;
    }
    let Some(d) = disk else {
        return out;
    };
    let has_image = section::get::<Spec>(rec)
        .ok()
        .flatten()
        .and_then(|s| s.image)
        .is_some();
    out.push(if d.gone() {
        Finding::new(
            name,
            "entry-gone",
            format!("the ledger holds disk {}, which is gone from the host", d.id),
            Act::Drop {
                kind: d.kind.clone(),
                id: d.id.clone(),
            },
            "an entry for an object that no longer exists only misleads",
        )
    } else if d.present() && d.complete() && has_image {
        Finding::new(
            name,
            "disk-unrecorded",
            format!("the ledger holds {name}'s whole disk {} but the record has no snap section", d.id),
            Act::AdoptDisk,
            "banger-snap create was interrupted after the disk was made: the disk is adopted, never removed",
        )
    } else if d.present() && !d.complete() {
        Finding::new(
            name,
            "disk-half-made",
            format!("the ledger holds {name}'s unfinished disk {}", d.id),
            Act::UndoDisk,
            "banger-snap create was interrupted before the disk was whole: it is removed",
        )
        .gc()
    } else {
        Finding::new(
            name,
            "disk-unrecorded",
            format!("the ledger holds {name}'s disk {} ({}), which the record does not name", d.id, d.object),
            Act::Person,
            &format!("banger rm --force {name} removes it, or banger up {name} adopts it"),
        )
    });
    out
}

fn judge_missing(v: &View) -> Vec<Finding> {
    let name = v.name.as_str();
    let mut out = drops(v, &[]);
    let left: Vec<&Held> = v
        .held
        .iter()
        .filter(|h| !(h.gone() && DROP_KINDS.contains(&h.kind.as_str())))
        .collect();
    let running = v.held("jail").find_map(|h| h.live_pid);
    if let Some(pid) = running {
        out.push(Finding::new(
            name,
            "no-record",
            format!("a Firecracker (pid {pid}) runs for {name}, which has no record"),
            Act::Person,
            &format!("banger rm --force {name} stops it and releases what the helper holds for it"),
        ));
    } else if left
        .iter()
        .any(|h| h.kind == "disk" && h.present() && h.complete())
    {
        out.push(Finding::new(
            name,
            "no-record",
            format!("the helper's ledger holds a whole disk for {name}, which has no record"),
            Act::Person,
            &format!("banger rm --force {name} removes it"),
        ));
    } else if !left.is_empty() {
        let has = |ks: &[&str]| left.iter().any(|h| ks.contains(&h.kind.as_str()));
        out.push(
            Finding::new(
                name,
                "no-record",
                format!("the ledger holds {} for {name}, which has no record", kinds(&left)),
                Act::UndoLedger {
                    jail: has(&["jail", "mount", "cgroup"]),
                    net: has(&["tap", "addr", "nft-rule"]),
                    disk: has(&["disk", "loop", "dm"]),
                },
                "a pipeline was killed half way, or the VM's directory was removed by hand: what the helper made is undone",
            )
            .gc(),
        );
    }
    if running.is_none() && !v.links.is_empty() {
        out.push(Finding::new(
            name,
            "link-stale",
            format!(
                "run dir links of a VM without a record: {}",
                v.links
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Act::RemoveLinks(v.links.clone()),
            "they lead nowhere",
        ));
    }
    out
}

/// Shared entries (`-`): the bridge, the table or a retired tap gone from the host.
pub fn judge_shared(shared: &[Held]) -> Vec<Finding> {
    shared
        .iter()
        .filter(|h| h.gone() && matches!(h.kind.as_str(), "bridge" | "nft-table" | "tap"))
        .map(|h| {
            Finding::new(
                "-",
                "entry-gone",
                format!(
                    "the ledger holds {} {}, which is gone from the host",
                    h.kind, h.id
                ),
                Act::Drop {
                    kind: h.kind.clone(),
                    id: h.id.clone(),
                },
                if h.kind == "tap" {
                    "a tap retired at banger down: the helper removes it, then its entry"
                } else {
                    "banger-net up makes it again when a VM needs it"
                },
            )
        })
        .collect()
}

/// Host objects no entry holds: reported, never touched.
pub fn judge_strays(strays: &[Stray]) -> Vec<Finding> {
    strays
        .iter()
        .map(|s| {
            Finding::new(
                "-",
                "stray",
                format!("{} {}: {}", s.kind, s.id, s.why),
                Act::Person,
                "banger did not make it (no ledger entry), so it never touches it: remove it by hand if it is a leftover",
            )
        })
        .collect()
}

/// The autostart finding for a VM whose spec asks for it and that does not run.
pub fn autostart(name: &str, direct: bool) -> Finding {
    Finding::new(
        name,
        "autostart",
        format!("{name} is marked autostart and is not running"),
        Act::Up { direct },
        "brought up through the usual pipeline (banger up)",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::Live;
    use banger::find_pid::{Found, How};
    use serde_json::{json, Value};

    fn rec(v: Value) -> Rec {
        match v {
            Value::Object(m) => Rec::Ok(Box::new(m)),
            _ => unreachable!(),
        }
    }

    fn held(kind: &str, id: &str, object: &str) -> Held {
        Held {
            vm: "a".into(),
            kind: kind.into(),
            id: id.into(),
            data: Value::Null,
            by: None,
            object: object.into(),
            live_pid: None,
        }
    }

    fn view(r: Rec, held: Vec<Held>, live: Live) -> View {
        View {
            name: "a".into(),
            rec: r,
            held,
            live,
            links: Vec::new(),
        }
    }

    fn running_rec() -> Rec {
        rec(json!({"v":1,"type":"vm","name":"a","spec":{"image":"img"},
            "snap":{"path":"/s/vms/a/disk.ext4"},"net":{"tap":"bgr1"},
            "jail":{"pid":10,"start_time":5,"launched_at":"2026-01-01T00:00:00Z"},
            "vm":{"state":"running"}}))
    }

    fn all_held() -> Vec<Held> {
        vec![
            held("disk", "/s/vms/a/disk.ext4", "present"),
            held("addr", "10.0.0.2", "none"),
            held("tap", "bgr1", "present"),
            held("jail", "/j/firecracker/a", "present"),
        ]
    }

    fn alive(pid: i32, start: u64) -> Live {
        Live {
            fc: Some(Found {
                pid,
                start_time: start,
                how: How::Recorded,
            }),
            keeper: Some(true),
            api_link: true,
        }
    }

    fn acts(f: &[Finding]) -> Vec<&str> {
        f.iter().map(|f| f.act.name()).collect()
    }

    #[test]
    fn a_consistent_running_vm_has_no_finding() {
        let v = view(running_rec(), all_held(), alive(10, 5));
        assert!(judge(&v, &Context::default()).is_empty());
    }

    #[test]
    fn a_dead_firecracker_is_stopped_and_released_but_its_disk_stays() {
        let v = view(running_rec(), all_held(), Live::default());
        let f = judge(&v, &Context::default());
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].kind, "firecracker-gone");
        assert_eq!(f[0].act, Act::StopAndRelease { net: true });
        assert!(!f[0].gc && !f[0].person);
        let cx = Context {
            booted_at: Some("2026-02-01T00:00:00Z".into()),
        };
        assert!(judge(&v, &cx)[0].reason.contains("host restarted"));
    }

    #[test]
    fn a_vm_stopped_on_purpose_keeps_its_network_and_its_state() {
        let r = rec(json!({"v":1,"type":"vm","name":"a","spec":{"image":"img"},
            "snap":{"path":"/s/vms/a/disk.ext4"},"net":{"tap":"bgr1"},
            "jail":{"pid":10,"start_time":5},"vm":{"state":"stopped","stopped_by":"ctrl-alt-del"}}));
        let f = judge(&view(r, all_held(), Live::default()), &Context::default());
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].act, Act::StopAndRelease { net: false });
    }

    #[test]
    fn a_moved_pid_is_readopted_and_a_lost_keeper_relaunched() {
        let mut l = alive(11, 6);
        l.keeper = Some(false);
        let v = view(running_rec(), all_held(), l);
        let f = judge(&v, &Context::default());
        assert_eq!(
            f.iter().map(|f| &f.act).collect::<Vec<_>>(),
            [
                &Act::Readopt {
                    pid: 11,
                    start_time: 6
                },
                &Act::Relaunch
            ]
        );
    }

    #[test]
    fn a_live_firecracker_without_a_jail_section_is_adopted() {
        // The record's state stays: the guest it describes still runs.
        let r = rec(
            json!({"v":1,"type":"vm","name":"a","spec":{"image":"img"},"snap":{"path":"p"},"net":{"tap":"bgr1"},"vm":{"state":"running"}}),
        );
        let mut h = all_held();
        h[3].live_pid = Some(42);
        let f = judge(&view(r, h, Live::default()), &Context::default());
        assert_eq!(acts(&f), ["re-adopt"]);
        assert_eq!(f[0].kind, "firecracker-unrecorded");
    }

    #[test]
    fn half_made_steps_are_undone_only_with_gc_and_a_whole_disk_is_adopted() {
        let r = rec(json!({"v":1,"type":"vm","name":"a","spec":{"image":"img"}}));
        let mut disk = held("disk", "/s/vms/a/disk.ext4", "present");
        disk.data = json!({"complete": true});
        let h = vec![
            disk,
            held("addr", "10.0.0.2", "none"),
            held("tap", "bgr1", "present"),
            held("jail", "/j/firecracker/a", "present"),
        ];
        let f = judge(&view(r.clone(), h, Live::default()), &Context::default());
        let got: Vec<(&str, &str, bool)> = f.iter().map(|f| (f.kind, f.act.name(), f.gc)).collect();
        assert_eq!(
            got,
            [
                ("jail-half-made", "undo", true),
                ("net-half-made", "release-net", true),
                ("disk-unrecorded", "adopt-disk", false),
            ]
        );
        let mut half = held("disk", "/s/vms/a/disk.ext4", "present");
        half.data = json!({"complete": false});
        let f = judge(&view(r, vec![half], Live::default()), &Context::default());
        assert_eq!((f[0].kind, f[0].gc), ("disk-half-made", true));
    }

    #[test]
    fn gone_objects_are_dropped_and_a_lost_disk_needs_a_person() {
        let r = rec(
            json!({"v":1,"type":"vm","name":"a","spec":{"image":"img"},"snap":{"path":"/s/vms/a/disk.ext4"}}),
        );
        let h = vec![
            held("disk", "/s/vms/a/disk.ext4", "gone"),
            held("loop", "/dev/loop7", "gone"),
        ];
        let f = judge(&view(r, h, Live::default()), &Context::default());
        let got: Vec<(&str, &str, bool)> =
            f.iter().map(|f| (f.kind, f.act.name(), f.person)).collect();
        assert_eq!(
            got,
            [
                ("disk-gone", "drop-entry", true),
                ("entry-gone", "drop-entry", false)
            ]
        );
    }

    #[test]
    fn a_removed_directory_leaves_entries_to_drop_and_to_undo() {
        let h = vec![
            held("disk", "/s/vms/a/disk.ext4", "gone"),
            held("addr", "10.0.0.2", "none"),
        ];
        let f = judge(&view(Rec::Missing, h, Live::default()), &Context::default());
        let got: Vec<(&str, &str, bool)> = f.iter().map(|f| (f.kind, f.act.name(), f.gc)).collect();
        assert_eq!(
            got,
            [
                ("entry-gone", "drop-entry", false),
                ("no-record", "undo", true)
            ]
        );
        let mut j = held("jail", "/j/firecracker/a", "present");
        j.live_pid = Some(9);
        let f = judge(
            &view(Rec::Missing, vec![j], Live::default()),
            &Context::default(),
        );
        assert_eq!((f[0].kind, f[0].person), ("no-record", true));
    }

    #[test]
    fn a_running_guest_whose_tap_vanished_needs_a_person() {
        let mut h = all_held();
        h[2].object = "gone".into();
        let f = judge(
            &view(running_rec(), h.clone(), alive(10, 5)),
            &Context::default(),
        );
        assert_eq!((f[0].kind, f[0].person), ("tap-gone", true));
        // Stopped: the network is simply released.
        let r = rec(
            json!({"v":1,"type":"vm","name":"a","spec":{"image":"img"},"snap":{"path":"/s/vms/a/disk.ext4"},"net":{"tap":"bgr1"}}),
        );
        h.remove(3);
        let f = judge(&view(r, h, Live::default()), &Context::default());
        assert_eq!(acts(&f), ["release-net"]);
    }

    #[test]
    fn damaged_records_need_a_person_and_keep_their_entries() {
        let f = judge(
            &view(
                Rec::Damaged("bad".into()),
                vec![held("tap", "bgr1", "present")],
                Live::default(),
            ),
            &Context::default(),
        );
        assert_eq!(acts(&f), ["none"]);
        assert!(f[0].person);
    }

    #[test]
    fn an_unfinished_new_is_removed_with_gc_after_its_ledger_entries() {
        let f = judge(
            &view(
                Rec::Unfinished("only an unfinished write".into()),
                vec![held("tap", "bgr1", "present")],
                Live::default(),
            ),
            &Context::default(),
        );
        assert_eq!(acts(&f), ["undo", "remove-unfinished"]);
        assert!(f.iter().all(|f| !f.person));
        let f = judge(
            &view(Rec::Unfinished("x".into()), vec![], Live::default()),
            &Context::default(),
        );
        assert_eq!(acts(&f), ["remove-unfinished"]);
    }

    #[test]
    fn shared_entries_gone_are_dropped_a_retired_tap_present_is_left_to_the_helper() {
        let shared = |kind: &str, id: &str, object: &str| Held {
            vm: "-".into(),
            ..held(kind, id, object)
        };
        let f = judge_shared(&[
            shared("tap", "bgz0ac80005", "gone"),
            shared("tap", "bgz0ac80006", "present"),
            shared("bridge", "banger0", "present"),
            shared("sysctl", "net.ipv4.ip_forward", "none"),
        ]);
        assert_eq!(f.len(), 1);
        assert!(f[0].observed.contains("tap bgz0ac80005"));
        assert_eq!(
            f[0].act,
            Act::Drop {
                kind: "tap".into(),
                id: "bgz0ac80005".into()
            }
        );
    }
}
