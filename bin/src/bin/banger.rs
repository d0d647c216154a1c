//! banger: the git-style dispatcher. `banger SUB ARGS...` execs `banger-SUB ARGS...`, found
//! in the dispatcher's own directory first, then on PATH.

use banger::cli::{self, Command, Flag, Tool};
use std::os::unix::process::CommandExt;
use std::process::ExitCode;

/// The subcommands banger ships, for help and suggestions. `up`, `down` and `rm` are
/// the pipelines (shell scripts `banger-up`, `banger-down`, `banger-rm`).
const KNOWN: &[(&str, &str)] = &[
    (
        "vm",
        "a VM's record and life: new, start, stop, list, status, ssh, ...",
    ),
    (
        "snap",
        "the VM's root disk as a copy-on-write snapshot of an image",
    ),
    ("net", "bridge, tap, addresses, NAT, DNS and port forwards"),
    (
        "jail",
        "stage the jailer chroot and launch Firecracker; tear it down",
    ),
    ("image", "the image store: build, import, pull, list, rm"),
    (
        "reconcile",
        "compare records with reality; re-adopt or clean up",
    ),
    (
        "system",
        "install banger as a service: install, status, restart, update, uninstall",
    ),
    ("doctor", "host readiness checks"),
    ("up", "create and start a VM: the whole pipeline"),
    (
        "down",
        "stop a VM and release its jail and network (the disk stays)",
    ),
    ("rm", "remove a VM and everything it has, disk included"),
];

const MAIN: Command = Command {
    name: "",
    args: "COMMAND [ARGS...]",
    about: "run banger-COMMAND",
    flags: &[],
};

const TOOL: Tool = Tool {
    name: "banger",
    about: "Firecracker microVMs from the shell",
    commands: &[
        Command {
            name: "help",
            args: "[COMMAND]",
            about: "show this help, or COMMAND's",
            flags: &[],
        },
        Command {
            name: "commands",
            args: "",
            about: "list the commands installed (banger-* next to banger and on PATH)",
            flags: &[],
        },
    ],
    main: Some(&MAIN),
    footer: "'banger COMMAND ARGS' runs 'banger-COMMAND ARGS'; every step also runs on its own.\n\
See banger(7) for the pipeline and the record format.",
};

/// Reserved flag list for the completions/man check (the dispatcher has only the common ones).
#[allow(dead_code)]
const FLAGS: &[Flag] = &[];

enum Args {
    Help(Option<String>),
    Commands,
    Run(String, Vec<std::ffi::OsString>),
}

fn parse_args() -> Result<Args, lexopt::Error> {
    use lexopt::prelude::*;
    let mut p = lexopt::Parser::from_env();
    match p.next()? {
        None => Err("missing COMMAND".into()),
        Some(Short('h') | Long("help")) => Ok(Args::Help(None)),
        Some(Short('V') | Long("version")) => TOOL.exit_version(),
        Some(Value(v)) => {
            let sub = v.string()?;
            match sub.as_str() {
                "help" => {
                    let rest: Vec<String> = p
                        .raw_args()?
                        .map(|a| a.into_string().map_err(lexopt::Error::from))
                        .collect::<Result<_, _>>()?;
                    Ok(Args::Help(rest.into_iter().next()))
                }
                "commands" => Ok(Args::Commands),
                _ => Ok(Args::Run(sub, p.raw_args()?.collect())),
            }
        }
        Some(arg) => Err(arg.unexpected()),
    }
}

/// Levenshtein distance, for "did you mean".
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Every `banger-*` command installed: next to the dispatcher, then on PATH.
fn installed() -> Vec<String> {
    let mut dirs = Vec::new();
    if let Some(d) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|p| p.to_path_buf()))
    {
        dirs.push(d);
    }
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    let mut out: Vec<String> = dirs
        .iter()
        .filter_map(|d| std::fs::read_dir(d).ok())
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|e| {
            let n = e.file_name().into_string().ok()?;
            let sub = n.strip_prefix("banger-")?.to_string();
            (!sub.is_empty() && !sub.contains('.') && cli::is_executable(&e.path())).then_some(sub)
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

fn suggest(sub: &str) -> Option<String> {
    let mut names: Vec<String> = KNOWN.iter().map(|(n, _)| n.to_string()).collect();
    names.extend(installed());
    names
        .into_iter()
        .map(|n| (distance(sub, &n), n))
        .filter(|(d, n)| *d <= 2 || n.starts_with(sub))
        .min()
        .map(|(_, n)| n)
}

fn exec(sub: &str, args: &[std::ffi::OsString]) -> ExitCode {
    let bin = format!("banger-{sub}");
    let Some(path) = cli::sibling(&bin) else {
        eprintln!("banger: '{sub}' is not a banger command (no {bin} next to banger or on PATH).");
        if let Some(s) = suggest(sub) {
            eprintln!("Did you mean 'banger {s}'?");
        }
        eprintln!("'banger commands' lists the installed commands.");
        return ExitCode::from(cli::EXIT_USAGE);
    };
    let err = std::process::Command::new(&path)
        .arg0(&bin)
        .args(args)
        .exec();
    eprintln!("banger: error: cannot run {}", path.display());
    eprintln!("  caused by: {err}");
    ExitCode::from(cli::EXIT_FAILURE)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => return TOOL.usage_error(&e),
    };
    match args {
        Args::Help(None) => {
            let mut h = TOOL.help();
            let mut list = String::from("\nBanger commands:\n");
            for (n, a) in KNOWN {
                list.push_str(&format!("  {n:<12}{a}\n"));
            }
            let at = h.find("\nCommon options:").unwrap_or(h.len());
            h.insert_str(at, &list);
            print!("{h}");
            ExitCode::SUCCESS
        }
        Args::Help(Some(sub)) => exec(&sub, &["--help".into()]),
        Args::Commands => {
            for sub in installed() {
                let about = KNOWN.iter().find(|(n, _)| *n == sub).map_or("", |(_, a)| a);
                println!("{sub:<12}{about}");
            }
            ExitCode::SUCCESS
        }
        Args::Run(sub, rest) => exec(&sub, &rest),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions() {
        assert_eq!(distance("vn", "vm"), 1);
        assert_eq!(distance("", "abc"), 3);
        assert_eq!(distance("snap", "snap"), 0);
        assert_eq!(suggest("vn").as_deref(), Some("vm"));
        assert_eq!(suggest("imgae").as_deref(), Some("image"));
        assert_eq!(suggest("recon").as_deref(), Some("reconcile"));
        assert_eq!(suggest("zzzzzzzz"), None);
    }
}
