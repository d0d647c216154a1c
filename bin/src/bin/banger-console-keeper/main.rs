//! banger-console-keeper: keeps one VM's serial console in a log of bounded size.
//!
//! Firecracker writes the console to a FIFO in the VM's jail (it opens it read-write and
//! non-blocking, so it never blocks and never sees EPIPE, even if this keeper is gone: output
//! is then dropped, the guest runs on). This keeper, started detached as the owner by
//! `banger-jail launch`, copies the FIFO into the log and rotates it past `--max-bytes`
//! (`LOG` -> `LOG.1`, one old generation kept), and exits once the Firecracker it watches
//! (`--pid`, checked with its start time) is gone.

mod keep;

use banger::cli::{self, Command, Flag, Tool};
use std::path::PathBuf;
use std::process::ExitCode;

const FLAGS: &[Flag] = &[
    Flag {
        long: "fifo",
        short: None,
        value: Some("PATH"),
        help: "the FIFO Firecracker writes the serial console to (required)",
    },
    Flag {
        long: "log",
        short: None,
        value: Some("PATH"),
        help: "the console log to append to (required)",
    },
    Flag {
        long: "max-bytes",
        short: None,
        value: Some("N"),
        help: "rotate the log to LOG.1 past N bytes (default 8388608)",
    },
    Flag {
        long: "pid",
        short: None,
        value: Some("PID"),
        help: "exit once this process is gone (required)",
    },
    Flag {
        long: "start-time",
        short: None,
        value: Some("TICKS"),
        help: "PID's start time (/proc/PID/stat field 22), so a reused PID is not mistaken for it",
    },
    Flag {
        long: "user",
        short: None,
        value: Some("UID:GID"),
        help: "started as root: become UID:GID (groups: GID only) before opening anything",
    },
];

const MAIN: Command = Command {
    name: "",
    args: "",
    about: "copy the FIFO into the log until PID exits",
    flags: FLAGS,
};

const TOOL: Tool = Tool {
    name: "banger-console-keeper",
    about: "keep a VM's serial console in a log of bounded size",
    commands: &[],
    main: Some(&MAIN),
    footer:
        "Started by banger-jail launch; not meant to be run by hand. See banger-console-keeper(8).",
    internal: true,
};

fn parse_args() -> Result<keep::Args, lexopt::Error> {
    use lexopt::prelude::*;
    let mut fifo: Option<PathBuf> = None;
    let mut log: Option<PathBuf> = None;
    let mut max = banger::config::DEFAULT_CONSOLE_MAX_BYTES;
    let mut pid: Option<i32> = None;
    let mut start_time = None;
    let mut user = None;
    let mut p = lexopt::Parser::from_env();
    while let Some(arg) = p.next()? {
        match arg {
            Long("fifo") => fifo = Some(p.value()?.into()),
            Long("log") => log = Some(p.value()?.into()),
            Long("max-bytes") => max = p.value()?.parse()?,
            Long("pid") => pid = Some(p.value()?.parse()?),
            Long("start-time") => start_time = Some(p.value()?.parse()?),
            Long("user") => {
                let v = p.value()?.string()?;
                let ids = v
                    .split_once(':')
                    .and_then(|(u, g)| Some((u.parse().ok()?, g.parse().ok()?)));
                user = Some(ids.ok_or(format!("--user {v:?}: expected UID:GID"))?);
            }
            Short('h') | Long("help") => TOOL.exit_help(None),
            Short('V') | Long("version") => TOOL.exit_version(),
            _ => return Err(arg.unexpected()),
        }
    }
    if max < 1024 {
        return Err("--max-bytes must be at least 1024".into());
    }
    Ok(keep::Args {
        fifo: fifo.ok_or("--fifo PATH is required")?,
        log: log.ok_or("--log PATH is required")?,
        max_bytes: max,
        pid: pid.ok_or("--pid PID is required")?,
        start_time,
        user,
    })
}

/// Becomes `uid:gid` (this process is single-threaded here, so the per-thread system calls
/// change the whole process), and checks it took.
fn become_user(uid: u32, gid: u32) -> Result<(), String> {
    use rustix::fs::{Gid, Uid};
    let g = Gid::from_raw(gid);
    let u = Uid::from_raw(uid);
    rustix::thread::set_thread_groups(&[g]).map_err(|e| format!("setgroups: {e}"))?;
    rustix::thread::set_thread_res_gid(g, g, g).map_err(|e| format!("setresgid: {e}"))?;
    rustix::thread::set_thread_res_uid(u, u, u).map_err(|e| format!("setresuid: {e}"))?;
    if rustix::process::geteuid().as_raw() != uid || rustix::process::getegid().as_raw() != gid {
        return Err("the ids did not change".into());
    }
    Ok(())
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => return TOOL.usage_error(&e),
    };
    if let Some((uid, gid)) = args.user {
        if let Err(e) = become_user(uid, gid) {
            eprintln!("{}: error: cannot become {uid}:{gid}: {e}", TOOL.name);
            return ExitCode::from(cli::EXIT_FAILURE);
        }
    }
    match keep::run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            cli::report(TOOL.name, &e);
            ExitCode::from(cli::EXIT_FAILURE)
        }
    }
}
