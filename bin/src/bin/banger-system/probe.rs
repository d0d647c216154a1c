//! Asking the helper: `ping` as the owner would (from a thread that takes the owner's uid and
//! gid, so the socket's mode and SO_PEERCRED are tested for real), other ops as root.

use banger::client::Helper;
use banger::config::Config;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// The helper as banger-system sees it; tests answer with a fake.
pub trait Probe {
    /// One `ping`, as `who` (uid, gid) or as this process.
    fn ping(&self, cfg: &Config, who: Option<(u32, u32)>) -> Result<Value, String>;
    /// One op as this process (root), through the socket only.
    fn call(&self, cfg: &Config, op: &str, args: Value) -> Result<Value, String>;
}

pub struct Real;

/// One try, no waiting for a restarting helper, and a short deadline for the answer.
fn once(cfg: &Config) -> Helper {
    Helper::new(cfg, None)
        .with_wait(Duration::ZERO)
        .with_answer_timeout(Duration::from_secs(5))
}

impl Probe for Real {
    fn ping(&self, cfg: &Config, who: Option<(u32, u32)>) -> Result<Value, String> {
        let Some((uid, gid)) = who else {
            return once(cfg)
                .call("ping", json!({}))
                .map_err(|e| banger::cli::one_line(&e));
        };
        let cfg = cfg.clone();
        std::thread::spawn(move || {
            use rustix::process::{Gid, Uid};
            // Per-thread credentials (the raw syscalls, not libc's process-wide ones): only
            // this thread becomes the owner, and it ends right after the ping.
            let g = Gid::from_raw(gid);
            rustix::thread::set_thread_groups(&[g]).map_err(|e| format!("setgroups: {e}"))?;
            rustix::thread::set_thread_res_gid(None, g, None)
                .map_err(|e| format!("setresgid: {e}"))?;
            rustix::thread::set_thread_res_uid(None, Uid::from_raw(uid), None)
                .map_err(|e| format!("setresuid: {e}"))?;
            once(&cfg)
                .call("ping", json!({}))
                .map_err(|e| banger::cli::one_line(&e))
        })
        .join()
        .map_err(|_| "the ping thread panicked".to_string())?
    }

    fn call(&self, cfg: &Config, op: &str, args: Value) -> Result<Value, String> {
        Helper::new(cfg, None)
            .call(op, args)
            .map_err(|e| banger::cli::one_line(&e))
    }
}

/// Pings until the helper answers (and, with `exe`, runs the executable with that sha256),
/// or `timeout` passes. The error is the last answer.
pub fn wait_ping(
    probe: &dyn Probe,
    cfg: &Config,
    who: Option<(u32, u32)>,
    exe: Option<&str>,
    timeout: Duration,
) -> Result<Value, String> {
    let deadline = Instant::now() + timeout;
    loop {
        let last = match probe.ping(cfg, who) {
            Ok(v) if exe.is_none() || v["exe_sha256"].as_str() == exe => return Ok(v),
            Ok(v) => format!(
                "the helper answering (pid {}) runs an executable with sha256 {}, not the installed one ({})",
                v["pid"],
                v["exe_sha256"].as_str().unwrap_or("?"),
                exe.unwrap_or("?")
            ),
            Err(e) => e,
        };
        if Instant::now() >= deadline {
            return Err(last);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
