//! Reading banger's nftables table over netlink, in process: whether `table inet banger`
//! exists, and its rules (chain, handle, comment). These reads are on every `net.up` (is the
//! NAT in place?); running `nft -j list ...` for them cost a process and a JSON parse each.
//! Changes still go through `nft -f -`, one atomic batch per operation, and only when
//! something is missing or different.
//!
//! The messages are nf_tables' own (linux/netfilter/nf_tables.h): `NFT_MSG_GETTABLE` with the
//! table's name, and a dump of `NFT_MSG_GETRULE` for the table; a rule's comment is the
//! `NFTNL_UDATA_RULE_COMMENT` item of its user data, where nft keeps it.

use super::NetError;
use netlink_packet_core::{NlasIterator, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST};
use netlink_sys::{protocols::NETLINK_NETFILTER, Socket, SocketAddr};

const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFT_MSG_NEWTABLE: u16 = 0;
const NFT_MSG_GETTABLE: u16 = 1;
const NFT_MSG_NEWCHAIN: u16 = 3;
const NFT_MSG_GETCHAIN: u16 = 4;
const NFT_MSG_NEWRULE: u16 = 6;
const NFT_MSG_GETRULE: u16 = 7;
const NFTA_TABLE_NAME: u16 = 1;
const NFTA_CHAIN_TABLE: u16 = 1;
const NFTA_CHAIN_NAME: u16 = 3;
const NFTA_RULE_TABLE: u16 = 1;
const NFTA_RULE_CHAIN: u16 = 2;
const NFTA_RULE_HANDLE: u16 = 3;
const NFTA_RULE_USERDATA: u16 = 7;
const NFTNL_UDATA_RULE_COMMENT: u8 = 0;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLA_TYPE_MASK: u16 = 0x3fff;

/// `NFPROTO_*` of a family name nft uses.
pub fn family(name: &str) -> Option<u8> {
    match name {
        "inet" => Some(1),
        "ip" => Some(2),
        "arp" => Some(3),
        "netdev" => Some(5),
        "bridge" => Some(7),
        "ip6" => Some(10),
        _ => None,
    }
}

fn nl_err(what: &str) -> impl FnOnce(std::io::Error) -> NetError + '_ {
    move |source| NetError::Netlink {
        what: what.to_string(),
        source,
    }
}

/// One rule of a table: its chain, handle and comment (empty when it has none).
pub type Rule = (String, u64, String);

/// A request: the netlink header, nfgenmsg and the attributes (type, value).
fn message(kind: u16, flags: u16, seq: u32, fam: u8, attrs: &[(u16, &[u8])]) -> Vec<u8> {
    let mut b = Vec::with_capacity(64);
    b.extend_from_slice(&0u32.to_ne_bytes()); // length, set below
    b.extend_from_slice(&((NFNL_SUBSYS_NFTABLES << 8) | kind).to_ne_bytes());
    b.extend_from_slice(&(NLM_F_REQUEST | flags).to_ne_bytes());
    b.extend_from_slice(&seq.to_ne_bytes());
    b.extend_from_slice(&0u32.to_ne_bytes());
    b.extend_from_slice(&[fam, 0, 0, 0]); // nfgenmsg: family, version 0, res_id 0
    for (t, v) in attrs {
        let len = 4 + v.len();
        b.extend_from_slice(&(len as u16).to_ne_bytes());
        b.extend_from_slice(&t.to_ne_bytes());
        b.extend_from_slice(v);
        b.resize((b.len() + 3) & !3, 0);
    }
    let total = b.len() as u32;
    b[..4].copy_from_slice(&total.to_ne_bytes());
    b
}

/// A NUL-terminated string attribute value.
fn cstr(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

fn text(v: &[u8]) -> String {
    let end = v.iter().position(|&b| b == 0).unwrap_or(v.len());
    String::from_utf8_lossy(&v[..end]).into_owned()
}

/// A message of an answer: its type and its payload past the netlink header.
struct Msg<'a> {
    kind: u16,
    seq: u32,
    payload: &'a [u8],
}

fn messages(buf: &[u8]) -> Vec<Msg<'_>> {
    let mut out = Vec::new();
    let mut off = 0;
    while off + 16 <= buf.len() {
        let h = &buf[off..];
        let len = u32::from_ne_bytes([h[0], h[1], h[2], h[3]]) as usize;
        if len < 16 || off + len > buf.len() {
            break;
        }
        out.push(Msg {
            kind: u16::from_ne_bytes([h[4], h[5]]),
            seq: u32::from_ne_bytes([h[8], h[9], h[10], h[11]]),
            payload: &h[16..len],
        });
        off += (len + 3) & !3;
    }
    out
}

/// The errno of an `NLMSG_ERROR` payload (0 for an ACK).
fn errno(payload: &[u8]) -> i32 {
    payload
        .get(..4)
        .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
        .unwrap_or(0)
}

/// The attributes of an nf_tables message (past its nfgenmsg).
fn attrs(payload: &[u8]) -> Vec<(u16, Vec<u8>)> {
    let Some(body) = payload.get(4..) else {
        return Vec::new();
    };
    NlasIterator::new(body)
        .filter_map(Result::ok)
        .map(|n| (n.kind() & NLA_TYPE_MASK, n.value().to_vec()))
        .collect()
}

/// The comment in a rule's user data, if any.
pub fn udata_comment(u: &[u8]) -> Option<String> {
    let mut i = 0;
    while i + 2 <= u.len() {
        let (t, l) = (u[i], u[i + 1] as usize);
        let v = u.get(i + 2..i + 2 + l)?;
        if t == NFTNL_UDATA_RULE_COMMENT {
            return Some(text(v));
        }
        i += 2 + l;
    }
    None
}

/// Sends one request and collects the answers of type `want` until the end (a dump's
/// DONE, or the ACK). `Ok(None)` when the kernel answers ENOENT.
fn exchange(req: &[u8], seq: u32, want: u16, what: &str) -> Result<Option<Vec<Vec<u8>>>, NetError> {
    let mut sock = Socket::new(NETLINK_NETFILTER).map_err(nl_err(what))?;
    sock.bind_auto().map_err(nl_err(what))?;
    sock.connect(&SocketAddr::new(0, 0)).map_err(nl_err(what))?;
    sock.send(req, 0).map_err(nl_err(what))?;
    let mut out = Vec::new();
    let mut rx: Vec<u8> = Vec::with_capacity(64 * 1024);
    loop {
        rx.clear();
        let n = sock
            .recv(&mut rx, nix::libc::MSG_TRUNC)
            .map_err(nl_err(what))?;
        if n > rx.len() {
            return Err(nl_err(what)(std::io::Error::other(format!(
                "a {n}-byte netlink answer did not fit the buffer"
            ))));
        }
        for m in messages(&rx) {
            if m.seq != seq {
                continue;
            }
            match m.kind {
                NLMSG_DONE => return Ok(Some(out)),
                NLMSG_ERROR => {
                    return match errno(m.payload) {
                        0 => Ok(Some(out)),
                        e if -e == rustix::io::Errno::NOENT.raw_os_error() => Ok(None),
                        e => Err(nl_err(what)(std::io::Error::from_raw_os_error(-e))),
                    };
                }
                k if k == (NFNL_SUBSYS_NFTABLES << 8) | want => out.push(m.payload.to_vec()),
                _ => {}
            }
        }
    }
}

/// True when the table `fam name` exists.
pub fn table_exists(fam: &str, name: &str) -> Result<bool, NetError> {
    let what = "read the nftables tables";
    let f = family(fam)
        .ok_or_else(|| nl_err(what)(std::io::Error::other(format!("unknown family {fam}"))))?;
    let req = message(
        NFT_MSG_GETTABLE,
        NLM_F_ACK,
        1,
        f,
        &[(NFTA_TABLE_NAME, &cstr(name))],
    );
    Ok(exchange(&req, 1, NFT_MSG_NEWTABLE, what)?.is_some_and(|t| !t.is_empty()))
}

/// The names of the chains of the table `fam name` (none when the table is missing).
pub fn chains(fam: &str, name: &str) -> Result<Vec<String>, NetError> {
    let what = "read the nftables chains";
    let f = family(fam)
        .ok_or_else(|| nl_err(what)(std::io::Error::other(format!("unknown family {fam}"))))?;
    let req = message(
        NFT_MSG_GETCHAIN,
        NLM_F_DUMP,
        1,
        f,
        &[(NFTA_CHAIN_TABLE, &cstr(name))],
    );
    let Some(msgs) = exchange(&req, 1, NFT_MSG_NEWCHAIN, what)? else {
        return Ok(Vec::new());
    };
    Ok(msgs
        .iter()
        .filter(|p| p.first() == Some(&f))
        .filter_map(|p| {
            let a = attrs(p);
            let table = a
                .iter()
                .find(|(k, _)| *k == NFTA_CHAIN_TABLE)
                .map(|(_, v)| text(v));
            let chain = a
                .iter()
                .find(|(k, _)| *k == NFTA_CHAIN_NAME)
                .map(|(_, v)| text(v));
            (table.as_deref() == Some(name)).then_some(chain)?
        })
        .collect())
}

/// Every rule of the table `fam name` (none when the table is missing).
pub fn rules(fam: &str, name: &str) -> Result<Vec<Rule>, NetError> {
    let what = "read the nftables rules";
    let f = family(fam)
        .ok_or_else(|| nl_err(what)(std::io::Error::other(format!("unknown family {fam}"))))?;
    let req = message(
        NFT_MSG_GETRULE,
        NLM_F_DUMP,
        1,
        f,
        &[(NFTA_RULE_TABLE, &cstr(name))],
    );
    let Some(msgs) = exchange(&req, 1, NFT_MSG_NEWRULE, what)? else {
        return Ok(Vec::new());
    };
    Ok(msgs.iter().filter_map(|p| parse_rule(p, f, name)).collect())
}

/// A NEWRULE message's (chain, handle, comment), if it is a rule of `fam name`.
fn parse_rule(payload: &[u8], fam: u8, table: &str) -> Option<Rule> {
    if payload.first() != Some(&fam) {
        return None;
    }
    let (mut t, mut chain, mut handle, mut comment) = (None, None, None, String::new());
    for (k, v) in attrs(payload) {
        match k {
            NFTA_RULE_TABLE => t = Some(text(&v)),
            NFTA_RULE_CHAIN => chain = Some(text(&v)),
            NFTA_RULE_HANDLE if v.len() == 8 => {
                handle = Some(u64::from_be_bytes(v[..8].try_into().ok()?))
            }
            NFTA_RULE_USERDATA => comment = udata_comment(&v).unwrap_or_default(),
            _ => {}
        }
    }
    (t.as_deref() == Some(table)).then_some(())?;
    Some((chain?, handle?, comment))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_laid_out_as_the_kernel_reads_it() {
        let m = message(
            NFT_MSG_GETTABLE,
            NLM_F_ACK,
            7,
            1,
            &[(NFTA_TABLE_NAME, &cstr("banger"))],
        );
        // 16 header + 4 nfgenmsg + 4 attr header + "banger\0" padded to 8.
        assert_eq!(m.len(), 32);
        assert_eq!(u32::from_ne_bytes(m[..4].try_into().unwrap()), 32);
        assert_eq!(u16::from_ne_bytes([m[4], m[5]]), (10 << 8) | 1);
        assert_eq!(u16::from_ne_bytes([m[6], m[7]]), NLM_F_REQUEST | NLM_F_ACK);
        assert_eq!(u32::from_ne_bytes(m[8..12].try_into().unwrap()), 7);
        assert_eq!(&m[16..20], &[1, 0, 0, 0]);
        assert_eq!(u16::from_ne_bytes([m[20], m[21]]), 11);
        assert_eq!(&m[24..31], b"banger\0");
    }

    #[test]
    fn a_rule_is_read_back() {
        // A NEWRULE as the kernel sends it: nfgenmsg, then table, chain, handle, userdata.
        let udata = [
            0u8, 11, b'b', b'a', b'n', b'g', b'e', b'r', b'-', b'n', b'a', b't', 0,
        ];
        let m = message(
            NFT_MSG_NEWRULE,
            0,
            1,
            1,
            &[
                (NFTA_RULE_TABLE, &cstr("banger")),
                (NFTA_RULE_CHAIN, &cstr("postrouting")),
                (NFTA_RULE_HANDLE, &9u64.to_be_bytes()),
                (NFTA_RULE_USERDATA, &udata),
            ],
        );
        let msgs = messages(&m);
        assert_eq!(msgs.len(), 1);
        assert_eq!(
            parse_rule(msgs[0].payload, 1, "banger"),
            Some(("postrouting".into(), 9, "banger-nat".into()))
        );
        assert_eq!(parse_rule(msgs[0].payload, 1, "other"), None);
        assert_eq!(parse_rule(msgs[0].payload, 2, "banger"), None);
        assert_eq!(
            udata_comment(&[1, 2, 0, 0, 0, 3, b'x', b'y', 0]).as_deref(),
            Some("xy")
        );
        assert_eq!(udata_comment(&[0, 9, b'x']), None);
    }
}
