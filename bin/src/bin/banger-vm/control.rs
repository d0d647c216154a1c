//! `banger-vm stop`, `kill`, `pause`, `resume` and the live part of `status`.

use crate::boot::{client_for, fc_err, set_vm};
use crate::BIN;
use banger::fc_api::FcError;
use banger::find_pid::{find_for_record, Found};
use banger::record::{self, Record};
use banger::section::Live;
use banger::step::{Action, StepError};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// True while the found process is still the same live process.
fn still_there(f: &Found) -> bool {
    banger::find_pid::Proc::default()
        .info(f.pid)
        .is_some_and(|i| !i.is_dead() && i.start_time == f.start_time)
}

/// Waits up to `timeout` for the found process to end: on its pidfd, woken the moment it
/// exits (polling the process table only where pidfds are missing).
fn wait_gone(f: &Found, timeout: Duration) -> bool {
    if let Some(p) = banger::wait::Pidfd::pin(f.pid, f.start_time) {
        return p.wait(timeout);
    }
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if !still_there(f) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    !still_there(f)
}

fn sigkill(name: &str, f: &Found) -> Result<(), StepError> {
    let pid = rustix::process::Pid::from_raw(f.pid)
        .ok_or_else(|| StepError::msg("bad_pid", format!("pid {} is not valid", f.pid)))?;
    match rustix::process::kill_process(pid, rustix::process::Signal::KILL) {
        Ok(()) => {}
        Err(rustix::io::Errno::SRCH) => return Ok(()),
        Err(e) => {
            return Err(StepError::msg(
                "kill_failed",
                format!(
                    "cannot kill {name}'s Firecracker (pid {}): {e}; run as the owner or root",
                    f.pid
                ),
            ))
        }
    }
    if wait_gone(f, Duration::from_secs(5)) {
        Ok(())
    } else {
        Err(StepError::msg(
            "kill_failed",
            format!("{name}'s Firecracker (pid {}) survived SIGKILL", f.pid),
        ))
    }
}

fn stopped(rec: &mut Record, how: &str) -> Result<(), StepError> {
    set_vm(rec, |vm| {
        vm.state = Some("stopped".into());
        vm.stopped_at = Some(record::now_rfc3339());
        vm.stopped_by = Some(how.into());
    })
}

/// Ctrl-Alt-Del, wait up to `timeout`, then SIGKILL. A VM whose Firecracker is already gone
/// is simply marked stopped.
pub fn stop(rec: &mut Record, timeout: Duration) -> Result<Action, StepError> {
    let name = record::name(rec).unwrap_or("?").to_string();
    let Some(found) = find_for_record(rec) else {
        stopped(rec, "already-gone")?;
        return Ok(Action::Save);
    };
    let sent = banger::timing::span("SendCtrlAltDel", || {
        client_for(rec).and_then(|c| c.action("SendCtrlAltDel").map_err(fc_err))
    });
    if let Err(e) = &sent {
        eprintln!(
            "{BIN}: {name}: Ctrl-Alt-Del not delivered ({}); killing",
            e.message()
        );
    }
    if sent.is_ok() && banger::timing::span("exit", || wait_gone(&found, timeout)) {
        stopped(rec, "ctrl-alt-del")?;
        return Ok(Action::Save);
    }
    if sent.is_ok() {
        eprintln!(
            "{BIN}: {name}: the guest did not shut down within {} s; killing Firecracker",
            timeout.as_secs()
        );
    }
    sigkill(&name, &found)?;
    stopped(rec, "kill")?;
    Ok(Action::Save)
}

/// SIGKILL now (after the identity checks).
pub fn kill(rec: &mut Record) -> Result<Action, StepError> {
    let name = record::name(rec).unwrap_or("?").to_string();
    if let Some(found) = find_for_record(rec) {
        sigkill(&name, &found)?;
    }
    stopped(rec, "kill")?;
    Ok(Action::Save)
}

pub fn pause(rec: &mut Record) -> Result<Action, StepError> {
    client_for(rec)?.pause().map_err(fc_err)?;
    set_vm(rec, |vm| vm.state = Some("paused".into()))?;
    Ok(Action::Save)
}

pub fn resume(rec: &mut Record) -> Result<Action, StepError> {
    client_for(rec)?.resume().map_err(fc_err)?;
    set_vm(rec, |vm| vm.state = Some("running".into()))?;
    Ok(Action::Save)
}

/// Adds `vm.live`: what the process table and Firecracker say right now.
pub fn live(rec: &mut Record) -> Result<(), StepError> {
    if !rec.contains_key("jail") {
        // Never launched (or torn down): no Firecracker to ask, but `vm` still says so.
        let state = crate::list::recorded_state(rec);
        return set_vm(rec, |vm| {
            vm.state = Some(state);
            vm.live = Some(Live {
                pid: None,
                found_by: None,
                api_state: None,
                agent: None,
                checked_at: Some(record::now_rfc3339()),
                extra: Default::default(),
            });
        });
    }
    let found = find_for_record(rec);
    let api = client_for(rec).ok().map(|c| c.instance_info());
    let (state, api_state) = match (&found, &api) {
        (None, _) => ("stopped", None),
        (Some(_), Some(Ok(info))) => (
            match info.state.as_str() {
                "Running" => "running",
                "Paused" => "paused",
                _ => "launched",
            },
            Some(info.state.clone()),
        ),
        (Some(_), Some(Err(FcError::Timeout { .. }))) => ("unresponsive", None),
        (Some(_), _) => ("unreachable", None),
    };
    // The agent's hello, when the guest runs and is meant to have one.
    let agent = match (state, banger::agent::vsock_sock(rec)) {
        ("running", Some(sock)) if banger::agent::snap_agent(rec).is_some() => Some(
            match banger::agent::hello(&sock, std::time::Duration::from_secs(5)) {
                Ok(h) => serde_json::to_value(h).unwrap_or(Value::Null),
                Err(e) => json!({ "error": banger::cli::one_line(&e), "code": e.code() }),
            },
        ),
        _ => None,
    };
    set_vm(rec, |vm| {
        vm.state = Some(state.into());
        vm.live = Some(Live {
            pid: found.as_ref().map(|f| i64::from(f.pid)),
            found_by: found.as_ref().map(|f| f.how.as_str().to_string()),
            api_state,
            agent,
            checked_at: Some(record::now_rfc3339()),
            extra: Default::default(),
        });
    })
}
