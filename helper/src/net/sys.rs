//! The host's network as `net` needs it (interfaces, addresses, routes, over rtnetlink in
//! process), running `nft`, and the few /proc files net needs.

use super::subnet::Subnet;
use super::NetError;
use std::net::Ipv4Addr;
use std::path::Path;

/// Runs a program; on failure the error names the command and carries its stderr.
pub fn run(prog: &str, args: &[&str], stdin: Option<&str>) -> Result<String, NetError> {
    banger::timing::span(prog, || run_now(prog, args, stdin))
}

fn run_now(prog: &str, args: &[&str], stdin: Option<&str>) -> Result<String, NetError> {
    let shown = || format!("{prog} {}", args.join(" "));
    let mut e = duct::cmd(prog, args)
        .stdout_capture()
        .stderr_capture()
        .unchecked();
    e = match stdin {
        Some(s) => e.stdin_bytes(s.as_bytes().to_vec()),
        None => e.stdin_null(),
    };
    let out = e.run().map_err(|source| NetError::Spawn {
        cmd: shown(),
        source,
    })?;
    if !out.status.success() {
        let mut stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        if stderr.is_empty() {
            stderr = format!("exited with {}", out.status);
        }
        return Err(NetError::Cmd {
            cmd: shown(),
            stderr,
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub use super::rtnl::{Addr, Link, Route, Rtnl};

/// Every interface in this network namespace.
pub fn links() -> Result<Vec<Link>, NetError> {
    Rtnl::open()?.links()
}

/// Whether an interface named `name` exists (one ioctl).
pub fn exists(name: &str) -> bool {
    nix::net::if_::if_nametoindex(name).is_ok()
}

/// The interface of the default route in the main table, if there is one.
pub fn uplink() -> Result<Option<String>, NetError> {
    Ok(super::rtnl::default_dev(&Rtnl::open()?.routes()?))
}

/// What on this host overlaps `subnet`, ignoring the bridge itself: the first route or
/// address found, described for the error message. Default routes overlap everything and
/// are no conflict.
pub fn overlap(subnet: &Subnet, bridge: &str) -> Result<Option<String>, NetError> {
    let mut nl = Rtnl::open()?;
    for a in nl.addrs()? {
        if a.ifname == bridge {
            continue;
        }
        if subnet.overlaps(&Subnet::containing(a.local, a.prefix)) {
            return Ok(Some(format!(
                "address {}/{} on {}",
                a.local, a.prefix, a.ifname
            )));
        }
    }
    for r in nl.routes()? {
        if r.dev.as_deref() == Some(bridge) || r.prefix == 0 {
            continue;
        }
        if subnet.overlaps(&Subnet::containing(r.dst, r.prefix)) {
            return Ok(Some(format!(
                "route {} (dev {}, table {})",
                route_dst(&r),
                r.dev.as_deref().unwrap_or("-"),
                r.table_name()
            )));
        }
    }
    Ok(None)
}

/// A route's destination as `ip route` prints it: `10.0.0.0/24`, or `10.0.0.1` for a /32.
fn route_dst(r: &Route) -> String {
    if r.prefix == 32 {
        r.dst.to_string()
    } else {
        format!("{}/{}", r.dst, r.prefix)
    }
}

/// True when `ifname` has `addr/prefix`.
pub fn has_addr(ifname: &str, addr: Ipv4Addr, prefix: u8) -> Result<bool, NetError> {
    Ok(Rtnl::open()?
        .addrs()?
        .iter()
        .any(|a| a.ifname == ifname && a.local == addr && a.prefix == prefix))
}

const IP_FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";

/// Reads net.ipv4.ip_forward.
pub fn ip_forward() -> Result<String, NetError> {
    std::fs::read_to_string(IP_FORWARD)
        .map(|s| s.trim().to_string())
        .map_err(|source| NetError::Io {
            path: IP_FORWARD.into(),
            source,
        })
}

/// Writes net.ipv4.ip_forward.
pub fn set_ip_forward(v: &str) -> Result<(), NetError> {
    std::fs::write(IP_FORWARD, v).map_err(|source| NetError::Io {
        path: IP_FORWARD.into(),
        source,
    })
}

/// The local ports in a /proc/net/{tcp,udp}[6] table, with the socket state (hex).
pub fn parse_proc_net(text: &str) -> Vec<(u16, u8)> {
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let local = f.nth(1)?;
            let state = f.nth(1)?;
            let port = u16::from_str_radix(local.rsplit_once(':')?.1, 16).ok()?;
            Some((port, u8::from_str_radix(state, 16).ok()?))
        })
        .collect()
}

/// True when a socket in this namespace listens on (tcp) or is bound to (udp) `port`.
pub fn port_in_use(proto: &str, port: u16) -> bool {
    const TCP_LISTEN: u8 = 0x0a;
    ["", "6"].iter().any(|v| {
        let path = format!("/proc/net/{proto}{v}");
        let Ok(text) = std::fs::read_to_string(Path::new(&path)) else {
            return false;
        };
        parse_proc_net(&text)
            .iter()
            .any(|&(p, st)| p == port && (proto == "udp" || st == TCP_LISTEN))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_net_tables() {
        let t = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0\n   1: 0100007F:0016 0100007F:C000 01 00000000:00000000 00:00000000 00000000     0        0 2 1 0 100 0 0 10 0\n";
        assert_eq!(parse_proc_net(t), vec![(8080, 0x0a), (22, 0x01)]);
        let t6 = "  sl  local_address                         remote_address                        st\n   0: 00000000000000000000000000000000:0050 00000000000000000000000000000000:0000 0A 0\n";
        assert_eq!(parse_proc_net(t6), vec![(80, 0x0a)]);
        assert!(parse_proc_net("header only\n").is_empty());
    }
}
