//! banger rm NAME... [--yes] [--force]: remove VMs and everything they hold, disk included.
//!
//! ```text
//! banger-vm stop NAME... | banger-jail teardown | banger-net down | banger-snap rm | banger-vm rm
//! ```
//!
//! With `--force` (a VM whose record is damaged or missing): `banger-vm rm --force NAME...`,
//! which releases whatever the root helper's ledger holds for NAME, then removes it.

use banger::cli::{self, Command, Flag, Tool};
use banger::porcelain::{self, Output, Stage};
use std::ffi::OsString;
use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

const BIN: &str = "banger rm";

const FLAGS: &[Flag] = &[
    Flag {
        long: "yes",
        short: Some('y'),
        value: None,
        help: "do not ask (for scripts); without it, asks on a terminal",
    },
    Flag {
        long: "force",
        short: Some('f'),
        value: None,
        help: "also when a record is damaged or missing: release whatever the root helper holds for NAME",
    },
    Flag {
        long: "json",
        short: None,
        value: None,
        help: "print the records (JSON) even on a terminal",
    },
];

const MAIN: Command = Command {
    name: "",
    args: "NAME...",
    about: "remove the VMs, their disks, networks and jails",
    flags: FLAGS,
};

const TOOL: Tool = Tool {
    name: "banger-rm",
    about: "remove VMs and everything they hold, disk included",
    commands: &[],
    main: Some(&MAIN),
    footer: "The pipeline it runs:\n  \
banger-vm stop NAME | banger-jail teardown | banger-net down | banger-snap rm | banger-vm rm\n\
With --force: banger-vm stop NAME; banger-vm rm --force NAME. See banger-rm(1).",
    internal: false,
};

struct Args {
    names: Vec<String>,
    yes: bool,
    force: bool,
    json: bool,
}

fn parse_args() -> Result<Args, lexopt::Error> {
    use lexopt::prelude::*;
    let mut p = lexopt::Parser::from_env();
    let mut a = Args {
        names: Vec::new(),
        yes: false,
        force: false,
        json: false,
    };
    while let Some(arg) = p.next()? {
        match arg {
            Short('h') | Long("help") => TOOL.exit_help(None),
            Short('V') | Long("version") => TOOL.exit_version(),
            Short('y') | Long("yes") => a.yes = true,
            Short('f') | Long("force") => a.force = true,
            Long("json") => a.json = true,
            Value(v) => a.names.push(v.string()?),
            _ => return Err(arg.unexpected()),
        }
    }
    if a.names.is_empty() {
        return Err("missing NAME".into());
    }
    if let Some(n) = a.names.iter().find(|n| !banger::store::valid_name(n)) {
        return Err(format!(
            "invalid VM name {n:?}: use 1-32 characters a-z, 0-9 and '-', starting with a letter"
        )
        .into());
    }
    Ok(a)
}

/// Asks on the terminal; true for yes.
fn confirm(names: &[String]) -> Result<bool, ExitCode> {
    if !(std::io::stdin().is_terminal() && std::io::stderr().is_terminal()) {
        eprintln!("{BIN}: refusing without a terminal to ask on; pass --yes");
        return Err(ExitCode::from(cli::EXIT_USAGE));
    }
    eprint!("{BIN}: remove {} and its disk? [y/N] ", names.join(" "));
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    let _ = std::io::stdin().lock().read_line(&mut answer);
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}

fn main() -> ExitCode {
    let a = match parse_args() {
        Ok(a) => a,
        Err(e) => return TOOL.usage_error(&e),
    };
    let out = Output::detect(a.json);
    let names: Vec<OsString> = a.names.iter().map(OsString::from).collect();
    if !a.force {
        // Each VM must exist (and be readable) before anything is asked or stopped.
        let ran = porcelain::run(&[Stage::new(
            "banger-vm",
            std::iter::once(OsString::from("status")).chain(names.iter().cloned()),
        )]);
        match ran {
            Ok(r) if r.ok() => {}
            Ok(_) => return ExitCode::from(cli::EXIT_FAILURE),
            Err(e) => {
                cli::report(BIN, &e);
                return ExitCode::from(cli::EXIT_FAILURE);
            }
        }
    }
    if !a.yes {
        match confirm(&a.names) {
            Ok(true) => {}
            Ok(false) => {
                eprintln!("{BIN}: nothing removed");
                return ExitCode::from(cli::EXIT_FAILURE);
            }
            Err(code) => return code,
        }
    }
    let stop = std::iter::once(OsString::from("stop")).chain(names.iter().cloned());
    let ran = if a.force {
        // A clean shutdown where the record allows one; then release by the ledger.
        let _ = std::process::Command::new(
            cli::sibling("banger-vm").unwrap_or_else(|| "banger-vm".into()),
        )
        .args(stop)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
        porcelain::run(&[Stage::new(
            "banger-vm",
            ["rm".into(), "--force".into()]
                .into_iter()
                .chain(names.iter().cloned()),
        )])
    } else {
        porcelain::run(&[
            Stage::new("banger-vm", stop),
            Stage::new("banger-jail", ["teardown"]),
            Stage::new("banger-net", ["down"]),
            Stage::new("banger-snap", ["rm"]),
            Stage::new("banger-vm", ["rm"]),
        ])
    };
    let ran = match ran {
        Ok(r) => r,
        Err(e) => {
            cli::report(BIN, &e);
            return ExitCode::from(cli::EXIT_FAILURE);
        }
    };
    if out == Output::Records {
        porcelain::print_records(&ran.records);
    }
    let failed: Vec<String> = ran
        .records
        .iter()
        .filter(|r| banger::record::has_error(r))
        .filter_map(|r| banger::record::name(r).map(String::from))
        .collect();
    for r in &ran.records {
        if let (Some(n), Some((step, msg))) = (banger::record::name(r), porcelain::error_of(r)) {
            eprintln!("{BIN}: {n} stopped at the {step} step: {msg}");
            eprintln!("{BIN}: next, either fix that and run 'banger rm {n} --yes' again, or 'banger rm --force {n} --yes' to release whatever the root helper still holds for it");
        }
    }
    if failed.is_empty() && !ran.ok() {
        eprintln!(
            "{BIN}: {} failed; run banger rm again once that is fixed (or with --force)",
            ran.failed_step().unwrap_or("a step")
        );
    } else if out == Output::People {
        for n in a.names.iter().filter(|n| !failed.contains(n)) {
            println!("{n}: removed (its disk, network and jail)");
        }
    }
    ExitCode::from(if ran.ok() {
        cli::EXIT_OK
    } else {
        cli::EXIT_FAILURE
    })
}
