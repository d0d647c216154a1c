//! `banger-image build NAME --debian SUITE`: the default image from the host's distribution
//! packages alone. debootstrap (minbase) into a staging tree with openssh-server, iproute2,
//! a static busybox and the distribution's kernel package; banger's init
//! (`/sbin/banger-init`); the guest agent (`/usr/local/sbin/banger-agent`, started by
//! banger-init, with a systemd unit for images booted with systemd) unless `--no-agent`; the
//! kernel's bzImage turned into an ELF vmlinux; an initrd (with the virtio and ext4 modules)
//! when the kernel has them as modules; then `mkfs.ext4 -d`. Needs root (debootstrap chroots
//! and sets ownership).

use crate::check;
use crate::import::{mkfs_from_dir, owner, ImageError};
use crate::store::{io, Images, DEFAULT_BOOT_ARGS};
use banger::config::Config;
use banger::record::Record;
use serde_json::json;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

pub struct DebianArgs<'a> {
    pub name: &'a str,
    pub suite: &'a str,
    pub packages: &'a [String],
    pub mirror: Option<&'a str>,
    pub size: Option<u64>,
    pub boot_args: Option<&'a str>,
    /// Install the guest agent (when this host has a usable one).
    pub agent: bool,
}

/// banger's guest init: mounts, hostname, modules, network (the kernel's `ip=` when it set
/// an address, else `/etc/banger/net.env` written by banger-snap), sshd, the guest agent
/// (after sshd, so a guest whose agent answers also takes SSH), then reaps.
pub const INIT: &str = r#"#!/bin/sh
# banger-init: PID 1 for banger guests (written by banger-image build --debian).
# Network: an address the kernel set from ip= wins; else /etc/banger/net.env (banger-snap).
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
BB=/bin/busybox
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mountpoint -q /dev || mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts /dev/pts
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /dev/shm
mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /run
mount -o remount,rw / 2>/dev/null
mkdir -p /run/sshd /tmp
[ -s /etc/hostname ] && $BB hostname -F /etc/hostname
if [ -d "/lib/modules/$(uname -r)" ]; then
  cat /sys/bus/*/devices/*/modalias 2>/dev/null | sort -u | xargs -r modprobe -qab 2>/dev/null
  modprobe -qa virtio_net 2>/dev/null
fi
ip link set lo up
DEV=eth0
if ! ip -4 addr show dev "$DEV" 2>/dev/null | grep -q inet; then
  if [ -r /etc/banger/net.env ]; then
    . /etc/banger/net.env
    if [ -n "$BANGER_MAC" ]; then
      for d in /sys/class/net/*; do
        [ "$(cat "$d/address" 2>/dev/null)" = "$BANGER_MAC" ] && DEV=${d##*/}
      done
    fi
    ip link set "$DEV" up
    [ -n "$BANGER_IP" ] && ip addr add "$BANGER_IP/$BANGER_PREFIX" dev "$DEV"
    [ -n "$BANGER_GATEWAY" ] && ip route replace default via "$BANGER_GATEWAY" dev "$DEV"
  fi
fi
ip link set "$DEV" up 2>/dev/null
/usr/sbin/sshd
[ -x /usr/local/sbin/banger-agent ] && /usr/local/sbin/banger-agent &
echo "BANGER_GUEST_READY" > /dev/console
shutdown_now() { kill -TERM -1; sleep 0.5; sync; mount -o remount,ro /; $BB reboot -f; }
trap shutdown_now INT TERM USR1 USR2 PWR
while true; do wait; sleep 1; done
"#;

/// The host's Debian mirror from its apt sources (deb822 `URIs:` or `deb URL`), if any.
pub fn host_mirror() -> Option<String> {
    let mut text = String::new();
    if let Ok(rd) = std::fs::read_dir("/etc/apt/sources.list.d") {
        for e in rd.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if n.ends_with(".sources") || n.ends_with(".list") {
                text.push_str(&std::fs::read_to_string(e.path()).unwrap_or_default());
                text.push('\n');
            }
        }
    }
    text.push_str(&std::fs::read_to_string("/etc/apt/sources.list").unwrap_or_default());
    mirror_from(&text)
}

/// The first Debian (non-security) mirror in apt source text.
pub fn mirror_from(text: &str) -> Option<String> {
    for line in text.lines() {
        let l = line.trim();
        if l.starts_with('#') {
            continue;
        }
        let url = if let Some(rest) = l.strip_prefix("URIs:") {
            rest.split_whitespace().next()
        } else if let Some(rest) = l.strip_prefix("deb ") {
            rest.split_whitespace().find(|w| w.starts_with("http"))
        } else {
            None
        };
        if let Some(u) = url {
            if u.starts_with("http") && u.contains("debian") && !u.contains("-security") {
                return Some(u.to_string());
            }
        }
    }
    None
}

/// The distribution's kernel package for this machine.
fn kernel_package() -> &'static str {
    if cfg!(target_arch = "aarch64") {
        "linux-image-cloud-arm64"
    } else {
        "linux-image-cloud-amd64"
    }
}

/// `CONFIG_X=m` in a kernel config.
pub fn is_module(config: &str, key: &str) -> bool {
    config.lines().any(|l| l.trim() == format!("{key}=m"))
}

/// The kernel options a guest needs at boot; an initrd is needed if any is a module.
pub const BOOT_DRIVERS: &[(&str, &str)] = &[
    ("CONFIG_VIRTIO_MMIO", "virtio_mmio"),
    ("CONFIG_VIRTIO_BLK", "virtio_blk"),
    ("CONFIG_EXT4_FS", "ext4"),
    ("CONFIG_VIRTIO_NET", "virtio_net"),
];

fn newest(dir: &Path, prefix: &str) -> Option<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
        .map(|e| e.path())
        .collect();
    v.sort();
    v.pop()
}

fn write(path: &Path, text: &str, mode: u32) -> Result<(), ImageError> {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).map_err(io("create", d))?;
    }
    let _ = std::fs::remove_file(path);
    std::fs::write(path, text).map_err(io("write", path))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(io("chmod", path))?;
    Ok(())
}

/// A step of the build, on stderr (for people, terminal or log).
fn progress(msg: &str) {
    eprintln!("{}: {msg}", crate::BIN);
}

/// Runs a long tool with its output shown as progress and kept for the error.
fn run_long(
    cmd: &mut std::process::Command,
    package: &'static str,
    what: &str,
) -> Result<(), ImageError> {
    let mut p = banger::progress::Progress::start(crate::BIN, what);
    let r = banger::tool::run_with_progress(cmd, package, &mut p);
    p.finish(r.is_ok());
    Ok(r?)
}

/// Installs the guest agent and its systemd unit (enabled) into the tree; banger-init starts
/// it. Returns image.json's `agent`, or `None` (with a warning) when this host has no agent
/// a guest can run.
fn install_agent(cfg: &Config, root: &Path) -> Result<Option<serde_json::Value>, ImageError> {
    use banger::agent::guest::{unit, AGENT_PATH, UNIT_PATH, UNIT_WANTS};
    let bin = banger::agent::guest_binary_path(cfg)
        .ok_or_else(|| "no banger-agent for guests on this host (install it with 'make install', or set \"agent\" in config.json)".to_string())
        .and_then(|p| {
            let b = banger::fsx::read_path_capped(&p, 64 << 20)
                .map_err(|e| format!("{}: {}", p.display(), banger::cli::one_line(&e)))?;
            banger::agent::check_guest_binary(&b).map_err(|w| format!("{}: {w}", p.display()))?;
            Ok(b)
        });
    let bin = match bin {
        Ok(b) => b,
        Err(w) => {
            eprintln!("{}: warning: {w}; the image gets no agent", crate::BIN);
            return Ok(None);
        }
    };
    let rel = |p: &str| root.join(p.trim_start_matches('/'));
    let path = rel(AGENT_PATH);
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).map_err(io("create", d))?;
    }
    let _ = std::fs::remove_file(&path);
    std::fs::write(&path, &bin).map_err(io("write", &path))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
        .map_err(io("chmod", &path))?;
    write(&rel(UNIT_PATH), &unit(), 0o644)?;
    let wants = rel(UNIT_WANTS);
    if let Some(d) = wants.parent() {
        std::fs::create_dir_all(d).map_err(io("create", d))?;
    }
    let _ = std::fs::remove_file(&wants);
    std::os::unix::fs::symlink("../banger-agent.service", &wants).map_err(io("link", &wants))?;
    Ok(Some(json!({
        "path": AGENT_PATH,
        "version": banger::VERSION,
        "start": "banger-init",
        "size_bytes": bin.len(),
    })))
}

pub fn build(cfg: &Config, a: &DebianArgs) -> Result<Record, ImageError> {
    if !rustix::process::geteuid().is_root() {
        return Err(ImageError::Other(
            "build --debian needs root (debootstrap): run it with sudo".into(),
        ));
    }
    if banger::cli::which("debootstrap").is_none() {
        return Err(ImageError::Other(
            "debootstrap is not installed: apt-get install debootstrap".into(),
        ));
    }
    let mirror = a
        .mirror
        .map(String::from)
        .or_else(host_mirror)
        .unwrap_or_else(|| "http://deb.debian.org/debian".into());
    let images = Images::new(cfg);
    let mut st = images.stage(a.name)?;
    let root = st.path(".root");
    std::fs::create_dir(&root).map_err(io("create", &root))?;
    let mut include = vec![
        "openssh-server",
        "iproute2",
        "busybox-static",
        "ca-certificates",
        "kmod",
        "initramfs-tools",
        kernel_package(),
    ];
    include.extend(a.packages.iter().map(String::as_str));
    let mut cmd = std::process::Command::new("debootstrap");
    cmd.args([
        "--variant=minbase",
        &format!("--include={}", include.join(",")),
    ])
    .arg(a.suite)
    .arg(&root)
    .arg(&mirror);
    progress(&format!(
        "debootstrap {} from {mirror} (takes minutes)",
        a.suite
    ));
    run_long(&mut cmd, "debootstrap", "debootstrap")?;

    // The guest's files.
    write(&root.join("sbin/banger-init"), INIT, 0o755)?;
    write(
        &root.join("etc/ssh/sshd_config.d/banger.conf"),
        "PermitRootLogin prohibit-password\nUseDNS no\n",
        0o644,
    )?;
    write(&root.join("etc/hostname"), &format!("{}\n", a.name), 0o644)?;
    write(
        &root.join("etc/fstab"),
        "/dev/vda / ext4 rw,relatime 0 1\n",
        0o644,
    )?;
    std::fs::create_dir_all(root.join("etc/banger")).map_err(io("create", &root))?;
    let agent = if a.agent {
        install_agent(cfg, &root)?
    } else {
        None
    };
    if let Some(v) = agent {
        st.extra.insert("agent".into(), v);
    }
    // No two clones may share host keys: the image carries none; banger-snap writes fresh ones.
    if let Ok(rd) = std::fs::read_dir(root.join("etc/ssh")) {
        for e in rd.flatten() {
            if e.file_name().to_string_lossy().starts_with("ssh_host_") {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }

    // The kernel: bzImage -> ELF vmlinux; an initrd when the boot drivers are modules.
    let boot = root.join("boot");
    let vmlinuz = newest(&boot, "vmlinuz-").ok_or_else(|| {
        ImageError::Other(format!(
            "no kernel in {} after debootstrap (is {} in {}?)",
            boot.display(),
            kernel_package(),
            a.suite
        ))
    })?;
    let version = vmlinuz
        .file_name()
        .map(|n| {
            n.to_string_lossy()
                .trim_start_matches("vmlinuz-")
                .to_string()
        })
        .unwrap_or_default();
    progress(&format!("extracting vmlinux from {}", vmlinuz.display()));
    let elf = check::extract_vmlinux(&vmlinuz)?;
    let vmlinux = st.path("vmlinux");
    std::fs::write(&vmlinux, &elf).map_err(io("write", &vmlinux))?;
    check::kernel(&vmlinux)?;
    let config =
        std::fs::read_to_string(boot.join(format!("config-{version}"))).unwrap_or_default();
    let modules: Vec<&str> = BOOT_DRIVERS
        .iter()
        .filter(|(k, _)| is_module(&config, k))
        .map(|(_, m)| *m)
        .collect();
    let mut has_initrd = false;
    if !modules.is_empty() {
        progress(&format!("initrd with {}", modules.join(", ")));
        let list = root.join("etc/initramfs-tools/modules");
        let mut text = std::fs::read_to_string(&list).unwrap_or_default();
        for m in &modules {
            text.push_str(m);
            text.push('\n');
        }
        write(&list, &text, 0o644)?;
        let initramfs = |mode: &str| {
            run_long(
                std::process::Command::new("chroot").arg(&root).args([
                    "update-initramfs",
                    mode,
                    "-k",
                    &version,
                ]),
                "initramfs-tools",
                "update-initramfs",
            )
        };
        initramfs("-c").or_else(|_| initramfs("-u"))?;
        let initrd = boot.join(format!("initrd.img-{version}"));
        let to = st.path("initrd");
        std::fs::copy(&initrd, &to).map_err(io("copy", &initrd))?;
        has_initrd = true;
    }
    // The guest boots the kernel from the image store, not from /boot.
    for prefix in ["vmlinuz-", "initrd.img-", "System.map-"] {
        while let Some(p) = newest(&boot, prefix) {
            let _ = std::fs::remove_file(p);
        }
    }
    let _ = std::fs::remove_dir_all(root.join("var/cache/apt/archives"));
    let _ = std::fs::create_dir_all(root.join("var/cache/apt/archives/partial"));
    let _ = std::fs::remove_dir_all(root.join("var/lib/apt/lists"));
    let _ = std::fs::create_dir_all(root.join("var/lib/apt/lists/partial"));

    progress("making the ext4 rootfs");
    let size = mkfs_from_dir(&st, &root, a.name, a.size)?;
    let _ = std::fs::remove_dir_all(&root);
    st.record("rootfs.ext4")?;
    st.record("vmlinux")?;
    if has_initrd {
        st.record("initrd")?;
    }
    let boot_args = a
        .boot_args
        .map(String::from)
        .unwrap_or_else(|| format!("{DEFAULT_BOOT_ARGS} init=/sbin/banger-init"));
    let source = json!({
        "kind": "debian",
        "suite": a.suite,
        "mirror": mirror,
        "packages": include,
        "kernel": version,
        "initrd_modules": modules,
        "size_bytes": size,
    });
    Ok(images.commit(st, source, &boot_args, owner(cfg))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirrors() {
        let deb822 = "Types: deb\n# http://snapshot.debian.org/x\nURIs: http://deb.debian.org/debian\nSuites: bookworm\n\nURIs: http://deb.debian.org/debian-security\n";
        assert_eq!(
            mirror_from(deb822).as_deref(),
            Some("http://deb.debian.org/debian")
        );
        let one = "# deb http://old/debian x\ndeb [arch=amd64] http://ftp.de.debian.org/debian bookworm main\n";
        assert_eq!(
            mirror_from(one).as_deref(),
            Some("http://ftp.de.debian.org/debian")
        );
        assert_eq!(
            mirror_from("deb http://example.com/ubuntu jammy main"),
            None
        );
    }

    #[test]
    fn modules() {
        let c = "CONFIG_VIRTIO_BLK=m\nCONFIG_EXT4_FS=y\n# CONFIG_X is not set\n";
        assert!(is_module(c, "CONFIG_VIRTIO_BLK"));
        assert!(!is_module(c, "CONFIG_EXT4_FS"));
    }
}
