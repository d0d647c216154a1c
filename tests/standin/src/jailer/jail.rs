//! TEST STAND-IN, not Firecracker's jailer: the system calls that build the jail, in the order
//! and with the flags the real jailer documents (docs/jailer.md, "Jailer Operation").

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

fn cstr(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Closes every inherited descriptor above stderr.
pub fn close_inherited_fds() {
    // SAFETY: close_range only closes descriptors; none above 2 is in use by this program yet.
    let rc = unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) };
    if rc < 0 {
        for fd in 3..1024 {
            // SAFETY: closing a descriptor we do not use is harmless; EBADF is ignored.
            unsafe { libc::close(fd) };
        }
    }
}

/// Removes every environment variable, as the jailer does before anything else.
pub fn clear_env() {
    for (key, _) in std::env::vars_os() {
        // SAFETY: the jailer is single-threaded here, so no other thread reads the environment.
        unsafe { std::env::remove_var(key) };
    }
}

/// `chown(path, uid, gid)`.
pub fn chown(path: &Path, uid: u32, gid: u32) -> io::Result<()> {
    std::os::unix::fs::chown(path, Some(uid), Some(gid))
}

/// `mknod(path, S_IFCHR | 0600, makedev(major, minor))`.
pub fn mknod_char(path: &Path, major: u32, minor: u32) -> io::Result<()> {
    let c = cstr(path)?;
    // SAFETY: `c` is a NUL-terminated path that outlives the call.
    check(unsafe {
        libc::mknod(
            c.as_ptr(),
            libc::S_IFCHR | libc::S_IRUSR | libc::S_IWUSR,
            libc::makedev(major, minor),
        )
    })
}

/// Joins the network namespace behind `path`.
pub fn join_netns(path: &str) -> Result<(), String> {
    let f = File::open(path).map_err(|e| format!("Failed to open file {path}: {e}"))?;
    // SAFETY: `f` is an open namespace file for the duration of the call.
    check(unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) })
        .map_err(|e| format!("Failed to join network namespace: netns: {e}"))
}

/// Sets both the soft and hard limit of `resource`.
pub fn set_rlimit(resource: libc::__rlimit_resource_t, value: u64) -> io::Result<()> {
    let lim = libc::rlimit {
        rlim_cur: value,
        rlim_max: value,
    };
    // SAFETY: `lim` is a valid rlimit living across the call.
    check(unsafe { libc::setrlimit(resource, &lim) })
}

/// Enters a new mount namespace and pivots its root to `dir`, leaving the old root unmounted:
/// afterwards `/` is `dir` and the host's files are out of reach.
pub fn pivot_into(dir: &Path) -> Result<(), String> {
    let root = c"/";
    let old = c"old_root";
    // SAFETY: unshare takes no pointers.
    check(unsafe { libc::unshare(libc::CLONE_NEWNS) })
        .map_err(|e| format!("Failed to unshare into new mount namespace: {e}"))?;
    // SAFETY: null source/type/data are allowed for a propagation change; `root` is a C string.
    check(unsafe {
        libc::mount(
            std::ptr::null(),
            root.as_ptr(),
            std::ptr::null(),
            libc::MS_SLAVE | libc::MS_REC,
            std::ptr::null(),
        )
    })
    .map_err(|e| format!("Failed to change the propagation type to slave: {e}"))?;
    let c = cstr(dir).map_err(|e| e.to_string())?;
    // SAFETY: `c` is a NUL-terminated path; a bind mount needs no type or data.
    check(unsafe {
        libc::mount(
            c.as_ptr(),
            c.as_ptr(),
            std::ptr::null(),
            libc::MS_BIND | libc::MS_REC,
            std::ptr::null(),
        )
    })
    .map_err(|e| format!("Failed to bind mount the jail root directory: {e}"))?;
    std::env::set_current_dir(dir)
        .map_err(|e| format!("Failed to change current directory: {e}"))?;
    // SAFETY: `old` is a NUL-terminated relative path.
    check(unsafe { libc::mkdir(old.as_ptr(), libc::S_IRUSR | libc::S_IWUSR) }).map_err(|e| {
        format!("Failed to create the jail root directory before pivoting root: {e}")
    })?;
    // SAFETY: both arguments are NUL-terminated paths relative to the current directory.
    let rc = unsafe { libc::syscall(libc::SYS_pivot_root, c".".as_ptr(), old.as_ptr()) };
    check(if rc < 0 { -1 } else { 0 }).map_err(|e| format!("Failed to pivot root: {e}"))?;
    // SAFETY: `root` is a NUL-terminated path.
    check(unsafe { libc::chdir(root.as_ptr()) })
        .map_err(|e| format!("Failed to chdir into chroot directory: {e}"))?;
    // SAFETY: `old` is a NUL-terminated path; MNT_DETACH makes the unmount lazy.
    check(unsafe { libc::umount2(old.as_ptr(), libc::MNT_DETACH) })
        .map_err(|e| format!("Failed to unmount the old jail root: {e}"))?;
    // SAFETY: `old` is a NUL-terminated path to the now empty directory.
    check(unsafe { libc::rmdir(old.as_ptr()) })
        .map_err(|e| format!("Failed to remove old jail root directory: {e}"))
}

/// `fork()`; `Ok(0)` in the child, the child's pid in the parent.
pub fn fork() -> io::Result<libc::pid_t> {
    // SAFETY: the jailer is single-threaded, so the child may run arbitrary code.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(pid)
    }
}

/// `setsid()`.
pub fn setsid() -> io::Result<()> {
    // SAFETY: setsid takes no arguments.
    check(unsafe { libc::setsid() })
}

/// Whether this process leads its session.
pub fn is_session_leader() -> bool {
    // SAFETY: getsid(0) and getpid() take no pointers.
    unsafe { libc::getsid(0) == libc::getpid() }
}

/// Points stdin, stdout and stderr at `null`.
pub fn redirect_stdio(null: &File) -> io::Result<()> {
    for fd in 0..3 {
        // SAFETY: `null` is open; dup2 onto 0..2 replaces the standard descriptors.
        check(unsafe { libc::dup2(null.as_raw_fd(), fd) })?;
    }
    Ok(())
}

/// `unshare(CLONE_NEWPID)`: the next child is pid 1 of a new pid namespace.
pub fn unshare_pid_ns() -> io::Result<()> {
    // SAFETY: unshare takes no pointers.
    check(unsafe { libc::unshare(libc::CLONE_NEWPID) })
}

/// Leaves at once, without running destructors or flushing, like the real jailer's parents.
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit never returns and touches no Rust state.
    unsafe { libc::_exit(code) }
}

/// CPU time used by this process, in microseconds.
pub fn cpu_time_us() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    (ts.tv_sec as u64) * 1_000_000 + (ts.tv_nsec as u64) / 1000
}

/// Monotonic time in microseconds.
pub fn monotonic_us() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64) * 1_000_000 + (ts.tv_nsec as u64) / 1000
}

/// The minor number of `/dev/userfaultfd` on this host, from `/proc/misc`.
pub fn userfaultfd_minor() -> Option<u32> {
    let misc = std::fs::read_to_string("/proc/misc").ok()?;
    misc.lines().find_map(|l| {
        let mut it = l.split_whitespace();
        let minor = it.next()?;
        (it.next()? == "userfaultfd")
            .then(|| minor.parse().ok())
            .flatten()
    })
}
