//! The systemd units (and the tmpfiles.d snippet) from the templates in `units/`, rendered with
//! tinytemplate's unescaped formatter. Every value is escaped here for the directive it lands
//! in: `%` becomes `%%` (systemd's specifiers), `$` becomes `$$` in command lines (variable
//! expansion), and a path that is not plain is double-quoted with `\` and `"` escaped.
//! Paths with control characters (a newline would end the directive) are refused.

use serde::Serialize;
use std::path::{Path, PathBuf};
use tinytemplate::TinyTemplate;

/// Each template: its name in `units/`, and the file it becomes (under the unit directory,
/// or for the tmpfiles snippet under tmpfiles.d).
pub const TEMPLATES: &[(&str, &str)] = &[
    (
        "banger-helper.socket",
        include_str!("../../../../units/banger-helper.socket"),
    ),
    (
        "banger-helper.service",
        include_str!("../../../../units/banger-helper.service"),
    ),
    (
        "banger-reconcile.service",
        include_str!("../../../../units/banger-reconcile.service"),
    ),
    (
        "banger-reconcile.timer",
        include_str!("../../../../units/banger-reconcile.timer"),
    ),
    (
        "banger-reconcile-boot.service",
        include_str!("../../../../units/banger-reconcile-boot.service"),
    ),
    (
        "banger.tmpfiles",
        include_str!("../../../../units/banger.tmpfiles"),
    ),
];

/// The tmpfiles.d snippet's template, installed as `banger.conf`.
pub const TMPFILES: &str = "banger.tmpfiles";
pub const TMPFILES_NAME: &str = "banger.conf";
pub const SOCKET: &str = "banger-helper.socket";
pub const SERVICE: &str = "banger-helper.service";
pub const RECONCILE: &str = "banger-reconcile.service";
pub const TIMER: &str = "banger-reconcile.timer";
/// The reconcile run at boot (`banger-reconcile --boot`).
pub const BOOT: &str = "banger-reconcile-boot.service";
/// The units install enables and starts (the helper starts on the first connection).
pub const ENABLED: &[&str] = &[SOCKET, TIMER];
/// The units install enables without starting them: they run when the host starts.
pub const ENABLED_AT_BOOT: &[&str] = &[BOOT];

#[derive(Debug, thiserror::Error)]
pub enum UnitError {
    #[error("{what} {value:?} cannot go into a unit file: {why}")]
    Unfit {
        what: &'static str,
        value: String,
        why: &'static str,
    },
    #[error("cannot render {name}")]
    Render {
        name: &'static str,
        #[source]
        source: tinytemplate::error::Error,
    },
}

/// What the units are rendered from.
#[derive(Debug, Clone)]
pub struct Params {
    pub owner: String,
    /// The owner's primary group (a name, or the gid as a number).
    pub group: String,
    pub bindir: PathBuf,
    pub socket: PathBuf,
    pub state_dir: PathBuf,
    pub run_dir: PathBuf,
    pub root_dir: PathBuf,
    pub jail_dir: PathBuf,
}

/// The values the templates see, each escaped for where it goes.
#[derive(Serialize)]
struct Context {
    owner: String,
    group: String,
    socket: String,
    helper_exec: String,
    reconcile_exec: String,
    reconcile_path: String,
    writable: String,
    owner_writable: String,
    protect_home: &'static str,
    state_dir: String,
    run_dir: String,
    root_dir: String,
    jail_dir: String,
}

/// Kernel tunables and cgroup files the helper writes (beside banger's own directories).
pub const HELPER_WRITES: &[&str] = &["/proc/sys/net/ipv4/ip_forward", "/sys/fs/cgroup"];

fn plain(c: char) -> bool {
    c.is_ascii_alphanumeric() || "/._+-@:,=%".contains(c)
}

/// A path checked for a unit file: absolute, no control characters.
fn checked<'a>(what: &'static str, p: &'a Path) -> Result<&'a str, UnitError> {
    let unfit = |why| UnitError::Unfit {
        what,
        value: p.display().to_string(),
        why,
    };
    let s = p.to_str().ok_or_else(|| unfit("not UTF-8"))?;
    if !s.starts_with('/') {
        return Err(unfit("not an absolute path"));
    }
    if s.chars().any(char::is_control) {
        return Err(unfit(
            "it holds a control character (a newline ends a directive)",
        ));
    }
    Ok(s)
}

/// One word of a space-separated list (ReadWritePaths=, tmpfiles.d paths): bare when plain,
/// else double-quoted; `%` doubled either way.
pub fn word(s: &str) -> String {
    let s = s.replace('%', "%%");
    if !s.is_empty() && s.chars().all(plain) {
        return s;
    }
    let mut out = String::from("\"");
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// One word of a command line (ExecStart=): like [`word`], and `$` doubled.
pub fn exec_word(s: &str) -> String {
    word(&s.replace('$', "$$"))
}

/// A whole-line value (ListenStream=, Condition*=): only `%` doubled.
pub fn value(s: &str) -> String {
    s.replace('%', "%%")
}

/// A user or group name for a unit: what useradd accepts, nothing that needs escaping.
pub fn check_name(what: &'static str, n: &str) -> Result<(), UnitError> {
    let ok = !n.is_empty()
        && n.len() <= 32
        && n.starts_with(|c: char| c.is_ascii_lowercase() || c == '_' || c.is_ascii_digit())
        && n.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_-.".contains(c));
    if ok {
        Ok(())
    } else {
        Err(UnitError::Unfit {
            what,
            value: n.to_string(),
            why: "expected a user name such as alice (lower case letters, digits, _ - .)",
        })
    }
}

/// True when `p` lies where ProtectHome= hides things.
fn under_home(p: &Path) -> bool {
    ["/home", "/root", "/run/user"]
        .iter()
        .any(|h| p.starts_with(h))
}

fn context(p: &Params) -> Result<Context, UnitError> {
    check_name("owner", &p.owner)?;
    check_name("group", &p.group)?;
    let helper = p.bindir.join("banger-helper");
    let reconcile = p.bindir.join("banger-reconcile");
    let helper_s = checked("helper binary", &helper)?;
    let reconcile_s = checked("reconcile binary", &reconcile)?;
    let socket = checked("helper socket", &p.socket)?;
    let state = checked("state dir", &p.state_dir)?;
    let run = checked("run dir", &p.run_dir)?;
    let root = checked("root dir", &p.root_dir)?;
    let jail = checked("jail dir", &p.jail_dir)?;
    let mut writable: Vec<String> = [state, root, jail, run].iter().map(|s| word(s)).collect();
    writable.extend(HELPER_WRITES.iter().map(|s| word(s)));
    let home = [&p.state_dir, &p.run_dir, &p.root_dir, &p.jail_dir]
        .iter()
        .any(|d| under_home(d));
    Ok(Context {
        owner: p.owner.clone(),
        group: p.group.clone(),
        socket: value(socket),
        helper_exec: exec_word(helper_s),
        reconcile_exec: exec_word(reconcile_s),
        reconcile_path: value(reconcile_s),
        writable: writable.join(" "),
        // The reconcile runs' console keepers write in the jails.
        owner_writable: [state, run, jail]
            .iter()
            .map(|s| word(s))
            .collect::<Vec<_>>()
            .join(" "),
        // The owner's directories may live in a home: then homes are read-only rather than
        // hidden, and those directories are writable again through ReadWritePaths=.
        protect_home: if home { "read-only" } else { "yes" },
        state_dir: word(state),
        run_dir: word(run),
        root_dir: word(root),
        jail_dir: word(jail),
    })
}

/// Every template rendered: (template name, text).
pub fn render(p: &Params) -> Result<Vec<(&'static str, String)>, UnitError> {
    let ctx = context(p)?;
    let mut tt = TinyTemplate::new();
    tt.set_default_formatter(&tinytemplate::format_unescaped);
    for (name, text) in TEMPLATES {
        tt.add_template(name, text)
            .map_err(|source| UnitError::Render { name, source })?;
    }
    TEMPLATES
        .iter()
        .map(|(name, _)| {
            tt.render(name, &ctx)
                .map(|text| (*name, text))
                .map_err(|source| UnitError::Render { name, source })
        })
        .collect()
}

/// The file a rendered template is written to.
pub fn target(name: &str, unit_dir: &Path, tmpfiles_dir: &Path) -> PathBuf {
    if name == TMPFILES {
        tmpfiles_dir.join(TMPFILES_NAME)
    } else {
        unit_dir.join(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> Params {
        Params {
            owner: "alice".into(),
            group: "alice".into(),
            bindir: "/usr/local/bin".into(),
            socket: "/run/banger-root/helper.sock".into(),
            state_dir: "/var/lib/banger".into(),
            run_dir: "/run/banger".into(),
            root_dir: "/var/lib/banger-root".into(),
            jail_dir: "/srv/jailer".into(),
        }
    }

    fn unit(units: &[(&str, String)], name: &str) -> String {
        units.iter().find(|(n, _)| *n == name).unwrap().1.clone()
    }

    /// The value of `key=` lines in a unit (every occurrence).
    fn values(text: &str, key: &str) -> Vec<String> {
        text.lines()
            .filter_map(|l| l.strip_prefix(&format!("{key}=")))
            .map(String::from)
            .collect()
    }

    fn one(text: &str, key: &str) -> String {
        let v = values(text, key);
        assert_eq!(v.len(), 1, "{key}= appears {} times in:\n{text}", v.len());
        v[0].clone()
    }

    #[test]
    fn the_helper_service_has_every_directive() {
        let u = render(&params()).unwrap();
        let s = unit(&u, SERVICE);
        for (k, v) in [
            ("Type", "notify"),
            ("ExecStart", "/usr/local/bin/banger-helper"),
            ("KillMode", "process"),
            ("Restart", "on-failure"),
            ("TimeoutStartSec", "30"),
            ("TasksMax", "infinity"),
            ("NoNewPrivileges", "yes"),
            ("ProtectSystem", "strict"),
            ("ProtectHome", "yes"),
            ("PrivateTmp", "yes"),
            ("RestrictAddressFamilies", "AF_UNIX AF_NETLINK"),
            ("SystemCallArchitectures", "native"),
            ("LockPersonality", "yes"),
            ("ProtectKernelModules", "yes"),
            ("ProtectKernelTunables", "yes"),
            ("ProtectKernelLogs", "yes"),
            ("ProtectClock", "yes"),
            ("ProtectHostname", "yes"),
            ("UMask", "0077"),
            ("MemoryDenyWriteExecute", "yes"),
            ("RestrictNamespaces", "mnt"),
            ("RestrictSUIDSGID", "yes"),
            ("RestrictRealtime", "yes"),
            ("IPAddressDeny", "any"),
            ("Requires", "banger-helper.socket"),
        ] {
            assert_eq!(one(&s, k), v, "{k}");
        }
        let caps = one(&s, "CapabilityBoundingSet");
        for c in [
            "CAP_NET_ADMIN",
            "CAP_SYS_ADMIN",
            "CAP_SYS_CHROOT",
            "CAP_MKNOD",
            "CAP_CHOWN",
            "CAP_SETUID",
            "CAP_SETGID",
            "CAP_KILL",
        ] {
            assert!(caps.split(' ').any(|x| x == c), "{c} missing from {caps}");
        }
        for c in [
            "CAP_SYS_PTRACE",
            "CAP_SYS_MODULE",
            "CAP_SYS_RAWIO",
            "CAP_SYS_TIME",
        ] {
            assert!(!caps.contains(c), "{c} must not be in {caps}");
        }
        assert_eq!(
            one(&s, "ReadWritePaths"),
            "/var/lib/banger /var/lib/banger-root /srv/jailer /run/banger \
             /proc/sys/net/ipv4/ip_forward /sys/fs/cgroup"
        );
        // Every hardening directive left out says which operation needs it.
        for left_out in [
            "PrivateDevices=",
            "DevicePolicy=",
            "PrivateNetwork=",
            "PrivateUsers=",
            "ProtectControlGroups=",
            "ProtectProc=",
            "ProcSubset=",
            "User=",
        ] {
            let line = s
                .lines()
                .find(|l| l.starts_with(&format!("# {left_out}")))
                .unwrap_or_else(|| panic!("no comment for {left_out}"));
            assert!(line.len() > left_out.len() + 10, "{line}");
            assert!(
                !s.lines().any(|l| l.starts_with(left_out)),
                "{left_out} set"
            );
        }
    }

    #[test]
    fn the_socket_lets_only_root_and_the_owner_connect() {
        let u = render(&params()).unwrap();
        let s = unit(&u, SOCKET);
        assert_eq!(one(&s, "ListenStream"), "/run/banger-root/helper.sock");
        assert_eq!(one(&s, "SocketUser"), "alice");
        assert_eq!(one(&s, "SocketMode"), "0600");
        assert_eq!(one(&s, "WantedBy"), "sockets.target");
        assert!(values(&s, "Accept").is_empty() || one(&s, "Accept") == "no");
    }

    #[test]
    fn reconcile_runs_as_the_owner_from_the_timer() {
        let u = render(&params()).unwrap();
        let s = unit(&u, RECONCILE);
        assert_eq!(one(&s, "User"), "alice");
        assert_eq!(
            one(&s, "ExecStart"),
            "/usr/local/bin/banger-reconcile --apply --gc"
        );
        assert_eq!(
            one(&s, "ConditionFileIsExecutable"),
            "/usr/local/bin/banger-reconcile"
        );
        assert_eq!(one(&s, "Type"), "oneshot");
        assert_eq!(one(&s, "KillMode"), "process");
        assert_eq!(one(&s, "CapabilityBoundingSet"), "");
        assert_eq!(
            one(&s, "ReadWritePaths"),
            "/var/lib/banger /run/banger /srv/jailer"
        );
        let t = unit(&u, TIMER);
        assert_eq!(one(&t, "WantedBy"), "timers.target");
        assert_eq!(one(&t, "OnUnitActiveSec"), "1min");
        let b = unit(&u, BOOT);
        assert_eq!(one(&b, "User"), "alice");
        assert_eq!(
            one(&b, "ExecStart"),
            "/usr/local/bin/banger-reconcile --boot --wait"
        );
        assert_eq!(one(&b, "Type"), "oneshot");
        assert_eq!(one(&b, "RemainAfterExit"), "yes");
        assert_eq!(one(&b, "KillMode"), "process");
        assert_eq!(one(&b, "WantedBy"), "multi-user.target");
        assert_eq!(one(&b, "CapabilityBoundingSet"), "");
        assert!(one(&s, "After").contains(BOOT));
    }

    #[test]
    fn tmpfiles_gives_each_directory_its_owner_and_mode() {
        let u = render(&params()).unwrap();
        let t = unit(&u, TMPFILES);
        let lines: Vec<&str> = t.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            lines,
            [
                "d /var/lib/banger 0750 alice alice -",
                "d /run/banger 0750 alice alice -",
                "d /var/lib/banger-root 0700 root root -",
                "d /srv/jailer 0755 root root -",
            ]
        );
    }

    #[test]
    fn a_home_path_with_spaces_is_quoted_and_homes_become_read_only() {
        let mut p = params();
        p.state_dir = "/home/alice smith/banger state".into();
        p.bindir = "/opt/my tools/100%/$HOME/bin".into();
        let u = render(&p).unwrap();
        let s = unit(&u, SERVICE);
        assert_eq!(
            one(&s, "ExecStart"),
            r#""/opt/my tools/100%%/$$HOME/bin/banger-helper""#
        );
        assert!(one(&s, "ReadWritePaths").starts_with(r#""/home/alice smith/banger state" "#));
        assert_eq!(one(&s, "ProtectHome"), "read-only");
        let r = unit(&u, RECONCILE);
        assert_eq!(
            one(&r, "ConditionFileIsExecutable"),
            "/opt/my tools/100%%/$HOME/bin/banger-reconcile"
        );
        let t = unit(&u, TMPFILES);
        assert!(t.contains("d \"/home/alice smith/banger state\" 0750 alice alice -"));
    }

    #[test]
    fn quoting() {
        assert_eq!(word("/var/lib/banger"), "/var/lib/banger");
        assert_eq!(word("/a b"), "\"/a b\"");
        assert_eq!(word(r#"/a"b\c"#), r#""/a\"b\\c""#);
        assert_eq!(word("/50%"), "/50%%");
        assert_eq!(word("/a b%"), "\"/a b%%\"");
        assert_eq!(exec_word("/x/$y"), "\"/x/$$y\"");
        assert_eq!(value("/run/x %h y"), "/run/x %%h y");
    }

    #[test]
    fn unfit_values_are_refused() {
        let mut p = params();
        p.socket = "/run/x\ny".into();
        assert!(render(&p).unwrap_err().to_string().contains("control"));
        let mut p = params();
        p.state_dir = "relative".into();
        assert!(render(&p).unwrap_err().to_string().contains("absolute"));
        let mut p = params();
        p.owner = "Alice Smith".into();
        assert!(render(&p).is_err());
        let mut p = params();
        p.owner = "%n".into();
        assert!(render(&p).is_err());
    }

    #[test]
    fn every_template_renders_without_leftover_braces() {
        for (name, text) in render(&params()).unwrap() {
            assert!(
                !text.contains('{') && !text.contains('}'),
                "{name}:\n{text}"
            );
            assert!(text.ends_with('\n'), "{name}");
        }
    }
}
