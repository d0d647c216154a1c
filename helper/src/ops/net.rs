//! The `net.*` ops: `net.up`, `net.down`, `net.forward`, `net.list`. Arguments are typed
//! and validated here; the work is in [`crate::net`].

use super::{Caller, Ctx, OpResult};
use crate::net::{self, ForwardReq, Net};
use crate::validate;
use banger::proto::{code, OpError};
use serde::Deserialize;
use serde_json::{json, Value};
use std::net::Ipv4Addr;

pub fn dispatch(op: &str, ctx: &Ctx, _caller: &Caller, args: &Value) -> Option<OpResult> {
    Some(match op {
        "net.up" => up(ctx, args),
        "net.down" => down(ctx, args),
        "net.forward" => forward(ctx, args),
        "net.list" => list(ctx, args),
        _ => return None,
    })
}

fn net(ctx: &Ctx) -> Result<Net<'_>, OpError> {
    Ok(Net::new(ctx)?)
}

fn invalid(msg: String) -> OpError {
    OpError::new(code::INVALID_ARGS, msg)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpArgs {
    vm: String,
    /// The address the record already holds (a repair), if any.
    #[serde(default)]
    ip: Option<String>,
}

fn up(ctx: &Ctx, args: &Value) -> OpResult {
    let a: UpArgs = validate::args(args)?;
    let vm = validate::name(&a.vm)?;
    let n = net(ctx)?;
    let want = match &a.ip {
        None => None,
        Some(s) => {
            let ip: Ipv4Addr = s
                .parse()
                .map_err(|_| invalid(format!("ip {s:?} is not an IPv4 address")))?;
            if !n.subnet.is_guest(ip) {
                return Err(invalid(format!(
                    "ip {ip} is not a guest address in the subnet {}",
                    n.subnet
                )));
            }
            Some(ip)
        }
    };
    ctx.check_access(vm)?;
    let info = net::up(&n, vm, want)?;
    Ok(with_hosts(
        &n,
        serde_json::to_value(info).unwrap_or(Value::Null),
    ))
}

/// An answer with every VM's address added (`hosts`), as it is once the op is done: the
/// step's hosts file is written from it.
fn with_hosts(n: &Net, mut v: Value) -> Value {
    if let (Some(m), Ok(h)) = (v.as_object_mut(), net::hosts(n)) {
        m.insert("hosts".into(), h);
    }
    v
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DownArgs {
    vm: String,
    #[serde(default)]
    keep_bridge: bool,
}

fn down(ctx: &Ctx, args: &Value) -> OpResult {
    let a: DownArgs = validate::args(args)?;
    let vm = validate::name(&a.vm)?;
    ctx.check_access(vm)?;
    let n = net(ctx)?;
    let info = net::down(&n, vm, a.keep_bridge)?;
    Ok(with_hosts(
        &n,
        serde_json::to_value(info).unwrap_or(Value::Null),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ForwardArgs {
    vm: String,
    host_port: u64,
    #[serde(default)]
    guest_port: Option<u64>,
    #[serde(default = "tcp")]
    proto: String,
    #[serde(default)]
    remove: bool,
}

fn tcp() -> String {
    "tcp".into()
}

/// A port number, 1-65535.
pub fn port(what: &str, p: u64) -> Result<u16, OpError> {
    u16::try_from(p)
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| invalid(format!("{what} {p} is out of range (1-65535)")))
}

fn forward(ctx: &Ctx, args: &Value) -> OpResult {
    let a: ForwardArgs = validate::args(args)?;
    let vm = validate::name(&a.vm)?;
    if a.proto != "tcp" && a.proto != "udp" {
        return Err(invalid(format!(
            "proto {:?} is not supported (tcp or udp)",
            a.proto
        )));
    }
    ctx.check_access(vm)?;
    let host_port = port("host_port", a.host_port)?;
    // A port below 1024 is one only root may bind: the owner may not take it through the
    // helper unless the host's config says so.
    if host_port < 1024 && !a.remove && ctx.caller.uid != 0 && !ctx.cfg.allow_privileged_ports {
        return Err(OpError::new(
            code::PERMISSION_DENIED,
            format!("host port {host_port} is privileged (below 1024): pick a port from 1024 up, or let the owner forward privileged ports with \"allow_privileged_ports\": true in the helper's config.json"),
        ));
    }
    let req = ForwardReq {
        vm: vm.into(),
        proto: a.proto.clone(),
        host_port,
        guest_port: a.guest_port.map(|p| port("guest_port", p)).transpose()?,
        remove: a.remove,
    };
    let forwards = net::forward(&net(ctx)?, &req)?;
    Ok(json!({ "vm": vm, "forwards": forwards }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListArgs {
    #[serde(default)]
    vm: Option<String>,
}

fn list(ctx: &Ctx, args: &Value) -> OpResult {
    let a: ListArgs = validate::args(args)?;
    let only = a.vm.as_deref().map(validate::name).transpose()?;
    Ok(net::list(&net(ctx)?, only)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> Ctx {
        let dir = std::env::temp_dir().join(format!("banger-opsnet-{}", std::process::id()));
        let mut cfg = banger::config::Config::load().unwrap();
        cfg.root_dir = dir.join("root");
        cfg.state_dir = dir.join("state");
        cfg.subnet = "10.200.0.0/24".into();
        cfg.bridge = "banger0".into();
        Ctx::new(cfg)
    }

    fn call(op: &str, args: Value) -> OpError {
        let c = ctx();
        let caller = Caller {
            uid: 0,
            gid: 0,
            pid: 1,
        };
        dispatch(op, &c, &caller, &args).unwrap().unwrap_err()
    }

    #[test]
    fn arguments_are_validated_before_anything_runs() {
        assert_eq!(call("net.up", json!({"vm": "../x"})).code, "invalid_name");
        assert_eq!(
            call("net.up", json!({"vm": "a", "cmd": "x"})).code,
            "invalid_args"
        );
        assert_eq!(
            call("net.up", json!({"vm": "a", "ip": "10.9.0.2"})).code,
            "invalid_args"
        );
        assert_eq!(
            call("net.up", json!({"vm": "a", "ip": "10.200.0.1"})).code,
            "invalid_args"
        );
        assert_eq!(call("net.down", json!({})).code, "invalid_args");
        for (hp, gp, proto) in [
            (0, 80, "tcp"),
            (70000, 80, "tcp"),
            (80, 0, "tcp"),
            (80, 80, "sctp"),
        ] {
            let e = call(
                "net.forward",
                json!({"vm": "a", "host_port": hp, "guest_port": gp, "proto": proto}),
            );
            assert_eq!(e.code, "invalid_args", "{hp} {gp} {proto}");
        }
        assert_eq!(call("net.list", json!({"vm": "A"})).code, "invalid_name");
    }

    #[test]
    fn unknown_ops_are_not_ours() {
        let c = ctx();
        let caller = Caller {
            uid: 0,
            gid: 0,
            pid: 1,
        };
        assert!(dispatch("net.frob", &c, &caller, &Value::Null).is_none());
    }
}
