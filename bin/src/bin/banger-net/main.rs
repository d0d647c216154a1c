//! banger-net: bridge, taps, guest addresses, NAT, DNS and port forwards for VMs.
//!
//! The privileged work is done by the root helper's `net.*` ops (or in process when run as
//! root with no helper); this binary carries records, writes the `net` section, the guests'
//! DNS servers and the hosts file for VM names.

mod dns;
mod forward;
mod hosts;
mod list;
mod updown;

use banger::cli::{Command, Flag, Tool};
use banger::step::{self, Input};
use std::net::Ipv4Addr;
use std::process::ExitCode;

pub const BIN: &str = "banger-net";

const UP_FLAGS: &[Flag] = &[Flag {
    long: "dns",
    short: None,
    value: Some("ADDR"),
    help: "the guests' DNS server (repeatable); default: the host's upstream resolvers",
}];

const DOWN_FLAGS: &[Flag] = &[Flag {
    long: "keep-bridge",
    short: None,
    value: None,
    help: "keep the bridge and the NAT table even when no VM network is left",
}];

const LIST_FLAGS: &[Flag] = &[Flag {
    long: "table",
    short: Some('t'),
    value: None,
    help: "a table for people instead of JSON lines",
}];

const FORWARD_FLAGS: &[Flag] = &[
    Flag {
        long: "remove",
        short: Some('r'),
        value: None,
        help: "remove the forwards instead of adding them",
    },
    Flag {
        long: "json",
        short: None,
        value: None,
        help: "print the record (JSON) even on a terminal",
    },
];

pub const TOOL: Tool = Tool {
    name: BIN,
    about: "bridge, taps, guest addresses, NAT, DNS and port forwards for VMs",
    commands: &[
        Command {
            name: "up",
            args: "[NAME...]",
            about: "give VMs their network: bridge, tap, address, NAT (NAMEs, or records on stdin)",
            flags: UP_FLAGS,
        },
        Command {
            name: "down",
            args: "[NAME...]",
            about: "remove VMs' taps, forwards and addresses (NAMEs, or records on stdin)",
            flags: DOWN_FLAGS,
        },
        Command {
            name: "list",
            args: "",
            about: "print the bridge and every VM's network",
            flags: LIST_FLAGS,
        },
        Command {
            name: "forward",
            args: "NAME HOSTPORT[:GUESTPORT][/tcp|/udp]...",
            about: "forward host ports to a VM (nftables DNAT in table inet banger)",
            flags: FORWARD_FLAGS,
        },
    ],
    main: None,
    footer: "Records are JSON lines on stdout; errors go to stderr.\n\
Environment: BANGER_SUBNET (default 10.200.0.0/24), BANGER_BRIDGE (default banger0),\n\
BANGER_STATE_DIR, BANGER_RUN_DIR, BANGER_HELPER_SOCKET (see banger-net(1)).\n\
VM names resolve from the host through $BANGER_RUN_DIR/hosts (NAME and NAME.banger).",
    internal: false,
};

enum Args {
    Up {
        names: Vec<String>,
        dns: Vec<Ipv4Addr>,
    },
    Down {
        names: Vec<String>,
        keep_bridge: bool,
    },
    List {
        table: bool,
    },
    Forward {
        name: String,
        specs: Vec<forward::Spec>,
        remove: bool,
        json: bool,
    },
}

fn parse_args() -> Result<Args, lexopt::Error> {
    use lexopt::prelude::*;
    let mut p = lexopt::Parser::from_env();
    let sub = TOOL.subcommand(&mut p)?;
    let mut names: Vec<String> = Vec::new();
    let mut dns = Vec::new();
    let (mut keep_bridge, mut table, mut remove, mut json) = (false, false, false, false);
    while let Some(arg) = p.next()? {
        match (sub.as_str(), arg) {
            (_, Short('h') | Long("help")) => TOOL.exit_help(Some(&sub)),
            (_, Short('V') | Long("version")) => TOOL.exit_version(),
            ("up", Long("dns")) => {
                let v = p.value()?.string()?;
                dns.push(
                    v.parse::<Ipv4Addr>()
                        .map_err(|_| format!("--dns {v:?}: not an IPv4 address"))?,
                );
            }
            ("down", Long("keep-bridge")) => keep_bridge = true,
            ("list", Short('t') | Long("table")) => table = true,
            ("forward", Short('r') | Long("remove")) => remove = true,
            ("forward", Long("json")) => json = true,
            ("up" | "down" | "forward", Value(v)) => names.push(v.string()?),
            (_, arg) => return Err(arg.unexpected()),
        }
    }
    Ok(match sub.as_str() {
        "up" => Args::Up { names, dns },
        "down" => Args::Down { names, keep_bridge },
        "list" => Args::List { table },
        _ => {
            let mut it = names.into_iter();
            let name = it.next().ok_or("forward: missing NAME")?;
            let specs = it
                .map(|s| forward::Spec::parse(&s))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("forward: {e}"))?;
            if specs.is_empty() {
                return Err("forward: missing HOSTPORT[:GUESTPORT][/tcp|/udp]".into());
            }
            Args::Forward {
                name,
                specs,
                remove,
                json,
            }
        }
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
        Args::Up { names, dns } => updown::up(&cfg, &store, Input::from_names(names), &dns),
        Args::Down { names, keep_bridge } => {
            updown::down(&cfg, &store, Input::from_names(names), keep_bridge)
        }
        Args::List { table } => list::run(&cfg, table),
        Args::Forward {
            name,
            specs,
            remove,
            json,
        } => forward::run(&cfg, &store, &name, &specs, remove, json),
    }
}
