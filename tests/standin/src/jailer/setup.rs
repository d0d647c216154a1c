//! TEST STAND-IN, not Firecracker's jailer: sets up the jail and execs, removing what it made if
//! it fails before the exec.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::env::Env;
use super::{failure, jail, Failure};

/// What this run made, removed again if it fails before exec. Paths inside the jail are kept
/// relative to it, so they stay valid after the pivot (the jail is then the working directory).
#[derive(Default)]
pub(super) struct Made {
    /// Directories created above and including the jail root, outermost first (host paths).
    dirs: Vec<PathBuf>,
    /// Entries created inside the jail, relative to it, in creation order.
    inside: Vec<PathBuf>,
    pivoted: bool,
}

impl Made {
    pub(super) fn undo(&self, chroot_dir: &Path) {
        let base = if self.pivoted {
            PathBuf::from("/")
        } else {
            chroot_dir.to_path_buf()
        };
        for p in self.inside.iter().rev() {
            let full = base.join(p);
            let _ = fs::remove_file(&full).or_else(|_| fs::remove_dir(&full));
        }
        if !self.pivoted {
            for d in self.dirs.iter().rev() {
                let _ = fs::remove_dir(d);
            }
        }
    }
}

fn create_dirs(path: &Path, made: &mut Made) -> Result<(), Failure> {
    let mut missing = Vec::new();
    let mut p = path.to_path_buf();
    while !p.exists() {
        missing.push(p.clone());
        if !p.pop() {
            break;
        }
    }
    fs::create_dir_all(path).map_err(|e| {
        failure(
            "CreateDir",
            format!("Failed to create directory {}: {e}", path.display()),
        )
    })?;
    made.dirs.extend(missing.into_iter().rev());
    Ok(())
}

fn copy_exec(env: &Env, made: &mut Made) -> Result<(), Failure> {
    let dst = env.chroot_dir.join(&env.exec_name);
    let src_fail = |e: std::io::Error| {
        failure(
            "Open",
            format!("Failed to open {}: {e}", env.exec_file.display()),
        )
    };
    let mut src = fs::File::open(&env.exec_file).map_err(src_fail)?;
    let mode = src.metadata().map_err(src_fail)?.mode();
    let existed = dst.exists();
    let mut out = OpenOptions::new()
        .write(true)
        .create(true)
        .custom_flags(libc::O_NOFOLLOW)
        .mode(mode)
        .open(&dst)
        .map_err(|e| failure("Open", format!("Failed to open {}: {e}", dst.display())))?;
    if !existed {
        made.inside.push(PathBuf::from(&env.exec_name));
    }
    let meta = out
        .metadata()
        .map_err(|e| failure("Metadata", e.to_string()))?;
    if meta.nlink() > 1 {
        return Err(failure(
            "HardLink",
            format!("Detected hard link at: {}", dst.display()),
        ));
    }
    std::os::unix::fs::fchown(&out, Some(env.uid), Some(env.gid)).map_err(|e| {
        failure(
            "ChangeFileOwner",
            format!("Failed to change owner for {}: {e}", dst.display()),
        )
    })?;
    std::io::copy(&mut src, &mut out).map_err(|e| {
        let m = format!(
            "Failed to copy {} to {}: {e}",
            env.exec_file.display(),
            dst.display()
        );
        failure("Copy", m)
    })?;
    Ok(())
}

fn write_record(env: &Env, made: &mut Made) -> Result<(), Failure> {
    let path = env.chroot_dir.join("standin-jailer.json");
    let text = serde_json::to_string_pretty(&env.record).unwrap_or_default();
    if !path.exists() {
        made.inside.push(PathBuf::from("standin-jailer.json"));
    }
    fs::write(&path, text + "\n").map_err(|e| {
        failure(
            "Write",
            format!("Failed to write to {}: {e}", path.display()),
        )
    })
}

/// Inside the jail: the folders and device nodes, owned by uid:gid.
fn populate_jail(env: &Env, made: &mut Made) -> Result<(), Failure> {
    for dir in ["/", "/dev", "/dev/net", "/run"] {
        let p = Path::new(dir);
        if !p.exists() {
            made.inside.push(PathBuf::from(dir.trim_start_matches('/')));
        }
        fs::create_dir_all(p).map_err(|e| {
            failure(
                "CreateDir",
                format!("Failed to create directory {dir}: {e}"),
            )
        })?;
        fs::set_permissions(p, fs::Permissions::from_mode(0o700)).map_err(|e| {
            failure(
                "Chmod",
                format!("Failed to change permissions on {dir}: {e}"),
            )
        })?;
        jail::chown(p, env.uid, env.gid).map_err(|e| {
            failure(
                "ChangeFileOwner",
                format!("Failed to change owner for {dir}: {e}"),
            )
        })?;
    }
    let node = |made: &mut Made, path: &str, major: u32, minor: u32| -> Result<(), Failure> {
        let mk = |e: std::io::Error| {
            failure(
                "MknodDev",
                format!("Failed to create {path} via mknod inside the jail: {e}"),
            )
        };
        jail::mknod_char(Path::new(path), major, minor).map_err(mk)?;
        made.inside
            .push(PathBuf::from(path.trim_start_matches('/')));
        jail::chown(Path::new(path), env.uid, env.gid).map_err(|e| {
            failure(
                "ChangeFileOwner",
                format!("Failed to change owner for {path}: {e}"),
            )
        })
    };
    node(made, "/dev/net/tun", 10, 200)?;
    node(made, "/dev/kvm", 10, 232)?;
    if let Err(f) = node(made, "/dev/urandom", 1, 9) {
        println!(
            "Warning! Could not create /dev/urandom device inside jailer: {}.",
            f.message
        );
        println!("MMDS version 2 will not be available to use.");
    }
    if let Some(minor) = env.uffd_minor {
        node(made, "/dev/userfaultfd", 10, minor)?;
    }
    Ok(())
}

fn write_pidfile(env: &Env, pid: i32) -> Result<(), Failure> {
    let path = PathBuf::from(format!("/{}.pid", env.exec_name));
    let open = OpenOptions::new().write(true).create_new(true).open(&path);
    let mut f = open.map_err(|e| {
        failure(
            "FileOpen",
            format!("Failed to open file {}: {e}", path.display()),
        )
    })?;
    write!(f, "{pid}").map_err(|e| {
        failure(
            "Write",
            format!("Failed to write to {}: {e}", path.display()),
        )
    })
}

fn exec(env: &Env, parent_cpu_us: u64) -> Failure {
    let err = Command::new(format!("/{}", env.exec_name))
        .args(["--id", &env.id])
        .args(["--start-time-us", &env.start_us.to_string()])
        .args(["--start-time-cpu-us", &jail::cpu_time_us().to_string()])
        .args(["--parent-cpu-time-us", &parent_cpu_us.to_string()])
        .args(&env.extra)
        .uid(env.uid)
        .gid(env.gid)
        .exec();
    failure("Exec", format!("Failed to exec into Firecracker: {err}"))
}

/// Builds the jail, pivots into it and daemonizes; returns the jailer's CPU time.
fn prepare(env: &Env, made: &mut Made) -> Result<u64, Failure> {
    create_dirs(&env.chroot_dir, made)?;
    copy_exec(env, made)?;
    write_record(env, made)?;
    if let Some(ns) = &env.netns {
        jail::join_netns(ns).map_err(|m| failure("SetNetNs", m))?;
    }
    if let Some(fsize) = env.fsize {
        jail::set_rlimit(libc::RLIMIT_FSIZE, fsize).map_err(|_| {
            failure(
                "Setrlimit",
                "Failed to set limit for resource: size of file".into(),
            )
        })?;
    }
    jail::set_rlimit(libc::RLIMIT_NOFILE, env.no_file).map_err(|_| {
        let m = "Failed to set limit for resource: number of file descriptors";
        failure("Setrlimit", m.into())
    })?;
    let null = if env.daemonize {
        Some(
            fs::File::open("/dev/null")
                .map_err(|e| failure("Open", format!("Failed to open /dev/null: {e}")))?,
        )
    } else {
        None
    };
    jail::pivot_into(&env.chroot_dir).map_err(|m| failure("PivotRoot", m))?;
    made.pivoted = true;
    populate_jail(env, made)?;
    let mut parent_cpu = jail::cpu_time_us().saturating_sub(env.start_cpu_us);
    if let Some(null) = null {
        let daemon = |e: std::io::Error| failure("Daemonize", format!("Failed to daemonize: {e}"));
        if jail::fork().map_err(daemon)? != 0 {
            jail::exit_now(0);
        }
        jail::setsid()
            .map_err(|e| failure("SetSid", format!("Failed to daemonize: setsid: {e}")))?;
        parent_cpu += jail::cpu_time_us();
        if jail::fork().map_err(daemon)? != 0 {
            jail::exit_now(0);
        }
        jail::redirect_stdio(&null)
            .map_err(|e| failure("Dup2", format!("Failed to duplicate fd: {e}")))?;
        parent_cpu += jail::cpu_time_us();
    }
    Ok(parent_cpu)
}

/// Everything after validation. Returns only on failure.
pub(super) fn run(env: &Env, made: &mut Made) -> Failure {
    let parent_cpu = match prepare(env, made) {
        Ok(c) => c,
        Err(f) => return f,
    };
    if env.new_pid_ns {
        let leader = !env.daemonize && jail::is_session_leader();
        let clone = |e: std::io::Error| {
            failure(
                "Clone",
                format!("Failed cloning into a new child process: {e}"),
            )
        };
        if let Err(e) = jail::unshare_pid_ns() {
            return clone(e);
        }
        match jail::fork() {
            Err(e) => clone(e),
            Ok(0) => {
                if leader {
                    if let Err(e) = jail::setsid() {
                        return failure("SetSid", format!("Failed to daemonize: setsid: {e}"));
                    }
                }
                exec(env, parent_cpu)
            }
            Ok(child) => match write_pidfile(env, child) {
                Ok(()) => jail::exit_now(0),
                Err(f) => f,
            },
        }
    } else {
        if let Err(f) = write_pidfile(env, std::process::id() as i32) {
            return f;
        }
        made.inside
            .push(PathBuf::from(format!("{}.pid", env.exec_name)));
        exec(env, parent_cpu)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn undo_removes_only_what_was_made() {
        let dir = std::env::temp_dir().join(format!("standin-undo-{}", std::process::id()));
        let chroot = dir.join("firecracker").join("id").join("root");
        fs::create_dir_all(&dir).unwrap();
        let mut made = Made::default();
        create_dirs(&chroot, &mut made).unwrap();
        assert_eq!(made.dirs.first(), Some(&dir.join("firecracker")));
        fs::write(chroot.join("firecracker"), b"x").unwrap();
        made.inside.push(PathBuf::from("firecracker"));
        made.undo(&chroot);
        assert!(!dir.join("firecracker").exists());
        assert!(dir.exists());
        fs::remove_dir_all(&dir).unwrap();
    }
}
