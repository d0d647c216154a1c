//! `banger-image import` and `banger-image build --from-dir`.

use crate::check::{self, CheckError};
use crate::store::{io, Images, Staging, StoreError};
use banger::config::Config;
use banger::record::Record;
use serde_json::json;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error(transparent)]
    Check(#[from] CheckError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot run {program} (install the {package} package)")]
    Spawn {
        program: String,
        package: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{command} failed: {stderr}")]
    Tool { command: String, stderr: String },
    #[error("{path} is not a directory")]
    NotDir { path: PathBuf },
    #[error("cannot download {url}")]
    Download {
        url: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("sha256 mismatch for {url}: expected {want}, got {got}; nothing was kept")]
    Mismatch {
        url: String,
        want: String,
        got: String,
    },
    #[error("{0}")]
    Other(String),
}

/// Runs a program; a failure carries its stderr.
pub fn run(cmd: &mut std::process::Command, package: &'static str) -> Result<String, ImageError> {
    Ok(banger::tool::output(cmd, package)?)
}

impl From<banger::tool::ToolError> for ImageError {
    fn from(e: banger::tool::ToolError) -> ImageError {
        match e {
            banger::tool::ToolError::Spawn {
                program,
                package,
                source,
            } => ImageError::Spawn {
                program,
                package,
                source,
            },
            banger::tool::ToolError::Failed { command, stderr } => {
                ImageError::Tool { command, stderr }
            }
        }
    }
}

/// The owner to hand the image to when running as root for an installed owner.
pub fn owner(cfg: &Config) -> Option<(u32, u32)> {
    if !rustix::process::geteuid().is_root() {
        return None;
    }
    cfg.owner_uid.map(|u| (u, cfg.owner_gid.unwrap_or(u)))
}

/// Adds the kernel (and initrd) to a staged image, after checking the kernel.
pub fn add_boot_files(
    st: &mut Staging,
    kernel: &Path,
    initrd: Option<&Path>,
) -> Result<(), ImageError> {
    check::kernel(kernel)?;
    st.add("vmlinux", kernel)?;
    if let Some(i) = initrd {
        let meta = std::fs::metadata(i).map_err(io("read", i))?;
        if !meta.is_file() || meta.len() == 0 {
            return Err(ImageError::Other(format!(
                "{} is not an initrd (an empty or special file)",
                i.display()
            )));
        }
        st.add("initrd", i)?;
    }
    Ok(())
}

pub struct ImportArgs<'a> {
    pub name: &'a str,
    pub rootfs: &'a Path,
    pub kernel: &'a Path,
    pub initrd: Option<&'a Path>,
    pub boot_args: &'a str,
}

fn abs(p: &Path) -> String {
    std::path::absolute(p)
        .unwrap_or_else(|_| p.to_path_buf())
        .display()
        .to_string()
}

pub fn import(cfg: &Config, a: &ImportArgs) -> Result<Record, ImageError> {
    check::kernel(a.kernel)?;
    check::ext4(a.rootfs)?;
    let images = Images::new(cfg);
    let mut st = images.stage(a.name)?;
    st.add("rootfs.ext4", a.rootfs)?;
    add_boot_files(&mut st, a.kernel, a.initrd)?;
    let source = json!({
        "kind": "import",
        "rootfs": abs(a.rootfs),
        "kernel": abs(a.kernel),
        "initrd": a.initrd.map(abs),
    });
    Ok(images.commit(st, source, a.boot_args, owner(cfg))?)
}

/// Bytes a tree needs in an ext4 filesystem, roughly: data rounded to blocks plus an inode
/// and a block per entry. Symlinks are not followed.
pub fn tree_bytes(dir: &Path) -> u64 {
    let mut total = 0u64;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let Ok(m) = e.path().symlink_metadata() else {
                continue;
            };
            total += m.len().div_ceil(4096) * 4096 + 4096 + 256;
            if m.is_dir() {
                stack.push(e.path());
            }
        }
    }
    total
}

/// The size of an image for a tree: the content plus 30% and 64 MiB of headroom, in MiB.
pub fn fit_size(content: u64) -> u64 {
    let want = content + content * 3 / 10 + (64 << 20);
    want.div_ceil(1 << 20) * (1 << 20)
}

/// Makes `rootfs.ext4` in the staging dir from `dir` (`mkfs.ext4 -d`, no mount).
pub fn mkfs_from_dir(
    st: &Staging,
    dir: &Path,
    label: &str,
    size: Option<u64>,
) -> Result<u64, ImageError> {
    let size = size.unwrap_or_else(|| fit_size(tree_bytes(dir)));
    let img = st.path("rootfs.ext4");
    let f = std::fs::File::create(&img).map_err(io("create", &img))?;
    f.set_len(size).map_err(io("size", &img))?;
    drop(f);
    run(
        std::process::Command::new("mkfs.ext4")
            .args(["-q", "-F", "-L", label, "-E", "root_owner=0:0", "-d"])
            .arg(dir)
            .arg(&img),
        "e2fsprogs",
    )?;
    Ok(size)
}

pub struct FromDirArgs<'a> {
    pub name: &'a str,
    pub dir: &'a Path,
    pub kernel: &'a Path,
    pub initrd: Option<&'a Path>,
    pub size: Option<u64>,
    pub boot_args: &'a str,
}

pub fn build_from_dir(cfg: &Config, a: &FromDirArgs) -> Result<Record, ImageError> {
    if !a.dir.is_dir() {
        return Err(ImageError::NotDir {
            path: a.dir.to_path_buf(),
        });
    }
    check::kernel(a.kernel)?;
    let images = Images::new(cfg);
    let mut st = images.stage(a.name)?;
    let size = mkfs_from_dir(&st, a.dir, a.name, a.size)?;
    st.record("rootfs.ext4")?;
    add_boot_files(&mut st, a.kernel, a.initrd)?;
    let source = json!({"kind": "dir", "dir": abs(a.dir), "size_bytes": size});
    Ok(images.commit(st, source, a.boot_args, owner(cfg))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_have_headroom() {
        assert_eq!(fit_size(0), 64 << 20);
        assert!(fit_size(100 << 20) >= 194 << 20);
        assert_eq!(fit_size(1) % (1 << 20), 0);
    }
}
