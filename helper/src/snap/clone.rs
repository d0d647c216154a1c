//! Whole-file clones: a reflink (FICLONE: blocks shared, O(1) in the file's size) or a
//! sparse copy (holes stay holes, all-zero blocks are skipped), and growing an ext4 image.

use super::SnapError;
use banger::detach::Creds;
use std::fs::File;
use std::os::fd::AsFd;
use std::path::Path;

/// True when the error from FICLONE means "this filesystem cannot share blocks here".
pub fn reflink_unsupported(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc_errno::EOPNOTSUPP)
            | Some(libc_errno::ENOTTY)
            | Some(libc_errno::EXDEV)
            | Some(libc_errno::EINVAL)
            | Some(libc_errno::ENOSYS)
    )
}

mod libc_errno {
    pub const EOPNOTSUPP: i32 = rustix::io::Errno::OPNOTSUPP.raw_os_error();
    pub const ENOTTY: i32 = rustix::io::Errno::NOTTY.raw_os_error();
    pub const EXDEV: i32 = rustix::io::Errno::XDEV.raw_os_error();
    pub const EINVAL: i32 = rustix::io::Errno::INVAL.raw_os_error();
    pub const ENOSYS: i32 = rustix::io::Errno::NOSYS.raw_os_error();
}

/// Makes `dst` share all of `src`'s blocks.
pub fn reflink(src: &File, dst: &File) -> std::io::Result<()> {
    rustix::fs::ioctl_ficlone(dst.as_fd(), src.as_fd()).map_err(std::io::Error::from)
}

const CHUNK: usize = 1 << 20;

/// Copies `src` into the empty `dst`, keeping holes: only data extents are read (SEEK_DATA /
/// SEEK_HOLE), and blocks that are all zeros are skipped rather than written. Positional I/O
/// only: neither file's offset matters.
pub fn sparse_copy(src: &File, dst: &File) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    let len = src.metadata()?.len();
    dst.set_len(len)?;
    let mut buf = vec![0u8; CHUNK];
    let mut pos = 0u64;
    while pos < len {
        let data = match rustix::fs::seek(src.as_fd(), rustix::fs::SeekFrom::Data(pos)) {
            Ok(d) => d,
            Err(rustix::io::Errno::NXIO) => break, // only a hole is left
            Err(e) => return Err(e.into()),
        };
        let hole = match rustix::fs::seek(src.as_fd(), rustix::fs::SeekFrom::Hole(data)) {
            Ok(h) => h.min(len),
            Err(e) => return Err(e.into()),
        };
        let mut off = data;
        while off < hole {
            let want = ((hole - off) as usize).min(CHUNK);
            src.read_exact_at(&mut buf[..want], off)?;
            let block = &buf[..want];
            if block.iter().any(|&b| b != 0) {
                dst.write_all_at(block, off)?;
            }
            off += want as u64;
        }
        pos = hole;
    }
    Ok(())
}

/// Grows the ext4 filesystem on the open `disk` (a file or block device already at its new
/// size), as `owner` when there is one (the tools parse an untrusted filesystem). `path` is
/// for messages.
pub fn grow_fs(disk: &File, path: &Path, owner: Option<&Creds>) -> Result<(), SnapError> {
    let arg = vec!["-f".to_string(), "-p".into(), super::fd_arg(disk)];
    // resize2fs insists on a freshly checked filesystem; -p repairs only what is safe.
    // e2fsck exits 0 (clean) or 1 (errors corrected); anything else is a real problem.
    let out = super::tool_output("e2fsck", &arg, &[disk.as_fd()], None, owner, "e2fsprogs")?;
    if !matches!(out.status.code(), Some(0 | 1)) {
        return Err(SnapError::Tool {
            command: format!("e2fsck -f -p {}", path.display()),
            stderr: format!(
                "{} {} ({})",
                String::from_utf8_lossy(&out.stdout).trim(),
                String::from_utf8_lossy(&out.stderr).trim(),
                out.status
            ),
        });
    }
    super::tool(
        "resize2fs",
        &[super::fd_arg(disk)],
        &[disk.as_fd()],
        None,
        owner,
        "e2fsprogs",
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparse_copy_keeps_content_and_holes() {
        let d = std::env::temp_dir().join(format!("banger-clone-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let (a, b) = (d.join("a"), d.join("b"));
        {
            use std::io::{Seek, SeekFrom, Write};
            let mut f = File::create(&a).unwrap();
            f.set_len(64 << 20).unwrap();
            f.seek(SeekFrom::Start(3 << 20)).unwrap();
            f.write_all(b"hello").unwrap();
            f.seek(SeekFrom::Start((64 << 20) - 3)).unwrap();
            f.write_all(b"end").unwrap();
        }
        let src = File::open(&a).unwrap();
        let dst = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&b)
            .unwrap();
        sparse_copy(&src, &dst).unwrap();
        assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
        use std::os::unix::fs::MetadataExt;
        assert!(std::fs::metadata(&b).unwrap().blocks() * 512 < 8 << 20);
        let _ = std::fs::remove_dir_all(&d);
    }
}
