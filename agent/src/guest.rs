//! What banger puts into a guest, in one place: where the agent lives and how it starts, and
//! the identity files (hostname, network) that both the disk writer (`banger-snap`, before
//! first boot) and the agent's `identity` op (in a running guest) write the same way.

use crate::proto::Net;

/// Where the agent is installed in a guest.
pub const AGENT_PATH: &str = "/usr/local/sbin/banger-agent";
/// The systemd unit for guests that boot systemd.
pub const UNIT_PATH: &str = "/etc/systemd/system/banger-agent.service";
/// The unit's enablement (early: part of sysinit.target).
pub const UNIT_WANTS: &str = "/etc/systemd/system/sysinit.target.wants/banger-agent.service";

/// The systemd unit: started early, before the network, restarted if it dies.
pub fn unit() -> String {
    format!(
        "# written by banger: the guest agent on vsock port {port}\n\
[Unit]\n\
Description=banger guest agent (vsock port {port})\n\
DefaultDependencies=no\n\
After=local-fs.target\n\
Before=sysinit.target shutdown.target\n\
Conflicts=shutdown.target\n\
\n\
[Service]\n\
ExecStart={AGENT_PATH}\n\
Restart=always\n\
RestartSec=1\n\
\n\
[Install]\n\
WantedBy=sysinit.target\n",
        port = crate::proto::PORT
    )
}

/// `/etc/hosts` for a guest named `h`.
pub fn hosts(h: &str) -> String {
    format!("127.0.0.1\tlocalhost\n127.0.1.1\t{h}\n::1\tlocalhost ip6-localhost ip6-loopback\n")
}

/// The network files for `n`: `/etc/banger/net.json`, `/etc/banger/net.env` (shell
/// variables for a busybox init), `/etc/systemd/network/10-banger.network` and, with DNS
/// servers, `/etc/resolv.conf`.
pub fn net_files(n: &Net) -> Vec<(&'static str, String)> {
    let mut json = n.clone();
    json.dev = None;
    let mut out = vec![(
        "/etc/banger/net.json",
        serde_json::to_string_pretty(&json).unwrap_or_default() + "\n",
    )];
    let dns: Vec<String> = n.dns.iter().map(ToString::to_string).collect();
    out.push((
        "/etc/banger/net.env",
        format!(
            "# written by banger; read by the guest's init\nBANGER_IP={}\nBANGER_PREFIX={}\nBANGER_GATEWAY={}\nBANGER_DNS=\"{}\"\nBANGER_MAC={}\n",
            n.ip,
            n.prefix,
            n.gateway.map(|g| g.to_string()).unwrap_or_default(),
            dns.join(" "),
            n.mac.clone().unwrap_or_default()
        ),
    ));
    let mut nd = String::from("# written by banger\n[Match]\n");
    match &n.mac {
        Some(m) => nd.push_str(&format!("MACAddress={m}\n")),
        None => nd.push_str("Name=eth0\n"),
    }
    nd.push_str(&format!("\n[Network]\nAddress={}/{}\n", n.ip, n.prefix));
    if let Some(g) = n.gateway {
        nd.push_str(&format!("Gateway={g}\n"));
    }
    for d in &dns {
        nd.push_str(&format!("DNS={d}\n"));
    }
    out.push(("/etc/systemd/network/10-banger.network", nd));
    if !dns.is_empty() {
        let rc: String = dns.iter().map(|d| format!("nameserver {d}\n")).collect();
        out.push(("/etc/resolv.conf", rc));
    }
    out
}

/// A MAC address as `xx:xx:xx:xx:xx:xx`.
pub fn valid_mac(m: &str) -> bool {
    let parts: Vec<&str> = m.split(':').collect();
    parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// A hostname banger gives: 1-63 letters, digits and dashes, not starting with a dash.
pub fn valid_hostname(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 63
        && !h.starts_with('-')
        && h.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_files() {
        let n = Net {
            ip: "10.200.0.5".parse().unwrap(),
            prefix: 24,
            gateway: Some("10.200.0.1".parse().unwrap()),
            dns: vec!["10.200.0.1".parse().unwrap()],
            mac: Some("06:00:0a:c8:00:05".into()),
            dev: Some("eth0".into()),
        };
        let f = net_files(&n);
        let get = |p: &str| f.iter().find(|(q, _)| *q == p).unwrap().1.clone();
        assert!(get("/etc/banger/net.env").contains("BANGER_IP=10.200.0.5\nBANGER_PREFIX=24\n"));
        assert!(!get("/etc/banger/net.json").contains("dev"));
        assert!(get("/etc/systemd/network/10-banger.network")
            .contains("MACAddress=06:00:0a:c8:00:05\n"));
        assert_eq!(get("/etc/resolv.conf"), "nameserver 10.200.0.1\n");
        let mut n2 = n.clone();
        n2.dns.clear();
        assert!(net_files(&n2).iter().all(|(p, _)| *p != "/etc/resolv.conf"));
    }

    #[test]
    fn names() {
        assert!(valid_hostname("dev-1"));
        assert!(!valid_hostname("-x") && !valid_hostname("") && !valid_hostname("a.b"));
        assert!(!valid_hostname(&"a".repeat(64)));
        assert!(valid_mac("06:00:0a:c8:00:05"));
        assert!(!valid_mac("06:00:0a:c8:00") && !valid_mac("06:00:0a:c8:00:zz"));
        assert!(unit().contains(&format!("ExecStart={AGENT_PATH}\n")));
    }
}
