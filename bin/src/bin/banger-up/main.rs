//! banger up NAME: create a VM (or pick up an existing one) and start it. The whole pipeline:
//!
//! ```text
//! banger-vm new NAME --exists-ok ... | banger-net up | banger-snap create \
//!   | banger-jail launch | banger-vm start
//! ```
//!
//! Before any step runs, it checks what the later ones need (the image, `/dev/kvm`,
//! Firecracker and the jailer as the root helper will see them), so a missing piece is
//! reported while nothing on the host has changed yet. A failure ends with the two next
//! steps: fix and run it again (every step picks up what was done), or undo it all.

use banger::cli::{self, Command, Flag, Tool};
use banger::config::Config;
use banger::porcelain::{self, Output, Stage};
use banger::preflight::{self, Problem};
use banger::record::{self, Record};
use banger::section::{self, Spec};
use banger::store::{Store, StoreError};
use std::ffi::OsString;
use std::process::ExitCode;

const BIN: &str = "banger up";

const FLAGS: &[Flag] = &[
    Flag {
        long: "image",
        short: Some('i'),
        value: Some("IMAGE"),
        help: "the image of a new VM (default: default)",
    },
    Flag {
        long: "vcpus",
        short: None,
        value: Some("N"),
        help: "a new VM's virtual CPUs, 1-32 (default 1)",
    },
    Flag {
        long: "mem",
        short: None,
        value: Some("MIB"),
        help: "a new VM's memory in MiB (default 512)",
    },
    Flag {
        long: "disk-size",
        short: None,
        value: Some("SIZE"),
        help: "grow a new VM's root disk to SIZE (e.g. 10G)",
    },
    Flag {
        long: "ssh-key",
        short: None,
        value: Some("FILE"),
        help: "public key for root in a new VM's guest (default: banger's own)",
    },
    Flag {
        long: "no-agent",
        short: None,
        value: None,
        help: "do not write the guest agent into the disk",
    },
    Flag {
        long: "cold",
        short: None,
        value: None,
        help: "boot a new VM even when its image is warm (default: start it from the warm snapshot)",
    },
    Flag {
        long: "wait",
        short: None,
        value: Some("WHAT"),
        help: "ready when: agent, ssh, console:TEXT or none (default: agent when the VM has one, else ssh)",
    },
    Flag {
        long: "wait-console",
        short: None,
        value: Some("TEXT"),
        help: "same as --wait console:TEXT",
    },
    Flag {
        long: "no-wait",
        short: None,
        value: None,
        help: "same as --wait none: return right after InstanceStart",
    },
    Flag {
        long: "timeout",
        short: None,
        value: Some("SECS"),
        help: "give up waiting for the guest after SECS (default 300)",
    },
    Flag {
        long: "launcher",
        short: Some('l'),
        value: Some("KIND"),
        help: "jailer (default) or direct (no jailer; less isolated)",
    },
    Flag {
        long: "timing",
        short: None,
        value: None,
        help: "print where each step's time went on stderr (BANGER_TIMING=1)",
    },
    Flag {
        long: "json",
        short: None,
        value: None,
        help: "print the record (JSON) even on a terminal",
    },
];

const MAIN: Command = Command {
    name: "",
    args: "NAME",
    about: "create the VM NAME (or pick up the one there is) and start it",
    flags: FLAGS,
};

const TOOL: Tool = Tool {
    name: "banger-up",
    about: "create a VM (or pick up an existing one) and start it: the whole pipeline",
    commands: &[],
    main: Some(&MAIN),
    footer: "The pipeline it runs (read it, or type it yourself):\n  \
banger-vm new NAME --exists-ok ... | banger-net up | banger-snap create | banger-jail launch | banger-vm start\n\
A new VM of a warm image (banger-image warm) starts from its booted snapshot; --cold boots it.\n\
First it checks the image, /dev/kvm, and Firecracker and the jailer as the root helper will see them.\n\
On a terminal it prints a summary; piped, or with --json, the record. See banger-up(1).",
    internal: false,
};

struct Args {
    name: String,
    image: Option<String>,
    new: Vec<OsString>,
    start: Vec<OsString>,
    snap: Vec<OsString>,
    launch: Vec<OsString>,
    direct: bool,
    cold: bool,
    timing: bool,
    json: bool,
    /// The spec flags given, for "ignoring" when the VM exists: (flag, value).
    given: Vec<(&'static str, String)>,
}

fn parse_args() -> Result<Args, lexopt::Error> {
    use lexopt::prelude::*;
    let mut p = lexopt::Parser::from_env();
    let mut a = Args {
        name: String::new(),
        image: None,
        new: Vec::new(),
        start: Vec::new(),
        snap: Vec::new(),
        launch: Vec::new(),
        direct: false,
        cold: false,
        timing: false,
        json: false,
        given: Vec::new(),
    };
    let mut names: Vec<String> = Vec::new();
    while let Some(arg) = p.next()? {
        match arg {
            Short('h') | Long("help") => TOOL.exit_help(None),
            Short('V') | Long("version") => TOOL.exit_version(),
            Short('i') | Long("image") => {
                let v = p.value()?.string()?;
                a.given.push(("--image", v.clone()));
                a.image = Some(v);
            }
            Long(f @ ("vcpus" | "mem" | "disk-size" | "ssh-key")) => {
                let flag: &'static str = match f {
                    "vcpus" => "--vcpus",
                    "mem" => "--mem",
                    "disk-size" => "--disk-size",
                    _ => "--ssh-key",
                };
                let v = p.value()?.string()?;
                a.new.extend([flag.into(), v.clone().into()]);
                a.given.push((flag, v));
            }
            Long(f @ ("wait" | "wait-console")) => {
                let flag = if f == "wait" {
                    "--wait"
                } else {
                    "--wait-console"
                };
                a.start.extend([flag.into(), p.value()?]);
            }
            Long("no-agent") => a.snap.push("--no-agent".into()),
            Long("cold") => a.cold = true,
            Long("timeout") => {
                a.start.extend(["--timeout".into(), p.value()?]);
            }
            Long("no-wait") => a.start.push("--no-wait".into()),
            Short('l') | Long("launcher") => {
                let v = p.value()?.string()?;
                if v != "jailer" && v != "direct" {
                    return Err(format!("--launcher {v:?}: expected jailer or direct").into());
                }
                a.direct = v == "direct";
                a.launch.extend(["--launcher".into(), v.into()]);
            }
            Long("timing") => a.timing = true,
            Long("json") => a.json = true,
            Value(v) => names.push(v.string()?),
            _ => return Err(arg.unexpected()),
        }
    }
    a.name = match names.as_slice() {
        [n] => n.clone(),
        [] => return Err("missing NAME".into()),
        _ => return Err("one NAME only (banger up makes one VM at a time)".into()),
    };
    if !banger::store::valid_name(&a.name) {
        return Err(format!(
            "invalid VM name {:?}: use 1-32 characters a-z, 0-9 and '-', starting with a letter",
            a.name
        )
        .into());
    }
    Ok(a)
}

/// What the steps will need, checked before the first one runs. `existing` is the stored
/// record, if the VM exists.
fn preflight(cfg: &Config, a: &Args, existing: Option<&Record>) -> Result<(), Problem> {
    let running = existing.is_some_and(|r| banger::find_pid::find_for_record(r).is_some());
    if running {
        return Ok(());
    }
    let spec = existing
        .and_then(|r| section::get::<Spec>(r).ok().flatten())
        .unwrap_or_default();
    let image = spec
        .image
        .or_else(|| a.image.clone())
        .unwrap_or_else(|| "default".into());
    let needs_disk = existing.is_none_or(|r| !r.contains_key("snap"));
    preflight::image(cfg, &image, needs_disk)?;
    if needs_disk && !a.cold {
        warm_preflight(cfg, a, &image, existing)?;
    }
    preflight::kvm(cfg, a.direct)?;
    preflight::binaries(cfg, a.direct)
}

/// A new VM of a warm image starts from its snapshot: the artifacts must be whole, made by
/// the Firecracker that will load them, for the machine asked for, with the jailer.
fn warm_preflight(
    cfg: &Config,
    a: &Args,
    image: &str,
    existing: Option<&Record>,
) -> Result<(), Problem> {
    let next = format!(
        "banger-image warm {image} (again), or banger up {} --cold",
        a.name
    );
    let problem = |e: banger::warm::WarmError| Problem::new(cli::one_line(&e), next.clone());
    let Some(meta) = banger::warm::load(cfg, image).map_err(problem)? else {
        return Ok(());
    };
    if a.direct {
        return Err(Problem::new(
            format!("image {image:?} is warm, and a warm start needs the jailer (Firecracker reopens the disk where the snapshot had it)"),
            format!("drop --launcher direct, or boot it with: banger up {} --cold --launcher direct", a.name),
        ));
    }
    banger::warm::check_files(cfg, &meta).map_err(problem)?;
    if let Some(fc) = preflight::launchers(cfg).ok().and_then(|l| l.firecracker) {
        let have = banger::warm::binary_version(&fc).map_err(problem)?;
        banger::warm::check_version(&meta, &have).map_err(problem)?;
    }
    let spec = existing
        .and_then(|r| section::get::<Spec>(r).ok().flatten())
        .unwrap_or_default();
    let given = |flag: &str| {
        a.given
            .iter()
            .find(|(f, _)| *f == flag)
            .and_then(|(_, v)| v.parse::<u32>().ok())
    };
    let vcpus = spec.vcpus.or_else(|| given("--vcpus")).unwrap_or(1);
    let mem = spec.mem_mib.or_else(|| given("--mem")).unwrap_or(512);
    banger::warm::check_shape(&meta, vcpus, mem).map_err(problem)?;
    if a.given.iter().any(|(f, _)| *f == "--disk-size") {
        return Err(Problem::new(
            format!("image {image:?} is warm: a VM started from its snapshot keeps the snapshot's disk size"),
            format!("drop --disk-size, or boot it with: banger up {} --cold --disk-size ...", a.name),
        ));
    }
    Ok(())
}

/// Says which of the given spec flags an existing VM ignores (its spec is kept).
fn note_ignored(name: &str, rec: &Record, given: &[(&'static str, String)]) {
    let spec = section::get::<Spec>(rec).ok().flatten().unwrap_or_default();
    let differs: Vec<String> = given
        .iter()
        .filter(|(flag, v)| match *flag {
            "--image" => spec.image.as_deref() != Some(v.as_str()),
            "--vcpus" => spec.vcpus.map(|n| n.to_string()).as_deref() != Some(v.as_str()),
            "--mem" => spec.mem_mib.map(|n| n.to_string()).as_deref() != Some(v.as_str()),
            _ => true,
        })
        .map(|(f, v)| format!("{f} {v}"))
        .collect();
    if !differs.is_empty() {
        eprintln!(
            "{BIN}: {name} exists; ignoring {} (its spec is kept: 'banger rm {name} --yes', then banger up again, to change it)",
            differs.join(" ")
        );
    }
}

fn now_us() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros())
        .unwrap_or(0)
}

/// The two ways on after a failure: fix and run it again, or undo what was done.
fn next_steps(name: &str, made: bool) {
    eprintln!("{BIN}: next, either:");
    eprintln!("  fix what is said above, then run again: banger up {name}   (every step picks up what was done)");
    if made {
        eprintln!("  or undo everything banger up made for {name}: banger rm {name} --yes");
    } else {
        eprintln!("  (nothing was made for {name}, so there is nothing to undo)");
    }
}

fn main() -> ExitCode {
    let a = match parse_args() {
        Ok(a) => a,
        Err(e) => return TOOL.usage_error(&e),
    };
    let out = Output::detect(a.json);
    let cfg = match Config::load() {
        Ok(c) => c,
        Err(e) => {
            cli::report(BIN, &e);
            return ExitCode::from(cli::EXIT_FAILURE);
        }
    };
    let store = Store::from_config(&cfg);
    let name = a.name.as_str();
    let existing = match store.load(name) {
        Ok(r) => Some(r),
        Err(StoreError::NotFound { .. }) => None,
        // Only the unfinished write of a first record: another `banger up` of this name is
        // making it right now, or one was killed while it did. `banger-vm new --exists-ok`
        // sorts out which under the VM's lock; to this check it is a VM not made yet.
        Err(StoreError::Damaged { .. }) if store.only_unfinished_new(name) => None,
        Err(e) => {
            cli::report(BIN, &e);
            eprintln!("{BIN}: nothing was changed; 'banger rm --force {name} --yes' removes a damaged VM and releases what it held");
            return ExitCode::from(cli::EXIT_FAILURE);
        }
    };
    if let Some(r) = &existing {
        note_ignored(name, r, &a.given);
    }
    if let Err(p) = preflight(&cfg, &a, existing.as_ref()) {
        p.print(BIN, name);
        eprintln!(
            "{BIN}: nothing was changed on this host; once that is fixed, run: banger up {name}"
        );
        return ExitCode::from(cli::EXIT_FAILURE);
    }

    let start = now_us();
    // For the warm start's boot_ms: banger up to the agent's first answer.
    std::env::set_var("BANGER_UP_T0_US", start.to_string());
    if a.timing {
        std::env::set_var("BANGER_TIMING", "1");
        std::env::set_var("BANGER_TIMING_T0", start.to_string());
    }
    let mut new: Vec<OsString> = vec!["new".into(), name.into(), "--exists-ok".into()];
    new.extend([
        "--image".into(),
        a.image.clone().unwrap_or_else(|| "default".into()).into(),
    ]);
    new.extend(a.new.iter().cloned());
    let stages = [
        Stage::new("banger-vm", new),
        Stage::new("banger-net", ["up"]),
        Stage::new(
            "banger-snap",
            std::iter::once(OsString::from("create"))
                .chain(a.snap.iter().cloned())
                .chain(a.cold.then(|| OsString::from("--cold"))),
        ),
        Stage::new(
            "banger-jail",
            std::iter::once(OsString::from("launch")).chain(a.launch.iter().cloned()),
        ),
        Stage::new(
            "banger-vm",
            std::iter::once(OsString::from("start")).chain(a.start.iter().cloned()),
        ),
    ];
    let ran = match porcelain::run(&stages) {
        Ok(r) => r,
        Err(e) => {
            cli::report(BIN, &e);
            next_steps(name, store.exists(name));
            return ExitCode::from(cli::EXIT_FAILURE);
        }
    };
    let ms = (now_us().saturating_sub(start)) / 1000;
    if out == Output::Records {
        porcelain::print_records(&ran.records);
    }
    for l in &ran.other {
        println!("{l}");
    }
    if ran.ok() {
        eprintln!("{BIN}: {name} ready in {ms} ms");
        if out == Output::People {
            for r in &ran.records {
                let n = record::name(r).unwrap_or(name);
                println!("{}", porcelain::summary(r));
                println!("  ssh:      banger vm ssh {n}");
                println!("  console:  banger vm console {n} -f");
                println!(
                    "  stop:     banger down {n}   (the disk stays; banger rm {n} removes it)"
                );
            }
        }
        return ExitCode::SUCCESS;
    }
    let failed = ran.records.iter().find_map(porcelain::error_of);
    match &failed {
        Some((step, msg)) => eprintln!("{BIN}: {name} stopped at the {step} step: {msg}"),
        None => eprintln!(
            "{BIN}: {name} stopped: {} failed",
            ran.failed_step().unwrap_or("a step")
        ),
    }
    // A VM this run made for a warm start that failed is removed whole: a guest that may
    // still carry the warm image's identity is never left behind.
    let warm_failed = ran.records.iter().any(|r| {
        r.get("error")
            .and_then(|e| e["code"].as_str())
            .is_some_and(|c| c.starts_with("warm_"))
            && section::get::<section::Snap>(r)
                .ok()
                .flatten()
                .is_some_and(|s| s.extra.contains_key("warm"))
    });
    if warm_failed && existing.is_none() {
        let rm = [Stage::new("banger-rm", [name, "--yes", "--force"])];
        let removed =
            porcelain::run(&rm).is_ok_and(|r| r.statuses.iter().all(|(_, s)| s.success()));
        if removed {
            eprintln!("{BIN}: removed {name} (nothing of it is left); next: banger up {name} --cold, or banger-image warm IMAGE again");
            return ExitCode::from(cli::EXIT_FAILURE);
        }
    }
    next_steps(name, store.exists(name));
    ExitCode::from(cli::EXIT_FAILURE)
}
