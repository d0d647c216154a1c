//! `swap`: replace paths in a directory the owner can write, at the moment it matters.
//!
//! Each action prepares its object (a symlink, FIFO, listening socket, file or directory)
//! beside the target as soon as the target's directory is writable by us, then either renames
//! it over the target at once (`plant`) or waits for the target to exist and renames it over
//! that (`swap`). With `--spin` the waits are busy loops (for windows of microseconds), else
//! they poll every 50 us. With `--repeat` the whole list runs again each time the directory is
//! made anew, until the stop condition.

use crate::Stop;
use rustix::fs::{Access, Mode, CWD};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
enum Kind {
    Symlink(PathBuf),
    /// A file with the content of another (e.g. a script of the owner's).
    Copy(PathBuf),
    Fifo,
    Socket,
    File,
    Dir,
}

#[derive(Debug, Clone)]
struct Action {
    text: String,
    when: When,
    rel: PathBuf,
    kind: Kind,
}

/// When the prepared object goes in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum When {
    /// At once, whether or not the target exists.
    Plant,
    /// Once the target exists.
    Swap,
    /// Once the target exists, and only while someone else owns it (the window between its
    /// creation and a chown to us); a target already ours means this round is lost.
    Race,
}

pub struct Opts {
    dir: PathBuf,
    actions: Vec<Action>,
    spin: bool,
    repeat: bool,
    any_order: bool,
    stop: Stop,
}

fn action(s: &str) -> Result<Action, lexopt::Error> {
    let bad = || {
        lexopt::Error::from(format!(
            "bad action {s:?} (plant:REL=KIND, swap:REL=KIND or race:REL=KIND)"
        ))
    };
    let (mode, rest) = s.split_once(':').ok_or_else(bad)?;
    let (rel, kind) = rest.split_once('=').ok_or_else(bad)?;
    let mode = match mode {
        "plant" => When::Plant,
        "swap" => When::Swap,
        "race" => When::Race,
        _ => return Err(bad()),
    };
    let kind = match kind.split_once(':') {
        Some(("symlink", t)) if !t.is_empty() => Kind::Symlink(t.into()),
        Some(("copy", f)) if !f.is_empty() => Kind::Copy(f.into()),
        None if kind == "fifo" => Kind::Fifo,
        None if kind == "socket" => Kind::Socket,
        None if kind == "file" => Kind::File,
        None if kind == "dir" => Kind::Dir,
        _ => return Err(bad()),
    };
    if rel.is_empty() || rel.starts_with('/') || rel.split('/').any(|c| c == "..") {
        return Err(bad());
    }
    Ok(Action {
        text: s.to_string(),
        when: mode,
        rel: rel.into(),
        kind,
    })
}

pub fn parse(p: &mut lexopt::Parser) -> Result<Opts, lexopt::Error> {
    use lexopt::prelude::*;
    let mut dir = None;
    let mut actions = Vec::new();
    let mut o = Opts {
        dir: PathBuf::new(),
        actions: Vec::new(),
        spin: false,
        repeat: false,
        any_order: false,
        stop: Stop::default(),
    };
    while let Some(arg) = p.next()? {
        match arg {
            Long("spin") => o.spin = true,
            Long("repeat") => o.repeat = true,
            Long("any-order") => o.any_order = true,
            Long("while") => o.stop.while_file = Some(p.value()?.into()),
            Long("timeout") => o.stop.deadline = Some(Instant::now() + crate::secs(p.value()?)?),
            Value(v) if dir.is_none() => dir = Some(PathBuf::from(v)),
            Value(v) => actions.push(action(&v.string()?)?),
            _ => return Err(arg.unexpected()),
        }
    }
    o.dir = dir.ok_or("swap needs DIR")?;
    if actions.is_empty() {
        return Err("swap needs at least one ACTION".into());
    }
    if o.stop.deadline.is_none() && o.stop.while_file.is_none() {
        return Err("swap needs --while FILE or --timeout SECS".into());
    }
    o.actions = actions;
    Ok(o)
}

/// The directory to work in: DIR itself, or for `PREFIX*` the newest writable directory of
/// the parent whose name starts with PREFIX.
fn resolve(dir: &Path) -> Option<PathBuf> {
    let s = dir.to_string_lossy();
    let Some(prefix) = s.strip_suffix('*') else {
        return rustix::fs::access(dir, Access::EXISTS)
            .ok()
            .map(|_| dir.to_path_buf());
    };
    let prefix = Path::new(prefix);
    let parent = prefix.parent()?;
    let start = prefix.file_name()?.to_string_lossy().into_owned();
    std::fs::read_dir(parent)
        .ok()?
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with(&start))
        .filter(|e| writable(&e.path()))
        .filter_map(|e| Some((e.metadata().ok()?.ctime_nsec(), e.path())))
        .max()
        .map(|(_, p)| p)
}

fn writable(p: &Path) -> bool {
    rustix::fs::access(p, Access::WRITE_OK | Access::EXEC_OK).is_ok()
}

fn exists(p: &Path) -> bool {
    rustix::fs::lstat(p).is_ok()
}

fn ino(p: &Path) -> Option<u64> {
    rustix::fs::lstat(p).ok().map(|s| s.st_ino)
}

/// One action's object, made beside its target.
fn prepare(a: &Action, path: &Path, n: u64, keep: &mut Vec<UnixListener>) -> Option<PathBuf> {
    let parent = path.parent()?;
    let tmp = parent.join(format!(".a{}x{n}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let ok = match &a.kind {
        Kind::Symlink(t) => rustix::fs::symlink(t, &tmp).is_ok(),
        Kind::Fifo => rustix::fs::mkfifoat(CWD, &tmp, Mode::from_raw_mode(0o600)).is_ok(),
        Kind::Socket => match UnixListener::bind(&tmp) {
            Ok(l) => {
                keep.push(l);
                true
            }
            Err(_) => false,
        },
        Kind::Copy(f) => std::fs::copy(f, &tmp).is_ok(),
        Kind::File => std::fs::write(&tmp, b"planted by sec-attack\n").is_ok(),
        Kind::Dir => rustix::fs::mkdir(&tmp, Mode::from_raw_mode(0o755)).is_ok(),
    };
    ok.then_some(tmp)
}

struct Pending {
    action: Action,
    path: PathBuf,
    prepared: Option<PathBuf>,
    done: bool,
}

enum Round {
    Done,
    Aborted,
    Stopped,
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// One pass over the actions in `dir`. Gives up when `dir` goes away or is made anew.
fn round(o: &Opts, dir: &Path, n: u64, keep: &mut Vec<UnixListener>) -> Round {
    let dir_ino = ino(dir);
    let mut pending: Vec<Pending> = o
        .actions
        .iter()
        .map(|a| Pending {
            action: a.clone(),
            path: dir.join(&a.rel),
            prepared: None,
            done: false,
        })
        .collect();
    let mut spins: u64 = 0;
    let mut seq = n * 100;
    let me = rustix::process::getuid().as_raw();
    loop {
        let mut progressed = false;
        for p in pending.iter_mut().filter(|p| !p.done) {
            if p.prepared.is_none() {
                let parent = p.path.parent().unwrap_or(dir);
                if writable(parent) {
                    seq += 1;
                    p.prepared = prepare(&p.action, &p.path, seq, keep);
                }
            }
            if let Some(tmp) = &p.prepared {
                let go = match p.action.when {
                    When::Plant => true,
                    When::Swap => exists(&p.path),
                    When::Race => match rustix::fs::lstat(&p.path) {
                        Ok(st) if st.st_uid == me => {
                            p.done = true;
                            say(&format!("round {n}: lost {}", p.action.text));
                            let _ = std::fs::remove_file(tmp).or_else(|_| std::fs::remove_dir(tmp));
                            continue;
                        }
                        Ok(_) => true,
                        Err(_) => false,
                    },
                };
                if go && rustix::fs::rename(tmp, &p.path).is_ok() {
                    p.done = true;
                    progressed = true;
                    say(&format!("round {n}: done {}", p.action.text));
                }
            }
            if !o.any_order {
                break;
            }
        }
        if pending.iter().all(|p| p.done) {
            return Round::Done;
        }
        spins += 1;
        if !progressed && (!o.spin || spins % 4096 == 0) {
            if o.stop.now() {
                return Round::Stopped;
            }
            if ino(dir) != dir_ino {
                for p in &pending {
                    if let Some(t) = &p.prepared {
                        let _ = std::fs::remove_file(t).or_else(|_| std::fs::remove_dir(t));
                    }
                }
                return Round::Aborted;
            }
        }
        if o.spin {
            // Busy, but giving the core to anyone waiting for it (the helper, on a small host).
            rustix::thread::sched_yield();
        } else {
            std::thread::sleep(Duration::from_micros(50));
        }
    }
}

pub fn main(o: Opts) -> Result<(), lexopt::Error> {
    let (mut rounds, mut done) = (0u64, 0u64);
    let mut keep: Vec<UnixListener> = Vec::new();
    'outer: loop {
        let dir = loop {
            if o.stop.now() {
                break 'outer;
            }
            if let Some(d) = resolve(&o.dir) {
                break d;
            }
            // Waiting for the directory is not the race itself: a short sleep, shorter when
            // spinning (what comes right after the directory appears may be).
            std::thread::sleep(Duration::from_micros(if o.spin { 20 } else { 100 }));
        };
        rounds += 1;
        match round(&o, &dir, rounds, &mut keep) {
            Round::Done => done += 1,
            Round::Aborted => continue,
            Round::Stopped => break,
        }
        // Keep what was made (sockets stay open) until the directory goes or is made anew.
        let made = ino(&dir);
        while ino(&dir) == made {
            if o.stop.now() {
                break 'outer;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        keep.clear();
        if !o.repeat {
            break;
        }
    }
    say(&format!("rounds={rounds} done={done}"));
    Ok(())
}
