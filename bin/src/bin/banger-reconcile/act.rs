//! Doing what a finding says, under the VM's lock.
//!
//! What a step of the pipeline already knows how to do is done by that step
//! (`banger-jail teardown` keeps the console and stops the keeper, `banger-net down` refreshes
//! the hosts file, `banger-snap create` adopts a whole disk...): reconcile runs it on the VM
//! it has locked and hands the lock to it ([`banger::atomic::HELD_LOCK_ENV`]), so no pipeline
//! can act on the VM between reconcile's look and the step. What no step does (dropping a
//! ledger entry, the record's `vm.state` after a crash, releasing what a VM without a record
//! left in the ledger) goes through the helper's typed ops or the store directly.

use crate::judge::{Act, Finding};
use banger::client::Helper;
use banger::config::Config;
use banger::record::{self, Record};
use banger::section::{self, Jail, Vm};
use banger::store::{Lock, Store, StoreError};
use serde_json::{json, Value};
use std::process::{Command, Stdio};

#[derive(Debug, thiserror::Error)]
pub enum ActError {
    #[error("{bin} is not installed next to banger-reconcile or on PATH")]
    Missing { bin: String },
    #[error("cannot run {cmd}")]
    Spawn {
        cmd: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{cmd} failed ({status}): {stderr}")]
    Step {
        cmd: String,
        status: String,
        stderr: String,
    },
    #[error("the root helper's {op} failed")]
    Helper {
        op: &'static str,
        #[source]
        source: banger::client::ClientError,
    },
    #[error("cannot remove {path}")]
    Link {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ActError {
    pub fn code(&self) -> &str {
        match self {
            ActError::Missing { .. } => "missing_binary",
            ActError::Spawn { .. } => "spawn",
            ActError::Step { .. } => "step_failed",
            ActError::Helper { source, .. } => source.code(),
            ActError::Link { .. } => "io",
            ActError::Store(_) => "store",
        }
    }
}

/// Where everything an action needs comes from.
pub struct Doer<'a> {
    pub cfg: &'a Config,
    pub store: &'a Store,
    pub helper: &'a Helper,
}

/// The last lines of a step's stderr, on one line, for the finding's error.
fn tail(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let from = lines.len().saturating_sub(3);
    lines[from..].join(" / ")
}

impl Doer<'_> {
    /// Runs `BIN SUB [ARGS...] NAME` with the VM's lock handed to it.
    pub fn step(
        &self,
        lock: Option<&Lock>,
        bin: &str,
        args: &[&str],
        name: &str,
    ) -> Result<(), ActError> {
        let path =
            banger::cli::sibling(bin).ok_or_else(|| ActError::Missing { bin: bin.into() })?;
        let shown = format!("{bin} {} {name}", args.join(" "));
        let mut cmd = Command::new(&path);
        cmd.args(args)
            .arg(name)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(l) = lock {
            l.hand_to(&mut cmd);
        }
        let out = cmd.output().map_err(|source| ActError::Spawn {
            cmd: shown.clone(),
            source,
        })?;
        if out.status.success() {
            Ok(())
        } else {
            Err(ActError::Step {
                cmd: shown,
                status: out.status.to_string(),
                stderr: tail(&out.stderr),
            })
        }
    }

    fn call(&self, op: &'static str, args: Value) -> Result<Value, ActError> {
        self.helper
            .call(op, args)
            .map_err(|source| ActError::Helper { op, source })
    }

    /// Changes the stored record with `f` (the caller holds the VM's lock).
    fn edit(&self, name: &str, f: impl FnOnce(&mut Record)) -> Result<(), ActError> {
        let mut rec = self.store.load(name)?;
        f(&mut rec);
        self.store.save(&rec)?;
        Ok(())
    }

    /// `vm.state` stopped, by reconcile, with the reason (the rest of `vm` as it was).
    fn mark_stopped(&self, name: &str, why: &str) -> Result<(), ActError> {
        self.edit(name, |rec| {
            let mut vm = section::get::<Vm>(rec).ok().flatten().unwrap_or_default();
            vm.state = Some("stopped".into());
            vm.stopped_at = Some(record::now_rfc3339());
            vm.stopped_by = Some("reconcile".into());
            vm.live = None;
            vm.extra.insert("stop_reason".into(), why.into());
            section::put(rec, &vm);
        })
    }

    /// Does what `f` says on the VM `lock` holds (none for autostart, whose pipeline locks).
    pub fn act(&self, f: &Finding, lock: Option<&Lock>) -> Result<(), ActError> {
        let name = f.name.as_str();
        match &f.act {
            Act::Person => Ok(()),
            Act::MarkStopped => self.mark_stopped(name, &f.observed),
            Act::StopAndRelease { net } => {
                let stopped = self
                    .store
                    .load(name)
                    .ok()
                    .and_then(|r| section::get::<Vm>(&r).ok().flatten())
                    .and_then(|vm| vm.state)
                    .is_some_and(|s| s == "stopped");
                if !stopped {
                    self.mark_stopped(name, &format!("{}: {}", f.observed, f.reason))?;
                }
                self.step(lock, "banger-jail", &["teardown", "--grace", "0"], name)?;
                if *net {
                    self.step(lock, "banger-net", &["down"], name)?;
                }
                Ok(())
            }
            Act::Readopt { pid, start_time } => self.edit(name, |rec| {
                if let Ok(Some(mut j)) = section::get::<Jail>(rec) {
                    j.pid = Some(i64::from(*pid));
                    j.start_time = Some(*start_time);
                    section::put(rec, &j);
                }
            }),
            Act::Relaunch => self.step(lock, "banger-jail", &["launch"], name),
            Act::Drop { kind, id } => {
                let vm = if f.name == "-" { "-" } else { name };
                self.call("reconcile.drop", json!({"vm": vm, "kind": kind, "id": id}))
                    .map(|_| ())
            }
            Act::ReleaseNet => self.step(lock, "banger-net", &["down"], name),
            Act::RepairNet => self.step(lock, "banger-net", &["up"], name),
            Act::AdoptDisk => self.step(lock, "banger-snap", &["create"], name),
            Act::UndoJail => self.step(lock, "banger-jail", &["teardown", "--grace", "0"], name),
            Act::UndoDisk => self.step(lock, "banger-snap", &["rm"], name),
            Act::UndoLedger { jail, net, disk } => {
                // Reverse order of making: the jail, the network, the disk.
                if *jail {
                    self.call("jail.teardown", json!({"name": name, "grace_ms": 0}))?;
                }
                if *net {
                    self.call("net.down", json!({"vm": name, "keep_bridge": false}))?;
                    if let Err(e) = crate::hosts::refresh(self.cfg, self.helper) {
                        eprintln!(
                            "banger-reconcile: warning: VM names may not resolve: {}",
                            banger::cli::one_line(&e)
                        );
                    }
                }
                if *disk {
                    self.call("snap.remove", json!({"vm": name}))?;
                }
                Ok(())
            }
            Act::RemoveLinks(links) => {
                for l in links {
                    let is_link =
                        std::fs::symlink_metadata(l).is_ok_and(|m| m.file_type().is_symlink());
                    if is_link {
                        std::fs::remove_file(l).map_err(|source| ActError::Link {
                            path: l.clone(),
                            source,
                        })?;
                    }
                }
                Ok(())
            }
            Act::RemoveUnfinished => {
                // Looked at again under the lock: still nothing but the unfinished write.
                if self.store.only_unfinished_new(name) {
                    self.store.remove(name)?;
                }
                Ok(())
            }
            Act::Up { direct } => {
                let mut args = vec!["--no-wait"];
                if *direct {
                    args.extend(["--launcher", "direct"]);
                }
                // `banger up NAME ...`: the script takes NAME first.
                let path = banger::cli::sibling("banger-up").ok_or_else(|| ActError::Missing {
                    bin: "banger-up".into(),
                })?;
                let shown = format!("banger up {name} {}", args.join(" "));
                let out = Command::new(&path)
                    .arg(name)
                    .args(&args)
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .output()
                    .map_err(|source| ActError::Spawn {
                        cmd: shown.clone(),
                        source,
                    })?;
                if out.status.success() {
                    Ok(())
                } else {
                    Err(ActError::Step {
                        cmd: shown,
                        status: out.status.to_string(),
                        stderr: tail(&out.stderr),
                    })
                }
            }
        }
    }
}
