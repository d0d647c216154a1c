//! `update --from URL`: a release archive (a tar, optionally compressed, of a prefix:
//! `bin/`, `share/...`), downloaded over https (or from a path or `file://`), its sha256
//! checked before anything is unpacked, then unpacked into a private temp directory.

use crate::system::SystemError;
use std::io::Read;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

/// Largest archive accepted (a release is tens of MiB).
const MAX_BYTES: u64 = 1 << 30;

/// A sha256 as given on the command line: 64 hex digits, any case, `sha256:` allowed.
pub fn parse_sha256(s: &str) -> Result<String, String> {
    let t = s.trim().to_ascii_lowercase();
    let t = t.strip_prefix("sha256:").unwrap_or(&t).to_string();
    if t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(t)
    } else {
        Err(format!("{s:?} is not a sha256 (64 hex digits)"))
    }
}

pub fn is_url(s: &str) -> bool {
    s.starts_with("https://") || s.starts_with("http://") || s.starts_with("file://")
}

/// A private temp directory, removed on drop.
pub struct TempDir(pub PathBuf);
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Makes a new directory only root can enter, under the temp dir (never one that exists:
/// another user could have made it, or a symlink there).
pub fn temp_dir(tag: &str) -> Result<TempDir, SystemError> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let p = std::env::temp_dir().join(format!("banger-{tag}.{}.{nanos}", std::process::id()));
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&p)
        .map_err(|source| SystemError::Dir {
            what: "create",
            path: p.clone(),
            source,
        })?;
    Ok(TempDir(p))
}

fn failed(what: impl Into<String>, why: impl std::fmt::Display) -> SystemError {
    SystemError::Failed {
        what: what.into(),
        why: why.to_string(),
    }
}

/// Downloads (or copies) `from` into `dst`, returning the sha256 of what arrived.
fn download(from: &str, dst: &Path) -> Result<String, SystemError> {
    let what = format!("cannot fetch {from}");
    let reader: Box<dyn Read> = if from.starts_with("https://") || from.starts_with("http://") {
        let resp = ureq::get(from).call().map_err(|e| failed(&what, e))?;
        let (_, body) = resp.into_parts();
        Box::new(body.into_reader())
    } else {
        let path = from.strip_prefix("file://").unwrap_or(from);
        Box::new(std::fs::File::open(path).map_err(|e| failed(&what, e))?)
    };
    let mut f = std::fs::File::create(dst).map_err(|e| failed(&what, e))?;
    let mut total = 0u64;
    let sum = banger::digest::sha256_copy(reader.take(MAX_BYTES + 1), &mut f, |n| total = n)
        .map_err(|e| failed(&what, e))?;
    if total > MAX_BYTES {
        return Err(failed(&what, format!("larger than {MAX_BYTES} bytes")));
    }
    Ok(sum)
}

/// Fetches and unpacks the archive at `from` (checked against `sha256` when given; a URL
/// must have one) into `into`; returns the directory holding the build.
pub fn fetch(from: &str, sha256: Option<&str>, into: &Path) -> Result<PathBuf, SystemError> {
    let remote = from.starts_with("https://") || from.starts_with("http://");
    let want = match sha256 {
        Some(s) => Some(parse_sha256(s).map_err(SystemError::Refused)?),
        None if remote => {
            return Err(SystemError::Refused(format!(
                "{from} is a download: pin it with --sha256 HEX (the archive's sha256)"
            )))
        }
        None => None,
    };
    let archive = into.join("release.archive");
    let got = download(from, &archive)?;
    if let Some(want) = want {
        if got != want {
            return Err(failed(
                format!("sha256 mismatch for {from}"),
                format!("expected {want}, got {got}; nothing was unpacked or installed"),
            ));
        }
    }
    let out = into.join("release");
    std::fs::create_dir(&out).map_err(|e| failed("cannot unpack", e))?;
    let st = std::process::Command::new("tar")
        .arg("-xf")
        .arg(&archive)
        .arg("-C")
        .arg(&out)
        .args(["--no-same-owner", "--no-same-permissions"])
        .output()
        .map_err(|e| failed("cannot run tar", e))?;
    if !st.status.success() {
        return Err(failed(
            format!("cannot unpack {from} (is it a tar archive?)"),
            String::from_utf8_lossy(&st.stderr).trim(),
        ));
    }
    // The build is at the top, or in the archive's single top-level directory.
    let entries: Vec<PathBuf> = std::fs::read_dir(&out)
        .map_err(|e| failed("cannot read the unpacked archive", e))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    Ok(match entries.as_slice() {
        [one] if one.is_dir() && !one.join("bin").exists() && !out.join("bin").exists() => {
            one.clone()
        }
        _ => out,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_arguments() {
        let h = "A".repeat(64);
        assert_eq!(parse_sha256(&h).unwrap(), "a".repeat(64));
        assert!(parse_sha256(&format!("sha256:{h}")).is_ok());
        assert!(parse_sha256("abc").is_err());
    }

    #[test]
    fn a_download_needs_a_pin_and_a_wrong_pin_unpacks_nothing() {
        let t = temp_dir("fetch-test").unwrap();
        let e = fetch("https://example.invalid/x.tar.gz", None, &t.0).unwrap_err();
        assert!(e.to_string().contains("--sha256"), "{e}");
        let src = t.0.join("a.tar");
        let made = std::process::Command::new("tar")
            .arg("-cf")
            .arg(&src)
            .arg("-C")
            .arg(&t.0)
            .arg("--files-from=/dev/null")
            .status()
            .unwrap();
        assert!(made.success());
        let e = fetch(src.to_str().unwrap(), Some(&"0".repeat(64)), &t.0).unwrap_err();
        assert!(e.to_string().contains("mismatch"), "{e}");
        assert!(!t.0.join("release").exists());
    }
}
