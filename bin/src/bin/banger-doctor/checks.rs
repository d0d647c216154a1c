//! The checks. Each answers one question about this host and says what to do when the
//! answer is not "ok". None of them changes anything.

use banger::config::Config;
use banger::record;
use serde_json::{json, Value};
use std::path::Path;

/// `ok`, `warn` (banger works, with a cost or a weaker guarantee) or `fail` (a step will fail).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    Ok,
    Warn,
    Fail,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Fail => "fail",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Check {
    pub name: String,
    pub status: Status,
    pub message: String,
    pub fix: Option<String>,
}

impl Check {
    pub fn new(name: &str, status: Status, message: impl Into<String>, fix: Option<&str>) -> Check {
        Check {
            name: name.into(),
            status,
            message: message.into(),
            fix: fix.map(String::from),
        }
    }

    /// The check as a record: `{"v":1,"type":"check","name",...}`.
    pub fn record(&self) -> record::Record {
        let mut r = record::new("check", &self.name);
        r.insert("status".into(), self.status.as_str().into());
        r.insert("message".into(), self.message.clone().into());
        r.insert(
            "fix".into(),
            self.fix.clone().map(Value::String).unwrap_or(Value::Null),
        );
        r
    }
}

fn kvm() -> Check {
    let path = Path::new("/dev/kvm");
    match std::fs::OpenOptions::new().read(true).write(true).open(path) {
        Ok(_) => Check::new("kvm", Status::Ok, "/dev/kvm opens read-write", None),
        Err(e) if path.exists() => Check::new(
            "kvm",
            Status::Fail,
            format!("/dev/kvm exists but does not open read-write: {e}"),
            Some("add the owner to the kvm group (Firecracker runs as the owner)"),
        ),
        Err(_) => Check::new(
            "kvm",
            Status::Fail,
            "no /dev/kvm: this host cannot run Firecracker",
            Some("enable virtualization (KVM) in the firmware or the hypervisor, and load kvm_intel/kvm_amd"),
        ),
    }
}

fn binary(name: &str, configured: Option<&std::path::PathBuf>, var: &str) -> Check {
    let found = configured.cloned().or_else(|| banger::cli::which(name));
    match found {
        Some(p) if banger::cli::is_executable(&p) => {
            let version = std::process::Command::new(&p)
                .arg("--version")
                .output()
                .ok()
                .map(|o| String::from_utf8_lossy(&o.stdout).lines().next().unwrap_or("").trim().to_string())
                .unwrap_or_default();
            Check::new(
                name,
                Status::Ok,
                format!("{} {}", p.display(), version).trim_end().to_string(),
                None,
            )
        }
        Some(p) => Check::new(
            name,
            Status::Fail,
            format!("{} is not an executable file", p.display()),
            Some(&format!("point {var} (or the config key \"{name}\") at the binary")),
        ),
        None => Check::new(
            name,
            Status::Fail,
            format!("no {name} binary configured or on PATH"),
            Some(&format!(
                "install Firecracker's release binaries and set {var} (or the config key \"{name}\")"
            )),
        ),
    }
}

fn cgroup() -> Check {
    const CGROUP2_SUPER_MAGIC: u64 = 0x6367_7270;
    match rustix::fs::statfs("/sys/fs/cgroup") {
        // f_type's C type differs between architectures.
        #[allow(clippy::unnecessary_cast)]
        Ok(fs) if fs.f_type as u64 == CGROUP2_SUPER_MAGIC => Check::new(
            "cgroup",
            Status::Ok,
            "cgroup v2: the jailer gets CPU and memory limits per VM",
            None,
        ),
        _ => Check::new(
            "cgroup",
            Status::Warn,
            "no cgroup v2 at /sys/fs/cgroup: VMs run without per-VM CPU and memory limits",
            Some("boot with systemd.unified_cgroup_hierarchy=1"),
        ),
    }
}

fn tools() -> Vec<Check> {
    let needs: &[(&str, &str, Status)] = &[
        ("ip", "bridges, taps, addresses (iproute2)", Status::Fail),
        ("nft", "NAT and port forwards (nftables)", Status::Fail),
        (
            "debugfs",
            "writing a VM's identity into its disk (e2fsprogs)",
            Status::Fail,
        ),
        ("mkfs.ext4", "building images (e2fsprogs)", Status::Fail),
        (
            "resize2fs",
            "growing disks, --disk-size (e2fsprogs)",
            Status::Fail,
        ),
        (
            "ssh-keygen",
            "fresh host keys and banger's key (openssh-client)",
            Status::Fail,
        ),
        (
            "ssh",
            "banger-vm ssh and exec (openssh-client)",
            Status::Warn,
        ),
        ("debootstrap", "banger-image build --debian", Status::Warn),
    ];
    needs
        .iter()
        .map(|(prog, used_by, missing)| match banger::cli::which(prog) {
            Some(p) => Check::new(
                &format!("tool-{prog}"),
                Status::Ok,
                format!("{}: {used_by}", p.display()),
                None,
            ),
            None => Check::new(
                &format!("tool-{prog}"),
                *missing,
                format!("{prog} not on PATH: needed for {used_by}"),
                Some("install it from the distribution's packages"),
            ),
        })
        .collect()
}

/// Whether a clone of a file in the state dir can be a reflink (O(1) VM disks).
fn reflink(cfg: &Config) -> Check {
    let dir = cfg.images_dir();
    let probe_dir = if dir.is_dir() {
        dir
    } else {
        cfg.state_dir.clone()
    };
    if !probe_dir.is_dir() {
        return Check::new(
            "disk-clones",
            Status::Warn,
            format!(
                "{} does not exist yet; cannot tell whether disks can be reflinked",
                probe_dir.display()
            ),
            Some("create the state dir (banger-image import or build does)"),
        );
    }
    let a = probe_dir.join(format!(".doctor-{}", std::process::id()));
    let b = probe_dir.join(format!(".doctor-{}.clone", std::process::id()));
    let result = std::fs::write(&a, b"banger").and_then(|_| {
        std::process::Command::new("cp")
            .args(["--reflink=always"])
            .arg(&a)
            .arg(&b)
            .stderr(std::process::Stdio::null())
            .status()
    });
    let _ = std::fs::remove_file(&a);
    let _ = std::fs::remove_file(&b);
    match result {
        Ok(s) if s.success() => Check::new(
            "disk-clones",
            Status::Ok,
            format!("{} supports reflinks: a VM disk costs O(1)", probe_dir.display()),
            None,
        ),
        Ok(_) => Check::new(
            "disk-clones",
            Status::Warn,
            format!(
                "{} has no reflinks (and device-mapper decides the rest): VM disks may be full copies, O(image size)",
                probe_dir.display()
            ),
            Some("put the state dir on XFS (mkfs.xfs -m reflink=1) or btrfs"),
        ),
        Err(e) => Check::new(
            "disk-clones",
            Status::Fail,
            format!("cannot write in {}: {e}", probe_dir.display()),
            Some("the state dir must be the owner's"),
        ),
    }
}

fn device_mapper() -> Check {
    match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/mapper/control")
    {
        Ok(_) => Check::new(
            "device-mapper",
            Status::Ok,
            "dm-snapshot disks available",
            None,
        ),
        Err(e) => Check::new(
            "device-mapper",
            Status::Warn,
            format!("/dev/mapper/control: {e}; disks use reflink or copy instead of dm-snapshot"),
            None,
        ),
    }
}

/// Whether the daemon answers `ping` (only the socket: no in-process fallback), and its answer.
fn helper(cfg: &Config) -> (Check, Option<Value>) {
    let h = banger::client::Helper::new(cfg, None);
    match h.call("ping", json!({})) {
        Ok(v) => (
            Check::new(
                "helper",
                Status::Ok,
                format!(
                    "banger-helper {} (pid {}) answers on {}",
                    v["version"].as_str().unwrap_or("?"),
                    v["pid"],
                    cfg.helper_socket.display()
                ),
                None,
            ),
            Some(v),
        ),
        Err(e) => {
            let root = rustix::process::geteuid().is_root();
            (
                Check::new(
                    "helper",
                    if root { Status::Warn } else { Status::Fail },
                    if root {
                        format!("{e} (as root, the steps run its operations in process instead)")
                    } else {
                        e.to_string()
                    },
                    None,
                ),
                None,
            )
        }
    }
}

fn subnet(cfg: &Config) -> Check {
    use banger_helper::net::{subnet::Subnet, sys};
    let s = match Subnet::parse(&cfg.subnet) {
        Ok(s) => s,
        Err(e) => {
            return Check::new(
                "subnet",
                Status::Fail,
                format!("the configured subnet {:?} is invalid: {e}", cfg.subnet),
                Some("set BANGER_SUBNET (or the config key \"subnet\") to e.g. 10.200.0.0/24"),
            )
        }
    };
    match sys::overlap(&s, &cfg.bridge) {
        Ok(None) => Check::new(
            "subnet",
            Status::Ok,
            format!("{} overlaps no address or route on this host", cfg.subnet),
            None,
        ),
        Ok(Some(what)) => Check::new(
            "subnet",
            Status::Fail,
            format!("{} overlaps {what}", cfg.subnet),
            Some("pick a free subnet: BANGER_SUBNET or the config key \"subnet\""),
        ),
        Err(e) => Check::new(
            "subnet",
            Status::Warn,
            format!(
                "cannot read the host's addresses and routes: {}",
                banger::cli::one_line(&e)
            ),
            None,
        ),
    }
}

/// VMs launched without the jailer run with less isolation: say so, by name.
fn direct_launches(cfg: &Config) -> Option<Check> {
    let store = banger::store::Store::from_config(cfg);
    let names: Vec<String> = store
        .list()
        .ok()?
        .iter()
        .filter(|r| {
            record::section(r, "jail")
                .and_then(|j| j.get("launcher"))
                .and_then(Value::as_str)
                == Some("direct")
        })
        .filter_map(|r| record::name(r).map(String::from))
        .collect();
    Some(if names.is_empty() {
        Check::new(
            "isolation",
            Status::Ok,
            "every launched VM runs in the jailer's chroot",
            None,
        )
    } else {
        Check::new(
            "isolation",
            Status::Warn,
            format!(
                "launched with --launcher direct (no chroot, no cgroup, only the uid drop): {}",
                names.join(", ")
            ),
            Some("relaunch them through the jailer: banger down NAME && banger up NAME"),
        )
    })
}

/// Every check, in a stable order.
pub fn all(cfg: &Config) -> Vec<Check> {
    let mut out = vec![
        kvm(),
        binary(
            "firecracker",
            cfg.firecracker.as_ref(),
            "BANGER_FIRECRACKER",
        ),
        binary("jailer", cfg.jailer.as_ref(), "BANGER_JAILER"),
        cgroup(),
    ];
    out.extend(tools());
    out.push(reflink(cfg));
    out.push(device_mapper());
    let info = cfg.install_info();
    out.push(crate::service::install(cfg, info.as_ref()));
    if info.is_some() {
        out.push(crate::service::units());
    }
    let (check, ping) = helper(cfg);
    out.push(check);
    if let Some(p) = &ping {
        out.push(crate::service::helper_version(p));
        out.push(crate::service::helper_binary(
            p,
            "firecracker",
            cfg.firecracker.as_deref(),
            "BANGER_FIRECRACKER",
        ));
        out.push(crate::service::helper_binary(
            p,
            "jailer",
            cfg.jailer.as_deref(),
            "BANGER_JAILER",
        ));
    }
    out.push(subnet(cfg));
    out.extend(direct_launches(cfg));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_carry_status_and_fix() {
        let c = Check::new("x", Status::Warn, "m", Some("do y"));
        let r = c.record();
        assert_eq!(r["type"], "check");
        assert_eq!(r["status"], "warn");
        assert_eq!(r["fix"], "do y");
        assert!(Status::Fail > Status::Warn && Status::Warn > Status::Ok);
    }
}
