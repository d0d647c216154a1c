//! `banger-image pull NAME URL --sha256 HEX`: a streaming download (https or http through
//! ureq, `file://` or a plain path), hashed as it arrives and verified before anything
//! becomes visible: it lands in the image's staging dir, and a wrong sum removes it.
//!
//! What the URL serves: either a tar archive (optionally compressed) holding `rootfs.ext4`,
//! `vmlinux`, and optionally `initrd` and `image.json` (for its `boot_args`), or a bare ext4
//! image, with the kernel given by `--kernel`.

use crate::check;
use crate::import::{add_boot_files, owner, run, ImageError};
use crate::store::{io, Images};
use banger::config::Config;
use banger::record::Record;
use serde_json::{json, Value};
use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub struct PullArgs<'a> {
    pub name: &'a str,
    pub url: &'a str,
    pub sha256: &'a str,
    pub kernel: Option<&'a Path>,
    pub initrd: Option<&'a Path>,
    pub boot_args: Option<&'a str>,
}

/// A sha256 as given on the command line: 64 hex digits, any case.
pub fn parse_sha256(s: &str) -> Result<String, String> {
    let t = s.trim().to_ascii_lowercase();
    let t = t.strip_prefix("sha256:").unwrap_or(&t).to_string();
    if t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(t)
    } else {
        Err(format!("{s:?} is not a sha256 (64 hex digits)"))
    }
}

/// Where the bytes come from.
#[derive(Debug, PartialEq)]
pub enum Source {
    Http(String),
    File(PathBuf),
}

pub fn source(url: &str) -> Source {
    if url.starts_with("https://") || url.starts_with("http://") {
        Source::Http(url.into())
    } else if let Some(p) = url.strip_prefix("file://") {
        Source::File(PathBuf::from(p))
    } else {
        Source::File(PathBuf::from(url))
    }
}

fn human(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64)
}

/// Copies `r` into `dst`, hashing; progress on stderr when it is a terminal.
fn stream(
    r: impl Read,
    dst: &Path,
    total: Option<u64>,
    label: &str,
) -> Result<String, std::io::Error> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(dst)?;
    let tty = std::io::stderr().is_terminal();
    let mut done = 0u64;
    let mut last = Instant::now();
    let sum = banger::digest::sha256_copy(r, &mut f, |n| {
        done = n;
        if tty && last.elapsed() > Duration::from_millis(200) {
            last = Instant::now();
            match total {
                Some(t) if t > 0 => eprint!(
                    "\r{}: pulling {label}: {} / {} ({}%)   ",
                    crate::BIN,
                    human(n),
                    human(t),
                    n * 100 / t
                ),
                _ => eprint!("\r{}: pulling {label}: {}   ", crate::BIN, human(n)),
            }
        }
    })?;
    if tty {
        eprintln!(
            "\r{}: pulled {label}: {}            ",
            crate::BIN,
            human(done)
        );
    }
    f.sync_all()?;
    Ok(sum)
}

fn fetch(url: &str, dst: &Path, label: &str) -> Result<String, ImageError> {
    let dl = |e: Box<dyn std::error::Error + Send + Sync>| ImageError::Download {
        url: url.into(),
        source: e,
    };
    match source(url) {
        Source::Http(u) => {
            let resp = ureq::get(&u).call().map_err(|e| dl(Box::new(e)))?;
            let total = resp
                .headers()
                .get("content-length")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok());
            let (_, body) = resp.into_parts();
            stream(body.into_reader(), dst, total, label).map_err(|e| dl(Box::new(e)))
        }
        Source::File(p) => {
            let f = std::fs::File::open(&p).map_err(|e| dl(Box::new(e)))?;
            let total = f.metadata().ok().map(|m| m.len());
            stream(f, dst, total, label).map_err(|e| dl(Box::new(e)))
        }
    }
}

fn is_ext4(p: &Path) -> bool {
    check::ext4(p).is_ok()
}

/// The members an archive may contain; anything else is ignored.
const MEMBERS: &[&str] = &["rootfs.ext4", "vmlinux", "initrd", "image.json"];

/// Extracts the known members of a tar archive into `into`. Names are matched exactly
/// (with or without `./`); only regular files are accepted.
fn untar(archive: &Path, into: &Path) -> Result<Vec<String>, ImageError> {
    let listing = run(
        std::process::Command::new("tar").arg("-tf").arg(archive),
        "tar",
    )
    .map_err(|_| {
        ImageError::Other(format!(
            "the download is neither an ext4 image nor a tar archive ({})",
            archive.display()
        ))
    })?;
    let wanted: Vec<String> = listing
        .lines()
        .filter(|l| MEMBERS.contains(&l.trim_start_matches("./")))
        .map(String::from)
        .collect();
    if wanted.is_empty() {
        return Err(ImageError::Other(
            "the archive holds none of rootfs.ext4, vmlinux, initrd".into(),
        ));
    }
    let mut cmd = std::process::Command::new("tar");
    cmd.arg("-xf")
        .arg(archive)
        .arg("-C")
        .arg(into)
        .args(["--no-same-owner", "--no-same-permissions", "--"])
        .args(&wanted);
    run(&mut cmd, "tar")?;
    let mut got = Vec::new();
    for m in MEMBERS {
        let p = into.join(m);
        match std::fs::symlink_metadata(&p) {
            Ok(meta) if meta.is_file() => got.push(m.to_string()),
            Ok(_) => {
                return Err(ImageError::Other(format!(
                    "{m} in the archive is not a regular file"
                )))
            }
            Err(_) => {}
        }
    }
    Ok(got)
}

pub fn pull(cfg: &Config, a: &PullArgs) -> Result<Record, ImageError> {
    let want = parse_sha256(a.sha256).map_err(ImageError::Other)?;
    let images = Images::new(cfg);
    let mut st = images.stage(a.name)?;
    let download = st.path(".download");
    let got = fetch(a.url, &download, a.name)?;
    if got != want {
        return Err(ImageError::Mismatch {
            url: a.url.into(),
            want,
            got,
        });
    }
    let mut boot_args = a.boot_args.map(String::from);
    if is_ext4(&download) {
        let k = a.kernel.ok_or_else(|| {
            ImageError::Other(
                "the download is a bare ext4 image: give its kernel with --kernel FILE".into(),
            )
        })?;
        check::kernel(k)?;
        let rootfs = st.path("rootfs.ext4");
        std::fs::rename(&download, &rootfs).map_err(io("rename", &rootfs))?;
        st.record("rootfs.ext4")?;
        add_boot_files(&mut st, k, a.initrd)?;
    } else {
        let x = st.path(".x");
        std::fs::create_dir(&x).map_err(io("create", &x))?;
        let members = untar(&download, &x)?;
        let _ = std::fs::remove_file(&download);
        if !members.iter().any(|m| m == "rootfs.ext4") {
            return Err(ImageError::Other("the archive has no rootfs.ext4".into()));
        }
        check::ext4(&x.join("rootfs.ext4"))?;
        let have_kernel = members.iter().any(|m| m == "vmlinux");
        if have_kernel {
            check::kernel(&x.join("vmlinux"))?;
        }
        if boot_args.is_none() && members.iter().any(|m| m == "image.json") {
            boot_args = std::fs::read(x.join("image.json"))
                .ok()
                .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
                .and_then(|v| v["boot_args"].as_str().map(String::from));
        }
        for m in ["rootfs.ext4", "vmlinux", "initrd"] {
            if members.iter().any(|x| x == m) {
                let to = st.path(m);
                std::fs::rename(x.join(m), &to).map_err(io("rename", &to))?;
                st.record(m)?;
            }
        }
        let _ = std::fs::remove_dir_all(&x);
        match (have_kernel, a.kernel) {
            (false, Some(k)) => add_boot_files(&mut st, k, a.initrd)?,
            (false, None) => {
                return Err(ImageError::Other(
                    "the archive has no vmlinux: give the kernel with --kernel FILE".into(),
                ))
            }
            (true, _) => {
                if let Some(i) = a.initrd {
                    st.add("initrd", i)?;
                }
            }
        }
    }
    let boot_args = boot_args.unwrap_or_else(|| crate::store::DEFAULT_BOOT_ARGS.into());
    let source = json!({"kind": "pull", "url": a.url, "sha256": want});
    Ok(images.commit(st, source, &boot_args, owner(cfg))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_and_sources() {
        let h = "A".repeat(64);
        assert_eq!(parse_sha256(&h).unwrap(), "a".repeat(64));
        assert!(parse_sha256(&format!("sha256:{}", "b".repeat(64))).is_ok());
        assert!(parse_sha256("abc").is_err());
        assert!(parse_sha256(&"g".repeat(64)).is_err());
        assert_eq!(source("https://x/y"), Source::Http("https://x/y".into()));
        assert_eq!(source("file:///a/b"), Source::File("/a/b".into()));
        assert_eq!(source("./img.tar"), Source::File("./img.tar".into()));
    }
}
