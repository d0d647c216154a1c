//! TEST STAND-IN, not Firecracker: the `firecracker` binary.
//!
//! Takes Firecracker v1.16.1's command line (same flags, same refusals and exit codes), binds
//! the API socket and serves the API with Firecracker's state machine. "Booting" writes
//! `STANDIN_GUEST_READY cmdline=<boot args>` on the serial output; see [`vmm`].
//!
//! Every answered request is appended as one JSON line to `$STANDIN_REQUESTS`, or else to
//! `standin-requests.jsonl` beside the API socket.

pub mod devices;
pub mod logger;
pub mod model;
pub mod router;
pub mod server;
pub mod vmm;

use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::args::{self, Arg, Parsed};
use crate::NOTICE;
use model::{FullConfig, LoggerConfig};
use router::Call;
use server::Shared;
use vmm::{Exit, Vmm, VERSION};

/// Firecracker's default bound on an API request body.
pub const HTTP_MAX_PAYLOAD_SIZE: &str = "51200";

/// Firecracker v1.16.1's flags.
pub const SPEC: &[Arg] = &[
    Arg::value("api-sock", "Path of the unix socket the API is served on.")
        .default("/run/firecracker.socket"),
    Arg::value("id", "Identifier of the microVM.").default("anonymous-instance"),
    Arg::value(
        "seccomp-filter",
        "Custom seccomp filter file (checked for readability only).",
    )
    .forbids(&["no-seccomp"]),
    Arg::flag(
        "no-seccomp",
        "Run without seccomp filters (the stand-in never installs any).",
    )
    .forbids(&["seccomp-filter"]),
    Arg::value(
        "start-time-us",
        "Process start time (wall clock, microseconds).",
    ),
    Arg::value(
        "start-time-cpu-us",
        "Process start CPU time (microseconds).",
    ),
    Arg::value(
        "parent-cpu-time-us",
        "Parent process CPU time (microseconds).",
    ),
    Arg::value(
        "config-file",
        "JSON file with the whole microVM configuration; boots it.",
    ),
    Arg::value("metadata", "JSON file whose content is put into MMDS."),
    Arg::flag("no-api", "Serve no API socket (needs --config-file).").requires("config-file"),
    Arg::value("log-path", "File or FIFO for the log."),
    Arg::value("level", "Log level."),
    Arg::value("module", "Only log lines from this module."),
    Arg::flag("show-level", "Show the level in log lines."),
    Arg::flag(
        "show-log-origin",
        "Show the source file and line in log lines.",
    ),
    Arg::value("metrics-path", "File or FIFO for the metrics."),
    Arg::flag(
        "boot-timer",
        "Load the boot timer device (accepted, no effect).",
    ),
    Arg::flag("version", "Print the version."),
    Arg::flag(
        "snapshot-version",
        "Print the snapshot data format version.",
    ),
    Arg::value(
        "describe-snapshot",
        "Print the data format version of a snapshot file.",
    ),
    Arg::value(
        "http-api-max-payload-size",
        "Largest API request body, in bytes.",
    )
    .default(HTTP_MAX_PAYLOAD_SIZE),
    Arg::value("mmds-size-limit", "Largest MMDS content, in bytes."),
    Arg::flag(
        "enable-pci",
        "Enable PCI (allows device hotplug after start).",
    ),
];

/// Firecracker aborts (panic = "abort") on some bad values; so does the stand-in, without a
/// core dump.
fn abort_like_panic(msg: &str) -> ! {
    eprintln!("thread 'main' panicked: {msg}");
    let none = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `none` is a valid rlimit; lowering RLIMIT_CORE only affects this process.
    unsafe { libc::setrlimit(libc::RLIMIT_CORE, &none) };
    std::process::abort()
}

fn fail(code: u8, debug: &str, display: &str) -> u8 {
    logger::error(display);
    eprintln!("Error: {debug}");
    logger::error(&format!("Firecracker exiting with error. exit_code={code}"));
    code
}

fn number<T: std::str::FromStr>(args: &args::Args, name: &str, kind: &str) -> Option<T> {
    let v = args.value(name)?;
    match v.parse() {
        Ok(n) => Some(n),
        Err(_) => abort_like_panic(&format!(
            "'{name}' parameter expected to be of '{kind}' type."
        )),
    }
}

fn valid_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > 64 {
        return Err(format!("InvalidLen({}, 1, 64)", id.len()));
    }
    match id
        .chars()
        .enumerate()
        .find(|(_, c)| !(*c == '-' || c.is_alphanumeric()))
    {
        Some((i, c)) => Err(format!("InvalidChar({c:?}, {i})")),
        None => Ok(()),
    }
}

/// Where request lines go: `$STANDIN_REQUESTS`, else beside the socket.
pub fn record_path(api_sock: &Path) -> PathBuf {
    if let Some(p) = std::env::var_os("STANDIN_REQUESTS") {
        return PathBuf::from(p);
    }
    match api_sock.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.join("standin-requests.jsonl"),
        _ => PathBuf::from("standin-requests.jsonl"),
    }
}

/// Configures and boots from a `--config-file` document, like Firecracker.
fn boot_from_json(vmm: &mut Vmm, text: &str) -> Result<Option<Exit>, String> {
    let cfg: FullConfig = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let mut calls = Vec::new();
    if let Some(l) = cfg.logger {
        calls.push(Call::PutLogger(l));
    }
    if let Some(m) = cfg.metrics {
        calls.push(Call::PutMetrics(m));
    }
    if let Some(m) = cfg.machine_config {
        calls.push(Call::UpdateMachineConfig(m.into()));
    }
    calls.push(Call::PutBootSource(cfg.boot_source));
    calls.extend(cfg.drives.into_iter().map(Call::PutDrive));
    calls.extend(cfg.network_interfaces.into_iter().map(Call::PutNet));
    calls.extend(cfg.vsock.map(Call::PutVsock));
    calls.extend(cfg.entropy.map(Call::PutEntropy));
    calls.extend(cfg.mmds_config.map(Call::PutMmdsConfig));
    for (name, present) in [
        ("balloon", cfg.balloon.is_some()),
        ("cpu-config", cfg.cpu_config.is_some()),
        ("pmem", !cfg.pmem.is_empty()),
        ("memory-hotplug", cfg.memory_hotplug.is_some()),
    ] {
        if present {
            calls.push(Call::NotImplemented(format!(
                "config-file section {name:?}"
            )));
        }
    }
    calls.push(Call::Action(model::ActionType::InstanceStart));
    let mut exit = None;
    for call in calls {
        let (res, e) = vmm.handle(call);
        res.map_err(|(_, m)| m)?;
        exit = exit.or(e);
    }
    Ok(exit)
}

fn print_help() {
    println!("Firecracker v{VERSION}\n");
    println!("{NOTICE}: serves Firecracker's API for banger's tests; runs no virtual machine.\n");
    println!("{}", args::help(SPEC));
}

/// Runs the stand-in; returns the exit status.
pub fn main() -> u8 {
    let argv: Vec<String> = std::env::args_os()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let args = match args::parse(SPEC, &argv) {
        Ok(Parsed::Help) => {
            print_help();
            return 0;
        }
        Ok(Parsed::Version) => {
            println!("Firecracker v{VERSION}\n\n{NOTICE}");
            return 0;
        }
        Ok(Parsed::Args(a)) => a,
        Err(e) => {
            let display =
                format!("Arguments parsing error: {e} \n\nFor more information try --help.");
            return fail(153, &format!("ParseArguments({e:?})"), &display);
        }
    };
    if args.flag("snapshot-version") {
        println!("v{}", devices::SNAPSHOT_VERSION);
        return 0;
    }
    if let Some(p) = args.value("describe-snapshot") {
        return match devices::read_snapshot(Path::new(p), "state") {
            Ok(s) => {
                println!("v{}", s.snapshot_version);
                0
            }
            Err(m) => fail(1, &format!("PrintSnapshotDataFormat({m:?})"), &m),
        };
    }
    let id = args.value("id").unwrap_or("anonymous-instance").to_string();
    if let Err(e) = valid_id(&id) {
        abort_like_panic(&format!("Invalid instance ID: {e}"));
    }
    logger::set_id(&id);
    let level = match args.value("level").map(|l| (l, model::Level::parse(l))) {
        Some((l, None)) => {
            let display = format!(
                "Invalid value for logger level: Failed to parse string to level filter: {l}.\
                 Possible values: [Error, Warning, Info, Debug]"
            );
            return fail(
                152,
                &format!("InvalidLogLevel(LevelFilterFromStrError({l:?}))"),
                &display,
            );
        }
        Some((_, level)) => level,
        None => None,
    };
    let log_cfg = LoggerConfig {
        log_path: args.value("log-path").map(PathBuf::from),
        level,
        show_level: args.flag("show-level").then_some(true),
        show_log_origin: args.flag("show-log-origin").then_some(true),
        module: args.value("module").map(str::to_string),
    };
    if let Err(m) = logger::update(&log_cfg) {
        return fail(1, &format!("LoggerInitialization({m:?})"), &m);
    }
    logger::info(&format!("Running Firecracker v{VERSION}"));
    logger::info(&format!("{NOTICE}: no virtual machine will run."));

    let max_payload: usize = number(&args, "http-api-max-payload-size", "usize").unwrap_or(51200);
    let mmds_limit: usize = number(&args, "mmds-size-limit", "usize").unwrap_or(max_payload);
    for name in ["start-time-us", "start-time-cpu-us", "parent-cpu-time-us"] {
        let _: Option<u64> = number(&args, name, "u64");
    }
    if let Some(f) = args.value("seccomp-filter") {
        if let Err(e) = std::fs::File::open(f) {
            let m = format!("Seccomp error: Filter file open error: {e}");
            return fail(1, &format!("SeccompFilter(FileOpen({e:?}))"), &m);
        }
    }
    let mut vmm = Vmm::new(&id, args.flag("enable-pci"), mmds_limit);
    if let Some(p) = args.value("metrics-path") {
        let cfg = model::MetricsConfig {
            metrics_path: PathBuf::from(p),
        };
        if let Err(m) = vmm.init_metrics(&cfg) {
            return fail(1, &format!("MetricsInitialization({m:?})"), &m);
        }
    }
    let config_json = args.value("config-file").map(|f| {
        std::fs::read_to_string(f).unwrap_or_else(|e| {
            abort_like_panic(&format!(
                "Unable to open or read from the configuration file: {e}"
            ))
        })
    });
    if let Some(f) = args.value("metadata") {
        let text = std::fs::read_to_string(f).unwrap_or_else(|e| {
            abort_like_panic(&format!(
                "Unable to open or read from the mmds content file: {e}"
            ))
        });
        let value = serde_json::from_str(&text).unwrap_or_else(|e| {
            abort_like_panic(&format!(
                "MMDS error: metadata provided not valid json: {e}"
            ))
        });
        if let (Err((_, m)), _) = vmm.handle(Call::PutMmds(value)) {
            return fail(
                1,
                &format!("RunWithApi(BuildMicroVmError(PopulateMmds({m:?})))"),
                &m,
            );
        }
    }

    let listener = if args.flag("no-api") {
        None
    } else {
        let sock = PathBuf::from(args.value("api-sock").unwrap_or("/run/firecracker.socket"));
        match UnixListener::bind(&sock) {
            Ok(l) => {
                logger::info(&format!("Listening on API socket ({sock:?})."));
                Some((l, sock))
            }
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                let path = sock.display().to_string();
                let m = format!(
                    "RunWithApi error: Failed to open the API socket at: {path}. Check that it \
                     is not already used."
                );
                return fail(1, &format!("RunWithApi(FailedToBindSocket({path:?}))"), &m);
            }
            Err(e) => {
                let m = format!("RunWithApi error: Failed to bind and run the HTTP server: {e}");
                return fail(
                    1,
                    &format!("RunWithApi(FailedToBindAndRunHttpServer({e:?}))"),
                    &m,
                );
            }
        }
    };

    if let Some(text) = config_json {
        match boot_from_json(&mut vmm, &text) {
            Ok(exit) => {
                logger::info(
                    "Successfully started microvm that was configured from one single json",
                );
                if let Some(exit) = exit {
                    server::schedule_exit(exit);
                }
            }
            Err(m) => {
                let display = format!("Configuration for VMM from one single json failed: {m}");
                return fail(
                    1,
                    &format!("RunWithApi(BuildFromJson(ParseFromJson({m:?})))"),
                    &display,
                );
            }
        }
    }

    match listener {
        Some((listener, sock)) => {
            let shared = Arc::new(Shared {
                vmm: Mutex::new(vmm),
                record_path: record_path(&sock),
                max_payload,
            });
            logger::info("API server started.");
            server::serve(listener, shared);
            1
        }
        None => {
            // Without an API the "guest" runs until it exits or the process is killed.
            let _keep = vmm;
            loop {
                std::thread::park();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_ids() {
        assert!(valid_id("vm-1").is_ok());
        assert_eq!(valid_id("a_b").unwrap_err(), "InvalidChar('_', 1)");
        assert_eq!(valid_id("").unwrap_err(), "InvalidLen(0, 1, 64)");
        assert!(valid_id(&"a".repeat(65)).is_err());
    }

    #[test]
    fn requests_file_beside_the_socket() {
        if std::env::var_os("STANDIN_REQUESTS").is_some() {
            return;
        }
        assert_eq!(
            record_path(Path::new("/run/firecracker.socket")),
            PathBuf::from("/run/standin-requests.jsonl")
        );
        assert_eq!(
            record_path(Path::new("api.sock")),
            PathBuf::from("standin-requests.jsonl")
        );
    }

    #[test]
    fn config_file_boots() {
        let dir = std::env::temp_dir().join(format!("standin-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let kernel = dir.join("vmlinux");
        std::fs::write(&kernel, b"kernel").unwrap();
        let serial = dir.join("serial.out");
        let mut vmm = Vmm::new("cfg", false, 1000);
        let (res, _) = vmm.handle(Call::PutSerial(model::SerialConfig {
            serial_out_path: Some(serial.clone()),
            rate_limiter: None,
        }));
        assert!(res.is_ok());
        let text = serde_json::json!({
            "boot-source": { "kernel_image_path": kernel, "boot_args": "console=ttyS0 tiny.exit" },
            "machine-config": { "vcpu_count": 2, "mem_size_mib": 256 },
            "drives": [],
        })
        .to_string();
        let exit = boot_from_json(&mut vmm, &text).unwrap();
        assert_eq!(exit.map(|e| e.code), Some(0));
        let out = std::fs::read_to_string(&serial).unwrap();
        assert_eq!(
            out,
            "STANDIN_GUEST_READY cmdline=console=ttyS0 tiny.exit\nSTANDIN_GUEST_EXIT\n"
        );
        assert!(boot_from_json(&mut Vmm::new("x", false, 10), "{}")
            .unwrap_err()
            .contains("missing field `drives`"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
