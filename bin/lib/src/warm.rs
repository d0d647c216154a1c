//! An image's warm artifacts: a Full snapshot of the image booted once (its state file, its
//! memory file and its disk as it was at that moment), from which `banger up` starts new VMs
//! in milliseconds instead of booting them.
//!
//! They live in `images/IMAGE/warm/` (`vmstate`, `memory`, `disk.ext4`, `warm.json`), the
//! owner's like the rest of the image store. `warm.json` holds each file's sha256, size and
//! stat fingerprint (inode, mtime), the Firecracker version that made them (a different
//! version makes them stale: Firecracker loads only its own snapshot format reliably), and
//! the machine they need (vCPUs, memory). A check hashes the state file every time (it is
//! small) and the memory file and disk only when their fingerprint changed since they were
//! hashed, so a start costs no full read of a memory file.

use crate::config::Config;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The directory's name in an image's directory.
pub const DIR: &str = "warm";
/// The directory `banger-image warm` assembles the artifacts in.
pub const PARTIAL: &str = "warm.partial";
pub const STATE: &str = "vmstate";
pub const MEMORY: &str = "memory";
pub const DISK: &str = "disk.ext4";
pub const META: &str = "warm.json";
/// The artifact files, in the order they are checked.
pub const FILES: [&str; 3] = [STATE, MEMORY, DISK];

/// Where a warm VM's Firecracker finds the snapshot, inside its jail.
pub const JAIL_STATE: &str = "warm.vmstate";
pub const JAIL_MEMORY: &str = "warm.memory";

/// One artifact file as `warm.json` records it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FileMeta {
    pub sha256: String,
    pub size: u64,
    #[serde(default)]
    pub ino: u64,
    #[serde(default)]
    pub mtime_ns: i128,
}

/// `warm.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WarmMeta {
    pub v: u32,
    #[serde(rename = "type")]
    pub kind: String,
    pub image: String,
    pub created_at: String,
    /// As Firecracker's `GET /version` says it (`1.16.1`).
    pub firecracker_version: String,
    pub vcpus: u32,
    pub mem_mib: u32,
    /// How the guest got its agent (`snap.agent` of the VM that was warmed).
    #[serde(default)]
    pub agent: Option<String>,
    /// The kernel command line the snapshot booted with.
    #[serde(default)]
    pub boot_args: Option<String>,
    /// How long the image took from InstanceStart to the agent's hello when warmed.
    #[serde(default)]
    pub boot_ms: Option<u64>,
    pub files: BTreeMap<String, FileMeta>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, thiserror::Error)]
pub enum WarmError {
    #[error("image {image:?}'s warm snapshot was made by Firecracker {made} and this host runs Firecracker {have}: it is stale (run 'banger-image warm {image}' again, or start with --cold)")]
    Stale {
        image: String,
        made: String,
        have: String,
    },
    #[error("image {image:?}'s warm snapshot lacks {path} (run 'banger-image warm {image}' again, or start with --cold)")]
    Missing { image: String, path: PathBuf },
    #[error("image {image:?}'s warm {path} does not match its checksum (sha256 {have}, warm.json says {want}): it changed since it was made; run 'banger-image warm {image}' again, or start with --cold")]
    Checksum {
        image: String,
        path: PathBuf,
        want: String,
        have: String,
    },
    #[error("{path} is not a valid warm.json (run 'banger-image warm {image}' again, or 'banger-image rm --warm {image}')")]
    Corrupt {
        image: String,
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("image {image:?}'s warm snapshot is for {have_vcpus} vCPU(s) and {have_mem} MiB; this VM asks for {want_vcpus} and {want_mem} MiB (give --vcpus {have_vcpus} --mem {have_mem}, or start with --cold)")]
    Shape {
        image: String,
        have_vcpus: u32,
        have_mem: u32,
        want_vcpus: u32,
        want_mem: u32,
    },
    #[error("cannot {what} {path}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot find out the Firecracker version of {path}: {why}")]
    Version { path: PathBuf, why: String },
}

impl WarmError {
    pub fn code(&self) -> &'static str {
        match self {
            WarmError::Stale { .. } => "warm_stale",
            WarmError::Missing { .. } => "warm_missing",
            WarmError::Checksum { .. } => "warm_checksum",
            WarmError::Corrupt { .. } => "warm_corrupt",
            WarmError::Shape { .. } => "warm_shape",
            WarmError::Io { .. } => "warm_io",
            WarmError::Version { .. } => "warm_version",
        }
    }
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> WarmError + 'a {
    move |source| WarmError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// `images/IMAGE/warm`.
pub fn dir(cfg: &Config, image: &str) -> PathBuf {
    dir_in(&cfg.images_dir(), image)
}

/// `IMAGES/IMAGE/warm`.
pub fn dir_in(images: &Path, image: &str) -> PathBuf {
    images.join(image).join(DIR)
}

/// Reads `warm.json` of `image`: `None` when the image has no warm artifacts.
pub fn load(cfg: &Config, image: &str) -> Result<Option<WarmMeta>, WarmError> {
    load_in(&cfg.images_dir(), image)
}

/// [`load`] from the image store `images`.
pub fn load_in(images: &Path, image: &str) -> Result<Option<WarmMeta>, WarmError> {
    let path = dir_in(images, image).join(META);
    let bytes = match crate::fsx::read_path_capped(&path, 1 << 20) {
        Ok(b) => b,
        Err(e) if e.is_not_found() => return Ok(None),
        Err(e) => {
            return Err(WarmError::Io {
                what: "read",
                path,
                source: std::io::Error::other(crate::cli::one_line(&e)),
            })
        }
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|source| WarmError::Corrupt {
            image: image.into(),
            path,
            source,
        })
}

/// The sha256 of a file, lowercase hex.
pub fn sha256_file(path: &Path) -> Result<String, WarmError> {
    let f = std::fs::File::open(path).map_err(io("read", path))?;
    crate::digest::sha256_read(f, |_| {}).map_err(io("read", path))
}

/// A file's [`FileMeta`]: its sha256 and fingerprint now.
pub fn describe(path: &Path) -> Result<FileMeta, WarmError> {
    let sha256 = sha256_file(path)?;
    let m = std::fs::metadata(path).map_err(io("stat", path))?;
    Ok(FileMeta {
        sha256,
        size: m.len(),
        ino: m.ino(),
        mtime_ns: mtime_ns(&m),
    })
}

fn mtime_ns(m: &std::fs::Metadata) -> i128 {
    i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec())
}

/// Checks the artifacts' files against `meta`: each is there; the state file's sha256
/// matches; the memory file's and the disk's match too, hashed again only when their size,
/// inode or mtime differ from what was recorded.
pub fn check_files(cfg: &Config, meta: &WarmMeta) -> Result<(), WarmError> {
    check_files_in(&cfg.images_dir(), meta)
}

/// [`check_files`] in the image store `images`.
pub fn check_files_in(images: &Path, meta: &WarmMeta) -> Result<(), WarmError> {
    let d = dir_in(images, &meta.image);
    for f in FILES {
        let path = d.join(f);
        let want = meta.files.get(f).ok_or_else(|| WarmError::Missing {
            image: meta.image.clone(),
            path: path.clone(),
        })?;
        let m = match std::fs::metadata(&path) {
            Ok(m) if m.is_file() => m,
            Ok(_) => {
                return Err(WarmError::Missing {
                    image: meta.image.clone(),
                    path,
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(WarmError::Missing {
                    image: meta.image.clone(),
                    path,
                })
            }
            Err(e) => return Err(io("stat", &path)(e)),
        };
        let same_stat =
            m.len() == want.size && m.ino() == want.ino && mtime_ns(&m) == want.mtime_ns;
        if f == STATE || !same_stat {
            let have = sha256_file(&path)?;
            if have != want.sha256 {
                return Err(WarmError::Checksum {
                    image: meta.image.clone(),
                    path,
                    want: want.sha256.clone(),
                    have,
                });
            }
        }
    }
    Ok(())
}

/// The version in Firecracker's `--version` line (`Firecracker v1.16.1` -> `1.16.1`).
pub fn parse_version(text: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.trim().strip_prefix("Firecracker v"))
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// Runs `firecracker --version`.
pub fn binary_version(path: &Path) -> Result<String, WarmError> {
    let out = std::process::Command::new(path)
        .arg("--version")
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .map_err(|e| WarmError::Version {
            path: path.into(),
            why: e.to_string(),
        })?;
    parse_version(&String::from_utf8_lossy(&out.stdout)).ok_or_else(|| WarmError::Version {
        path: path.into(),
        why: "no 'Firecracker vX.Y.Z' line in its --version output".into(),
    })
}

/// Stale unless `have` is the version that made the artifacts.
pub fn check_version(meta: &WarmMeta, have: &str) -> Result<(), WarmError> {
    if meta.firecracker_version == have {
        Ok(())
    } else {
        Err(WarmError::Stale {
            image: meta.image.clone(),
            made: meta.firecracker_version.clone(),
            have: have.into(),
        })
    }
}

/// The machine a VM asks for must be the snapshot's.
pub fn check_shape(meta: &WarmMeta, vcpus: u32, mem_mib: u32) -> Result<(), WarmError> {
    if meta.vcpus == vcpus && meta.mem_mib == mem_mib {
        Ok(())
    } else {
        Err(WarmError::Shape {
            image: meta.image.clone(),
            have_vcpus: meta.vcpus,
            have_mem: meta.mem_mib,
            want_vcpus: vcpus,
            want_mem: mem_mib,
        })
    }
}

/// The file in a VM's directory that holds the identity a warm start gives the guest (its
/// host keys' private halves), the owner's alone, removed once the guest has it.
pub const IDENTITY: &str = "warm-identity.json";

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("banger-warm-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn made(images: &Path) -> WarmMeta {
        let d = dir_in(images, "img");
        std::fs::create_dir_all(&d).unwrap();
        let mut files = BTreeMap::new();
        for f in FILES {
            std::fs::write(d.join(f), format!("content of {f}")).unwrap();
            files.insert(f.to_string(), describe(&d.join(f)).unwrap());
        }
        WarmMeta {
            v: 1,
            kind: "warm".into(),
            image: "img".into(),
            firecracker_version: "1.16.1".into(),
            vcpus: 1,
            mem_mib: 512,
            files,
            ..WarmMeta::default()
        }
    }

    #[test]
    fn versions() {
        assert_eq!(
            parse_version("Firecracker v1.16.1\n\n").as_deref(),
            Some("1.16.1")
        );
        assert_eq!(parse_version("nothing"), None);
        let m = WarmMeta {
            image: "i".into(),
            firecracker_version: "1.16.1".into(),
            ..WarmMeta::default()
        };
        assert!(check_version(&m, "1.16.1").is_ok());
        let e = check_version(&m, "1.17.0").unwrap_err();
        assert_eq!(e.code(), "warm_stale");
        assert!(e.to_string().contains("1.16.1") && e.to_string().contains("stale"));
    }

    #[test]
    fn shape_must_match() {
        let m = WarmMeta {
            vcpus: 1,
            mem_mib: 512,
            ..WarmMeta::default()
        };
        assert!(check_shape(&m, 1, 512).is_ok());
        assert_eq!(check_shape(&m, 2, 512).unwrap_err().code(), "warm_shape");
    }

    #[test]
    fn files_checked_missing_and_changed() {
        let d = tmp("files");
        let cfg = d.as_path();
        let meta = made(cfg);
        check_files_in(cfg, &meta).unwrap();
        // The memory file rewritten (new mtime): hashed again, and it differs.
        std::fs::write(dir_in(cfg, "img").join(MEMORY), "other").unwrap();
        assert_eq!(
            check_files_in(cfg, &meta).unwrap_err().code(),
            "warm_checksum"
        );
        let meta = made(cfg);
        std::fs::remove_file(dir_in(cfg, "img").join(DISK)).unwrap();
        assert_eq!(
            check_files_in(cfg, &meta).unwrap_err().code(),
            "warm_missing"
        );
        let meta = made(cfg);
        // The state file is always hashed, even with its fingerprint kept.
        let p = dir_in(cfg, "img").join(STATE);
        let m = std::fs::metadata(&p).unwrap();
        std::fs::write(&p, "content of vmstatX").unwrap();
        let t = std::fs::FileTimes::new().set_modified(m.modified().unwrap());
        std::fs::File::options()
            .write(true)
            .open(&p)
            .unwrap()
            .set_times(t)
            .unwrap();
        assert_eq!(
            check_files_in(cfg, &meta).unwrap_err().code(),
            "warm_checksum"
        );
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn load_absent_and_corrupt() {
        let d = tmp("load");
        let cfg = d.as_path();
        assert!(load_in(cfg, "img").unwrap().is_none());
        std::fs::create_dir_all(dir_in(cfg, "img")).unwrap();
        std::fs::write(dir_in(cfg, "img").join(META), "{").unwrap();
        assert_eq!(load_in(cfg, "img").unwrap_err().code(), "warm_corrupt");
        let _ = std::fs::remove_dir_all(&d);
    }
}
