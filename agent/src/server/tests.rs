//! The stand-in guest: the agent's server on one end of a Unix socket pair, on the host, with
//! a recording [`System`] whose root is a temp dir; the host's client (or raw lines) on the
//! other end. Commands run on the host.

use super::*;
use crate::client::{Client, ClientError};
use crate::conn::Conn;
use crate::proto::{self, Exec, Frame, HostKey, Identity, Net, Put, Winsize, B64};
use std::io::{Read, Write};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Records what the agent would do to the guest.
struct Fake {
    root: PathBuf,
    calls: Mutex<Vec<String>>,
}

impl System for Fake {
    fn root(&self) -> &Path {
        &self.root
    }
    fn set_hostname(&self, name: &str) -> std::io::Result<()> {
        self.calls.lock().unwrap().push(format!("hostname {name}"));
        Ok(())
    }
    fn reseed(&self, seed: &[u8]) -> std::io::Result<()> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("reseed {}", seed.len()));
        Ok(())
    }
    fn ip(&self, args: &[String]) -> std::io::Result<()> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("ip {}", args.join(" ")));
        Ok(())
    }
    fn shutdown(&self, force: bool) -> std::io::Result<()> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("shutdown force={force}"));
        Ok(())
    }
}

struct Guest {
    sys: Arc<Fake>,
}

impl Guest {
    fn new(tag: &str) -> Guest {
        let root =
            std::env::temp_dir().join(format!("banger-agent-test-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("etc")).unwrap();
        Guest {
            sys: Arc::new(Fake {
                root,
                calls: Mutex::new(Vec::new()),
            }),
        }
    }

    /// A new connection to the agent, served on a thread.
    fn conn(&self) -> Conn {
        let (host, guest) = UnixStream::pair().unwrap();
        let sys = self.sys.clone();
        std::thread::spawn(move || serve(Conn::from(guest), &*sys));
        Conn::from(host)
    }

    fn client(&self) -> Client {
        Client::new(self.conn()).unwrap()
    }

    /// Sends raw bytes as the request; returns every line the agent answers.
    fn raw(&self, bytes: &[u8]) -> Vec<String> {
        let mut c = self.conn();
        c.write_all(bytes).unwrap();
        c.shutdown_write();
        let mut s = String::new();
        (&c).read_to_string(&mut s).unwrap();
        s.lines().map(String::from).collect()
    }

    fn path(&self, p: &str) -> PathBuf {
        self.sys.root.join(p.trim_start_matches('/'))
    }

    fn calls(&self) -> Vec<String> {
        self.sys.calls.lock().unwrap().clone()
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.sys.root);
    }
}

fn sh(script: &str) -> Exec {
    Exec {
        argv: vec!["sh".into(), "-c".into(), script.into()],
        ..Default::default()
    }
}

/// Runs `x` with `stdin`; returns (stdout, stderr, exit).
fn run(g: &Guest, x: Exec, stdin: Option<&[u8]>) -> (Vec<u8>, Vec<u8>, proto::ExitInfo) {
    let mut x = x;
    x.stdin = stdin.is_some();
    let s = g.client().exec(x).unwrap();
    let input: Option<Box<dyn Read + Send>> =
        stdin.map(|b| Box::new(std::io::Cursor::new(b.to_vec())) as Box<dyn Read + Send>);
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let e = s.run(input, &mut out, &mut err).unwrap();
    (out, err, e)
}

fn code_of(r: Result<impl std::fmt::Debug, ClientError>) -> String {
    match r {
        Err(ClientError::Agent(e)) => e.code,
        other => panic!("expected an agent error, got {other:?}"),
    }
}

#[test]
fn stand_in_guest_hello() {
    let g = Guest::new("hello");
    let h = g.client().hello().unwrap();
    assert_eq!(h.agent, "banger-agent");
    assert_eq!(h.protocol, proto::PROTOCOL);
    assert_eq!(h.version, VERSION);
    assert!(h.uptime_s > 0.0);
    assert!(!h.kernel.is_empty());
}

#[test]
fn stand_in_guest_exec_output_and_exit_codes() {
    let g = Guest::new("exec");
    let (out, err, e) = run(&g, sh("echo out; echo err >&2; exit 3"), None);
    assert_eq!(out, b"out\n");
    assert_eq!(err, b"err\n");
    assert_eq!((e.code, e.signal, e.status()), (Some(3), None, 3));
    let (_, _, e) = run(&g, sh("kill -9 $$"), None);
    assert_eq!((e.code, e.signal, e.status()), (None, Some(9), 137));
    // The argv goes as it is: no shell re-splits it.
    let x = Exec {
        argv: vec![
            "printf".into(),
            "%s|".into(),
            "a b".into(),
            "it's".into(),
            "".into(),
        ],
        ..Default::default()
    };
    assert_eq!(run(&g, x, None).0, b"a b|it's||");
    // A megabyte of output arrives whole.
    let (out, _, e) = run(&g, sh("head -c 1048576 /dev/zero"), None);
    assert_eq!((out.len(), e.code), (1 << 20, Some(0)));
}

#[test]
fn stand_in_guest_exec_stdin_env_and_cwd() {
    let g = Guest::new("stdin");
    let (out, _, e) = run(
        &g,
        Exec {
            argv: vec!["cat".into()],
            ..Default::default()
        },
        Some(b"hi\n"),
    );
    assert_eq!((out, e.code), (b"hi\n".to_vec(), Some(0)));
    // Without stdin, a reader sees EOF at once.
    let (out, _, _) = run(
        &g,
        Exec {
            argv: vec!["cat".into()],
            ..Default::default()
        },
        None,
    );
    assert!(out.is_empty());
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let (out, _, _) = run(
        &g,
        Exec {
            argv: vec!["cat".into()],
            ..Default::default()
        },
        Some(&big),
    );
    assert_eq!(out, big);
    let mut x = sh("echo \"$FOO $HOME\"; pwd");
    x.env.insert("FOO".into(), "bar".into());
    x.cwd = Some("/tmp".into());
    assert_eq!(run(&g, x, None).0, b"bar /root\n/tmp\n");
}

#[test]
fn stand_in_guest_exec_errors() {
    let g = Guest::new("execerr");
    let x = Exec {
        argv: vec!["/nonexistent/banger-cmd".into()],
        ..Default::default()
    };
    assert_eq!(
        code_of(g.client().exec(x).map(|_| ())),
        proto::code::NOT_FOUND
    );
    let mut x = sh("true");
    x.cwd = Some("/nonexistent-dir".into());
    assert_eq!(
        code_of(g.client().exec(x).map(|_| ())),
        proto::code::NOT_FOUND
    );
    assert_eq!(
        code_of(g.client().exec(Exec::default()).map(|_| ())),
        proto::code::INVALID_ARGS
    );
    // timeout_ms kills the command's group.
    let mut x = sh("sleep 30");
    x.timeout_ms = Some(200);
    let t = std::time::Instant::now();
    let (_, _, e) = run(&g, x, None);
    assert!(e.timed_out && e.signal == Some(9), "{e:?}");
    assert!(t.elapsed() < Duration::from_secs(10));
}

#[test]
fn stand_in_guest_exec_signals_and_a_vanished_host() {
    let g = Guest::new("signal");
    let s = g.client().exec(sh("sleep 30")).unwrap();
    s.sender().send(&Frame::Signal(15)).unwrap();
    let e = s.run(None, &mut Vec::new(), &mut Vec::new()).unwrap();
    assert_eq!(e.signal, Some(15));
    // The host goes away: the command is killed.
    let s = g.client().exec(sh("sleep 30")).unwrap();
    let pid = s.pid;
    drop(s);
    let gone = (0..200).any(|_| {
        std::thread::sleep(Duration::from_millis(25));
        !Path::new(&format!("/proc/{pid}")).exists()
    });
    assert!(gone, "pid {pid} outlived its connection");
    // A frame that has no place in an exec ends it, with the reason.
    let mut c = g.conn();
    c.write_all(&proto::line(&proto::Request::Exec(sh("sleep 30"))))
        .unwrap();
    c.write_all(b"{\"data\":\"AA==\"}\n").unwrap();
    let mut s = String::new();
    (&c).read_to_string(&mut s).unwrap();
    let last = s.lines().last().unwrap();
    assert!(
        last.contains("\"exit\"") && last.contains("bad_request"),
        "{s}"
    );
}

#[test]
fn stand_in_guest_exec_on_a_tty() {
    let g = Guest::new("tty");
    let mut x = sh("test -t 0 && test -t 1 && stty size && echo \"$TERM\"");
    x.tty = Some(Winsize {
        rows: 33,
        cols: 101,
    });
    let (out, err, e) = run(&g, x, None);
    assert_eq!(e.code, Some(0), "{}", String::from_utf8_lossy(&err));
    let text = String::from_utf8_lossy(&out).replace('\r', "");
    assert_eq!(text, "33 101\nxterm-256color\n");
}

#[test]
fn stand_in_guest_put_and_get() {
    let g = Guest::new("files");
    let data: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let put = |p: Put, d: &[u8]| g.client().put(p, &mut std::io::Cursor::new(d.to_vec()));
    let info = put(
        Put {
            path: "/etc/blob".into(),
            size: Some(data.len() as u64),
            mode: Some(0o640),
            ..Default::default()
        },
        &data,
    )
    .unwrap();
    assert_eq!(
        (info.path.as_str(), info.size),
        ("/etc/blob", data.len() as u64)
    );
    assert_eq!(std::fs::read(g.path("/etc/blob")).unwrap(), data);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(g.path("/etc/blob"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o7777, 0o640);
    let (fi, mut rd) = g.client().get("/etc/blob").unwrap();
    assert_eq!((fi.size, fi.mode), (data.len() as u64, 0o640));
    let mut back = Vec::new();
    rd.read_to_end(&mut back).unwrap();
    assert_eq!(back, data);
    // Into a directory, by name; an unknown size is fine.
    let info = put(
        Put {
            path: "/etc/".into(),
            name: Some("n".into()),
            ..Default::default()
        },
        b"x",
    )
    .unwrap();
    assert_eq!(info.path, "/etc/n");
    // No temporary file is left anywhere.
    let left: Vec<_> = std::fs::read_dir(g.path("/etc"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("banger-put"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn stand_in_guest_file_errors() {
    let g = Guest::new("fileerr");
    let put = |p: Put, d: &[u8]| g.client().put(p, &mut std::io::Cursor::new(d.to_vec()));
    let p = |path: &str| Put {
        path: path.into(),
        ..Default::default()
    };
    assert_eq!(code_of(put(p("etc/x"), b"")), proto::code::INVALID_ARGS);
    assert_eq!(code_of(put(p("/nodir/x"), b"")), proto::code::NOT_FOUND);
    assert_eq!(code_of(put(p("/etc"), b"")), proto::code::INVALID_ARGS);
    assert_eq!(
        code_of(put(
            Put {
                mode: Some(0o17777),
                ..p("/etc/x")
            },
            b""
        )),
        proto::code::INVALID_ARGS
    );
    assert_eq!(
        code_of(put(
            Put {
                size: Some(proto::MAX_FILE + 1),
                ..p("/etc/x")
            },
            b""
        )),
        proto::code::TOO_LARGE
    );
    // More than announced, or less: refused, and nothing is left behind.
    assert_eq!(
        code_of(put(
            Put {
                size: Some(2),
                ..p("/etc/x")
            },
            b"abc"
        )),
        proto::code::TOO_LARGE
    );
    assert_eq!(
        code_of(put(
            Put {
                size: Some(5),
                ..p("/etc/x")
            },
            b"abc"
        )),
        proto::code::INVALID_ARGS
    );
    assert!(!g.path("/etc/x").exists());
    assert_eq!(std::fs::read_dir(g.path("/etc")).unwrap().count(), 0);
    // A lying byte count and a wrong frame.
    let mut c = g.conn();
    c.write_all(&proto::line(&proto::Request::Put(p("/etc/y"))))
        .unwrap();
    c.write_all(&proto::line(&Frame::Data(B64(b"ab".to_vec()))))
        .unwrap();
    c.write_all(&proto::line(&Frame::Eof(3))).unwrap();
    let mut s = String::new();
    (&c).read_to_string(&mut s).unwrap();
    assert!(s.lines().last().unwrap().contains("bad_request"), "{s}");
    assert!(!g.path("/etc/y").exists());
    let lines = g.raw(
        &[
            proto::line(&proto::Request::Put(p("/etc/y"))),
            b"{\"signal\":9}\n".to_vec(),
        ]
        .concat(),
    );
    assert!(lines.last().unwrap().contains("bad_request"), "{lines:?}");
    // An existing target that is not a regular file is never replaced; a symlink is followed.
    let fifo = g.path("/etc/fifo");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &fifo,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
    assert_eq!(
        code_of(put(p("/etc/fifo"), b"x")),
        proto::code::INVALID_ARGS
    );
    assert!(std::fs::symlink_metadata(&fifo)
        .unwrap()
        .file_type()
        .is_fifo());
    std::fs::write(g.path("/etc/real"), b"old").unwrap();
    std::os::unix::fs::symlink("real", g.path("/etc/link")).unwrap();
    put(p("/etc/link"), b"new").unwrap();
    assert!(std::fs::symlink_metadata(g.path("/etc/link"))
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(std::fs::read(g.path("/etc/real")).unwrap(), b"new");
    // get: only regular files; a FIFO does not block.
    let get = |path: &str| g.client().get(path).map(|_| ());
    assert_eq!(code_of(get("/nonexistent")), proto::code::NOT_FOUND);
    assert_eq!(code_of(get("/etc")), proto::code::INVALID_ARGS);
    assert_eq!(code_of(get("relative")), proto::code::INVALID_ARGS);
    assert_eq!(code_of(get("/etc/fifo")), proto::code::INVALID_ARGS);
}

#[test]
fn stand_in_guest_request_errors() {
    let g = Guest::new("reqerr");
    let err = |lines: Vec<String>| -> String {
        assert_eq!(lines.len(), 1, "{lines:?}");
        let r: proto::Reply = serde_json::from_str(&lines[0]).unwrap();
        assert!(!r.ok);
        r.error.unwrap().code
    };
    assert_eq!(err(g.raw(b"hello\n")), proto::code::BAD_REQUEST);
    assert_eq!(
        err(g.raw(b"{\"op\":\"reboot-host\"}\n")),
        proto::code::UNKNOWN_OP
    );
    assert_eq!(
        err(g.raw(b"{\"op\":\"exec\",\"argv\":\"ls\"}\n")),
        proto::code::INVALID_ARGS
    );
    assert_eq!(err(g.raw(b"{\"op\":\"hel")), proto::code::BAD_REQUEST);
    let mut big = vec![b' '; proto::MAX_REQUEST + 10];
    big.push(b'\n');
    assert_eq!(err(g.raw(&big)), proto::code::TOO_LARGE);
    // A closed connection without a request is no error.
    assert!(g.raw(b"").is_empty());
}

fn key(kind: &str) -> HostKey {
    HostKey {
        kind: kind.into(),
        private: "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n"
            .into(),
        public: format!("ssh-{kind} AAAA root@t2"),
    }
}

#[test]
fn stand_in_guest_identity() {
    let g = Guest::new("identity");
    std::fs::create_dir_all(g.path("/etc/ssh")).unwrap();
    std::fs::write(g.path("/etc/ssh/ssh_host_rsa_key"), "old").unwrap();
    let id = Identity {
        entropy: Some(B64(vec![7; 64])),
        hostname: Some("t2".into()),
        authorized_keys: Some("ssh-ed25519 AAAA me@host".into()),
        host_keys: Some(vec![key("ed25519")]),
        net: Some(Net {
            ip: "10.200.0.6".parse().unwrap(),
            prefix: 24,
            gateway: Some("10.200.0.1".parse().unwrap()),
            dns: vec!["10.200.0.1".parse().unwrap()],
            mac: Some("06:00:0a:c8:00:06".into()),
            dev: None,
        }),
    };
    let done = g.client().identity(id).unwrap();
    assert_eq!(
        done.done,
        ["entropy", "hostname", "authorized_keys", "host_keys", "net"]
    );
    let calls = g.calls();
    assert_eq!(calls[0], "reseed 64", "the RNG first: {calls:?}");
    assert_eq!(calls[1], "hostname t2");
    assert!(calls.contains(&"ip link set dev eth0 address 06:00:0a:c8:00:06".to_string()));
    assert!(calls.contains(&"ip addr add 10.200.0.6/24 dev eth0".to_string()));
    assert!(calls.contains(&"ip route replace default via 10.200.0.1 dev eth0".to_string()));
    let read = |p: &str| std::fs::read_to_string(g.path(p)).unwrap();
    assert_eq!(read("/etc/hostname"), "t2\n");
    assert!(read("/etc/hosts").contains("127.0.1.1\tt2\n"));
    assert_eq!(
        read("/root/.ssh/authorized_keys"),
        "ssh-ed25519 AAAA me@host\n"
    );
    assert_eq!(
        read("/etc/ssh/ssh_host_ed25519_key.pub"),
        "ssh-ed25519 AAAA root@t2\n"
    );
    assert!(
        !g.path("/etc/ssh/ssh_host_rsa_key").exists(),
        "old host keys go"
    );
    assert!(read("/etc/banger/net.env").contains("BANGER_IP=10.200.0.6\n"));
    use std::os::unix::fs::PermissionsExt;
    let m = |p: &str| std::fs::metadata(g.path(p)).unwrap().permissions().mode() & 0o7777;
    assert_eq!(
        (
            m("/etc/ssh/ssh_host_ed25519_key"),
            m("/root/.ssh/authorized_keys")
        ),
        (0o600, 0o600)
    );
}

#[test]
fn stand_in_guest_identity_is_all_or_nothing_on_bad_input() {
    let g = Guest::new("idbad");
    let bad = |id: Identity| code_of(g.client().identity(id));
    let base = Identity {
        hostname: Some("ok".into()),
        ..Default::default()
    };
    assert_eq!(bad(Identity::default()), proto::code::INVALID_ARGS);
    assert_eq!(
        bad(Identity {
            hostname: Some("../x".into()),
            ..Default::default()
        }),
        proto::code::INVALID_ARGS
    );
    assert_eq!(
        bad(Identity {
            entropy: Some(B64(vec![0; proto::MAX_ENTROPY + 1])),
            ..base.clone()
        }),
        proto::code::INVALID_ARGS
    );
    assert_eq!(
        bad(Identity {
            host_keys: Some(vec![key("dsa")]),
            ..base.clone()
        }),
        proto::code::INVALID_ARGS
    );
    assert_eq!(
        bad(Identity {
            host_keys: Some(vec![key("rsa"), key("rsa")]),
            ..base.clone()
        }),
        proto::code::INVALID_ARGS
    );
    assert_eq!(
        bad(Identity {
            authorized_keys: Some("a\u{7}b".into()),
            ..base.clone()
        }),
        proto::code::INVALID_ARGS
    );
    let net = Net {
        ip: "10.0.0.2".parse().unwrap(),
        prefix: 33,
        gateway: None,
        dns: vec![],
        mac: None,
        dev: None,
    };
    assert_eq!(
        bad(Identity {
            net: Some(net.clone()),
            ..base.clone()
        }),
        proto::code::INVALID_ARGS
    );
    assert_eq!(
        bad(Identity {
            net: Some(Net {
                prefix: 24,
                mac: Some("zz".into()),
                ..net.clone()
            }),
            ..base.clone()
        }),
        proto::code::INVALID_ARGS
    );
    assert_eq!(
        bad(Identity {
            net: Some(Net {
                prefix: 24,
                dev: Some("eth0;rm".into()),
                ..net
            }),
            ..base
        }),
        proto::code::INVALID_ARGS
    );
    assert!(g.calls().is_empty(), "nothing applied: {:?}", g.calls());
    assert!(!g.path("/etc/hostname").exists());
}

#[test]
fn stand_in_guest_shutdown_answers_first() {
    let g = Guest::new("shutdown");
    g.client().shutdown(true).unwrap();
    let ok = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(10));
        g.calls() == ["shutdown force=true"]
    });
    assert!(ok, "{:?}", g.calls());
}

#[test]
fn sshd_listeners_are_the_sshds_without_an_sshd_parent() {
    let d = std::env::temp_dir().join(format!("banger-proc-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    let proc_ = |pid: u32, comm: &str, ppid: u32| {
        let p = d.join(pid.to_string());
        std::fs::create_dir_all(&p).unwrap();
        std::fs::write(p.join("comm"), format!("{comm}\n")).unwrap();
        std::fs::write(p.join("stat"), format!("{pid} ({comm}) S {ppid} 1 1 0")).unwrap();
    };
    proc_(1, "fc-init", 0);
    proc_(40, "sshd", 1);
    proc_(41, "sshd", 40);
    proc_(50, "x) S 40 (sshd", 1);
    proc_(60, "bash", 41);
    std::fs::create_dir_all(d.join("self")).unwrap();
    let mut l = crate::server::identity::sshd_listeners(&d);
    l.sort();
    assert_eq!(l, vec![40]);
    let _ = std::fs::remove_dir_all(&d);
}
