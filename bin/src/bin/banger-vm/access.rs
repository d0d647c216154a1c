//! `banger-vm console`, `ssh` and `exec`: reaching a guest as a person.

use crate::boot::console_path;
use crate::BIN;
use banger::config::Config;
use banger::record::{self, Record};
use banger::section::{self, Net, Snap, Spec};
use banger::step::StepError;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::time::Duration;

/// Prints the console log; with `follow`, keeps printing what is appended until the VM's
/// Firecracker is gone (or the user interrupts).
pub fn console(rec: &Record, follow: bool, lines: Option<usize>) -> Result<(), StepError> {
    let name = record::name(rec).unwrap_or("?");
    let path = console_path(rec).ok_or_else(|| {
        StepError::msg(
            "no_console",
            format!("{name} has no console log (it was never launched: 'banger up {name}')"),
        )
    })?;
    let mut f = std::fs::File::open(&path).map_err(|e| {
        StepError::new(
            "console",
            &std::io::Error::new(e.kind(), format!("cannot open {}: {e}", path.display())),
        )
    })?;
    let mut out = std::io::stdout();
    let io = |e: std::io::Error| {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        StepError::new("console", &e)
    };
    if let Some(n) = lines {
        let mut all = Vec::new();
        f.read_to_end(&mut all).map_err(io)?;
        let text = String::from_utf8_lossy(&all);
        let v: Vec<&str> = text.lines().collect();
        for l in &v[v.len().saturating_sub(n)..] {
            writeln!(out, "{l}").map_err(io)?;
        }
    } else {
        std::io::copy(&mut f, &mut out).map_err(io)?;
    }
    out.flush().map_err(io)?;
    if !follow {
        return Ok(());
    }
    let mut pos = f.stream_position().map_err(io)?;
    loop {
        let len = f.metadata().map_err(io)?.len();
        if len < pos {
            pos = 0; // truncated (rotated): start over
        }
        if len > pos {
            f.seek(SeekFrom::Start(pos)).map_err(io)?;
            let mut buf = Vec::new();
            (&mut f).take(len - pos).read_to_end(&mut buf).map_err(io)?;
            pos += buf.len() as u64;
            out.write_all(&buf).map_err(io)?;
            out.flush().map_err(io)?;
        } else if banger::find_pid::find_for_record(rec).is_none() {
            return Ok(());
        } else {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Where `banger-vm ssh` keeps a VM's pinned host keys (removed with the VM).
pub fn known_hosts_path(state_dir: &std::path::Path, name: &str) -> PathBuf {
    state_dir.join("ssh").join("known_hosts.d").join(name)
}

/// banger's known_hosts for one VM: its host keys from the record, under the alias NAME.
fn known_hosts(cfg: &Config, rec: &Record) -> Result<PathBuf, StepError> {
    let name = record::name(rec).unwrap_or("?");
    let keys: Vec<String> = section::get::<Snap>(rec)?
        .and_then(|s| s.host_keys)
        .map(|m| m.into_values().collect())
        .unwrap_or_default();
    if keys.is_empty() {
        return Err(StepError::msg(
            "no_host_key",
            format!(
                "{name}'s record has no SSH host key (snap.host_keys), and banger does not trust on first use: recreate its disk with 'banger-snap create'"
            ),
        ));
    }
    let path = known_hosts_path(&cfg.state_dir, name);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| StepError::new("known_hosts", &e))?;
    }
    let mut text = String::new();
    for k in keys {
        // Drop the key's comment: "type base64 [comment]".
        let mut parts = k.split_whitespace();
        if let (Some(t), Some(b)) = (parts.next(), parts.next()) {
            text.push_str(&format!("{name} {t} {b}\n"));
        }
    }
    banger::store::write_atomic(&path, text.as_bytes(), 0o644)
        .map_err(|e| StepError::new("known_hosts", &e))?;
    Ok(path)
}

/// The ssh command line for a VM, ending with the destination.
pub fn ssh_command(cfg: &Config, rec: &Record) -> Result<std::process::Command, StepError> {
    let name = record::name(rec).unwrap_or("?");
    // A guest that does not run answers nothing: say so now, rather than after ssh's timeout.
    if banger::find_pid::find_for_record(rec).is_none() {
        return Err(StepError::msg(
            "not_running",
            format!(
                "{name} is not running (it is {}): start it with 'banger up {name}'",
                crate::list::recorded_state(rec)
            ),
        ));
    }
    let ip = section::get::<Net>(rec)?
        .and_then(|n| n.ip)
        .ok_or_else(|| {
            StepError::msg(
                "no_network",
                format!(
                    "{name} has no network: 'banger down {name} && banger up {name}' gives it one"
                ),
            )
        })?;
    let kh = known_hosts(cfg, rec)?;
    let mut cmd = std::process::Command::new("ssh");
    cmd.arg("-o")
        .arg(format!("UserKnownHostsFile={}", kh.display()))
        .args([
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "GlobalKnownHostsFile=/dev/null",
        ])
        .arg("-o")
        .arg(format!("HostKeyAlias={name}"))
        .args(["-o", "ConnectTimeout=30", "-o", "LogLevel=ERROR"]);
    if let Some(key) = section::get::<Spec>(rec)?.and_then(|s| s.ssh_key) {
        cmd.args(["-o", "IdentitiesOnly=yes", "-i", &key]);
    }
    cmd.arg(format!("root@{ip}"));
    Ok(cmd)
}

/// Quotes one word for the remote POSIX shell, which re-splits ssh's joined command line.
pub fn shell_quote(word: &str) -> String {
    let safe = !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_./=:,+-@%".contains(&b));
    if safe {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

/// Replaces this process with ssh (so its exit code is the command's). For `exec` the words
/// are quoted so the guest runs exactly that argv; for `ssh` they go as ssh would send them.
pub fn exec_ssh(cfg: &Config, rec: &Record, args: &[String], need_cmd: bool) -> StepError {
    if need_cmd && args.is_empty() {
        return StepError::msg("usage", "exec needs a command after --");
    }
    let mut cmd = match ssh_command(cfg, rec) {
        Ok(c) => c,
        Err(e) => return e,
    };
    if need_cmd {
        let line: Vec<String> = args.iter().map(|a| shell_quote(a)).collect();
        cmd.arg("--").arg(line.join(" "));
    } else if !args.is_empty() {
        cmd.arg("--").args(args);
    }
    let err = cmd.exec();
    eprintln!("{BIN}: cannot run ssh (install openssh-client)");
    StepError::new("ssh", &err)
}

#[cfg(test)]
mod tests {
    use super::shell_quote;

    #[test]
    fn quoting_keeps_the_argv() {
        assert_eq!(shell_quote("uname"), "uname");
        assert_eq!(shell_quote("-r"), "-r");
        assert_eq!(shell_quote("exit 3"), "'exit 3'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(shell_quote("$HOME;rm"), "'$HOME;rm'");
        // What a POSIX shell makes of the quoted line is the original argv.
        let argv = [
            "sh",
            "-c",
            "printf '%s|' \"$@\"",
            "x",
            "a b",
            "it's",
            "",
            "$HOME",
        ];
        let line: Vec<String> = argv.iter().map(|a| shell_quote(a)).collect();
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(line.join(" "))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "a b|it's||$HOME|");
    }
}
