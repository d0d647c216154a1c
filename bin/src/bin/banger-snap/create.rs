//! `banger-snap create`: the record's `snap` section.

use crate::BIN;
use banger::client::Helper;
use banger::config::Config;
use banger::record::{self, Record};
use banger::section::{self, Net, Section, Snap, Spec};
use banger::step::{Action, Input, Step, StepError};
use banger::store::Store;
use serde_json::{json, Map, Value};
use std::process::ExitCode;

pub struct Opts {
    pub method: Option<String>,
    pub disk_size: Option<u64>,
    /// `--no-agent`: do not write the guest agent into the disk.
    pub no_agent: bool,
    /// `--cold`: the image's rootfs even when the image is warm.
    pub cold: bool,
}

fn warm_err(e: banger::warm::WarmError) -> StepError {
    StepError::new(e.code(), &e)
}

/// The disk of a VM started from the image's warm snapshot: a copy-on-write snapshot of the
/// warm disk with nothing written into it, and fresh host keys for the guest, their private
/// halves kept in the VM's directory (the owner's alone) until `banger-vm start` gives them to
/// the guest's agent.
fn create_warm(
    cfg: &Config,
    h: &Helper,
    rec: &mut Record,
    opts: &Opts,
    spec: &Spec,
    meta: &banger::warm::WarmMeta,
) -> Result<Action, StepError> {
    let name = record::name(rec).unwrap_or_default().to_string();
    banger::warm::check_files(cfg, meta).map_err(warm_err)?;
    banger::warm::check_shape(meta, spec.vcpus.unwrap_or(1), spec.mem_mib.unwrap_or(512))
        .map_err(warm_err)?;
    if opts.disk_size.or(spec.disk_size).is_some() {
        return Err(StepError::msg(
            "warm_disk_size",
            format!(
                "image {:?} is warm: its disk cannot be grown at start; drop --disk-size, or use --cold",
                meta.image
            ),
        ));
    }
    let (public, files) = banger_helper::snap::customize::host_keys(&name)
        .map_err(|e| StepError::new("host_keys", &e))?;
    let keys: Vec<Value> = public
        .iter()
        .map(|(t, p)| {
            let private = files
                .iter()
                .find(|f| f.path == format!("/etc/ssh/ssh_host_{t}_key"))
                .map(|f| String::from_utf8_lossy(&f.content).into_owned())
                .unwrap_or_default();
            json!({"type": t, "private": private, "public": p})
        })
        .collect();
    let id_path = cfg.vm_dir(&name).join(banger::warm::IDENTITY);
    let owner = cfg
        .owner_uid
        .filter(|_| rustix::process::geteuid().is_root())
        .map(|u| (u, cfg.owner_gid.unwrap_or(u)));
    banger::atomic::write_atomic_owned(
        &id_path,
        format!("{}\n", json!({"host_keys": keys})).as_bytes(),
        0o600,
        owner,
    )
    .map_err(|e| {
        StepError::new(
            "warm_identity",
            &std::io::Error::new(e.kind(), format!("write {}: {e}", id_path.display())),
        )
    })?;
    let mut args = json!({"vm": name, "image": meta.image, "warm": true});
    if let Some(m) = &opts.method {
        args["method"] = m.as_str().into();
    }
    let r = call(h, "snap.create", args).inspect_err(|_| {
        let _ = std::fs::remove_file(&id_path);
    })?;
    for w in r["warnings"].as_array().into_iter().flatten() {
        if let Some(w) = w.as_str() {
            eprintln!("{BIN}: warning: {name}: {w}");
        }
    }
    let text = |k: &str| r[k].as_str().map(String::from);
    let mut extra = Map::new();
    extra.insert(
        "warm".into(),
        json!({
            "created_at": meta.created_at,
            "firecracker_version": meta.firecracker_version,
            "state_sha256": meta.files.get(banger::warm::STATE).map(|f| f.sha256.clone()),
        }),
    );
    section::put(
        rec,
        &Snap {
            method: text("method"),
            path: text("path"),
            image: text("image"),
            size_bytes: r["size_bytes"].as_u64(),
            host_keys: Some(public),
            customized: Some(false),
            agent: Some(meta.agent.clone().unwrap_or_else(|| "none".into())),
            created_at: Some(record::now_rfc3339()),
            extra,
        },
    );
    Ok(Action::Save)
}

/// Whether the image carries its own agent (`agent` in its image.json, as
/// `banger-image build --debian` writes it): then its init starts it and nothing is added.
pub fn image_has_agent(cfg: &Config, image: &str) -> bool {
    let path = cfg.images_dir().join(image).join("image.json");
    banger::fsx::read_path_capped(&path, 1 << 20)
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .is_some_and(|v| v.get("agent").is_some_and(|a| !a.is_null()))
}

/// The helper client: the socket when one answers, else in process when root.
pub fn helper(cfg: &Config) -> Helper {
    Helper::new(cfg, Some(banger_helper::local))
}

pub fn call(h: &Helper, op: &str, args: Value) -> Result<Value, StepError> {
    h.call(op, args).map_err(|e| StepError::new(e.code(), &e))
}

/// The `net` argument for `snap.create`/`snap.customize` from a record's `net` section
/// (`ip` with or without `/prefix`, `prefix`, `gateway`, `dns`, `mac`), or `None` when the
/// record has no address yet.
pub fn net_args(rec: &Record) -> Option<Value> {
    let net = section::get::<Net>(rec).ok()??;
    let ip_field = net.ip.as_deref()?;
    let (ip, prefix_in_ip) = match ip_field.split_once('/') {
        Some((a, p)) => (a, p.parse::<u8>().ok()),
        None => (ip_field, None),
    };
    let prefix = net.prefix.or(prefix_in_ip).unwrap_or(24);
    let mut out = Map::new();
    out.insert("ip".into(), ip.into());
    out.insert("prefix".into(), prefix.into());
    if let Some(g) = &net.gateway {
        out.insert("gateway".into(), g.as_str().into());
    }
    out.insert("dns".into(), net.dns.clone().into());
    if let Some(m) = &net.mac {
        out.insert("mac".into(), m.as_str().into());
    }
    Some(Value::Object(out))
}

/// True when the helper's ledger has this VM's disk and the disk is there.
fn has_live_disk(h: &Helper, name: &str) -> Result<bool, StepError> {
    let r = call(h, "snap.list", json!({"vm": name}))?;
    Ok(r["disks"]
        .as_array()
        .is_some_and(|d| d.iter().any(|x| x["exists"] == true)))
}

fn create_one(
    cfg: &Config,
    h: &Helper,
    rec: &mut Record,
    opts: &Opts,
) -> Result<Action, StepError> {
    let name = record::name(rec).unwrap_or_default().to_string();
    if section::get::<Snap>(rec)?.is_some_and(|s| s.path.is_some()) {
        // Idempotent: the disk exists already; nothing is made twice.
        if has_live_disk(h, &name)? {
            return Ok(Action::Save);
        }
        return Err(StepError::msg(
            "disk_missing",
            format!("{name}'s record has a snap section but its disk is gone: run 'banger-snap rm {name}', then create again"),
        ));
    }
    let spec = section::get::<Spec>(rec)?.ok_or_else(|| {
        StepError::msg(
            "no_spec",
            format!("{name}'s record has no spec section: make it with banger-vm new"),
        )
    })?;
    let image = spec
        .image
        .clone()
        .ok_or_else(|| StepError::msg("no_image", format!("{name}'s spec has no image")))?;
    if !opts.cold {
        if let Some(meta) = banger::warm::load(cfg, &image).map_err(warm_err)? {
            return create_warm(cfg, h, rec, opts, &spec, &meta);
        }
    }
    let disk_size = opts.disk_size.or(spec.disk_size);
    let mut args = json!({
        "vm": name,
        "image": image,
        "hostname": name,
        "host_keys": true,
    });
    if let Some(k) = &spec.ssh_pubkey {
        args["ssh_pubkey"] = k.as_str().into();
    }
    if let Some(m) = &opts.method {
        args["method"] = m.as_str().into();
    }
    if let Some(s) = disk_size {
        args["disk_size"] = s.into();
    }
    if let Some(n) = net_args(rec) {
        args["net"] = n;
    }
    let own_agent = image_has_agent(cfg, &image);
    if !opts.no_agent && !own_agent {
        args["agent"] = true.into();
    }
    let r = call(h, "snap.create", args)?;
    let agent = if own_agent {
        "image"
    } else {
        r["agent"].as_str().unwrap_or("none")
    };
    for w in r["warnings"].as_array().into_iter().flatten() {
        if let Some(w) = w.as_str() {
            eprintln!("{BIN}: warning: {name}: {w}");
        }
    }
    let text = |k: &str| r[k].as_str().map(String::from);
    let host_keys = r["host_keys"].as_object().map(|m| {
        m.iter()
            .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
            .collect()
    });
    section::put(
        rec,
        &Snap {
            method: text("method"),
            path: text("path"),
            image: text("image"),
            size_bytes: r["size_bytes"].as_u64(),
            host_keys,
            customized: r["customized"].as_bool(),
            agent: Some(agent.to_string()),
            created_at: Some(record::now_rfc3339()),
            extra: Default::default(),
        },
    );
    Ok(Action::Save)
}

pub fn run(cfg: &Config, store: &Store, input: Input, opts: &Opts) -> ExitCode {
    let h = helper(cfg);
    let step = Step {
        bin: BIN,
        step: "snap",
        store,
        owns: &[Snap::KEY],
    };
    step.run(input, |rec| create_one(cfg, &h, rec, opts))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn net_section_to_args() {
        let mut r = record::new("vm", "a");
        assert!(net_args(&r).is_none());
        r.insert(
            "net".into(),
            json!({"ip": "10.200.0.5/24", "gateway": "10.200.0.1", "dns": "10.200.0.1", "mac": "06:00:0a:c8:00:05", "tap": "bgr-a"}),
        );
        let n = net_args(&r).unwrap();
        assert_eq!(
            n,
            json!({"ip": "10.200.0.5", "prefix": 24, "gateway": "10.200.0.1", "dns": ["10.200.0.1"], "mac": "06:00:0a:c8:00:05"})
        );
    }
}
