//! banger-doctor: host readiness checks, one JSON line per check.

mod checks;
mod service;

use banger::cli::{self, Command, Flag, Tool};
use banger::record::Writer;
use checks::Status;
use std::process::ExitCode;

const FLAGS: &[Flag] = &[
    Flag {
        long: "table",
        short: Some('t'),
        value: None,
        help: "a table for people instead of JSON lines",
    },
    Flag {
        long: "strict",
        short: None,
        value: None,
        help: "exit 1 on warnings too, not only on failures",
    },
];

const MAIN: Command = Command {
    name: "",
    args: "",
    about: "check the host",
    flags: FLAGS,
};

const TOOL: Tool = Tool {
    name: "banger-doctor",
    about: "is this host ready for banger? one JSON line per check",
    commands: &[],
    main: Some(&MAIN),
    footer: "Each check is a record {\"v\":1,\"type\":\"check\",\"name\",\"status\":\"ok|warn|fail\",\"message\",\"fix\"}.\n\
Exit status: 0 when nothing failed, 1 when a check failed (or warned, with --strict).",
    internal: false,
};

struct Args {
    table: bool,
    strict: bool,
}

fn parse_args() -> Result<Args, lexopt::Error> {
    use lexopt::prelude::*;
    let mut a = Args {
        table: false,
        strict: false,
    };
    let mut p = lexopt::Parser::from_env();
    while let Some(arg) = p.next()? {
        match arg {
            Short('t') | Long("table") => a.table = true,
            Long("strict") => a.strict = true,
            Short('h') | Long("help") => TOOL.exit_help(None),
            Short('V') | Long("version") => TOOL.exit_version(),
            _ => return Err(arg.unexpected()),
        }
    }
    Ok(a)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => return TOOL.usage_error(&e),
    };
    let cfg = match banger::config::Config::load() {
        Ok(c) => c,
        Err(e) => {
            cli::report(TOOL.name, &e);
            return ExitCode::from(cli::EXIT_FAILURE);
        }
    };
    let results = checks::all(&cfg);
    if args.table {
        let mut rows = vec![vec!["CHECK".to_string(), "STATUS".into(), "MESSAGE".into()]];
        for c in &results {
            let mut msg = c.message.clone();
            if let Some(f) = &c.fix {
                msg.push_str(&format!(" (fix: {f})"));
            }
            rows.push(vec![c.name.clone(), c.status.as_str().into(), msg]);
        }
        print!("{}", cli::render_table(&rows));
    } else {
        let mut w = Writer::stdout();
        for c in &results {
            if let Err(e) = w.emit(&c.record()) {
                cli::report(TOOL.name, &e);
                return ExitCode::from(cli::EXIT_FAILURE);
            }
        }
    }
    let worst = results.iter().map(|c| c.status).max().unwrap_or(Status::Ok);
    let failed = worst == Status::Fail || (args.strict && worst == Status::Warn);
    ExitCode::from(if failed {
        cli::EXIT_FAILURE
    } else {
        cli::EXIT_OK
    })
}
