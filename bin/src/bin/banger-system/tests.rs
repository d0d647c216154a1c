//! install, update and uninstall against a temp root, with systemctl recorded and the helper
//! faked: what is written, what systemctl is asked, what a second run changes (nothing), and
//! the rollback of an update whose helper never answers.

use crate::install::{self, Options};
use crate::probe::Probe;
use crate::system::{Layout, Sys};
use crate::systemd::Recorder;
use crate::{files, uninstall, update};
use banger::config::Config;
use serde_json::{json, Value};
use std::cell::Cell;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

struct Root(PathBuf);
impl Drop for Root {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A fake helper: answers as the installed banger-helper file (its sha256), unless that file
/// says "broken"; counts restarts through the pid it reports.
struct FakeHelper {
    installed: PathBuf,
    pid: Cell<u32>,
    running_vm: bool,
}

impl Probe for FakeHelper {
    fn ping(&self, _: &Config, _: Option<(u32, u32)>) -> Result<Value, String> {
        let text = std::fs::read_to_string(&self.installed).map_err(|e| e.to_string())?;
        if text.contains("broken") {
            return Err("connection refused".into());
        }
        Ok(json!({
            "pid": self.pid.get(),
            "version": "9.9.9",
            "exe_sha256": files::sha256(&self.installed).unwrap(),
        }))
    }
    fn call(&self, _: &Config, op: &str, _: Value) -> Result<Value, String> {
        match op {
            "jail.list" => Ok(json!({"jails": if self.running_vm {
                json!([{"name": "dev1", "running": true, "live_pid": 4242}])
            } else {
                json!([])
            }})),
            "ledger.list" => Ok(json!({"entries": []})),
            _ => Ok(json!({})),
        }
    }
}

fn script(p: &Path, body: &str) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A checkout-shaped build in `root/NAME`, whose helper prints `tag`.
fn build(root: &Path, name: &str, tag: &str) -> PathBuf {
    let r = root.join(name);
    let bin = r.join("target/release");
    script(&bin.join("banger"), "exit 0");
    script(&bin.join("banger-helper"), &format!("echo {tag}"));
    // Like every banger binary, it generates its completions (BANGER_GENERATE).
    script(
        &bin.join("banger-system"),
        &format!(
            "case \"$BANGER_GENERATE\" in\n  describe) echo '{{\"type\":\"command\"}}' ;;\n  '') echo 'banger-system 9.9.9 (commit {tag})' ;;\n  *) echo \"# $BANGER_GENERATE completion\" ;;\nesac"
        ),
    );
    script(&bin.join("banger-vm"), "exit 0");
    script(&bin.join("banger-up"), "exit 0");
    std::fs::create_dir_all(r.join("units")).unwrap();
    std::fs::write(r.join("units/banger-helper.service"), "").unwrap();
    std::fs::create_dir_all(r.join("man")).unwrap();
    std::fs::write(r.join("man/banger-system.8"), ".Dd\n").unwrap();
    bin
}

struct World {
    root: Root,
    ctl: Recorder,
    helper: FakeHelper,
}

fn world(tag: &str, running_vm: bool) -> Option<World> {
    if !rustix::process::geteuid().is_root() {
        eprintln!("SKIPPED: install tests chown to another user and need root");
        return None;
    }
    let root = std::env::temp_dir().join(format!("banger-system-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    Some(World {
        helper: FakeHelper {
            installed: root.join("usr/bin/banger-helper"),
            pid: Cell::new(100),
            running_vm,
        },
        root: Root(root),
        ctl: Recorder::default(),
    })
}

impl World {
    fn sys(&self) -> Sys<'_> {
        let r = &self.root.0;
        let mut cfg = Config::load().unwrap();
        cfg.config_dir = r.join("etc/banger");
        cfg.state_dir = r.join("var/lib/banger");
        cfg.run_dir = r.join("run/banger");
        cfg.root_dir = r.join("var/lib/banger-root");
        cfg.jail_dir = r.join("srv/jailer");
        cfg.helper_socket = r.join("run/banger-root/helper.sock");
        Sys {
            ctl: &self.ctl,
            probe: &self.helper,
            cfg,
            layout: Layout {
                prefix: r.join("usr"),
                unit_dir: r.join("etc/systemd/system"),
                tmpfiles_dir: r.join("etc/tmpfiles.d"),
            },
            quiet: true,
            units_from_build: false,
        }
    }
    fn path(&self, rel: &str) -> PathBuf {
        self.root.0.join(rel)
    }
    fn opts(&self, from: &Path) -> Options {
        let fc = self.path("fc/firecracker");
        script(&fc, "exit 0");
        script(&self.path("fc/jailer"), "exit 0");
        Options {
            owner: Some("nobody".into()),
            from: from.to_path_buf(),
            firecracker: Some(fc),
            jailer: Some(self.path("fc/jailer")),
        }
    }
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

#[test]
fn install_writes_everything_and_a_second_run_changes_nothing() {
    let Some(w) = world("install", false) else {
        return;
    };
    let from = build(&w.root.0, "b1", "one");
    let rec = install::install(&w.sys(), &w.opts(&from)).unwrap();
    assert_eq!(rec["owner"], "nobody");
    assert_eq!(rec["commit"], "one");
    // Binaries, man page, the completions the build generated.
    for (f, m) in [
        ("usr/bin/banger-helper", 0o755),
        ("usr/bin/banger-up", 0o755),
        ("usr/share/man/man8/banger-system.8", 0o644),
        ("usr/share/bash-completion/completions/banger-system", 0o644),
        ("usr/share/zsh/site-functions/_banger-system", 0o644),
        (
            "usr/share/fish/vendor_completions.d/banger-system.fish",
            0o644,
        ),
        ("etc/systemd/system/banger-helper.service", 0o644),
        ("etc/systemd/system/banger-helper.socket", 0o644),
        ("etc/systemd/system/banger-reconcile.timer", 0o644),
        ("etc/systemd/system/banger-reconcile-boot.service", 0o644),
        ("etc/tmpfiles.d/banger.conf", 0o644),
        ("etc/banger/install.json", 0o644),
        ("etc/banger/config.json", 0o644),
    ] {
        assert_eq!(mode(&w.path(f)), m, "{f}");
    }
    // install.json and config.json.
    let info: Value =
        serde_json::from_slice(&std::fs::read(w.path("etc/banger/install.json")).unwrap()).unwrap();
    assert_eq!(info["owner"], "nobody");
    assert_eq!(info["uid"], 65534);
    assert_eq!(info["version"], "9.9.9");
    assert_eq!(info["commit"], "one");
    assert!(info["built_at"].as_str().unwrap().ends_with('Z'));
    assert!(info["installed_at"].as_str().unwrap().ends_with('Z'));
    assert!(!info["home"].as_str().unwrap().is_empty());
    assert_eq!(info["files"].as_array().unwrap().len(), 9);
    assert_eq!(
        std::fs::read_to_string(w.path("usr/share/zsh/site-functions/_banger-system")).unwrap(),
        "# zsh completion\n"
    );
    let cfg: Value =
        serde_json::from_slice(&std::fs::read(w.path("etc/banger/config.json")).unwrap()).unwrap();
    assert_eq!(
        cfg["firecracker"],
        w.path("fc/firecracker").display().to_string()
    );
    assert_eq!(cfg["jailer"], w.path("fc/jailer").display().to_string());
    assert!(
        cfg.get("state_dir").is_none(),
        "absent keys stay absent: {cfg}"
    );
    // Directories, owners, modes.
    for (d, uid, m) in [
        ("var/lib/banger", 65534, 0o750),
        ("run/banger", 65534, 0o750),
        ("var/lib/banger-root", 0, 0o700),
        ("srv/jailer", 0, 0o755),
    ] {
        let md = std::fs::metadata(w.path(d)).unwrap();
        assert_eq!((md.uid(), mode(&w.path(d))), (uid, m), "{d}");
    }
    // The unit points at the installed helper.
    let svc = std::fs::read_to_string(w.path("etc/systemd/system/banger-helper.service")).unwrap();
    assert!(svc.contains(&format!(
        "ExecStart={}",
        w.path("usr/bin/banger-helper").display()
    )));
    assert_eq!(
        w.ctl.changes(),
        [
            "daemon-reload",
            "enable banger-reconcile-boot.service",
            "enable banger-helper.socket",
            "start banger-helper.socket",
            "enable banger-reconcile.timer",
            "start banger-reconcile.timer",
        ]
    );

    // Again: nothing changes, nothing is restarted, no file is rewritten.
    let before = std::fs::metadata(w.path("usr/bin/banger-helper"))
        .unwrap()
        .mtime_nsec();
    let info_before = std::fs::read(w.path("etc/banger/install.json")).unwrap();
    w.ctl.units.borrow_mut().insert(
        "banger-helper.service".into(),
        ("static".into(), "active".into()),
    );
    w.ctl.calls.borrow_mut().clear();
    let rec = install::install(&w.sys(), &w.opts(&from)).unwrap();
    assert_eq!(rec["changed"], json!([]), "{rec}");
    assert_eq!(rec["files_written"], 0);
    assert_eq!(w.ctl.changes(), Vec::<String>::new());
    assert_eq!(
        std::fs::metadata(w.path("usr/bin/banger-helper"))
            .unwrap()
            .mtime_nsec(),
        before
    );
    assert_eq!(
        std::fs::read(w.path("etc/banger/install.json")).unwrap(),
        info_before
    );

    // A unit edited by hand is put back, systemd reloaded, the running helper restarted.
    std::fs::write(w.path("etc/systemd/system/banger-helper.service"), "edited").unwrap();
    let rec = install::install(&w.sys(), &w.opts(&from)).unwrap();
    assert_eq!(
        std::fs::read_to_string(w.path("etc/systemd/system/banger-helper.service")).unwrap(),
        svc
    );
    assert_eq!(
        w.ctl.changes(),
        [
            "daemon-reload",
            "reset-failed banger-helper.service banger-helper.socket",
            "start banger-helper.socket",
            "restart banger-helper.service"
        ],
        "{rec}"
    );
}

#[test]
fn install_refuses_root_and_unknown_builds() {
    let Some(w) = world("refuse", false) else {
        return;
    };
    let from = build(&w.root.0, "b1", "one");
    let mut o = w.opts(&from);
    o.owner = Some("root".into());
    let e = install::install(&w.sys(), &o).unwrap_err();
    assert!(e.to_string().contains("refusing \"root\""), "{e}");
    let mut o = w.opts(&w.path("nowhere"));
    o.owner = Some("nobody".into());
    assert!(install::install(&w.sys(), &o).is_err());
    assert!(!w.path("etc/banger/install.json").exists());
    assert!(w.ctl.changes().is_empty());
}

#[test]
fn update_swaps_restarts_and_records_the_new_build() {
    let Some(w) = world("update", false) else {
        return;
    };
    let b1 = build(&w.root.0, "b1", "one");
    install::install(&w.sys(), &w.opts(&b1)).unwrap();
    let b2 = build(&w.root.0, "b2", "two");
    w.ctl.calls.borrow_mut().clear();
    let rec = update::update(
        &w.sys(),
        &update::Options {
            from: b2.display().to_string(),
            sha256: None,
            wait_secs: 2,
        },
    )
    .unwrap();
    assert_eq!(rec["after"]["commit"], "two");
    assert_eq!(rec["files_swapped"], 2, "{rec}");
    assert!(files::same(
        &b2.join("banger-helper"),
        &w.path("usr/bin/banger-helper"),
        None
    ));
    assert!(!files::prev_of(&w.path("usr/bin/banger-helper")).exists());
    assert_eq!(
        w.ctl.changes(),
        [
            "reset-failed banger-helper.service banger-helper.socket",
            "start banger-helper.socket",
            "restart banger-helper.service"
        ]
    );
    let info: Value =
        serde_json::from_slice(&std::fs::read(w.path("etc/banger/install.json")).unwrap()).unwrap();
    assert_eq!(info["commit"], "two");
    assert!(info["updated_at"].as_str().unwrap().ends_with('Z'));
}

#[test]
fn an_update_whose_helper_never_answers_is_rolled_back() {
    let Some(w) = world("rollback", false) else {
        return;
    };
    let b1 = build(&w.root.0, "b1", "one");
    install::install(&w.sys(), &w.opts(&b1)).unwrap();
    let b3 = build(&w.root.0, "b3", "broken");
    // The new build's units differ too (a different bindir would; here: a hand edit).
    w.ctl.calls.borrow_mut().clear();
    let e = update::update(
        &w.sys(),
        &update::Options {
            from: b3.display().to_string(),
            sha256: None,
            wait_secs: 1,
        },
    )
    .unwrap_err();
    let msg = banger::cli::one_line(&e);
    assert!(msg.contains("rolled back to banger 9.9.9 (one)"), "{msg}");
    assert!(files::same(
        &b1.join("banger-helper"),
        &w.path("usr/bin/banger-helper"),
        None
    ));
    assert!(files::same(
        &b1.join("banger-system"),
        &w.path("usr/bin/banger-system"),
        None
    ));
    assert!(!files::prev_of(&w.path("usr/bin/banger-helper")).exists());
    assert_eq!(
        w.ctl.changes(),
        [
            "reset-failed banger-helper.service banger-helper.socket",
            "start banger-helper.socket",
            "restart banger-helper.service",
            "reset-failed banger-helper.service banger-helper.socket",
            "start banger-helper.socket",
            "restart banger-helper.service"
        ]
    );
    let info: Value =
        serde_json::from_slice(&std::fs::read(w.path("etc/banger/install.json")).unwrap()).unwrap();
    assert_eq!(info["commit"], "one");
}

#[test]
fn uninstall_refuses_running_vms_then_removes_units_and_files_but_keeps_state() {
    let Some(mut w) = world("uninstall", true) else {
        return;
    };
    let b1 = build(&w.root.0, "b1", "one");
    install::install(&w.sys(), &w.opts(&b1)).unwrap();
    std::fs::write(w.path("var/lib/banger/keep-me"), "x").unwrap();
    let e = uninstall::uninstall(
        &w.sys(),
        &uninstall::Options {
            stop_vms: false,
            purge: false,
        },
    )
    .unwrap_err();
    assert!(e.to_string().contains("VMs are running: dev1"), "{e}");
    assert!(w.path("usr/bin/banger-helper").exists());

    w.helper.running_vm = false;
    w.ctl.calls.borrow_mut().clear();
    uninstall::uninstall(
        &w.sys(),
        &uninstall::Options {
            stop_vms: false,
            purge: false,
        },
    )
    .unwrap();
    for gone in [
        "usr/bin/banger-helper",
        "usr/bin/banger-up",
        "usr/share/man/man8/banger-system.8",
        "etc/systemd/system/banger-helper.service",
        "etc/systemd/system/banger-helper.socket",
        "etc/systemd/system/banger-reconcile.service",
        "etc/systemd/system/banger-reconcile.timer",
        "etc/systemd/system/banger-reconcile-boot.service",
        "etc/tmpfiles.d/banger.conf",
        "etc/banger/install.json",
    ] {
        assert!(!w.path(gone).exists(), "{gone} is left");
    }
    assert!(w.path("var/lib/banger/keep-me").exists());
    assert!(w.path("etc/banger/config.json").exists());
    let changes = w.ctl.changes();
    assert_eq!(
        &changes[..5],
        [
            "disable banger-reconcile.timer",
            "disable banger-reconcile-boot.service",
            "disable banger-helper.socket",
            "stop banger-reconcile.timer banger-reconcile.service banger-reconcile-boot.service banger-helper.socket banger-helper.service",
            "daemon-reload",
        ]
    );
}
