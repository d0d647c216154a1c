//! Starting the agent in a guest whose init banger does not control (an imported image with
//! a busybox init, fc-init, a plain shell): the agent is the kernel's `init=`. As PID 1 it
//! forks itself off (the child becomes the agent, in a session of its own) and execs the
//! image's real init with the same arguments and environment, so PID 1 stays the image's
//! init. The real init is named on the command line as `banger_init=PATH` (the kernel hands
//! unknown `name=value` words to init's environment; the agent removes it again); without
//! it, `/sbin/init`.
//!
//! On a systemd guest whose banger unit is enabled, the agent does not fork: systemd starts
//! it as a unit. If the real init cannot be executed, the kernel's fallbacks are tried in
//! the kernel's order.

use crate::guest::{AGENT_PATH, UNIT_WANTS};
use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::Path;

/// The environment variable (a kernel command line word) naming the real init.
pub const INIT_VAR: &str = "banger_init";
/// The kernel's fallbacks when no init is named (init/main.c).
pub const FALLBACKS: &[&str] = &["/sbin/init", "/etc/init", "/bin/init", "/bin/sh"];

/// Rewrites a kernel command line so the agent runs first: every `init=` (the kernel obeys
/// the last) and `banger_init=` word is dropped, and `init=AGENT banger_init=REAL` added
/// before any `--` (after which words go to init as arguments).
pub fn boot_args(args: &str) -> String {
    let words: Vec<&str> = args.split_whitespace().collect();
    let cut = words.iter().position(|w| *w == "--").unwrap_or(words.len());
    let (kernel, rest) = words.split_at(cut);
    let prefix = format!("{INIT_VAR}=");
    let real = match kernel.iter().rev().find_map(|w| w.strip_prefix("init=")) {
        // Already rewritten: the real init is the one named for the agent.
        Some(AGENT_PATH) => kernel.iter().rev().find_map(|w| w.strip_prefix(&prefix)),
        other => other,
    };
    let mut out: Vec<String> = kernel
        .iter()
        .filter(|w| !w.starts_with("init=") && !w.starts_with(&prefix))
        .map(|w| w.to_string())
        .collect();
    out.push(format!("init={AGENT_PATH}"));
    if let Some(r) = real.filter(|r| !r.is_empty()) {
        out.push(format!("{prefix}{r}"));
    }
    out.extend(rest.iter().map(|w| w.to_string()));
    out.join(" ")
}

/// What PID 1 does.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The real init.
    pub init: String,
    /// Its arguments (after argv[0]).
    pub args: Vec<OsString>,
    /// Its environment (the agent's, without `banger_init`).
    pub env: Vec<(OsString, OsString)>,
    /// Fork the agent off (false: systemd starts it as a unit).
    pub fork_agent: bool,
}

/// True when `init` (below `root`) resolves to systemd.
fn is_systemd(root: &Path, init: &str) -> bool {
    std::fs::canonicalize(root.join(init.trim_start_matches('/')))
        .ok()
        .and_then(|p| p.file_name().map(|n| n == "systemd"))
        .unwrap_or(false)
}

pub fn plan(argv: Vec<OsString>, env: Vec<(OsString, OsString)>, root: &Path) -> Plan {
    let init = env
        .iter()
        .find(|(k, _)| k == INIT_VAR)
        .map(|(_, v)| v.to_string_lossy().into_owned())
        .filter(|v| v.starts_with('/'))
        .unwrap_or_else(|| FALLBACKS[0].to_string());
    let env = env.into_iter().filter(|(k, _)| k != INIT_VAR).collect();
    let unit = root.join(UNIT_WANTS.trim_start_matches('/'));
    Plan {
        fork_agent: !(is_systemd(root, &init) && unit.exists()),
        init,
        args: argv.into_iter().skip(1).collect(),
        env,
    }
}

/// Runs as PID 1: forks `agent` off (unless systemd will start it) and execs the real init.
/// Never returns; if no init can be executed it exits, and the kernel panics as it would
/// have without the agent.
pub fn run(agent: impl FnOnce()) -> ! {
    let p = plan(
        std::env::args_os().collect(),
        std::env::vars_os().collect(),
        Path::new("/"),
    );
    if p.fork_agent {
        // SAFETY: this is PID 1 right after the kernel started it: one thread, so the child
        // may run any code.
        match unsafe { nix::unistd::fork() } {
            Ok(nix::unistd::ForkResult::Child) => {
                let _ = rustix::process::setsid();
                agent();
                std::process::exit(1);
            }
            Ok(nix::unistd::ForkResult::Parent { .. }) => {}
            Err(e) => eprintln!("banger-agent: cannot fork the agent ({e}); booting without it"),
        }
    }
    let mut tried = vec![p.init.clone()];
    tried.extend(
        FALLBACKS
            .iter()
            .map(|s| s.to_string())
            .filter(|s| *s != p.init),
    );
    for init in &tried {
        let e = std::process::Command::new(init)
            .arg0(init)
            .args(&p.args)
            .env_clear()
            .envs(p.env.iter().cloned())
            .exec();
        eprintln!("banger-agent: cannot run init {init}: {e}");
    }
    eprintln!(
        "banger-agent: no init could be run (tried {})",
        tried.join(", ")
    );
    std::process::exit(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_args_put_the_agent_first() {
        assert_eq!(
            boot_args("console=ttyS0 root=/dev/vda rw init=/sbin/fc-init quiet"),
            format!(
                "console=ttyS0 root=/dev/vda rw quiet init={AGENT_PATH} banger_init=/sbin/fc-init"
            )
        );
        assert_eq!(
            boot_args("console=ttyS0"),
            format!("console=ttyS0 init={AGENT_PATH}")
        );
        // The last init= wins, as in the kernel; a rewritten line stays the same.
        let once = boot_args("init=/a x init=/b -- single");
        assert_eq!(
            once,
            format!("x init={AGENT_PATH} banger_init=/b -- single")
        );
        assert_eq!(boot_args(&once), once);
    }

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn the_plan_names_the_real_init_and_hides_the_variable() {
        let root = std::env::temp_dir().join(format!("banger-hook-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("sbin")).unwrap();
        std::fs::create_dir_all(root.join("lib/systemd")).unwrap();
        std::fs::write(root.join("lib/systemd/systemd"), "").unwrap();
        std::os::unix::fs::symlink("../lib/systemd/systemd", root.join("sbin/init")).unwrap();
        let env = vec![
            (OsString::from("HOME"), OsString::from("/")),
            (OsString::from(INIT_VAR), OsString::from("/sbin/fc-init")),
        ];
        let p = plan(os(&[AGENT_PATH, "single"]), env, &root);
        assert_eq!(p.init, "/sbin/fc-init");
        assert_eq!(p.args, os(&["single"]));
        assert_eq!(p.env, vec![(OsString::from("HOME"), OsString::from("/"))]);
        assert!(p.fork_agent);
        // systemd: forks unless banger's unit is enabled.
        let p = plan(os(&[AGENT_PATH]), Vec::new(), &root);
        assert_eq!(p.init, "/sbin/init");
        assert!(p.fork_agent);
        let wants = root.join(UNIT_WANTS.trim_start_matches('/'));
        std::fs::create_dir_all(wants.parent().unwrap()).unwrap();
        std::fs::write(&wants, "").unwrap();
        assert!(!plan(os(&[AGENT_PATH]), Vec::new(), &root).fork_agent);
        // A relative banger_init is not trusted as an init.
        let env = vec![(OsString::from(INIT_VAR), OsString::from("sbin/x"))];
        assert_eq!(plan(os(&[AGENT_PATH]), env, &root).init, "/sbin/init");
        std::fs::remove_dir_all(&root).unwrap();
    }
}
