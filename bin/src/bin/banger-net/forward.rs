//! `banger-net forward NAME HOSTPORT[:GUESTPORT][/tcp|/udp]... [--remove]`.

use crate::updown::{call, helper};
use crate::BIN;
use banger::config::Config;
use banger::section::{self, Net, Section};
use banger::step::{Action, Input, Step, StepError};
use banger::store::Store;
use serde_json::json;
use std::process::ExitCode;

/// One forward as written on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    pub host_port: u16,
    pub guest_port: u16,
    pub proto: &'static str,
}

fn port(s: &str, whole: &str) -> Result<u16, String> {
    s.parse::<u16>()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| format!("{whole:?}: {s:?} is not a port (1-65535)"))
}

impl Spec {
    /// `8080:80`, `8080:80/udp`, `2222` (same port on both sides), `53/udp`.
    pub fn parse(s: &str) -> Result<Spec, String> {
        let (ports, proto) = match s.rsplit_once('/') {
            Some((p, "tcp")) => (p, "tcp"),
            Some((p, "udp")) => (p, "udp"),
            Some((_, other)) => return Err(format!("{s:?}: protocol {other:?} is not tcp or udp")),
            None => (s, "tcp"),
        };
        let (h, g) = ports.split_once(':').unwrap_or((ports, ports));
        Ok(Spec {
            host_port: port(h, s)?,
            guest_port: port(g, s)?,
            proto,
        })
    }
}

/// The forwards of a record for people: `dev1 (10.200.0.2): 8080 -> 80/tcp, 5353 -> 53/udp`.
fn summary(rec: &banger::record::Record) -> String {
    let name = banger::record::name(rec).unwrap_or("?");
    let net = section::get::<Net>(rec).ok().flatten().unwrap_or_default();
    let fwd: Vec<String> = net
        .forwards
        .unwrap_or_default()
        .iter()
        .map(|f| {
            format!(
                "host port {} -> {}/{}",
                f["host_port"],
                f["guest_port"],
                f["proto"].as_str().unwrap_or("tcp")
            )
        })
        .collect();
    let ip = net.ip.unwrap_or_else(|| "-".into());
    if fwd.is_empty() {
        format!("{name} ({ip}): no port forwards")
    } else {
        format!("{name} ({ip}): {}", fwd.join(", "))
    }
}

pub fn run(
    cfg: &Config,
    store: &Store,
    name: &str,
    specs: &[Spec],
    remove: bool,
    json: bool,
) -> ExitCode {
    let helper = helper(cfg);
    let step = Step {
        bin: BIN,
        step: "net",
        store,
        owns: &[Net::KEY],
    };
    let input = Input::Names(vec![name.to_string()]);
    let people = banger::porcelain::Output::detect(json) == banger::porcelain::Output::People;
    if let Err(code) = input.check(BIN) {
        return code;
    }
    let forward = |rec: &mut banger::record::Record| {
        let Some(mut net) = section::get::<Net>(rec)? else {
            return Err(StepError::msg(
                "not_found",
                format!("{name} has no network: run 'banger up {name}' (or 'banger-net up {name}') first"),
            ));
        };
        let mut forwards = None;
        for s in specs {
            let answer = call(
                &helper,
                "net.forward",
                json!({"vm": name, "host_port": s.host_port, "guest_port": s.guest_port,
                       "proto": s.proto, "remove": remove}),
            )?;
            forwards = answer["forwards"].as_array().cloned();
        }
        net.forwards = forwards;
        section::put(rec, &net);
        Ok(Action::Save)
    };
    if !people {
        return step.run(input, forward);
    }
    // On a terminal: the record for this output only, then what people need from it.
    let mut out = Vec::new();
    let code = step.run_with(
        input,
        std::io::empty(),
        banger::record::Writer::new(&mut out),
        forward,
    );
    for line in String::from_utf8_lossy(&out).lines() {
        if let Ok(rec) = banger::record::parse(line.as_bytes(), 1) {
            if !banger::record::has_error(&rec) {
                println!("{}", summary(&rec));
            }
        }
    }
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs() {
        let s = |h, g, p| Spec {
            host_port: h,
            guest_port: g,
            proto: p,
        };
        assert_eq!(Spec::parse("8080:80").unwrap(), s(8080, 80, "tcp"));
        assert_eq!(Spec::parse("8080:80/tcp").unwrap(), s(8080, 80, "tcp"));
        assert_eq!(Spec::parse("5353:53/udp").unwrap(), s(5353, 53, "udp"));
        assert_eq!(Spec::parse("2222").unwrap(), s(2222, 2222, "tcp"));
        for bad in [
            "",
            "0:80",
            "80:0",
            "70000:80",
            "a:b",
            "80:80/sctp",
            "80:",
            ":80",
            "-1",
        ] {
            assert!(Spec::parse(bad).is_err(), "{bad}");
        }
    }
}
