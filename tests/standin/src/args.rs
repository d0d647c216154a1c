//! TEST STAND-IN, not Firecracker: command-line parsing with the rules of Firecracker's own
//! argument parser, so that both stand-ins accept and refuse the same command lines as the real
//! binaries:
//!
//! - everything after the first `--` is passed through untouched;
//! - `--help`/`-h` (or `--version`) anywhere wins over every other check;
//! - every other word must be a known `--name`; a name that takes a value eats the next word,
//!   which must not start with `--`; a name given twice is refused unless it may repeat;
//! - then required arguments, `requires` and `forbids` are checked.

use std::collections::BTreeMap;
use std::fmt;

/// One accepted argument.
#[derive(Clone, Copy, Debug)]
pub struct Arg {
    pub name: &'static str,
    pub takes_value: bool,
    pub multiple: bool,
    pub required: bool,
    pub default: Option<&'static str>,
    pub requires: Option<&'static str>,
    pub forbids: &'static [&'static str],
    pub help: &'static str,
}

impl Arg {
    /// A flag without a value.
    pub const fn flag(name: &'static str, help: &'static str) -> Self {
        Arg {
            name,
            takes_value: false,
            multiple: false,
            required: false,
            default: None,
            requires: None,
            forbids: &[],
            help,
        }
    }

    /// An argument that takes one value.
    pub const fn value(name: &'static str, help: &'static str) -> Self {
        Arg {
            takes_value: true,
            ..Arg::flag(name, help)
        }
    }

    pub const fn default(self, default: &'static str) -> Self {
        Arg {
            default: Some(default),
            ..self
        }
    }

    pub const fn required(self) -> Self {
        Arg {
            required: true,
            ..self
        }
    }

    pub const fn multiple(self) -> Self {
        Arg {
            multiple: true,
            takes_value: true,
            ..self
        }
    }

    pub const fn requires(self, other: &'static str) -> Self {
        Arg {
            requires: Some(other),
            ..self
        }
    }

    pub const fn forbids(self, others: &'static [&'static str]) -> Self {
        Arg {
            forbids: others,
            ..self
        }
    }
}

/// Why a command line was refused; the wording is Firecracker's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ArgError {
    ForbiddenArgument(String, String),
    MissingArgument(String),
    MissingValue(String),
    UnexpectedArgument(String),
    DuplicateArgument(String),
}

impl fmt::Display for ArgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArgError::ForbiddenArgument(a, b) => {
                write!(
                    f,
                    "Argument '{b}' cannot be used together with argument '{a}'."
                )
            }
            ArgError::MissingArgument(a) => write!(f, "Argument '{a}' required, but not found."),
            ArgError::MissingValue(a) => {
                write!(
                    f,
                    "The argument '{a}' requires a value, but none was supplied."
                )
            }
            ArgError::UnexpectedArgument(a) => write!(
                f,
                "Found argument '{a}' which wasn't expected, or isn't valid in this context."
            ),
            ArgError::DuplicateArgument(a) => {
                write!(f, "The argument '{a}' was provided more than once.")
            }
        }
    }
}

/// The outcome of parsing.
#[derive(Debug)]
pub enum Parsed {
    Help,
    Version,
    Args(Args),
}

/// Parsed values, with defaults applied on lookup.
#[derive(Debug, Default)]
pub struct Args {
    given: BTreeMap<&'static str, Vec<String>>,
    defaults: BTreeMap<&'static str, &'static str>,
    extra: Vec<String>,
}

impl Args {
    /// The single value of `name`, or its default.
    pub fn value(&self, name: &str) -> Option<&str> {
        match self.given.get(name).and_then(|v| v.first()) {
            Some(v) => Some(v.as_str()),
            None => self.defaults.get(name).copied(),
        }
    }

    /// Whether the flag `name` was given.
    pub fn flag(&self, name: &str) -> bool {
        self.given.contains_key(name)
    }

    /// Every value given for a repeatable argument.
    pub fn values(&self, name: &str) -> &[String] {
        self.given.get(name).map(Vec::as_slice).unwrap_or_default()
    }

    /// The words after `--`.
    pub fn extra(&self) -> &[String] {
        &self.extra
    }
}

/// Parses `argv` (without the program name) against `spec`.
pub fn parse(spec: &[Arg], argv: &[String]) -> Result<Parsed, ArgError> {
    let (own, extra) = match argv.iter().position(|a| a == "--") {
        Some(i) => (&argv[..i], &argv[i + 1..]),
        None => (argv, &[][..]),
    };
    if own.iter().any(|a| a == "--help" || a == "-h") {
        return Ok(Parsed::Help);
    }
    if own.iter().any(|a| a == "--version") {
        return Ok(Parsed::Version);
    }
    let mut args = Args {
        extra: extra.to_vec(),
        ..Args::default()
    };
    for arg in spec {
        if let Some(d) = arg.default {
            args.defaults.insert(arg.name, d);
        }
    }
    let mut words = own.iter();
    while let Some(word) = words.next() {
        let Some(name) = word.strip_prefix("--") else {
            return Err(ArgError::UnexpectedArgument(word.clone()));
        };
        let Some(arg) = spec.iter().find(|a| a.name == name) else {
            return Err(ArgError::UnexpectedArgument(name.to_string()));
        };
        if !arg.multiple && args.given.contains_key(arg.name) {
            return Err(ArgError::DuplicateArgument(name.to_string()));
        }
        let slot = args.given.entry(arg.name).or_default();
        if arg.takes_value {
            match words.next() {
                Some(v) if !v.starts_with("--") => slot.push(v.clone()),
                _ => return Err(ArgError::MissingValue(arg.name.to_string())),
            }
        }
    }
    let present = |name: &str| own.iter().any(|w| w.strip_prefix("--") == Some(name));
    let mut sorted: Vec<&Arg> = spec.iter().collect();
    sorted.sort_by_key(|a| a.name);
    for arg in sorted {
        if arg.required && !args.given.contains_key(arg.name) {
            return Err(ArgError::MissingArgument(arg.name.to_string()));
        }
        if args.given.contains_key(arg.name) {
            if let Some(other) = arg.requires {
                if !present(other) {
                    return Err(ArgError::MissingArgument(other.to_string()));
                }
            }
            for other in arg.forbids {
                if present(other) {
                    return Err(ArgError::ForbiddenArgument(
                        arg.name.to_string(),
                        other.to_string(),
                    ));
                }
            }
        }
    }
    Ok(Parsed::Args(args))
}

/// The help text: required then optional arguments, sorted by name, aligned.
pub fn help(spec: &[Arg]) -> String {
    let mut sorted: Vec<&Arg> = spec.iter().collect();
    sorted.sort_by_key(|a| a.name);
    let label = |a: &Arg| {
        if a.takes_value {
            format!("  --{0} <{0}>", a.name)
        } else {
            format!("  --{}", a.name)
        }
    };
    let mut sections = Vec::new();
    for (title, required) in [
        ("required arguments:", true),
        ("optional arguments:", false),
    ] {
        let group: Vec<&&Arg> = sorted.iter().filter(|a| a.required == required).collect();
        if group.is_empty() {
            continue;
        }
        let width = group.iter().map(|a| label(a).len()).max().unwrap_or(0);
        let mut lines = vec![title.to_string()];
        for a in group {
            let mut line = format!("{:<width$}   {}", label(a), a.help);
            if let Some(d) = a.default {
                line.push_str(&format!(" [default: \"{d}\"]"));
            }
            lines.push(line);
        }
        sections.push(lines.join("\n"));
    }
    sections.join("\n\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: &[Arg] = &[
        Arg::value("api-sock", "socket").default("/run/firecracker.socket"),
        Arg::value("id", "id").required(),
        Arg::flag("no-api", "no api").requires("config-file"),
        Arg::value("config-file", "file"),
        Arg::flag("no-seccomp", "x").forbids(&["seccomp-filter"]),
        Arg::value("seccomp-filter", "y").forbids(&["no-seccomp"]),
        Arg::value("cgroup", "cg").multiple(),
    ];

    fn run(words: &[&str]) -> Result<Parsed, ArgError> {
        let argv: Vec<String> = words.iter().map(|s| s.to_string()).collect();
        parse(SPEC, &argv)
    }

    fn args(words: &[&str]) -> Args {
        match run(words) {
            Ok(Parsed::Args(a)) => a,
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn values_defaults_and_extra() {
        let a = args(&[
            "--id", "vm1", "--cgroup", "a.b=1", "--cgroup", "c.d=2", "--", "--x", "y",
        ]);
        assert_eq!(a.value("id"), Some("vm1"));
        assert_eq!(a.value("api-sock"), Some("/run/firecracker.socket"));
        assert_eq!(a.values("cgroup"), ["a.b=1", "c.d=2"]);
        assert_eq!(a.extra(), ["--x", "y"]);
        assert!(!a.flag("no-api"));
    }

    #[test]
    fn help_and_version_win() {
        assert!(matches!(run(&["--bogus", "-h"]), Ok(Parsed::Help)));
        assert!(matches!(
            run(&["--version", "--bogus"]),
            Ok(Parsed::Version)
        ));
        assert!(matches!(
            run(&["--id", "a", "--", "--help"]),
            Ok(Parsed::Args(_))
        ));
    }

    #[test]
    fn refusals_use_firecracker_wording() {
        let e = run(&["--id", "a", "--bogus"]).unwrap_err();
        assert_eq!(e, ArgError::UnexpectedArgument("bogus".into()));
        assert_eq!(
            e.to_string(),
            "Found argument 'bogus' which wasn't expected, or isn't valid in this context."
        );
        assert_eq!(
            run(&["--id", "a", "stray"]).unwrap_err(),
            ArgError::UnexpectedArgument("stray".into())
        );
        assert_eq!(
            run(&["--id"]).unwrap_err(),
            ArgError::MissingValue("id".into())
        );
        assert_eq!(
            run(&["--id", "--x"]).unwrap_err(),
            ArgError::MissingValue("id".into())
        );
        assert_eq!(
            run(&["--id", "a", "--id", "b"]).unwrap_err(),
            ArgError::DuplicateArgument("id".into())
        );
        assert_eq!(
            run(&[]).unwrap_err(),
            ArgError::MissingArgument("id".into())
        );
        assert_eq!(
            run(&["--id", "a", "--no-api"]).unwrap_err(),
            ArgError::MissingArgument("config-file".into())
        );
        assert!(matches!(
            run(&["--id", "a", "--no-seccomp", "--seccomp-filter", "f"]).unwrap_err(),
            ArgError::ForbiddenArgument(_, _)
        ));
    }

    #[test]
    fn help_lists_every_argument() {
        let h = help(SPEC);
        assert!(h.starts_with("required arguments:\n  --id <id>"));
        assert!(h.contains("optional arguments:"));
        assert!(h.contains("  --api-sock <api-sock>"));
        assert!(h.contains("   socket [default: \"/run/firecracker.socket\"]\n"));
    }
}
