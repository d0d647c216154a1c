//! The keeper's loop: FIFO -> log, rotation, exit when the watched process is gone.

use banger::find_pid::Proc;
use rustix::event::{poll, PollFd, PollFlags, Timespec};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub struct Args {
    pub fifo: PathBuf,
    pub log: PathBuf,
    pub max_bytes: u64,
    pub pid: i32,
    pub start_time: Option<u64>,
    /// Become this uid:gid first (the keeper was started as root).
    pub user: Option<(u32, u32)>,
}

#[derive(Debug, thiserror::Error)]
pub enum KeepError {
    #[error("cannot open the console FIFO {path}")]
    Fifo {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write the console log {path}")]
    Log {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot rotate {path}")]
    Rotate {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The log with its size, rotated past the limit.
struct Log {
    path: PathBuf,
    file: File,
    size: u64,
    max: u64,
}

impl Log {
    fn open(path: &Path, max: u64) -> Result<Log, KeepError> {
        let err = |source| KeepError::Log {
            path: path.to_path_buf(),
            source,
        };
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o640)
            .open(path)
            .map_err(err)?;
        let size = file.metadata().map_err(err)?.len();
        Ok(Log {
            path: path.to_path_buf(),
            file,
            size,
            max,
        })
    }

    fn rotated(&self) -> PathBuf {
        let mut p = self.path.clone().into_os_string();
        p.push(".1");
        PathBuf::from(p)
    }

    fn write(&mut self, mut buf: &[u8]) -> Result<(), KeepError> {
        while !buf.is_empty() {
            if self.size >= self.max {
                std::fs::rename(&self.path, self.rotated()).map_err(|source| {
                    KeepError::Rotate {
                        path: self.path.clone(),
                        source,
                    }
                })?;
                *self = Log::open(&self.path, self.max)?;
            }
            let room = (self.max - self.size).min(buf.len() as u64) as usize;
            self.file
                .write_all(&buf[..room])
                .map_err(|source| KeepError::Log {
                    path: self.path.clone(),
                    source,
                })?;
            self.size += room as u64;
            buf = &buf[room..];
        }
        Ok(())
    }
}

fn alive(pid: i32, start_time: Option<u64>) -> bool {
    Proc::default()
        .info(pid)
        .is_some_and(|i| !i.is_dead() && start_time.is_none_or(|s| s == i.start_time))
}

/// A pidfd for the watched process, opened only if the pid still is that process (so the
/// fd cannot refer to a reused pid). `None` where pidfds are unavailable (Linux < 5.3).
fn watch(pid: i32, start_time: Option<u64>) -> Option<std::os::fd::OwnedFd> {
    let fd = rustix::process::pidfd_open(
        rustix::process::Pid::from_raw(pid)?,
        rustix::process::PidfdFlags::empty(),
    )
    .ok()?;
    alive(pid, start_time).then_some(fd)
}

pub fn run(a: &Args) -> Result<(), KeepError> {
    // Read-write: the keeper is a writer too, so the FIFO never reports end-of-file, and the
    // open does not wait for Firecracker.
    let mut fifo = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(&a.fifo)
        .map_err(|source| KeepError::Fifo {
            path: a.fifo.clone(),
            source,
        })?;
    let mut log = Log::open(&a.log, a.max_bytes)?;
    let mut buf = vec![0u8; 64 * 1024];
    // The pidfd turns readable the moment Firecracker exits, so teardown never waits on the
    // keeper; without one, the process table is checked every half second.
    let pidfd = watch(a.pid, a.start_time);
    let mut checked = Instant::now();
    let mut gone = pidfd.is_none() && !alive(a.pid, a.start_time);
    loop {
        let timeout = Timespec {
            tv_sec: 0,
            tv_nsec: 500_000_000,
        };
        let exited = match &pidfd {
            Some(p) => {
                let mut fds = [
                    PollFd::new(&fifo, PollFlags::IN),
                    PollFd::new(p, PollFlags::IN),
                ];
                let _ = poll(&mut fds, Some(&timeout));
                !fds[1].revents().is_empty()
            }
            None => {
                let mut fds = [PollFd::new(&fifo, PollFlags::IN)];
                let _ = poll(&mut fds, Some(&timeout));
                false
            }
        };
        // Drain everything there is.
        loop {
            match fifo.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => log.write(&buf[..n])?,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(KeepError::Fifo {
                        path: a.fifo.clone(),
                        source,
                    })
                }
            }
        }
        // One drain after the process is gone, then exit.
        if gone {
            return Ok(());
        }
        if exited {
            gone = true;
        } else if pidfd.is_none() && checked.elapsed() >= Duration::from_millis(500) {
            checked = Instant::now();
            gone = !alive(a.pid, a.start_time);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("banger-keeper-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn rotates_at_the_limit_and_keeps_one_generation() {
        let d = tmp("rotate");
        let mut log = Log::open(&d.join("console.log"), 1024).unwrap();
        for _ in 0..5 {
            log.write(&[b'x'; 700]).unwrap();
        }
        let cur = std::fs::metadata(d.join("console.log")).unwrap().len();
        let old = std::fs::metadata(d.join("console.log.1")).unwrap().len();
        // 3500 bytes in generations of 1024: the current log holds the last 428, the one
        // generation kept holds the 1024 before them; older output is gone.
        assert_eq!((cur, old), (3500 % 1024, 1024));
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn copies_the_fifo_and_exits_when_the_process_is_gone() {
        let d = tmp("fifo");
        let fifo = d.join("console.fifo");
        rustix::fs::mkfifoat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
        )
        .unwrap();
        let mut child = std::process::Command::new("sleep")
            .arg("1")
            .spawn()
            .unwrap();
        let args = Args {
            fifo: fifo.clone(),
            log: d.join("console.log"),
            max_bytes: 4096,
            pid: child.id() as i32,
            start_time: None,
            user: None,
        };
        let t = std::thread::spawn(move || run(&args));
        // A writer that opens like Firecracker: read-write, non-blocking.
        let mut w = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
            .open(&fifo)
            .unwrap();
        w.write_all(b"TINY_GUEST_READY cmdline=x\n").unwrap();
        child.wait().unwrap();
        let started = Instant::now();
        t.join().unwrap().unwrap();
        // Woken by the pidfd, not by the half-second fallback.
        assert!(
            started.elapsed() < Duration::from_millis(300),
            "{:?}",
            started.elapsed()
        );
        let text = std::fs::read_to_string(d.join("console.log")).unwrap();
        assert_eq!(text, "TINY_GUEST_READY cmdline=x\n");
        let _ = std::fs::remove_dir_all(&d);
    }
}
