//! `banger-jail launch`: the record's `jail` section.

use crate::LaunchOpts;
use banger::client::Helper;
use banger::config::Config;
use banger::find_pid;
use banger::record::{self, Record};
use banger::step::{Action, StepError};
use banger_helper::jail::http;
use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("the record has no {section}.{field} (run {step} first)")]
    Missing {
        section: &'static str,
        field: &'static str,
        step: &'static str,
    },
    #[error("no kernel for image {image} at {path} (banger-image list shows the images)")]
    NoKernel { image: String, path: PathBuf },
    #[error("the API socket path {path} is {len} bytes, over the 107 AF_UNIX allows: use a shorter run dir (BANGER_RUN_DIR)")]
    SockTooLong { path: PathBuf, len: usize },
    #[error("{path} exists and is not a symlink: remove it, then launch again")]
    NotSymlink { path: PathBuf },
    #[error("cannot make the API socket symlink {path}")]
    Symlink {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("Firecracker does not answer GET / through {path}")]
    NoAnswer {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the root helper's answer lacks {0}")]
    Answer(&'static str),
}

fn missing(section: &'static str, field: &'static str, step: &'static str) -> LaunchError {
    LaunchError::Missing {
        section,
        field,
        step,
    }
}

/// The short API socket path under the run dir.
pub fn api_sock_path(cfg: &Config, name: &str) -> PathBuf {
    cfg.run_dir.join("vms").join(format!("{name}.sock"))
}

/// Points `link` at `target`, replacing an older symlink, never anything else.
fn place_symlink(link: &Path, target: &Path) -> Result<(), LaunchError> {
    let len = link.as_os_str().len();
    if len > http::SUN_PATH_MAX {
        return Err(LaunchError::SockTooLong {
            path: link.to_path_buf(),
            len,
        });
    }
    let err = |source| LaunchError::Symlink {
        path: link.to_path_buf(),
        source,
    };
    if let Some(dir) = link.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    match std::fs::symlink_metadata(link) {
        Ok(m) if m.file_type().is_symlink() => {
            if std::fs::read_link(link).is_ok_and(|t| t == target) {
                return Ok(());
            }
            std::fs::remove_file(link).map_err(err)?;
        }
        Ok(_) => {
            return Err(LaunchError::NotSymlink {
                path: link.to_path_buf(),
            })
        }
        Err(_) => {}
    }
    std::os::unix::fs::symlink(target, link).map_err(err)
}

fn s<'a>(v: &'a Value, k: &str) -> Option<&'a str> {
    v.get(k).and_then(Value::as_str)
}

/// The `jail` section from the helper's answer.
fn section(cfg: &Config, name: &str, a: &Value) -> Result<Map<String, Value>, LaunchError> {
    let socket = s(a, "socket").ok_or(LaunchError::Answer("socket"))?;
    let api_sock = api_sock_path(cfg, name);
    place_symlink(&api_sock, Path::new(socket))?;
    let pick = |k: &str| a.get(k).cloned().unwrap_or(Value::Null);
    let j = json!({
        "launcher": pick("launcher"),
        "id": pick("id"),
        "chroot": pick("chroot"),
        "api_sock": api_sock.display().to_string(),
        "socket": pick("socket"),
        "pid": pick("pid"),
        "start_time": pick("start_time"),
        "argv": pick("argv"),
        "console": pick("console"),
        "log": pick("log"),
        "metrics": pick("metrics"),
        "pidfile": pick("pidfile"),
        "kernel": pick("kernel"),
        "initrd": pick("initrd"),
        "rootfs": pick("rootfs"),
        "cgroup": pick("cgroup"),
        "launched_at": record::now_rfc3339(),
    });
    match j {
        Value::Object(m) => Ok(m),
        _ => Err(LaunchError::Answer("an object")),
    }
}

fn err(code: &str) -> impl FnOnce(LaunchError) -> StepError + '_ {
    move |e| StepError::new(code, &e)
}

/// Launches one record's Firecracker (or finds it already running) and writes `jail`.
pub fn one(cfg: &Config, rec: &mut Record, opts: &LaunchOpts) -> Result<Action, StepError> {
    let name = record::name(rec).unwrap_or_default().to_string();
    // Already launched and alive: check the symlink and the identity, nothing else.
    if let Some(found) = find_pid::find_for_record(rec) {
        if let Some(Value::Object(j)) = rec.get_mut("jail") {
            j.insert("pid".into(), found.pid.into());
            j.insert("start_time".into(), found.start_time.into());
            if let Some(sock) = j.get("socket").and_then(Value::as_str) {
                place_symlink(&api_sock_path(cfg, &name), Path::new(sock))
                    .map_err(err("symlink"))?;
            }
        }
        return Ok(Action::Save);
    }
    let spec = record::section(rec, "spec")
        .ok_or_else(|| missing("spec", "image", "banger-vm new"))
        .map_err(err("missing_section"))?;
    let image = spec
        .get("image")
        .and_then(Value::as_str)
        .ok_or_else(|| missing("spec", "image", "banger-vm new"))
        .map_err(err("missing_section"))?
        .to_string();
    let vcpus = spec.get("vcpus").and_then(Value::as_u64).unwrap_or(1);
    let mem_mib = spec.get("mem_mib").and_then(Value::as_u64).unwrap_or(512);
    let disk = record::section(rec, "snap")
        .and_then(|s| s.get("path"))
        .and_then(Value::as_str)
        .ok_or_else(|| missing("snap", "path", "banger-snap create"))
        .map_err(err("missing_section"))?
        .to_string();
    let img = cfg.images_dir().join(&image);
    let kernel = img.join("vmlinux");
    if !kernel.is_file() {
        return Err(StepError::new(
            "no_kernel",
            &LaunchError::NoKernel {
                image,
                path: kernel,
            },
        ));
    }
    let initrd = Some(img.join("initrd")).filter(|p| p.is_file());
    let helper = Helper::new(cfg, Some(banger_helper::local));
    let args = json!({
        "name": name,
        "launcher": if opts.direct { "direct" } else { "jailer" },
        "kernel": kernel,
        "initrd": initrd,
        "rootfs": disk,
        "vcpus": vcpus,
        "mem_mib": mem_mib,
        "timeout_ms": opts.timeout_ms,
    });
    let answer = helper
        .call("jail.launch", args)
        .map_err(|e| StepError::new(e.code(), &e))?;
    let checked = section(cfg, &name, &answer).and_then(|j| {
        let sock = api_sock_path(cfg, &name);
        http::request(&sock, "GET", "/", None, Duration::from_secs(2))
            .map_err(|source| LaunchError::NoAnswer { path: sock, source })?;
        Ok(j)
    });
    match checked {
        Ok(j) => {
            rec.insert("jail".into(), Value::Object(j));
            Ok(Action::Save)
        }
        Err(e) => {
            // Launched but unusable from here: take it down again rather than leak it.
            let _ = helper.call("jail.teardown", json!({"name": name, "grace_ms": 0}));
            Err(StepError::new("launch", &e))
        }
    }
}
