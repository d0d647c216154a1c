//! TEST STAND-IN, not Firecracker: the logger, shaped like Firecracker's.
//!
//! Lines look like `2024-05-01T10:00:00.123456789 [vm-id:fc_api:INFO:file:line] message`
//! (level and origin only when asked for). Until `--log-path` or `PUT /logger` names a file,
//! lines go to stdout, as with the real one. The file is created if missing and written from
//! its start without truncation (Firecracker opens it that way too, meant for a FIFO).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::panic::Location;
use std::path::Path;
use std::sync::Mutex;

use super::model::{Level, LoggerConfig};

struct LogState {
    id: String,
    target: Option<File>,
    level: Level,
    show_level: bool,
    show_origin: bool,
    module: Option<String>,
}

static STATE: Mutex<LogState> = Mutex::new(LogState {
    id: String::new(),
    target: None,
    level: Level::Info,
    show_level: false,
    show_origin: false,
    module: None,
});

fn state() -> std::sync::MutexGuard<'static, LogState> {
    STATE.lock().unwrap_or_else(|p| p.into_inner())
}

/// Sets the instance id shown in every line.
pub fn set_id(id: &str) {
    state().id = id.to_string();
}

/// Opens a file the way Firecracker opens its log, metrics and serial files.
pub fn open_nonblock(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .create(true)
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
}

/// Applies a logger configuration; the error text is Firecracker's.
pub fn update(cfg: &LoggerConfig) -> Result<(), String> {
    let file = match &cfg.log_path {
        Some(p) => Some(open_nonblock(p).map_err(|e| format!("Failed to open target file: {e}"))?),
        None => None,
    };
    let mut s = state();
    s.level = cfg.level.unwrap_or(Level::Info);
    if file.is_some() {
        s.target = file;
    }
    if let Some(v) = cfg.show_level {
        s.show_level = v;
    }
    if let Some(v) = cfg.show_log_origin {
        s.show_origin = v;
    }
    if let Some(m) = &cfg.module {
        s.module = Some(m.clone());
    }
    Ok(())
}

/// Local wall-clock time as `YYYY-MM-DDTHH:MM:SS.nnnnnnnnn`.
fn now() -> String {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    // SAFETY: `tm` is plain data; all-zero is a valid value that localtime_r overwrites.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers refer to live locals of the right types.
    unsafe { libc::localtime_r(&ts.tv_sec, &mut tm) };
    format!(
        "{}-{:02}-{:02}T{:02}:{:02}:{:02}.{:09}",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec,
        ts.tv_nsec
    )
}

fn level_name(l: Level) -> &'static str {
    match l {
        Level::Off => "OFF",
        Level::Error => "ERROR",
        Level::Warn => "WARN",
        Level::Info => "INFO",
        Level::Debug => "DEBUG",
        Level::Trace => "TRACE",
    }
}

fn log(level: Level, origin: &Location<'_>, msg: &str) {
    let mut s = state();
    // Unit tests run the state machine in-process: keep their output clean.
    if level > s.level || (cfg!(test) && s.target.is_none()) {
        return;
    }
    if let Some(m) = &s.module {
        if !origin.file().contains(m.as_str()) {
            return;
        }
    }
    let thread = std::thread::current().name().unwrap_or("-").to_string();
    let lvl = if s.show_level {
        format!(":{}", level_name(level))
    } else {
        String::new()
    };
    let org = if s.show_origin {
        format!(":{}:{}", origin.file(), origin.line())
    } else {
        String::new()
    };
    let id = if s.id.is_empty() {
        "anonymous-instance".to_string()
    } else {
        s.id.clone()
    };
    let line = format!("{} [{id}:{thread}{lvl}{org}] {msg}\n", now());
    // A failed log write is dropped, as Firecracker only counts it in a metric.
    match &mut s.target {
        Some(f) => {
            let _ = f.write_all(line.as_bytes());
        }
        None => {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(line.as_bytes());
            let _ = out.flush();
        }
    }
}

#[track_caller]
pub fn error(msg: &str) {
    log(Level::Error, Location::caller(), msg);
}

#[track_caller]
pub fn warn(msg: &str) {
    log(Level::Warn, Location::caller(), msg);
}

#[track_caller]
pub fn info(msg: &str) {
    log(Level::Info, Location::caller(), msg);
}

#[track_caller]
pub fn debug(msg: &str) {
    log(Level::Debug, Location::caller(), msg);
}
