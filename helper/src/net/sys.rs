//! Running `ip` and `nft`, reading their JSON, and the few /proc files net needs.

use super::subnet::{parse_dst, Subnet};
use super::NetError;
use serde::Deserialize;
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

/// `ip ARGS` with `-j`, parsed.
fn ip_json<T: for<'de> Deserialize<'de>>(args: &[&str]) -> Result<T, NetError> {
    let mut full = vec!["-j"];
    full.extend_from_slice(args);
    let text = run("ip", &full, None)?;
    // `ip -j` prints nothing at all for an empty list on some versions.
    let text = if text.trim().is_empty() { "[]" } else { &text };
    serde_json::from_str(text).map_err(|source| NetError::Parse {
        cmd: format!("ip {}", full.join(" ")),
        source,
    })
}

#[derive(Debug, Clone, Deserialize)]
pub struct Link {
    pub ifname: String,
    #[serde(default)]
    pub flags: Vec<String>,
    #[serde(default)]
    pub master: Option<String>,
    #[serde(default)]
    pub address: Option<String>,
}

impl Link {
    pub fn is_up(&self) -> bool {
        self.flags.iter().any(|f| f == "UP")
    }
}

/// Every interface in this network namespace.
pub fn links() -> Result<Vec<Link>, NetError> {
    ip_json(&["link", "show"])
}

#[derive(Debug, Clone, Deserialize)]
pub struct AddrInfo {
    #[serde(default)]
    pub local: Option<String>,
    #[serde(default)]
    pub prefixlen: Option<u8>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct IfAddrs {
    pub ifname: String,
    #[serde(default)]
    pub addr_info: Vec<AddrInfo>,
}

/// IPv4 addresses of every interface.
pub fn addrs() -> Result<Vec<IfAddrs>, NetError> {
    ip_json(&["-4", "addr", "show"])
}

#[derive(Debug, Clone, Deserialize)]
pub struct Route {
    pub dst: String,
    #[serde(default)]
    pub dev: Option<String>,
    #[serde(default)]
    pub table: Option<String>,
}

/// IPv4 routes of every table.
pub fn routes() -> Result<Vec<Route>, NetError> {
    ip_json(&["-4", "route", "show", "table", "all"])
}

/// The interface of the default route in the main table, if there is one.
pub fn uplink() -> Result<Option<String>, NetError> {
    let r: Vec<Route> = ip_json(&["-4", "route", "show", "default"])?;
    Ok(r.into_iter().find_map(|r| r.dev))
}

/// What on this host overlaps `subnet`, ignoring the bridge itself: the first route or
/// address found, described for the error message.
pub fn overlap(subnet: &Subnet, bridge: &str) -> Result<Option<String>, NetError> {
    for a in addrs()? {
        if a.ifname == bridge {
            continue;
        }
        for i in &a.addr_info {
            let (Some(local), Some(p)) = (&i.local, i.prefixlen) else {
                continue;
            };
            let Ok(ip) = local.parse::<Ipv4Addr>() else {
                continue;
            };
            if subnet.overlaps(&Subnet::containing(ip, p)) {
                return Ok(Some(format!("address {local}/{p} on {}", a.ifname)));
            }
        }
    }
    for r in routes()? {
        if r.dev.as_deref() == Some(bridge) {
            continue;
        }
        if let Some(d) = parse_dst(&r.dst) {
            if subnet.overlaps(&d) {
                return Ok(Some(format!(
                    "route {} (dev {}, table {})",
                    r.dst,
                    r.dev.as_deref().unwrap_or("-"),
                    r.table.as_deref().unwrap_or("main")
                )));
            }
        }
    }
    Ok(None)
}

/// True when `ifname` has `addr/prefix`.
pub fn has_addr(ifname: &str, addr: Ipv4Addr, prefix: u8) -> Result<bool, NetError> {
    let a: Vec<IfAddrs> = ip_json(&["-4", "addr", "show", "dev", ifname])?;
    let want = addr.to_string();
    Ok(a.iter()
        .flat_map(|i| &i.addr_info)
        .any(|i| i.local.as_deref() == Some(want.as_str()) && i.prefixlen == Some(prefix)))
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

    #[test]
    fn ip_json_shapes() {
        let l: Vec<Link> = serde_json::from_str(r#"[{"ifindex":2,"ifname":"banger0","flags":["BROADCAST","UP"],"address":"06:00:0a:c8:00:01"},{"ifname":"bgr0ac80002","flags":[],"master":"banger0"}]"#).unwrap();
        assert!(l[0].is_up());
        assert_eq!(l[1].master.as_deref(), Some("banger0"));
        let r: Vec<Route> = serde_json::from_str(
            r#"[{"dst":"default","gateway":"192.0.2.1","dev":"eth0","flags":[]},{"type":"local","dst":"127.0.0.1","table":"local","dev":"lo"}]"#,
        )
        .unwrap();
        assert_eq!(r[1].table.as_deref(), Some("local"));
    }
}
