//! Loop devices attached from an open file, never from a path: `losetup FILE` canonicalizes
//! and reopens the path as root, so a file swapped in the owner's directory in between (a
//! symlink to a raw disk) would be attached instead. Here the helper opens the file (as the
//! owner), checks it, and hands the fd itself to the kernel (`LOOP_CONFIGURE`). Detaching
//! checks that the device still serves the same file (device and inode recorded at attach).

use super::SnapError;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

const LOOP_CTL_GET_FREE: nix::libc::c_ulong = 0x4C82;
const LOOP_CONFIGURE: nix::libc::c_ulong = 0x4C0A;
const LOOP_CLR_FD: nix::libc::c_ulong = 0x4C01;
const LOOP_GET_STATUS64: nix::libc::c_ulong = 0x4C05;
const LO_FLAGS_READ_ONLY: u32 = 1;
const LO_NAME_SIZE: usize = 64;
const LO_KEY_SIZE: usize = 32;

/// `struct loop_info64` (linux/loop.h).
#[repr(C)]
#[derive(Clone, Copy)]
struct LoopInfo64 {
    lo_device: u64,
    lo_inode: u64,
    lo_rdevice: u64,
    lo_offset: u64,
    lo_sizelimit: u64,
    lo_number: u32,
    lo_encrypt_type: u32,
    lo_encrypt_key_size: u32,
    lo_flags: u32,
    lo_file_name: [u8; LO_NAME_SIZE],
    lo_crypt_name: [u8; LO_NAME_SIZE],
    lo_encrypt_key: [u8; LO_KEY_SIZE],
    lo_init: [u64; 2],
}

/// `struct loop_config` (linux/loop.h).
#[repr(C)]
struct LoopConfig {
    fd: u32,
    block_size: u32,
    info: LoopInfo64,
    reserved: [u64; 8],
}

fn zero_info() -> LoopInfo64 {
    LoopInfo64 {
        lo_device: 0,
        lo_inode: 0,
        lo_rdevice: 0,
        lo_offset: 0,
        lo_sizelimit: 0,
        lo_number: 0,
        lo_encrypt_type: 0,
        lo_encrypt_key_size: 0,
        lo_flags: 0,
        lo_file_name: [0; LO_NAME_SIZE],
        lo_crypt_name: [0; LO_NAME_SIZE],
        lo_encrypt_key: [0; LO_KEY_SIZE],
        lo_init: [0; 2],
    }
}

fn err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> SnapError + 'a {
    move |source| SnapError::Loop {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// A loop device attached by [`attach`]: its path and the backing file's identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attached {
    pub device: String,
    pub file_dev: u64,
    pub file_ino: u64,
}

/// Attaches a free loop device to the open `file` (read-only when asked). `name` is only
/// shown by `losetup --list`.
pub fn attach(file: &File, read_only: bool, name: &str) -> Result<Attached, SnapError> {
    let meta = file.metadata().map_err(err("stat", Path::new(name)))?;
    let ctl_path = Path::new("/dev/loop-control");
    let ctl = File::options()
        .read(true)
        .write(true)
        .open(ctl_path)
        .map_err(err("open", ctl_path))?;
    for _ in 0..16 {
        // SAFETY: LOOP_CTL_GET_FREE takes no argument and returns a device number or -1.
        let n = unsafe { nix::libc::ioctl(ctl.as_raw_fd(), LOOP_CTL_GET_FREE as _) };
        if n < 0 {
            return Err(err("find a free device through", ctl_path)(
                std::io::Error::last_os_error(),
            ));
        }
        let device = format!("/dev/loop{n}");
        let dev_path = PathBuf::from(&device);
        let dev = File::options()
            .read(true)
            .write(true)
            .open(&dev_path)
            .map_err(err("open", &dev_path))?;
        let mut info = zero_info();
        let bytes = name.as_bytes();
        let k = bytes.len().min(LO_NAME_SIZE - 1);
        info.lo_file_name[..k].copy_from_slice(&bytes[..k]);
        if read_only {
            info.lo_flags = LO_FLAGS_READ_ONLY;
        }
        let cfg = LoopConfig {
            fd: file.as_raw_fd() as u32,
            block_size: 0,
            info,
            reserved: [0; 8],
        };
        // SAFETY: LOOP_CONFIGURE reads a `struct loop_config`, which `cfg` is (repr(C), the
        // kernel's layout); the backing fd in it stays open for the call.
        let rc = unsafe { nix::libc::ioctl(dev.as_raw_fd(), LOOP_CONFIGURE as _, &cfg) };
        if rc == 0 {
            return Ok(Attached {
                device,
                file_dev: meta.dev(),
                file_ino: meta.ino(),
            });
        }
        let e = std::io::Error::last_os_error();
        // Another process took this device between GET_FREE and CONFIGURE: try the next.
        if e.raw_os_error() != Some(nix::libc::EBUSY) {
            return Err(err("configure", &dev_path)(e));
        }
    }
    Err(err("find a free device through", ctl_path)(
        std::io::Error::other("every device offered was taken by someone else"),
    ))
}

/// The backing file identity (device, inode) of a loop device, if it is attached.
pub fn backing(device: &str) -> Option<(u64, u64)> {
    let dev = File::options().read(true).open(device).ok()?;
    let mut info = zero_info();
    // SAFETY: LOOP_GET_STATUS64 writes a `struct loop_info64` into `info`, which has the
    // kernel's layout.
    let rc = unsafe { nix::libc::ioctl(dev.as_raw_fd(), LOOP_GET_STATUS64 as _, &mut info) };
    (rc == 0).then_some((info.lo_device, info.lo_inode))
}

/// Detaches `device` when it still serves the file recorded at attach. A device that is
/// free, or serves another file, is left alone.
pub fn detach(a: &Attached) -> Result<(), SnapError> {
    if !a.device.starts_with("/dev/loop") {
        return Ok(());
    }
    let Some((dev, ino)) = backing(&a.device) else {
        return Ok(());
    };
    // The kernel reports the backing file's device in its own encoding (new_encode_dev),
    // which differs from st_dev's for large major numbers.
    let (major, minor) = (
        u64::from(rustix::fs::major(a.file_dev)),
        u64::from(rustix::fs::minor(a.file_dev)),
    );
    let kernel_dev = (minor & 0xff) | (major << 8) | ((minor & !0xff) << 12);
    let same_dev = dev == a.file_dev || dev == kernel_dev;
    if !same_dev || ino != a.file_ino {
        return Ok(());
    }
    let path = PathBuf::from(&a.device);
    let f = File::options()
        .read(true)
        .open(&path)
        .map_err(err("open", &path))?;
    // SAFETY: LOOP_CLR_FD takes no argument.
    let rc = unsafe { nix::libc::ioctl(f.as_raw_fd(), LOOP_CLR_FD as _, 0) };
    if rc != 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(nix::libc::ENXIO) {
            return Err(err("detach", &path)(e));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attach_reads_the_file_through_the_fd_and_detach_checks_identity() {
        if !rustix::process::geteuid().is_root() || !Path::new("/dev/loop-control").exists() {
            eprintln!("SKIPPED: loop device test needs root and /dev/loop-control");
            return;
        }
        let d = std::env::temp_dir().join(format!("banger-loop-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        let p = d.join("img");
        std::fs::write(&p, vec![7u8; 1 << 20]).unwrap();
        let f = File::open(&p).unwrap();
        // The path is replaced after opening: the device must serve the opened file.
        std::fs::rename(&p, d.join("moved")).unwrap();
        std::fs::write(&p, vec![9u8; 1 << 20]).unwrap();
        let a = attach(&f, true, "banger-test").unwrap();
        let mut first = [0u8; 1];
        std::io::Read::read_exact(&mut File::open(&a.device).unwrap(), &mut first).unwrap();
        assert_eq!(first[0], 7);
        // A record naming another file leaves the device alone.
        let other = Attached {
            file_ino: a.file_ino + 1,
            ..a.clone()
        };
        detach(&other).unwrap();
        assert!(backing(&a.device).is_some());
        detach(&a).unwrap();
        // Detaching is asynchronous in recent kernels: wait for it.
        let t = std::time::Instant::now();
        while backing(&a.device).is_some() && t.elapsed() < std::time::Duration::from_secs(5) {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(backing(&a.device).is_none());
        let _ = std::fs::remove_dir_all(&d);
    }
}
