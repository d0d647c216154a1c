//! `banger-vm start` and `wait`: configure Firecracker from the record, `InstanceStart`,
//! and wait until the guest is reachable.

use crate::BIN;
use banger::agent::proto::HelloInfo;
use banger::config::Config;
use banger::fc_api::{Client, FcError};
use banger::record::{self, Record};
use banger::section::{self, Jail, Net, Spec, Vm, VmAgent};
use banger::step::{Action, StepError};
use serde_json::Value;
use std::io::{Read, Seek, SeekFrom};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The guest's vsock CID (any from 3 up; each VM has its own device).
pub const GUEST_CID: u32 = 3;

/// The image's command line when its image.json has none.
pub const DEFAULT_BOOT_ARGS: &str = "console=ttyS0 reboot=k panic=1 pci=off";

/// How to decide the guest is up.
#[derive(Debug, Clone, PartialEq)]
pub enum Wait {
    /// The guest agent answers `hello` on the VM's vsock (default when the VM has one).
    Agent,
    /// The SSH port answers on the guest's IP (default when the VM has a network).
    Ssh,
    /// A line of the console contains this text.
    Console(String),
    /// Don't wait.
    None,
}

impl Wait {
    /// `--wait WHAT`: `agent`, `ssh`, `console:TEXT` or `none`.
    pub fn parse(s: &str) -> Result<Wait, String> {
        match s {
            "agent" => Ok(Wait::Agent),
            "ssh" => Ok(Wait::Ssh),
            "none" => Ok(Wait::None),
            _ => match s.strip_prefix("console:") {
                Some(t) if !t.is_empty() => Ok(Wait::Console(t.to_string())),
                _ => Err(format!(
                    "--wait {s:?}: expected agent, ssh, console:TEXT or none"
                )),
            },
        }
    }

    /// What `vm.ready` says.
    pub fn ready(&self) -> &'static str {
        match self {
            Wait::Agent => "agent",
            Wait::Ssh => "ssh",
            Wait::Console(_) => "console",
            Wait::None => "not-waited",
        }
    }
}

#[derive(Debug, Clone)]
pub struct WaitOpts {
    pub wait: Option<Wait>,
    pub timeout: Duration,
}

fn need<'a>(field: &'a Option<String>, section: &str, key: &str) -> Result<&'a str, StepError> {
    field.as_deref().ok_or_else(|| {
        StepError::msg(
            "bad_record",
            format!("the record's {section} section has no {key:?}; rerun the {section} step"),
        )
    })
}

pub fn fc_err(e: FcError) -> StepError {
    StepError::new(e.code(), &e)
}

/// The record's jail section, or why there is none.
pub fn jail_of(rec: &Record) -> Result<Jail, StepError> {
    let name = record::name(rec).unwrap_or("?");
    section::get::<Jail>(rec)?.ok_or_else(|| {
        StepError::msg(
            "not_launched",
            format!(
                "{name} has no jail: run 'banger-jail launch {name}' first (or 'banger up {name}')"
            ),
        )
    })
}

/// The API client for a record's jail.
pub fn client_for(rec: &Record) -> Result<Client, StepError> {
    let jail = jail_of(rec)?;
    Ok(Client::new(Path::new(need(
        &jail.api_sock,
        "jail",
        "api_sock",
    )?)))
}

/// The kernel command line: the image's own, the guest network (`ip=`), the host's extra.
pub fn boot_args(cfg: &Config, rec: &Record) -> String {
    let spec = section::get::<Spec>(rec).ok().flatten().unwrap_or_default();
    let from_image = spec
        .image
        .as_deref()
        .and_then(|i| std::fs::read(cfg.images_dir().join(i).join("image.json")).ok())
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .and_then(|v| v.get("boot_args").and_then(Value::as_str).map(String::from))
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_BOOT_ARGS.to_string());
    let mut args = vec![from_image];
    if let Some(ip) = ip_arg(rec) {
        args.push(ip);
    }
    if !cfg.boot_args_extra.trim().is_empty() {
        args.push(cfg.boot_args_extra.trim().to_string());
    }
    args.join(" ")
}

/// `ip=client::gateway:netmask:hostname:eth0:off[:dns0[:dns1]]` for kernels with IP
/// autoconfiguration.
pub fn ip_arg(rec: &Record) -> Option<String> {
    let net = section::get::<Net>(rec).ok()??;
    let ip = net.ip.as_deref()?;
    let gw = net.gateway.as_deref().unwrap_or("");
    let prefix = u32::from(net.prefix.unwrap_or(24).min(32));
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix)
    };
    let mask = std::net::Ipv4Addr::from(mask);
    let host = record::name(rec).unwrap_or("");
    let mut s = format!("ip={ip}::{gw}:{mask}:{host}:eth0:off");
    for d in net.dns.iter().take(2) {
        s.push(':');
        s.push_str(d);
    }
    Some(s)
}

/// The last `n` lines of the VM's console log, for error messages.
pub fn console_tail(rec: &Record, n: usize) -> String {
    let Some(path) = console_path(rec) else {
        return String::from("(no console log recorded)");
    };
    let Ok(mut f) = std::fs::File::open(&path) else {
        return format!("(cannot read {})", path.display());
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(16 * 1024)));
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(n)..].join("\n");
    if tail.trim().is_empty() {
        format!("(console {} is empty)", path.display())
    } else {
        tail
    }
}

pub fn console_path(rec: &Record) -> Option<PathBuf> {
    section::get::<Jail>(rec)
        .ok()
        .flatten()
        .and_then(|j| j.console)
        .map(PathBuf::from)
}

fn alive(rec: &Record) -> bool {
    banger::find_pid::find_for_record(rec).is_some()
}

fn ssh_reachable(addr: SocketAddr) -> bool {
    match TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
        Ok(mut s) => {
            // An SSH server speaks first; a port that only accepts is not ready yet.
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let mut b = [0u8; 4];
            matches!(s.read(&mut b), Ok(n) if n > 0)
        }
        Err(_) => false,
    }
}

fn console_has(path: &Path, text: &str, offset: &mut u64, carry: &mut String) -> bool {
    let Ok(mut f) = std::fs::File::open(path) else {
        return false;
    };
    if f.seek(SeekFrom::Start(*offset)).is_err() {
        return false;
    }
    let mut buf = Vec::new();
    if let Ok(n) = f.read_to_end(&mut buf) {
        *offset += n as u64;
    }
    carry.push_str(&String::from_utf8_lossy(&buf));
    if carry.contains(text) {
        return true;
    }
    // Keep only what could be the start of a match split across reads.
    let keep = carry.len().saturating_sub(text.len());
    let cut = (keep..=carry.len())
        .find(|i| carry.is_char_boundary(*i))
        .unwrap_or(carry.len());
    carry.drain(..cut);
    false
}

/// Waits until the guest is up. Returns the wait actually used, and the agent's hello when
/// that was the wait.
pub fn wait_up(
    rec: &Record,
    opts: &WaitOpts,
    console_from: u64,
) -> Result<(Wait, Option<HelloInfo>), StepError> {
    let name = record::name(rec).unwrap_or("?").to_string();
    let ip = section::get::<Net>(rec).ok().flatten().and_then(|n| n.ip);
    let vsock = banger::agent::vsock_sock(rec);
    let has_agent = vsock.is_some() && banger::agent::snap_agent(rec).is_some();
    let wait = match (&opts.wait, &ip) {
        (Some(w), _) => w.clone(),
        (None, _) if has_agent => Wait::Agent,
        (None, Some(_)) => Wait::Ssh,
        (None, None) => {
            eprintln!(
                "{BIN}: {name}: no agent or network to wait on; not waiting (use --wait console:TEXT)"
            );
            Wait::None
        }
    };
    if wait == Wait::Agent && vsock.is_none() {
        return Err(StepError::new(
            "no_vsock",
            &banger::agent::AgentError::NoVsock { name: name.clone() },
        ));
    }
    let addr: Option<SocketAddr> = match (&wait, &ip) {
        (Wait::Ssh, Some(ip)) => Some(format!("{ip}:22").parse().map_err(|_| {
            StepError::msg(
                "bad_record",
                format!("net.ip {ip:?} is not an IPv4 address"),
            )
        })?),
        (Wait::Ssh, None) => {
            return Err(StepError::msg(
                "no_network",
                format!(
                "{name} has no net section to reach SSH on; use --wait-console TEXT or --no-wait"
            ),
            ))
        }
        _ => None,
    };
    let console = console_path(rec);
    let deadline = Instant::now() + opts.timeout;
    let tty = rustix::termios::isatty(std::io::stderr());
    let mut offset = console_from;
    let mut carry = String::new();
    let started = Instant::now();
    let mut last_note = Instant::now();
    // Woken by the thing itself: a change to the console's directory (the keeper appending,
    // or rotating), or Firecracker's exit on its pidfd. Made before the first look, so nothing
    // written in between is missed.
    let watch = match (&wait, &console) {
        (Wait::Console(_), Some(c)) => c.parent().and_then(|d| banger::wait::DirWatch::new(d).ok()),
        _ => None,
    };
    let fc = banger::find_pid::find_for_record(rec)
        .and_then(|f| banger::wait::Pidfd::pin(f.pid, f.start_time));
    let mut pause = SSH_RETRY_MIN;
    let mut hello = None;
    let mut last_agent_error = String::from("no answer yet");
    loop {
        let up = match &wait {
            Wait::None => true,
            Wait::Agent => match vsock.as_deref().map(|p| agent_hello(p, deadline)) {
                Some(Ok(h)) => {
                    hello = Some(h);
                    true
                }
                Some(Err(e)) => {
                    last_agent_error = banger::cli::one_line(&e);
                    false
                }
                None => false,
            },
            Wait::Ssh => addr.is_some_and(ssh_reachable),
            Wait::Console(text) => console
                .as_deref()
                .is_some_and(|p| console_has(p, text, &mut offset, &mut carry)),
        };
        if up {
            return Ok((wait, hello));
        }
        let gone = match &fc {
            Some(p) => p.exited(),
            None => !alive(rec),
        };
        if gone {
            return Err(StepError::msg(
                "guest_exited",
                format!(
                    "Firecracker exited while waiting for the guest; console tail:\n{}",
                    console_tail(rec, 20)
                ),
            ));
        }
        if Instant::now() >= deadline {
            return Err(StepError::msg(
                "boot_timeout",
                format!(
                    "the guest did not come up within {} s ({}); console tail:\n{}",
                    opts.timeout.as_secs(),
                    match &wait {
                        Wait::Agent => format!("the agent did not answer: {last_agent_error}"),
                        Wait::Ssh => "SSH port closed".to_string(),
                        Wait::Console(t) => format!("no console line with {t:?}"),
                        Wait::None => String::new(),
                    },
                    console_tail(rec, 20)
                ),
            ));
        }
        if tty && last_note.elapsed() > Duration::from_secs(5) {
            eprintln!(
                "{BIN}: {name}: waiting for the guest ({} s)",
                started.elapsed().as_secs()
            );
            last_note = Instant::now();
        }
        let left = deadline
            .saturating_duration_since(Instant::now())
            .min(Duration::from_secs(5));
        match (&watch, &fc) {
            // Nothing to read until the directory changes or Firecracker exits.
            (Some(w), fc) => {
                w.wait(left, fc.as_ref().map(|p| p.as_fd()));
            }
            // The SSH port: no event says when it opens, so try again, soon at first (a
            // refused connection returns at once), less often as the guest takes longer;
            // the wait ends early if Firecracker exits.
            (None, Some(p)) => {
                p.wait(pause.min(left));
                pause = (pause * 2).min(SSH_RETRY_MAX);
            }
            (None, None) => {
                std::thread::sleep(pause.min(left));
                pause = (pause * 2).min(SSH_RETRY_MAX);
            }
        }
    }
}

/// The first and the longest pause between two tries of the guest's SSH port.
const SSH_RETRY_MIN: Duration = Duration::from_millis(10);
const SSH_RETRY_MAX: Duration = Duration::from_millis(250);

/// One `hello` through the VM's vsock socket: the connection taken within at most 2 s (and
/// never past `deadline`).
fn agent_hello(sock: &Path, deadline: Instant) -> Result<HelloInfo, banger::agent::AgentError> {
    let left = deadline.saturating_duration_since(Instant::now());
    let t = left.clamp(Duration::from_millis(100), Duration::from_secs(2));
    banger::agent::hello(sock, t)
}

/// The part of a hello the record keeps (`vm.agent`).
pub fn hello_section(h: &HelloInfo) -> VmAgent {
    VmAgent {
        version: Some(h.version.clone()),
        protocol: Some(h.protocol),
        boot_id: h.boot_id.clone(),
        kernel: Some(h.kernel.clone()),
        hostname: Some(h.hostname.clone()),
        extra: Default::default(),
    }
}

/// Makes the VM's vsock socket the owner's alone (Firecracker makes it with its umask).
/// Through the run dir's link, with the owner's credentials when root runs this step: the
/// owner controls that link, so root never follows it to chmod something else.
pub fn restrict_vsock(cfg: &Config, rec: &Record) {
    use std::os::unix::fs::PermissionsExt;
    let Some(link) = banger::agent::vsock_sock(rec) else {
        return;
    };
    let owner = cfg.owner_creds();
    let _ = banger_helper::cred::as_owner(owner.as_ref(), || {
        let _ = std::fs::set_permissions(&link, std::fs::Permissions::from_mode(0o600));
    });
}

fn console_len(rec: &Record) -> u64 {
    console_path(rec)
        .and_then(|p| std::fs::metadata(p).ok())
        .map_or(0, |m| m.len())
}

/// Changes the record's `vm` section (made when absent) with `f`.
pub fn set_vm(rec: &mut Record, f: impl FnOnce(&mut Vm)) -> Result<(), StepError> {
    let mut vm = section::get::<Vm>(rec)?.unwrap_or_default();
    f(&mut vm);
    section::put(rec, &vm);
    Ok(())
}

/// Configures and starts one VM.
pub fn start(cfg: &Config, rec: &mut Record, opts: &WaitOpts) -> Result<Action, StepError> {
    let name = record::name(rec).unwrap_or("?").to_string();
    use banger::timing::span;
    let client = client_for(rec)?;
    let info = span("GET /", || client.instance_info()).map_err(|e| match e {
        FcError::Connect { .. } => StepError::msg(
            "not_running",
            format!(
                "{name}'s Firecracker is not running (its API socket does not answer): relaunch with 'banger-jail launch {name}', or 'banger up {name}'"
            ),
        ),
        other => fc_err(other),
    })?;
    match info.state.as_str() {
        "Running" => {
            eprintln!("{BIN}: {name}: already running");
            set_vm(rec, |vm| vm.state = Some("running".into()))?;
            return Ok(Action::Save);
        }
        "Paused" => {
            return Err(StepError::msg(
                "paused",
                format!("{name} is paused: 'banger-vm resume {name}'"),
            ))
        }
        _ => {}
    }
    if crate::warm::pending(cfg, rec) {
        return crate::warm::start(cfg, rec, opts);
    }
    let jail = jail_of(rec)?;
    let spec = section::get::<Spec>(rec)?.unwrap_or_default();
    let kernel = need(&jail.kernel, "jail", "kernel")?;
    let rootfs = need(&jail.rootfs, "jail", "rootfs")?;
    let initrd = jail.initrd.as_deref();
    let vcpus = u64::from(spec.vcpus.unwrap_or(1));
    let mem = u64::from(spec.mem_mib.unwrap_or(512));
    let mut args = boot_args(cfg, rec);
    // banger-snap wrote the agent into a disk whose init it cannot extend: the agent runs
    // as init= first, then execs the image's init.
    if banger::agent::snap_agent(rec).as_deref() == Some("init-hook") && jail.vsock_uds.is_some() {
        args = banger::agent::hook_boot_args(&args);
    }

    span("config", || -> Result<(), StepError> {
        client.machine_config(vcpus, mem).map_err(fc_err)?;
        client.boot_source(kernel, initrd, &args).map_err(fc_err)?;
        client
            .drive("rootfs", rootfs, true, false)
            .map_err(fc_err)?;
        if let Some(net) = section::get::<Net>(rec)? {
            let tap = need(&net.tap, "net", "tap")?;
            let mac = need(&net.mac, "net", "mac")?;
            client.network_interface("eth0", tap, mac).map_err(fc_err)?;
        }
        Ok(())
    })?;
    if let Some(v) = &jail.vsock_uds {
        client.vsock(GUEST_CID, v).map_err(fc_err)?;
        restrict_vsock(cfg, rec);
    }
    let from = console_len(rec);
    let t0 = Instant::now();
    span("InstanceStart", || client.action("InstanceStart")).map_err(fc_err)?;
    let api_ms = t0.elapsed().as_secs_f64() * 1e3;
    set_vm(rec, |vm| {
        vm.state = Some("running".into());
        vm.started_at = Some(record::now_rfc3339());
        vm.boot_args = Some(args.clone());
        vm.boot_ms = None;
        vm.extra.insert("start".into(), "cold".into());
        vm.extra.remove("warm");
    })?;
    restrict_vsock(cfg, rec);
    let (used, hello) = span("wait", || wait_up(rec, opts, from))?;
    let boot_ms = t0.elapsed().as_millis() as u64;
    set_vm(rec, |vm| {
        vm.boot_ms = (used != Wait::None).then_some(boot_ms);
        vm.instance_start_ms = Some((api_ms * 1000.0).round() / 1000.0);
        vm.ready = Some(used.ready().into());
        vm.agent = hello.as_ref().map(hello_section);
    })?;
    if used != Wait::None {
        eprintln!("{BIN}: {name}: up in {boot_ms} ms");
    }
    Ok(Action::Save)
}

/// `banger-vm wait`: the guest is reachable (or the timeout passes).
pub fn wait(rec: &mut Record, opts: &WaitOpts) -> Result<Action, StepError> {
    let name = record::name(rec).unwrap_or("?").to_string();
    if !alive(rec) {
        return Err(StepError::msg(
            "not_running",
            format!("{name} is not running: 'banger up {name}'"),
        ));
    }
    let (_, hello) = wait_up(rec, opts, 0)?;
    if let Some(h) = hello {
        set_vm(rec, |vm| vm.agent = Some(hello_section(&h)))?;
    }
    Ok(Action::Emit)
}

#[cfg(test)]
mod tests {
    use super::*;

    use serde_json::json;

    fn rec() -> Record {
        let mut r = record::new("vm", "dev1");
        r.insert(
            "net".into(),
            json!({"ip": "10.200.0.5", "prefix": 24, "gateway": "10.200.0.1", "dns": ["10.200.0.1", "9.9.9.9", "x"]}),
        );
        r
    }

    #[test]
    fn ip_argument() {
        assert_eq!(
            ip_arg(&rec()).unwrap(),
            "ip=10.200.0.5::10.200.0.1:255.255.255.0:dev1:eth0:off:10.200.0.1:9.9.9.9"
        );
        assert!(ip_arg(&record::new("vm", "x")).is_none());
        let mut r = rec();
        r.insert(
            "net".into(),
            json!({"ip": "10.1.0.2", "prefix": 16, "gateway": "10.1.0.1"}),
        );
        assert_eq!(
            ip_arg(&r).unwrap(),
            "ip=10.1.0.2::10.1.0.1:255.255.0.0:dev1:eth0:off"
        );
    }

    #[test]
    fn wait_choices() {
        assert_eq!(Wait::parse("agent"), Ok(Wait::Agent));
        assert_eq!(Wait::parse("ssh"), Ok(Wait::Ssh));
        assert_eq!(Wait::parse("none"), Ok(Wait::None));
        assert_eq!(
            Wait::parse("console:login: "),
            Ok(Wait::Console("login: ".into()))
        );
        assert!(Wait::parse("console:").is_err());
        assert!(Wait::parse("ping").is_err());
        assert_eq!(Wait::Agent.ready(), "agent");
    }

    #[test]
    fn console_matching_spans_reads() {
        let p = std::env::temp_dir().join(format!("banger-console-{}", std::process::id()));
        std::fs::write(&p, "boot...\nSTANDIN_GU").unwrap();
        let (mut off, mut carry) = (0, String::new());
        assert!(!console_has(
            &p,
            "STANDIN_GUEST_READY",
            &mut off,
            &mut carry
        ));
        std::fs::write(&p, "boot...\nSTANDIN_GUEST_READY cmdline=x\n").unwrap();
        assert!(console_has(&p, "STANDIN_GUEST_READY", &mut off, &mut carry));
        let _ = std::fs::remove_file(&p);
    }
}
