//! banger down NAME...: stop VMs and release their jail and network; the disks stay.
//!
//! ```text
//! banger-vm stop NAME... | banger-jail teardown | banger-net down
//! ```

use banger::cli::{self, Command, Flag, Tool};
use banger::porcelain::{self, Output, Stage};
use std::ffi::OsString;
use std::process::ExitCode;

const BIN: &str = "banger down";

const FLAGS: &[Flag] = &[
    Flag {
        long: "timeout",
        short: None,
        value: Some("SECS"),
        help: "wait SECS for the guest to shut down before killing it (default 30)",
    },
    Flag {
        long: "timing",
        short: None,
        value: None,
        help: "print where each step's time went on stderr (BANGER_TIMING=1)",
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
    about: "stop the VMs and release their jail and network",
    flags: FLAGS,
};

const TOOL: Tool = Tool {
    name: "banger-down",
    about: "stop VMs and release their jail and network (the disks stay)",
    commands: &[],
    main: Some(&MAIN),
    footer:
        "The pipeline it runs:\n  banger-vm stop NAME... | banger-jail teardown | banger-net down\n\
'banger up NAME' starts a VM again from its disk; 'banger rm NAME' removes it. See banger-down(1).",
    internal: false,
};

struct Args {
    names: Vec<String>,
    stop: Vec<OsString>,
    timing: bool,
    json: bool,
}

fn parse_args() -> Result<Args, lexopt::Error> {
    use lexopt::prelude::*;
    let mut p = lexopt::Parser::from_env();
    let mut a = Args {
        names: Vec::new(),
        stop: Vec::new(),
        timing: false,
        json: false,
    };
    while let Some(arg) = p.next()? {
        match arg {
            Short('h') | Long("help") => TOOL.exit_help(None),
            Short('V') | Long("version") => TOOL.exit_version(),
            Long("timeout") => a.stop.extend(["--timeout".into(), p.value()?]),
            Long("timing") => a.timing = true,
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

fn main() -> ExitCode {
    let a = match parse_args() {
        Ok(a) => a,
        Err(e) => return TOOL.usage_error(&e),
    };
    let out = Output::detect(a.json);
    if a.timing {
        let t0 = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros())
            .unwrap_or(0);
        std::env::set_var("BANGER_TIMING", "1");
        std::env::set_var("BANGER_TIMING_T0", t0.to_string());
    }
    let mut stop: Vec<OsString> = vec!["stop".into()];
    stop.extend(a.stop.iter().cloned());
    stop.extend(a.names.iter().map(OsString::from));
    let stages = [
        Stage::new("banger-vm", stop),
        Stage::new("banger-jail", ["teardown"]),
        Stage::new("banger-net", ["down"]),
    ];
    let ran = match porcelain::run(&stages) {
        Ok(r) => r,
        Err(e) => {
            cli::report(BIN, &e);
            return ExitCode::from(cli::EXIT_FAILURE);
        }
    };
    if out == Output::Records {
        porcelain::print_records(&ran.records);
    }
    let mut failed = !ran.ok();
    for r in &ran.records {
        let n = banger::record::name(r).unwrap_or("?");
        match porcelain::error_of(r) {
            Some((step, msg)) => {
                failed = true;
                eprintln!("{BIN}: {n} stopped at the {step} step: {msg}");
                eprintln!("{BIN}: next, either:");
                eprintln!("  fix what is said above, then run again: banger down {n}");
                eprintln!("  or release everything it holds and remove it: banger rm --force {n} --yes");
            }
            None if out == Output::People => println!(
                "{}   (the disk stays: 'banger up {n}' starts it again, 'banger rm {n}' removes it)",
                porcelain::summary(r)
            ),
            None => {}
        }
    }
    if failed && !ran.records.iter().any(banger::record::has_error) {
        eprintln!(
            "{BIN}: {} failed; run banger down again once that is fixed",
            ran.failed_step().unwrap_or("a step")
        );
    }
    ExitCode::from(if failed {
        cli::EXIT_FAILURE
    } else {
        cli::EXIT_OK
    })
}
