//! banger-vm: a VM's record and life.

mod list;
mod new;
mod rm;

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
];

const LIST_FLAGS: &[Flag] = &[Flag {
    long: "table",
    short: Some('t'),
    value: None,
    help: "a table for people instead of JSON lines",
}];

const RM_FLAGS: &[Flag] = &[Flag {
    long: "force",
    short: Some('f'),
    value: None,
    help: "run the inverse steps (jail teardown, net down, snap rm) first, then remove",
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
            name: "list",
            args: "",
            about: "print every VM's record",
            flags: LIST_FLAGS,
        },
        Command {
            name: "status",
            args: "[NAME...]",
            about: "print the VMs' current records (NAMEs, or records on stdin)",
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
};

pub struct NewArgs {
    pub name: String,
    pub image: String,
    pub vcpus: u32,
    pub mem_mib: u32,
    pub disk_size: Option<u64>,
    pub ssh_key: Option<PathBuf>,
}

enum Args {
    New(NewArgs),
    List { table: bool },
    Status { names: Vec<String> },
    Rm { names: Vec<String>, force: bool },
}

fn parse_args() -> Result<Args, lexopt::Error> {
    use lexopt::prelude::*;
    let mut p = lexopt::Parser::from_env();
    let sub = match p.next()? {
        Some(Value(v)) => v.string()?,
        Some(Short('h') | Long("help")) => TOOL.exit_help(None),
        Some(Short('V') | Long("version")) => TOOL.exit_version(),
        Some(arg) => return Err(arg.unexpected()),
        None => return Err("missing command (new, list, status, rm)".into()),
    };
    if TOOL.command(&sub).is_none() {
        return Err(format!("unknown command {sub:?} (new, list, status, rm)").into());
    }
    let mut names: Vec<String> = Vec::new();
    let mut image = None;
    let mut vcpus = 1u32;
    let mut mem_mib = 512u32;
    let mut disk_size = None;
    let mut ssh_key = None;
    let mut table = false;
    let mut force = false;
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
            ("list", Short('t') | Long("table")) => table = true,
            ("rm", Short('f') | Long("force")) => force = true,
            ("new" | "status" | "rm", Value(v)) => names.push(v.string()?),
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
            })
        }
        "list" => Args::List { table },
        "status" => Args::Status { names },
        _ => Args::Rm { names, force },
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
        Args::Status { names } => list::status(&store, Input::from_names(names)),
        Args::Rm { names, force } => rm::run(&store, Input::from_names(names), force),
    }
}
