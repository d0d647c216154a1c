//! banger-system: installs banger as a system service and looks after it: `install`,
//! `status`, `restart`, `update`, `uninstall`, and `units` (the rendered unit files).

mod fetch;
mod files;
mod install;
mod owner;
mod probe;
mod source;
mod status;
mod system;
mod systemd;
mod uninstall;
mod units;
mod update;

#[cfg(test)]
mod tests;

use banger::cli::{self, Command, Flag, Tool};
use banger::config::Config;
use banger::record::Writer;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::ExitCode;
use system::{Layout, Sys, SystemError};

const JSON: Flag = Flag {
    long: "json",
    short: None,
    value: None,
    help: "print the result record (JSON) even on a terminal",
};

const PREFIX: Flag = Flag {
    long: "prefix",
    short: None,
    value: Some("DIR"),
    help: "install under DIR (DIR/bin, DIR/share; default /usr/local)",
};

const TOOL: Tool = Tool {
    name: "banger-system",
    about: "install banger as a system service (the root helper under systemd) and look after it",
    commands: &[
        Command {
            name: "install",
            args: "",
            about: "install binaries, docs, config and units; start the helper for the owner (root)",
            flags: &[
                Flag {
                    long: "owner",
                    short: Some('o'),
                    value: Some("USER"),
                    help: "the user banger serves (default: $SUDO_USER; never root)",
                },
                Flag {
                    long: "from",
                    short: None,
                    value: Some("DIR"),
                    help: "the build to install: target/release or a prefix (default: this binary's directory)",
                },
                PREFIX,
                Flag {
                    long: "firecracker",
                    short: None,
                    value: Some("PATH"),
                    help: "the Firecracker binary (default: config.json, $BANGER_FIRECRACKER, PATH)",
                },
                Flag {
                    long: "jailer",
                    short: None,
                    value: Some("PATH"),
                    help: "the jailer binary (default: config.json, $BANGER_JAILER, PATH)",
                },
                JSON,
            ],
        },
        Command {
            name: "status",
            args: "",
            about: "units, the helper (pid, version, paths), VMs running, where the log is",
            flags: &[Flag {
                long: "table",
                short: Some('t'),
                value: None,
                help: "a table for people instead of JSON lines",
            }],
        },
        Command {
            name: "restart",
            args: "",
            about: "restart the helper; running VMs keep running (root)",
            flags: &[JSON],
        },
        Command {
            name: "update",
            args: "",
            about: "swap in a new build, rewrite changed units, restart the helper; roll back if it never answers (root)",
            flags: &[
                Flag {
                    long: "from",
                    short: None,
                    value: Some("DIR|URL"),
                    help: "the new build: a directory, or a release archive (path, file:// or https://)",
                },
                Flag {
                    long: "sha256",
                    short: None,
                    value: Some("HEX"),
                    help: "the archive's sha256 (required for a download)",
                },
                Flag {
                    long: "wait",
                    short: None,
                    value: Some("SECS"),
                    help: "how long the new helper has to answer before the rollback (default 30)",
                },
                JSON,
            ],
        },
        Command {
            name: "uninstall",
            args: "",
            about: "stop and remove the units and the installed files (root)",
            flags: &[
                Flag {
                    long: "stop-vms",
                    short: None,
                    value: None,
                    help: "stop running VMs first (banger down, as the owner) instead of refusing",
                },
                Flag {
                    long: "purge",
                    short: None,
                    value: None,
                    help: "also remove every VM, release the ledger, delete state, runtime, jail and config dirs",
                },
                JSON,
            ],
        },
        Command {
            name: "units",
            args: "",
            about: "print (or write to --out) the unit files install would write",
            flags: &[
                Flag {
                    long: "owner",
                    short: Some('o'),
                    value: Some("USER"),
                    help: "render for USER (default: the installed owner, else $SUDO_USER)",
                },
                PREFIX,
                Flag {
                    long: "out",
                    short: None,
                    value: Some("DIR"),
                    help: "write one file per unit into DIR instead of printing them",
                },
            ],
        },
    ],
    main: None,
    footer: "install, restart, update and uninstall run as root; status and units work as any user.\n\
Paths come from /etc/banger/config.json and the BANGER_* environment (see banger(7)).\n\
See banger-system(8).",
    internal: false,
};

enum Cmd {
    Install(install::Options, Option<PathBuf>),
    Status {
        table: bool,
    },
    Restart,
    Update(update::Options),
    Uninstall(uninstall::Options),
    Units {
        owner: Option<String>,
        prefix: Option<PathBuf>,
        out: Option<PathBuf>,
    },
}

fn parse_args() -> Result<Cmd, lexopt::Error> {
    use lexopt::prelude::*;
    let mut p = lexopt::Parser::from_env();
    let sub = TOOL.subcommand(&mut p)?;
    let mut owner = None;
    let mut from: Option<String> = None;
    let mut prefix = None;
    let mut firecracker = None;
    let mut jailer = None;
    let mut table = false;
    let mut sha256 = None;
    let mut wait = 30u64;
    let mut stop_vms = false;
    let mut purge = false;
    let mut out = None;
    let mut json = false;
    while let Some(arg) = p.next()? {
        match (sub.as_str(), &arg) {
            (_, Short('h') | Long("help")) => TOOL.exit_help(Some(&sub)),
            (_, Short('V') | Long("version")) => TOOL.exit_version(),
            ("install" | "units", Short('o') | Long("owner")) => owner = Some(p.value()?.string()?),
            ("install" | "update", Long("from")) => from = Some(p.value()?.string()?),
            ("install" | "units", Long("prefix")) => prefix = Some(PathBuf::from(p.value()?)),
            ("install", Long("firecracker")) => firecracker = Some(PathBuf::from(p.value()?)),
            ("install", Long("jailer")) => jailer = Some(PathBuf::from(p.value()?)),
            ("status", Short('t') | Long("table")) => table = true,
            ("update", Long("sha256")) => sha256 = Some(p.value()?.string()?),
            ("update", Long("wait")) => wait = p.value()?.parse()?,
            ("uninstall", Long("stop-vms")) => stop_vms = true,
            ("uninstall", Long("purge")) => purge = true,
            ("units", Long("out")) => out = Some(PathBuf::from(p.value()?)),
            ("install" | "restart" | "update" | "uninstall", Long("json")) => json = true,
            _ => return Err(arg.unexpected()),
        }
    }
    // What install, restart, update and uninstall did is said on stderr as they go; their
    // result record goes to a pipe, or with --json, not to a terminal.
    if matches!(sub.as_str(), "install" | "restart" | "update" | "uninstall") {
        RECORDS.store(
            banger::porcelain::Output::detect(json) == banger::porcelain::Output::Records,
            std::sync::atomic::Ordering::Relaxed,
        );
    }
    Ok(match sub.as_str() {
        "install" => Cmd::Install(
            install::Options {
                owner,
                from: from.map_or_else(install::default_from, PathBuf::from),
                firecracker,
                jailer,
            },
            prefix,
        ),
        "status" => Cmd::Status { table },
        "restart" => Cmd::Restart,
        "update" => Cmd::Update(update::Options {
            from: from.ok_or("update needs --from DIR|URL")?,
            sha256,
            wait_secs: wait.max(1),
        }),
        "uninstall" => Cmd::Uninstall(uninstall::Options { stop_vms, purge }),
        _ => Cmd::Units { owner, prefix, out },
    })
}

const DEFAULT_PREFIX: &str = "/usr/local";

/// The prefix: given, else the installed one, else /usr/local.
fn prefix_of(cfg: &Config, given: Option<PathBuf>) -> PathBuf {
    given
        .or_else(|| {
            cfg.install_info()
                .map(|i| i.prefix)
                .filter(|p| !p.as_os_str().is_empty())
        })
        .unwrap_or_else(|| DEFAULT_PREFIX.into())
}

/// Whether `emit` prints the result records (not on a terminal without --json).
static RECORDS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

fn emit(records: &[Value]) -> Result<(), SystemError> {
    if !RECORDS.load(std::sync::atomic::Ordering::Relaxed) {
        return Ok(());
    }
    let mut w = Writer::stdout();
    for r in records {
        if let Some(m) = r.as_object() {
            w.emit(m).map_err(|e| SystemError::Failed {
                what: "cannot write to stdout".into(),
                why: e.to_string(),
            })?;
        }
    }
    Ok(())
}

fn restart(sys: &Sys) -> Result<Value, SystemError> {
    let info = sys.install_info()?;
    let owner = system::owner_of(&info);
    let before = sys.probe.ping(&sys.cfg, None).ok();
    let vms_before = sys.running_vms().ok();
    sys.restart_helper(false)?;
    let exe = files::sha256(&sys.layout.bindir().join("banger-helper")).ok();
    let ping = sys.wait_helper(Some(&owner), exe.as_deref(), 20)?;
    let vms_after = sys.running_vms().ok();
    let kept = match (&vms_before, &vms_after) {
        (Some(b), Some(a)) => Some(b.iter().all(|vm| a.contains(vm))),
        _ => None,
    };
    sys.say(format!(
        "restarted the helper: pid {} -> {}{}",
        before
            .as_ref()
            .map_or("-".to_string(), |p| p["pid"].to_string()),
        ping["pid"],
        match (kept, &vms_after) {
            (Some(true), Some(v)) => format!("; {} running VM(s) kept their Firecracker", v.len()),
            (Some(false), _) => "; warning: a VM's Firecracker changed during the restart".into(),
            _ => String::new(),
        }
    ));
    Ok(json!({
        "v": 1,
        "type": "system",
        "name": "restart",
        "before": before.map(|p| p["pid"].clone()),
        "after": ping["pid"],
        "vms": vms_after.map(|v| v.into_iter().map(|(n, p)| json!({"name": n, "pid": p})).collect::<Vec<_>>()),
    }))
}

fn units_cmd(
    cfg: &Config,
    owner: Option<String>,
    prefix: Option<PathBuf>,
    out: Option<PathBuf>,
) -> Result<(), SystemError> {
    let owner = match owner {
        Some(o) => owner::Owner::resolve(Some(&o))?,
        None => match cfg.install_info() {
            Some(i) => system::owner_of(&i),
            None => owner::Owner::resolve(None)?,
        },
    };
    let layout = Layout::system(&prefix_of(cfg, prefix));
    let sys = Sys {
        ctl: &systemd::Real,
        probe: &probe::Real,
        cfg: cfg.clone(),
        layout,
        quiet: true,
        units_from_build: true,
    };
    let rendered = units::render(&sys.params(&owner))?;
    match out {
        Some(dir) => {
            files::mkdirs(&dir)?;
            for (name, text) in rendered {
                files::write_text(&dir.join(name), &text, 0o644)?;
            }
        }
        None => {
            for (name, text) in rendered {
                println!("# ==> {name} <==");
                print!("{text}");
                println!();
            }
        }
    }
    Ok(())
}

fn run(cmd: Cmd) -> Result<bool, SystemError> {
    match &cmd {
        Cmd::Install(..) => system::require_root("install")?,
        Cmd::Restart => system::require_root("restart")?,
        Cmd::Update(_) => system::require_root("update")?,
        Cmd::Uninstall(_) => system::require_root("uninstall")?,
        Cmd::Status { .. } | Cmd::Units { .. } => {}
    }
    let cfg = Config::load().map_err(|e| SystemError::Failed {
        what: "cannot load the configuration".into(),
        why: cli::one_line(&e),
    })?;
    let sys = |prefix: Option<PathBuf>| Sys {
        ctl: &systemd::Real,
        probe: &probe::Real,
        layout: Layout::system(&prefix_of(&cfg, prefix)),
        cfg: cfg.clone(),
        quiet: false,
        units_from_build: true,
    };
    match cmd {
        Cmd::Install(opts, prefix) => {
            emit(&[install::install(&sys(prefix), &opts)?])?;
        }
        Cmd::Status { table } => {
            let (records, healthy) = status::status(&sys(None))?;
            if table {
                print!("{}", status::table(&records));
            } else {
                emit(&records)?;
            }
            return Ok(healthy);
        }
        Cmd::Restart => {
            emit(&[restart(&sys(None))?])?;
        }
        Cmd::Update(opts) => {
            emit(&[update::update(&sys(None), &opts)?])?;
        }
        Cmd::Uninstall(opts) => {
            emit(&[uninstall::uninstall(&sys(None), &opts)?])?;
        }
        Cmd::Units { owner, prefix, out } => units_cmd(&cfg, owner, prefix, out)?,
    }
    Ok(true)
}

fn main() -> ExitCode {
    let cmd = match parse_args() {
        Ok(c) => c,
        Err(e) => return TOOL.usage_error(&e),
    };
    match run(cmd) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(cli::EXIT_FAILURE),
        Err(e) => {
            cli::report(TOOL.name, &e);
            ExitCode::from(cli::EXIT_FAILURE)
        }
    }
}
