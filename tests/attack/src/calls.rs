//! `calls`: COUNT helper requests sent at once on COUNT connections; waits up to SECS for the
//! answers, prints a summary (answered, closed without an answer, unanswered, answers by code)
//! as one JSON line, and with `--hold-while FILE` keeps the unanswered connections open until
//! FILE is gone (so they keep whatever helper slots they hold).

use serde_json::{json, Map, Value};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub struct Opts {
    count: usize,
    wait: Duration,
    hold_while: Option<PathBuf>,
    socket: PathBuf,
    line: String,
}

pub fn parse(p: &mut lexopt::Parser) -> Result<Opts, lexopt::Error> {
    use lexopt::prelude::*;
    let mut o = Opts {
        count: 1,
        wait: Duration::from_secs(5),
        hold_while: None,
        socket: PathBuf::new(),
        line: String::new(),
    };
    let mut vals = Vec::new();
    while let Some(arg) = p.next()? {
        match arg {
            Long("count") => o.count = p.value()?.parse()?,
            Long("wait") => o.wait = crate::secs(p.value()?)?,
            Long("hold-while") => o.hold_while = Some(p.value()?.into()),
            Value(v) => vals.push(v),
            _ => return Err(arg.unexpected()),
        }
    }
    let [sock, line]: [std::ffi::OsString; 2] = vals
        .try_into()
        .map_err(|_| lexopt::Error::from("calls needs SOCKET and LINE"))?;
    o.socket = sock.into();
    o.line = line.string()?;
    Ok(o)
}

enum Got {
    Answer(String),
    Closed,
    Nothing,
}

fn read_answer(s: &mut UnixStream, left: Duration) -> Got {
    let _ = s.set_read_timeout(Some(left.max(Duration::from_millis(1))));
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match s.read(&mut chunk) {
            Ok(0) if buf.is_empty() => return Got::Closed,
            Ok(0) => return Got::Answer(String::from_utf8_lossy(&buf).into_owned()),
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                if buf.contains(&b'\n') {
                    return Got::Answer(String::from_utf8_lossy(&buf).into_owned());
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Got::Closed,
            Err(_) if buf.is_empty() => return Got::Nothing,
            Err(_) => return Got::Answer(String::from_utf8_lossy(&buf).into_owned()),
        }
    }
}

pub fn main(o: Opts) -> Result<(), lexopt::Error> {
    let t = Instant::now();
    let mut streams = Vec::new();
    let mut connect_failed = 0;
    for _ in 0..o.count {
        match UnixStream::connect(&o.socket) {
            Ok(mut s) => {
                let _ = s.write_all(format!("{}\n", o.line).as_bytes());
                streams.push(s);
            }
            Err(_) => connect_failed += 1,
        }
    }
    let deadline = t + o.wait;
    let (mut answered, mut closed) = (0, 0);
    let mut codes: Map<String, Value> = Map::new();
    let mut open = Vec::new();
    for mut s in streams {
        match read_answer(&mut s, deadline.saturating_duration_since(Instant::now())) {
            Got::Answer(a) => {
                answered += 1;
                let v: Value = serde_json::from_str(a.trim()).unwrap_or(Value::Null);
                let code = match v.get("ok") {
                    Some(Value::Bool(true)) => "ok".to_string(),
                    _ => v["error"]["code"]
                        .as_str()
                        .unwrap_or("unparsable")
                        .to_string(),
                };
                let n = codes.get(&code).and_then(Value::as_u64).unwrap_or(0);
                codes.insert(code, (n + 1).into());
            }
            Got::Closed => closed += 1,
            Got::Nothing => open.push(s),
        }
    }
    println!(
        "{}",
        json!({
            "sent": o.count - connect_failed,
            "connect_failed": connect_failed,
            "answered": answered,
            "closed": closed,
            "unanswered": open.len(),
            "codes": codes,
            "ms": t.elapsed().as_millis() as u64,
        })
    );
    let _ = std::io::stdout().flush();
    if let Some(f) = &o.hold_while {
        while rustix::fs::access(f, rustix::fs::Access::EXISTS).is_ok() {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    drop(open);
    Ok(())
}
