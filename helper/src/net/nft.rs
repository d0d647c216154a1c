//! banger's nftables table (`table inet banger`): the NAT for the subnet and the port
//! forwards. Only this table is ever read, written or deleted; rules are found by their
//! comment, so a rule banger did not write is never touched.

use super::subnet::Subnet;
use super::sys::run;
use super::NetError;
use std::net::Ipv4Addr;

pub const FAMILY: &str = "inet";
pub const TABLE: &str = "banger";
/// The ledger id of the table.
pub const TABLE_ID: &str = "inet banger";
/// The masquerade rule's comment.
pub const NAT_COMMENT: &str = "banger-nat";

/// True when `s` is safe to put inside double quotes in an nft script and is a plausible
/// interface name (IFNAMSIZ - 1 bytes).
pub fn safe_ifname(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 15
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// The script that makes sure the table and its chains exist and that the masquerade rule
/// is the current one (the uplink may have changed). One atomic transaction; idempotent.
pub fn ensure_script(subnet: &Subnet, bridge: &str, uplink: Option<&str>) -> String {
    let out = match uplink {
        Some(u) if safe_ifname(u) && u != bridge => format!("oifname \"{u}\""),
        _ => format!("oifname != \"{bridge}\""),
    };
    format!(
        "add table {FAMILY} {TABLE}\n\
         add chain {FAMILY} {TABLE} prerouting {{ type nat hook prerouting priority dstnat; policy accept; }}\n\
         add chain {FAMILY} {TABLE} output {{ type nat hook output priority -100; policy accept; }}\n\
         add chain {FAMILY} {TABLE} postrouting {{ type nat hook postrouting priority srcnat; policy accept; }}\n\
         flush chain {FAMILY} {TABLE} postrouting\n\
         add rule {FAMILY} {TABLE} postrouting ip saddr {subnet} ip daddr != {subnet} {out} masquerade comment \"{NAT_COMMENT}\"\n"
    )
}

/// A port forward: host port to a guest's address and port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forward {
    pub vm: String,
    pub proto: String,
    pub host_port: u16,
    pub guest_ip: Ipv4Addr,
    pub guest_port: u16,
}

impl Forward {
    /// The ledger id: one forward per protocol and host port on this host.
    pub fn id(&self) -> String {
        format!("{}/{}", self.proto, self.host_port)
    }
    /// The comment that marks this forward's rules.
    pub fn comment(&self) -> String {
        format!("banger-fwd {} {}", self.vm, self.id())
    }
    /// The rules: DNAT for traffic arriving for a local address (prerouting), and for
    /// traffic the host itself sends to one of its non-loopback addresses (output).
    pub fn add_script(&self) -> String {
        let m = format!(
            "meta nfproto ipv4 fib daddr type local {p} dport {hp} dnat ip to {ip}:{gp} comment \"{c}\"",
            p = self.proto,
            hp = self.host_port,
            ip = self.guest_ip,
            gp = self.guest_port,
            c = self.comment()
        );
        format!(
            "add rule {FAMILY} {TABLE} prerouting {m}\n\
             add rule {FAMILY} {TABLE} output ip daddr != 127.0.0.0/8 {m}\n"
        )
    }
}

/// True when `table inet banger` exists (read over netlink).
pub fn table_exists() -> Result<bool, NetError> {
    super::nfnl::table_exists(FAMILY, TABLE)
}

/// (chain, handle, comment) of every rule in banger's table (read over netlink).
pub fn rules() -> Result<Vec<(String, u64, String)>, NetError> {
    super::nfnl::rules(FAMILY, TABLE)
}

/// True when banger's table has its three chains and the masquerade rule: what
/// [`ensure_script`] makes is there (which uplink the rule names is the ledger's to know).
pub fn nat_in_place() -> Result<bool, NetError> {
    let chains = super::nfnl::chains(FAMILY, TABLE)?;
    let all = ["prerouting", "output", "postrouting"]
        .iter()
        .all(|c| chains.iter().any(|x| x == c));
    Ok(all
        && rules()?
            .iter()
            .any(|(chain, _, comment)| chain == "postrouting" && comment == NAT_COMMENT))
}

/// Applies a script atomically.
pub fn apply(script: &str) -> Result<(), NetError> {
    run("nft", &["-f", "-"], Some(script)).map(|_| ())
}

/// Deletes every rule of banger's table whose comment is `comment`.
pub fn delete_commented(comment: &str) -> Result<usize, NetError> {
    if !table_exists()? {
        return Ok(0);
    }
    let script: String = rules()?
        .into_iter()
        .filter(|(_, _, c)| c == comment)
        .map(|(chain, h, _)| format!("delete rule {FAMILY} {TABLE} {chain} handle {h}\n"))
        .collect();
    if script.is_empty() {
        return Ok(0);
    }
    apply(&script)?;
    Ok(script.lines().count())
}

/// Deletes banger's table (the caller checked the ledger).
pub fn delete_table() -> Result<(), NetError> {
    if table_exists()? {
        apply(&format!("delete table {FAMILY} {TABLE}\n"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ensure_script_text() {
        let s = Subnet::parse("10.200.0.0/24").unwrap();
        let t = ensure_script(&s, "banger0", Some("eth0"));
        assert!(t.contains("add table inet banger\n"));
        assert!(t.contains("flush chain inet banger postrouting\n"));
        assert!(t.ends_with("add rule inet banger postrouting ip saddr 10.200.0.0/24 ip daddr != 10.200.0.0/24 oifname \"eth0\" masquerade comment \"banger-nat\"\n"));
        // No uplink, or a name unsafe to quote: everything but the bridge.
        for u in [None, Some("we\"ird"), Some("banger0")] {
            let t = ensure_script(&s, "banger0", u);
            assert!(t.contains("oifname != \"banger0\" masquerade"), "{u:?}");
        }
        assert!(!t.contains("table ip ") && !t.contains("table inet filter"));
    }

    #[test]
    fn forward_rules() {
        let f = Forward {
            vm: "dev1".into(),
            proto: "tcp".into(),
            host_port: 8080,
            guest_ip: "10.200.0.2".parse().unwrap(),
            guest_port: 80,
        };
        assert_eq!(f.id(), "tcp/8080");
        assert_eq!(f.comment(), "banger-fwd dev1 tcp/8080");
        let s = f.add_script();
        assert_eq!(s.lines().count(), 2);
        assert!(s.starts_with("add rule inet banger prerouting meta nfproto ipv4 fib daddr type local tcp dport 8080 dnat ip to 10.200.0.2:80 comment \"banger-fwd dev1 tcp/8080\"\n"));
        assert!(s.contains("add rule inet banger output ip daddr != 127.0.0.0/8 meta nfproto ipv4"));
    }

    #[test]
    fn ifnames() {
        assert!(safe_ifname("banger0"));
        assert!(safe_ifname("eth0.100"));
        assert!(!safe_ifname(""));
        assert!(!safe_ifname("a\"b"));
        assert!(!safe_ifname("a b"));
        assert!(!safe_ifname(&"x".repeat(16)));
    }
}
