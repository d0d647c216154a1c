//! `run CMD [ARGS...]`: CMD with only descriptors 0-2, so a process the suite starts as the
//! owner holds nothing the test harness (root) had open. Without this, whatever the owner
//! could steal from its own processes would be the harness's files, not the helper's doing.

use std::os::unix::process::CommandExt;

pub fn main(p: &mut lexopt::Parser) -> Result<(), lexopt::Error> {
    let argv: Vec<std::ffi::OsString> = p.raw_args()?.collect();
    let Some((cmd, args)) = argv.split_first() else {
        return Err("run needs a command".into());
    };
    let fds: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .map_err(|e| format!("/proc/self/fd: {e}"))?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|fd| *fd > 2)
        .collect();
    for fd in fds {
        // SAFETY: `fd` was listed in /proc/self/fd a moment ago; this process is single
        // threaded, so nothing closes or reuses it meanwhile. fcntl(F_SETFD) only marks it
        // close-on-exec (the directory listing's own descriptor is closed already, so EBADF
        // for it is ignored).
        let b = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        let _ = rustix::io::fcntl_setfd(b, rustix::io::FdFlags::CLOEXEC);
    }
    let err = std::process::Command::new(cmd).args(args).exec();
    Err(format!("cannot run {}: {err}", cmd.to_string_lossy()).into())
}
