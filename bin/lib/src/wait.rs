//! Waiting on the thing itself rather than sleeping and looking again: a process's exit on
//! its pidfd, a file appearing or changing in a directory on an inotify watch. A waiter wakes
//! the moment the event happens, and costs nothing while it waits.

use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::fs::inotify::{self, CreateFlags, WatchFlags};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

fn timespec(d: Duration) -> Timespec {
    Timespec {
        tv_sec: d.as_secs().min(i64::MAX as u64) as i64,
        tv_nsec: i64::from(d.subsec_nanos()),
    }
}

/// Waits until one of `fds` is readable or `timeout` passes; returns which were readable.
pub fn readable(fds: &[BorrowedFd<'_>], timeout: Duration) -> Vec<bool> {
    let mut p: Vec<PollFd> = fds.iter().map(|f| PollFd::new(f, PollFlags::IN)).collect();
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match poll(&mut p, Some(&timespec(left))) {
            Err(rustix::io::Errno::INTR) if !left.is_zero() => continue,
            _ => break,
        }
    }
    p.iter().map(|x| !x.revents().is_empty()).collect()
}

/// A process pinned by a pidfd: its exit can be waited on, and its pid never names another
/// process while this is held.
#[derive(Debug)]
pub struct Pidfd(OwnedFd);

impl Pidfd {
    /// A pidfd for `pid`, or `None` when it is gone (or pidfds are unavailable, Linux < 5.3).
    /// The caller checks afterwards that the pid is still the process it means.
    pub fn open(pid: i32) -> Option<Pidfd> {
        let p = rustix::process::Pid::from_raw(pid)?;
        rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty())
            .ok()
            .map(Pidfd)
    }

    /// A pidfd for `pid` only if it is still the process that started at `start_time`
    /// (`/proc/PID/stat` field 22), checked after the pidfd pinned it: never a reused pid.
    pub fn pin(pid: i32, start_time: u64) -> Option<Pidfd> {
        let fd = Pidfd::open(pid)?;
        let same = crate::find_pid::Proc::default()
            .info(pid)
            .is_some_and(|i| !i.is_dead() && i.start_time == start_time);
        same.then_some(fd)
    }

    /// True once the process has ended.
    pub fn exited(&self) -> bool {
        self.wait(Duration::ZERO)
    }

    /// Waits up to `timeout` for the process to end; true when it has.
    pub fn wait(&self, timeout: Duration) -> bool {
        readable(&[self.0.as_fd()], timeout)[0]
    }
}

impl AsFd for Pidfd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

/// An inotify watch on one directory, for the creation, change, rename into and removal of
/// its entries.
///
/// Closing an inotify instance that held a watch waits for the kernel to free the watch
/// (`fsnotify_destroy_group` flushes the mark reaper, an SRCU grace period): 13-15 ms on the
/// hosts measured, half a `banger up`'s own cost when it fell in the step's exit. So the
/// instance is never closed where someone waits: a long-lived process (the helper, after
/// [`close_watches_in_threads`]) closes it in a thread of its own; any other closes it in a
/// child it does not wait for ([`close_detached`]), as systemd's `asynchronous_close` does.
#[derive(Debug)]
pub struct DirWatch(Option<OwnedFd>);

static IN_THREADS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// For a long-lived process: a [`DirWatch`] that ends is closed in a short-lived thread (no
/// process to fork, nothing left behind once the close is through).
pub fn close_watches_in_threads() {
    IN_THREADS.store(true, std::sync::atomic::Ordering::Relaxed);
}

fn drain(fd: &OwnedFd) {
    let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 4096];
    let mut r = inotify::Reader::new(fd, &mut buf);
    while r.next().is_ok() {}
}

/// Children started by [`close_detached`] that may not have been waited for yet.
static CLOSERS: std::sync::Mutex<Vec<i32>> = std::sync::Mutex::new(Vec::new());

/// Closes `fd` without waiting for what its last close waits for: a child (forked, holding
/// the only other reference and nothing else) makes the last close and exits; this process's
/// own close returns at once. Children of earlier calls that have ended are reaped here; any
/// left when this process exits are reaped by whoever inherits them. Falls back to an
/// ordinary close when the fork fails.
pub fn close_detached(fd: OwnedFd) {
    let raw = fd.as_raw_fd();
    {
        let mut c = CLOSERS.lock().unwrap_or_else(|p| p.into_inner());
        c.retain(|&pid| {
            // SAFETY: waitpid takes no pointer but the null status; WNOHANG never blocks,
            // and the pid is a child this process forked and has not reaped.
            unsafe { nix::libc::waitpid(pid, std::ptr::null_mut(), nix::libc::WNOHANG) == 0 }
        });
    }
    // SAFETY: the child only makes async-signal-safe system calls (close_range, close,
    // _exit) on integers it owns, touching no lock, allocator or Rust state, so a fork from
    // a threaded process is sound.
    let pid = unsafe { nix::libc::fork() };
    if pid == 0 {
        // SAFETY: see above; close_range on the ranges around `raw` closes only descriptors
        // of this child (stdout included, so no reader waits on it), then the last close.
        unsafe {
            if raw > 0 {
                nix::libc::syscall(nix::libc::SYS_close_range, 0u32, (raw - 1) as u32, 0u32);
            }
            nix::libc::syscall(nix::libc::SYS_close_range, (raw + 1) as u32, u32::MAX, 0u32);
            nix::libc::close(raw);
            nix::libc::_exit(0);
        }
    }
    if pid > 0 {
        CLOSERS.lock().unwrap_or_else(|p| p.into_inner()).push(pid);
    }
    drop(fd);
}

const DIR_EVENTS: WatchFlags = WatchFlags::CREATE
    .union(WatchFlags::MODIFY)
    .union(WatchFlags::CLOSE_WRITE)
    .union(WatchFlags::MOVED_TO)
    .union(WatchFlags::DELETE)
    .union(WatchFlags::ONLYDIR);

impl DirWatch {
    /// Watches the directory at `dir` (resolved as the caller, who may trust it).
    pub fn new(dir: &Path) -> std::io::Result<DirWatch> {
        DirWatch::add(dir)
    }

    /// Watches the directory the caller already holds open: the watch goes on that very
    /// directory (through `/proc/self/fd`), whatever its path leads to now, with no lookup in
    /// any directory someone else can write.
    pub fn on_fd(dir: &impl AsFd) -> std::io::Result<DirWatch> {
        let path = format!("/proc/self/fd/{}", dir.as_fd().as_raw_fd());
        DirWatch::add(Path::new(&path))
    }

    fn add(dir: &Path) -> std::io::Result<DirWatch> {
        let fd = inotify::init(CreateFlags::CLOEXEC | CreateFlags::NONBLOCK)?;
        inotify::add_watch(&fd, dir, DIR_EVENTS)?;
        Ok(DirWatch(Some(fd)))
    }

    /// Waits up to `timeout` for an event on the directory or for `also` (a pidfd, say) to
    /// turn readable. Drains the events.
    pub fn wait(&self, timeout: Duration, also: Option<BorrowedFd<'_>>) -> Woke {
        // Only `drop` takes the instance.
        let Some(fd) = &self.0 else {
            return Woke::Timeout;
        };
        let mut fds = vec![fd.as_fd()];
        fds.extend(also);
        let r = readable(&fds, timeout);
        drain(fd);
        if r.get(1).copied().unwrap_or(false) {
            Woke::Other
        } else if r[0] {
            Woke::Event
        } else {
            Woke::Timeout
        }
    }
}

impl Drop for DirWatch {
    fn drop(&mut self) {
        let Some(fd) = self.0.take() else {
            return;
        };
        if IN_THREADS.load(std::sync::atomic::Ordering::Relaxed) {
            // Should the thread not start, the closure is dropped here, closing the fd.
            let _ = std::thread::Builder::new()
                .name("close-watch".into())
                .spawn(move || drop(fd));
        } else {
            close_detached(fd);
        }
    }
}

/// Why [`DirWatch::wait`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Woke {
    /// Something happened in the directory.
    Event,
    /// The other fd turned readable (a watched process ended).
    Other,
    Timeout,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_watch_wakes_on_a_new_file_not_before() {
        let d = std::env::temp_dir().join(format!("banger-wait-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        let dir = std::fs::File::open(&d).unwrap();
        let w = DirWatch::on_fd(&dir).unwrap();
        assert_eq!(w.wait(Duration::from_millis(20), None), Woke::Timeout);
        let p = d.join("x");
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            std::fs::write(p, b"1").unwrap();
        });
        let started = Instant::now();
        assert_eq!(w.wait(Duration::from_secs(5), None), Woke::Event);
        assert!(started.elapsed() < Duration::from_secs(2));
        t.join().unwrap();
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_pidfd_wakes_when_the_process_ends() {
        let mut child = std::process::Command::new("sleep")
            .arg("0.05")
            .spawn()
            .unwrap();
        let p = Pidfd::open(child.id() as i32).unwrap();
        assert!(!p.exited());
        let started = Instant::now();
        assert!(p.wait(Duration::from_secs(5)));
        assert!(started.elapsed() < Duration::from_secs(2));
        child.wait().unwrap();
        let w = DirWatch::new(&std::env::temp_dir()).unwrap();
        assert_eq!(w.wait(Duration::from_secs(5), Some(p.as_fd())), Woke::Other);
    }

    #[test]
    fn a_detached_close_closes_here_and_its_child_ends() {
        let fd = inotify::init(CreateFlags::CLOEXEC).unwrap();
        inotify::add_watch(&fd, std::env::temp_dir().as_path(), DIR_EVENTS).unwrap();
        close_detached(fd);
        let pids: Vec<i32> = CLOSERS.lock().unwrap().clone();
        assert!(!pids.is_empty(), "no closer child was started");
        for pid in pids {
            let mut status = 0;
            // SAFETY: status points to a live i32; the pid is our child (or already reaped
            // by another test's call, which waitpid reports as ECHILD).
            let got = unsafe { nix::libc::waitpid(pid, &mut status, 0) };
            if got == pid {
                assert!(nix::libc::WIFEXITED(status) && nix::libc::WEXITSTATUS(status) == 0);
            }
        }
    }
}
