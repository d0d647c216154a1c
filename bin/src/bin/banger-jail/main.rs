//! banger-jail: stages the jailer chroot and launches Firecracker through the jailer as the
//! owner's uid (or directly, less isolated); tears the jail down again.

mod keeper;
mod launch;
mod teardown;

use banger::cli::{Command, Flag, Tool};
use banger::step::{self, Input, Step};
use std::process::ExitCode;

pub const BIN: &str = "banger-jail";

const LAUNCH_FLAGS: &[Flag] = &[
    Flag {
        long: "launcher",
        short: Some('l'),
        value: Some("KIND"),
        help: "jailer (default: chroot, uid drop, cgroups) or direct (no jailer; less isolated)",
    },
    Flag {
        long: "timeout",
        short: None,
        value: Some("SECS"),
        help: "how long to wait for Firecracker's API to answer (default 10, at most 120)",
    },
];

const TEARDOWN_FLAGS: &[Flag] = &[Flag {
    long: "grace",
    short: None,
    value: Some("SECS"),
    help: "seconds between SIGTERM and SIGKILL (default 3, at most 60)",
}];

pub const TOOL: Tool = Tool {
    name: BIN,
    about: "the jailer chroot and Firecracker's launch",
    commands: &[
        Command {
            name: "launch",
            args: "[NAME...]",
            about:
                "stage the chroot, start Firecracker, wait for its API (NAMEs or records on stdin)",
            flags: LAUNCH_FLAGS,
        },
        Command {
            name: "teardown",
            args: "[NAME...]",
            about: "stop Firecracker, unmount and remove the chroot and cgroup (the disk stays)",
            flags: TEARDOWN_FLAGS,
        },
        Command {
            name: "list",
            args: "",
            about: "print every jail the root helper's ledger holds, with whether it runs",
            flags: &[Flag {
                long: "table",
                short: Some('t'),
                value: None,
                help: "a table for people instead of JSON lines",
            }],
        },
    ],
    main: None,
    footer: "Records are JSON lines; launch adds the jail section, teardown removes it.\n\
Environment: BANGER_STATE_DIR, BANGER_RUN_DIR, BANGER_JAIL_DIR, BANGER_FIRECRACKER,\n\
BANGER_JAILER (read by the root helper, never taken from a request). See banger-jail(1).",
    internal: false,
};

pub struct LaunchOpts {
    pub direct: bool,
    pub timeout_ms: u64,
}

enum Args {
    Launch {
        names: Vec<String>,
        opts: LaunchOpts,
    },
    Teardown {
        names: Vec<String>,
        grace_ms: u64,
    },
    List {
        table: bool,
    },
}

fn secs(v: &str, flag: &str, max: f64) -> Result<u64, lexopt::Error> {
    let s: f64 = v
        .parse()
        .map_err(|_| format!("{flag} {v:?}: expected a number of seconds"))?;
    if !(0.0..=max).contains(&s) || !s.is_finite() {
        return Err(format!("{flag} {v}: must be 0-{max} seconds").into());
    }
    Ok((s * 1000.0).round() as u64)
}

fn parse_args() -> Result<Args, lexopt::Error> {
    use lexopt::prelude::*;
    let mut p = lexopt::Parser::from_env();
    let sub = TOOL.subcommand(&mut p)?;
    let mut names = Vec::new();
    let mut direct = false;
    let mut timeout_ms = 10_000;
    let mut grace_ms = 3_000;
    let mut table = false;
    while let Some(arg) = p.next()? {
        match (sub.as_str(), arg) {
            (_, Short('h') | Long("help")) => TOOL.exit_help(Some(&sub)),
            (_, Short('V') | Long("version")) => TOOL.exit_version(),
            ("launch", Short('l') | Long("launcher")) => {
                direct = match p.value()?.string()?.as_str() {
                    "jailer" => false,
                    "direct" => true,
                    other => {
                        return Err(
                            format!("--launcher {other:?}: expected jailer or direct").into()
                        )
                    }
                }
            }
            ("launch", Long("timeout")) => {
                timeout_ms = secs(&p.value()?.string()?, "--timeout", 120.0)?.max(100)
            }
            ("list", Short('t') | Long("table")) => table = true,
            ("teardown", Long("grace")) => grace_ms = secs(&p.value()?.string()?, "--grace", 60.0)?,
            ("launch" | "teardown", Value(v)) => names.push(v.string()?),
            (_, arg) => return Err(arg.unexpected()),
        }
    }
    Ok(match sub.as_str() {
        "launch" => Args::Launch {
            names,
            opts: LaunchOpts { direct, timeout_ms },
        },
        "teardown" => Args::Teardown { names, grace_ms },
        _ => Args::List { table },
    })
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => return TOOL.usage_error(&e),
    };
    let (cfg, store) = match step::setup(BIN) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let step = Step {
        bin: BIN,
        step: "jail",
        store: &store,
        owns: &["jail"],
    };
    match args {
        Args::Launch { names, opts } => {
            let pre = launch::Preflight::start(&cfg, opts.direct);
            step.run(Input::from_names(names), |rec| {
                launch::one(&cfg, rec, &opts, &pre)
            })
        }
        Args::Teardown { names, grace_ms } => step.run(Input::from_names(names), |rec| {
            teardown::one(&cfg, rec, grace_ms)
        }),
        Args::List { table } => teardown::list(&cfg, table),
    }
}
