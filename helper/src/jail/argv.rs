//! The command lines: the jailer's (with Firecracker's after `--`) and the direct launcher's.

use std::path::{Path, PathBuf};

/// The API socket as Firecracker sees it inside the chroot.
pub const JAILED_API_SOCK: &str = "/run/firecracker.socket";
/// Open files allowed to a jailed Firecracker (the jailer's own default is 2048).
pub const NO_FILE: u64 = 4096;
/// The cgroup (relative to the cgroup v2 root) under which every VM's cgroup lives.
pub const PARENT_CGROUP: &str = "banger";
/// Memory a Firecracker process needs above the guest's memory (VMM, devices, buffers).
pub const MEM_OVERHEAD_MIB: u64 = 128;
/// The CPU period for `cpu.max`, in microseconds.
pub const CPU_PERIOD_US: u64 = 100_000;

/// Everything the command line depends on.
#[derive(Debug, Clone)]
pub struct Plan {
    pub id: String,
    pub jailer: PathBuf,
    pub firecracker: PathBuf,
    pub uid: u32,
    pub gid: u32,
    pub chroot_base: PathBuf,
    /// Where Firecracker finds its files: "/" inside a chroot, the run dir for direct.
    pub root: PathBuf,
    pub vcpus: u32,
    pub mem_mib: u32,
    /// Pass `--cgroup-version 2` and limits (the host has a usable cgroup v2).
    pub cgroup_v2: bool,
}

/// `cgroup` limits from the VM's size: `cpu.max` of `vcpus` whole CPUs and `memory.max` of the
/// guest's memory plus the VMM's overhead.
pub fn cgroup_limits(vcpus: u32, mem_mib: u32) -> Vec<String> {
    let quota = u64::from(vcpus.max(1)) * CPU_PERIOD_US;
    let mem = (u64::from(mem_mib) + MEM_OVERHEAD_MIB) << 20;
    vec![
        format!("cpu.max={quota} {CPU_PERIOD_US}"),
        format!("memory.max={mem}"),
    ]
}

impl Plan {
    fn in_root(&self, p: &str) -> String {
        self.root
            .join(p.trim_start_matches('/'))
            .display()
            .to_string()
    }

    /// Firecracker's own arguments (after the jailer's `--`, or after argv[0] for direct).
    pub fn firecracker_args(&self, api_sock: &Path) -> Vec<String> {
        vec![
            "--api-sock".into(),
            api_sock.display().to_string(),
            "--log-path".into(),
            self.in_root("firecracker.log"),
            "--level".into(),
            "Info".into(),
            "--show-level".into(),
            "--metrics-path".into(),
            self.in_root("metrics.json"),
        ]
    }

    /// The jailer's full argv (argv[0] is the jailer's path).
    pub fn jailer_argv(&self) -> Vec<String> {
        let mut a: Vec<String> = vec![
            self.jailer.display().to_string(),
            "--id".into(),
            self.id.clone(),
            "--exec-file".into(),
            self.firecracker.display().to_string(),
            "--uid".into(),
            self.uid.to_string(),
            "--gid".into(),
            self.gid.to_string(),
            "--chroot-base-dir".into(),
            self.chroot_base.display().to_string(),
        ];
        if self.cgroup_v2 {
            a.extend([
                "--cgroup-version".into(),
                "2".into(),
                "--parent-cgroup".into(),
                PARENT_CGROUP.into(),
            ]);
            for l in cgroup_limits(self.vcpus, self.mem_mib) {
                a.extend(["--cgroup".into(), l]);
            }
        }
        a.extend([
            "--resource-limit".into(),
            format!("no-file={NO_FILE}"),
            "--daemonize".into(),
            "--".into(),
        ]);
        a.extend(self.firecracker_args(Path::new(JAILED_API_SOCK)));
        a
    }

    /// The direct launcher's argv: Firecracker itself, no chroot.
    pub fn direct_argv(&self, api_sock: &Path) -> Vec<String> {
        let mut a = vec![
            self.firecracker.display().to_string(),
            "--id".into(),
            self.id.clone(),
        ];
        a.extend(self.firecracker_args(api_sock));
        a
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The flags the real jailer v1.16 accepts (firecracker docs/jailer.md, "Jailer Usage",
    /// and src/jailer/src/main.rs's argument table), besides --help and --version.
    const REAL_JAILER_FLAGS: &[(&str, bool)] = &[
        ("id", true),
        ("exec-file", true),
        ("uid", true),
        ("gid", true),
        ("chroot-base-dir", true),
        ("netns", true),
        ("daemonize", false),
        ("new-pid-ns", false),
        ("cgroup", true),
        ("resource-limit", true),
        ("cgroup-version", true),
        ("parent-cgroup", true),
    ];
    /// Flags the jailer takes at most once (all but --cgroup and --resource-limit).
    const REPEATABLE: &[&str] = &["cgroup", "resource-limit"];
    /// Firecracker v1.16's flags that banger passes (docs/api_requests, `firecracker --help`).
    const REAL_FIRECRACKER_FLAGS: &[(&str, bool)] = &[
        ("api-sock", true),
        ("id", true),
        ("log-path", true),
        ("level", true),
        ("show-level", false),
        ("metrics-path", true),
    ];

    fn plan(v2: bool) -> Plan {
        Plan {
            id: "dev1".into(),
            jailer: "/usr/bin/jailer".into(),
            firecracker: "/usr/bin/firecracker".into(),
            uid: 1000,
            gid: 1001,
            chroot_base: "/srv/jailer".into(),
            root: "/".into(),
            vcpus: 2,
            mem_mib: 1024,
            cgroup_v2: v2,
        }
    }

    /// Checks `words` against a flag table: every word is a known `--flag`, values follow the
    /// flags that take one, single-use flags appear once.
    fn check(words: &[String], table: &[(&str, bool)], repeatable: &[&str]) {
        let mut seen = std::collections::HashSet::new();
        let mut it = words.iter();
        while let Some(w) = it.next() {
            let name = w
                .strip_prefix("--")
                .unwrap_or_else(|| panic!("{w:?} is not a flag"));
            let (_, takes) = table
                .iter()
                .find(|(n, _)| *n == name)
                .unwrap_or_else(|| panic!("--{name} is not a flag of the real binary"));
            assert!(
                seen.insert(name) || repeatable.contains(&name),
                "--{name} given twice"
            );
            if *takes {
                let v = it
                    .next()
                    .unwrap_or_else(|| panic!("--{name} without a value"));
                assert!(!v.starts_with("--"), "--{name} value {v:?}");
            }
        }
    }

    #[test]
    fn jailer_argv_uses_only_real_jailer_flags() {
        for v2 in [false, true] {
            let a = plan(v2).jailer_argv();
            let sep = a.iter().position(|w| w == "--").expect("a -- separator");
            check(&a[1..sep], REAL_JAILER_FLAGS, REPEATABLE);
            check(&a[sep + 1..], REAL_FIRECRACKER_FLAGS, &[]);
            for required in ["--id", "--exec-file", "--uid", "--gid"] {
                assert!(a[..sep].iter().any(|w| w == required), "{required}");
            }
            assert!(a.contains(&"--daemonize".to_string()));
            // The jailer passes --id to Firecracker itself; banger must not repeat it.
            assert!(!a[sep..].contains(&"--id".to_string()));
        }
    }

    #[test]
    fn cgroup_flags_only_with_v2() {
        let a = plan(false).jailer_argv();
        assert!(!a.iter().any(|w| w.starts_with("--cgroup")));
        let a = plan(true).jailer_argv();
        let s = a.join(" ");
        assert!(
            s.contains("--cgroup-version 2 --parent-cgroup banger"),
            "{s}"
        );
        assert!(s.contains("--cgroup cpu.max=200000 100000"), "{s}");
        assert!(s.contains(&format!("--cgroup memory.max={}", (1024u64 + 128) << 20)));
    }

    #[test]
    fn direct_argv_is_firecracker_with_absolute_paths() {
        let mut p = plan(false);
        p.root = "/srv/jailer/direct/dev1".into();
        let a = p.direct_argv(Path::new("/srv/jailer/direct/dev1/firecracker.socket"));
        assert_eq!(a[0], "/usr/bin/firecracker");
        check(&a[1..], REAL_FIRECRACKER_FLAGS, &[]);
        assert!(a.contains(&"/srv/jailer/direct/dev1/firecracker.log".to_string()));
    }
}
