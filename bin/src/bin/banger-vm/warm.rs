//! `banger-vm start` of a VM whose disk came from its image's warm snapshot: instead of a
//! boot, the snapshot is loaded into the VM's fresh Firecracker (its own tap and vsock
//! socket), resumed, and the guest's agent gives it this VM's identity before anything else
//! talks to it: a reseeded RNG, the hostname, root's authorized keys, fresh SSH host keys and
//! the VM's own MAC and address.
//!
//! The snapshot's files are hard-linked into the jail (the memory file is read-only and
//! mapped privately by Firecracker, so every clone shares one page cache), never copied when
//! a link works. A warm start needs the jailer: Firecracker reopens the disk at the path it
//! had when the snapshot was taken (`/rootfs` in every jail).

use crate::boot::{client_for, fc_err, jail_of, restrict_vsock, set_vm, WaitOpts};
use crate::BIN;
use banger::agent::proto;
use banger::config::Config;
use banger::record::{self, Record};
use banger::section::{self, Net, Snap, Spec};
use banger::step::{Action, StepError};
use banger::warm::{self, WarmError};
use serde_json::{json, Value};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Bytes of fresh entropy given to each warm guest.
const ENTROPY: usize = 64;

fn warm_err(name: &str, e: WarmError) -> StepError {
    StepError::msg(
        e.code(),
        format!(
            "{}; nothing was started: 'banger rm {name} --yes', then 'banger up {name} --cold' (or warm the image again)",
            banger::cli::one_line(&e)
        ),
    )
}

/// True when the record's disk came from a warm snapshot that was not given to its guest
/// yet: the VM's first start loads the snapshot; later ones boot its disk.
pub fn pending(cfg: &Config, rec: &Record) -> bool {
    let warm = section::get::<Snap>(rec)
        .ok()
        .flatten()
        .is_some_and(|s| s.extra.contains_key("warm"));
    warm && identity_path(cfg, rec).is_file()
}

fn identity_path(cfg: &Config, rec: &Record) -> PathBuf {
    cfg.vm_dir(record::name(rec).unwrap_or("?"))
        .join(warm::IDENTITY)
}

fn owner(cfg: &Config) -> Option<banger::detach::Creds> {
    cfg.owner_creds()
}

/// Puts `from` at `to` for Firecracker: a hard link, else a copy (then the clones do not
/// share the memory file's pages; said on stderr). As the owner when root runs this.
fn place(cfg: &Config, name: &str, from: &Path, to: &Path) -> Result<(), StepError> {
    let r = banger_helper::cred::as_owner(owner(cfg).as_ref(), || -> std::io::Result<bool> {
        match std::fs::remove_file(to) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        if std::fs::hard_link(from, to).is_ok() {
            return Ok(true);
        }
        std::fs::copy(from, to).map(|_| false)
    })
    .map_err(|e| StepError::new("warm_place", &e))?;
    match r {
        Ok(true) => Ok(()),
        Ok(false) => {
            eprintln!(
                "{BIN}: {name}: warning: {} copied into the jail (another filesystem): this VM does not share its memory file's pages with other clones",
                from.display()
            );
            Ok(())
        }
        Err(e) => Err(StepError::new(
            "warm_place",
            &std::io::Error::new(
                e.kind(),
                format!("place {} at {}: {e}", from.display(), to.display()),
            ),
        )),
    }
}

/// The guest's identity: from the record, the identity file and fresh entropy.
fn identity(cfg: &Config, rec: &Record) -> Result<proto::Identity, StepError> {
    let name = record::name(rec).unwrap_or("?").to_string();
    let path = identity_path(cfg, rec);
    // The owner's file, read with the owner's credentials when root runs this.
    let bytes = banger_helper::cred::as_owner(owner(cfg).as_ref(), || {
        banger::fsx::read_path_capped(&path, 1 << 20)
    })
    .map_err(|e| StepError::new("warm_identity", &e))?
    .map_err(|e| {
        StepError::msg(
            "warm_identity",
            format!("read {}: {}", path.display(), banger::cli::one_line(&e)),
        )
    })?;
    let v: Value = serde_json::from_slice(&bytes).map_err(|e| {
        StepError::msg(
            "warm_identity",
            format!("{} is not valid JSON: {e}", path.display()),
        )
    })?;
    let host_keys: Vec<proto::HostKey> =
        serde_json::from_value(v["host_keys"].clone()).map_err(|e| {
            StepError::msg(
                "warm_identity",
                format!("{}: host_keys: {e}", path.display()),
            )
        })?;
    let mut entropy = vec![0u8; ENTROPY];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut entropy))
        .map_err(|e| StepError::new("entropy", &e))?;
    let spec = section::get::<Spec>(rec)?.unwrap_or_default();
    let net = match section::get::<Net>(rec)? {
        Some(n) => {
            let ip = n.ip.as_deref().unwrap_or_default();
            let ip = ip.split('/').next().unwrap_or_default();
            let parse = |what: &str, s: &str| {
                s.parse::<std::net::Ipv4Addr>().map_err(|_| {
                    StepError::msg(
                        "bad_record",
                        format!("{name}'s net.{what} {s:?} is not an address"),
                    )
                })
            };
            let mut dns = Vec::new();
            for d in n.dns.iter().take(8) {
                dns.push(std::net::IpAddr::V4(parse("dns", d)?));
            }
            Some(proto::Net {
                ip: parse("ip", ip)?,
                prefix: n.prefix.unwrap_or(24),
                gateway: match n.gateway.as_deref() {
                    Some(g) => Some(parse("gateway", g)?),
                    None => None,
                },
                dns,
                mac: n.mac.clone(),
                dev: Some("eth0".into()),
            })
        }
        None => None,
    };
    Ok(proto::Identity {
        entropy: Some(proto::B64(entropy)),
        hostname: Some(name),
        authorized_keys: spec.ssh_pubkey.clone(),
        host_keys: Some(host_keys),
        net,
    })
}

/// Gives the guest its identity through the agent, trying until `deadline` while the agent
/// does not answer yet (its vsock connections were reset by the restore).
fn give_identity(
    sock: &Path,
    id: &proto::Identity,
    deadline: Instant,
) -> Result<proto::IdentityDone, banger::agent::AgentError> {
    let mut pause = Duration::from_millis(2);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let r = banger::agent::connect(
            sock,
            left.clamp(Duration::from_millis(100), Duration::from_secs(2)),
        )
        .and_then(|c| {
            // The guest applies it all before it answers: a slow guest takes long.
            c.set_read_timeout(Some(left.max(Duration::from_secs(30))))
                .and_then(|()| banger::agent::Client::new(c))
                .map_err(|e| banger::agent::AgentError::Client(banger::agent::ClientError::Io(e)))
        })
        .and_then(|c| Ok(c.identity(id.clone())?));
        match r {
            Err(e) if e.not_yet() && Instant::now() < deadline => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(100));
            }
            other => return other,
        }
    }
}

/// When `banger up` began (its `BANGER_UP_T0_US`), for `boot_ms`.
fn up_started() -> Option<u128> {
    std::env::var("BANGER_UP_T0_US").ok()?.parse().ok()
}

fn now_us() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros())
        .unwrap_or(0)
}

/// Loads the image's warm snapshot into the VM's fresh Firecracker and gives the guest its
/// identity.
pub fn start(cfg: &Config, rec: &mut Record, opts: &WaitOpts) -> Result<Action, StepError> {
    use banger::timing::span;
    let t0 = Instant::now();
    let t0_us = now_us();
    let name = record::name(rec).unwrap_or("?").to_string();
    let snap = section::get::<Snap>(rec)?.unwrap_or_default();
    let image = snap.image.clone().unwrap_or_default();
    let meta = warm::load(cfg, &image)
        .map_err(|e| warm_err(&name, e))?
        .ok_or_else(|| {
            warm_err(
                &name,
                WarmError::Missing {
                    image: image.clone(),
                    path: warm::dir(cfg, &image).join(warm::META),
                },
            )
        })?;
    span("check", || warm::check_files(cfg, &meta)).map_err(|e| warm_err(&name, e))?;
    let jail = jail_of(rec)?;
    let Some(chroot) = jail.chroot.clone() else {
        return Err(StepError::msg(
            "warm_needs_jailer",
            format!(
                "{name}'s disk is from image {image:?}'s warm snapshot, which needs the jailer launcher (Firecracker reopens the disk where the snapshot had it): 'banger rm {name} --yes', then 'banger up {name} --cold --launcher direct'"
            ),
        ));
    };
    let client = client_for(rec)?;
    let version = client
        .get("/version")
        .map_err(fc_err)?
        .get("firecracker_version")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    warm::check_version(&meta, &version).map_err(|e| warm_err(&name, e))?;
    let dir = warm::dir(cfg, &image);
    let chroot = PathBuf::from(chroot);
    span("place", || -> Result<(), StepError> {
        place(
            cfg,
            &name,
            &dir.join(warm::STATE),
            &chroot.join(warm::JAIL_STATE),
        )?;
        place(
            cfg,
            &name,
            &dir.join(warm::MEMORY),
            &chroot.join(warm::JAIL_MEMORY),
        )
    })?;
    let mut body = json!({
        "snapshot_path": format!("/{}", warm::JAIL_STATE),
        "mem_backend": {"backend_type": "File", "backend_path": format!("/{}", warm::JAIL_MEMORY)},
        "resume_vm": true,
    });
    if let Some(tap) = section::get::<Net>(rec)?.and_then(|n| n.tap) {
        body["network_overrides"] = json!([{"iface_id": "eth0", "host_dev_name": tap}]);
    }
    if let Some(v) = &jail.vsock_uds {
        body["vsock_override"] = json!({"uds_path": v});
    }
    let t_load = Instant::now();
    span("snapshot/load", || client.put("/snapshot/load", &body)).map_err(|e| {
        StepError::msg(
            "warm_load",
            format!(
                "Firecracker did not load image {image:?}'s warm snapshot: {}; its Firecracker has exited. Next: 'banger rm {name} --yes', then 'banger up {name} --cold' (or 'banger-image warm {image}' again)",
                banger::cli::one_line(&e)
            ),
        )
    })?;
    let load_ms = t_load.elapsed().as_secs_f64() * 1e3;
    restrict_vsock(cfg, rec);
    set_vm(rec, |vm| {
        vm.state = Some("running".into());
        vm.started_at = Some(record::now_rfc3339());
        vm.boot_args = meta.boot_args.clone();
        vm.boot_ms = None;
        vm.extra.insert("start".into(), "warm".into());
    })?;
    let id = identity(cfg, rec)?;
    let sock = banger::agent::vsock_sock(rec).ok_or_else(|| {
        StepError::new(
            "no_vsock",
            &banger::agent::AgentError::NoVsock { name: name.clone() },
        )
    })?;
    let deadline = Instant::now() + opts.timeout;
    let t_id = Instant::now();
    let done = span("identity", || give_identity(&sock, &id, deadline)).map_err(|e| {
        StepError::msg(
            "warm_identity",
            format!(
                "the warm guest's agent did not take its identity (after {} s): {}; the guest still has the warm image's identity, so it must not be used: 'banger rm {name} --yes', then 'banger up {name} --cold'",
                t_id.elapsed().as_secs(),
                banger::cli::one_line(&e)
            ),
        )
    })?;
    let identity_ms = t_id.elapsed().as_millis() as u64;
    let _ = std::fs::remove_file(identity_path(cfg, rec));

    let boot_ms = match up_started() {
        Some(t) if t <= t0_us => ((now_us() - t) / 1000) as u64,
        _ => t0.elapsed().as_millis() as u64,
    };
    set_vm(rec, |vm| {
        vm.boot_ms = Some(boot_ms);
        vm.instance_start_ms = None;
        vm.ready = Some("agent".into());
        // The identity's answer was the agent's first; `vm status` asks for its hello.
        vm.agent = None;
        vm.extra.insert(
            "warm".into(),
            json!({
                "load_ms": (load_ms * 1000.0).round() / 1000.0,
                "identity": done.done,
                "identity_ms": identity_ms,
                "identity_parts_ms": done.ms,
                "snapshot_created_at": meta.created_at,
            }),
        );
    })?;
    eprintln!("{BIN}: {name}: up in {boot_ms} ms (warm: snapshot loaded in {load_ms:.0} ms, identity given in {identity_ms} ms)");
    Ok(Action::Save)
}
