//! Making a persistent tap owned by the owner, in process: what `ip tuntap add dev NAME mode
//! tap user UID group GID` does (the tun driver has no rtnetlink "add"): `TUNSETIFF` on
//! `/dev/net/tun` with `IFF_TAP | IFF_NO_PI`, `TUNSETOWNER`, `TUNSETGROUP`, `TUNSETPERSIST`.
//! Firecracker, as the owner, then attaches to it by name.

use super::NetError;
use rustix::fs::{Mode, OFlags};
use rustix::ioctl::{ioctl, opcode, IntegerSetter, Setter};

const IFF_TAP: i16 = 0x0002;
const IFF_NO_PI: i16 = 0x1000;
const IFNAMSIZ: usize = 16;

const TUNSETIFF: rustix::ioctl::Opcode = opcode::write::<i32>(b'T', 202);
const TUNSETPERSIST: rustix::ioctl::Opcode = opcode::write::<i32>(b'T', 203);
const TUNSETOWNER: rustix::ioctl::Opcode = opcode::write::<i32>(b'T', 204);
const TUNSETGROUP: rustix::ioctl::Opcode = opcode::write::<i32>(b'T', 206);

/// `struct ifreq` with the flags member of its union (40 bytes on Linux).
#[repr(C)]
struct IfReq {
    name: [u8; IFNAMSIZ],
    flags: i16,
    _pad: [u8; 22],
}

fn err(name: &str, what: &str) -> impl FnOnce(rustix::io::Errno) -> NetError {
    let what = format!("{what} for tap {name}");
    move |e| NetError::Netlink {
        what,
        source: e.into(),
    }
}

/// Makes the persistent tap `name`, owned by `uid`/`gid` when given.
pub fn add(name: &str, uid: Option<u32>, gid: Option<u32>) -> Result<(), NetError> {
    if name.is_empty() || name.len() >= IFNAMSIZ {
        return Err(err(name, "name")(rustix::io::Errno::INVAL));
    }
    let fd = rustix::fs::open(
        "/dev/net/tun",
        OFlags::RDWR | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(err(name, "open /dev/net/tun"))?;
    let mut req = IfReq {
        name: [0; IFNAMSIZ],
        flags: IFF_TAP | IFF_NO_PI,
        _pad: [0; 22],
    };
    req.name[..name.len()].copy_from_slice(name.as_bytes());
    // SAFETY: TUNSETIFF reads (and writes back) a `struct ifreq`; `IfReq` has its layout
    // (16-byte name, then the union whose first member is the short flags, 40 bytes in all)
    // and lives for the call.
    unsafe { ioctl(&fd, Setter::<TUNSETIFF, IfReq>::new(req)) }.map_err(err(name, "TUNSETIFF"))?;
    if let Some(u) = uid {
        // SAFETY: TUNSETOWNER takes the uid as the integer argument itself.
        unsafe { ioctl(&fd, IntegerSetter::<TUNSETOWNER>::new_usize(u as usize)) }
            .map_err(err(name, "TUNSETOWNER"))?;
    }
    if let Some(g) = gid {
        // SAFETY: TUNSETGROUP takes the gid as the integer argument itself.
        unsafe { ioctl(&fd, IntegerSetter::<TUNSETGROUP>::new_usize(g as usize)) }
            .map_err(err(name, "TUNSETGROUP"))?;
    }
    // SAFETY: TUNSETPERSIST takes 0 or 1 as the integer argument itself.
    unsafe { ioctl(&fd, IntegerSetter::<TUNSETPERSIST>::new_usize(1)) }
        .map_err(err(name, "TUNSETPERSIST"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_and_opcodes_match_the_kernel() {
        assert_eq!(std::mem::size_of::<IfReq>(), 40);
        assert_eq!(TUNSETIFF, 0x4004_54ca);
        assert_eq!(TUNSETPERSIST, 0x4004_54cb);
        assert_eq!(TUNSETOWNER, 0x4004_54cc);
        assert_eq!(TUNSETGROUP, 0x4004_54ce);
        assert!(add(&"x".repeat(16), None, None).is_err());
    }
}
