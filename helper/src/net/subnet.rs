//! Pure address logic: the guests' subnet, the gateway, MACs and tap names derived from an
//! address, overlap checks and picking a free address. No system calls here.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

/// An IPv4 network: its base address (host bits zero) and prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subnet {
    pub base: u32,
    pub prefix: u8,
}

/// The narrowest and widest guest subnets banger accepts.
pub const MIN_PREFIX: u8 = 8;
pub const MAX_PREFIX: u8 = 30;

impl Subnet {
    /// Parses `A.B.C.D/N`. Host bits must be zero; N must be 8-30 (room for a gateway and at
    /// least one guest, and not absurdly large).
    pub fn parse(s: &str) -> Result<Subnet, String> {
        let (addr, len) = s
            .split_once('/')
            .ok_or_else(|| "expected ADDRESS/PREFIX, e.g. 10.200.0.0/24".to_string())?;
        let addr: Ipv4Addr = addr
            .parse()
            .map_err(|_| format!("{addr:?} is not an IPv4 address"))?;
        let prefix: u8 = len
            .parse()
            .map_err(|_| format!("{len:?} is not a prefix length"))?;
        if !(MIN_PREFIX..=MAX_PREFIX).contains(&prefix) {
            return Err(format!(
                "prefix /{prefix} is out of range (use /{MIN_PREFIX} to /{MAX_PREFIX})"
            ));
        }
        let base = u32::from(addr);
        let net = Subnet { base, prefix };
        if base & !net.mask() != 0 {
            let fixed = Ipv4Addr::from(base & net.mask());
            return Err(format!(
                "host bits are set (did you mean {fixed}/{prefix}?)"
            ));
        }
        Ok(net)
    }

    /// A network from any address in it (for routes and interface addresses).
    pub fn containing(addr: Ipv4Addr, prefix: u8) -> Subnet {
        let prefix = prefix.min(32);
        let mask = mask_of(prefix);
        Subnet {
            base: u32::from(addr) & mask,
            prefix,
        }
    }

    pub fn mask(&self) -> u32 {
        mask_of(self.prefix)
    }

    fn broadcast(&self) -> u32 {
        self.base | !self.mask()
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == self.base
    }

    /// True when the two networks share any address.
    pub fn overlaps(&self, other: &Subnet) -> bool {
        let p = self.prefix.min(other.prefix);
        let m = mask_of(p);
        self.base & m == other.base & m
    }

    /// The bridge's address: the first host address.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.base + 1)
    }

    /// Addresses guests may get: after the gateway, before the broadcast address.
    pub fn guest_range(&self) -> std::ops::RangeInclusive<u32> {
        (self.base + 2)..=(self.broadcast() - 1)
    }

    /// True when `ip` is an address a guest may hold.
    pub fn is_guest(&self, ip: Ipv4Addr) -> bool {
        self.guest_range().contains(&u32::from(ip))
    }

    /// The lowest guest address not in `taken`.
    pub fn first_free(&self, taken: &BTreeSet<Ipv4Addr>) -> Option<Ipv4Addr> {
        self.guest_range()
            .map(Ipv4Addr::from)
            .find(|ip| !taken.contains(ip))
    }

    /// How many addresses guests may have.
    pub fn capacity(&self) -> u32 {
        self.broadcast() - self.base - 2
    }
}

impl std::fmt::Display for Subnet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.base), self.prefix)
    }
}

fn mask_of(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix.min(32)))
    }
}

/// The guest's MAC: locally administered, unicast, `06:00:` then the four octets of its
/// address, so the MAC is stable for the address and never collides inside one subnet.
pub fn mac_for(ip: Ipv4Addr) -> String {
    let o = ip.octets();
    format!("06:00:{:02x}:{:02x}:{:02x}:{:02x}", o[0], o[1], o[2], o[3])
}

/// The bridge's own MAC, fixed so the gateway's MAC does not change as taps come and go.
pub fn bridge_mac(gateway: Ipv4Addr) -> String {
    mac_for(gateway)
}

/// The tap's name: `bgr` and the address in hex (11 bytes, within IFNAMSIZ-1 = 15). Unique
/// because addresses are unique, and independent of the VM's name (which may be 32 bytes).
pub fn tap_for(ip: Ipv4Addr) -> String {
    format!("bgr{:08x}", u32::from(ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn parse_subnets() {
        let s = Subnet::parse("10.200.0.0/24").unwrap();
        assert_eq!(s.gateway(), ip("10.200.0.1"));
        assert_eq!(s.to_string(), "10.200.0.0/24");
        assert_eq!(s.capacity(), 253);
        assert!(s.is_guest(ip("10.200.0.2")));
        assert!(s.is_guest(ip("10.200.0.254")));
        assert!(!s.is_guest(ip("10.200.0.1")));
        assert!(!s.is_guest(ip("10.200.0.255")));
        assert!(!s.is_guest(ip("10.200.0.0")));
        assert!(!s.is_guest(ip("10.200.1.2")));
        assert_eq!(Subnet::parse("10.0.0.0/30").unwrap().capacity(), 1);
        assert_eq!(Subnet::parse("10.0.0.0/16").unwrap().capacity(), 65533);
        for bad in [
            "10.200.0.0",
            "10.200.0.1/24",
            "10.200.0.0/31",
            "10.0.0.0/7",
            "x/24",
            "10.200.0.0/x",
            "10.200.0.0/24/1",
            "",
        ] {
            assert!(Subnet::parse(bad).is_err(), "{bad}");
        }
        assert!(Subnet::parse("10.200.0.1/24")
            .unwrap_err()
            .contains("did you mean 10.200.0.0/24"));
    }

    #[test]
    fn overlap() {
        let s = Subnet::parse("10.200.0.0/24").unwrap();
        let o = |a: [u8; 4], p: u8| s.overlaps(&Subnet::containing(Ipv4Addr::from(a), p));
        assert!(o([10, 200, 0, 0], 16));
        assert!(o([10, 200, 0, 128], 25));
        assert!(o([10, 200, 0, 7], 32));
        assert!(!o([10, 200, 1, 0], 24));
        assert!(o([10, 0, 0, 0], 8));
        assert!(!o([192, 168, 1, 0], 24));
    }

    #[test]
    fn macs_and_taps() {
        assert_eq!(mac_for(ip("10.200.0.2")), "06:00:0a:c8:00:02");
        assert_eq!(tap_for(ip("10.200.0.2")), "bgr0ac80002");
        assert_eq!(tap_for(ip("255.255.255.254")).len(), 11);
        // The first octet 0x06: locally administered (bit 1), unicast (bit 0 clear).
        let first = u8::from_str_radix(&mac_for(ip("1.2.3.4"))[..2], 16).unwrap();
        assert_eq!(first & 0b11, 0b10);
    }

    #[test]
    fn allocation_takes_the_lowest_free_address() {
        let s = Subnet::parse("10.0.0.0/29").unwrap();
        let mut taken = BTreeSet::new();
        let mut got = Vec::new();
        while let Some(a) = s.first_free(&taken) {
            taken.insert(a);
            got.push(a.to_string());
        }
        assert_eq!(
            got,
            ["10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6"]
        );
        taken.remove(&ip("10.0.0.4"));
        assert_eq!(s.first_free(&taken), Some(ip("10.0.0.4")));
    }
}
