//! banger-image: the image store (`build`, `import`, `pull`, `list`, `rm`).

mod check;
mod debian;
mod import;
mod pull;
mod store;
mod warm;

use banger::cli::{self, Command, Flag, Tool};
use banger::record::{Record, Writer};
use std::path::PathBuf;
use std::process::ExitCode;

pub const BIN: &str = "banger-image";

const BOOT_ARGS: Flag = Flag {
    long: "boot-args",
    short: None,
    value: Some("ARGS"),
    help:
        "the kernel command line the image needs (default: console=ttyS0 reboot=k panic=1 pci=off)",
};
const KERNEL: Flag = Flag {
    long: "kernel",
    short: Some('k'),
    value: Some("FILE"),
    help: "the guest kernel: an uncompressed ELF vmlinux",
};
const INITRD: Flag = Flag {
    long: "initrd",
    short: None,
    value: Some("FILE"),
    help: "an initrd for the kernel (optional)",
};

const JSON: Flag = Flag {
    long: "json",
    short: None,
    value: None,
    help: "print the image's record (JSON) even on a terminal",
};

const IMPORT_FLAGS: &[Flag] = &[
    Flag {
        long: "rootfs",
        short: Some('r'),
        value: Some("FILE"),
        help: "the root filesystem: an ext4 image (required)",
    },
    KERNEL,
    INITRD,
    BOOT_ARGS,
    JSON,
];

const BUILD_FLAGS: &[Flag] = &[
    Flag {
        long: "from-dir",
        short: None,
        value: Some("DIR"),
        help: "make the rootfs from the tree DIR (mkfs.ext4 -d, no mount); needs --kernel",
    },
    Flag {
        long: "debian",
        short: None,
        value: Some("SUITE"),
        help: "debootstrap SUITE (e.g. bookworm) with sshd, iproute2 and the distribution's kernel (root)",
    },
    Flag {
        long: "packages",
        short: None,
        value: Some("A,B"),
        help: "extra packages for --debian",
    },
    Flag {
        long: "mirror",
        short: None,
        value: Some("URL"),
        help: "the Debian mirror for --debian (default: the host's apt source)",
    },
    Flag {
        long: "size",
        short: None,
        value: Some("SIZE"),
        help: "the rootfs size (default: the content plus 30% and 64M of headroom)",
    },
    Flag {
        long: "no-agent",
        short: None,
        value: None,
        help: "do not install the guest agent in a --debian image",
    },
    KERNEL,
    INITRD,
    BOOT_ARGS,
    JSON,
];

const PULL_FLAGS: &[Flag] = &[
    Flag {
        long: "sha256",
        short: None,
        value: Some("HEX"),
        help: "the download's sha256 (required; checked before the image becomes visible)",
    },
    Flag {
        long: "kernel",
        short: Some('k'),
        value: Some("FILE"),
        help: "the kernel, when URL serves a bare ext4 image or an archive without vmlinux",
    },
    INITRD,
    BOOT_ARGS,
    JSON,
];

const WARM_FLAGS: &[Flag] = &[
    Flag {
        long: "vcpus",
        short: None,
        value: Some("N"),
        help: "the warm VM's virtual CPUs, which every VM started from it has (default 1)",
    },
    Flag {
        long: "mem",
        short: None,
        value: Some("MIB"),
        help: "the warm VM's memory in MiB, which every VM started from it has (default 512)",
    },
    Flag {
        long: "timeout",
        short: None,
        value: Some("SECS"),
        help: "give up waiting for the guest after SECS (default 900)",
    },
    Flag {
        long: "wait",
        short: None,
        value: Some("WHAT"),
        help: "snapshot once this says the guest is up: agent (default), ssh or console:TEXT (for services that start after the agent)",
    },
    JSON,
];

const RM_FLAGS: &[Flag] = &[Flag {
    long: "warm",
    short: None,
    value: None,
    help: "remove only the images' warm artifacts (their booted snapshots)",
}];

const LIST_FLAGS: &[Flag] = &[Flag {
    long: "table",
    short: Some('t'),
    value: None,
    help: "a table for people instead of JSON lines",
}];

pub const TOOL: Tool = Tool {
    name: BIN,
    about: "the image store: root filesystems and kernels for VMs",
    commands: &[
        Command {
            name: "import",
            args: "IMAGE",
            about: "add an image from an ext4 rootfs and an ELF vmlinux",
            flags: IMPORT_FLAGS,
        },
        Command {
            name: "build",
            args: "IMAGE",
            about: "build an image from a directory tree or from Debian packages",
            flags: BUILD_FLAGS,
        },
        Command {
            name: "pull",
            args: "IMAGE URL",
            about: "download an image (https, file:// or a path), verified by sha256",
            flags: PULL_FLAGS,
        },
        Command {
            name: "warm",
            args: "IMAGE",
            about: "boot the image once and keep its booted snapshot: banger up then starts VMs from it",
            flags: WARM_FLAGS,
        },
        Command {
            name: "list",
            args: "",
            about: "print every image's record (image.json), with whether it is warm",
            flags: LIST_FLAGS,
        },
        Command {
            name: "rm",
            args: "IMAGE...",
            about: "remove images no VM's disk was made from (--warm: only their warm artifacts)",
            flags: RM_FLAGS,
        },
    ],
    main: None,
    footer: "Images live in $BANGER_STATE_DIR/images/NAME: rootfs.ext4, vmlinux, initrd (optional), image.json.\n\
pull takes a tar archive of rootfs.ext4 + vmlinux [+ initrd, image.json], or a bare ext4 image with --kernel.\n\
warm keeps images/NAME/warm/: vmstate, memory, disk.ext4 and warm.json (sha256s, the Firecracker version).\n\
Environment: BANGER_STATE_DIR, BANGER_CONFIG_DIR (see banger(7)).",
    internal: false,
};

#[derive(Default)]
struct Opts {
    rootfs: Option<PathBuf>,
    kernel: Option<PathBuf>,
    initrd: Option<PathBuf>,
    boot_args: Option<String>,
    from_dir: Option<PathBuf>,
    debian: Option<String>,
    packages: Vec<String>,
    mirror: Option<String>,
    size: Option<u64>,
    sha256: Option<String>,
    table: bool,
    json: bool,
    no_agent: bool,
    vcpus: Option<u32>,
    mem: Option<u32>,
    timeout: Option<u64>,
    wait: Option<String>,
    warm: bool,
}

struct Args {
    sub: String,
    pos: Vec<String>,
    o: Opts,
}

fn parse_args() -> Result<Args, lexopt::Error> {
    use lexopt::prelude::*;
    let mut p = lexopt::Parser::from_env();
    let sub = TOOL.subcommand(&mut p)?;
    let mut o = Opts::default();
    let mut pos = Vec::new();
    while let Some(arg) = p.next()? {
        match (sub.as_str(), arg) {
            (_, Short('h') | Long("help")) => TOOL.exit_help(Some(&sub)),
            (_, Short('V') | Long("version")) => TOOL.exit_version(),
            ("import", Short('r') | Long("rootfs")) => o.rootfs = Some(p.value()?.into()),
            ("import" | "build" | "pull", Short('k') | Long("kernel")) => {
                o.kernel = Some(p.value()?.into())
            }
            ("import" | "build" | "pull", Long("initrd")) => o.initrd = Some(p.value()?.into()),
            ("import" | "build" | "pull", Long("boot-args")) => {
                o.boot_args = Some(p.value()?.string()?)
            }
            ("build", Long("from-dir")) => o.from_dir = Some(p.value()?.into()),
            ("build", Long("debian")) => o.debian = Some(p.value()?.string()?),
            ("build", Long("packages")) => {
                for pkg in p.value()?.string()?.split(',').filter(|s| !s.is_empty()) {
                    if !pkg
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"+-.:".contains(&b))
                    {
                        return Err(format!("--packages: {pkg:?} is not a package name").into());
                    }
                    o.packages.push(pkg.to_string());
                }
            }
            ("build", Long("mirror")) => o.mirror = Some(p.value()?.string()?),
            ("build", Long("no-agent")) => o.no_agent = true,
            ("build", Long("size")) => {
                let v = p.value()?.string()?;
                o.size = Some(cli::parse_size(&v).map_err(|e| format!("--size: {e}"))?);
            }
            ("pull", Long("sha256")) => o.sha256 = Some(p.value()?.string()?),
            ("list", Short('t') | Long("table")) => o.table = true,
            ("import" | "build" | "pull" | "warm", Long("json")) => o.json = true,
            ("warm", Long("vcpus")) => {
                let n: u32 = p.value()?.parse()?;
                if !(1..=32).contains(&n) {
                    return Err(format!("--vcpus {n}: use 1-32").into());
                }
                o.vcpus = Some(n);
            }
            ("warm", Long("mem")) => {
                let n: u32 = p.value()?.parse()?;
                if n < 64 {
                    return Err(format!("--mem {n}: at least 64 MiB").into());
                }
                o.mem = Some(n);
            }
            ("warm", Long("timeout")) => o.timeout = Some(p.value()?.parse()?),
            ("warm", Long("wait")) => {
                let w = p.value()?.string()?;
                if !(w == "agent"
                    || w == "ssh"
                    || w.strip_prefix("console:").is_some_and(|t| !t.is_empty()))
                {
                    return Err(format!("--wait {w:?}: expected agent, ssh or console:TEXT").into());
                }
                o.wait = Some(w);
            }
            ("rm", Long("warm")) => o.warm = true,
            ("import" | "build" | "pull" | "rm" | "warm", Value(v)) => pos.push(v.string()?),
            (_, arg) => return Err(arg.unexpected()),
        }
    }
    let one_name = |pos: &[String]| -> Result<(), lexopt::Error> {
        match pos.len() {
            1 => Ok(()),
            0 => Err(format!("{sub}: missing IMAGE (the new image's name)").into()),
            _ => Err(format!("{sub}: takes one IMAGE").into()),
        }
    };
    match sub.as_str() {
        "import" => {
            one_name(&pos)?;
            if o.rootfs.is_none() || o.kernel.is_none() {
                return Err("import: --rootfs FILE and --kernel FILE are required".into());
            }
        }
        "build" => {
            one_name(&pos)?;
            match (&o.from_dir, &o.debian) {
                (Some(_), Some(_)) => {
                    return Err("build: give --from-dir DIR or --debian SUITE, not both".into())
                }
                (None, None) => {
                    return Err(
                        "build: give --from-dir DIR (with --kernel FILE) or --debian SUITE".into(),
                    )
                }
                (Some(_), None) if o.kernel.is_none() => {
                    return Err(
                        "build --from-dir: --kernel FILE is required (an image needs a kernel)"
                            .into(),
                    )
                }
                _ => {}
            }
            if o.debian.is_none() && (!o.packages.is_empty() || o.mirror.is_some()) {
                return Err("build: --packages and --mirror go with --debian".into());
            }
        }
        "pull" => {
            if pos.len() != 2 {
                return Err("pull: takes IMAGE and URL".into());
            }
            match &o.sha256 {
                None => return Err("pull: --sha256 HEX is required".into()),
                Some(s) => {
                    pull::parse_sha256(s).map_err(|e| format!("--sha256: {e}"))?;
                }
            }
        }
        "rm" if pos.is_empty() => return Err("rm: missing IMAGE".into()),
        "warm" => match pos.len() {
            1 => {}
            0 => return Err("warm: missing IMAGE".into()),
            _ => return Err("warm: takes one IMAGE".into()),
        },
        _ => {}
    }
    if let Some(b) = &o.boot_args {
        if b.contains('\n') || b.len() > 2048 {
            return Err("--boot-args: one line of at most 2048 bytes".into());
        }
    }
    Ok(Args { sub, pos, o })
}

fn emit(rec: &Record) -> ExitCode {
    match Writer::stdout().emit(rec) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            cli::report(BIN, &e);
            ExitCode::from(cli::EXIT_FAILURE)
        }
    }
}

/// An image for people: its name, sizes, source, and how to boot it.
fn summary(r: &Record) -> String {
    let name = field(r, &["name"]);
    let size = r
        .get("files")
        .and_then(|f| f["rootfs.ext4"]["size"].as_u64())
        .map_or_else(|| "?".into(), |b| format!("{}", b >> 20));
    let initrd = r.get("files").is_some_and(|f| f.get("initrd").is_some());
    let mut source = field(r, &["source", "kind"]);
    if let Some(suite) = r.get("source").and_then(|s| s["suite"].as_str()) {
        source.push(' ');
        source.push_str(suite);
    }
    format!(
        "image {name}: a {size} MiB root filesystem and a kernel{} (from {source})\n  boot it: banger up NAME --image {name}",
        if initrd { " with an initrd" } else { "" }
    )
}

fn done(r: Result<Record, import::ImageError>, json: bool) -> ExitCode {
    match r {
        Ok(rec) if banger::porcelain::Output::detect(json) == banger::porcelain::Output::People => {
            println!("{}", summary(&rec));
            ExitCode::SUCCESS
        }
        Ok(rec) => emit(&rec),
        Err(e) => {
            cli::report(BIN, &e);
            ExitCode::from(cli::EXIT_FAILURE)
        }
    }
}

fn field(r: &Record, path: &[&str]) -> String {
    let mut v = &serde_json::Value::Object(r.clone());
    for p in path {
        v = &v[*p];
    }
    match v {
        serde_json::Value::Null => "-".into(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn table(recs: &[Record]) -> String {
    let mut rows = vec![["NAME", "SIZE", "INITRD", "SOURCE", "WARM", "CREATED"]
        .map(String::from)
        .to_vec()];
    for r in recs {
        let size = r
            .get("files")
            .and_then(|f| f["rootfs.ext4"]["size"].as_u64())
            .map(|b| format!("{}M", b >> 20))
            .unwrap_or_else(|| "-".into());
        let initrd = if r.get("files").is_some_and(|f| f.get("initrd").is_some()) {
            "yes"
        } else {
            "no"
        };
        rows.push(vec![
            field(r, &["name"]),
            size,
            initrd.into(),
            field(r, &["source", "kind"]),
            r.get("warm")
                .and_then(|w| w["state"].as_str())
                .unwrap_or("no")
                .to_string(),
            field(r, &["created_at"]),
        ]);
    }
    banger::cli::render_table(&rows)
}

fn main() -> ExitCode {
    let a = match parse_args() {
        Ok(a) => a,
        Err(e) => return TOOL.usage_error(&e),
    };
    let (cfg, vm_store) = match banger::step::setup(BIN) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let boot_args =
        a.o.boot_args
            .clone()
            .unwrap_or_else(|| store::DEFAULT_BOOT_ARGS.into());
    let images = store::Images::new(&cfg);
    match a.sub.as_str() {
        "import" => done(
            import::import(
                &cfg,
                &import::ImportArgs {
                    name: &a.pos[0],
                    rootfs: a.o.rootfs.as_deref().unwrap_or(std::path::Path::new("")),
                    kernel: a.o.kernel.as_deref().unwrap_or(std::path::Path::new("")),
                    initrd: a.o.initrd.as_deref(),
                    boot_args: &boot_args,
                },
            ),
            a.o.json,
        ),
        "build" => match (&a.o.from_dir, &a.o.debian) {
            (Some(dir), _) => done(
                import::build_from_dir(
                    &cfg,
                    &import::FromDirArgs {
                        name: &a.pos[0],
                        dir,
                        kernel: a.o.kernel.as_deref().unwrap_or(std::path::Path::new("")),
                        initrd: a.o.initrd.as_deref(),
                        size: a.o.size,
                        boot_args: &boot_args,
                    },
                ),
                a.o.json,
            ),
            (None, Some(suite)) => done(
                debian::build(
                    &cfg,
                    &debian::DebianArgs {
                        name: &a.pos[0],
                        suite,
                        packages: &a.o.packages,
                        mirror: a.o.mirror.as_deref(),
                        size: a.o.size,
                        boot_args: a.o.boot_args.as_deref(),
                        agent: !a.o.no_agent,
                    },
                ),
                a.o.json,
            ),
            (None, None) => TOOL.usage_error(&"build: give --from-dir or --debian"),
        },
        "pull" => done(
            pull::pull(
                &cfg,
                &pull::PullArgs {
                    name: &a.pos[0],
                    url: &a.pos[1],
                    sha256: a.o.sha256.as_deref().unwrap_or(""),
                    kernel: a.o.kernel.as_deref(),
                    initrd: a.o.initrd.as_deref(),
                    boot_args: a.o.boot_args.as_deref(),
                },
            ),
            a.o.json,
        ),
        "warm" => {
            let r = warm::warm(
                &cfg,
                &images,
                &vm_store,
                &warm::WarmArgs {
                    name: &a.pos[0],
                    vcpus: a.o.vcpus.unwrap_or(1),
                    mem_mib: a.o.mem.unwrap_or(512),
                    timeout: a.o.timeout.unwrap_or(900),
                    wait: a.o.wait.as_deref().unwrap_or("agent"),
                },
            );
            match r {
                Ok(rec)
                    if banger::porcelain::Output::detect(a.o.json)
                        == banger::porcelain::Output::People =>
                {
                    println!(
                        "image {}: warm (snapshot of a booted guest, Firecracker {}); banger up NAME --image {} starts from it, --cold boots",
                        a.pos[0],
                        rec.get("warm")
                            .and_then(|w| w["firecracker_version"].as_str())
                            .unwrap_or("?"),
                        a.pos[0]
                    );
                    ExitCode::SUCCESS
                }
                Ok(rec) => emit(&rec),
                Err(e) => {
                    cli::report(BIN, &e);
                    eprintln!("{BIN}: the image's earlier warm artifacts, if any, are unchanged; once fixed, run: banger-image warm {}", a.pos[0]);
                    ExitCode::from(cli::EXIT_FAILURE)
                }
            }
        }
        "list" => match images.list().map(|mut recs| {
            let version = banger::preflight::launchers(&cfg)
                .ok()
                .and_then(|l| l.firecracker)
                .and_then(|p| banger::warm::binary_version(&p).ok());
            for r in &mut recs {
                warm::annotate(&cfg, r, version.as_deref());
            }
            recs
        }) {
            Ok(recs) if a.o.table => {
                print!("{}", table(&recs));
                ExitCode::SUCCESS
            }
            Ok(recs) => {
                let mut w = Writer::stdout();
                for r in &recs {
                    if let Err(e) = w.emit(r) {
                        cli::report(BIN, &e);
                        return ExitCode::from(cli::EXIT_FAILURE);
                    }
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                cli::report(BIN, &e);
                ExitCode::from(cli::EXIT_FAILURE)
            }
        },
        _ => {
            let mut failed = false;
            let people =
                banger::porcelain::Output::detect(false) == banger::porcelain::Output::People;
            for n in &a.pos {
                if a.o.warm {
                    match warm::remove(&cfg, &images, n) {
                        Ok(true) if people => println!("image {n}: warm artifacts removed"),
                        Ok(false) if people => println!("image {n}: was not warm"),
                        Ok(_) => {}
                        Err(e) => {
                            cli::report(BIN, &e);
                            failed = true;
                        }
                    }
                    continue;
                }
                match images.remove(n, &vm_store) {
                    Ok(()) if people => println!("image {n}: removed"),
                    Ok(()) => {}
                    Err(e) => {
                        cli::report(BIN, &e);
                        failed = true;
                    }
                }
            }
            ExitCode::from(if failed {
                cli::EXIT_FAILURE
            } else {
                cli::EXIT_OK
            })
        }
    }
}
