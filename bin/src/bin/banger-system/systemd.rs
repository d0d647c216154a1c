//! systemctl through one small interface, so the install, update and uninstall logic can be
//! unit-tested with a recorder instead of a running systemd.

#[cfg(test)]
use std::cell::RefCell;
#[cfg(test)]
use std::collections::HashMap;

#[derive(Debug, thiserror::Error)]
pub enum SystemdError {
    #[error("cannot run systemctl {args}")]
    Spawn {
        args: String,
        #[source]
        source: std::io::Error,
    },
    #[error("systemctl {args} failed ({status}): {stderr}")]
    Failed {
        args: String,
        status: String,
        stderr: String,
    },
}

/// What a systemctl call printed and how it exited.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub ok: bool,
    pub stdout: String,
}

/// Runs `systemctl ARGS...`.
pub trait Systemctl {
    fn run(&self, args: &[&str]) -> Result<Outcome, SystemdError>;

    /// Runs and requires success.
    fn must(&self, args: &[&str]) -> Result<String, SystemdError> {
        let o = self.run(args)?;
        if o.ok {
            Ok(o.stdout)
        } else {
            Err(SystemdError::Failed {
                args: args.join(" "),
                status: "non-zero exit".into(),
                stderr: o.stdout.trim().to_string(),
            })
        }
    }

    fn daemon_reload(&self) -> Result<(), SystemdError> {
        self.must(&["daemon-reload"]).map(|_| ())
    }

    /// `enabled`, `disabled`, `static`, `not-found`... (the first line systemctl prints).
    fn is_enabled(&self, unit: &str) -> String {
        first_word(self.run(&["is-enabled", unit]))
    }

    /// `active`, `inactive`, `failed`, `activating`...
    fn is_active(&self, unit: &str) -> String {
        first_word(self.run(&["is-active", unit]))
    }
}

fn first_word(r: Result<Outcome, SystemdError>) -> String {
    match r {
        Ok(o) => o
            .stdout
            .split_whitespace()
            .next()
            .unwrap_or("unknown")
            .to_string(),
        Err(_) => "unknown".into(),
    }
}

/// The real systemctl (found on PATH).
pub struct Real;

impl Systemctl for Real {
    fn run(&self, args: &[&str]) -> Result<Outcome, SystemdError> {
        let out = std::process::Command::new("systemctl")
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|source| SystemdError::Spawn {
                args: args.join(" "),
                source,
            })?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() {
            if matches!(args.first(), Some(&"is-enabled" | &"is-active")) {
                // They answer on stdout and exit non-zero for "disabled"/"inactive".
                return Ok(Outcome {
                    ok: false,
                    stdout: text,
                });
            }
            return Err(SystemdError::Failed {
                args: args.join(" "),
                status: out.status.to_string(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(Outcome {
            ok: true,
            stdout: text,
        })
    }
}

/// A recorder for tests: remembers every call and answers from a small model of unit states.
#[cfg(test)]
#[derive(Default)]
pub struct Recorder {
    pub calls: RefCell<Vec<String>>,
    /// unit -> (enabled, active)
    pub units: RefCell<HashMap<String, (String, String)>>,
    /// Calls (joined with spaces) that fail.
    pub failing: Vec<String>,
}

#[cfg(test)]
impl Recorder {
    /// The calls that change something (not the queries).
    pub fn changes(&self) -> Vec<String> {
        self.calls
            .borrow()
            .iter()
            .filter(|c| !c.starts_with("is-") && !c.starts_with("show"))
            .cloned()
            .collect()
    }

    fn set(&self, unit: &str, f: impl Fn(&mut (String, String))) {
        let mut u = self.units.borrow_mut();
        let e = u
            .entry(unit.to_string())
            .or_insert(("disabled".into(), "inactive".into()));
        f(e);
    }
}

#[cfg(test)]
impl Systemctl for Recorder {
    fn run(&self, args: &[&str]) -> Result<Outcome, SystemdError> {
        let joined = args.join(" ");
        self.calls.borrow_mut().push(joined.clone());
        if self.failing.contains(&joined) {
            return Err(SystemdError::Failed {
                args: joined,
                status: "exit status: 1".into(),
                stderr: "recorded failure".into(),
            });
        }
        let units: Vec<&str> = args[1..]
            .iter()
            .copied()
            .filter(|a| !a.starts_with('-'))
            .collect();
        let state = |i: usize| {
            let u = self.units.borrow();
            units
                .last()
                .and_then(|n| u.get(*n).cloned())
                .map(|s| if i == 0 { s.0 } else { s.1 })
        };
        match args.first().copied() {
            Some("is-enabled") => {
                let s = state(0).unwrap_or_else(|| "not-found".into());
                Ok(Outcome {
                    ok: s == "enabled",
                    stdout: format!("{s}\n"),
                })
            }
            Some("is-active") => {
                let s = state(1).unwrap_or_else(|| "inactive".into());
                Ok(Outcome {
                    ok: s == "active",
                    stdout: format!("{s}\n"),
                })
            }
            Some(cmd) => {
                for u in &units {
                    match cmd {
                        "enable" => self.set(u, |s| s.0 = "enabled".into()),
                        "disable" => self.set(u, |s| s.0 = "disabled".into()),
                        "start" | "restart" => self.set(u, |s| s.1 = "active".into()),
                        "stop" => self.set(u, |s| s.1 = "inactive".into()),
                        _ => {}
                    }
                }
                Ok(Outcome {
                    ok: true,
                    stdout: String::new(),
                })
            }
            None => Ok(Outcome::default()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_recorder_models_enable_and_start() {
        let r = Recorder::default();
        assert_eq!(r.is_enabled("a.socket"), "not-found");
        r.must(&["enable", "a.socket"]).unwrap();
        r.must(&["start", "a.socket"]).unwrap();
        assert_eq!(r.is_enabled("a.socket"), "enabled");
        assert_eq!(r.is_active("a.socket"), "active");
        r.must(&["stop", "a.socket"]).unwrap();
        assert_eq!(r.is_active("a.socket"), "inactive");
        assert_eq!(
            r.changes(),
            ["enable a.socket", "start a.socket", "stop a.socket"]
        );
    }

    #[test]
    fn recorded_failures_fail() {
        let r = Recorder {
            failing: vec!["daemon-reload".into()],
            ..Default::default()
        };
        assert!(r.daemon_reload().is_err());
    }
}
