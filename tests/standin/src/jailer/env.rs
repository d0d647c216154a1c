//! TEST STAND-IN, not Firecracker's jailer: checks every argument before anything is made,
//! with the real jailer's messages.

use std::fs;
use std::path::{Component, Path, PathBuf};

use serde_json::json;

use super::{failure, jail, Failure};
use crate::args;
use crate::NOTICE;

/// Everything checked before anything is made.
#[derive(Debug)]
pub(super) struct Env {
    pub(super) id: String,
    pub(super) exec_file: PathBuf,
    pub(super) exec_name: String,
    pub(super) chroot_dir: PathBuf,
    pub(super) uid: u32,
    pub(super) gid: u32,
    pub(super) netns: Option<String>,
    pub(super) daemonize: bool,
    pub(super) new_pid_ns: bool,
    pub(super) no_file: u64,
    pub(super) fsize: Option<u64>,
    pub(super) uffd_minor: Option<u32>,
    pub(super) extra: Vec<String>,
    pub(super) record: serde_json::Value,
    pub(super) start_us: u64,
    pub(super) start_cpu_us: u64,
}

fn validate_id(id: &str) -> Result<(), Failure> {
    let bad = |m: String| failure("InvalidInstanceId", format!("Invalid instance ID: {m}"));
    if id.is_empty() || id.len() > 64 {
        return Err(bad(format!(
            "Invalid len ({});  the length must be between 1 and 64",
            id.len()
        )));
    }
    match id
        .chars()
        .enumerate()
        .find(|(_, c)| !(*c == '-' || c.is_alphanumeric()))
    {
        Some((i, c)) => Err(bad(format!("Invalid char ({c}) at position {i}"))),
        None => Ok(()),
    }
}

fn plain_relative(p: &Path) -> bool {
    !p.components().any(|c| {
        matches!(
            c,
            Component::CurDir | Component::ParentDir | Component::RootDir
        )
    })
}

impl Env {
    pub(super) fn new(a: &args::Args, argv: &[String]) -> Result<Env, Failure> {
        let start_us = jail::monotonic_us();
        let start_cpu_us = jail::cpu_time_us();
        let id = a.value("id").unwrap_or_default().to_string();
        validate_id(&id)?;
        let exec = a.value("exec-file").unwrap_or_default();
        let canon = |p: &str| {
            fs::canonicalize(p).map_err(|e| {
                failure(
                    "Canonicalize",
                    format!("Failed to canonicalize path {p}: {e}"),
                )
            })
        };
        let exec_file = canon(exec)?;
        if !exec_file.is_file() {
            let m = format!("{} is not a file", exec_file.display());
            return Err(failure("NotAFile", m));
        }
        let exec_name = exec_file
            .file_name()
            .and_then(|n| n.to_str())
            .map(str::to_string)
            .ok_or_else(|| failure("ExtractFileName", exec_file.display().to_string()))?;
        let base = canon(a.value("chroot-base-dir").unwrap_or("/srv/jailer"))?;
        if !base.is_dir() {
            return Err(failure(
                "NotADirectory",
                format!("{} is not a directory", base.display()),
            ));
        }
        let chroot_dir = base.join(&exec_name).join(&id).join("root");
        let number = |name: &str, kind: &str| {
            let v = a.value(name).unwrap_or_default();
            v.parse::<u32>()
                .map_err(|_| failure(kind, format!("Invalid {name}: {v}")))
        };
        let uid = number("uid", "Uid")?;
        let gid = number("gid", "Gid")?;
        let parent_cgroup = a.value("parent-cgroup").unwrap_or(&exec_name).to_string();
        if !plain_relative(Path::new(&parent_cgroup)) {
            let m =
                "Parent cgroup path is invalid. Path should not be absolute or contain '..' or '.'";
            return Err(failure("CgroupInvalidParentPath", m.to_string()));
        }
        let ver_text = a.value("cgroup-version").unwrap_or("1");
        let bad_version = || {
            failure(
                "CgroupInvalidVersion",
                format!("{ver_text} is an invalid cgroup version specifier"),
            )
        };
        let version: u8 = ver_text.parse().map_err(|_| bad_version())?;
        let mut cgroups = Vec::new();
        for cg in a.values("cgroup") {
            if version != 1 && version != 2 {
                return Err(bad_version());
            }
            let parts: Vec<&str> = cg.split('=').collect();
            let [file, value] = parts[..] else {
                return Err(failure(
                    "CgroupFormat",
                    format!("Invalid format for cgroups: {cg}"),
                ));
            };
            if value.is_empty() {
                return Err(failure(
                    "CgroupFormat",
                    format!("Invalid format for cgroups: {cg}"),
                ));
            }
            let controller = file.split('.').next().unwrap_or_default();
            if !plain_relative(Path::new(file)) || (version == 1 && !file.contains('.')) {
                return Err(failure(
                    "CgroupInvalidFile",
                    format!("Cgroup invalid file: {cg}"),
                ));
            }
            cgroups.push(json!({ "file": file, "value": value, "controller": controller }));
        }
        let (mut no_file, mut fsize) = (2048u64, None);
        for rl in a.values("resource-limit") {
            let Some((name, value)) = rl.split_once('=') else {
                let m = format!("Invalid format for resources limits: {rl}");
                return Err(failure("ResLimitFormat", m));
            };
            let n = value.parse::<u64>().map_err(|e| {
                failure(
                    "ResLimitValue",
                    format!("Invalid limit value for resource: {value}: {e}"),
                )
            })?;
            match name {
                "fsize" => fsize = Some(n),
                "no-file" => no_file = n,
                _ => {
                    return Err(failure(
                        "ResLimitArgument",
                        format!("Invalid resource argument: {name}"),
                    ))
                }
            }
        }
        let record = json!({
            "standin": NOTICE,
            "argv": argv,
            "id": id,
            "exec_file": exec_file,
            "uid": uid,
            "gid": gid,
            "chroot_dir": chroot_dir,
            "netns": a.value("netns"),
            "daemonize": a.flag("daemonize"),
            "new_pid_ns": a.flag("new-pid-ns"),
            "cgroup_version": version,
            "parent_cgroup": parent_cgroup,
            "cgroups": cgroups,
            "resource_limits": { "no-file": no_file, "fsize": fsize },
            "extra_args": a.extra(),
        });
        Ok(Env {
            id,
            exec_file,
            exec_name,
            chroot_dir,
            uid,
            gid,
            netns: a.value("netns").map(str::to_string),
            daemonize: a.flag("daemonize"),
            new_pid_ns: a.flag("new-pid-ns"),
            no_file,
            fsize,
            uffd_minor: jail::userfaultfd_minor(),
            extra: a.extra().to_vec(),
            record,
            start_us,
            start_cpu_us,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::Parsed;
    use crate::jailer::SPEC;

    fn env(words: &[&str]) -> Result<Env, String> {
        let argv: Vec<String> = std::iter::once("jailer")
            .chain(words.iter().copied())
            .map(String::from)
            .collect();
        match args::parse(SPEC, &argv[1..]) {
            Ok(Parsed::Args(a)) => Env::new(&a, &argv).map_err(|f| f.message),
            Ok(_) => Err("help/version".into()),
            Err(e) => Err(e.to_string()),
        }
    }

    fn base() -> Vec<String> {
        let exe = std::env::current_exe().unwrap().display().to_string();
        let tmp = std::env::temp_dir().display().to_string();
        [
            "--id",
            "vm-1",
            "--exec-file",
            &exe,
            "--uid",
            "65534",
            "--gid",
            "65534",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain(["--chroot-base-dir".to_string(), tmp])
        .collect()
    }

    fn with(extra: &[&str]) -> Result<Env, String> {
        let b = base();
        let mut words: Vec<&str> = b.iter().map(String::as_str).collect();
        words.extend_from_slice(extra);
        env(&words)
    }

    #[test]
    fn layout_and_record() {
        let e = with(&[
            "--cgroup",
            "cpu.weight=10",
            "--resource-limit",
            "no-file=99",
            "--",
            "--x",
        ])
        .unwrap();
        let tmp = fs::canonicalize(std::env::temp_dir()).unwrap();
        assert_eq!(
            e.chroot_dir,
            tmp.join(&e.exec_name).join("vm-1").join("root")
        );
        assert_eq!((e.uid, e.gid, e.no_file, e.fsize), (65534, 65534, 99, None));
        assert_eq!(e.extra, ["--x"]);
        assert_eq!(e.record["cgroups"][0]["controller"], "cpu");
        assert_eq!(e.record["argv"][0], "jailer");
    }

    #[test]
    fn refusals() {
        assert!(env(&["--id", "x"])
            .unwrap_err()
            .contains("required, but not found"));
        assert!(with(&["--bogus"])
            .unwrap_err()
            .contains("Found argument 'bogus'"));
        let mut b = base();
        b[1] = "bad_id".into();
        let words: Vec<&str> = b.iter().map(String::as_str).collect();
        assert_eq!(
            env(&words).unwrap_err(),
            "Invalid instance ID: Invalid char (_) at position 3"
        );
        b[1] = "ok".into();
        b[5] = "root".into();
        let words: Vec<&str> = b.iter().map(String::as_str).collect();
        assert_eq!(env(&words).unwrap_err(), "Invalid uid: root");
        for (args, msg) in [
            (
                vec!["--cgroup", "cpu.weight"],
                "Invalid format for cgroups: cpu.weight",
            ),
            (
                vec!["--cgroup", "cpu.weight="],
                "Invalid format for cgroups: cpu.weight=",
            ),
            (
                vec!["--cgroup", "../x.y=1"],
                "Cgroup invalid file: ../x.y=1",
            ),
            (
                vec!["--cgroup", "noctrl=1"],
                "Cgroup invalid file: noctrl=1",
            ),
            (
                vec!["--cgroup-version", "x"],
                "x is an invalid cgroup version specifier",
            ),
            (
                vec!["--cgroup-version", "3", "--cgroup", "a.b=1"],
                "3 is an invalid cgroup version specifier",
            ),
            (
                vec!["--parent-cgroup", "/abs"],
                "Parent cgroup path is invalid",
            ),
            (
                vec!["--resource-limit", "fsize"],
                "Invalid format for resources limits: fsize",
            ),
            (
                vec!["--resource-limit", "fsize=x"],
                "Invalid limit value for resource: x",
            ),
            (
                vec!["--resource-limit", "cpu=1"],
                "Invalid resource argument: cpu",
            ),
        ] {
            let err = with(&args).err().unwrap_or_default();
            assert!(err.starts_with(msg), "{args:?}: {err}");
        }
        let mut b = base();
        b[9] = "/nonexistent-standin".into();
        let words: Vec<&str> = b.iter().map(String::as_str).collect();
        let err = env(&words).err().unwrap_or_default();
        assert!(err.starts_with("Failed to canonicalize path /nonexistent-standin: No such file"));
    }
}
