//! Checks made before a command changes anything on the host: what the later steps need
//! (the image, `/dev/kvm`, Firecracker and the jailer *as the root helper will see them*), so
//! that a missing piece is reported with its fix while there is still nothing to undo.
//!
//! Firecracker and the jailer are the helper's: it launches them from its own configuration
//! (then root's PATH), never from the caller's environment. So the check asks the helper
//! (`ping` answers with the paths it will use); as root with no helper answering, the steps
//! run the helper's operations in process, and the check looks where those look.

use crate::client::Helper;
use crate::config::Config;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// Something a later step would fail on: what, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub what: String,
    pub fix: String,
}

impl Problem {
    pub fn new(what: impl Into<String>, fix: impl Into<String>) -> Problem {
        Problem {
            what: what.into(),
            fix: fix.into(),
        }
    }

    /// Prints `BIN: error: NAME: WHAT` and `  fix: FIX` on stderr.
    pub fn print(&self, bin: &str, name: &str) {
        eprintln!("{bin}: error: {name}: {}", self.what);
        eprintln!("  fix: {}", self.fix);
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (fix: {})", self.what, self.fix)
    }
}

/// The image `name` is in the store with what a VM needs from it: its root filesystem (to
/// make a disk from, `rootfs`) and its kernel.
pub fn image(cfg: &Config, name: &str, rootfs: bool) -> Result<(), Problem> {
    let dir = cfg.images_dir().join(name);
    let make = format!(
        "make it: sudo banger image build {name} --debian bookworm (or banger image import {name} --rootfs FILE --kernel FILE); banger image list shows the images"
    );
    if !dir.join("image.json").is_file() {
        return Err(Problem::new(
            format!("no image named {name} in {}", cfg.images_dir().display()),
            make,
        ));
    }
    let mut need = vec!["vmlinux"];
    if rootfs {
        need.push("rootfs.ext4");
    }
    for f in need {
        if !dir.join(f).is_file() {
            return Err(Problem::new(
                format!("the image {name} has no {f} ({})", dir.join(f).display()),
                format!("remove it (banger image rm {name}) and {make}"),
            ));
        }
    }
    Ok(())
}

/// The KVM device: present (the jailer makes the VM's own node from it) and, for the direct
/// launcher, read-write for the owner Firecracker runs as.
/// `BANGER_KVM_DEVICE` names another node to check (a host whose KVM device lives elsewhere
/// for this check; the test suite's stand-in tier on a host without KVM).
pub fn kvm(cfg: &Config, direct: bool) -> Result<(), Problem> {
    let path = std::env::var_os("BANGER_KVM_DEVICE")
        .filter(|p| !p.is_empty())
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| "/dev/kvm".into());
    kvm_at(&path, cfg, direct)
}

fn kvm_at(path: &Path, cfg: &Config, direct: bool) -> Result<(), Problem> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) => {
            return Err(Problem::new(
                format!("{} is missing ({e}): this host cannot run Firecracker", path.display()),
                "enable virtualization (KVM) in the firmware or the hypervisor and load kvm_intel or kvm_amd (banger doctor checks it)",
            ))
        }
    };
    if !meta.file_type().is_char_device() {
        return Err(Problem::new(
            format!("{} is not a character device", path.display()),
            "load the kvm module (kvm_intel or kvm_amd) so the kernel makes the device",
        ));
    }
    if !direct {
        return Ok(());
    }
    let me = rustix::process::geteuid().as_raw();
    let owner = cfg.owner_uid.filter(|_| me == 0).unwrap_or(me);
    let ok = if owner == me && me != 0 {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .is_ok()
    } else {
        let mode = meta.mode();
        owner == 0
            || mode & 0o006 == 0o006
            || (meta.uid() == owner && mode & 0o600 == 0o600)
            || (mode & 0o060 == 0o060 && in_group(owner, meta.gid()))
    };
    if ok {
        Ok(())
    } else {
        Err(Problem::new(
            format!(
                "the direct launcher runs Firecracker as uid {owner}, who cannot open {} read-write",
                path.display()
            ),
            "add the owner to the device's group (usually kvm), or launch through the jailer (the default), which gives each VM its own node",
        ))
    }
}

/// Whether `uid` may search every directory above `path` and execute it (mode bits, as the
/// kernel checks them without ACLs); `Err` names the first place it may not.
pub fn can_exec(path: &Path, uid: u32) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    if uid == 0 {
        return Ok(());
    }
    let allows = |m: &std::fs::Metadata, bit: u32| {
        let mode = m.mode();
        if m.uid() == uid {
            mode & (bit << 6) != 0
        } else if in_group(uid, m.gid()) {
            mode & (bit << 3) != 0
        } else {
            mode & bit != 0
        }
    };
    let mut dir = PathBuf::from("/");
    let parent = path.parent().unwrap_or(Path::new("/"));
    for c in parent.components().skip(1) {
        dir.push(c);
        match std::fs::metadata(&dir) {
            Ok(m) if allows(&m, 0o1) => {}
            Ok(m) => {
                return Err(format!(
                    "uid {uid} may not enter {} (mode {:o}, owner uid {})",
                    dir.display(),
                    m.mode() & 0o7777,
                    m.uid()
                ))
            }
            Err(e) => return Err(format!("{}: {e}", dir.display())),
        }
    }
    match std::fs::metadata(path) {
        Ok(m) if allows(&m, 0o1) => Ok(()),
        Ok(_) => Err(format!("uid {uid} may not execute {}", path.display())),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// Whether `uid`'s passwd entry or supplementary groups include `gid`.
fn in_group(uid: u32, gid: u32) -> bool {
    use nix::unistd::{Gid, Uid, User};
    let Ok(Some(user)) = User::from_uid(Uid::from_raw(uid)) else {
        return false;
    };
    if user.gid.as_raw() == gid {
        return true;
    }
    let Ok(name) = std::ffi::CString::new(user.name) else {
        return false;
    };
    nix::unistd::getgrouplist(&name, user.gid)
        .map(|g| g.contains(&Gid::from_raw(gid)))
        .unwrap_or(false)
}

/// Where a binary the helper launches comes from: the helper's `ping` answer, or (root, no
/// helper) where the in-process operations look.
#[derive(Debug, Clone, PartialEq)]
pub struct Launchers {
    pub firecracker: Option<PathBuf>,
    pub jailer: Option<PathBuf>,
    /// `the root helper` or `this process (root, no helper answering)`.
    pub who: &'static str,
}

/// Asks the helper which Firecracker and jailer it will launch.
pub fn launchers(cfg: &Config) -> Result<Launchers, Problem> {
    let root = rustix::process::geteuid().is_root();
    let mut helper = Helper::new(cfg, None).with_answer_timeout(std::time::Duration::from_secs(10));
    if root {
        // Root's steps do not wait for a helper that is away: they run its operations.
        helper = helper.with_wait(std::time::Duration::ZERO);
    }
    match helper.call("ping", json!({})) {
        Ok(v) => Ok(from_ping(&v)),
        Err(_) if root => Ok(Launchers {
            firecracker: cfg
                .firecracker
                .clone()
                .or_else(|| crate::cli::which("firecracker")),
            jailer: cfg.jailer.clone().or_else(|| crate::cli::which("jailer")),
            who: "this process (root, no helper answering)",
        }),
        Err(e) => Err(Problem::new(
            crate::cli::one_line(&e),
            "see above; banger doctor checks the whole host",
        )),
    }
}

/// Firecracker, and the jailer unless `direct`, are there and executable for whoever launches
/// them; a caller whose own `BANGER_FIRECRACKER`/`BANGER_JAILER` differs is told that the
/// helper does not use it.
pub fn binaries(cfg: &Config, direct: bool) -> Result<(), Problem> {
    let l = launchers(cfg)?;
    check_binaries(&l, cfg, direct)
}

fn check_binaries(l: &Launchers, cfg: &Config, direct: bool) -> Result<(), Problem> {
    let mut need = vec![(
        "firecracker",
        &l.firecracker,
        cfg.firecracker.as_ref(),
        "BANGER_FIRECRACKER",
    )];
    if !direct {
        need.push(("jailer", &l.jailer, cfg.jailer.as_ref(), "BANGER_JAILER"));
    }
    let helper = l.who == "the root helper";
    for (what, found, mine, var) in need {
        let fix = if helper {
            format!("sudo banger system install --{what} PATH (the helper takes it from /etc/banger/config.json, never from your environment)")
        } else {
            format!("install Firecracker's release binaries on root's PATH, or set {var} (or the config key \"{what}\")")
        };
        let fix = match (mine, helper) {
            (Some(m), true) if found.as_deref() != Some(m.as_path()) => {
                format!("{fix}; your {var}={} is not what it launches", m.display())
            }
            _ => fix,
        };
        match found {
            None => {
                return Err(Problem::new(
                    format!("{} has no {what} binary to launch", l.who),
                    fix,
                ))
            }
            Some(p) if !crate::cli::is_executable(p) => {
                return Err(Problem::new(
                    format!(
                        "{} would launch {what} from {}, which is not an executable file",
                        l.who,
                        p.display()
                    ),
                    fix,
                ))
            }
            Some(p) if direct && what == "firecracker" => {
                // Without the jailer Firecracker runs straight from there, as the owner.
                let me = rustix::process::geteuid().as_raw();
                let owner = cfg.owner_uid.filter(|_| me == 0).unwrap_or(me);
                if let Err(why) = can_exec(p, owner) {
                    return Err(Problem::new(
                        format!(
                            "the direct launcher runs {} as uid {owner}, who cannot reach it: {why}",
                            p.display()
                        ),
                        "put Firecracker where every user may run it (e.g. /usr/local/bin), or launch through the jailer (the default)",
                    ));
                }
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// The facts a `ping` answer gives, for tests and for callers that already pinged.
pub fn from_ping(v: &Value) -> Launchers {
    let path = |k: &str| v[k]["path"].as_str().map(PathBuf::from);
    Launchers {
        firecracker: path("firecracker"),
        jailer: path("jailer"),
        who: "the root helper",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(dir: &Path) -> Config {
        let mut c = Config::load().unwrap();
        c.state_dir = dir.to_path_buf();
        c.firecracker = None;
        c.jailer = None;
        c
    }

    struct Tmp(PathBuf);
    impl Drop for Tmp {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn tmp(tag: &str) -> Tmp {
        let d = std::env::temp_dir().join(format!("banger-preflight-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        Tmp(d)
    }

    #[test]
    fn images_need_their_files() {
        let t = tmp("img");
        let c = cfg(&t.0);
        let e = image(&c, "default", true).unwrap_err();
        assert!(e.what.starts_with("no image named default"), "{e}");
        assert!(e
            .fix
            .contains("banger image build default --debian bookworm"));
        let d = t.0.join("images/default");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("image.json"), "{}").unwrap();
        std::fs::write(d.join("vmlinux"), "k").unwrap();
        assert!(image(&c, "default", false).is_ok());
        let e = image(&c, "default", true).unwrap_err();
        assert!(e.what.contains("has no rootfs.ext4"), "{e}");
        std::fs::write(d.join("rootfs.ext4"), "r").unwrap();
        assert!(image(&c, "default", true).is_ok());
    }

    #[test]
    fn kvm_must_be_a_device() {
        let t = tmp("kvm");
        let c = cfg(&t.0);
        let e = kvm_at(&t.0.join("kvm"), &c, false).unwrap_err();
        assert!(e.what.contains("is missing"), "{e}");
        std::fs::write(t.0.join("kvm"), "").unwrap();
        let e = kvm_at(&t.0.join("kvm"), &c, false).unwrap_err();
        assert!(e.what.contains("not a character device"), "{e}");
        assert!(kvm_at(Path::new("/dev/null"), &c, true).is_ok());
    }

    #[test]
    fn reachability_follows_the_directories_above() {
        assert!(can_exec(Path::new("/bin/sh"), 65534).is_ok());
        assert!(
            can_exec(Path::new("/etc/passwd"), 65534).is_err(),
            "not executable"
        );
        let t = tmp("reach");
        use std::os::unix::fs::PermissionsExt;
        let priv_dir = t.0.join("priv");
        std::fs::create_dir(&priv_dir).unwrap();
        std::fs::copy("/bin/true", priv_dir.join("true")).unwrap();
        std::fs::set_permissions(&t.0, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&priv_dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        let me = rustix::process::geteuid().as_raw();
        if me == 0 {
            let e = can_exec(&priv_dir.join("true"), 65534).unwrap_err();
            assert!(e.contains("may not enter") && e.contains("priv"), "{e}");
            assert!(can_exec(&priv_dir.join("true"), 0).is_ok());
        }
    }

    #[test]
    fn binaries_are_the_helpers_not_the_callers() {
        let t = tmp("bin");
        let mut c = cfg(&t.0);
        c.firecracker = Some("/home/me/fc".into());
        let none = from_ping(&json!({"firecracker": null, "jailer": null}));
        let e = check_binaries(&none, &c, false).unwrap_err();
        assert_eq!(
            e.what,
            "the root helper has no firecracker binary to launch"
        );
        assert!(e
            .fix
            .contains("sudo banger system install --firecracker PATH"));
        assert!(e
            .fix
            .contains("your BANGER_FIRECRACKER=/home/me/fc is not what it launches"));
        let sh = from_ping(&json!({"firecracker": {"path": "/bin/sh"}, "jailer": null}));
        assert!(
            check_binaries(&sh, &c, true).is_ok(),
            "direct needs no jailer"
        );
        let e = check_binaries(&sh, &c, false).unwrap_err();
        assert!(e.what.contains("no jailer"), "{e}");
        let bad = from_ping(&json!({"firecracker": {"path": "/etc/passwd"}}));
        let e = check_binaries(&bad, &c, true).unwrap_err();
        assert!(
            e.what
                .contains("/etc/passwd, which is not an executable file"),
            "{e}"
        );
    }
}
