//! Finding a VM's live Firecracker again, after any restart of banger (jail, vm, reconcile).
//!
//! A PID is adopted only when it passes the identity checks: the process exists and is not a
//! zombie, its `comm` is the Firecracker binary's name (`firecracker`, or the jailed exec
//! file's name cut to 15 bytes as the kernel does), and its command line carries the VM's
//! `--id`. The candidates, in order:
//!
//! 1. the recorded PID, when its start time (`/proc/PID/stat` field 22) also matches the
//!    recorded one;
//! 2. the newest process whose command line contains the API socket's real path (what
//!    `pgrep -n -f PATH` finds), read from the short symlink under the run dir. A socket path
//!    that is not a symlink is not followed;
//! 3. the PID in the jailer's pidfile `<chroot>/<exec file name>.pid`, `firecracker.pid`
//!    for the usual binary name (whitespace trimmed).
//!
//! A PID that fails the checks is never adopted (and so never signalled).

use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

/// The kernel keeps at most 15 bytes of a process name in `comm`.
pub const COMM_MAX: usize = 15;

/// What identifies one VM's Firecracker.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Target {
    /// The `--id` Firecracker runs with (the VM name).
    pub id: String,
    /// The expected `/proc/PID/comm`.
    pub comm: String,
    /// The recorded PID and its start time (clock ticks since boot).
    pub pid: Option<i32>,
    pub start_time: Option<u64>,
    /// The short API socket symlink under the run dir.
    pub api_sock: Option<PathBuf>,
    /// The jailer's pidfile.
    pub pidfile: Option<PathBuf>,
}

/// Which candidate matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum How {
    Recorded,
    Socket,
    Pidfile,
}

impl How {
    pub fn as_str(self) -> &'static str {
        match self {
            How::Recorded => "recorded",
            How::Socket => "socket",
            How::Pidfile => "pidfile",
        }
    }
}

/// A live, verified Firecracker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub pid: i32,
    pub start_time: u64,
    pub how: How,
}

/// What `/proc/PID` says about one process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcInfo {
    pub pid: i32,
    pub comm: String,
    /// The state letter (`R`, `S`, `Z`...).
    pub state: char,
    pub start_time: u64,
    pub cmdline: Vec<String>,
}

impl ProcInfo {
    /// Gone or a zombie: not a running process.
    pub fn is_dead(&self) -> bool {
        matches!(self.state, 'Z' | 'X' | 'x')
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PidfileError {
    #[error("cannot read the pidfile {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("the pidfile {path} does not hold a PID (found {content:?})")]
    Garbage { path: PathBuf, content: String },
}

/// A view of `/proc` (another root in tests).
#[derive(Debug, Clone)]
pub struct Proc {
    root: PathBuf,
}

impl Default for Proc {
    fn default() -> Self {
        Proc {
            root: PathBuf::from("/proc"),
        }
    }
}

/// Parses the text of `/proc/PID/stat`: (comm, state, start time). The comm sits between the
/// first `(` and the last `)` and may itself hold spaces and parentheses.
pub fn parse_stat(text: &str) -> Option<(String, char, u64)> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text.get(open + 1..close)?.to_string();
    let mut rest = text.get(close + 1..)?.split_whitespace();
    let state = rest.next()?.chars().next()?;
    // After the comm, field 3 is the state; the start time is field 22, i.e. 19 further on.
    let start = rest.nth(18)?.parse().ok()?;
    Some((comm, state, start))
}

impl Proc {
    pub fn new(root: impl Into<PathBuf>) -> Proc {
        Proc { root: root.into() }
    }

    /// The process `pid`, if it exists.
    pub fn info(&self, pid: i32) -> Option<ProcInfo> {
        if pid <= 0 {
            return None;
        }
        let dir = self.root.join(pid.to_string());
        let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
        let (stat_comm, state, start_time) = parse_stat(&stat)?;
        let comm = std::fs::read_to_string(dir.join("comm"))
            .map(|c| c.trim_end_matches('\n').to_string())
            .unwrap_or(stat_comm);
        let raw = std::fs::read(dir.join("cmdline")).unwrap_or_default();
        let cmdline = raw
            .split(|b| *b == 0)
            .filter(|w| !w.is_empty())
            .map(|w| String::from_utf8_lossy(w).into_owned())
            .collect();
        Some(ProcInfo {
            pid,
            comm,
            state,
            start_time,
            cmdline,
        })
    }

    /// Every numeric entry.
    pub fn pids(&self) -> Vec<i32> {
        let Ok(rd) = std::fs::read_dir(&self.root) else {
            return Vec::new();
        };
        rd.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect()
    }

    /// The newest process whose command line (words joined by spaces) contains `pattern`,
    /// like `pgrep -n -f` with a fixed string.
    pub fn newest_matching(&self, pattern: &str) -> Option<ProcInfo> {
        if pattern.is_empty() {
            return None;
        }
        // The command line alone first (one read per process, not three): the rest only
        // for the few that match.
        let matches = |p: &i32| {
            let raw =
                std::fs::read(self.root.join(p.to_string()).join("cmdline")).unwrap_or_default();
            let words: Vec<&[u8]> = raw.split(|b| *b == 0).filter(|w| !w.is_empty()).collect();
            String::from_utf8_lossy(&words.join(&b' ')).contains(pattern)
        };
        self.pids()
            .into_iter()
            .filter(matches)
            .filter_map(|p| self.info(p))
            .filter(|i| !i.is_dead() && i.cmdline.join(" ").contains(pattern))
            .max_by_key(|i| (i.start_time, i.pid))
    }
}

/// Reads a pidfile: surrounding whitespace is ignored, the rest must be a positive number.
pub fn read_pidfile(path: &Path) -> Result<i32, PidfileError> {
    let text = std::fs::read_to_string(path).map_err(|e| PidfileError::Read {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let t = text.trim();
    match t.parse::<i32>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(PidfileError::Garbage {
            path: path.to_path_buf(),
            content: t.chars().take(40).collect(),
        }),
    }
}

/// The comm the kernel shows for an executable at `path`.
pub fn comm_of(path: &str) -> String {
    let base = path.rsplit('/').next().unwrap_or(path);
    let mut end = base.len().min(COMM_MAX);
    while !base.is_char_boundary(end) {
        end -= 1;
    }
    base[..end].to_string()
}

/// True when `cmdline` carries `--id ID` (two words) or `--id=ID`.
fn has_id(cmdline: &[String], id: &str) -> bool {
    cmdline.windows(2).any(|w| w[0] == "--id" && w[1] == id)
        || cmdline.iter().any(|w| w.strip_prefix("--id=") == Some(id))
}

/// The identity checks every candidate must pass.
pub fn verify(proc: &Proc, t: &Target, pid: i32) -> Option<ProcInfo> {
    let info = proc.info(pid)?;
    if info.is_dead() || t.id.is_empty() {
        return None;
    }
    let comm_ok = info.comm == t.comm || (t.comm.is_empty() && info.comm == "firecracker");
    if !comm_ok || !has_id(&info.cmdline, &t.id) {
        return None;
    }
    Some(info)
}

/// Finds the target's live Firecracker in `/proc`.
pub fn find_pid(t: &Target) -> Option<Found> {
    find_in(&Proc::default(), t)
}

/// [`find_pid`] against another `/proc` (tests).
pub fn find_in(proc: &Proc, t: &Target) -> Option<Found> {
    if let Some(pid) = t.pid {
        if let Some(info) = verify(proc, t, pid) {
            if t.start_time.is_none_or(|s| s == info.start_time) {
                return Some(Found {
                    pid,
                    start_time: info.start_time,
                    how: How::Recorded,
                });
            }
        }
    }
    if let Some(sock) = &t.api_sock {
        let is_link = std::fs::symlink_metadata(sock).is_ok_and(|m| m.file_type().is_symlink());
        if is_link {
            if let Ok(target) = std::fs::read_link(sock) {
                if target.is_absolute() {
                    let pattern = target.to_string_lossy();
                    if let Some(info) = proc.newest_matching(&pattern) {
                        if verify(proc, t, info.pid).is_some() {
                            return Some(Found {
                                pid: info.pid,
                                start_time: info.start_time,
                                how: How::Socket,
                            });
                        }
                    }
                }
            }
        }
    }
    if let Some(pf) = &t.pidfile {
        if let Ok(pid) = read_pidfile(pf) {
            if let Some(info) = verify(proc, t, pid) {
                // The recorded PID already failed its start-time check: the same PID again
                // is a reused one, not ours.
                let reused =
                    t.pid == Some(pid) && t.start_time.is_some_and(|s| s != info.start_time);
                if !reused {
                    return Some(Found {
                        pid,
                        start_time: info.start_time,
                        how: How::Pidfile,
                    });
                }
            }
        }
    }
    None
}

/// The target described by a record's `jail` section (see banger-jail(1)).
pub fn target_from_jail(name: &str, jail: &Map<String, Value>) -> Target {
    let s = |k: &str| jail.get(k).and_then(Value::as_str);
    let argv: Vec<&str> = jail
        .get("argv")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let exec = if s("launcher") == Some("direct") {
        argv.first().copied()
    } else {
        argv.windows(2)
            .find(|w| w[0] == "--exec-file")
            .map(|w| w[1])
    };
    Target {
        id: s("id").unwrap_or(name).to_string(),
        comm: comm_of(exec.unwrap_or("firecracker")),
        pid: jail
            .get("pid")
            .and_then(Value::as_i64)
            .and_then(|p| i32::try_from(p).ok()),
        start_time: jail.get("start_time").and_then(Value::as_u64),
        api_sock: s("api_sock").map(PathBuf::from),
        pidfile: s("pidfile").map(PathBuf::from).or_else(|| {
            let file = exec
                .and_then(|e| Path::new(e).file_name())
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "firecracker".into());
            s("chroot").map(|c| Path::new(c).join(format!("{file}.pid")))
        }),
    }
}

/// Finds the Firecracker of a VM record, if it has a `jail` section and the process lives.
pub fn find_for_record(rec: &Map<String, Value>) -> Option<Found> {
    let name = rec.get("name").and_then(Value::as_str)?;
    let jail = rec.get("jail").and_then(Value::as_object)?;
    find_pid(&target_from_jail(name, jail))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fake {
        dir: PathBuf,
    }

    impl Fake {
        fn new(tag: &str) -> Fake {
            let dir =
                std::env::temp_dir().join(format!("banger-findpid-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(dir.join("proc")).unwrap();
            Fake { dir }
        }
        fn proc(&self) -> Proc {
            Proc::new(self.dir.join("proc"))
        }
        fn add(&self, pid: i32, comm: &str, state: char, start: u64, argv: &[&str]) {
            let d = self.dir.join("proc").join(pid.to_string());
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("comm"), format!("{comm}\n")).unwrap();
            let mut fields: Vec<String> = (4..=52).map(|i| i.to_string()).collect();
            fields[22 - 4] = start.to_string();
            std::fs::write(
                d.join("stat"),
                format!("{pid} ({comm}) {state} {}\n", fields.join(" ")),
            )
            .unwrap();
            let mut cmd = Vec::new();
            for a in argv {
                cmd.extend_from_slice(a.as_bytes());
                cmd.push(0);
            }
            std::fs::write(d.join("cmdline"), cmd).unwrap();
        }
        fn path(&self, p: &str) -> PathBuf {
            self.dir.join(p)
        }
    }

    impl Drop for Fake {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    fn fc(id: &str) -> Vec<String> {
        [
            "/firecracker",
            "--id",
            id,
            "--start-time-us",
            "1",
            "--api-sock",
            "/run/firecracker.socket",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    fn add_fc(f: &Fake, pid: i32, start: u64, id: &str) {
        let argv = fc(id);
        let refs: Vec<&str> = argv.iter().map(String::as_str).collect();
        f.add(pid, "firecracker", 'S', start, &refs);
    }

    fn target(f: &Fake) -> Target {
        Target {
            id: "vm1".into(),
            comm: "firecracker".into(),
            pid: Some(100),
            start_time: Some(5000),
            api_sock: Some(f.path("vm1.sock")),
            pidfile: Some(f.path("firecracker.pid")),
        }
    }

    #[test]
    fn stat_with_odd_comm() {
        let s = "7 (a) b (c)) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 4242 20";
        let (comm, state, start) = parse_stat(s).unwrap();
        assert_eq!((comm.as_str(), state, start), ("a) b (c)", 'S', 4242));
        assert!(parse_stat("garbage").is_none());
    }

    #[test]
    fn happy_path_recorded_pid() {
        let f = Fake::new("happy");
        add_fc(&f, 100, 5000, "vm1");
        let got = find_in(&f.proc(), &target(&f)).unwrap();
        assert_eq!(
            (got.pid, got.start_time, got.how),
            (100, 5000, How::Recorded)
        );
    }

    #[test]
    fn missing_pidfile_and_nothing_else_is_none() {
        let f = Fake::new("missing");
        let t = Target {
            pid: None,
            ..target(&f)
        };
        assert_eq!(find_in(&f.proc(), &t), None);
        assert!(matches!(
            read_pidfile(&f.path("firecracker.pid")),
            Err(PidfileError::Read { .. })
        ));
    }

    #[test]
    fn stale_pid_falls_back_to_the_pidfile() {
        let f = Fake::new("stale");
        // The recorded pid 100 is gone; the jailer's pidfile names the live one.
        add_fc(&f, 321, 9000, "vm1");
        std::fs::write(f.path("firecracker.pid"), "321").unwrap();
        let got = find_in(&f.proc(), &target(&f)).unwrap();
        assert_eq!((got.pid, got.how), (321, How::Pidfile));
    }

    #[test]
    fn wrong_comm_is_refused() {
        let f = Fake::new("comm");
        let argv = fc("vm1");
        let refs: Vec<&str> = argv.iter().map(String::as_str).collect();
        f.add(100, "bash", 'S', 5000, &refs);
        std::fs::write(f.path("firecracker.pid"), "100").unwrap();
        assert_eq!(find_in(&f.proc(), &target(&f)), None);
    }

    #[test]
    fn wrong_id_and_zombies_are_refused() {
        let f = Fake::new("id");
        add_fc(&f, 100, 5000, "vm2");
        assert_eq!(find_in(&f.proc(), &target(&f)), None);
        let argv = fc("vm1");
        let refs: Vec<&str> = argv.iter().map(String::as_str).collect();
        f.add(100, "firecracker", 'Z', 5000, &refs);
        assert_eq!(find_in(&f.proc(), &target(&f)), None);
    }

    #[test]
    fn garbage_pidfile() {
        let f = Fake::new("garbage");
        add_fc(&f, 321, 9000, "vm1");
        for junk in ["abc", "", "-5", "0", "321abc", "99999999999"] {
            std::fs::write(f.path("firecracker.pid"), junk).unwrap();
            assert_eq!(find_in(&f.proc(), &target(&f)), None, "{junk:?}");
        }
        std::fs::write(f.path("firecracker.pid"), "abc").unwrap();
        assert!(matches!(
            read_pidfile(&f.path("firecracker.pid")),
            Err(PidfileError::Garbage { .. })
        ));
    }

    #[test]
    fn whitespace_around_the_pid_is_tolerated() {
        let f = Fake::new("ws");
        add_fc(&f, 321, 9000, "vm1");
        std::fs::write(f.path("firecracker.pid"), " \n321\n\t ").unwrap();
        assert_eq!(find_in(&f.proc(), &target(&f)).unwrap().pid, 321);
    }

    #[test]
    fn api_socket_symlink_finds_a_direct_firecracker() {
        let f = Fake::new("sock");
        let real = f.path("direct/vm1/firecracker.socket");
        let real_s = real.to_str().unwrap();
        f.add(
            400,
            "firecracker",
            'S',
            7000,
            &["/usr/bin/firecracker", "--id", "vm1", "--api-sock", real_s],
        );
        f.add(
            401,
            "firecracker",
            'S',
            7100,
            &["/usr/bin/firecracker", "--id", "vm1", "--api-sock", real_s],
        );
        std::os::unix::fs::symlink(&real, f.path("vm1.sock")).unwrap();
        let got = find_in(&f.proc(), &target(&f)).unwrap();
        assert_eq!((got.pid, got.how), (401, How::Socket), "the newest wins");
    }

    #[test]
    fn api_socket_that_is_not_a_symlink_is_not_followed() {
        let f = Fake::new("notlink");
        let real = f.path("vm1.sock");
        f.add(
            400,
            "firecracker",
            'S',
            7000,
            &[
                "/usr/bin/firecracker",
                "--id",
                "vm1",
                "--api-sock",
                real.to_str().unwrap(),
            ],
        );
        std::fs::write(&real, b"").unwrap();
        let t = Target {
            pid: None,
            ..target(&f)
        };
        assert_eq!(find_in(&f.proc(), &t), None);
    }

    #[test]
    fn pid_reused_by_another_process_is_refused() {
        let f = Fake::new("reused");
        // PID 100 now belongs to another VM's Firecracker, then to a Firecracker of the same
        // id started later (start time differs), then to an unrelated program.
        add_fc(&f, 100, 5000, "other");
        std::fs::write(f.path("firecracker.pid"), "100").unwrap();
        assert_eq!(find_in(&f.proc(), &target(&f)), None);
        add_fc(&f, 100, 6000, "vm1");
        assert_eq!(find_in(&f.proc(), &target(&f)), None);
        f.add(100, "sleep", 'S', 5000, &["sleep", "100"]);
        assert_eq!(find_in(&f.proc(), &target(&f)), None);
    }

    #[test]
    fn target_from_a_jail_section() {
        let jail = serde_json::json!({
            "launcher": "jailer", "id": "vm1", "chroot": "/srv/jailer/firecracker-v1.16.1-x86_64/vm1/root",
            "api_sock": "/run/banger/vms/vm1.sock", "pid": 12, "start_time": 34,
            "argv": ["/usr/bin/jailer", "--id", "vm1", "--exec-file", "/opt/fc/firecracker-v1.16.1-x86_64"],
        });
        let t = target_from_jail("vm1", jail.as_object().unwrap());
        assert_eq!(t.comm, "firecracker-v1.");
        assert_eq!(t.pid, Some(12));
        assert_eq!(t.start_time, Some(34));
        // The jailer names the pidfile after the exec file.
        assert_eq!(
            t.pidfile,
            Some(PathBuf::from(
                "/srv/jailer/firecracker-v1.16.1-x86_64/vm1/root/firecracker-v1.16.1-x86_64.pid"
            ))
        );
        let direct = serde_json::json!({"launcher": "direct", "argv": ["/usr/bin/firecracker", "--id", "x"]});
        let t = target_from_jail("x", direct.as_object().unwrap());
        assert_eq!((t.id.as_str(), t.comm.as_str()), ("x", "firecracker"));
    }

    #[test]
    fn the_real_proc_finds_nothing_for_a_made_up_vm() {
        let t = Target {
            id: "no-such-vm-here".into(),
            comm: "firecracker".into(),
            pid: Some(std::process::id() as i32),
            ..Target::default()
        };
        assert_eq!(find_pid(&t), None);
        let me = Proc::default().info(std::process::id() as i32).unwrap();
        assert!(!me.is_dead());
    }
}
