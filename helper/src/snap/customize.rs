//! Writes a VM's identity into its disk before first boot, without mounting it: the owner's
//! SSH key for root, the hostname, fresh SSH host keys, and the guest network configuration.
//! The files are written in one pass: one `debugfs -w` (e2fsprogs) run as the disk's owner
//! on the disk fd the helper opened, its script on stdin, each file's content in a memfd it
//! inherits, and each file dumped back into another memfd in the same run to check it landed.
//! No temp file or directory is made, and no path is resolved. Host keys are generated in
//! process. A guest image is untrusted input: it is never mounted in the host's namespace.
//!
//! What the guest gets (all root-owned):
//! - `/etc/hostname`, `/etc/hosts`
//! - `/root/.ssh/authorized_keys` (0600, dir 0700)
//! - `/etc/ssh/ssh_host_{ed25519,ecdsa}_key` (0600) and `.pub`; any other host key removed
//! - `/etc/banger/net.json` and `/etc/banger/net.env` (shell variables `BANGER_IP`,
//!   `BANGER_PREFIX`, `BANGER_GATEWAY`, `BANGER_DNS`, `BANGER_MAC` for a busybox init),
//!   `/etc/systemd/network/10-banger.network`, `/etc/resolv.conf`
//! - with the agent: `/usr/local/sbin/banger-agent` (0755, the binary from the helper's own
//!   configuration, never from a request), its systemd unit
//!   `/etc/systemd/system/banger-agent.service` and the link that enables it in
//!   `sysinit.target.wants`; on a guest without systemd it starts as the kernel's `init=`
//!   (see banger-vm(1))
//!
//! The hostname and network files are the ones the agent's `identity` op writes in a running
//! guest ([`banger::agent::guest`]).

use super::SnapError;
use banger::detach::Creds;
use banger::proto::{code, OpError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

/// The guest's network, as `banger-net up` allocates it.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Net {
    pub ip: Ipv4Addr,
    pub prefix: u8,
    #[serde(default)]
    pub gateway: Option<Ipv4Addr>,
    #[serde(default)]
    pub dns: Vec<IpAddr>,
    #[serde(default)]
    pub mac: Option<String>,
}

impl Net {
    /// The agent protocol's form of the same network (the shared file contents take it).
    pub fn to_guest(&self) -> banger::agent::proto::Net {
        banger::agent::proto::Net {
            ip: self.ip,
            prefix: self.prefix,
            gateway: self.gateway,
            dns: self.dns.clone(),
            mac: self.mac.clone(),
            dev: None,
        }
    }
}

/// What to write. Absent parts are left as they are in the disk.
#[derive(Debug, Clone, Default)]
pub struct Custom {
    pub hostname: Option<String>,
    pub ssh_pubkey: Option<String>,
    pub host_keys: bool,
    pub net: Option<Net>,
    /// The agent binary to install (already checked: a static ELF for this host).
    pub agent: Option<Vec<u8>>,
    /// Its sha256: an image prepared with the same agent has it already.
    pub agent_sha256: Option<String>,
}

impl Custom {
    pub fn is_empty(&self) -> bool {
        self.hostname.is_none()
            && self.ssh_pubkey.is_none()
            && !self.host_keys
            && self.net.is_none()
            && self.agent.is_none()
    }
}

fn invalid(msg: String) -> OpError {
    OpError::new(code::INVALID_ARGS, msg)
}

fn valid_mac(m: &str) -> bool {
    banger::agent::guest::valid_mac(m)
}

fn parse_subnet(s: &str) -> Option<(u32, u8)> {
    let (ip, len) = s.split_once('/')?;
    let ip: Ipv4Addr = ip.parse().ok()?;
    let len: u8 = len.parse().ok()?;
    (len <= 32).then_some((u32::from(ip), len))
}

fn in_subnet(ip: Ipv4Addr, subnet: &str) -> bool {
    match parse_subnet(subnet) {
        Some((net, len)) => {
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            u32::from(ip) & mask == net & mask
        }
        None => false,
    }
}

/// Checks everything a request may put into a guest: a hostname that is a valid name, one
/// SSH public key line, addresses inside the configured subnet, a well-formed MAC.
pub fn validate(c: &Custom, subnet: &str) -> Result<(), OpError> {
    if let Some(h) = &c.hostname {
        crate::validate::name(h)?;
    }
    if let Some(k) = &c.ssh_pubkey {
        let ok = !k.is_empty()
            && k.len() <= 16 * 1024
            && k.bytes().all(|b| (0x20..0x7f).contains(&b))
            && (k.starts_with("ssh-") || k.starts_with("ecdsa-") || k.starts_with("sk-"));
        if !ok {
            return Err(invalid(
                "ssh_pubkey must be one SSH public key line ('ssh-ed25519 AAAA... comment')".into(),
            ));
        }
    }
    if let Some(n) = &c.net {
        if n.prefix == 0 || n.prefix > 32 {
            return Err(invalid(format!("net.prefix {} must be 1-32", n.prefix)));
        }
        if !in_subnet(n.ip, subnet) {
            return Err(invalid(format!(
                "net.ip {} is outside the configured subnet {subnet}",
                n.ip
            )));
        }
        if let Some(g) = n.gateway {
            if !in_subnet(g, subnet) {
                return Err(invalid(format!(
                    "net.gateway {g} is outside the configured subnet {subnet}"
                )));
            }
        }
        if n.dns.len() > 8 {
            return Err(invalid("net.dns: at most 8 servers".into()));
        }
        if let Some(m) = &n.mac {
            if !valid_mac(m) {
                return Err(invalid(format!(
                    "net.mac {m:?} is not a MAC address (xx:xx:xx:xx:xx:xx)"
                )));
            }
        }
    }
    Ok(())
}

/// A file to put into the guest.
#[derive(Debug, Clone, PartialEq)]
pub struct GuestFile {
    pub path: String,
    pub content: Vec<u8>,
    pub mode: u32,
}

/// The plan: directories to make (with modes), paths to remove, files to write, symlinks
/// to make (path, target).
#[derive(Debug, Default, Clone)]
pub struct Plan {
    pub dirs: Vec<(String, u32)>,
    pub remove: Vec<String>,
    pub files: Vec<GuestFile>,
    pub links: Vec<(String, String)>,
}

impl Plan {
    fn dir(&mut self, path: &str, mode: u32) {
        if !self.dirs.iter().any(|(p, _)| p == path) {
            self.dirs.push((path.into(), mode));
        }
    }
    fn file(&mut self, path: &str, content: impl Into<Vec<u8>>, mode: u32) {
        self.files.push(GuestFile {
            path: path.into(),
            content: content.into(),
            mode,
        });
    }
}

/// The host key types banger generates, and the ones it removes so no clone keeps the
/// image's keys.
pub const HOST_KEY_TYPES: &[&str] = &["ed25519", "ecdsa"];
const ALL_HOST_KEY_TYPES: &[&str] = &["ed25519", "ecdsa", "rsa", "dsa"];

/// The files for `c` (host keys are added by the caller, once generated).
pub fn plan(c: &Custom) -> Plan {
    let mut p = Plan::default();
    if let Some(h) = &c.hostname {
        p.dir("/etc", 0o755);
        p.file("/etc/hostname", format!("{h}\n"), 0o644);
        p.file("/etc/hosts", banger::agent::guest::hosts(h), 0o644);
    }
    if let Some(k) = &c.ssh_pubkey {
        p.dir("/root", 0o700);
        p.dir("/root/.ssh", 0o700);
        p.file("/root/.ssh/authorized_keys", format!("{k}\n"), 0o600);
    }
    if c.host_keys {
        p.dir("/etc", 0o755);
        p.dir("/etc/ssh", 0o755);
        for t in ALL_HOST_KEY_TYPES {
            p.remove.push(format!("/etc/ssh/ssh_host_{t}_key"));
            p.remove.push(format!("/etc/ssh/ssh_host_{t}_key.pub"));
        }
    }
    if let Some(n) = &c.net {
        p.dir("/etc", 0o755);
        p.dir("/etc/banger", 0o755);
        p.dir("/etc/systemd", 0o755);
        p.dir("/etc/systemd/network", 0o755);
        for (path, content) in banger::agent::guest::net_files(&n.to_guest()) {
            if path == "/etc/resolv.conf" {
                // Often a symlink (to systemd-resolved's): replaced by a file.
                p.remove.push(path.into());
            }
            p.file(path, content, 0o644);
        }
    }
    if let Some(bin) = &c.agent {
        use banger::agent::guest::{unit, AGENT_PATH, UNIT_PATH, UNIT_WANTS};
        for d in [
            "/usr",
            "/usr/local",
            "/usr/local/sbin",
            "/etc",
            "/etc/systemd",
        ] {
            p.dir(d, 0o755);
        }
        p.dir("/etc/systemd/system", 0o755);
        p.dir("/etc/systemd/system/sysinit.target.wants", 0o755);
        p.file(AGENT_PATH, bin.clone(), 0o755);
        p.file(UNIT_PATH, unit(), 0o644);
        p.links
            .push((UNIT_WANTS.into(), "../banger-agent.service".into()));
    }
    p
}

fn split(path: &str) -> (&str, &str) {
    match path.rsplit_once('/') {
        Some(("", b)) => ("/", b),
        Some((a, b)) => (a, b),
        None => ("/", path),
    }
}

/// The `debugfs -w -f` script for a plan whose file contents are at `local[i]` on the host
/// (`/dev/fd/N`). debugfs resolves `mkdir`/`write`/`rm` names in its current directory, so
/// every one is preceded by a `cd` to the parent; `sif` takes the full path. A directory
/// `exists` says is there is not made again: debugfs 1.47's `mkdir` of an existing name
/// leaves a stray directory inode that e2fsck reports (`Unconnected directory inode`).
pub fn script(p: &Plan, local: &[String], exists: &[bool]) -> String {
    let mut s = String::new();
    let meta = |s: &mut String, path: &str, mode: u32| {
        s.push_str(&format!("sif {path} mode 0{mode:o}\n"));
        s.push_str(&format!("sif {path} uid 0\nsif {path} gid 0\n"));
    };
    for (i, (d, mode)) in p.dirs.iter().enumerate() {
        if !exists.get(i).copied().unwrap_or(false) {
            let (parent, base) = split(d);
            s.push_str(&format!("cd {parent}\nmkdir {base}\n"));
        }
        meta(&mut s, d, 0o040000 | mode);
    }
    let mut removes: Vec<&String> = p.remove.iter().collect();
    for f in &p.files {
        if !removes.contains(&&f.path) {
            removes.push(&f.path);
        }
    }
    for r in removes {
        let (parent, base) = split(r);
        s.push_str(&format!("cd {parent}\nrm {base}\n"));
    }
    for (i, f) in p.files.iter().enumerate() {
        let (parent, base) = split(&f.path);
        let src = local.get(i).map(String::as_str).unwrap_or("/dev/null");
        s.push_str(&format!("cd {parent}\nwrite {src} {base}\n"));
        meta(&mut s, &f.path, 0o100000 | f.mode);
    }
    for (path, target) in &p.links {
        let (parent, base) = split(path);
        s.push_str(&format!(
            "cd {parent}\nrm {base}\nsymlink {base} {target}\nsif {path} uid 0\nsif {path} gid 0\n"
        ));
    }
    s
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> SnapError + 'a {
    move |source| SnapError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

fn key_err(e: ssh_key::Error) -> SnapError {
    SnapError::Io {
        what: "generate a host key for",
        path: PathBuf::from("the guest"),
        source: std::io::Error::other(e.to_string()),
    }
}

/// Fresh host keys for `vm`, generated in process: (type -> public line, files to write).
pub fn host_keys(vm: &str) -> Result<(BTreeMap<String, String>, Vec<GuestFile>), SnapError> {
    use ssh_key::{rand_core::OsRng, Algorithm, EcdsaCurve, LineEnding, PrivateKey};
    let mut public = BTreeMap::new();
    let mut files = Vec::new();
    for t in HOST_KEY_TYPES {
        let alg = match *t {
            "ecdsa" => Algorithm::Ecdsa {
                curve: EcdsaCurve::NistP256,
            },
            _ => Algorithm::Ed25519,
        };
        let mut key = PrivateKey::random(&mut OsRng, alg).map_err(key_err)?;
        key.set_comment(format!("root@{vm}"));
        let private = key.to_openssh(LineEnding::LF).map_err(key_err)?;
        let pub_line = key.public_key().to_openssh().map_err(key_err)?;
        files.push(GuestFile {
            path: format!("/etc/ssh/ssh_host_{t}_key"),
            content: private.as_bytes().to_vec(),
            mode: 0o600,
        });
        files.push(GuestFile {
            path: format!("/etc/ssh/ssh_host_{t}_key.pub"),
            content: format!("{pub_line}\n").into_bytes(),
            mode: 0o644,
        });
        public.insert(t.to_string(), pub_line);
    }
    Ok((public, files))
}

/// An anonymous in-memory file holding `content`.
pub(crate) fn memfd(name: &str, content: &[u8]) -> Result<File, SnapError> {
    use std::os::unix::fs::FileExt;
    let fd = rustix::fs::memfd_create(name, rustix::fs::MemfdFlags::CLOEXEC)
        .map_err(|e| io("create a memfd for", Path::new(name))(e.into()))?;
    let f = File::from(fd);
    f.write_all_at(content, 0)
        .map_err(io("write a memfd for", Path::new(name)))?;
    Ok(f)
}

/// Writes `c` into the ext4 filesystem on the open `disk` (a file or block device the owner
/// can write; `path` is for messages). Returns the new host public keys by type (empty unless
/// `c.host_keys`). With `slots` (the image's [`super::slots::SlotMap`], for a disk cloned
/// from it a moment before) the files go into their slots when `fast` and the request is
/// exactly the slots; otherwise debugfs writes them and removes the slots left unfilled.
pub fn apply(
    disk: &File,
    path: &Path,
    vm: &str,
    c: &Custom,
    owner: Option<&Creds>,
    slots: Option<&super::slots::SlotMap>,
    fast: bool,
) -> Result<BTreeMap<String, String>, SnapError> {
    use super::slots::{self, Written};
    let mut p = plan(c);
    let mut public = BTreeMap::new();
    if c.host_keys {
        let (pubs, files) = banger::timing::span("keys", || host_keys(vm))?;
        public = pubs;
        p.files.extend(files);
    }
    if let Some(map) = slots {
        let mut fast = fast;
        match (&c.agent_sha256, &map.agent) {
            // The image has this very agent: nothing of it to write.
            (Some(want), Some(have)) if *want == have.sha256 => {
                use banger::agent::guest::{AGENT_PATH, UNIT_PATH, UNIT_WANTS};
                p.files
                    .retain(|f| f.path != AGENT_PATH && f.path != UNIT_PATH);
                p.links.retain(|(l, _)| l != UNIT_WANTS);
            }
            // An image prepared with an agent, for a VM that is to have none: it goes.
            (None, Some(_)) => {
                use banger::agent::guest::{AGENT_PATH, UNIT_PATH, UNIT_WANTS};
                for r in [AGENT_PATH, UNIT_PATH, UNIT_WANTS] {
                    p.remove.push(r.into());
                }
                fast = false;
            }
            _ => {}
        }
        // Whatever kept the slots from serving (`Written::No` says) leaves it to debugfs;
        // `--timing` shows which of the two wrote the identity.
        if fast
            && p.links.is_empty()
            && banger::timing::span("slots", || slots::write(disk, path, map, &p.files))?
                == Written::Done
        {
            return Ok(public);
        }
        // A placeholder this request does not fill would be left in the guest: what the
        // image had there is put back, else it is removed.
        for s in &map.slots {
            if slots::is_slot_path(&s.path) && !p.files.iter().any(|f| f.path == s.path) {
                match &s.keep {
                    Some(k) if k.len() as u64 <= s.size => p.files.push(GuestFile {
                        path: s.path.clone(),
                        content: k.clone().into_bytes(),
                        mode: slots::slot_mode(&s.path),
                    }),
                    _ => p.remove.push(s.path.clone()),
                }
            }
        }
    }
    banger::timing::span("debugfs", || run_plan(disk, path, &p, owner))?;
    Ok(public)
}

/// Runs the read-only debugfs command `cmd` on each of `paths` in one run (as `owner`) and
/// returns, for each, the first line it printed, if any (its errors go to stderr).
pub(crate) fn debugfs_each(
    disk: &File,
    cmd: &str,
    paths: &[String],
    owner: Option<&Creds>,
) -> Result<Vec<Option<String>>, SnapError> {
    if paths.is_empty() {
        return Ok(Vec::new());
    }
    let text: String = paths.iter().map(|p| format!("{cmd} {p}\n")).collect();
    let args = vec!["-f".to_string(), "-".into(), super::fd_arg(disk)];
    let out = super::tool(
        "debugfs",
        &args,
        &[disk.as_fd()],
        Some(text.as_bytes()),
        owner,
        "e2fsprogs",
    )?;
    Ok(first_lines(&out, cmd, paths))
}

/// From debugfs' output for `CMD PATH` per path (each echoed as `debugfs: CMD PATH`): the
/// line after each echo, unless it is the next echo.
fn first_lines(out: &str, cmd: &str, paths: &[String]) -> Vec<Option<String>> {
    let mut lines = out.lines().peekable();
    paths
        .iter()
        .map(|p| {
            let head = format!("debugfs: {cmd} {p}");
            while lines.next_if(|l| l.trim_end() != head).is_some() {}
            lines.next();
            lines
                .peek()
                .filter(|l| !l.starts_with("debugfs: "))
                .map(|l| l.to_string())
        })
        .collect()
}

/// Which of `dirs` the filesystem of `disk` has (as directories): `stat` each in one
/// read-only debugfs run, as `owner`.
fn dirs_present(
    disk: &File,
    dirs: &[(String, u32)],
    owner: Option<&Creds>,
) -> Result<Vec<bool>, SnapError> {
    let paths: Vec<String> = dirs.iter().map(|(d, _)| d.clone()).collect();
    let first = banger::timing::span("probe", || debugfs_each(disk, "stat", &paths, owner))?;
    Ok(first.iter().map(|l| is_dir_stat(l.as_deref())).collect())
}

/// Whether `stat`'s first line is a directory's.
fn is_dir_stat(line: Option<&str>) -> bool {
    line.is_some_and(|l| l.starts_with("Inode:") && l.contains("Type: directory"))
}

/// Carries out `p` on the ext4 filesystem of `disk` in one `debugfs -w` pass (as `owner`),
/// and reads every file back in the same run to check it landed.
pub(crate) fn run_plan(
    disk: &File,
    path: &Path,
    p: &Plan,
    owner: Option<&Creds>,
) -> Result<(), SnapError> {
    // Each file's content, and an empty file for each to be dumped back into.
    let mut sources = Vec::new();
    let mut checks = Vec::new();
    for (i, f) in p.files.iter().enumerate() {
        sources.push(memfd(&format!("banger-f{i}"), &f.content)?);
        checks.push(memfd(&format!("banger-c{i}"), b"")?);
    }
    let local: Vec<String> = sources.iter().map(super::fd_arg).collect();
    let exists = dirs_present(disk, &p.dirs, owner)?;
    let mut text = script(p, &local, &exists);
    for (i, f) in p.files.iter().enumerate() {
        text.push_str(&format!("dump {} {}\n", f.path, super::fd_arg(&checks[i])));
    }
    let mut fds: Vec<std::os::fd::BorrowedFd> = vec![disk.as_fd()];
    fds.extend(sources.iter().map(|f| f.as_fd()));
    fds.extend(checks.iter().map(|f| f.as_fd()));
    let args = vec![
        "-w".to_string(),
        "-f".into(),
        "-".into(),
        super::fd_arg(disk),
    ];
    // debugfs parses an untrusted filesystem: it runs with the owner's rights, not root's,
    // on the fd the helper opened.
    super::tool(
        "debugfs",
        &args,
        &fds,
        Some(text.as_bytes()),
        owner,
        "e2fsprogs",
    )?;
    super::fail_point("snap.customize")?;
    // Read every file back: debugfs reports per-command errors only on its output.
    for (i, f) in p.files.iter().enumerate() {
        let mut got = Vec::new();
        let mut check = &checks[i];
        check
            .seek(SeekFrom::Start(0))
            .and_then(|_| check.read_to_end(&mut got))
            .map_err(io("read back", path))?;
        if got != f.content {
            return Err(SnapError::Verify {
                path: path.to_path_buf(),
                what: format!(
                    "{} is {} (is {} a directory or a dangling link in the image?)",
                    f.path,
                    if got.is_empty() {
                        "missing"
                    } else {
                        "different"
                    },
                    split(&f.path).0
                ),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net() -> Net {
        Net {
            ip: "10.200.0.5".parse().unwrap(),
            prefix: 24,
            gateway: Some("10.200.0.1".parse().unwrap()),
            dns: vec!["10.200.0.1".parse().unwrap()],
            mac: Some("06:00:0a:c8:00:05".into()),
        }
    }

    #[test]
    fn validation() {
        let ok = Custom {
            hostname: Some("dev1".into()),
            ssh_pubkey: Some("ssh-ed25519 AAAA x@y".into()),
            host_keys: true,
            net: Some(net()),
            agent: None,
            agent_sha256: None,
        };
        assert!(validate(&ok, "10.200.0.0/24").is_ok());
        assert!(validate(&ok, "10.201.0.0/24").is_err());
        let mut bad = ok.clone();
        bad.ssh_pubkey = Some("ssh-ed25519 AAAA\nssh-rsa BBBB".into());
        assert!(validate(&bad, "10.200.0.0/24").is_err());
        let mut bad = ok.clone();
        bad.hostname = Some("../etc".into());
        assert!(validate(&bad, "10.200.0.0/24").is_err());
        let mut bad = ok.clone();
        bad.net.as_mut().unwrap().mac = Some("06:00:zz:00:00:05".into());
        assert!(validate(&bad, "10.200.0.0/24").is_err());
    }

    #[test]
    fn plan_and_script() {
        let c = Custom {
            hostname: Some("dev1".into()),
            ssh_pubkey: Some("ssh-ed25519 AAAA me".into()),
            host_keys: true,
            net: Some(net()),
            agent: None,
            agent_sha256: None,
        };
        let p = plan(&c);
        let paths: Vec<&str> = p.files.iter().map(|f| f.path.as_str()).collect();
        assert!(paths.contains(&"/etc/banger/net.env"));
        assert!(paths.contains(&"/etc/systemd/network/10-banger.network"));
        let env = &p
            .files
            .iter()
            .find(|f| f.path == "/etc/banger/net.env")
            .unwrap();
        let env = String::from_utf8_lossy(&env.content);
        assert!(env.contains("BANGER_IP=10.200.0.5\n") && env.contains("BANGER_PREFIX=24\n"));
        let local: Vec<String> = (0..p.files.len()).map(|i| format!("/tmp/x/f{i}")).collect();
        let s = script(&p, &local, &[]);
        assert!(s.contains("cd /root\nmkdir .ssh\nsif /root/.ssh mode 040700\n"));
        assert!(s.contains("cd /etc\nwrite /tmp/x/f0 hostname\nsif /etc/hostname mode 0100644\n"));
        assert!(s.contains("cd /etc/ssh\nrm ssh_host_rsa_key\n"));
        assert!(s.contains("cd /\nmkdir etc\n"));
        // Files are removed before they are written (debugfs' write refuses to overwrite).
        let rm = s.find("cd /etc\nrm hostname").unwrap();
        let wr = s.find("write /tmp/x/f0 hostname").unwrap();
        assert!(rm < wr);
    }

    #[test]
    fn existing_directories_are_not_made_again() {
        let dirs: Vec<(String, u32)> = ["/etc", "/nope", "/etc/hostname", "/root"]
            .iter()
            .map(|d| (d.to_string(), 0o755))
            .collect();
        let out = "debugfs 1.47.0 (5-Feb-2023)\n\
debugfs: stat /etc\n\
Inode: 12   Type: directory    Mode:  0755   Flags: 0x80000\n\
Generation: 0    Version: 0x00000000:00000000\n\
debugfs: stat /nope\n\
debugfs: stat /etc/hostname\n\
Inode: 13   Type: regular    Mode:  0644   Flags: 0x80000\n\
debugfs: stat /root\n\
Inode: 14   Type: directory    Mode:  0700   Flags: 0x80000\n";
        let paths: Vec<String> = dirs.iter().map(|(d, _)| d.clone()).collect();
        let exists: Vec<bool> = first_lines(out, "stat", &paths)
            .iter()
            .map(|l| is_dir_stat(l.as_deref()))
            .collect();
        assert_eq!(exists, [true, false, false, true]);
        let p = Plan {
            dirs,
            ..Default::default()
        };
        let s = script(&p, &[], &exists);
        assert!(!s.contains("mkdir etc\n") && !s.contains("mkdir root\n"));
        assert!(s.contains("cd /\nmkdir nope\n") && s.contains("cd /etc\nmkdir hostname\n"));
        assert!(s.contains("sif /etc mode 040755\n") && s.contains("sif /root mode 040755\n"));
    }

    #[test]
    fn the_agent_and_its_start() {
        let c = Custom {
            agent: Some(b"\x7fELF...".to_vec()),
            ..Default::default()
        };
        let p = plan(&c);
        let f = p
            .files
            .iter()
            .find(|f| f.path == "/usr/local/sbin/banger-agent")
            .unwrap();
        assert_eq!((f.mode, f.content.as_slice()), (0o755, &b"\x7fELF..."[..]));
        assert!(p
            .files
            .iter()
            .any(|f| f.path == "/etc/systemd/system/banger-agent.service"));
        let local: Vec<String> = (0..p.files.len()).map(|i| format!("/dev/fd/{i}")).collect();
        let s = script(&p, &local, &[]);
        assert!(s.contains("cd /usr/local\nmkdir sbin\n"));
        assert!(s.contains(
            "cd /etc/systemd/system/sysinit.target.wants\nrm banger-agent.service\nsymlink banger-agent.service ../banger-agent.service\n"
        ));
        assert!(Custom::default().is_empty() && !c.is_empty());
    }

    #[test]
    fn net_only_touches_network_files() {
        let c = Custom {
            net: Some(net()),
            ..Default::default()
        };
        let p = plan(&c);
        assert!(p.files.iter().all(|f| f.path.starts_with("/etc/banger/")
            || f.path.starts_with("/etc/systemd/")
            || f.path == "/etc/resolv.conf"));
    }
}
