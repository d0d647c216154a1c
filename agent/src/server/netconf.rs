//! The guest interface's MAC, address and default route set in process with the kernel's
//! interface and route ioctls, rather than by running `ip` six times: starting a program is
//! what is slow in a guest whose kernel runs interpreted (seconds each), and a warm clone gets
//! its network before anything else runs.
//!
//! In the order `ip` would: link down (a MAC can change only then), the MAC, link up, the
//! address and netmask (replacing the primary IPv4 address), then the default route (taking
//! an address away flushes the routes through the interface, so it comes last). The caller
//! falls back to the `ip` commands when any step fails.

use crate::proto::Net;
use rustix::fd::OwnedFd;
use rustix::ioctl::{ioctl, Opcode, Setter, Updater};
use std::net::Ipv4Addr;

const SIOCGIFFLAGS: Opcode = 0x8913;
const SIOCSIFFLAGS: Opcode = 0x8914;
const SIOCSIFADDR: Opcode = 0x8916;
const SIOCSIFNETMASK: Opcode = 0x891c;
const SIOCSIFHWADDR: Opcode = 0x8924;
const SIOCADDRT: Opcode = 0x890B;
const SIOCDELRT: Opcode = 0x890C;

const IFF_UP: i16 = 0x1;
const ARPHRD_ETHER: u16 = 1;
const AF_INET: u16 = 2;
const RTF_UP: u16 = 0x1;
const RTF_GATEWAY: u16 = 0x2;

/// `struct ifreq`: the name, then a 24-byte union (flags, or a `struct sockaddr`).
#[repr(C)]
#[derive(Clone, Copy)]
struct IfReq {
    name: [u8; 16],
    data: [u8; 24],
}

/// `struct rtentry` (linux/route.h).
#[repr(C)]
struct RtEntry {
    rt_pad1: u64,
    rt_dst: [u8; 16],
    rt_gateway: [u8; 16],
    rt_genmask: [u8; 16],
    rt_flags: u16,
    rt_pad2: i16,
    rt_pad3: u64,
    rt_pad4: *mut u8,
    rt_metric: i16,
    rt_dev: *mut u8,
    rt_mtu: u64,
    rt_window: u64,
    rt_irtt: u16,
}

/// A `struct sockaddr_in` in a `struct sockaddr`'s 16 bytes.
fn sockaddr_in(ip: Ipv4Addr) -> [u8; 16] {
    let mut s = [0u8; 16];
    s[..2].copy_from_slice(&AF_INET.to_ne_bytes());
    s[4..8].copy_from_slice(&ip.octets());
    s
}

/// A MAC address `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut parts = s.split(':');
    for b in &mut out {
        let p = parts.next()?;
        if p.len() != 2 {
            return None;
        }
        *b = u8::from_str_radix(p, 16).ok()?;
    }
    parts.next().is_none().then_some(out)
}

fn ifreq(dev: &str) -> std::io::Result<IfReq> {
    let b = dev.as_bytes();
    if b.is_empty() || b.len() > 15 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("interface name {dev:?}"),
        ));
    }
    let mut r = IfReq {
        name: [0; 16],
        data: [0; 24],
    };
    r.name[..b.len()].copy_from_slice(b);
    Ok(r)
}

fn flags(sock: &OwnedFd, dev: &str) -> std::io::Result<i16> {
    let mut r = ifreq(dev)?;
    // SAFETY: SIOCGIFFLAGS reads and writes a `struct ifreq`, which `IfReq` lays out.
    unsafe { ioctl(sock, Updater::<SIOCGIFFLAGS, IfReq>::new(&mut r)) }?;
    Ok(i16::from_ne_bytes([r.data[0], r.data[1]]))
}

fn set_flags(sock: &OwnedFd, dev: &str, f: i16) -> std::io::Result<()> {
    let mut r = ifreq(dev)?;
    r.data[..2].copy_from_slice(&f.to_ne_bytes());
    // SAFETY: SIOCSIFFLAGS reads a `struct ifreq` with the flags set.
    unsafe { ioctl(sock, Setter::<SIOCSIFFLAGS, IfReq>::new(r)) }?;
    Ok(())
}

fn set_sockaddr<const OP: Opcode>(sock: &OwnedFd, dev: &str, sa: [u8; 16]) -> std::io::Result<()> {
    let mut r = ifreq(dev)?;
    r.data[..16].copy_from_slice(&sa);
    // SAFETY: the SIOCSIF* address ioctls read a `struct ifreq` holding a `struct sockaddr`.
    unsafe { ioctl(sock, Setter::<OP, IfReq>::new(r)) }?;
    Ok(())
}

fn route<const OP: Opcode>(sock: &OwnedFd, dev: &str, gw: Ipv4Addr) -> std::io::Result<()> {
    let mut name = [0u8; 16];
    name[..dev.len().min(15)].copy_from_slice(&dev.as_bytes()[..dev.len().min(15)]);
    let mut rt = RtEntry {
        rt_pad1: 0,
        rt_dst: sockaddr_in(Ipv4Addr::UNSPECIFIED),
        rt_gateway: sockaddr_in(gw),
        rt_genmask: sockaddr_in(Ipv4Addr::UNSPECIFIED),
        rt_flags: RTF_UP | RTF_GATEWAY,
        rt_pad2: 0,
        rt_pad3: 0,
        rt_pad4: std::ptr::null_mut(),
        rt_metric: 0,
        rt_dev: name.as_mut_ptr(),
        rt_mtu: 0,
        rt_window: 0,
        rt_irtt: 0,
    };
    // SAFETY: SIOCADDRT/SIOCDELRT read a `struct rtentry`, which `RtEntry` lays out; `rt_dev`
    // points at `name`, a NUL-terminated string alive for the call.
    unsafe { ioctl(sock, Updater::<OP, RtEntry>::new(&mut rt)) }?;
    Ok(())
}

/// The netmask of a prefix length.
fn netmask(prefix: u8) -> Ipv4Addr {
    let p = u32::from(prefix.min(32));
    Ipv4Addr::from(if p == 0 { 0 } else { u32::MAX << (32 - p) })
}

/// Gives the interface `n.dev` (default `eth0`) the MAC, address and default route of `n`.
pub fn apply(n: &Net) -> std::io::Result<()> {
    use rustix::net::{AddressFamily, SocketType};
    let dev = n.dev.clone().unwrap_or_else(|| "eth0".into());
    let sock = rustix::net::socket(AddressFamily::INET, SocketType::DGRAM, None)?;
    let f = flags(&sock, &dev)?;
    if let Some(m) = &n.mac {
        let mac = parse_mac(m).ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("MAC {m:?}"))
        })?;
        set_flags(&sock, &dev, f & !IFF_UP)?;
        let mut sa = [0u8; 16];
        sa[..2].copy_from_slice(&ARPHRD_ETHER.to_ne_bytes());
        sa[2..8].copy_from_slice(&mac);
        set_sockaddr::<SIOCSIFHWADDR>(&sock, &dev, sa)?;
    }
    set_flags(&sock, &dev, f | IFF_UP)?;
    set_sockaddr::<SIOCSIFADDR>(&sock, &dev, sockaddr_in(n.ip))?;
    set_sockaddr::<SIOCSIFNETMASK>(&sock, &dev, sockaddr_in(netmask(n.prefix)))?;
    if let Some(gw) = n.gateway {
        // `ip route replace`: whatever default there was goes first.
        // None there (ESRCH) is fine, and so is any other failure: the add says.
        let _ = route::<SIOCDELRT>(&sock, &dev, gw);
        match route::<SIOCADDRT>(&sock, &dev, gw) {
            Err(e) if e.raw_os_error() == Some(17) => {} // EEXIST: it is there
            r => r?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_are_the_kernels() {
        assert_eq!(std::mem::size_of::<IfReq>(), 40);
        assert_eq!(std::mem::size_of::<RtEntry>(), 120);
        assert_eq!(std::mem::offset_of!(RtEntry, rt_flags), 56);
        assert_eq!(std::mem::offset_of!(RtEntry, rt_metric), 80);
        assert_eq!(std::mem::offset_of!(RtEntry, rt_dev), 88);
    }

    #[test]
    fn macs_and_masks() {
        assert_eq!(parse_mac("06:00:0a:c8:00:05"), Some([6, 0, 10, 200, 0, 5]));
        assert_eq!(parse_mac("06:00:0a:c8:00"), None);
        assert_eq!(parse_mac("06:00:0a:c8:00:05:07"), None);
        assert_eq!(parse_mac("g6:00:0a:c8:00:05"), None);
        assert_eq!(netmask(24), Ipv4Addr::new(255, 255, 255, 0));
        assert_eq!(netmask(0), Ipv4Addr::UNSPECIFIED);
        assert_eq!(netmask(32), Ipv4Addr::BROADCAST);
        let s = sockaddr_in(Ipv4Addr::new(10, 200, 0, 5));
        assert_eq!(&s[4..8], &[10, 200, 0, 5]);
    }

    /// Needs root in a network namespace of its own (nothing else there): run it as
    /// `sudo unshare -n cargo test -p banger-agent -- --ignored netconf`.
    #[test]
    #[ignore]
    fn netconf_on_a_dummy_interface() {
        let sh = |c: &str| {
            let o = std::process::Command::new("sh")
                .arg("-c")
                .arg(c)
                .output()
                .unwrap();
            String::from_utf8_lossy(&o.stdout).into_owned()
        };
        sh("ip tuntap add bgtest0 mode tap && ip addr add 10.9.0.9/24 dev bgtest0 && ip link set bgtest0 up && ip route add default via 10.9.0.1");
        apply(&Net {
            ip: Ipv4Addr::new(10, 9, 0, 7),
            prefix: 24,
            gateway: Some(Ipv4Addr::new(10, 9, 0, 1)),
            dns: Vec::new(),
            mac: Some("06:00:0a:09:00:07".into()),
            dev: Some("bgtest0".into()),
        })
        .unwrap();
        let link = sh("ip -o link show bgtest0");
        assert!(
            link.contains("06:00:0a:09:00:07") && link.contains(",UP"),
            "{link}"
        );
        let addr = sh("ip -o -4 addr show dev bgtest0");
        assert!(
            addr.contains("10.9.0.7/24") && !addr.contains("10.9.0.9"),
            "{addr}"
        );
        let routes = sh("ip route show default");
        assert!(
            routes.contains("default via 10.9.0.1 dev bgtest0"),
            "{routes}"
        );
        sh("ip link del bgtest0");
    }
}
