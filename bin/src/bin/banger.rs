//! banger: the git-style dispatcher. `banger SUB ARGS...` execs `banger-SUB ARGS...`, found
//! in the dispatcher's own directory first, then on PATH.
//!
//! What it lists (`banger commands`, `banger --help`, Tab) is not written down here: each
//! program next to it describes itself (`BANGER_GENERATE=describe banger-SUB --help`, from
//! its flag table), and those that say they are internal (the root helper, the console
//! keeper) or do not describe themselves (the guest agent) are left out. A `banger-*` found
//! only on PATH is someone else's extension: listed, never asked.

use banger::cli::{self, Command, Tool};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

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
    internal: false,
};

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

/// One `banger-SUB` found: where, and what it says about itself.
struct Found {
    sub: String,
    /// Its `about`, when it described itself.
    about: Option<String>,
    /// Internal (says so), or next to banger without describing itself.
    hidden: bool,
}

/// The directory banger runs from.
fn own_dir() -> Option<PathBuf> {
    std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
}

/// Every `banger-*` program: next to the dispatcher, then on PATH (the first of a name wins,
/// as `banger SUB` would run it). Those next to banger are asked to describe themselves, all
/// at once.
fn installed() -> Vec<Found> {
    let own = own_dir();
    let mut dirs: Vec<PathBuf> = own.iter().cloned().collect();
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    let mut found: Vec<(String, PathBuf)> = Vec::new();
    for d in &dirs {
        let Ok(rd) = std::fs::read_dir(d) else {
            continue;
        };
        let mut here: Vec<(String, PathBuf)> = rd
            .filter_map(Result::ok)
            .filter_map(|e| {
                let n = e.file_name().into_string().ok()?;
                let sub = n.strip_prefix("banger-")?.to_string();
                (!sub.is_empty() && !sub.contains('.') && cli::is_executable(&e.path()))
                    .then(|| (sub, e.path()))
            })
            .filter(|(sub, _)| !found.iter().any(|(s, _)| s == sub))
            .collect();
        here.sort();
        found.extend(here);
    }
    let asked: Vec<_> = found
        .into_iter()
        .map(|(sub, path)| {
            let ours = own.as_deref().is_some_and(|o| path.parent() == Some(o));
            let child = ours
                .then(|| {
                    std::process::Command::new(&path)
                        .arg("--help")
                        .env(cli::GENERATE_VAR, "describe")
                        .stdin(std::process::Stdio::null())
                        .stdout(std::process::Stdio::piped())
                        .stderr(std::process::Stdio::null())
                        .spawn()
                        .ok()
                })
                .flatten();
            (sub, ours, child)
        })
        .collect();
    let mut out: Vec<Found> = asked
        .into_iter()
        .map(|(sub, ours, child)| {
            let described = child
                .and_then(|c| c.wait_with_output().ok())
                .filter(|o| o.status.success())
                .and_then(|o| serde_json::from_slice::<serde_json::Value>(&o.stdout).ok())
                .filter(|v| v["type"] == "command");
            match described {
                Some(v) => Found {
                    sub,
                    about: v["about"].as_str().map(String::from),
                    hidden: v["internal"].as_bool().unwrap_or(false),
                },
                None => Found {
                    sub,
                    about: None,
                    hidden: ours,
                },
            }
        })
        .collect();
    out.sort_by(|a, b| a.sub.cmp(&b.sub));
    out
}

/// The commands for people: installed, not hidden.
fn listed() -> Vec<Found> {
    installed().into_iter().filter(|f| !f.hidden).collect()
}

fn suggest(sub: &str) -> Option<String> {
    let names: Vec<String> = listed().into_iter().map(|f| f.sub).collect();
    cli::closest(sub, names.iter().map(String::as_str)).map(String::from)
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
            if let Some(kind) = std::env::var_os(cli::GENERATE_VAR).filter(|v| !v.is_empty()) {
                TOOL.exit_generate(&kind.to_string_lossy())
            }
            let mut h = TOOL.help();
            let mut list = String::from("\nBanger commands:\n");
            for f in listed() {
                list.push_str(&format!("  {:<12}{}\n", f.sub, f.about.unwrap_or_default()));
            }
            let at = h.find("\nCommon options:").unwrap_or(h.len());
            h.insert_str(at, &list);
            print!("{h}");
            ExitCode::SUCCESS
        }
        Args::Help(Some(sub)) => exec(&sub, &["--help".into()]),
        Args::Commands => {
            for f in listed() {
                let line = format!("{:<12}{}", f.sub, f.about.unwrap_or_default());
                println!("{}", line.trim_end());
            }
            ExitCode::SUCCESS
        }
        Args::Run(sub, rest) => exec(&sub, &rest),
    }
}
