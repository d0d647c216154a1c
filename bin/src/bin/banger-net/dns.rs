//! The guests' DNS servers: the host's upstream resolvers (banger runs no resolver of its
//! own). Loopback resolvers (systemd-resolved's 127.0.0.53, a local dnsmasq) cannot serve
//! guests, so they are skipped and systemd-resolved's list of real upstreams is used.

use std::net::Ipv4Addr;

/// The IPv4 `nameserver` lines of a resolv.conf, in order, and whether any was loopback.
pub fn parse(text: &str) -> (Vec<Ipv4Addr>, bool) {
    let mut out = Vec::new();
    let mut loopback = false;
    for line in text.lines() {
        let mut f = line.split_whitespace();
        if f.next() != Some("nameserver") {
            continue;
        }
        let Some(Ok(ip)) = f.next().map(str::parse::<Ipv4Addr>) else {
            continue;
        };
        if ip.is_loopback() || ip.is_unspecified() {
            loopback = true;
        } else if !out.contains(&ip) {
            out.push(ip);
        }
    }
    (out, loopback)
}

/// The host's upstream resolvers the guests can reach.
pub fn host_resolvers() -> Vec<Ipv4Addr> {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let (mut found, loopback) = parse(&read("/etc/resolv.conf"));
    if found.is_empty() && loopback {
        found = parse(&read("/run/systemd/resolve/resolv.conf")).0;
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf() {
        let (v, lo) = parse(
            "# comment\nsearch lan\nnameserver 192.0.2.53\nnameserver 127.0.0.53\nnameserver ::1\nnameserver 2001:db8::1\nnameserver 192.0.2.53\nnameserver 198.51.100.1 # x\noptions edns0\n",
        );
        assert_eq!(
            v,
            [
                "192.0.2.53".parse::<Ipv4Addr>().unwrap(),
                "198.51.100.1".parse().unwrap()
            ]
        );
        assert!(lo);
        assert_eq!(parse("nameserver 127.0.0.53\n"), (vec![], true));
        assert_eq!(parse(""), (vec![], false));
    }
}
