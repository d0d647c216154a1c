//! `identity`: gives a running guest a new identity (after a snapshot restore, say). Every
//! part is checked before any is applied; then, in order: the RNG reseeded, the hostname,
//! root's authorized keys, the SSH host keys, the network. Files are written atomically.

use super::{guest_path, System};
use crate::guest;
use crate::proto::{code, ErrorBody, HostKey, Identity, IdentityDone, Net, MAX_ENTROPY};
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

/// The host key types a guest may be given; every one's old files are removed.
const KEY_TYPES: &[&str] = &["ed25519", "ecdsa", "rsa"];
const ALL_KEY_TYPES: &[&str] = &["ed25519", "ecdsa", "rsa", "dsa"];
const MAX_KEY: usize = 16 * 1024;

fn invalid(m: impl Into<String>) -> ErrorBody {
    ErrorBody::new(code::INVALID_ARGS, m)
}

fn text_ok(s: &str) -> bool {
    s.bytes().all(|b| b == b'\n' || (0x20..0x7f).contains(&b))
}

fn check_key(k: &HostKey) -> Result<(), ErrorBody> {
    if !KEY_TYPES.contains(&k.kind.as_str()) {
        return Err(invalid(format!(
            "identity: host key type {:?} (ed25519, ecdsa or rsa)",
            k.kind
        )));
    }
    let private_ok =
        k.private.len() <= MAX_KEY && text_ok(&k.private) && k.private.starts_with("-----BEGIN ");
    let public_ok = k.public.len() <= MAX_KEY
        && text_ok(&k.public)
        && !k.public.trim_end().contains('\n')
        && (k.public.starts_with("ssh-") || k.public.starts_with("ecdsa-"));
    if !private_ok || !public_ok {
        return Err(invalid(format!(
            "identity: the {} host key is not an OpenSSH private key and one public key line",
            k.kind
        )));
    }
    Ok(())
}

fn check_net(n: &Net) -> Result<(), ErrorBody> {
    if n.prefix == 0 || n.prefix > 32 {
        return Err(invalid(format!(
            "identity: net.prefix {} must be 1-32",
            n.prefix
        )));
    }
    if n.dns.len() > 8 {
        return Err(invalid("identity: net.dns: at most 8 servers"));
    }
    if let Some(m) = &n.mac {
        if !guest::valid_mac(m) {
            return Err(invalid(format!(
                "identity: net.mac {m:?} is not a MAC address"
            )));
        }
    }
    if let Some(d) = &n.dev {
        let ok = !d.is_empty()
            && d.len() <= 15
            && d.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if !ok {
            return Err(invalid(format!(
                "identity: net.dev {d:?} is not an interface name"
            )));
        }
    }
    Ok(())
}

/// Checks the whole request; nothing is applied unless all of it is good.
pub fn validate(id: &Identity) -> Result<(), ErrorBody> {
    if let Some(e) = &id.entropy {
        if e.0.is_empty() || e.0.len() > MAX_ENTROPY {
            return Err(invalid(format!(
                "identity: entropy must be 1-{MAX_ENTROPY} bytes"
            )));
        }
    }
    if let Some(h) = &id.hostname {
        if !guest::valid_hostname(h) {
            return Err(invalid(format!(
                "identity: hostname {h:?} (1-63 letters, digits, dashes)"
            )));
        }
    }
    if let Some(k) = &id.authorized_keys {
        if !text_ok(k) {
            return Err(invalid(
                "identity: authorized_keys must be printable text lines",
            ));
        }
    }
    if let Some(keys) = &id.host_keys {
        for (i, k) in keys.iter().enumerate() {
            check_key(k)?;
            if keys[..i].iter().any(|o| o.kind == k.kind) {
                return Err(invalid(format!("identity: two {} host keys", k.kind)));
            }
        }
    }
    if let Some(n) = &id.net {
        check_net(n)?;
    }
    let empty = id.entropy.is_none()
        && id.hostname.is_none()
        && id.authorized_keys.is_none()
        && id.host_keys.is_none()
        && id.net.is_none();
    if empty {
        return Err(invalid(
            "identity: nothing to do (give entropy, hostname, authorized_keys, host_keys or net)",
        ));
    }
    Ok(())
}

/// Writes `content` to `path` in the guest atomically with `mode` (root's), making missing
/// parent directories with `dir_mode`.
fn write_file(
    sys: &dyn System,
    path: &str,
    content: &[u8],
    mode: u32,
    dir_mode: u32,
) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
    let target = guest_path(sys, path);
    let dir = target.parent().unwrap_or(Path::new("/"));
    if !dir.is_dir() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(dir_mode)
            .create(dir)?;
    }
    let name = target.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(".{name}.banger-identity.{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let r = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(&tmp)?;
        f.write_all(content)?;
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        std::fs::rename(&tmp, &target)
    })();
    if r.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    r
}

/// The `ip` commands that give `dev` the address (and MAC) of `n`.
pub fn ip_commands(n: &Net) -> Vec<Vec<String>> {
    let dev = n.dev.clone().unwrap_or_else(|| "eth0".into());
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let mut cmds = Vec::new();
    if let Some(m) = &n.mac {
        cmds.push(s(&["link", "set", "dev", &dev, "down"]));
        cmds.push(s(&["link", "set", "dev", &dev, "address", m]));
    }
    cmds.push(s(&["link", "set", "dev", &dev, "up"]));
    cmds.push(s(&["-4", "addr", "flush", "dev", &dev]));
    cmds.push(s(&[
        "addr",
        "add",
        &format!("{}/{}", n.ip, n.prefix),
        "dev",
        &dev,
    ]));
    if let Some(g) = n.gateway {
        cmds.push(s(&[
            "route",
            "replace",
            "default",
            "via",
            &g.to_string(),
            "dev",
            &dev,
        ]));
    }
    cmds
}

/// Records `part` as done, with the time since the last mark.
fn mark(done: &mut IdentityDone, part: &str, t: &mut Instant) {
    done.done.push(part.into());
    done.ms.insert(
        part.into(),
        t.elapsed().as_millis().min(u128::from(u64::MAX)) as u64,
    );
    *t = Instant::now();
}

/// Applies a checked identity; fails at the first part that fails, naming the parts done.
/// The files are written through temporary files and renames; the server syncs them once,
/// after it answered (one `sync` rather than an fsync per file: each costs a journal commit).
pub fn apply(sys: &dyn System, id: &Identity) -> Result<IdentityDone, ErrorBody> {
    validate(id)?;
    let mut done = IdentityDone::default();
    let mut t = Instant::now();
    let fail = |done: &IdentityDone, part: &str, e: std::io::Error| {
        ErrorBody::new(
            code::FAILED,
            format!(
                "identity: {part}: {e} (done before it: {})",
                if done.done.is_empty() {
                    "nothing".to_string()
                } else {
                    done.done.join(", ")
                }
            ),
        )
    };
    if let Some(e) = &id.entropy {
        sys.reseed(&e.0).map_err(|e| fail(&done, "entropy", e))?;
        mark(&mut done, "entropy", &mut t);
    }
    if let Some(h) = &id.hostname {
        sys.set_hostname(h)
            .and_then(|()| {
                write_file(
                    sys,
                    "/etc/hostname",
                    format!("{h}\n").as_bytes(),
                    0o644,
                    0o755,
                )
            })
            .and_then(|()| write_file(sys, "/etc/hosts", guest::hosts(h).as_bytes(), 0o644, 0o755))
            .map_err(|e| fail(&done, "hostname", e))?;
        mark(&mut done, "hostname", &mut t);
    }
    if let Some(k) = &id.authorized_keys {
        let mut text = k.clone();
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        write_file(
            sys,
            "/root/.ssh/authorized_keys",
            text.as_bytes(),
            0o600,
            0o700,
        )
        .map_err(|e| fail(&done, "authorized_keys", e))?;
        mark(&mut done, "authorized_keys", &mut t);
    }
    if let Some(keys) = &id.host_keys {
        let r = (|| {
            for t in ALL_KEY_TYPES {
                for suffix in ["", ".pub"] {
                    let p = guest_path(sys, &format!("/etc/ssh/ssh_host_{t}_key{suffix}"));
                    match std::fs::remove_file(&p) {
                        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                        _ => {}
                    }
                }
            }
            for k in keys {
                let base = format!("/etc/ssh/ssh_host_{}_key", k.kind);
                let mut private = k.private.clone();
                if !private.ends_with('\n') {
                    private.push('\n');
                }
                write_file(sys, &base, private.as_bytes(), 0o600, 0o755)?;
                let public = format!("{}\n", k.public.trim_end());
                write_file(sys, &format!("{base}.pub"), public.as_bytes(), 0o644, 0o755)?;
            }
            Ok(())
        })();
        r.map_err(|e| fail(&done, "host_keys", e))?;
        mark(&mut done, "host_keys", &mut t);
    }
    if let Some(n) = &id.net {
        let r = (|| {
            sys.net(n)?;
            for (path, content) in guest::net_files(n) {
                write_file(sys, path, content.as_bytes(), 0o644, 0o755)?;
            }
            Ok(())
        })();
        r.map_err(|e| fail(&done, "net", e))?;
        mark(&mut done, "net", &mut t);
    }
    if id.host_keys.is_some() {
        // An sshd already running (a restored snapshot's) holds the old keys in memory; it
        // re-executes last, so its start does not slow the rest down.
        sys.reload_sshd();
    }
    Ok(done)
}

/// The pids of the listening sshd processes under `proc`: named `sshd`, with a parent that
/// is not.
pub fn sshd_listeners(proc: &Path) -> Vec<i32> {
    let comm = |pid: &str| {
        std::fs::read_to_string(proc.join(pid).join("comm"))
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    };
    let ppid = |pid: &str| -> Option<String> {
        let stat = std::fs::read_to_string(proc.join(pid).join("stat")).ok()?;
        // "pid (comm) state ppid ...": the comm may hold spaces and parentheses.
        let rest = &stat[stat.rfind(')')? + 1..];
        rest.split_whitespace().nth(1).map(String::from)
    };
    let Ok(rd) = std::fs::read_dir(proc) else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        .filter(|n| comm(n) == "sshd")
        .filter(|n| ppid(n).is_none_or(|pp| comm(&pp) != "sshd"))
        .filter_map(|n| n.parse().ok())
        .collect()
}

/// The guest itself.
pub struct RealSystem;

/// A busy guest whose kernel runs interpreted takes seconds to start a program.
const IP_TIMEOUT: Duration = Duration::from_secs(60);

fn ip_program() -> Option<(String, Vec<String>)> {
    for p in ["/sbin/ip", "/usr/sbin/ip", "/bin/ip", "/usr/bin/ip"] {
        if Path::new(p).exists() {
            return Some((p.into(), Vec::new()));
        }
    }
    Path::new("/bin/busybox")
        .exists()
        .then(|| ("/bin/busybox".into(), vec!["ip".into()]))
}

impl System for RealSystem {
    fn root(&self) -> &Path {
        Path::new("/")
    }

    /// SIGHUP to each listening sshd (one whose parent is no sshd): it re-executes itself
    /// and loads the host keys again, as it does for a changed configuration.
    fn reload_sshd(&self) {
        for pid in sshd_listeners(Path::new("/proc")) {
            if let Some(p) = rustix::process::Pid::from_raw(pid) {
                let _ = rustix::process::kill_process(p, rustix::process::Signal::HUP);
            }
        }
    }

    fn set_hostname(&self, name: &str) -> std::io::Result<()> {
        Ok(rustix::system::sethostname(name.as_bytes())?)
    }

    fn reseed(&self, seed: &[u8]) -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/urandom")?;
        f.write_all(seed)?;
        // RNDRESEEDCRNG: reseed the CRNG from the pool now (Linux 4.17+; older ones mix
        // the bytes in at their next reseed).
        const RNDRESEEDCRNG: rustix::ioctl::Opcode = rustix::ioctl::opcode::none(b'R', 0x07);
        // SAFETY: RNDRESEEDCRNG takes no argument; `f` is an open /dev/urandom.
        let r = unsafe { rustix::ioctl::ioctl(&f, rustix::ioctl::NoArg::<RNDRESEEDCRNG>::new()) };
        match r {
            Ok(()) | Err(rustix::io::Errno::NOTTY) | Err(rustix::io::Errno::INVAL) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    fn ip(&self, args: &[String]) -> std::io::Result<()> {
        let (prog, mut argv) = ip_program().ok_or_else(|| {
            std::io::Error::other("no ip command in the guest (iproute2 or busybox)")
        })?;
        argv.extend(args.iter().cloned());
        let mut child = std::process::Command::new(&prog)
            .args(&argv)
            .env_clear()
            .env("PATH", crate::server::exec::DEFAULT_PATH)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()?;
        let deadline = Instant::now() + IP_TIMEOUT;
        let status = loop {
            if let Some(s) = child.try_wait()? {
                break s;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("ip {} took over {} s", args.join(" "), IP_TIMEOUT.as_secs()),
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        if status.success() {
            return Ok(());
        }
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            use std::io::Read;
            let _ = (&mut e).take(4096).read_to_string(&mut err);
        }
        Err(std::io::Error::other(format!(
            "ip {} failed ({status}): {}",
            args.join(" "),
            err.trim()
        )))
    }

    fn shutdown(&self, force: bool) -> std::io::Result<()> {
        if force {
            rustix::fs::sync();
            rustix::system::reboot(rustix::system::RebootCommand::Restart)?;
            Ok(())
        } else {
            let init =
                rustix::process::Pid::from_raw(1).ok_or_else(|| std::io::Error::other("pid 1"))?;
            Ok(rustix::process::kill_process(
                init,
                rustix::process::Signal::INT,
            )?)
        }
    }
}
