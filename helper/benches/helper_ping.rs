//! Benchmark: the helper's `ping` round trip over its Unix socket (connect, SO_PEERCRED,
//! request line, dispatch, answer line), as a step binary pays it per privileged call.
//! Prints numbers; asserts nothing. Run: cargo bench -p banger-helper --bench helper_ping

use banger::config::Config;
use banger_helper::{ops::Ctx, server};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

fn main() {
    let dir = std::env::temp_dir().join(format!("banger-bench-ping-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    std::env::set_var("BANGER_CONFIG_DIR", dir.join("etc"));
    std::env::set_var("BANGER_ROOT_DIR", dir.join("root"));
    let cfg = Config::load().expect("config");
    let socket = dir.join("helper.sock");
    let listener = server::bind(&socket).expect("bind");
    let opts = server::Options {
        socket: socket.clone(),
        owner: Some(rustix::process::getuid().as_raw()),
        max_clients: 64,
        read_timeout: Duration::from_secs(5),
    };
    std::thread::spawn(move || server::serve(listener, Ctx::new(cfg), opts));

    let ping = |socket: &std::path::Path| {
        let mut s = UnixStream::connect(socket).expect("connect");
        s.write_all(b"{\"op\":\"ping\"}\n").expect("write");
        let mut line = String::new();
        BufReader::new(&s).read_line(&mut line).expect("read");
        assert!(line.contains("\"ok\":true"), "{line}");
    };
    for _ in 0..200 {
        ping(&socket);
    }
    let n = 5000;
    let mut samples = Vec::with_capacity(n);
    let all = Instant::now();
    for _ in 0..n {
        let t = Instant::now();
        ping(&socket);
        samples.push(t.elapsed());
    }
    let total = all.elapsed();
    samples.sort();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!("helper ping round trip ({n} sequential connections):");
    println!("  mean {:.1} us", us(total) / n as f64);
    println!("  p50  {:.1} us", us(samples[n / 2]));
    println!("  p99  {:.1} us", us(samples[n * 99 / 100]));
    println!("  max  {:.1} us", us(samples[n - 1]));
    let _ = std::fs::remove_dir_all(&dir);
}
