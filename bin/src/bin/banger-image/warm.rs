//! `banger-image warm IMAGE`: boots the image once in a VM of its own (`warm-IMAGE`, through
//! `banger up --cold`, so in its own jail, with its agent), waits for the agent's hello, has the
//! guest sync its filesystems, pauses it, takes a Full snapshot, stops its Firecracker and
//! keeps the snapshot, the memory file and the disk as it was at that moment as the image's
//! warm artifacts (`images/IMAGE/warm/`, see [`banger::warm`]). The VM is removed whatever
//! happens; the artifacts replace the old ones only once they are whole.

use crate::store::Images;
use crate::BIN;
use banger::config::Config;
use banger::record::{self, Record};
use banger::section::{self, Jail, Snap};
use banger::store::Store;
use banger::warm::{self, FileMeta, WarmMeta};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

pub struct WarmArgs<'a> {
    pub name: &'a str,
    pub vcpus: u32,
    pub mem_mib: u32,
    pub timeout: u64,
    /// What says the guest is up (`banger up --wait`).
    pub wait: &'a str,
}

#[derive(Debug, thiserror::Error)]
pub enum WarmStepError {
    #[error(transparent)]
    Image(#[from] crate::store::StoreError),
    #[error("a VM named {vm:?} exists: banger-image warm boots the image in a VM of that name (if it is left from an interrupted warm, remove it: banger rm {vm} --yes)")]
    Busy { vm: String },
    #[error("{bin} is not installed next to banger-image (reinstall banger)")]
    Missing { bin: &'static str },
    #[error("{what} failed ({status}); see above")]
    Step { what: String, status: String },
    #[error("{vm} has no jail chroot in its record: warm snapshots need the jailer launcher")]
    NoChroot { vm: String },
    #[error("{vm}: {what}")]
    Firecracker {
        vm: String,
        what: &'static str,
        #[source]
        source: banger::fc_api::FcError,
    },
    #[error("cannot {what} {path}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Warm(#[from] banger::warm::WarmError),
    #[error("the root helper's snap.export of {vm}'s disk failed")]
    Export {
        vm: String,
        #[source]
        source: banger::client::ClientError,
    },
    #[error("cannot read {vm}'s record")]
    Record {
        vm: String,
        #[source]
        source: banger::store::StoreError,
    },
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> WarmStepError + 'a {
    move |source| WarmStepError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// The VM that warms `image`: `warm-IMAGE`, cut to a valid VM name.
pub fn vm_name(image: &str) -> String {
    let mut n = format!("warm-{image}");
    n.truncate(32);
    while n.ends_with('-') {
        n.pop();
    }
    n
}

/// Runs a banger binary next to this one; `Err` when it fails.
fn run(bin: &'static str, args: &[&str], quiet: bool) -> Result<Vec<u8>, WarmStepError> {
    let path = banger::cli::sibling(bin).ok_or(WarmStepError::Missing { bin })?;
    let out = Command::new(&path)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(if quiet {
            Stdio::null()
        } else {
            Stdio::inherit()
        })
        .output()
        .map_err(io("run", &path))?;
    if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(WarmStepError::Step {
            what: format!("{bin} {}", args.join(" ")),
            status: out.status.to_string(),
        })
    }
}

/// Removes the warming VM (everything banger made for it) and the partial artifacts.
struct Cleanup {
    vm: String,
    partial: PathBuf,
    started: bool,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if self.started && run("banger-rm", &[&self.vm, "--yes", "--force"], true).is_err() {
            eprintln!(
                    "{BIN}: warning: could not remove the warming VM {}: run 'banger rm {} --yes --force'",
                    self.vm, self.vm
            );
        }
        let _ = std::fs::remove_dir_all(&self.partial);
    }
}

/// Moves `from` to `to`: rename, else copy and remove.
fn move_file(from: &Path, to: &Path) -> Result<(), WarmStepError> {
    if std::fs::rename(from, to).is_ok() {
        return Ok(());
    }
    std::fs::copy(from, to).map_err(io("copy", from))?;
    std::fs::remove_file(from).map_err(io("remove", from))
}

fn note(msg: &str) {
    eprintln!("{BIN}: {msg}");
}

/// Warms `a.name`. Returns the image's record with its `warm` section.
pub fn warm(
    cfg: &Config,
    images: &Images,
    store: &Store,
    a: &WarmArgs,
) -> Result<Record, WarmStepError> {
    let mut image = images.load(a.name)?;
    let vm = vm_name(a.name);
    if store.exists(&vm) {
        return Err(WarmStepError::Busy { vm });
    }
    let _g = images.lock_image(a.name)?;
    let img_dir = images.image_dir(a.name);
    let partial = img_dir.join(warm::PARTIAL);
    let _ = std::fs::remove_dir_all(&partial);
    std::fs::create_dir(&partial).map_err(io("create", &partial))?;
    let owner = cfg
        .owner_uid
        .filter(|_| rustix::process::geteuid().is_root())
        .map(|u| (u, cfg.owner_gid.unwrap_or(u)));
    if let Some((u, g)) = owner {
        std::os::unix::fs::chown(&partial, Some(u), Some(g)).map_err(io("chown", &partial))?;
    }
    let mut cleanup = Cleanup {
        vm: vm.clone(),
        partial: partial.clone(),
        started: true,
    };
    note(&format!(
        "booting {} in the VM {vm} (a real guest can take minutes here)",
        a.name
    ));
    let (vcpus, mem, timeout) = (
        a.vcpus.to_string(),
        a.mem_mib.to_string(),
        a.timeout.to_string(),
    );
    run(
        "banger-up",
        &[
            &vm,
            "--image",
            a.name,
            "--cold",
            "--vcpus",
            &vcpus,
            "--mem",
            &mem,
            "--wait",
            a.wait,
            "--timeout",
            &timeout,
            "--json",
        ],
        false,
    )?;
    let rec = store.load(&vm).map_err(|source| WarmStepError::Record {
        vm: vm.clone(),
        source,
    })?;
    let jail = section::get::<Jail>(&rec)
        .ok()
        .flatten()
        .unwrap_or_default();
    let chroot = PathBuf::from(
        jail.chroot
            .clone()
            .ok_or_else(|| WarmStepError::NoChroot { vm: vm.clone() })?,
    );
    let api = jail.api_sock.clone().unwrap_or_default();
    let client = banger::fc_api::Client::new(Path::new(&api));
    let fc = |what: &'static str| {
        let vm = vm.clone();
        move |source| WarmStepError::Firecracker { vm, what, source }
    };
    // Let it settle: the guest's dirty pages on its disk, so the disk copy is whole.
    if let Some(sock) = banger::agent::vsock_sock(&rec) {
        if let Err(e) = sync_guest(&sock) {
            note(&format!(
                "warning: the guest did not sync its filesystems ({}); the snapshot holds its unwritten pages, which the clones write to their own disks",
                banger::cli::one_line(&e)
            ));
        }
    }
    let version = client
        .get("/version")
        .map_err(fc("GET /version"))?
        .get("firecracker_version")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    client.pause().map_err(fc("pause"))?;
    note("paused; taking a Full snapshot");
    let (state_in, mem_in) = ("warm-out.vmstate", "warm-out.memory");
    client
        .snapshot_create(&format!("/{state_in}"), &format!("/{mem_in}"))
        .map_err(fc("snapshot/create"))?;
    // Stopped where it is: the disk stays as the snapshot saw it.
    run("banger-vm", &["kill", &vm], true)?;
    move_file(&chroot.join(state_in), &partial.join(warm::STATE))?;
    move_file(&chroot.join(mem_in), &partial.join(warm::MEMORY))?;
    run("banger-jail", &["teardown", &vm], true)?;
    note("copying the disk as it was");
    let helper = banger::client::Helper::new(cfg, Some(banger_helper::local));
    helper
        .call("snap.export", json!({"vm": vm, "image": a.name}))
        .map_err(|source| WarmStepError::Export {
            vm: vm.clone(),
            source,
        })?;
    let snap = section::get::<Snap>(&rec)
        .ok()
        .flatten()
        .unwrap_or_default();
    let vm_sec = section::get::<banger::section::Vm>(&rec)
        .ok()
        .flatten()
        .unwrap_or_default();
    run("banger-rm", &[&vm, "--yes"], true)?;
    cleanup.started = false;
    note("checksumming the artifacts");
    let mut files: BTreeMap<String, FileMeta> = BTreeMap::new();
    for f in warm::FILES {
        let p = partial.join(f);
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o400))
            .map_err(io("chmod", &p))?;
        files.insert(f.to_string(), warm::describe(&p)?);
    }
    let meta = WarmMeta {
        v: 1,
        kind: "warm".into(),
        image: a.name.into(),
        created_at: record::now_rfc3339(),
        firecracker_version: version,
        vcpus: a.vcpus,
        mem_mib: a.mem_mib,
        agent: snap.agent.clone(),
        boot_args: vm_sec.boot_args.clone(),
        boot_ms: vm_sec.boot_ms,
        files,
        extra: Default::default(),
    };
    let meta_path = partial.join(warm::META);
    let mut bytes = serde_json::to_vec_pretty(&meta).unwrap_or_default();
    bytes.push(b'\n');
    banger::atomic::write_atomic_owned(&meta_path, &bytes, 0o644, owner)
        .map_err(io("write", &meta_path))?;
    if let Some((u, g)) = owner {
        for f in warm::FILES {
            let _ = std::os::unix::fs::chown(partial.join(f), Some(u), Some(g));
        }
    }
    // The new artifacts replace the old ones whole.
    let target = img_dir.join(warm::DIR);
    let aside = img_dir.join(format!(".warm-old-{}", std::process::id()));
    let had_old = target.exists();
    if had_old {
        std::fs::rename(&target, &aside).map_err(io("move aside", &target))?;
    }
    std::fs::rename(&partial, &target).map_err(io("rename into", &target))?;
    if had_old {
        let _ = std::fs::remove_dir_all(&aside);
    }
    if let Ok(d) = std::fs::File::open(&img_dir) {
        let _ = d.sync_all();
    }
    image.insert("warm".into(), summary(&meta, Ok(())));
    Ok(image)
}

/// `sync` in the guest through its agent.
fn sync_guest(sock: &Path) -> Result<(), banger::agent::AgentError> {
    let conn = banger::agent::connect(sock, Duration::from_secs(10))?;
    let client = banger::agent::Client::new(conn)
        .map_err(|e| banger::agent::AgentError::Client(banger::agent::ClientError::Io(e)))?;
    let session = client.exec(banger::agent::proto::Exec {
        argv: vec!["sync".into()],
        timeout_ms: Some(120_000),
        ..Default::default()
    })?;
    let (mut out, mut err) = (std::io::sink(), std::io::sink());
    let e = session.run(None, &mut out, &mut err)?;
    match e.code {
        Some(0) => Ok(()),
        _ => Err(banger::agent::AgentError::Client(
            banger::agent::ClientError::Protocol(format!("sync ended {e:?}")),
        )),
    }
}

/// The `warm` field `banger-image list` shows: the state (`fresh`, `stale`, `broken`), when,
/// with which Firecracker, for which machine.
pub fn summary(meta: &WarmMeta, state: Result<(), String>) -> Value {
    let size: u64 = meta.files.values().map(|f| f.size).sum();
    let mut v = json!({
        "state": if state.is_ok() { "fresh" } else { "stale" },
        "created_at": meta.created_at,
        "firecracker_version": meta.firecracker_version,
        "vcpus": meta.vcpus,
        "mem_mib": meta.mem_mib,
        "bytes": size,
        "boot_ms": meta.boot_ms,
    });
    if let Err(why) = state {
        v["why"] = why.into();
    }
    v
}

/// Adds `warm` to an image record for `list`: the artifacts' state without hashing the big
/// files (present, the recorded Firecracker version against `version` when known).
pub fn annotate(cfg: &Config, rec: &mut Record, version: Option<&str>) {
    let Some(name) = record::name(rec).map(String::from) else {
        return;
    };
    let v = match warm::load(cfg, &name) {
        Ok(None) => return,
        Ok(Some(meta)) => {
            let dir = warm::dir(cfg, &name);
            let missing: Vec<&str> = warm::FILES
                .iter()
                .copied()
                .filter(|f| !dir.join(f).is_file())
                .collect();
            let state = if !missing.is_empty() {
                Err(format!("missing {}", missing.join(", ")))
            } else {
                match version {
                    Some(have) => warm::check_version(&meta, have).map_err(|e| e.to_string()),
                    None => Ok(()),
                }
            };
            let broken = !missing.is_empty();
            let mut v = summary(&meta, state);
            if broken {
                v["state"] = "broken".into();
            }
            v
        }
        Err(e) => json!({"state": "broken", "why": banger::cli::one_line(&e)}),
    };
    rec.insert("warm".into(), v);
}

/// `banger-image rm --warm IMAGE`: removes only the warm artifacts.
pub fn remove(cfg: &Config, images: &Images, name: &str) -> Result<bool, WarmStepError> {
    images.load(name)?;
    let _g = images.lock_image(name)?;
    let dir = warm::dir(cfg, name);
    let partial = images.image_dir(name).join(warm::PARTIAL);
    let _ = std::fs::remove_dir_all(&partial);
    if !dir.exists() {
        return Ok(false);
    }
    let aside = images
        .image_dir(name)
        .join(format!(".warm-rm-{}", std::process::id()));
    std::fs::rename(&dir, &aside).map_err(io("remove", &dir))?;
    std::fs::remove_dir_all(&aside).map_err(io("remove", &aside))?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warming_vm_names_are_valid() {
        assert_eq!(vm_name("debian"), "warm-debian");
        let long = "a".repeat(32);
        let n = vm_name(&long);
        assert_eq!(n.len(), 32);
        assert!(banger::store::valid_name(&n));
        assert_eq!(
            vm_name("abcdefghijklmnopqrstuvwxyz-b"),
            "warm-abcdefghijklmnopqrstuvwxyz"
        );
    }
}
