//! sec-attack: TEST TOOL ONLY. The owner's side of tests/bats/security.bats.
//!
//! Everything here is what an unprivileged user may do to paths and processes they own; the
//! suite runs it as the owner (setpriv) against a real banger-helper and checks that root's
//! files are untouched afterwards. Subcommands:
//!
//! - `swap`: the moment a path appears in a directory the owner can write, put a symlink,
//!   FIFO, socket, file or directory there instead (rename over it), optionally round after
//!   round for races.
//! - `flip`: exchange pairs of names with `renameat2(RENAME_EXCHANGE)` as fast as possible.
//! - `steal`: take a copy (pidfd_getfd) of every descriptor the owner's processes hold on a
//!   file the owner could not open itself, then write to it or read it.
//! - `calls`: many helper requests at once, answered or not, optionally kept open.
//! - `loop`: the attempts of a race in one process, stopping at the first change seen.
//! - `run`: a command with descriptors 0-2 only (how the suite starts every owner process).

mod calls;
mod flip;
mod loop_;
mod run;
mod steal;
mod swap;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

const USAGE: &str = "\
usage: sec-attack swap [--spin] [--repeat] [--any-order] [--while FILE] [--timeout SECS] DIR ACTION...
         ACTION is plant:REL=KIND, swap:REL=KIND or race:REL=KIND; KIND is symlink:TARGET, copy:FILE, fifo, socket, file or dir;
         DIR may end in '*' (the newest writable directory whose name starts with that prefix)
       sec-attack flip [--while FILE] [--timeout SECS] [--pause-us N] A B [A B]...
       sec-attack steal [--write TEXT] [--read] [--only-comm PREFIX]
       sec-attack calls [--count N] [--wait SECS] [--hold-while FILE] SOCKET LINE
       sec-attack loop --socket S --request LINE... [--count N] [--watch FILE]... [--grep FILE=TEXT]...
         [--steal-write TEXT] [--answers FILE] [--deadline SECS]
       sec-attack run CMD [ARGS...]   (CMD with descriptors 0-2 only)
TEST TOOL ONLY: the owner's side of banger's security tests.";

/// When a long-running subcommand stops: a deadline, or a file that must keep existing.
#[derive(Debug, Clone, Default)]
pub struct Stop {
    pub deadline: Option<Instant>,
    pub while_file: Option<PathBuf>,
}

impl Stop {
    pub fn now(&self) -> bool {
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            return true;
        }
        match &self.while_file {
            Some(f) => rustix::fs::access(f, rustix::fs::Access::EXISTS).is_err(),
            None => false,
        }
    }
}

fn secs(v: std::ffi::OsString) -> Result<Duration, lexopt::Error> {
    let s: f64 = v
        .into_string()
        .map_err(lexopt::Error::NonUnicodeValue)?
        .parse()
        .map_err(|e: std::num::ParseFloatError| lexopt::Error::Custom(Box::new(e)))?;
    if !(0.0..=86_400.0).contains(&s) {
        return Err("seconds must be 0-86400".into());
    }
    Ok(Duration::from_secs_f64(s))
}

fn run() -> Result<(), lexopt::Error> {
    let mut p = lexopt::Parser::from_env();
    let sub = match p.next()? {
        Some(lexopt::Arg::Value(v)) => lexopt::ValueExt::string(v)?,
        Some(lexopt::Arg::Long("help")) | Some(lexopt::Arg::Short('h')) => {
            println!("{USAGE}");
            return Ok(());
        }
        Some(a) => return Err(a.unexpected()),
        None => return Err("a subcommand is needed (swap, flip, steal, calls, loop, run)".into()),
    };
    match sub.as_str() {
        "swap" => swap::main(swap::parse(&mut p)?),
        "flip" => flip::main(flip::parse(&mut p)?),
        "steal" => steal::main(steal::parse(&mut p)?),
        "calls" => calls::main(calls::parse(&mut p)?),
        "loop" => loop_::main(loop_::parse(&mut p)?),
        "run" => run::main(&mut p),
        other => Err(format!("unknown subcommand {other:?}").into()),
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sec-attack: error: {e} (see sec-attack --help)");
            ExitCode::from(2)
        }
    }
}
