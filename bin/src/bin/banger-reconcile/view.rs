//! What banger-reconcile knows about one VM name: its record as stored, what the helper's
//! ledger holds for it (with what the host says of each object), and what the process table
//! says of its Firecracker and console keeper.

use banger::client::Helper;
use banger::config::Config;
use banger::find_pid::{self, Found, Proc};
use banger::record::Record;
use banger::section::{self, Jail};
use banger::store::{Listed, Store, StoreError};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One ledger entry as `reconcile.scan` reports it.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Held {
    pub vm: String,
    pub kind: String,
    pub id: String,
    #[serde(default)]
    pub data: Value,
    #[serde(default)]
    pub by: Option<u32>,
    /// `present`, `gone`, `none` (an allocation) or `unknown`.
    #[serde(default)]
    pub object: String,
    /// For a jail: its Firecracker, when it runs.
    #[serde(default)]
    pub live_pid: Option<i32>,
}

impl Held {
    pub fn gone(&self) -> bool {
        self.object == "gone"
    }
    pub fn present(&self) -> bool {
        self.object == "present"
    }
    /// A disk entry the helper marked whole (older entries have no mark: whole).
    pub fn complete(&self) -> bool {
        self.data.get("complete").and_then(Value::as_bool) != Some(false)
    }
}

/// A host object that looks like banger's and that no ledger entry holds.
#[derive(Debug, Clone, Deserialize)]
pub struct Stray {
    pub kind: String,
    pub id: String,
    #[serde(default)]
    pub why: String,
}

/// The record of a name, as the store has it.
#[derive(Debug, Clone)]
pub enum Rec {
    Ok(Box<Record>),
    /// Unreadable: why.
    Damaged(String),
    /// No record, only the unfinished first write of one (a `banger-vm new` that was
    /// killed): what was found.
    Unfinished(String),
    /// No VM directory at all.
    Missing,
}

/// The record's Firecracker and the things that go with it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Live {
    /// The Firecracker found for the record's jail section (identity-checked).
    pub fc: Option<Found>,
    /// The record's console keeper still runs (None: the record names none).
    pub keeper: Option<bool>,
    /// The run dir's API link points at the jail's socket.
    pub api_link: bool,
}

/// Everything known about one VM name.
#[derive(Debug, Clone)]
pub struct View {
    pub name: String,
    pub rec: Rec,
    pub held: Vec<Held>,
    pub live: Live,
    /// Symlinks in the run dir named after this VM (`NAME.sock`, ...).
    pub links: Vec<PathBuf>,
}

impl View {
    pub fn record(&self) -> Option<&Record> {
        match &self.rec {
            Rec::Ok(r) => Some(r),
            _ => None,
        }
    }
    pub fn jail(&self) -> Option<Jail> {
        self.record()
            .and_then(|r| section::get::<Jail>(r).ok().flatten())
    }
    pub fn has(&self, key: &str) -> bool {
        self.record()
            .is_some_and(|r| r.get(key).is_some_and(|v| !v.is_null()))
    }
    pub fn held(&self, kind: &str) -> impl Iterator<Item = &Held> + '_ {
        let kind = kind.to_string();
        self.held.iter().filter(move |h| h.kind == kind)
    }
}

/// What the whole scan found: a view per name, the shared entries and the strays.
pub struct Snapshot {
    pub views: Vec<View>,
    pub shared: Vec<Held>,
    pub strays: Vec<Stray>,
}

#[derive(Debug, thiserror::Error)]
pub enum ViewError {
    #[error("cannot ask the root helper what its ledger holds")]
    Helper(#[source] banger::client::ClientError),
    #[error("the root helper's answer to reconcile.scan is not what this banger-reconcile reads")]
    Answer(#[source] serde_json::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Deserialize)]
struct ScanAnswer {
    entries: Vec<Held>,
    #[serde(default)]
    strays: Vec<Stray>,
}

/// `reconcile.scan` for every entry (`None`) or one VM's.
fn scan(helper: &Helper, vm: Option<&str>) -> Result<ScanAnswer, ViewError> {
    let args = match vm {
        Some(v) => json!({ "vm": v }),
        None => json!({}),
    };
    let v = helper
        .call("reconcile.scan", args)
        .map_err(ViewError::Helper)?;
    serde_json::from_value(v).map_err(ViewError::Answer)
}

/// True when the console keeper `pid` started at `start_time` still runs.
fn keeper_alive(proc: &Proc, pid: i64, start_time: u64) -> bool {
    i32::try_from(pid)
        .ok()
        .and_then(|p| proc.info(p))
        .is_some_and(|i| {
            !i.is_dead() && i.start_time == start_time && i.comm.starts_with("banger-console")
        })
}

/// The record's Firecracker, keeper and API link, from the process table.
pub fn live_of(name: &str, rec: &Record) -> Live {
    let Some(jail) = rec.get("jail").and_then(Value::as_object) else {
        return Live::default();
    };
    let fc = find_pid::find_pid(&find_pid::target_from_jail(name, jail));
    let typed = section::get::<Jail>(rec).ok().flatten().unwrap_or_default();
    let keeper = match (typed.keeper_pid, typed.keeper_start_time) {
        (Some(p), Some(s)) => Some(keeper_alive(&Proc::default(), p, s)),
        _ => None,
    };
    let api_link = match (&typed.api_sock, &typed.socket) {
        (Some(link), Some(sock)) => std::fs::read_link(link).is_ok_and(|t| t == Path::new(sock)),
        _ => true,
    };
    Live {
        fc,
        keeper,
        api_link,
    }
}

/// Symlinks in `run/vms` by the VM name they belong to (`NAME.sock` -> NAME).
fn run_links(cfg: &Config) -> BTreeMap<String, Vec<PathBuf>> {
    let mut out: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    let Ok(rd) = std::fs::read_dir(cfg.run_dir.join("vms")) else {
        return out;
    };
    for e in rd.filter_map(Result::ok) {
        if !e.file_type().is_ok_and(|t| t.is_symlink()) {
            continue;
        }
        let file = e.file_name().to_string_lossy().into_owned();
        if let Some((name, _)) = file.split_once('.') {
            if banger::store::valid_name(name) {
                out.entry(name.to_string()).or_default().push(e.path());
            }
        }
    }
    out
}

fn rec_of(
    store: &Store,
    name: &str,
    listed: Result<Record, StoreError>,
) -> Result<Rec, StoreError> {
    match listed {
        Ok(r) => Ok(Rec::Ok(Box::new(r))),
        Err(StoreError::NotFound { .. }) => Ok(Rec::Missing),
        Err(e @ StoreError::Damaged { .. }) => Ok(damaged(store, name, &e)),
        Err(e) => Err(e),
    }
}

/// A damaged record, or only the unfinished write of a first one.
fn damaged(store: &Store, name: &str, e: &StoreError) -> Rec {
    if store.only_unfinished_new(name) {
        Rec::Unfinished(format!(
            "{name}'s directory holds no record, only the unfinished write of its first one (a banger-vm new that was killed)"
        ))
    } else {
        Rec::Damaged(banger::cli::one_line(e))
    }
}

/// The whole picture: every record, every ledger entry, the strays.
pub fn snapshot(cfg: &Config, store: &Store, helper: &Helper) -> Result<Snapshot, ViewError> {
    let answer = scan(helper, None)?;
    let mut by_name: BTreeMap<String, View> = BTreeMap::new();
    let blank = |name: &str| View {
        name: name.to_string(),
        rec: Rec::Missing,
        held: Vec::new(),
        live: Live::default(),
        links: Vec::new(),
    };
    for l in store.scan()? {
        let (name, rec) = match l {
            Listed::Ok(r) => {
                let name = banger::record::name(&r).unwrap_or_default().to_string();
                (name, Rec::Ok(Box::new(r)))
            }
            Listed::Damaged { name, error } => {
                let rec = damaged(store, &name, &error);
                (name, rec)
            }
        };
        let mut v = blank(&name);
        if let Rec::Ok(r) = &rec {
            v.live = live_of(&name, r);
        }
        v.rec = rec;
        by_name.insert(name, v);
    }
    let mut shared = Vec::new();
    for h in answer.entries {
        if h.vm == "-" {
            shared.push(h);
            continue;
        }
        if !banger::store::valid_name(&h.vm) {
            continue;
        }
        by_name
            .entry(h.vm.clone())
            .or_insert_with(|| blank(&h.vm))
            .held
            .push(h);
    }
    for (name, links) in run_links(cfg) {
        by_name
            .entry(name.clone())
            .or_insert_with(|| blank(&name))
            .links = links;
    }
    Ok(Snapshot {
        views: by_name.into_values().collect(),
        shared,
        strays: answer.strays,
    })
}

/// One VM looked at again (under its lock): the stored record, its ledger entries, the
/// process table, its run dir links.
pub fn one(cfg: &Config, store: &Store, helper: &Helper, name: &str) -> Result<View, ViewError> {
    let rec = rec_of(store, name, store.load(name))?;
    let held = scan(helper, Some(name))?
        .entries
        .into_iter()
        .filter(|h| h.vm == name)
        .collect();
    let live = match &rec {
        Rec::Ok(r) => live_of(name, r),
        _ => Live::default(),
    };
    let links = run_links(cfg).remove(name).unwrap_or_default();
    Ok(View {
        name: name.to_string(),
        rec,
        held,
        live,
        links,
    })
}
