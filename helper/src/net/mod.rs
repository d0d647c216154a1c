//! Privileged network work for guests: the bridge, one tap per VM, address allocation,
//! NAT and port forwards in banger's own nftables table, and IP forwarding.
//!
//! Every mutating operation runs under one lock of its own (`$root_dir/net.lock`), so
//! parallel pipelines (helper threads or in-process fallbacks) allocate without races
//! and never see a half-made bridge. Every resource is written to the ledger *before* it
//! is made (so a crash can leak nothing untracked), and teardown only touches resources
//! the ledger names.
//!
//! Ledger entries (`vm`, `kind`, `id`, `data`):
//! - `-`, `bridge`, bridge name, `{subnet, gateway, mac}`
//! - `-`, `nft-table`, `inet banger`, `{subnet}`
//! - `-`, `sysctl`, `net.ipv4.ip_forward`, `{previous}` (only when banger turned it on)
//! - VM, `addr`, guest IP, `{mac, tap}`: the allocation
//! - VM, `tap`, tap name, `{bridge, uid, gid}`
//! - `-`, `tap`, retired tap name (`bgz…`), `{retired, vm}`: a tap `down` retired, until
//!   the helper's thread has removed it ([`retire`])
//! - VM, `nft-rule`, `PROTO/HOSTPORT`, `{guest_ip, guest_port, comment}`: a port forward

mod forward;
pub mod nfnl;
pub mod nft;
pub mod retire;
pub mod rtnl;
pub mod subnet;
pub mod sys;
pub mod tap;
mod vm;

pub use forward::{forward, hosts, list, ForwardReq};
pub use vm::{down, up, DownInfo, UpInfo};

use crate::ledger::{Ledger, LedgerError};
use banger::proto::{code, OpError};
use banger::store::{Lock, StoreError};
use std::os::unix::fs::DirBuilderExt;
use std::path::PathBuf;
use subnet::Subnet;

pub const SHARED: &str = "-";
pub const KIND_BRIDGE: &str = "bridge";
pub const KIND_TABLE: &str = "nft-table";
pub const KIND_SYSCTL: &str = "sysctl";
pub const KIND_ADDR: &str = "addr";
pub const KIND_TAP: &str = "tap";
pub const KIND_RULE: &str = "nft-rule";
pub const SYSCTL_FORWARD: &str = "net.ipv4.ip_forward";

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("the configured subnet {subnet:?} is not usable: {why} (set BANGER_SUBNET or the config key \"subnet\")")]
    BadSubnet { subnet: String, why: String },
    #[error("the configured bridge name {name:?} is not usable: use 1-15 characters a-z, A-Z, 0-9, '-', '_', '.' (set BANGER_BRIDGE or the config key \"bridge\")")]
    BadBridge { name: String },
    #[error("subnet {subnet} overlaps {what} on this host: pick a free subnet with BANGER_SUBNET or the config key \"subnet\" (e.g. 10.201.0.0/24)")]
    Overlap { subnet: String, what: String },
    #[error("no free guest address left in {subnet} ({capacity} addresses, all held): take down VMs you do not need (banger-net down NAME) or configure a larger subnet")]
    Exhausted { subnet: String, capacity: u32 },
    #[error("interface {name} already exists and banger did not create it (it is not in the ledger): if it is a leftover, remove it with: ip link del {name}")]
    Collision { name: String },
    #[error("bridge {name} exists but banger did not create it (it is not in the ledger): remove it (ip link del {name}) or configure another bridge name with BANGER_BRIDGE")]
    ForeignBridge { name: String },
    #[error("the nftables table inet banger exists but banger's ledger has no record of it: if it is a leftover, remove it with: nft delete table inet banger")]
    ForeignTable,
    #[error("bridge {bridge} was set up for subnet {old} but the configuration now says {new}: take every VM's network down (banger-net down NAME...) before changing the subnet")]
    SubnetChanged {
        bridge: String,
        old: String,
        new: String,
    },
    #[error("{vm} has no network: run banger-net up {vm} first")]
    NoNet { vm: String },
    #[error("{vm} has no forward of {id}")]
    NoForward { vm: String, id: String },
    #[error("host port {id} is already forwarded to {owner}: pick another host port, or remove that forward first (banger-net forward --remove {owner} {spec})")]
    Forwarded {
        id: String,
        spec: String,
        owner: String,
    },
    #[error("host port {id} is in use by a socket on this host: pick another host port")]
    PortInUse { id: String },
    #[error("`{cmd}` failed: {stderr}")]
    Cmd { cmd: String, stderr: String },
    #[error("cannot {what}")]
    Netlink {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot run `{cmd}` (is it installed?)")]
    Spawn {
        cmd: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot parse the output of `{cmd}`")]
    Parse {
        cmd: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot access {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot take the network lock")]
    Lock(#[source] StoreError),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

impl NetError {
    /// The stable code in the helper's answer.
    pub fn code(&self) -> &'static str {
        match self {
            NetError::BadSubnet { .. } | NetError::BadBridge { .. } => "invalid_config",
            NetError::Overlap { .. } => "subnet_overlap",
            NetError::Exhausted { .. } => "exhausted",
            NetError::Collision { .. }
            | NetError::ForeignBridge { .. }
            | NetError::ForeignTable
            | NetError::SubnetChanged { .. }
            | NetError::Forwarded { .. } => code::CONFLICT,
            NetError::PortInUse { .. } => "port_in_use",
            NetError::NoNet { .. } | NetError::NoForward { .. } => code::NOT_FOUND,
            _ => code::FAILED,
        }
    }
}

impl From<NetError> for OpError {
    fn from(e: NetError) -> OpError {
        OpError::new(e.code(), banger::cli::one_line(&e))
    }
}

/// What the net operations work with: the ledger and the configuration.
pub struct Net<'a> {
    pub ledger: &'a Ledger,
    /// For reading the owner's records (as the owner).
    pub ctx: &'a crate::ops::Ctx,
    pub subnet: Subnet,
    pub bridge: String,
    pub owner_uid: Option<u32>,
    pub owner_gid: Option<u32>,
    /// Where VM records live: an address held by any record is never handed out again.
    pub vms_dir: PathBuf,
    lock_path: PathBuf,
}

impl<'a> Net<'a> {
    pub fn new(ctx: &'a crate::ops::Ctx) -> Result<Net<'a>, NetError> {
        let (ledger, cfg) = (&ctx.ledger, &ctx.cfg);
        let subnet = Subnet::parse(&cfg.subnet).map_err(|why| NetError::BadSubnet {
            subnet: cfg.subnet.clone(),
            why,
        })?;
        if !nft::safe_ifname(&cfg.bridge) || cfg.bridge.starts_with("bgr") {
            return Err(NetError::BadBridge {
                name: cfg.bridge.clone(),
            });
        }
        Ok(Net {
            ledger,
            ctx,
            subnet,
            bridge: cfg.bridge.clone(),
            owner_uid: ctx.owner.as_ref().map(|c| c.uid),
            owner_gid: ctx.owner.as_ref().map(|c| c.gid),
            vms_dir: cfg.vms_dir(),
            lock_path: cfg.root_dir.join("net.lock"),
        })
    }

    /// The lock every mutating net operation holds.
    pub(crate) fn lock(&self) -> Result<Lock, NetError> {
        if let Some(dir) = self.lock_path.parent() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|source| NetError::Io {
                    path: dir.to_path_buf(),
                    source,
                })?;
        }
        Lock::exclusive(&self.lock_path).map_err(NetError::Lock)
    }
}
