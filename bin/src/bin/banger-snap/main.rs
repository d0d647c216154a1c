//! banger-snap: the VM's root disk as a copy-on-write snapshot of its image, with the
//! VM's SSH key, hostname, host keys and network configuration written into it.

mod create;
mod list;
mod rm;

use banger::cli::{Command, Flag, Tool};
use banger::step::{self, Input};
use std::process::ExitCode;

pub const BIN: &str = "banger-snap";

const CREATE_FLAGS: &[Flag] = &[
    Flag {
        long: "method",
        short: Some('m'),
        value: Some("METHOD"),
        help: "dm-snapshot, reflink or copy (default: the best the host has)",
    },
    Flag {
        long: "disk-size",
        short: None,
        value: Some("SIZE"),
        help: "grow the disk and its filesystem to SIZE (e.g. 10G); default: the record's spec.disk_size, else the image's size",
    },
    Flag {
        long: "no-agent",
        short: None,
        value: None,
        help: "do not write the guest agent into the disk (an image's own agent still runs)",
    },
    Flag {
        long: "cold",
        short: None,
        value: None,
        help: "make the disk from the image's rootfs even when the image is warm (banger-image warm)",
    },
];

const LIST_FLAGS: &[Flag] = &[Flag {
    long: "table",
    short: Some('t'),
    value: None,
    help: "a table for people instead of JSON lines",
}];

pub const TOOL: Tool = Tool {
    name: BIN,
    about: "VM root disks as copy-on-write snapshots of images",
    commands: &[
        Command {
            name: "create",
            args: "[NAME...]",
            about: "give each VM (NAMEs, or records on stdin) its own disk and write its identity into it",
            flags: CREATE_FLAGS,
        },
        Command {
            name: "rm",
            args: "[NAME...]",
            about: "remove the VMs' disks and their device-mapper and loop objects",
            flags: &[],
        },
        Command {
            name: "list",
            args: "[NAME...]",
            about: "print the disks: method, size, size on disk, image",
            flags: LIST_FLAGS,
        },
    ],
    main: None,
    footer: "Methods, best first: dm-snapshot (device-mapper over a loop device, per-VM COW file),\n\
reflink (XFS/btrfs block sharing), copy (a sparse copy: O(image size), warned about).\n\
A warm image (banger-image warm) gives the disk from its warm snapshot's disk, written nothing:\n\
banger-vm start loads the snapshot and the agent gives the guest its identity (--cold: the rootfs).\n\
Privileged work goes through banger-helper (in process when run as root without one).\n\
Environment: BANGER_STATE_DIR, BANGER_HELPER_SOCKET, BANGER_CONFIG_DIR (see banger(7)).",
    internal: false,
};

enum Args {
    Create {
        names: Vec<String>,
        method: Option<String>,
        disk_size: Option<u64>,
        no_agent: bool,
        cold: bool,
    },
    Rm {
        names: Vec<String>,
    },
    List {
        names: Vec<String>,
        table: bool,
    },
}

fn parse_args() -> Result<Args, lexopt::Error> {
    use lexopt::prelude::*;
    let mut p = lexopt::Parser::from_env();
    let sub = TOOL.subcommand(&mut p)?;
    let mut names = Vec::new();
    let mut method = None;
    let mut disk_size = None;
    let mut table = false;
    let mut no_agent = false;
    let mut cold = false;
    while let Some(arg) = p.next()? {
        match (sub.as_str(), arg) {
            (_, Short('h') | Long("help")) => TOOL.exit_help(Some(&sub)),
            (_, Short('V') | Long("version")) => TOOL.exit_version(),
            ("create", Short('m') | Long("method")) => {
                let m = p.value()?.string()?;
                if !matches!(m.as_str(), "dm-snapshot" | "reflink" | "copy") {
                    return Err(format!("--method {m:?}: use dm-snapshot, reflink or copy").into());
                }
                method = Some(m);
            }
            ("create", Long("disk-size")) => {
                let v = p.value()?.string()?;
                disk_size =
                    Some(banger::cli::parse_size(&v).map_err(|e| format!("--disk-size: {e}"))?);
            }
            ("create", Long("no-agent")) => no_agent = true,
            ("create", Long("cold")) => cold = true,
            ("list", Short('t') | Long("table")) => table = true,
            (_, Value(v)) => names.push(v.string()?),
            (_, arg) => return Err(arg.unexpected()),
        }
    }
    Ok(match sub.as_str() {
        "create" => Args::Create {
            names,
            method,
            disk_size,
            no_agent,
            cold,
        },
        "rm" => Args::Rm { names },
        _ => Args::List { names, table },
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
        Args::Create {
            names,
            method,
            disk_size,
            no_agent,
            cold,
        } => create::run(
            &cfg,
            &store,
            Input::from_names(names),
            &create::Opts {
                method,
                disk_size,
                no_agent,
                cold,
            },
        ),
        Args::Rm { names } => rm::run(&cfg, &store, Input::from_names(names)),
        Args::List { names, table } => list::run(&cfg, &names, table),
    }
}
