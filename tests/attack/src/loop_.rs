//! `loop`: the attempts of a race, run by one owner process so each costs only the helper's
//! own work. Each attempt sends the request lines in order (one connection each) and after
//! every answer checks the watched files (owner, group, mode, size, mtime, inode: anything that
//! changes stops the loop) and the grep targets (a file the owner can read that now holds a
//! given text). Optionally steals descriptors after each attempt (see `steal`). Prints one JSON
//! summary line; every answer goes to `--answers FILE`.

use crate::steal;
use serde_json::{json, Map, Value};
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub struct Opts {
    count: u64,
    socket: PathBuf,
    requests: Vec<String>,
    watch: Vec<PathBuf>,
    grep: Vec<(PathBuf, String)>,
    steal_write: Option<String>,
    answers: Option<PathBuf>,
    deadline: Duration,
}

pub fn parse(p: &mut lexopt::Parser) -> Result<Opts, lexopt::Error> {
    use lexopt::prelude::*;
    let mut o = Opts {
        count: 1,
        socket: PathBuf::new(),
        requests: Vec::new(),
        watch: Vec::new(),
        grep: Vec::new(),
        steal_write: None,
        answers: None,
        deadline: Duration::from_secs(30),
    };
    while let Some(arg) = p.next()? {
        match arg {
            Long("count") => o.count = p.value()?.parse()?,
            Long("socket") => o.socket = p.value()?.into(),
            Long("request") => o.requests.push(p.value()?.string()?),
            Long("watch") => o.watch.push(p.value()?.into()),
            Long("grep") => {
                let v = p.value()?.string()?;
                let (f, t) = v.split_once('=').ok_or("--grep FILE=TEXT")?;
                o.grep.push((f.into(), t.into()));
            }
            Long("steal-write") => o.steal_write = Some(p.value()?.string()?),
            Long("answers") => o.answers = Some(p.value()?.into()),
            Long("deadline") => o.deadline = crate::secs(p.value()?)?,
            _ => return Err(arg.unexpected()),
        }
    }
    if o.requests.is_empty() || o.socket.as_os_str().is_empty() {
        return Err("loop needs --socket and at least one --request".into());
    }
    Ok(o)
}

fn fingerprint(p: &PathBuf) -> Option<(u32, u32, u32, u64, i64, i64, u64)> {
    std::fs::metadata(p).ok().map(|m| {
        (
            m.uid(),
            m.gid(),
            m.mode(),
            m.size(),
            m.mtime(),
            m.mtime_nsec(),
            m.ino(),
        )
    })
}

/// One request, one answer line (or why there was none).
fn call(o: &Opts, line: &str) -> Result<String, String> {
    let mut s = UnixStream::connect(&o.socket).map_err(|e| format!("connect: {e}"))?;
    s.write_all(format!("{line}\n").as_bytes())
        .map_err(|e| format!("write: {e}"))?;
    let _ = s.set_read_timeout(Some(o.deadline));
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                if buf.contains(&b'\n') {
                    break;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("no answer: {e}")),
        }
    }
    if buf.is_empty() {
        return Err("closed without an answer".into());
    }
    Ok(String::from_utf8_lossy(&buf).trim_end().to_string())
}

pub fn main(o: Opts) -> Result<(), lexopt::Error> {
    let t = Instant::now();
    let before: Vec<_> = o.watch.iter().map(fingerprint).collect();
    let mut answers = match &o.answers {
        Some(f) => Some(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(f)
                .map_err(|e| format!("{}: {e}", f.display()))?,
        ),
        None => None,
    };
    let mut codes: Map<String, Value> = Map::new();
    let mut stopped: Option<String> = None;
    let mut stolen = Vec::new();
    let mut attempts = 0;
    'outer: for i in 1..=o.count {
        attempts = i;
        for r in &o.requests {
            let code = match call(&o, r) {
                Ok(a) => {
                    if let Some(f) = answers.as_mut() {
                        let _ = writeln!(f, "{a}");
                    }
                    let v: Value = serde_json::from_str(&a).unwrap_or(Value::Null);
                    match v.get("ok") {
                        Some(Value::Bool(true)) => "ok".to_string(),
                        _ => v["error"]["code"]
                            .as_str()
                            .unwrap_or("unparsable")
                            .to_string(),
                    }
                }
                Err(e) => {
                    stopped = Some(format!("attempt {i}: {e}"));
                    break 'outer;
                }
            };
            let n = codes.get(&code).and_then(Value::as_u64).unwrap_or(0);
            codes.insert(code, (n + 1).into());
            for (w, b) in o.watch.iter().zip(&before) {
                if fingerprint(w) != *b {
                    stopped = Some(format!("attempt {i}: {} changed", w.display()));
                    break 'outer;
                }
            }
            if let Some(text) = &o.steal_write {
                let got = steal::run(&steal::Opts {
                    write: Some(format!("{text} attempt {i}\n")),
                    read: false,
                    only_comm: None,
                    repeat: false,
                    release_fifos: false,
                    stop: crate::Stop::default(),
                });
                if !got.is_empty() {
                    stolen.extend(got);
                    stopped = Some(format!(
                        "attempt {i}: took descriptors the owner may not have"
                    ));
                    break 'outer;
                }
            }
            for (f, text) in &o.grep {
                let hit = std::fs::read(f)
                    .is_ok_and(|b| b.windows(text.len().max(1)).any(|w| w == text.as_bytes()));
                if hit {
                    stopped = Some(format!("attempt {i}: {} holds {text:?}", f.display()));
                    break 'outer;
                }
            }
        }
    }
    println!(
        "{}",
        json!({
            "attempts": attempts,
            "stopped": stopped,
            "codes": codes,
            "stolen": stolen,
            "ms": t.elapsed().as_millis() as u64,
        })
    );
    Ok(())
}
