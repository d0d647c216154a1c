//! TEST STAND-IN, not Firecracker's jailer: the `jailer` binary.
//!
//! Follows the real jailer's contract (Firecracker v1.16 docs/jailer.md and its behaviour):
//! closes inherited descriptors and clears the environment; builds
//! `<chroot-base-dir>/<exec file name>/<id>/root`; copies the exec file there; joins `--netns`;
//! applies `--resource-limit` (default `no-file=2048`); enters a new mount namespace and pivots
//! into the jail; creates `/`, `/dev`, `/dev/net`, `/run` (0700, owned by uid:gid) and the
//! `dev/net/tun`, `dev/kvm`, `dev/urandom` and (if the host has it) `dev/userfaultfd` nodes;
//! daemonizes on `--daemonize` (double fork, setsid, stdio to /dev/null); writes
//! `/<exec file name>.pid`; drops to uid:gid and execs
//! `/<exec file name> --id <id> --start-time-us N --start-time-cpu-us N --parent-cpu-time-us N
//! <args after -->`.
//!
//! Unlike the real jailer it never touches `/sys/fs/cgroup`: `--cgroup`, `--cgroup-version` and
//! `--parent-cgroup` are validated and written, with the full argv, to
//! `<chroot>/standin-jailer.json`. On a failure before exec it removes what it made.

mod env;
mod jail;
mod setup;

use crate::args::{self, Arg, Parsed};
use crate::NOTICE;

/// The version the stand-in reports.
pub const VERSION: &str = "1.16.1-standin";

/// The real jailer's flags.
pub const SPEC: &[Arg] = &[
    Arg::value("id", "Jail id (alphanumerics and hyphens, at most 64).").required(),
    Arg::value("exec-file", "Binary copied into the jail and exec'd.").required(),
    Arg::value("uid", "User id to run the exec file as.").required(),
    Arg::value("gid", "Group id to run the exec file as.").required(),
    Arg::value("chroot-base-dir", "Where jails are built.").default("/srv/jailer"),
    Arg::value("netns", "Network namespace file to join."),
    Arg::flag(
        "daemonize",
        "Detach (setsid) and send stdio to /dev/null before exec.",
    ),
    Arg::flag("new-pid-ns", "Exec into a new pid namespace."),
    Arg::value(
        "cgroup",
        "<file>=<value>; validated and recorded, never applied.",
    )
    .multiple(),
    Arg::value("resource-limit", "fsize=<bytes> or no-file=<count>.").multiple(),
    Arg::value("cgroup-version", "1 or 2; recorded only.").default("1"),
    Arg::value("parent-cgroup", "Parent cgroup; recorded only."),
    Arg::flag("version", "Print the version."),
];

/// A jailer failure: its message and the form the real jailer's `main` prints after `Error: `.
#[derive(Debug)]
struct Failure {
    message: String,
    debug: String,
}

fn failure(kind: &str, message: String) -> Failure {
    Failure {
        debug: format!("{kind}({message:?})"),
        message,
    }
}

fn print_help() {
    println!("Jailer v{VERSION}\n");
    println!("{NOTICE}: imitates Firecracker's jailer for banger's tests.\n");
    println!("{}\n", args::help(SPEC));
    println!("Any arguments after the -- separator will be supplied to the jailed binary.\n");
}

fn report(f: &Failure) -> u8 {
    eprintln!("{}", f.message);
    eprintln!("Error: {}", f.debug);
    1
}

/// Runs the stand-in jailer; returns the exit status on failure (success execs).
pub fn main() -> u8 {
    jail::close_inherited_fds();
    let argv: Vec<String> = std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    jail::clear_env();
    let a = match args::parse(SPEC, argv.get(1..).unwrap_or_default()) {
        Ok(Parsed::Help) => {
            print_help();
            return 0;
        }
        Ok(Parsed::Version) => {
            println!("Jailer v{VERSION}\n\n{NOTICE}");
            return 0;
        }
        Ok(Parsed::Args(a)) => a,
        Err(e) => {
            let f = Failure {
                message: format!("Failed to parse arguments: {e}"),
                debug: format!("ArgumentParsing({e:?})"),
            };
            return report(&f);
        }
    };
    let env = match env::Env::new(&a, &argv) {
        Ok(env) => env,
        Err(f) => return report(&f),
    };
    let mut made = setup::Made::default();
    let f = setup::run(&env, &mut made);
    made.undo(&env.chroot_dir);
    report(&f)
}
