//! banger-reconcile: brings VM records, the root helper's ledger and the host back together.
//!
//! Read-only by default: one `reconcile` JSON line per finding. `--apply` acts on what banger
//! can repair by itself, `--gc` also undoes what killed pipelines left half made, `--boot` is
//! the run for a host that just started. One run at a time (a store-wide lock of its own,
//! which no step takes), and every VM it acts on is locked as a step would lock it: a VM a
//! step works on is skipped and looked at again on the next run.

mod act;
mod judge;
mod view;

#[path = "../banger-net/hosts.rs"]
mod hosts;

use banger::cli::{self, Command, Flag, Tool};
use banger::client::Helper;
use banger::record::{self, Record, Writer};
use banger::section::{self, Spec};
use banger::step;
use judge::{Act, Context, Finding};
use std::collections::BTreeMap;
use std::process::ExitCode;

pub const BIN: &str = "banger-reconcile";

const FLAGS: &[Flag] = &[
    Flag {
        long: "apply",
        short: Some('a'),
        value: None,
        help: "act on the findings banger can repair (default: only report them)",
    },
    Flag {
        long: "gc",
        short: None,
        value: None,
        help: "also undo what interrupted pipelines left half made (acted on with --apply)",
    },
    Flag {
        long: "boot",
        short: None,
        value: None,
        help: "the run for a host that just started: --apply --gc, then bring up autostart VMs",
    },
    Flag {
        long: "wait",
        short: Some('w'),
        value: None,
        help: "wait for a reconcile already running (default: say busy and exit 0)",
    },
    Flag {
        long: "table",
        short: Some('t'),
        value: None,
        help: "a table for people instead of JSON lines",
    },
];

const MAIN: Command = Command {
    name: "",
    args: "",
    about: "compare VM records, the helper's ledger and the host; repair with --apply",
    flags: FLAGS,
};

pub const TOOL: Tool = Tool {
    name: BIN,
    about: "re-adopt live VMs, mark dead ones stopped, release what leaked",
    commands: &[],
    main: Some(&MAIN),
    footer: "One JSON line per finding: {\"v\":1,\"type\":\"reconcile\",\"name\",\"kind\",\"observed\",\"action\",\n\
\"reason\",\"result\"}. Exit 0 when all is consistent or repaired, 1 when a finding is left\n\
for a person (or for --apply/--gc), 2 for usage. Runs as the owner (or root); what needs\n\
root goes through the root helper. A disk a record names is never removed. See\n\
banger-reconcile(8).",
    internal: false,
};

#[derive(Debug, Clone, Copy, Default)]
struct Opts {
    apply: bool,
    gc: bool,
    boot: bool,
    wait: bool,
    table: bool,
}

fn parse_args() -> Result<Opts, lexopt::Error> {
    use lexopt::prelude::*;
    let mut p = lexopt::Parser::from_env();
    let mut o = Opts::default();
    while let Some(arg) = p.next()? {
        match arg {
            Short('h') | Long("help") => TOOL.exit_help(None),
            Short('V') | Long("version") => TOOL.exit_version(),
            Short('a') | Long("apply") => o.apply = true,
            Long("gc") => o.gc = true,
            Long("boot") => o.boot = true,
            Short('w') | Long("wait") => o.wait = true,
            Short('t') | Long("table") => o.table = true,
            arg => return Err(arg.unexpected()),
        }
    }
    if o.boot {
        o.apply = true;
        o.gc = true;
    }
    Ok(o)
}

/// What became of a finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Done,
    Failed,
    /// Would be done with --apply (or --gc).
    Planned,
    /// Nothing banger may do.
    Reported,
    /// Not looked at now (a step holds the VM, or another reconcile runs).
    Skipped,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Done => "done",
            Outcome::Failed => "failed",
            Outcome::Planned => "planned",
            Outcome::Reported => "reported",
            Outcome::Skipped => "skipped",
        }
    }
}

/// The findings' output: JSON lines as they come, or a table at the end.
struct Out {
    table: bool,
    w: Writer<std::io::Stdout>,
    rows: Vec<Vec<String>>,
    /// A finding is left for a person (or for --apply/--gc), or an action failed.
    unresolved: bool,
}

impl Out {
    fn emit(&mut self, f: &Finding, outcome: Outcome, err: Option<&act::ActError>) {
        let mut reason = f.reason.clone();
        if outcome == Outcome::Planned && f.gc {
            reason.push_str(" (with --apply --gc)");
        }
        if outcome != Outcome::Skipped
            && (f.person || matches!(outcome, Outcome::Planned | Outcome::Failed))
        {
            self.unresolved = true;
        }
        if self.table {
            let result = match (outcome, f.person) {
                (Outcome::Reported, _) | (Outcome::Done, true) => "needs a person".to_string(),
                (o, _) => o.as_str().to_string(),
            };
            self.rows.push(vec![
                f.name.clone(),
                f.kind.to_string(),
                f.act.name().to_string(),
                result,
                match err {
                    Some(e) => format!("{}; failed: {}", f.observed, cli::one_line(e)),
                    None => f.observed.clone(),
                },
            ]);
            return;
        }
        let mut r: Record = record::new("reconcile", &f.name);
        r.insert("kind".into(), f.kind.into());
        r.insert("observed".into(), f.observed.clone().into());
        r.insert("action".into(), f.act.name().into());
        r.insert("reason".into(), reason.into());
        r.insert("result".into(), outcome.as_str().into());
        if f.person {
            r.insert("person".into(), true.into());
        }
        if let Some(e) = err {
            record::set_error(&mut r, "reconcile", e.code(), &cli::one_line(e));
        }
        if let Err(e) = self.w.emit(&r) {
            cli::report(BIN, &e);
        }
    }

    fn finish(self) {
        if self.table && !self.rows.is_empty() {
            let mut rows = vec![vec![
                "NAME".to_string(),
                "KIND".into(),
                "ACTION".into(),
                "RESULT".into(),
                "OBSERVED".into(),
            ]];
            rows.extend(self.rows);
            print!("{}", cli::render_table(&rows));
        }
    }
}

/// A finding for a VM (or the whole store, `-`) that is not looked at now.
fn busy(name: &str, observed: &str) -> Finding {
    Finding {
        name: name.into(),
        kind: "busy",
        observed: observed.into(),
        act: Act::Person,
        reason: "nothing was done; it is looked at again on the next run".into(),
        gc: false,
        person: false,
    }
}

/// When this host started, as RFC 3339 (`btime` in /proc/stat).
fn booted_at() -> Option<String> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    let secs = text
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    Some(record::rfc3339(secs))
}

struct Run<'a> {
    opts: Opts,
    cx: Context,
    doer: act::Doer<'a>,
    out: Out,
}

impl Run<'_> {
    /// Acts on `f` when the options allow it, and reports it.
    fn settle(&mut self, f: &Finding, lock: Option<&banger::store::Lock>) {
        if f.act == Act::Person {
            self.out.emit(f, Outcome::Reported, None);
        } else if !self.opts.apply || (f.gc && !self.opts.gc) {
            self.out.emit(f, Outcome::Planned, None);
        } else {
            match self.doer.act(f, lock) {
                Ok(()) => self.out.emit(f, Outcome::Done, None),
                // A shared entry (the bridge, the table) that a `banger-net up` made between
                // the scan and the drop: the helper looked again under the net lock and
                // found it there. Nothing was wrong by then.
                Err(e)
                    if f.name == "-"
                        && matches!(f.act, Act::Drop { .. })
                        && e.code() == banger::proto::code::CONFLICT =>
                {
                    let f = busy(
                        "-",
                        &format!("{} (made meanwhile: {})", f.observed, cli::one_line(&e)),
                    );
                    self.out.emit(&f, Outcome::Skipped, None);
                }
                Err(e) => {
                    eprintln!("{BIN}: error: {}: {}", f.name, cli::one_line(&e));
                    self.out.emit(f, Outcome::Failed, Some(&e));
                }
            }
        }
    }

    /// One VM with findings: locked (or skipped while a step holds it), looked at again
    /// under the lock, then settled.
    fn vm(&mut self, name: &str) {
        let lock = match self.doer.store.try_lock_vm(name) {
            Ok(Some(l)) => l,
            Ok(None) => {
                let f = busy(
                    name,
                    &format!("a step is working on {name} (it holds its lock)"),
                );
                self.out.emit(&f, Outcome::Skipped, None);
                return;
            }
            Err(e) => {
                eprintln!("{BIN}: error: {name}: {}", cli::one_line(&e));
                self.out.unresolved = true;
                return;
            }
        };
        let v = match view::one(self.doer.cfg, self.doer.store, self.doer.helper, name) {
            Ok(v) => v,
            Err(e) => {
                cli::report(BIN, &e);
                self.out.unresolved = true;
                return;
            }
        };
        for f in judge::judge(&v, &self.cx) {
            self.settle(&f, Some(&lock));
        }
    }

    /// `--boot`: every VM whose spec says autostart and that does not run, brought up
    /// through the usual pipeline (`direct` when it was launched that way before).
    fn autostart(&mut self, direct: &BTreeMap<String, bool>) {
        let recs = match self.doer.store.list() {
            Ok(r) => r,
            Err(e) => {
                cli::report(BIN, &e);
                self.out.unresolved = true;
                return;
            }
        };
        for r in recs {
            let name = record::name(&r).unwrap_or_default().to_string();
            let auto = section::get::<Spec>(&r)
                .ok()
                .flatten()
                .and_then(|s| s.autostart)
                == Some(true);
            let runs = r.get("jail").is_some_and(|j| !j.is_null())
                && view::live_of(&name, &r).fc.is_some();
            if auto && !runs {
                let f = judge::autostart(&name, direct.get(&name).copied().unwrap_or(false));
                self.settle(&f, None);
            }
        }
    }
}

fn main() -> ExitCode {
    let opts = match parse_args() {
        Ok(o) => o,
        Err(e) => return TOOL.usage_error(&e),
    };
    let (cfg, store) = match step::setup(BIN) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let helper = Helper::new(&cfg, Some(banger_helper::local));
    let mut out = Out {
        table: opts.table,
        w: Writer::stdout(),
        rows: Vec::new(),
        unresolved: false,
    };
    let _run_lock = match store.lock_reconcile(opts.wait) {
        Ok(Some(l)) => l,
        Ok(None) => {
            let f = busy("-", "another banger-reconcile is running");
            out.emit(&f, Outcome::Skipped, None);
            out.finish();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            cli::report(BIN, &e);
            return ExitCode::from(cli::EXIT_FAILURE);
        }
    };
    let snap = match view::snapshot(&cfg, &store, &helper) {
        Ok(s) => s,
        Err(e) => {
            cli::report(BIN, &e);
            return ExitCode::from(cli::EXIT_FAILURE);
        }
    };
    let mut run = Run {
        opts,
        cx: Context {
            booted_at: booted_at(),
        },
        doer: act::Doer {
            cfg: &cfg,
            store: &store,
            helper: &helper,
        },
        out,
    };
    // The bridge and the table first: a VM's network is released after them.
    for f in judge::judge_shared(&snap.shared) {
        run.settle(&f, None);
    }
    let direct: BTreeMap<String, bool> = snap
        .views
        .iter()
        .filter_map(|v| {
            Some((
                v.name.clone(),
                v.jail()?.launcher.as_deref() == Some("direct"),
            ))
        })
        .collect();
    for v in &snap.views {
        if !judge::judge(v, &run.cx).is_empty() {
            run.vm(&v.name);
        }
    }
    for f in judge::judge_strays(&snap.strays) {
        run.settle(&f, None);
    }
    if opts.boot {
        run.autostart(&direct);
    }
    let unresolved = run.out.unresolved;
    run.out.finish();
    ExitCode::from(if unresolved {
        cli::EXIT_FAILURE
    } else {
        cli::EXIT_OK
    })
}
