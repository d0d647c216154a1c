//! banger-helper: the root helper daemon.

use banger::cli::{self, Command, Flag, Tool};
use banger::config::Config;
use banger_helper::{ops::Ctx, server};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

const FLAGS: &[Flag] = &[
    Flag {
        long: "socket",
        short: Some('s'),
        value: Some("PATH"),
        help: "listen on PATH (default: $BANGER_HELPER_SOCKET or /run/banger-root/helper.sock; ignored under socket activation)",
    },
    Flag {
        long: "owner",
        short: None,
        value: Some("USER|UID"),
        help: "the one non-root user allowed to call (default: from install.json or $BANGER_OWNER_UID)",
    },
    Flag {
        long: "max-clients",
        short: None,
        value: Some("N"),
        help: "connections served at once; more are answered 'busy' (default 64)",
    },
    Flag {
        long: "read-timeout",
        short: None,
        value: Some("SECS"),
        help: "deadline for a client to send its request (default 5)",
    },
];

const MAIN: Command = Command {
    name: "",
    args: "",
    about: "serve the root helper",
    flags: FLAGS,
};

const TOOL: Tool = Tool {
    name: "banger-helper",
    about: "banger's root helper daemon (privileged network, disk and jail operations)",
    commands: &[],
    main: Some(&MAIN),
    footer: "Runs as root, normally started by systemd socket activation (banger-helper.socket).\n\
Only root and the owner uid may call it (SO_PEERCRED). See banger-helper(8).",
};

struct Args {
    socket: Option<PathBuf>,
    owner: Option<String>,
    max_clients: usize,
    read_timeout: u64,
}

fn parse_args() -> Result<Args, lexopt::Error> {
    use lexopt::prelude::*;
    let mut a = Args {
        socket: None,
        owner: None,
        max_clients: 64,
        read_timeout: 5,
    };
    let mut p = lexopt::Parser::from_env();
    while let Some(arg) = p.next()? {
        match arg {
            Short('s') | Long("socket") => a.socket = Some(p.value()?.into()),
            Long("owner") => a.owner = Some(p.value()?.string()?),
            Long("max-clients") => a.max_clients = p.value()?.parse()?,
            Long("read-timeout") => a.read_timeout = p.value()?.parse()?,
            Short('h') | Long("help") => TOOL.exit_help(None),
            Short('V') | Long("version") => TOOL.exit_version(),
            _ => return Err(arg.unexpected()),
        }
    }
    if a.max_clients == 0 {
        return Err("--max-clients must be at least 1".into());
    }
    Ok(a)
}

fn resolve_owner(s: &str) -> Result<u32, String> {
    if let Ok(uid) = s.parse() {
        return Ok(uid);
    }
    match nix::unistd::User::from_name(s) {
        Ok(Some(u)) => Ok(u.uid.as_raw()),
        Ok(None) => Err(format!("no user named {s:?}")),
        Err(e) => Err(format!("cannot look up user {s:?}: {e}")),
    }
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => return TOOL.usage_error(&e),
    };
    let mut cfg = match Config::load() {
        Ok(c) => c,
        Err(e) => {
            cli::report(TOOL.name, &e);
            return ExitCode::from(cli::EXIT_FAILURE);
        }
    };
    if let Some(o) = &args.owner {
        match resolve_owner(o) {
            Ok(uid) => cfg.owner_uid = Some(uid),
            Err(e) => return TOOL.usage_error(&e),
        }
    }
    let socket = args
        .socket
        .clone()
        .unwrap_or_else(|| cfg.helper_socket.clone());
    let listener = match server::activated_listener() {
        Ok(Some(l)) => l,
        Ok(None) => match server::bind(&socket) {
            Ok(l) => l,
            Err(e) => {
                cli::report(TOOL.name, &e);
                return ExitCode::from(cli::EXIT_FAILURE);
            }
        },
        Err(e) => {
            cli::report(TOOL.name, &e);
            return ExitCode::from(cli::EXIT_FAILURE);
        }
    };
    let opts = server::Options {
        socket,
        owner: cfg.owner_uid,
        max_clients: args.max_clients,
        read_timeout: Duration::from_secs(args.read_timeout.max(1)),
    };
    server::serve(listener, Ctx::new(cfg), opts)
}
