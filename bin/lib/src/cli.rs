//! What every binary shares on the command line: the flag table that feeds `--help` and the
//! shell completions (generated from it: [`crate::complete`]; the man pages are checked
//! against it), usage errors (exit 2) with a suggestion for a near command, error chains on
//! stderr, exit codes, and finding sibling binaries.

use std::error::Error;
use std::path::PathBuf;
use std::process::ExitCode;

pub const EXIT_OK: u8 = 0;
pub const EXIT_FAILURE: u8 = 1;
pub const EXIT_USAGE: u8 = 2;
pub const EXIT_INTERRUPTED: u8 = 130;

/// One flag of a binary or subcommand.
#[derive(Debug)]
pub struct Flag {
    pub long: &'static str,
    pub short: Option<char>,
    /// The value's placeholder (`NAME`, `N`), or `None` for a switch.
    pub value: Option<&'static str>,
    pub help: &'static str,
}

/// One subcommand (`banger-vm new`), or the binary itself when it has none.
#[derive(Debug)]
pub struct Command {
    pub name: &'static str,
    /// Positional arguments as shown in the synopsis, e.g. `NAME` or `[NAME...]`.
    pub args: &'static str,
    pub about: &'static str,
    pub flags: &'static [Flag],
}

/// A binary's whole command-line surface.
#[derive(Debug)]
pub struct Tool {
    pub name: &'static str,
    pub about: &'static str,
    /// Empty for binaries without subcommands; then `main` describes the positional args.
    pub commands: &'static [Command],
    pub main: Option<&'static Command>,
    /// Free text after the flag lists (environment, examples).
    pub footer: &'static str,
    /// A program banger starts itself (a daemon, a helper process), not a command for
    /// people: `banger commands`, `banger --help` and Tab leave it out.
    pub internal: bool,
}

/// `BANGER_GENERATE=KIND PROGRAM --help` prints, instead of the help, what is generated from
/// the flag table: `bash`, `zsh` or `fish` (the shell completion) or `describe` (one JSON line:
/// name, about, internal; what `banger commands` lists).
pub const GENERATE_VAR: &str = "BANGER_GENERATE";

/// The flags every binary takes.
pub const COMMON: &[Flag] = &[
    Flag {
        long: "help",
        short: Some('h'),
        value: None,
        help: "print this help and exit",
    },
    Flag {
        long: "version",
        short: Some('V'),
        value: None,
        help: "print the version and exit",
    },
];

fn flag_lines(out: &mut String, flags: &[Flag]) {
    for f in flags {
        let mut left = match f.short {
            Some(c) => format!("  -{c}, --{}", f.long),
            None => format!("      --{}", f.long),
        };
        if let Some(v) = f.value {
            left.push(' ');
            left.push_str(v);
        }
        if left.len() < 28 {
            out.push_str(&format!("{left:<28}{}\n", f.help));
        } else {
            out.push_str(&format!("{left}\n{:<28}{}\n", "", f.help));
        }
    }
}

fn synopsis(tool: &Tool, c: &Command) -> String {
    let mut s = if c.name.is_empty() {
        tool.name.to_string()
    } else {
        format!("{} {}", tool.name, c.name)
    };
    if !c.args.is_empty() {
        s.push(' ');
        s.push_str(c.args);
    }
    // Where the options go when that matters (`exec NAME [OPTIONS] -- CMD...`), the
    // arguments say so themselves.
    if !c.flags.is_empty() && !c.args.contains("[OPTIONS]") {
        s.push_str(" [OPTIONS]");
    }
    s
}

impl Tool {
    /// The full `--help` text.
    pub fn help(&self) -> String {
        let mut out = format!(
            "{} {}: {}\n\nUsage:\n",
            self.name,
            crate::VERSION,
            self.about
        );
        if let Some(m) = self.main {
            out.push_str(&format!("  {}\n", synopsis(self, m)));
        }
        for c in self.commands {
            out.push_str(&format!("  {}\n", synopsis(self, c)));
        }
        if !self.commands.is_empty() {
            out.push_str("\nCommands:\n");
            for c in self.commands {
                out.push_str(&format!("  {:<12}{}\n", c.name, c.about));
            }
        }
        if let Some(m) = self.main {
            if !m.flags.is_empty() {
                out.push_str("\nOptions:\n");
                flag_lines(&mut out, m.flags);
            }
        }
        for c in self.commands.iter().filter(|c| !c.flags.is_empty()) {
            out.push_str(&format!("\nOptions for {}:\n", c.name));
            flag_lines(&mut out, c.flags);
        }
        out.push_str("\nCommon options:\n");
        flag_lines(&mut out, COMMON);
        if !self.footer.is_empty() {
            out.push('\n');
            out.push_str(self.footer.trim_end());
            out.push('\n');
        }
        out
    }

    /// `--help` for one subcommand.
    pub fn command_help(&self, name: &str) -> String {
        let Some(c) = self.command(name) else {
            return self.help();
        };
        let mut out = format!(
            "{}: {}\n\nUsage:\n  {}\n",
            synopsis(self, c),
            c.about,
            synopsis(self, c)
        );
        if !c.flags.is_empty() {
            out.push_str("\nOptions:\n");
            flag_lines(&mut out, c.flags);
        }
        out.push_str("\nCommon options:\n");
        flag_lines(&mut out, COMMON);
        out
    }

    pub fn command(&self, name: &str) -> Option<&Command> {
        self.commands.iter().find(|c| c.name == name)
    }

    /// Prints the help on stdout and exits 0; with `BANGER_GENERATE` set, what it asks for
    /// instead (see [`GENERATE_VAR`]), so every binary whose `--help` comes from its table
    /// generates its completions without code of its own.
    pub fn exit_help(&self, command: Option<&str>) -> ! {
        if let Some(kind) = std::env::var_os(GENERATE_VAR).filter(|v| !v.is_empty()) {
            self.exit_generate(&kind.to_string_lossy())
        }
        let text = match command {
            Some(c) => self.command_help(c),
            None => self.help(),
        };
        print!("{text}");
        std::process::exit(0)
    }

    /// Prints the version (and the commit it was built from) on stdout and exits 0.
    pub fn exit_version(&self) -> ! {
        println!(
            "{} {} (commit {})",
            self.name,
            crate::VERSION,
            crate::COMMIT
        );
        std::process::exit(0)
    }

    /// Prints what `BANGER_GENERATE=KIND` asks for and exits 0 (2 for an unknown KIND).
    pub fn exit_generate(&self, kind: &str) -> ! {
        match crate::complete::generate(self, kind) {
            Some(text) => {
                print!("{text}");
                std::process::exit(0)
            }
            None => {
                eprintln!(
                    "{}: usage error: {GENERATE_VAR}={kind:?}: expected bash, zsh, fish or describe",
                    self.name
                );
                std::process::exit(i32::from(EXIT_USAGE))
            }
        }
    }

    /// The first argument of a binary with subcommands: the subcommand's name. Handles
    /// `--help` and `--version` there, and refuses a missing or unknown command, naming the
    /// commands from the table.
    pub fn subcommand(&self, p: &mut lexopt::Parser) -> Result<String, lexopt::Error> {
        use lexopt::prelude::*;
        let names: Vec<&str> = self.commands.iter().map(|c| c.name).collect();
        let list = names.join(", ");
        let sub = match p.next()? {
            Some(Value(v)) => v.string()?,
            Some(Short('h') | Long("help")) => self.exit_help(None),
            Some(Short('V') | Long("version")) => self.exit_version(),
            Some(arg) => return Err(arg.unexpected()),
            None => return Err(format!("missing command ({list})").into()),
        };
        if self.command(&sub).is_none() {
            return Err(match closest(&sub, names.iter().copied()) {
                Some(near) => format!("unknown command {sub:?}; did you mean {near:?}? ({list})"),
                None => format!("unknown command {sub:?} ({list})"),
            }
            .into());
        }
        Ok(sub)
    }

    /// A usage error: message, hint, exit 2.
    pub fn usage_error(&self, err: &dyn std::fmt::Display) -> ExitCode {
        eprintln!("{}: usage error: {err}", self.name);
        eprintln!("Try '{} --help'.", self.name);
        ExitCode::from(EXIT_USAGE)
    }
}

/// Levenshtein distance between two words, for "did you mean".
pub fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The candidate nearest to `word` (one edit away for a word of up to three letters, two for
/// a longer one, or starting with it), if any.
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let most = if word.chars().count() <= 3 { 1 } else { 2 };
    candidates
        .into_iter()
        .filter(|c| *c != word)
        .map(|c| (distance(word, c), c))
        .filter(|(d, c)| *d <= most || (word.len() >= 2 && c.starts_with(word)))
        .min()
        .map(|(_, c)| c)
}

/// Prints `BIN: error: message` and a `  caused by: ...` line per source on stderr.
pub fn report(bin: &str, err: &dyn Error) {
    eprintln!("{bin}: error: {err}");
    for cause in chain(err).into_iter().skip(1) {
        eprintln!("  caused by: {cause}");
    }
}

/// The error and its sources, outermost first, as strings.
pub fn chain(err: &dyn Error) -> Vec<String> {
    let mut out = vec![err.to_string()];
    let mut cur = err.source();
    while let Some(e) = cur {
        out.push(e.to_string());
        cur = e.source();
    }
    out
}

/// The error chain as one line, for a record's `error.message`.
pub fn one_line(err: &dyn Error) -> String {
    chain(err).join(": ")
}

/// Renders rows (the first is the header) as columns separated by two spaces, for `--table`.
pub fn render_table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(String::len)
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// Finds a sibling binary: the directory of the running executable first, then PATH.
pub fn sibling(bin: &str) -> Option<PathBuf> {
    if let Ok(exe) = std::env::current_exe() {
        if let Some(dir) = exe.parent() {
            let p = dir.join(bin);
            if is_executable(&p) {
                return Some(p);
            }
        }
    }
    which(bin)
}

/// Looks a program up on PATH.
pub fn which(bin: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(bin))
        .find(|p| is_executable(p))
}

pub fn is_executable(p: &std::path::Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Parses a size such as `512M`, `10G`, `1.5G`, `4096` (bytes) into bytes.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (num, mult) = match t.char_indices().find(|(_, c)| c.is_ascii_alphabetic()) {
        Some((i, _)) => {
            let unit = t[i..].to_ascii_uppercase();
            let m: u64 = match unit.as_str() {
                "B" => 1,
                "K" | "KB" | "KIB" => 1 << 10,
                "M" | "MB" | "MIB" => 1 << 20,
                "G" | "GB" | "GIB" => 1 << 30,
                "T" | "TB" | "TIB" => 1 << 40,
                _ => return Err(format!("{s:?}: unknown unit (use K, M, G or T)")),
            };
            (&t[..i], m)
        }
        None => (t, 1),
    };
    let n: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a size (examples: 4096, 512M, 10G)"))?;
    if !(n.is_finite() && n > 0.0) {
        return Err(format!("{s:?}: a size must be positive"));
    }
    let bytes = n * mult as f64;
    if bytes > u64::MAX as f64 / 2.0 {
        return Err(format!("{s:?} is too large"));
    }
    Ok(bytes.round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Tool = Tool {
        name: "banger-x",
        about: "test tool",
        commands: &[Command {
            name: "go",
            args: "NAME",
            about: "go somewhere",
            flags: &[Flag {
                long: "speed",
                short: Some('s'),
                value: Some("N"),
                help: "how fast",
            }],
        }],
        main: None,
        footer: "",
        internal: false,
    };

    #[test]
    fn near_commands_are_suggested() {
        assert_eq!(distance("vn", "vm"), 1);
        assert_eq!(distance("", "abc"), 3);
        assert_eq!(distance("snap", "snap"), 0);
        let names = ["new", "list", "status", "start"];
        assert_eq!(closest("lst", names), Some("list"));
        assert_eq!(closest("neww", names), Some("new"));
        assert_eq!(closest("zzzzzz", names), None);
        assert_eq!(
            closest("up", ["vm", "net"]),
            None,
            "two letters, two edits: no"
        );
        assert_eq!(closest("list", ["list"]), None, "never itself");
        let mut p = lexopt::Parser::from_iter(["banger-x", "gp"]);
        let e = T.subcommand(&mut p).unwrap_err().to_string();
        assert!(e.contains("did you mean \"go\"?"), "{e}");
    }

    #[test]
    fn help_lists_every_flag() {
        let h = T.help();
        assert!(h.contains("banger-x go NAME [OPTIONS]"));
        assert!(h.contains("-s, --speed N"));
        assert!(h.contains("--help"));
        assert!(h.contains("--version"));
        let ch = T.command_help("go");
        assert!(ch.contains("--speed"));
    }

    #[test]
    fn tables_align_columns() {
        let rows = vec![
            vec!["NAME".to_string(), "IP".to_string()],
            vec!["long-name".to_string(), "10.0.0.2".to_string()],
            vec!["a".to_string(), "-".to_string()],
        ];
        assert_eq!(
            render_table(&rows),
            "NAME       IP\nlong-name  10.0.0.2\na          -\n"
        );
        assert_eq!(render_table(&[]), "");
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert_eq!(parse_size("512M").unwrap(), 512 << 20);
        assert_eq!(parse_size("10g").unwrap(), 10 << 30);
        assert_eq!(parse_size("1.5G").unwrap(), 3 << 29);
        assert_eq!(parse_size("2GiB").unwrap(), 2 << 30);
        assert!(parse_size("0").is_err());
        assert!(parse_size("-1G").is_err());
        assert!(parse_size("10X").is_err());
        assert!(parse_size("G").is_err());
        assert!(parse_size("").is_err());
    }

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn chains() {
        let e = Outer(std::io::Error::other("inner"));
        assert_eq!(chain(&e), vec!["outer", "inner"]);
        assert_eq!(one_line(&e), "outer: inner");
    }
}
