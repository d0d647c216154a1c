//! `put` and `get`: a file into the guest (atomically: a temporary file beside it, written,
//! given its owner and mode, synced, then renamed over the target) and out of it (regular
//! files only, so a FIFO or a device never blocks or streams forever).

use super::{guest_path, io_error, line_error, linger, System};
use crate::conn::{send, Conn, LineReader};
use crate::proto::{
    code, parse_frame, ErrorBody, FileInfo, Frame, Get, Put, PutInfo, Reply, B64, CHUNK,
    IDLE_TIMEOUT, MAX_FILE, MAX_FRAME, MAX_PATH,
};
use rustix::fs::{Mode, OFlags};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU32, Ordering};

fn invalid(m: impl Into<String>) -> ErrorBody {
    ErrorBody::new(code::INVALID_ARGS, m)
}

/// An absolute path the agent accepts.
pub fn check_path(op: &str, path: &str) -> Result<(), ErrorBody> {
    if !path.starts_with('/') {
        return Err(invalid(format!("{op}: {path:?} is not an absolute path")));
    }
    if path.len() > MAX_PATH || path.contains('\0') {
        return Err(invalid(format!(
            "{op}: the path is over {MAX_PATH} bytes or has a NUL byte"
        )));
    }
    Ok(())
}

fn valid_name(n: &str) -> bool {
    !n.is_empty() && n.len() <= 255 && n != "." && n != ".." && !n.contains(['/', '\0'])
}

/// Where a put goes: (the directory, the file's name in it, the guest's path).
fn target(sys: &dyn System, p: &Put) -> Result<(std::path::PathBuf, String, String), ErrorBody> {
    let host = guest_path(sys, &p.path);
    let is_dir = p.path.ends_with('/') || host.is_dir();
    let (dir, name, shown) = if is_dir {
        let Some(n) = p.name.as_deref() else {
            return Err(invalid(format!(
                "put: {} is a directory (give the file's name)",
                p.path
            )));
        };
        if !valid_name(n) {
            return Err(invalid(format!("put: {n:?} is not a file name")));
        }
        let shown = format!("{}/{n}", p.path.trim_end_matches('/'));
        (host, n.to_string(), shown)
    } else {
        let name = host
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .filter(|n| valid_name(n))
            .ok_or_else(|| invalid(format!("put: {:?} names no file", p.path)))?;
        let dir = host.parent().map(|d| d.to_path_buf()).unwrap_or_default();
        (dir, name, p.path.clone())
    };
    if !dir.is_dir() {
        return Err(ErrorBody::new(
            code::NOT_FOUND,
            format!(
                "put: no directory {}",
                shown.rsplit_once('/').map_or("/", |x| x.0)
            ),
        ));
    }
    // An existing target is replaced only when it is a regular file (a device or a FIFO is
    // never swapped for a file); a symlink is followed, so the file it names is replaced.
    let full = dir.join(&name);
    match std::fs::metadata(&full) {
        Ok(m) if !m.is_file() => {
            return Err(invalid(format!(
                "put: {shown} exists and is not a regular file"
            )))
        }
        Ok(_) => {
            let real = std::fs::canonicalize(&full)
                .map_err(|e| io_error(&format!("put: resolve {shown}"), &e))?;
            if let (Some(d), Some(n)) = (real.parent(), real.file_name()) {
                return Ok((d.to_path_buf(), n.to_string_lossy().into_owned(), shown));
            }
        }
        Err(_) => {}
    }
    Ok((dir, name, shown))
}

static SERIAL: AtomicU32 = AtomicU32::new(0);

/// Receives one file; the temporary file is removed on any failure.
pub fn put(sys: &dyn System, p: Put, mut rd: LineReader<Conn>, mut w: Conn) {
    let r = (|| -> Result<PutInfo, ErrorBody> {
        check_path("put", &p.path)?;
        if p.mode.is_some_and(|m| m > 0o7777) {
            return Err(invalid("put: mode must be at most 07777"));
        }
        if p.size.is_some_and(|s| s > MAX_FILE) {
            return Err(ErrorBody::new(
                code::TOO_LARGE,
                format!("put: files are at most {MAX_FILE} bytes"),
            ));
        }
        let (dir_path, name, shown) = target(sys, &p)?;
        let dir = rustix::fs::open(
            &dir_path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| io_error(&format!("put: open {}", dir_path.display()), &e.into()))?;
        let (tmp, file) = loop {
            let tmp = format!(
                ".{name}.banger-put.{}.{}",
                std::process::id(),
                SERIAL.fetch_add(1, Ordering::Relaxed)
            );
            match rustix::fs::openat(
                &dir,
                tmp.as_str(),
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC | OFlags::NOFOLLOW,
                Mode::from_raw_mode(0o600),
            ) {
                Ok(f) => break (tmp, File::from(f)),
                Err(rustix::io::Errno::EXIST) => continue,
                Err(e) => {
                    return Err(io_error(
                        &format!("put: create in {}", dir_path.display()),
                        &e.into(),
                    ))
                }
            }
        };
        let written = receive(&p, &shown, &mut rd, &mut w, &file, &dir, &tmp, &name);
        if written.is_err() {
            let _ = rustix::fs::unlinkat(&dir, tmp.as_str(), rustix::fs::AtFlags::empty());
        }
        written
    })();
    match r {
        Ok(i) => {
            let _ = send(&mut w, &Reply::ok(i));
        }
        Err(e) => {
            let _ = send(&mut w, &Reply::err(e));
            linger(&w, rd.get_ref());
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn receive(
    p: &Put,
    shown: &str,
    rd: &mut LineReader<Conn>,
    w: &mut Conn,
    mut file: &File,
    dir: &OwnedFd,
    tmp: &str,
    name: &str,
) -> Result<PutInfo, ErrorBody> {
    let io = |what: &str, e: std::io::Error| io_error(&format!("put: {what} {shown}"), &e);
    send(
        w,
        &Reply::ok(PutInfo {
            path: shown.into(),
            size: 0,
        }),
    )
    .map_err(|e| io("answer for", e))?;
    let _ = rd.get_ref().set_read_timeout(Some(IDLE_TIMEOUT));
    let limit = p.size.unwrap_or(MAX_FILE);
    let mut total = 0u64;
    loop {
        let line = match rd.read_line(MAX_FRAME) {
            Ok(Some(l)) => l,
            Ok(None) => {
                return Err(ErrorBody::new(
                    code::BAD_REQUEST,
                    "put: the connection closed before the end of the file",
                ))
            }
            Err(e) => return Err(line_error(e, "put's data")),
        };
        match parse_frame(&line)? {
            Frame::Data(b) => {
                total += b.0.len() as u64;
                if total > limit {
                    return Err(ErrorBody::new(
                        code::TOO_LARGE,
                        format!("put: more than the {limit} bytes announced (or allowed)"),
                    ));
                }
                file.write_all(&b.0).map_err(|e| io("write", e))?;
            }
            Frame::Eof(n) if n != total => {
                return Err(ErrorBody::new(
                    code::BAD_REQUEST,
                    format!("put: the host says it sent {n} bytes, {total} arrived"),
                ))
            }
            Frame::Eof(_) => break,
            f => {
                return Err(ErrorBody::new(
                    code::BAD_REQUEST,
                    format!("put: a {:?} frame in a file's data", f.name()),
                ))
            }
        }
    }
    if let Some(s) = p.size.filter(|s| *s != total) {
        return Err(invalid(format!("put: {s} bytes announced, {total} sent")));
    }
    if p.uid.is_some() || p.gid.is_some() {
        rustix::fs::fchown(
            file,
            p.uid.map(rustix::fs::Uid::from_raw),
            p.gid.map(rustix::fs::Gid::from_raw),
        )
        .map_err(|e| io("chown", e.into()))?;
    }
    rustix::fs::fchmod(file, Mode::from_raw_mode(p.mode.unwrap_or(0o644)))
        .map_err(|e| io("chmod", e.into()))?;
    file.sync_all().map_err(|e| io("sync", e))?;
    rustix::fs::renameat(dir, tmp, dir, name).map_err(|e| io("rename into", e.into()))?;
    let _ = rustix::fs::fsync(dir);
    Ok(PutInfo {
        path: shown.into(),
        size: total,
    })
}

/// Sends one regular file.
pub fn get(sys: &dyn System, g: Get, mut w: Conn) {
    let opened = (|| -> Result<(File, FileInfo), ErrorBody> {
        check_path("get", &g.path)?;
        let host = guest_path(sys, &g.path);
        // NONBLOCK: opening a FIFO must not wait for a writer.
        let fd = rustix::fs::open(
            &host,
            OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NONBLOCK,
            Mode::empty(),
        )
        .map_err(|e| io_error(&format!("get: open {}", g.path), &e.into()))?;
        let st = rustix::fs::fstat(&fd)
            .map_err(|e| io_error(&format!("get: stat {}", g.path), &e.into()))?;
        if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::RegularFile {
            return Err(invalid(format!("get: {} is not a regular file", g.path)));
        }
        if st.st_size as u64 > MAX_FILE {
            return Err(ErrorBody::new(
                code::TOO_LARGE,
                format!("get: {} is over {MAX_FILE} bytes", g.path),
            ));
        }
        let info = FileInfo {
            path: g.path.clone(),
            size: st.st_size as u64,
            mode: st.st_mode & 0o7777,
            uid: st.st_uid,
            gid: st.st_gid,
            mtime: st.st_mtime,
        };
        Ok((File::from(fd), info))
    })();
    let (mut f, info) = match opened {
        Ok(x) => x,
        Err(e) => {
            let _ = send(&mut w, &Reply::err(e));
            return;
        }
    };
    if send(&mut w, &Reply::ok(&info)).is_err() {
        return;
    }
    let mut buf = vec![0u8; CHUNK];
    let mut total = 0u64;
    loop {
        let n = match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                let _ = send(
                    &mut w,
                    &Frame::Error(io_error(&format!("get: read {}", g.path), &e)),
                );
                return;
            }
        };
        total += n as u64;
        if total > MAX_FILE {
            let _ = send(
                &mut w,
                &Frame::Error(ErrorBody::new(
                    code::TOO_LARGE,
                    format!("get: {} grew over {MAX_FILE} bytes", g.path),
                )),
            );
            return;
        }
        if send(&mut w, &Frame::Data(B64(buf[..n].to_vec()))).is_err() {
            return;
        }
    }
    let _ = send(&mut w, &Frame::Eof(total));
}
