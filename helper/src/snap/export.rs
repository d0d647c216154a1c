//! Copying a stopped VM's disk into its image's warm artifacts (`banger-image warm`).
//!
//! The source is what the ledger says the VM's disk is (the owner's file, opened as the
//! owner, or banger's own mapper device); the destination is created exclusively, as the
//! owner, in `images/IMAGE/warm.partial/`, a directory `banger-image warm` made and opened
//! here from the image store without following a symlink. Holes and all-zero blocks are not
//! written, so the copy is as sparse as the disk.

use super::disk::{disk_entry, lock, open_ledger_disk};
use super::{clone, SnapError};
use crate::ops::Ctx;
use banger::fsx::Dir;
use std::fs::File;
use std::path::{Path, PathBuf};

/// What [`export`] made.
pub struct Exported {
    pub path: PathBuf,
    pub size: u64,
    pub method: &'static str,
}

const CHUNK: usize = 1 << 20;

/// Copies `len` bytes of a block device into the empty `dst`, skipping all-zero blocks.
fn copy_device(src: &File, dst: &File, len: u64) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    dst.set_len(len)?;
    let mut buf = vec![0u8; CHUNK];
    let mut off = 0u64;
    while off < len {
        let want = ((len - off) as usize).min(CHUNK);
        src.read_exact_at(&mut buf[..want], off)?;
        if buf[..want].iter().any(|&b| b != 0) {
            dst.write_all_at(&buf[..want], off)?;
        }
        off += want as u64;
    }
    Ok(())
}

fn op_err(e: banger::proto::OpError) -> SnapError {
    SnapError::Io {
        what: "work as the owner on",
        path: PathBuf::from("the image store"),
        source: std::io::Error::other(e.message),
    }
}

/// Copies `vm`'s disk to `images/IMAGE/warm.partial/disk.ext4`.
pub fn export(ctx: &Ctx, vm: &str, image: &str) -> Result<Exported, SnapError> {
    let _g = lock(ctx, vm)?;
    let e = disk_entry(&ctx.ledger, vm)?.ok_or_else(|| SnapError::NoDisk { vm: vm.into() })?;
    let (src_path, src) = open_ledger_disk(ctx, &e)?;
    let images = ctx.cfg.images_dir();
    let partial = Path::new(image).join(banger::warm::PARTIAL);
    let dst_path = images.join(&partial).join(banger::warm::DISK);
    let dst = ctx
        .as_owner(|| -> Result<File, SnapError> {
            let dir = Dir::open(&images)?.open_dir(&partial)?;
            dir.create(banger::warm::DISK, 0o600).map_err(|e| match e {
                e if e.is_exists() => SnapError::Stray {
                    path: dst_path.clone(),
                },
                e => e.into(),
            })
        })
        .map_err(op_err)??;
    let st = rustix::fs::fstat(&src).map_err(|e| SnapError::Io {
        what: "stat",
        path: src_path.clone(),
        source: e.into(),
    })?;
    let copy_err = |source| SnapError::Copy {
        src: src_path.clone(),
        dst: dst_path.clone(),
        source,
    };
    let block =
        rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::BlockDevice;
    let method = if block {
        let len =
            rustix::fs::seek(&src, rustix::fs::SeekFrom::End(0)).map_err(|e| copy_err(e.into()))?;
        copy_device(&src, &dst, len).map_err(copy_err)?;
        "copy"
    } else {
        // The owner's file: reflinked or copied with the owner's credentials.
        ctx.as_owner(|| -> std::io::Result<&'static str> {
            if clone::reflink(&src, &dst).is_ok() {
                return Ok("reflink");
            }
            clone::sparse_copy(&src, &dst)?;
            Ok("copy")
        })
        .map_err(op_err)?
        .map_err(copy_err)?
    };
    super::fail_point("snap.export:copy")?;
    dst.sync_all().map_err(|source| SnapError::Io {
        what: "sync",
        path: dst_path.clone(),
        source,
    })?;
    let size = dst.metadata().map(|m| m.len()).unwrap_or(0);
    Ok(Exported {
        path: dst_path,
        size,
        method,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_copy_skips_zero_blocks() {
        let d = std::env::temp_dir().join(format!("banger-export-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        let mut data = vec![0u8; 3 * CHUNK + 5];
        data[CHUNK + 7] = 1;
        data[3 * CHUNK + 4] = 9;
        std::fs::write(d.join("src"), &data).unwrap();
        let src = File::open(d.join("src")).unwrap();
        let dst = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(d.join("dst"))
            .unwrap();
        copy_device(&src, &dst, data.len() as u64).unwrap();
        assert_eq!(std::fs::read(d.join("dst")).unwrap(), data);
        let _ = std::fs::remove_dir_all(&d);
    }
}
