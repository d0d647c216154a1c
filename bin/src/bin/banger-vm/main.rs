//! banger-vm: a VM's record and life.

mod access;
mod boot;
mod control;
mod list;
mod new;
mod remote;
mod rm;
mod snapshot;
mod warm;

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
        long: "wait",
        short: None,
        value: Some("WHAT"),
        help: "ready when: agent (its hello), ssh (the port answers), console:TEXT, or none (default: agent when the VM has one, else ssh)",
    },
    Flag {
        long: "wait-console",
        short: None,
        value: Some("TEXT"),
        help: "same as --wait console:TEXT",
    },
    Flag {
        long: "no-wait",
        short: None,
        value: None,
        help: "same as --wait none: return right after InstanceStart",
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
        long: "wait",
        short: None,
        value: Some("WHAT"),
        help: "ready when: agent (its hello), ssh (the port answers), console:TEXT, or none (default: agent when the VM has one, else ssh)",
    },
    Flag {
        long: "wait-console",
        short: None,
        value: Some("TEXT"),
        help: "same as --wait console:TEXT",
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

const EXEC_FLAGS: &[Flag] = &[
    Flag {
        long: "via",
        short: None,
        value: Some("HOW"),
        help: "agent or ssh (default: the agent when the VM has one and it answers, else ssh)",
    },
    Flag {
        long: "tty",
        short: Some('t'),
        value: None,
        help: "run the command on a terminal (interactive use; agent only)",
    },
    Flag {
        long: "env",
        short: Some('e'),
        value: Some("K=V"),
        help: "set an environment variable for the command (agent only; repeatable)",
    },
    Flag {
        long: "cwd",
        short: None,
        value: Some("DIR"),
        help: "run the command in DIR (agent only; default /root)",
    },
    Flag {
        long: "timeout",
        short: None,
        value: Some("SECS"),
        help: "kill the command after SECS (agent only)",
    },
];

const CP_FLAGS: &[Flag] = &[
    Flag {
        long: "mode",
        short: None,
        value: Some("OCTAL"),
        help: "the mode of a file copied into the guest (default: the source's)",
    },
    Flag {
        long: "owner",
        short: None,
        value: Some("UID[:GID]"),
        help: "the owner of a file copied into the guest (default root)",
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
            args: "NAME [OPTIONS] -- CMD...",
            about: "run one command in the guest (through its agent, else over ssh); its exit code is passed through",
            flags: EXEC_FLAGS,
        },
        Command {
            name: "cp",
            args: "SRC DST",
            about: "copy a file into or out of a guest through its agent (one side NAME:PATH, the other a path or -)",
            flags: CP_FLAGS,
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
    },
    Exec {
        name: String,
        argv: Vec<String>,
        opts: remote::ExecOpts,
    },
    Cp {
        src: String,
        dst: String,
        opts: remote::CpOpts,
    },
    Snapshot {
        name: String,
        dir: PathBuf,
        restore: bool,
    },
}

/// One of exec's options (`key` without dashes), its value from `p`.
fn exec_opt(
    p: &mut lexopt::Parser,
    key: &str,
    o: &mut remote::ExecOpts,
) -> Result<(), lexopt::Error> {
    use lexopt::ValueExt;
    match key {
        "via" => o.via = Some(remote::Via::parse(&p.value()?.string()?)?),
        "t" | "tty" => o.tty = true,
        "e" | "env" => {
            let v = p.value()?.string()?;
            match v.split_once('=') {
                Some((k, val)) if !k.is_empty() => o.env.push((k.into(), val.into())),
                _ => return Err(format!("--env {v:?}: expected NAME=VALUE").into()),
            }
        }
        "cwd" => o.cwd = Some(p.value()?.string()?),
        _ => {
            let v: f64 = p.value()?.parse()?;
            if !(v > 0.0 && v <= 7.0 * 86400.0) {
                return Err(format!("--timeout {v}: must be more than 0, at most a week").into());
            }
            o.timeout = Some(std::time::Duration::from_secs_f64(v));
        }
    }
    Ok(())
}

const EXEC_LONGS: &[&str] = &["via", "tty", "env", "cwd", "timeout"];

/// Exec's options between NAME and `--`.
fn exec_opts_after_name(words: &[String], o: &mut remote::ExecOpts) -> Result<(), lexopt::Error> {
    use lexopt::prelude::*;
    let mut p = lexopt::Parser::from_args(words);
    while let Some(arg) = p.next()? {
        match arg {
            Short(c) if c == 't' || c == 'e' => exec_opt(&mut p, &c.to_string(), o)?,
            Long(l) if EXEC_LONGS.contains(&l) => {
                let k = l.to_string();
                exec_opt(&mut p, &k, o)?
            }
            arg => return Err(arg.unexpected()),
        }
    }
    Ok(())
}

fn parse_owner(v: &str) -> Result<(u32, Option<u32>), lexopt::Error> {
    let bad = || format!("--owner {v:?}: expected UID or UID:GID (numbers)");
    let (u, g) = match v.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (v, None),
    };
    let uid = u.parse().map_err(|_| bad())?;
    let gid = match g {
        Some(g) => Some(g.parse().map_err(|_| bad())?),
        None => None,
    };
    Ok((uid, gid))
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
    let mut exec_opts = remote::ExecOpts::default();
    let mut cp_opts = remote::CpOpts::default();
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
            ("start" | "wait", Long("wait")) => {
                wait = Some(boot::Wait::parse(&p.value()?.string()?)?)
            }
            ("start" | "wait", Long("wait-console")) => {
                wait = Some(boot::Wait::Console(p.value()?.string()?))
            }
            ("start", Long("no-wait")) => wait = Some(boot::Wait::None),
            ("start" | "wait" | "stop", Long("timeout")) => timeout = Some(p.value()?.parse()?),
            ("exec", Short(c)) if names.is_empty() && (c == 't' || c == 'e') => {
                exec_opt(&mut p, &c.to_string(), &mut exec_opts)?
            }
            ("exec", Long(l)) if names.is_empty() && EXEC_LONGS.contains(&l) => {
                let k = l.to_string();
                exec_opt(&mut p, &k, &mut exec_opts)?
            }
            ("cp", Long("mode")) => {
                let v = p.value()?.string()?;
                let m = u32::from_str_radix(&v, 8)
                    .ok()
                    .filter(|m| *m <= 0o7777)
                    .ok_or_else(|| format!("--mode {v:?}: expected an octal mode (e.g. 0644)"))?;
                cp_opts.mode = Some(m);
            }
            ("cp", Long("owner")) => cp_opts.owner = Some(parse_owner(&p.value()?.string()?)?),
            ("console", Short('f') | Long("follow")) => follow = true,
            ("console", Short('n') | Long("lines")) => lines = Some(p.value()?.parse()?),
            ("ssh" | "exec", Value(v)) if names.is_empty() => {
                names.push(v.string()?);
                // Everything after NAME belongs to ssh / the command (a leading -- is dropped).
                let raw: Vec<String> = p
                    .raw_args()?
                    .map(|a| a.into_string().map_err(lexopt::Error::from))
                    .collect::<Result<_, _>>()?;
                rest = match raw.iter().position(|a| a == "--") {
                    // exec NAME [OPTIONS] -- CMD...
                    Some(i) if sub == "exec" => {
                        exec_opts_after_name(&raw[..i], &mut exec_opts)?;
                        raw[i + 1..].to_vec()
                    }
                    Some(0) => raw[1..].to_vec(),
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
            } else if sub == "exec" {
                if rest.is_empty() {
                    return Err("exec: missing the command (banger-vm exec NAME -- CMD...)".into());
                }
                Args::Exec {
                    name,
                    argv: rest,
                    opts: exec_opts,
                }
            } else {
                Args::Ssh { name, args: rest }
            }
        }
        "cp" => match names.as_slice() {
            [s, d] => Args::Cp {
                src: s.clone(),
                dst: d.clone(),
                opts: cp_opts,
            },
            _ => return Err("cp: takes SRC DST (one of them NAME:PATH)".into()),
        },
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
        Args::Ssh { name, args } => one(&store, &name, |rec| {
            Err(access::exec_ssh(&cfg, rec, &args, false))
        }),
        Args::Exec { name, argv, opts } => exec(&cfg, &store, &name, &argv, &opts),
        Args::Cp { src, dst, opts } => cp(&store, &src, &dst, &opts),
    }
}

fn report(name: &str, e: &banger::step::StepError) {
    let mut it = e.chain.iter();
    if let Some(first) = it.next() {
        eprintln!("{BIN}: error: {name}: {first}");
    }
    for c in it {
        eprintln!("  caused by: {c}");
    }
}

/// `exec`: through the agent (exit status passed through; 1 when banger could not run it), or
/// by replacing this process with ssh.
fn exec(
    cfg: &banger::config::Config,
    store: &banger::store::Store,
    name: &str,
    argv: &[String],
    opts: &remote::ExecOpts,
) -> ExitCode {
    let res = store
        .load(name)
        .map_err(banger::step::StepError::from)
        .and_then(|rec| {
            let via_ssh = || {
                if opts.tty || !opts.env.is_empty() || opts.cwd.is_some() || opts.timeout.is_some()
                {
                    eprintln!(
                        "{BIN}: {name}: over ssh, --tty, --env, --cwd and --timeout do not apply"
                    );
                }
                Err(access::exec_ssh(cfg, &rec, argv, true))
            };
            match remote::agent_for_exec(&rec, opts.via)? {
                Some(client) => remote::exec(client, argv, opts),
                None => via_ssh(),
            }
        });
    match res {
        Ok(status) => ExitCode::from(status),
        Err(e) => {
            report(name, &e);
            ExitCode::from(banger::cli::EXIT_FAILURE)
        }
    }
}

/// `cp SRC DST`: exactly one side in a VM.
fn cp(store: &banger::store::Store, src: &str, dst: &str, opts: &remote::CpOpts) -> ExitCode {
    use remote::Side;
    let (s, d) = (Side::parse(src), Side::parse(dst));
    // (the VM, its path, true when the file goes into it)
    let (name, path, up) = match (&s, &d) {
        (Side::Vm { .. }, Side::Vm { .. }) => {
            return TOOL.usage_error(&lexopt::Error::from("cp: only one side may be in a VM"))
        }
        (_, Side::Vm { name, path }) => (name.clone(), path.clone(), true),
        (Side::Vm { name, path }, _) => (name.clone(), path.clone(), false),
        _ => {
            return TOOL.usage_error(&lexopt::Error::from(
                "cp: one side must be NAME:PATH (a file in VM NAME)",
            ))
        }
    };
    let res = store
        .load(&name)
        .map_err(banger::step::StepError::from)
        .and_then(|rec| {
            if up {
                remote::upload(&rec, &s, &path, opts)
            } else {
                remote::download(&rec, &path, &d)
            }
        });
    match res {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            report(&name, &e);
            ExitCode::from(banger::cli::EXIT_FAILURE)
        }
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
            report(name, &e);
            ExitCode::from(banger::cli::EXIT_FAILURE)
        }
    }
}
