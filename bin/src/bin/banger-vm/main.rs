//! banger-vm: a VM's record and life.

mod access;
mod boot;
mod control;
mod list;
mod new;
mod rm;
mod snapshot;

use banger::cli::{Command, Flag, Tool};
use banger::step::{self, Input};
use std::path::PathBuf;
use std::process::ExitCode;

pub const BIN: &str = "banger-vm";

const NEW_FLAGS: &[Flag] = &[
    Flag {
        long: "image",
        short: Some('i'),
        value: Some("IMAGE"),
        help: "the image to boot (required; see banger-image list)",
    },
    Flag {
        long: "vcpus",
        short: None,
        value: Some("N"),
        help: "virtual CPUs, 1-32 (default 1)",
    },
    Flag {
        long: "mem",
        short: None,
        value: Some("MIB"),
        help: "memory in MiB, 128-262144 (default 512)",
    },
    Flag {
        long: "disk-size",
        short: None,
        value: Some("SIZE"),
        help: "grow the root disk to SIZE (e.g. 10G); default: the image's size",
    },
    Flag {
        long: "ssh-key",
        short: None,
        value: Some("FILE"),
        help: "public key for root in the guest (default: banger's own key, made on first use)",
    },
    Flag {
        long: "exists-ok",
        short: None,
        value: None,
        help: "when NAME exists, print its stored record instead of failing (its spec is kept)",
    },
    Flag {
        long: "autostart",
        short: None,
        value: None,
        help: "bring the VM up again when the host starts (banger-reconcile at boot)",
    },
];

const SET_FLAGS: &[Flag] = &[
    Flag {
        long: "autostart",
        short: None,
        value: None,
        help: "bring the VM up again when the host starts (banger-reconcile at boot)",
    },
    Flag {
        long: "no-autostart",
        short: None,
        value: None,
        help: "leave the VM stopped when the host starts",
    },
];

const LIST_FLAGS: &[Flag] = &[Flag {
    long: "table",
    short: Some('t'),
    value: None,
    help: "a table for people instead of JSON lines",
}];

const START_FLAGS: &[Flag] = &[
    Flag {
        long: "wait-console",
        short: None,
        value: Some("TEXT"),
        help: "ready when a console line contains TEXT (instead of the SSH port)",
    },
    Flag {
        long: "no-wait",
        short: None,
        value: None,
        help: "return right after InstanceStart",
    },
    Flag {
        long: "timeout",
        short: None,
        value: Some("SECS"),
        help: "give up waiting after SECS (default 300)",
    },
];

const WAIT_FLAGS: &[Flag] = &[
    Flag {
        long: "wait-console",
        short: None,
        value: Some("TEXT"),
        help: "ready when a console line contains TEXT (instead of the SSH port)",
    },
    Flag {
        long: "timeout",
        short: None,
        value: Some("SECS"),
        help: "give up waiting after SECS (default 300)",
    },
];

const STOP_FLAGS: &[Flag] = &[Flag {
    long: "timeout",
    short: None,
    value: Some("SECS"),
    help: "wait SECS for the guest to shut down before killing it (default 30)",
}];

const CONSOLE_FLAGS: &[Flag] = &[
    Flag {
        long: "follow",
        short: Some('f'),
        value: None,
        help: "keep printing what the guest writes until it stops",
    },
    Flag {
        long: "lines",
        short: Some('n'),
        value: Some("N"),
        help: "start with the last N lines only",
    },
];

const RM_FLAGS: &[Flag] = &[Flag {
    long: "force",
    short: Some('f'),
    value: None,
    help: "release whatever the root helper holds for the VM first (jail teardown, net down, snap rm), even when its record is damaged or missing, then remove",
}];

pub const TOOL: Tool = Tool {
    name: BIN,
    about: "a VM's record and life",
    commands: &[
        Command {
            name: "new",
            args: "NAME",
            about: "create a VM record (its spec section) and print it",
            flags: NEW_FLAGS,
        },
        Command {
            name: "set",
            args: "[NAME...]",
            about: "change settings in the VMs' spec (autostart)",
            flags: SET_FLAGS,
        },
        Command {
            name: "list",
            args: "",
            about: "print every VM's record",
            flags: LIST_FLAGS,
        },
        Command {
            name: "status",
            args: "[NAME...]",
            about: "print the VMs' records with their live state (vm.live)",
            flags: LIST_FLAGS,
        },
        Command {
            name: "start",
            args: "[NAME...]",
            about: "configure Firecracker from the record, boot, wait until reachable",
            flags: START_FLAGS,
        },
        Command {
            name: "stop",
            args: "[NAME...]",
            about: "Ctrl-Alt-Del, wait, then kill",
            flags: STOP_FLAGS,
        },
        Command {
            name: "kill",
            args: "[NAME...]",
            about: "kill the VM's Firecracker now",
            flags: &[],
        },
        Command {
            name: "pause",
            args: "[NAME...]",
            about: "pause the VM's vCPUs",
            flags: &[],
        },
        Command {
            name: "resume",
            args: "[NAME...]",
            about: "resume a paused VM",
            flags: &[],
        },
        Command {
            name: "wait",
            args: "[NAME...]",
            about: "wait until the guest is reachable",
            flags: WAIT_FLAGS,
        },
        Command {
            name: "console",
            args: "NAME",
            about: "print (or follow) the VM's serial console",
            flags: CONSOLE_FLAGS,
        },
        Command {
            name: "ssh",
            args: "NAME [-- SSH-ARGS...]",
            about: "ssh into the guest as root, its host key pinned from the record",
            flags: &[],
        },
        Command {
            name: "exec",
            args: "NAME -- CMD...",
            about: "run one command in the guest over ssh; its exit code is passed through",
            flags: &[],
        },
        Command {
            name: "snapshot",
            args: "NAME DIR",
            about: "pause, write a Full snapshot of memory and state to DIR, resume",
            flags: &[],
        },
        Command {
            name: "restore",
            args: "NAME DIR",
            about: "load a snapshot from DIR into the VM's freshly launched Firecracker",
            flags: &[],
        },
        Command {
            name: "rm",
            args: "[NAME...]",
            about: "remove VM records whose resources are gone (NAMEs, or records on stdin)",
            flags: RM_FLAGS,
        },
    ],
    main: None,
    footer: "Records are JSON lines on stdout; errors and progress go to stderr.\n\
Environment: BANGER_STATE_DIR, BANGER_RUN_DIR, BANGER_CONFIG_DIR (see banger(7)).",
    internal: false,
};

pub struct NewArgs {
    pub name: String,
    pub image: String,
    pub vcpus: u32,
    pub mem_mib: u32,
    pub disk_size: Option<u64>,
    pub ssh_key: Option<PathBuf>,
    pub exists_ok: bool,
    pub autostart: bool,
}

enum Args {
    New(NewArgs),
    List {
        table: bool,
    },
    Status {
        names: Vec<String>,
        table: bool,
    },
    Rm {
        names: Vec<String>,
        force: bool,
    },
    Set {
        names: Vec<String>,
        autostart: bool,
    },
    Start {
        names: Vec<String>,
        wait: boot::WaitOpts,
    },
    Wait {
        names: Vec<String>,
        wait: boot::WaitOpts,
    },
    Stop {
        names: Vec<String>,
        timeout: u64,
    },
    Each {
        sub: String,
        names: Vec<String>,
    },
    Console {
        name: String,
        follow: bool,
        lines: Option<usize>,
    },
    Ssh {
        name: String,
        args: Vec<String>,
        exec: bool,
    },
    Snapshot {
        name: String,
        dir: PathBuf,
        restore: bool,
    },
}

fn parse_args() -> Result<Args, lexopt::Error> {
    use lexopt::prelude::*;
    let mut p = lexopt::Parser::from_env();
    let sub = TOOL.subcommand(&mut p)?;
    let mut names: Vec<String> = Vec::new();
    let mut image = None;
    let mut vcpus = 1u32;
    let mut mem_mib = 512u32;
    let mut disk_size = None;
    let mut ssh_key = None;
    let mut exists_ok = false;
    let mut autostart: Option<bool> = None;
    let mut table = false;
    let mut force = false;
    let mut wait: Option<boot::Wait> = None;
    let mut timeout: Option<u64> = None;
    let mut follow = false;
    let mut lines = None;
    let mut rest: Vec<String> = Vec::new();
    while let Some(arg) = p.next()? {
        match (sub.as_str(), arg) {
            (_, Short('h') | Long("help")) => TOOL.exit_help(Some(&sub)),
            (_, Short('V') | Long("version")) => TOOL.exit_version(),
            ("new", Short('i') | Long("image")) => image = Some(p.value()?.string()?),
            ("new", Long("vcpus")) => vcpus = p.value()?.parse()?,
            ("new", Long("mem")) => mem_mib = p.value()?.parse()?,
            ("new", Long("disk-size")) => {
                let v = p.value()?.string()?;
                disk_size =
                    Some(banger::cli::parse_size(&v).map_err(|e| format!("--disk-size: {e}"))?);
            }
            ("new", Long("ssh-key")) => ssh_key = Some(PathBuf::from(p.value()?)),
            ("new", Long("exists-ok")) => exists_ok = true,
            ("new" | "set", Long("autostart")) => autostart = Some(true),
            ("set", Long("no-autostart")) => autostart = Some(false),
            ("list" | "status", Short('t') | Long("table")) => table = true,
            ("rm", Short('f') | Long("force")) => force = true,
            ("start" | "wait", Long("wait-console")) => {
                wait = Some(boot::Wait::Console(p.value()?.string()?))
            }
            ("start", Long("no-wait")) => wait = Some(boot::Wait::None),
            ("start" | "wait" | "stop", Long("timeout")) => timeout = Some(p.value()?.parse()?),
            ("console", Short('f') | Long("follow")) => follow = true,
            ("console", Short('n') | Long("lines")) => lines = Some(p.value()?.parse()?),
            ("ssh" | "exec", Value(v)) if names.is_empty() => {
                names.push(v.string()?);
                // Everything after NAME belongs to ssh / the command (a leading -- is dropped).
                let raw: Vec<String> = p
                    .raw_args()?
                    .map(|a| a.into_string().map_err(lexopt::Error::from))
                    .collect::<Result<_, _>>()?;
                rest = match raw.first().map(String::as_str) {
                    Some("--") => raw[1..].to_vec(),
                    _ => raw,
                };
            }
            (_, Value(v)) if sub != "list" => names.push(v.string()?),
            (_, arg) => return Err(arg.unexpected()),
        }
    }
    Ok(match sub.as_str() {
        "new" => {
            let name = match names.as_slice() {
                [n] => n.clone(),
                [] => return Err("new: missing NAME".into()),
                _ => return Err("new: takes one NAME".into()),
            };
            if !banger::store::valid_name(&name) {
                return Err(new::NewError::Name(name).to_string().into());
            }
            let image = image
                .ok_or("new: --image IMAGE is required (banger-image list shows the images)")?;
            if !(1..=32).contains(&vcpus) {
                return Err(format!("--vcpus {vcpus}: must be 1-32").into());
            }
            if !(128..=262_144).contains(&mem_mib) {
                return Err(format!("--mem {mem_mib}: must be 128-262144 MiB").into());
            }
            Args::New(NewArgs {
                name,
                image,
                vcpus,
                mem_mib,
                disk_size,
                ssh_key,
                exists_ok,
                autostart: autostart.unwrap_or(false),
            })
        }
        "set" => Args::Set {
            names,
            autostart: autostart
                .ok_or("set: say what to change (--autostart or --no-autostart)")?,
        },
        "list" => Args::List { table },
        "status" => Args::Status { names, table },
        "rm" => Args::Rm { names, force },
        "start" => Args::Start {
            names,
            wait: boot::WaitOpts {
                wait,
                timeout: std::time::Duration::from_secs(timeout.unwrap_or(300)),
            },
        },
        "wait" => Args::Wait {
            names,
            wait: boot::WaitOpts {
                wait,
                timeout: std::time::Duration::from_secs(timeout.unwrap_or(300)),
            },
        },
        "stop" => Args::Stop {
            names,
            timeout: timeout.unwrap_or(30),
        },
        "console" | "ssh" | "exec" => {
            let name = match names.as_slice() {
                [n] => n.clone(),
                [] => return Err(format!("{sub}: missing NAME").into()),
                _ => return Err(format!("{sub}: takes one NAME").into()),
            };
            if sub == "console" {
                Args::Console {
                    name,
                    follow,
                    lines,
                }
            } else {
                if sub == "exec" && rest.is_empty() {
                    return Err("exec: missing the command (banger-vm exec NAME -- CMD...)".into());
                }
                Args::Ssh {
                    name,
                    args: rest,
                    exec: sub == "exec",
                }
            }
        }
        "snapshot" | "restore" => match names.as_slice() {
            [n, d] => Args::Snapshot {
                name: n.clone(),
                dir: PathBuf::from(d),
                restore: sub == "restore",
            },
            _ => return Err(format!("{sub}: takes NAME DIR").into()),
        },
        _ => Args::Each { sub, names },
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
    match args {
        Args::New(a) => new::run(&cfg, &store, a),
        Args::List { table } => list::list(&store, table),
        Args::Status { names, table } => list::status(&store, Input::from_names(names), table),
        Args::Rm { names, force } => rm::run(&cfg, &store, Input::from_names(names), force),
        Args::Set { names, autostart } => {
            let s = banger::step::Step {
                bin: BIN,
                step: "set",
                store: &store,
                owns: &["spec"],
            };
            s.run(Input::from_names(names), |rec| {
                new::set_autostart(rec, autostart)
            })
        }
        Args::Start { names, wait } => {
            step(&store, "start", names, |rec| boot::start(&cfg, rec, &wait))
        }
        Args::Wait { names, wait } => step(&store, "wait", names, |rec| boot::wait(rec, &wait)),
        Args::Stop { names, timeout } => step(&store, "stop", names, |rec| {
            control::stop(rec, std::time::Duration::from_secs(timeout))
        }),
        Args::Each { sub, names } => step(&store, &sub.clone(), names, |rec| match sub.as_str() {
            "kill" => control::kill(rec),
            "pause" => control::pause(rec),
            _ => control::resume(rec),
        }),
        Args::Snapshot { name, dir, restore } => step(
            &store,
            if restore { "restore" } else { "snapshot" },
            vec![name],
            |rec| {
                if restore {
                    snapshot::restore(rec, &dir)
                } else {
                    snapshot::snapshot(rec, &dir)
                }
            },
        ),
        Args::Console {
            name,
            follow,
            lines,
        } => one(&store, &name, |rec| access::console(rec, follow, lines)),
        Args::Ssh { name, args, exec } => one(&store, &name, |rec| {
            Err(access::exec_ssh(&cfg, rec, &args, exec))
        }),
    }
}

fn step(
    store: &banger::store::Store,
    name: &str,
    names: Vec<String>,
    f: impl FnMut(&mut banger::record::Record) -> Result<banger::step::Action, banger::step::StepError>,
) -> ExitCode {
    let s = banger::step::Step {
        bin: BIN,
        step: name,
        store,
        owns: &["vm"],
    };
    s.run(Input::from_names(names), f)
}

/// Commands on one VM that print for people (console, ssh, exec).
fn one(
    store: &banger::store::Store,
    name: &str,
    f: impl FnOnce(&banger::record::Record) -> Result<(), banger::step::StepError>,
) -> ExitCode {
    if let Err(code) = Input::Names(vec![name.to_string()]).check(BIN) {
        return code;
    }
    let res = store
        .load(name)
        .map_err(banger::step::StepError::from)
        .and_then(|rec| f(&rec));
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let mut it = e.chain.iter();
            if let Some(first) = it.next() {
                eprintln!("{BIN}: error: {name}: {first}");
            }
            for c in it {
                eprintln!("  caused by: {c}");
            }
            ExitCode::from(banger::cli::EXIT_FAILURE)
        }
    }
}
