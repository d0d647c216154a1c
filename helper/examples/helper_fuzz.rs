//! A randomized test of banger-helper's protocol and of every op's arguments, against the real
//! helper binary with the Firecracker and jailer TEST STAND-INS (tests/standin, not Firecracker).
//!
//! It starts the helper on a temp socket with temp dirs, inside a network and mount namespace
//! of its own (`unshare -n -m`), and sends generated requests from several threads: as root,
//! as the owner and as a stranger (each thread takes its uid with a per-thread setresuid, so
//! SO_PEERCRED sees it): valid requests, nearly valid ones (one argument wrong, an extra field,
//! a wrong type, an edge value), unknown ops, garbage, oversize lines, truncated lines, lines
//! without a newline, slow writers and connections closed early. It checks that the helper
//! never dies, answers every request it should within a deadline with one JSON line, and has
//! the same number of descriptors and threads at the end as at the start. Prints the numbers.
//!
//! Needs root. Build everything first (`cargo build --workspace --all-targets`), then:
//!
//!     target/debug/examples/helper_fuzz --requests 100000
//!
//! (`--seed N` repeats a run; `--bin DIR` names where banger-helper and the stand-ins are.)

use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// splitmix64: small, fast, good enough to pick cases; a seed repeats a run's requests.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len() as u64) as usize]
    }
}

struct Args {
    requests: u64,
    seed: u64,
    workers: usize,
    bin: Option<PathBuf>,
}

fn parse_args() -> Result<Args, lexopt::Error> {
    use lexopt::prelude::*;
    let mut a = Args {
        requests: 100_000,
        seed: 0,
        workers: 6,
        bin: None,
    };
    let mut seeded = false;
    let mut p = lexopt::Parser::from_env();
    while let Some(arg) = p.next()? {
        match arg {
            Long("requests") => a.requests = p.value()?.parse()?,
            Long("seed") => {
                a.seed = p.value()?.parse()?;
                seeded = true;
            }
            Long("workers") => a.workers = p.value()?.parse()?,
            Long("bin") => a.bin = Some(p.value()?.into()),
            Short('h') | Long("help") => {
                println!("usage: helper_fuzz [--requests N] [--seed N] [--workers N] [--bin DIR]\n(needs root; see the source's header)");
                std::process::exit(0);
            }
            _ => return Err(arg.unexpected()),
        }
    }
    if !seeded {
        a.seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
    }
    a.workers = a.workers.clamp(2, 64);
    Ok(a)
}

/// Who sends a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    Root,
    Owner,
    Stranger,
}

/// The uids of the run: the owner is `nobody` (a passwd entry on every host), the stranger a
/// uid nobody has.
const OWNER_UID: u32 = 65534;
const STRANGER_UID: u32 = 65531;

/// The names requests use: a few real VMs (so valid requests do real work) and bad ones.
struct World {
    dir: PathBuf,
    socket: PathBuf,
    vms: Vec<String>,
    kernel: String,
}

impl World {
    fn disk_of(&self, vm: &str) -> String {
        format!("{}/state/vms/{vm}/disk.ext4", self.dir.display())
    }
}

fn bad_names() -> Vec<String> {
    vec![
        "".into(),
        "A".into(),
        "1a".into(),
        "../x".into(),
        "a/b".into(),
        "a b".into(),
        "a\u{0}b".into(),
        "x".repeat(33),
        "ünï".into(),
        "-a".into(),
        "a".repeat(4096),
    ]
}

/// A name: one of the world's VMs, now and then a valid unknown one.
fn name(r: &mut Rng, w: &World) -> Value {
    if r.chance(90) {
        Value::String(r.pick(&w.vms).clone())
    } else {
        Value::String(format!("fz{}", r.below(1000)))
    }
}

/// A value of a random JSON type.
fn odd_value(r: &mut Rng) -> Value {
    match r.below(8) {
        0 => Value::Null,
        1 => json!(true),
        2 => json!(-1),
        3 => json!(u64::MAX),
        4 => json!(1.5e300),
        5 => json!([1, "a", null]),
        6 => json!({"nested": {"deep": [1, 2, 3]}}),
        _ => json!("x".repeat(r.below(300) as usize)),
    }
}

/// A wrong value for the argument `key`: one of its kind's usual mistakes, or any JSON.
fn bad_for(r: &mut Rng, w: &World, key: &str) -> Value {
    if r.chance(20) {
        return odd_value(r);
    }
    let d = w.dir.display().to_string();
    match key {
        "vm" | "name" | "image" | "hostname" => json!(r.pick(&bad_names())),
        "kernel" | "initrd" | "rootfs" => {
            let bad = [
                "/etc/shadow".to_string(),
                format!("{d}/state/images/../../root/ledger.json"),
                format!("{d}/state/images/tiny/missing"),
                format!("{d}/state/vms"),
                format!("{d}/state/images"),
                "relative/path".into(),
                format!("{}/", w.kernel),
                "/dev/sda".into(),
                "/dev/mapper/../sda".into(),
                format!("{d}/state/vms/{}/disk.ext4", r.pick(&w.vms)),
                format!("/{}", "p".repeat(5000)),
            ];
            json!(r.pick(&bad))
        }
        "ip" | "gateway" => json!(*r.pick(&[
            "10.200.0.1",
            "10.200.0.0",
            "10.200.0.255",
            "192.168.1.5",
            "10.200.0.300",
            "::1",
            "",
            "10.200.0.7/24"
        ])),
        "mac" => json!(*r.pick(&["zz:00:0a:c8:00:07", "06:00", "", "06:00:0a:c8:00:07:00"])),
        "dns" => json!(vec!["10.200.0.1"; 20]),
        "proto" => json!(*r.pick(&["sctp", "TCP", "", "tcp "])),
        "method" => json!(*r.pick(&["zfs", "", "DM"])),
        "launcher" => json!(*r.pick(&["chroot", "", "Jailer"])),
        "ssh_pubkey" => json!(*r.pick(&["ssh-ed25519 AAAA\nssh-rsa BBBB", "not a key", ""])),
        "net" => json!({"ip": "10.200.0.9", "prefix": 33}),
        _ => json!(*r.pick(&[0u64, u64::MAX, 1 << 53, 65_536, 70_000, 262_145, 33])),
    }
}

fn ipv4(r: &mut Rng) -> Value {
    json!(format!("10.200.0.{}", 2 + r.below(250)))
}

fn net_section(r: &mut Rng) -> Value {
    let mut m = Map::new();
    m.insert("ip".into(), ipv4(r));
    m.insert("prefix".into(), json!(24));
    if r.chance(60) {
        m.insert("gateway".into(), json!("10.200.0.1"));
    }
    if r.chance(50) {
        m.insert("dns".into(), json!(["10.200.0.1"]));
    }
    if r.chance(50) {
        m.insert("mac".into(), json!("06:00:0a:c8:00:07"));
    }
    Value::Object(m)
}

/// Valid arguments for `op`; half the time then nearly valid: one argument wrong (a usual
/// mistake for its kind or any JSON), one unknown argument, or one missing.
fn args_for(r: &mut Rng, w: &World, op: &str) -> Value {
    let mut m = Map::new();
    let vm = name(r, w);
    match op {
        "ping" => {}
        "net.list" | "snap.list" | "jail.list" | "ledger.list" if r.chance(50) => {
            m.insert("vm".into(), vm);
        }
        "net.up" => {
            m.insert("vm".into(), vm);
            if r.chance(30) {
                m.insert("ip".into(), ipv4(r));
            }
        }
        "net.down" => {
            m.insert("vm".into(), vm);
            if r.chance(50) {
                m.insert("keep_bridge".into(), json!(r.chance(50)));
            }
        }
        "net.forward" => {
            m.insert("vm".into(), vm);
            let spare = 10_000 + r.below(50);
            m.insert(
                "host_port".into(),
                json!(*r.pick(&[8080u64, 2222, 22, 443, 65535, 1024, spare])),
            );
            if r.chance(70) {
                m.insert("guest_port".into(), json!(*r.pick(&[80u64, 22, 8080])));
            }
            if r.chance(40) {
                m.insert("proto".into(), json!(*r.pick(&["tcp", "udp"])));
            }
            if r.chance(40) {
                m.insert("remove".into(), json!(r.chance(50)));
            }
        }
        "snap.create" | "snap.customize" => {
            m.insert("vm".into(), vm);
            if op == "snap.create" {
                m.insert("image".into(), json!("tiny"));
                m.insert("method".into(), json!(*r.pick(&["copy", "reflink"])));
                if r.chance(20) {
                    m.insert("disk_size".into(), json!(*r.pick(&[16u64 << 20, 8 << 20])));
                }
            }
            if r.chance(50) {
                m.insert("hostname".into(), name(r, w));
            }
            if r.chance(30) {
                m.insert(
                    "ssh_pubkey".into(),
                    json!("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFuzz fuzz@host"),
                );
            }
            if r.chance(10) {
                m.insert("host_keys".into(), json!(true));
            }
            if op == "snap.customize" && m.len() == 1 || r.chance(40) {
                m.insert("net".into(), net_section(r));
            }
        }
        "snap.remove" => {
            m.insert("vm".into(), vm);
        }
        "jail.teardown" => {
            m.insert("name".into(), vm);
            if r.chance(30) {
                m.insert("grace_ms".into(), json!(*r.pick(&[0u64, 100, 500])));
            }
        }
        "jail.launch" => {
            let vm_name = vm.as_str().map(str::to_string).unwrap_or_default();
            m.insert("name".into(), vm);
            m.insert("kernel".into(), json!(w.kernel));
            m.insert("rootfs".into(), json!(w.disk_of(&vm_name)));
            m.insert("vcpus".into(), json!(*r.pick(&[1u64, 2])));
            m.insert("mem_mib".into(), json!(*r.pick(&[128u64, 256])));
            m.insert("launcher".into(), json!(*r.pick(&["direct", "jailer"])));
            if r.chance(30) {
                m.insert("timeout_ms".into(), json!(*r.pick(&[500u64, 2000, 5000])));
            }
        }
        _ => {}
    }
    if r.chance(50) {
        match r.below(10) {
            0..=5 if !m.is_empty() => {
                let k = m
                    .keys()
                    .nth(r.below(m.len() as u64) as usize)
                    .cloned()
                    .unwrap_or_default();
                let v = bad_for(r, w, &k);
                m.insert(k, v);
            }
            6 | 7 => {
                let extras = ["cmd", "path", "exec_file", "uid", "by", "__proto__"];
                m.insert((*r.pick(&extras)).into(), odd_value(r));
            }
            8 if !m.is_empty() => {
                let k = m.keys().nth(r.below(m.len() as u64) as usize).cloned();
                if let Some(k) = k {
                    m.remove(&k);
                }
            }
            _ => return odd_value(r),
        }
    }
    Value::Object(m)
}

const OPS: &[&str] = &[
    "ping",
    "ledger.list",
    "net.up",
    "net.down",
    "net.forward",
    "net.list",
    "snap.create",
    "snap.customize",
    "snap.remove",
    "snap.list",
    "jail.launch",
    "jail.teardown",
    "jail.list",
];

/// Ops that do real work (processes, files, interfaces): sent less often.
const HEAVY: &[&str] = &["net.up", "snap.create", "snap.customize", "jail.launch"];

/// What to send on one connection.
enum Case {
    /// A line; an answer is expected.
    Line(Vec<u8>),
    /// Bytes then the write side shut (EOF): an answer is expected unless nothing was sent.
    ThenEof(Vec<u8>),
    /// Bytes then the connection dropped at once: no answer expected.
    Drop(Vec<u8>),
}

fn request_line(r: &mut Rng, w: &World) -> Vec<u8> {
    let mut op = *r.pick(OPS);
    while HEAVY.contains(&op) && !r.chance(15) {
        op = *r.pick(OPS);
    }
    let mut req = Map::new();
    let op_v = if r.chance(4) {
        let unknown = [
            "rm",
            "exec",
            "net.up2",
            "NET.UP",
            "",
            "snap.create ",
            "ping\n",
        ];
        json!(*r.pick(&unknown))
    } else if r.chance(1) {
        odd_value(r)
    } else {
        json!(op)
    };
    req.insert("op".into(), op_v);
    if !r.chance(3) {
        req.insert("args".into(), args_for(r, w, op));
    }
    if r.chance(2) {
        req.insert("extra".into(), json!(1));
    }
    serde_json::to_vec(&Value::Object(req)).unwrap_or_default()
}

fn garbage(r: &mut Rng) -> Vec<u8> {
    match r.below(7) {
        0 => (0..r.below(200)).map(|_| r.next() as u8).collect(),
        1 => b"[1,2,3]".to_vec(),
        2 => b"\"just a string\"".to_vec(),
        3 => {
            let depth = 200 + r.below(5000) as usize;
            let mut v = "[".repeat(depth).into_bytes();
            v.extend("]".repeat(depth).bytes());
            v
        }
        4 => vec![0xff, 0xfe, b'{', 0xc3, 0x28, b'}'],
        5 => b"{\"op\":\"ping\"}{\"op\":\"ping\"}".to_vec(),
        _ => b"{\"op\": \"ping\", \"args\": {}".to_vec(),
    }
}

fn make_case(r: &mut Rng, w: &World) -> Case {
    let mut line = match r.below(100) {
        0..=79 => request_line(r, w),
        80..=89 => garbage(r),
        90..=91 => {
            // Over the 64 KiB limit, with or without a newline far away.
            let mut v = b"{\"op\":\"ping\",\"args\":{\"pad\":\"".to_vec();
            v.extend(vec![b'a'; 66_000 + r.below(10_000) as usize]);
            v.extend(b"\"}}");
            v
        }
        _ => request_line(r, w),
    };
    match r.below(100) {
        0..=84 => {
            line.push(b'\n');
            if r.chance(3) {
                // A second line on the same connection: only the first counts.
                line.extend(b"{\"op\":\"ping\"}\n");
            }
            Case::Line(line)
        }
        85..=91 => {
            let cut = r.below(line.len() as u64 + 1) as usize;
            line.truncate(cut);
            Case::ThenEof(line)
        }
        _ => {
            let cut = r.below(line.len() as u64 + 1) as usize;
            line.truncate(cut);
            Case::Drop(line)
        }
    }
}

/// The longest a request may take: a base plus whatever waits its arguments ask for.
fn deadline_for(bytes: &[u8]) -> Duration {
    let v: Value = serde_json::from_slice(bytes.split(|b| *b == b'\n').next().unwrap_or(&[]))
        .unwrap_or(Value::Null);
    let asked = |k: &str| v["args"][k].as_u64().unwrap_or(0).min(120_000);
    Duration::from_secs(30) + Duration::from_millis(asked("timeout_ms") + asked("grace_ms"))
}

#[derive(Default)]
struct Tally {
    sent: u64,
    by_code: BTreeMap<String, u64>,
    no_answer_expected: u64,
    failures: Vec<String>,
    latencies_us: Vec<u64>,
    /// Per op named in a request: (answered, ok).
    by_op: BTreeMap<String, (u64, u64)>,
}

impl Tally {
    fn fail(&mut self, what: String) {
        if self.failures.len() < 50 {
            self.failures.push(what);
        }
    }
}

/// Reads one answer line until `deadline`; None on timeout.
fn read_answer(s: &mut UnixStream, deadline: Instant) -> Result<Option<Vec<u8>>, String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(None);
        }
        let _ = s.set_read_timeout(Some(left));
        match s.read(&mut chunk) {
            Ok(0) => return Ok(Some(buf)),
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                if buf.len() > 4 << 20 {
                    return Err("answer over 4 MiB".into());
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(None)
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Ok(Some(buf)),
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// Sends one case and checks its answer.
fn run_case(w: &World, who: Who, case: Case, t: &mut Tally) {
    let mut s = match UnixStream::connect(&w.socket) {
        Ok(s) => s,
        Err(e) => {
            t.fail(format!("connect failed: {e}"));
            return;
        }
    };
    let _ = s.set_write_timeout(Some(Duration::from_secs(10)));
    t.sent += 1;
    let start = Instant::now();
    let (bytes, expect) = match case {
        Case::Line(b) => (b, true),
        Case::ThenEof(b) => (b, true),
        Case::Drop(b) => (b, false),
    };
    // The helper may answer (busy, too_large) and close before reading it all.
    let _ = s.write_all(&bytes);
    if !expect {
        t.no_answer_expected += 1;
        return;
    }
    let _ = s.shutdown(std::net::Shutdown::Write);
    let deadline = start + deadline_for(&bytes);
    match read_answer(&mut s, deadline) {
        Err(e) => t.fail(format!("reading the answer: {e}")),
        Ok(None) => t.fail(format!(
            "no answer within {:?} to {:?}",
            deadline - start,
            String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
        )),
        Ok(Some(a)) => {
            t.latencies_us.push(start.elapsed().as_micros() as u64);
            let text = String::from_utf8_lossy(&a);
            let lines: Vec<&str> = text.lines().collect();
            let v: Value = match (lines.len(), lines.first()) {
                (1, Some(l)) if text.ends_with('\n') => {
                    serde_json::from_str(l).unwrap_or(Value::Null)
                }
                _ => Value::Null,
            };
            let code = match v.get("ok") {
                Some(Value::Bool(true)) => "ok".to_string(),
                Some(Value::Bool(false)) => match v["error"]["code"].as_str() {
                    Some(c) => c.to_string(),
                    None => {
                        t.fail(format!("an error without a code: {text}"));
                        return;
                    }
                },
                _ => {
                    t.fail(format!(
                        "not one JSON answer line: {:?} (request {:?})",
                        &text[..text.len().min(300)],
                        String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
                    ));
                    return;
                }
            };
            if who == Who::Stranger && code != "permission_denied" {
                t.fail(format!("the stranger got {code}: {text}"));
            }
            let req: Value =
                serde_json::from_slice(bytes.split(|b| *b == b'\n').next().unwrap_or(&[]))
                    .unwrap_or(Value::Null);
            if let Some(op) = req["op"].as_str().filter(|o| OPS.contains(o)) {
                let e = t.by_op.entry(op.to_string()).or_default();
                e.0 += 1;
                e.1 += u64::from(code == "ok");
            }
            *t.by_code.entry(code).or_default() += 1;
        }
    }
}

/// A slow writer: the request a byte at a time, slower than the helper's read deadline.
fn slow_case(w: &World, t: &mut Tally) {
    let Ok(mut s) = UnixStream::connect(&w.socket) else {
        t.fail("connect failed (slow writer)".into());
        return;
    };
    t.sent += 1;
    let start = Instant::now();
    for b in b"{\"op\":\"ping\"}\n" {
        if s.write_all(&[*b]).is_err() {
            break;
        }
        std::thread::sleep(Duration::from_millis(150));
    }
    match read_answer(&mut s, start + Duration::from_secs(30)) {
        Ok(Some(a)) if !a.is_empty() => {
            let v: Value = serde_json::from_slice(&a).unwrap_or(Value::Null);
            let code = if v["ok"] == json!(true) {
                "ok".to_string()
            } else {
                v["error"]["code"]
                    .as_str()
                    .unwrap_or("unparsable")
                    .to_string()
            };
            *t.by_code.entry(code).or_default() += 1;
        }
        Ok(_) => t.fail("slow writer: no answer".into()),
        Err(e) => t.fail(format!("slow writer: {e}")),
    }
}

/// This thread's credentials become `uid` (and gid, no groups): SO_PEERCRED sees them.
fn become_uid(uid: u32) -> std::io::Result<()> {
    use rustix::process::{Gid, Uid};
    rustix::thread::set_thread_groups(&[])?;
    let g = Gid::from_raw(uid);
    rustix::thread::set_thread_res_gid(g, g, g)?;
    let u = Uid::from_raw(uid);
    rustix::thread::set_thread_res_uid(u, u, u)?;
    Ok(())
}

fn count(dir: &str, pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/{dir}")).map_or(0, |d| d.count())
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, r)| r.trim_start().chars().next())
        })
        .is_some_and(|st| st != Some('Z') && st != Some('X'))
}

fn ping_ok(sock: &Path) -> bool {
    let Ok(mut s) = UnixStream::connect(sock) else {
        return false;
    };
    let _ = s.write_all(b"{\"op\":\"ping\"}\n");
    let mut out = String::new();
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = s.read_to_string(&mut out);
    out.contains("\"ok\":true")
}

fn sh(cmd: &mut Command) -> Result<(), String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The temp world: state (the owner's), an image, VM dirs with disks, the stand-ins.
fn make_world(bin: &Path) -> Result<World, String> {
    let dir = PathBuf::from(format!("/tmp/banger-fuzz.{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mk = |p: &Path| std::fs::create_dir_all(p).map_err(|e| format!("{}: {e}", p.display()));
    for d in [
        "state/images/tiny",
        "state/vms",
        "run",
        "etc",
        "tmp",
        "standin",
    ] {
        mk(&dir.join(d))?;
    }
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path, m: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m))
            .map_err(|e| format!("{}: {e}", p.display()))
    };
    mode(&dir, 0o755)?;
    mode(&dir.join("tmp"), 0o1777)?;
    let kernel = dir.join("state/images/tiny/vmlinux");
    std::fs::write(&kernel, b"not really a kernel\n").map_err(|e| e.to_string())?;
    let rootfs = dir.join("state/images/tiny/rootfs.ext4");
    sh(Command::new("mkfs.ext4")
        .args(["-q", "-F"])
        .arg(&rootfs)
        .arg("8M"))?;
    let vms: Vec<String> = (0..4)
        .map(|i| format!("fz{}-{i}", std::process::id() % 10_000))
        .collect();
    // Half the VMs have a disk to launch from at once; the others get one from snap.create.
    for (i, v) in vms.iter().enumerate() {
        let d = dir.join("state/vms").join(v);
        mk(&d)?;
        if i % 2 == 0 {
            std::fs::copy(&rootfs, d.join("disk.ext4")).map_err(|e| e.to_string())?;
        }
    }
    sh(Command::new("chown")
        .arg("-R")
        .arg(format!("{OWNER_UID}:{OWNER_UID}"))
        .arg(dir.join("state"))
        .arg(dir.join("run")))?;
    sh(Command::new("chmod")
        .arg("-R")
        .arg("a+rX")
        .arg(dir.join("state")))?;
    for (src, dst) in [
        ("firecracker-standin", "firecracker"),
        ("jailer-standin", "jailer"),
    ] {
        let from = bin.join(src);
        let to = dir.join("standin").join(dst);
        if std::fs::hard_link(&from, &to).is_err() {
            std::fs::copy(&from, &to).map_err(|e| format!("{}: {e}", from.display()))?;
        }
    }
    Ok(World {
        socket: dir.join("helper.sock"),
        kernel: kernel.display().to_string(),
        vms,
        dir,
    })
}

fn start_helper(bin: &Path, w: &World) -> Result<Child, String> {
    let d = &w.dir;
    let log = std::fs::File::create(d.join("helper.log")).map_err(|e| e.to_string())?;
    let child = Command::new("unshare")
        .args(["-n", "-m", "--propagation", "private", "--"])
        .arg(bin.join("banger-helper"))
        .arg("--socket")
        .arg(&w.socket)
        .args(["--owner", &OWNER_UID.to_string(), "--read-timeout", "1"])
        .env("BANGER_STATE_DIR", d.join("state"))
        .env("BANGER_RUN_DIR", d.join("run"))
        .env("BANGER_ROOT_DIR", d.join("root"))
        .env("BANGER_JAIL_DIR", d.join("jail"))
        .env("BANGER_CONFIG_DIR", d.join("etc"))
        .env("BANGER_FIRECRACKER", d.join("standin/firecracker"))
        .env("BANGER_JAILER", d.join("standin/jailer"))
        .env("TMPDIR", d.join("tmp"))
        .env_remove("BANGER_OWNER_UID")
        .env_remove("BANGER_OWNER_GID")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|e| format!("unshare: {e}"))?;
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(10) {
        if ping_ok(&w.socket) {
            return Ok(child);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(format!(
        "the helper did not answer; its log: {}",
        std::fs::read_to_string(d.join("helper.log")).unwrap_or_default()
    ))
}

/// Whatever the run left: each VM torn down, its network and disk removed, as root.
fn tear_down(w: &World) -> Vec<String> {
    let mut problems = Vec::new();
    for v in &w.vms {
        for (op, args) in [
            ("jail.teardown", json!({"name": v, "grace_ms": 0})),
            ("net.down", json!({"vm": v})),
            ("snap.remove", json!({"vm": v})),
        ] {
            let line = format!("{}\n", json!({"op": op, "args": args}));
            let mut t = Tally::default();
            run_case(w, Who::Root, Case::Line(line.into_bytes()), &mut t);
            problems.extend(t.failures);
        }
    }
    problems
}

/// Stand-in processes (and keepers) of this run still alive: ended by pid, after checking
/// their command line names this run's temp dir.
fn kill_leftovers(w: &World) {
    let mark = w.dir.display().to_string();
    for _ in 0..2 {
        let Ok(rd) = std::fs::read_dir("/proc") else {
            return;
        };
        for e in rd.filter_map(Result::ok) {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmd).contains(&mark) {
                if let Some(p) = rustix::process::Pid::from_raw(pid) {
                    let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
                }
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    for v in &w.vms {
        let _ = std::fs::remove_dir(format!("/sys/fs/cgroup/banger/{v}"));
    }
}

fn main() -> ExitCode {
    let a = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("helper_fuzz: error: {e}");
            return ExitCode::from(2);
        }
    };
    if !rustix::process::geteuid().is_root() {
        eprintln!("helper_fuzz: error: needs root (it starts the helper in namespaces and calls it as several uids)");
        return ExitCode::from(2);
    }
    let bin = a.bin.clone().unwrap_or_else(|| {
        std::env::current_exe()
            .ok()
            .and_then(|p| Some(p.parent()?.parent()?.to_path_buf()))
            .unwrap_or_else(|| PathBuf::from("target/debug"))
    });
    for b in [
        "banger-helper",
        "firecracker-standin",
        "jailer-standin",
        "banger-console-keeper",
    ] {
        if !bin.join(b).exists() {
            eprintln!(
                "helper_fuzz: error: no {b} in {} (cargo build --workspace --all-targets, or --bin DIR)",
                bin.display()
            );
            return ExitCode::from(2);
        }
    }
    let w = match make_world(&bin) {
        Ok(w) => Arc::new(w),
        Err(e) => {
            eprintln!("helper_fuzz: error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut helper = match start_helper(&bin, &w) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("helper_fuzz: error: {e}");
            let _ = std::fs::remove_dir_all(&w.dir);
            return ExitCode::FAILURE;
        }
    };
    let pid = helper.id();
    // The start values once the first ping's connection thread is gone.
    std::thread::sleep(Duration::from_millis(300));
    let (fds0, threads0) = (count("fd", pid), count("task", pid));
    eprintln!(
        "helper_fuzz: seed {}, {} requests, {} workers, helper pid {pid} ({fds0} fds, {threads0} threads)",
        a.seed, a.requests, a.workers
    );
    let next = Arc::new(AtomicU64::new(0));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let t0 = Instant::now();
    let mut handles = Vec::new();
    for i in 0..a.workers {
        let who = match i {
            0 => Who::Stranger,
            i if i % 2 == 1 => Who::Owner,
            _ => Who::Root,
        };
        let (w, next, tally) = (w.clone(), next.clone(), tally.clone());
        let (n, seed) = (a.requests, a.seed.wrapping_add(i as u64 * 0x1000_0001));
        handles.push(std::thread::spawn(move || {
            let mut t = Tally::default();
            let uid = match who {
                Who::Root => None,
                Who::Owner => Some(OWNER_UID),
                Who::Stranger => Some(STRANGER_UID),
            };
            if let Some(u) = uid {
                if let Err(e) = become_uid(u) {
                    t.fail(format!("cannot become uid {u}: {e}"));
                    tally
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .failures
                        .extend(t.failures);
                    return;
                }
            }
            let mut r = Rng(seed);
            while next.fetch_add(1, Ordering::Relaxed) < n {
                let case = make_case(&mut r, &w);
                run_case(&w, who, case, &mut t);
                if who == Who::Stranger {
                    // A share is enough: every request of theirs is refused alike.
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
            let mut all = tally.lock().unwrap_or_else(|p| p.into_inner());
            all.sent += t.sent;
            all.no_answer_expected += t.no_answer_expected;
            for (k, v) in t.by_code {
                *all.by_code.entry(k).or_default() += v;
            }
            all.latencies_us.extend(t.latencies_us);
            for (k, (n, ok)) in t.by_op {
                let e = all.by_op.entry(k).or_default();
                e.0 += n;
                e.1 += ok;
            }
            for f in t.failures {
                all.fail(format!("{who:?}: {f}"));
            }
        }));
    }
    // Slow writers beside them, as the owner, until the others are done.
    {
        let (w, next, tally) = (w.clone(), next.clone(), tally.clone());
        let n = a.requests;
        handles.push(std::thread::spawn(move || {
            let mut t = Tally::default();
            if become_uid(OWNER_UID).is_ok() {
                while next.load(Ordering::Relaxed) < n {
                    slow_case(&w, &mut t);
                }
            }
            let mut all = tally.lock().unwrap_or_else(|p| p.into_inner());
            all.sent += t.sent;
            for (k, v) in t.by_code {
                *all.by_code.entry(format!("{k} (slow writer)")).or_default() += v;
            }
            for f in t.failures {
                all.fail(f);
            }
        }));
    }
    // Meanwhile: the helper lives.
    let mut died = false;
    while handles.iter().any(|h| !h.is_finished()) {
        if !alive(pid) {
            died = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    for h in handles {
        let _ = h.join();
    }
    let elapsed = t0.elapsed();
    let mut t = std::mem::take(&mut *tally.lock().unwrap_or_else(|p| p.into_inner()));
    if died || !alive(pid) {
        t.fail(format!(
            "the helper (pid {pid}) died: see {}/helper.log",
            w.dir.display()
        ));
    } else {
        t.failures.extend(tear_down(&w));
        // Connection threads finish on their own: give them a moment.
        let settle = Instant::now();
        while settle.elapsed() < Duration::from_secs(10)
            && (count("task", pid) != threads0 || count("fd", pid) != fds0)
        {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let (fds1, threads1) = (count("fd", pid), count("task", pid));
    if !died && fds1 != fds0 {
        t.fail(format!(
            "the helper's descriptors: {fds0} at the start, {fds1} at the end"
        ));
    }
    if !died && threads1 != threads0 {
        t.fail(format!(
            "the helper's threads: {threads0} at the start, {threads1} at the end"
        ));
    }
    if !died && !ping_ok(&w.socket) {
        t.fail("the helper does not answer root's ping at the end".into());
    }
    t.latencies_us.sort_unstable();
    let pct = |p: usize| {
        t.latencies_us
            .get(t.latencies_us.len() * p / 100)
            .copied()
            .unwrap_or(0)
    };
    let answered: u64 = t.by_code.values().sum();
    println!(
        "helper fuzz: seed {} ({} workers + 1 slow writer)",
        a.seed, a.workers
    );
    println!("  requests sent      {}", t.sent);
    println!("  answered           {answered}");
    println!(
        "  closed by us early {} (no answer expected)",
        t.no_answer_expected
    );
    println!(
        "  time               {:.1} s ({:.0} requests/s)",
        elapsed.as_secs_f64(),
        t.sent as f64 / elapsed.as_secs_f64().max(1e-9)
    );
    println!(
        "  latency            p50 {} us, p99 {} us, max {} us",
        pct(50),
        pct(99),
        t.latencies_us.last().copied().unwrap_or(0)
    );
    println!("  helper fds         {fds0} -> {fds1}");
    println!("  helper threads     {threads0} -> {threads1}");
    println!("  answers by code:");
    for (k, v) in &t.by_code {
        println!("    {k:<28} {v}");
    }
    println!("  answered / ok by op (valid JSON requests):");
    for (k, (n, ok)) in &t.by_op {
        println!("    {k:<28} {n} / {ok}");
    }
    let _ = helper.kill();
    let _ = helper.wait();
    kill_leftovers(&w);
    if t.failures.is_empty() {
        let _ = std::fs::remove_dir_all(&w.dir);
        println!("  result             ok: no crash, no hang, fds and threads back");
        ExitCode::SUCCESS
    } else {
        println!(
            "  result             FAILED ({} problems; the helper's log is kept in {}):",
            t.failures.len(),
            w.dir.display()
        );
        for f in &t.failures {
            println!("    {f}");
        }
        ExitCode::FAILURE
    }
}
