//! The `jail.*` ops: `jail.launch`, `jail.teardown`, `jail.list`.
//!
//! The Firecracker and jailer binaries come from the helper's own configuration, never from
//! the request; the jail id is the VM name; the kernel and initrd must lie in the image store,
//! the root disk in the VM dirs (or be a block device this VM's ledger entries name). The
//! paths are only checked lexically here: they are opened below their root with the owner's
//! credentials, never following a symlink.

use super::{Caller, Ctx, OpResult};
use crate::jail::{self, JailError, LaunchSpec, Launcher, RootDisk};
use crate::validate;
use banger::proto::{code, OpError};
use banger::store::Lock;
use serde::Deserialize;
use serde_json::Value;
use std::path::{Path, PathBuf};

use std::time::Duration;

pub fn dispatch(op: &str, ctx: &Ctx, _caller: &Caller, args: &Value) -> Option<OpResult> {
    Some(match op {
        "jail.launch" => launch(ctx, args),
        "jail.teardown" => teardown(ctx, args),
        "jail.list" => list(ctx, args),
        _ => return None,
    })
}

fn op_err(e: JailError) -> OpError {
    OpError::new(e.code(), banger::cli::one_line(&e))
}

/// Longest wait a request may ask for.
const MAX_TIMEOUT_MS: u64 = 120_000;
const MAX_GRACE_MS: u64 = 60_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LaunchArgs {
    name: String,
    #[serde(default = "default_launcher")]
    launcher: Launcher,
    kernel: PathBuf,
    #[serde(default)]
    initrd: Option<PathBuf>,
    rootfs: PathBuf,
    vcpus: u32,
    mem_mib: u32,
    #[serde(default)]
    timeout_ms: Option<u64>,
}

fn default_launcher() -> Launcher {
    Launcher::Jailer
}

/// One launch or teardown of a VM at a time.
pub(super) fn lock(ctx: &Ctx, name: &str) -> Result<Lock, OpError> {
    let root = ctx.root_dir()?;
    Lock::exclusive(&root.join(format!("jail-{name}.lock")))
        .map_err(|e| OpError::new(code::FAILED, banger::cli::one_line(&e)))
}

/// A block device is accepted as a disk only when this VM's ledger entries name it.
fn ledger_has_device(ctx: &Ctx, vm: &str, dev: &Path) -> Result<bool, OpError> {
    let d = dev.display().to_string();
    let entries = ctx.ledger.for_vm(vm).map_err(super::ledger_err)?;
    Ok(entries.iter().any(|e| {
        e.id == d
            || format!("/dev/mapper/{}", e.id) == d
            || e.data.get("path").and_then(Value::as_str) == Some(d.as_str())
            || e.data.get("device").and_then(Value::as_str) == Some(d.as_str())
    }))
}

fn launch(ctx: &Ctx, args: &Value) -> OpResult {
    let a: LaunchArgs = validate::args(args)?;
    let name = validate::name(&a.name)?.to_string();
    if !(1..=32).contains(&a.vcpus) {
        return Err(OpError::new(code::INVALID_ARGS, "vcpus must be 1-32"));
    }
    if !(128..=262_144).contains(&a.mem_mib) {
        return Err(OpError::new(
            code::INVALID_ARGS,
            "mem_mib must be 128-262144",
        ));
    }
    ctx.check_access(&name)?;
    let images = ctx.cfg.images_dir();
    let vms = ctx.cfg.vms_dir();
    let kernel = validate::below(&a.kernel, &images)?;
    let initrd = match &a.initrd {
        Some(p) => Some(validate::below(p, &images)?),
        None => None,
    };
    let rootfs = if a.rootfs.starts_with("/dev/") {
        let clean = validate::below(&a.rootfs, Path::new("/dev")).is_ok();
        if !clean || !ledger_has_device(ctx, &name, &a.rootfs)? {
            return Err(OpError::new(
                code::INVALID_PATH,
                format!(
                    "refused disk {}: a device banger's ledger does not hold for VM {name}",
                    a.rootfs.display()
                ),
            ));
        }
        RootDisk::Device(a.rootfs.clone())
    } else {
        RootDisk::File(validate::below(&a.rootfs, &vms)?)
    };
    let timeout = Duration::from_millis(a.timeout_ms.unwrap_or(10_000).clamp(100, MAX_TIMEOUT_MS));
    let spec = LaunchSpec {
        name: name.clone(),
        launcher: a.launcher,
        kernel,
        initrd,
        rootfs,
        vcpus: a.vcpus,
        mem_mib: a.mem_mib,
        timeout,
    };
    let _g = lock(ctx, &name)?;
    jail::launch(ctx, &spec).map_err(op_err)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TeardownArgs {
    name: String,
    #[serde(default)]
    grace_ms: Option<u64>,
}

fn teardown(ctx: &Ctx, args: &Value) -> OpResult {
    let a: TeardownArgs = validate::args(args)?;
    let name = validate::name(&a.name)?;
    let grace = Duration::from_millis(a.grace_ms.unwrap_or(3_000).min(MAX_GRACE_MS));
    ctx.check_access(name)?;
    let g = lock(ctx, name)?;
    let out = jail::teardown(ctx, name, grace).map_err(op_err)?;
    // Nothing of the jail is left: neither is its lock file.
    drop(g.remove_at_release());
    Ok(out)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListArgs {
    #[serde(default)]
    vm: Option<String>,
}

fn list(ctx: &Ctx, args: &Value) -> OpResult {
    let a: ListArgs = validate::args(args)?;
    let vm = match &a.vm {
        Some(v) => Some(validate::name(v)?),
        None => None,
    };
    jail::list(ctx, vm).map_err(op_err)
}
