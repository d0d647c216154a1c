//! Taps leave `down` without waiting for the kernel. Removing a network device waits for an
//! RCU grace period (18-28 ms on these hosts, most of a `banger down`); taking it down, off
//! the bridge and renaming it costs none. So the resident helper *retires* a VM's tap: the
//! ledger swaps the VM's entry for a shared one (`-`, `tap`, `bgzXXXXXXXX`,
//! `{retired, vm}`) in one write, the tap is renamed `bgzXXXXXXXX` (the same suffix as its
//! `bgrXXXXXXXX`), and a thread of the helper removes it and then its entry. The next `up` of
//! the same address makes a fresh `bgr` tap at once: the name is free.
//!
//! The ledger names the retired tap from before it is renamed until after it is gone, so a
//! crash leaks nothing: the next helper's thread finishes every retired entry it finds
//! (removing `bgz…`, or `bgr…` when the crash came before the rename and no VM holds it).
//! A helper run in process (no resident helper: `banger_helper::local`) removes the tap
//! before it answers, as before, since its process may end at once.

use super::sys::{self, Rtnl};
use super::{Net, NetError, KIND_TAP, SHARED};
use crate::ledger::Entry;
use crate::ops::Ctx;
use serde_json::{json, Value};
use std::sync::mpsc::{channel, Sender};
use std::sync::{Mutex, OnceLock};

/// What a retired tap's name starts with.
pub const PREFIX: &str = "bgz";

/// The name `tap` (`bgrXXXXXXXX`) is retired under: `bgzXXXXXXXX`. None for a name banger
/// does not make.
pub fn retired_name(tap: &str) -> Option<String> {
    let rest = tap.strip_prefix("bgr")?;
    (!rest.is_empty()).then(|| format!("{PREFIX}{rest}"))
}

/// The ledger entry of a tap retired from `vm`'s `tap`.
pub fn entry(vm: &str, tap: &str, retired: &str) -> Entry {
    Entry::new(SHARED, KIND_TAP, retired, json!({"retired": tap, "vm": vm}))
}

/// Whether a ledger entry is a retired tap's.
pub fn is_retired(e: &Entry) -> bool {
    e.vm == SHARED && e.kind == KIND_TAP && e.data.get("retired").is_some()
}

/// Test builds only: the helper dies here (as a crash would) when `BANGER_TEST_CRASH_AT`
/// names `point`.
pub fn crash_point(point: &str) {
    if cfg!(debug_assertions)
        && std::env::var("BANGER_TEST_CRASH_AT").is_ok_and(|v| v.split(',').any(|p| p == point))
    {
        std::process::abort();
    }
}

static REAPER: OnceLock<Mutex<Sender<String>>> = OnceLock::new();

/// Starts the thread that removes retired taps (the resident helper calls it once, before
/// it serves); from then on `down` retires taps instead of removing them. The thread first
/// finishes what an earlier helper left.
pub fn start(ctx: &Ctx) {
    let (tx, rx) = channel::<String>();
    let ctx = Ctx::new(ctx.cfg.clone());
    let spawned = std::thread::Builder::new()
        .name("tap-reaper".into())
        .spawn(move || {
            finish_left(&ctx);
            for name in rx {
                remove(&ctx, &name);
            }
        });
    if spawned.is_ok() {
        let _ = REAPER.set(Mutex::new(tx));
    }
}

/// The reaper, when the resident helper started one.
pub fn reaper() -> Option<Sender<String>> {
    REAPER.get()?.lock().ok().map(|s| s.clone())
}

fn log(msg: std::fmt::Arguments) {
    // As the server logs: under systemd the journal names the unit and pid itself.
    if std::env::var_os("JOURNAL_STREAM").is_some() {
        eprintln!("{msg}");
    } else {
        eprintln!("banger-helper[{}]: {msg}", std::process::id());
    }
}

/// Removes the retired tap `name`, then (under the net lock, and only if no tap of that
/// name came back meanwhile) its entry.
fn remove(ctx: &Ctx, name: &str) {
    let gone = match Rtnl::open().and_then(|mut r| r.del_link(name)) {
        Ok(()) => true,
        Err(e) => {
            // Already gone is fine; anything else stays in the ledger for the next helper.
            let present = sys::exists(name);
            if present {
                log(format_args!(
                    "cannot remove the retired tap {name}: {}",
                    banger::cli::one_line(&e)
                ));
            }
            !present
        }
    };
    if gone {
        let _ = forget(ctx, name);
    }
}

fn forget(ctx: &Ctx, name: &str) -> Result<(), NetError> {
    let net = Net::new(ctx)?;
    let _g = net.lock()?;
    if !sys::exists(name) {
        net.ledger.remove(SHARED, KIND_TAP, name)?;
    }
    Ok(())
}

/// Finishes the retired taps an earlier helper left in the ledger.
fn finish_left(ctx: &Ctx) {
    let run = || -> Result<(), NetError> {
        let net = Net::new(ctx)?;
        let _g = net.lock()?;
        let all = net.ledger.list()?;
        let left: Vec<&Entry> = all.iter().filter(|e| is_retired(e)).collect();
        if left.is_empty() {
            return Ok(());
        }
        let links = sys::links()?;
        let exists = |n: &str| links.iter().any(|l| l.ifname == n);
        let held = |n: &str| {
            all.iter()
                .any(|e| e.vm != SHARED && e.kind == KIND_TAP && e.id == n)
        };
        let mut done = Vec::new();
        for e in left {
            let from = e.data.get("retired").and_then(Value::as_str).unwrap_or("");
            // Renamed: remove it. Not renamed yet (the crash came between the ledger write
            // and the rename): remove the VM's old tap, unless an `up` made it its own again.
            let target = if exists(&e.id) {
                Some(e.id.as_str())
            } else if retired_name(from).as_deref() == Some(e.id.as_str())
                && exists(from)
                && !held(from)
            {
                Some(from)
            } else {
                None
            };
            if let Some(t) = target {
                Rtnl::open()?.del_link(t)?;
            }
            done.push(e.id.clone());
        }
        let keys: Vec<(&str, &str, &str)> = done
            .iter()
            .map(|id| (SHARED, KIND_TAP, id.as_str()))
            .collect();
        net.ledger.remove_all(&keys)?;
        log(format_args!(
            "removed {} tap(s) an earlier helper had retired",
            keys.len()
        ));
        Ok(())
    };
    if let Err(e) = run() {
        log(format_args!(
            "cannot finish the retired taps: {}",
            banger::cli::one_line(&e)
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retired_names() {
        assert_eq!(retired_name("bgr0ac80005").as_deref(), Some("bgz0ac80005"));
        assert_eq!(retired_name("bgr"), None);
        assert_eq!(retired_name("eth0"), None);
        let e = entry("dev1", "bgr0ac80005", "bgz0ac80005");
        assert!(is_retired(&e));
        assert!(!is_retired(&Entry::new(
            "dev1",
            KIND_TAP,
            "bgr0ac80005",
            Value::Null
        )));
        assert!(!is_retired(&Entry::new(
            SHARED,
            "bridge",
            "banger0",
            Value::Null
        )));
    }
}
