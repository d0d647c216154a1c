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
#[derive(Debug)]
pub struct DirWatch(OwnedFd);

const DIR_EVENTS: WatchFlags = WatchFlags::CREATE
    .union(WatchFlags::MODIFY)
    .union(WatchFlags::CLOSE_WRITE)
    .union(WatchFlags::MOVED_TO)
    .union(WatchFlags::DELETE)
    .union(WatchFlags::ONLYDIR);

impl DirWatch {
    /// Watches the directory at `dir` (resolved as the caller, who may trust it).
    pub fn new(dir: &Path) -> std::io::Result<DirWatch> {
        let fd = inotify::init(CreateFlags::CLOEXEC | CreateFlags::NONBLOCK)?;
        inotify::add_watch(&fd, dir, DIR_EVENTS)?;
        Ok(DirWatch(fd))
    }

    /// Watches the directory the caller already holds open: the watch goes on that very
    /// directory (through `/proc/self/fd`), whatever its path leads to now, with no lookup in
    /// any directory someone else can write.
    pub fn on_fd(dir: &impl AsFd) -> std::io::Result<DirWatch> {
        let fd = inotify::init(CreateFlags::CLOEXEC | CreateFlags::NONBLOCK)?;
        let path = format!("/proc/self/fd/{}", dir.as_fd().as_raw_fd());
        inotify::add_watch(&fd, path.as_str(), DIR_EVENTS)?;
        Ok(DirWatch(fd))
    }

    /// Waits up to `timeout` for an event on the directory or for `also` (a pidfd, say) to
    /// turn readable. Drains the events.
    pub fn wait(&self, timeout: Duration, also: Option<BorrowedFd<'_>>) -> Woke {
        let mut fds = vec![self.0.as_fd()];
        fds.extend(also);
        let r = readable(&fds, timeout);
        self.drain();
        if r.get(1).copied().unwrap_or(false) {
            Woke::Other
        } else if r[0] {
            Woke::Event
        } else {
            Woke::Timeout
        }
    }

    fn drain(&self) {
        let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 4096];
        let mut r = inotify::Reader::new(&self.0, &mut buf);
        while r.next().is_ok() {}
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
}
