//! The `snap.*` ops: `snap.create`, `snap.customize`, `snap.remove`, `snap.list`.
//!
//! Requests carry names, never paths: the image's rootfs and the VM's disk are derived from
//! them (`images/IMAGE/rootfs.ext4`, `vms/VM/disk.ext4`) and opened below the state dir with
//! the owner's credentials, no symlink followed. Removal and customization act only on what
//! the ledger says this VM's disk is, and only for the caller who made it.

use super::{Caller, Ctx, OpResult};
use crate::snap::customize::{self, Custom, Net};
use crate::snap::disk::{self, CreateReq, AGENT_INIT_HOOK};
use crate::snap::Method;
use crate::validate;
use banger::proto::{code, OpError};
use serde::Deserialize;
use serde_json::{json, Value};

pub fn dispatch(op: &str, ctx: &Ctx, _caller: &Caller, args: &Value) -> Option<OpResult> {
    Some(match op {
        "snap.create" => create(ctx, args),
        "snap.customize" => customize_op(ctx, args),
        "snap.remove" => remove(ctx, args),
        "snap.list" => list(ctx, args),
        "snap.export" => export(ctx, args),
        _ => return None,
    })
}

/// Largest disk a request may ask for (16 TiB): a typo must not fill the host.
const MAX_DISK: u64 = 16 << 40;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateArgs {
    vm: String,
    image: String,
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    disk_size: Option<u64>,
    #[serde(default)]
    hostname: Option<String>,
    #[serde(default)]
    ssh_pubkey: Option<String>,
    #[serde(default)]
    host_keys: bool,
    #[serde(default)]
    net: Option<Net>,
    /// Install the guest agent (the helper's own binary) and its start.
    #[serde(default)]
    agent: bool,
    /// From the image's warm disk: nothing is written into it (the running guest gets its
    /// identity from the agent).
    #[serde(default)]
    warm: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExportArgs {
    vm: String,
    image: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CustomizeArgs {
    vm: String,
    #[serde(default)]
    hostname: Option<String>,
    #[serde(default)]
    ssh_pubkey: Option<String>,
    #[serde(default)]
    host_keys: bool,
    #[serde(default)]
    net: Option<Net>,
    #[serde(default)]
    agent: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VmArgs {
    vm: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListArgs {
    #[serde(default)]
    vm: Option<String>,
}

/// The largest agent binary the helper reads.
const MAX_AGENT: u64 = 64 << 20;

/// The guest agent the helper installs: its bytes and their sha256.
#[derive(Clone)]
pub struct Agent {
    pub bytes: Vec<u8>,
    pub sha256: String,
}

/// A file's identity: device, inode, size, change time (seconds, nanoseconds).
type FileKey = (u64, u64, i64, i64, i64);

/// The agent last read, by its file's identity: a resident helper reads and hashes its
/// agent once, not on every create.
static AGENT: std::sync::Mutex<Option<(FileKey, Agent)>> = std::sync::Mutex::new(None);

/// The guest agent binary from the helper's own configuration (never from a request): read
/// through root's directories only, and checked to be a static ELF for this host. `Err` is
/// the reason there is none, for a warning: a VM without the agent still boots.
fn agent_binary(ctx: &Ctx) -> Result<Agent, String> {
    let path = banger::agent::guest_binary_path(&ctx.cfg).ok_or(
        "no banger-agent for guests on this host (install it with 'make install', or set \"agent\" in the helper's config.json)",
    )?;
    let why = |w: String| format!("the guest agent {}: {w}", path.display());
    let (dir, name) = banger::fsx::split(&path).map_err(|e| why(banger::cli::one_line(&e)))?;
    let dir = banger::fsx::Dir::open_trusted(dir).map_err(|e| why(banger::cli::one_line(&e)))?;
    let key = |st: &rustix::fs::Stat| {
        (
            st.st_dev,
            st.st_ino,
            st.st_size,
            st.st_ctime,
            st.st_ctime_nsec as i64,
        )
    };
    let now = dir
        .stat_at(name)
        .map_err(|e| why(banger::cli::one_line(&e)))?
        .map(|st| key(&st));
    if let (Some(k), Ok(cache)) = (now, AGENT.lock()) {
        if let Some((ck, a)) = cache.as_ref() {
            if *ck == k {
                return Ok(a.clone());
            }
        }
    }
    let (f, st) = dir
        .open_file(std::path::Path::new(name), rustix::fs::OFlags::RDONLY)
        .map_err(|e| why(banger::cli::one_line(&e)))?;
    let bytes = banger::fsx::read_all_capped(f, &st, &path, MAX_AGENT)
        .map_err(|e| why(banger::cli::one_line(&e)))?;
    banger::agent::check_guest_binary(&bytes).map_err(why)?;
    let sha256 = crate::snap::slots::sha256_hex(&bytes);
    let a = Agent { bytes, sha256 };
    if let Ok(mut cache) = AGENT.lock() {
        *cache = Some((key(&st), a.clone()));
    }
    Ok(a)
}

/// `agent: true` in a request: the binary, or a warning saying why the VM gets none.
fn with_agent(ctx: &Ctx, want: bool, warnings: &mut Vec<String>) -> Option<Agent> {
    if !want {
        return None;
    }
    match agent_binary(ctx) {
        Ok(b) => Some(b),
        Err(w) => {
            warnings.push(format!(
                "{w}; the VM gets no agent (readiness and exec use SSH)"
            ));
            None
        }
    }
}

fn create(ctx: &Ctx, args: &Value) -> OpResult {
    let a: CreateArgs = validate::args(args)?;
    validate::name(&a.vm)?;
    validate::name(&a.image)?;
    let method = match &a.method {
        None => None,
        Some(m) => Some(Method::parse(m).ok_or_else(|| {
            OpError::new(
                code::INVALID_ARGS,
                format!("unknown method {m:?} (dm-snapshot, reflink or copy)"),
            )
        })?),
    };
    if let Some(s) = a.disk_size {
        if s == 0 || s > MAX_DISK {
            return Err(OpError::new(
                code::INVALID_ARGS,
                format!("disk_size {s} must be between 1 byte and 16 TiB"),
            ));
        }
    }
    let mut warnings = Vec::new();
    let custom = Custom {
        hostname: a.hostname,
        ssh_pubkey: a.ssh_pubkey,
        host_keys: a.host_keys,
        net: a.net,
        agent: None,
        agent_sha256: None,
    };
    customize::validate(&custom, &ctx.cfg.subnet)?;
    if a.warm && (!custom.is_empty() || a.agent || a.disk_size.is_some()) {
        return Err(OpError::new(
            code::INVALID_ARGS,
            "a disk from a warm snapshot takes no hostname, ssh_pubkey, host_keys, net, agent or disk_size: the running guest gets its identity from its agent",
        ));
    }
    ctx.check_access(&a.vm)?;
    let agent = with_agent(ctx, a.agent, &mut warnings);
    let custom = Custom {
        agent_sha256: agent.as_ref().map(|a| a.sha256.clone()),
        agent: agent.map(|a| a.bytes),
        ..custom
    };
    let req = CreateReq {
        vm: a.vm,
        image: a.image,
        method,
        disk_size: a.disk_size,
        custom,
        warm: a.warm,
    };
    let mut made = disk::create(ctx, &req)?;
    if !made.adopted {
        made.warnings.extend(warnings);
    }
    Ok(made.to_json())
}

fn customize_op(ctx: &Ctx, args: &Value) -> OpResult {
    let a: CustomizeArgs = validate::args(args)?;
    validate::name(&a.vm)?;
    let custom = Custom {
        hostname: a.hostname,
        ssh_pubkey: a.ssh_pubkey,
        host_keys: a.host_keys,
        net: a.net,
        agent: None,
        agent_sha256: None,
    };
    customize::validate(&custom, &ctx.cfg.subnet)?;
    if custom.is_empty() && !a.agent {
        return Err(OpError::new(
            code::INVALID_ARGS,
            "nothing to write: give hostname, ssh_pubkey, host_keys, net or agent",
        ));
    }
    ctx.check_access(&a.vm)?;
    // A launched VM's Firecracker has the disk open: writing under a live guest corrupts it.
    refuse_launched(
        ctx,
        &a.vm,
        &format!(
            "stop it and tear its jail down first ('banger down {}')",
            a.vm
        ),
    )?;
    let mut warnings = Vec::new();
    let agent = with_agent(ctx, a.agent, &mut warnings);
    let custom = Custom {
        agent_sha256: agent.as_ref().map(|a| a.sha256.clone()),
        agent: agent.map(|a| a.bytes),
        ..custom
    };
    if custom.is_empty() {
        return Ok(json!({"customized": false, "agent": null, "warnings": warnings}));
    }
    let agent = custom.agent.is_some().then_some(AGENT_INIT_HOOK);
    let done = disk::customize(ctx, &a.vm, &custom)?;
    Ok(json!({
        "path": done.path,
        "host_keys": done.host_keys,
        "customized": done.written,
        "agent": agent,
        "warnings": warnings,
    }))
}

fn remove(ctx: &Ctx, args: &Value) -> OpResult {
    let a: VmArgs = validate::args(args)?;
    validate::name(&a.vm)?;
    ctx.check_access(&a.vm)?;
    let removed = disk::remove(ctx, &a.vm)?;
    let ids: Vec<Value> = removed
        .iter()
        .map(|e| json!({"kind": e.kind, "id": e.id}))
        .collect();
    Ok(json!({"removed": ids}))
}

/// A conflict when the ledger holds a jail for `vm`: its Firecracker has the disk open.
fn refuse_launched(ctx: &Ctx, vm: &str, next: &str) -> Result<(), OpError> {
    let jailed = ctx
        .ledger
        .for_vm(vm)
        .map_err(crate::ops::ledger_err)?
        .iter()
        .any(|e| e.kind == "jail");
    if jailed {
        return Err(OpError::new(
            code::CONFLICT,
            format!("{vm} is launched: its disk is in use; {next}"),
        ));
    }
    Ok(())
}

/// `snap.export`: copies a stopped VM's disk into its image's `warm.partial/disk.ext4` (for
/// `banger-image warm`). The VM must have no jail (no Firecracker writes to the disk).
fn export(ctx: &Ctx, args: &Value) -> OpResult {
    let a: ExportArgs = validate::args(args)?;
    validate::name(&a.vm)?;
    validate::name(&a.image)?;
    ctx.check_access(&a.vm)?;
    refuse_launched(
        ctx,
        &a.vm,
        &format!("tear its jail down first ('banger-jail teardown {}')", a.vm),
    )?;
    let done = crate::snap::export::export(ctx, &a.vm, &a.image)?;
    Ok(json!({"path": done.path, "size_bytes": done.size, "method": done.method}))
}

fn list(ctx: &Ctx, args: &Value) -> OpResult {
    let a: ListArgs = validate::args(args)?;
    if let Some(v) = &a.vm {
        validate::name(v)?;
    }
    let disks = disk::list(ctx, a.vm.as_deref())?;
    Ok(json!({"disks": disks}))
}
