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
    Flag {
        long: "print-ledger",
        short: None,
        value: None,
        help: "print the ledger (its snapshot with the journal applied) as one JSON document, and exit",
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
    internal: true,
};

struct Args {
    socket: Option<PathBuf>,
    owner: Option<String>,
    max_clients: usize,
    read_timeout: u64,
    print_ledger: bool,
}

fn parse_args() -> Result<Args, lexopt::Error> {
    use lexopt::prelude::*;
    let mut a = Args {
        socket: None,
        owner: None,
        max_clients: 64,
        read_timeout: 5,
        print_ledger: false,
    };
    let mut p = lexopt::Parser::from_env();
    while let Some(arg) = p.next()? {
        match arg {
            Short('s') | Long("socket") => a.socket = Some(p.value()?.into()),
            Long("owner") => a.owner = Some(p.value()?.string()?),
            Long("max-clients") => a.max_clients = p.value()?.parse()?,
            Long("read-timeout") => a.read_timeout = p.value()?.parse()?,
            Long("print-ledger") => a.print_ledger = true,
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

/// Closes every fd this process inherited beyond stdin, stdout and stderr (and the socket
/// systemd passes as fd 3): a root daemon must not keep, or hand to what it starts, files its
/// starter happened to leave open. Runs first thing, before any thread exists.
fn close_inherited_fds() {
    let activated = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|p| p.parse::<u32>().ok())
        .is_some_and(|p| p == std::process::id());
    let first: nix::libc::c_uint = if activated { 4 } else { 3 };
    // SAFETY: close_range(2) on fds this program has not opened yet (it runs before
    // anything else in main): no Rust object owns them.
    let rc = unsafe {
        nix::libc::syscall(
            nix::libc::SYS_close_range,
            first,
            nix::libc::c_uint::MAX,
            0 as nix::libc::c_uint,
        )
    };
    if rc != 0 {
        // An old kernel: close them one by one.
        let fds: Vec<i32> = std::fs::read_dir("/proc/self/fd")
            .map(|rd| {
                rd.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        for fd in fds.into_iter().filter(|fd| *fd >= first as i32) {
            // SAFETY: as above; an fd that is no longer open (the read_dir's own) fails
            // harmlessly with EBADF.
            unsafe {
                nix::libc::close(fd);
            }
        }
    }
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

/// `--print-ledger`: the ledger as `{"v":1,"entries":[...]}` on stdout, read under its lock
/// (nothing is created when there is none yet). Like every op, only from a root dir that is
/// root's all the way up (the ledger's files are opened by name in it).
fn print_ledger(cfg: &Config) -> ExitCode {
    let entries = if cfg.root_dir.exists() {
        let ctx = Ctx::new(cfg.clone());
        if let Err(e) = ctx.root_dir() {
            cli::report(TOOL.name, &e);
            return ExitCode::from(cli::EXIT_FAILURE);
        }
        match ctx.ledger.list() {
            Ok(e) => e,
            Err(e) => {
                cli::report(TOOL.name, &e);
                return ExitCode::from(cli::EXIT_FAILURE);
            }
        }
    } else {
        Vec::new()
    };
    let doc = serde_json::json!({"v": 1, "entries": entries});
    println!("{doc}");
    ExitCode::SUCCESS
}

/// On SIGTERM (systemd's stop) or SIGINT: fold the ledger's journal into its snapshot, then
/// die of the signal as before. A helper from before the journal (a downgrade) reads only the
/// snapshot; one killed otherwise leaves the journal, which the next helper reads. As for
/// every op, nothing is written unless the root dir is root's all the way up.
fn compact_on_stop(ctx: Ctx) {
    use signal_hook::consts::{SIGINT, SIGTERM};
    // The handlers are installed in the thread that serves them: a thread that cannot start
    // leaves the signals' default (the helper dies of them, as before), never a handler that
    // nothing reads.
    let spawned = std::thread::Builder::new()
        .name("stop".into())
        .spawn(move || {
            let mut signals = match signal_hook::iterator::Signals::new([SIGTERM, SIGINT]) {
                Ok(s) => s,
                Err(e) => {
                    server::log(format_args!(
                        "cannot watch for SIGTERM (the ledger's journal stays at stop): {e}"
                    ));
                    return;
                }
            };
            if let Some(sig) = signals.forever().next() {
                // No root dir yet: no ledger to fold, and nothing is made at a stop.
                if ctx.cfg.root_dir.exists() {
                    match ctx.root_dir() {
                        Err(e) => cli::report(TOOL.name, &e),
                        Ok(_) => {
                            if let Err(e) = ctx.ledger.compact_journal() {
                                cli::report(TOOL.name, &e);
                            }
                        }
                    }
                }
                let _ = signal_hook::low_level::emulate_default_handler(sig);
                std::process::exit(128 + sig);
            }
        });
    if let Err(e) = spawned {
        server::log(format_args!(
            "cannot watch for SIGTERM (the ledger's journal stays at stop): {e}"
        ));
    }
}

fn main() -> ExitCode {
    close_inherited_fds();
    // Long-lived: an ended inotify watch is closed in a thread of its own (the close
    // waits out a grace period, 13-15 ms here, inside the request that made it).
    banger::wait::close_watches_in_threads();
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
    if args.print_ledger {
        return print_ledger(&cfg);
    }
    if let Some(o) = &args.owner {
        match resolve_owner(o) {
            Ok(0) => return TOOL.usage_error(&"--owner must not be root: root may always call"),
            Ok(uid) => cfg.set_owner(uid),
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
    banger_helper::notify::serving(&opts.socket);
    let ctx = Ctx::new(cfg);
    compact_on_stop(Ctx::new(ctx.cfg.clone()));
    // `down` retires taps from now on; a thread removes them (and what a helper before this
    // one left).
    banger_helper::net::retire::start(&ctx);
    server::serve(listener, ctx, opts)
}
