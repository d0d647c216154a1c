//! Running the host's tools (mkfs.ext4, debugfs, cp, ssh-keygen...): stdout on success; on
//! failure the command line and its stderr, so the user sees what the tool said. A long
//! tool ([`run_with_progress`]: debootstrap) has its stdout and stderr read as one stream,
//! shown as progress while it runs and its last lines kept for the error (debootstrap
//! writes its reasons on stdout).

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error("cannot run {program} (install the {package} package)")]
    Spawn {
        program: String,
        package: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{command} failed: {stderr}")]
    Failed { command: String, stderr: String },
}

/// Runs `cmd` with stdin from /dev/null and returns its stdout.
pub fn output(cmd: &mut Command, package: &'static str) -> Result<String, ToolError> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|source| ToolError::Spawn {
            program: program.clone(),
            package,
            source,
        })?;
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    let command = command_line(cmd);
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    Err(ToolError::Failed {
        command,
        stderr: if stderr.is_empty() {
            out.status.to_string()
        } else {
            stderr
        },
    })
}

/// How many of a long tool's last output lines an error quotes.
const TAIL_LINES: usize = 12;

fn command_line(cmd: &Command) -> String {
    let mut command = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        command.push(' ');
        command.push_str(&a.to_string_lossy());
    }
    command
}

/// Runs a long tool with stdin from /dev/null and its stdout and stderr as one stream: each
/// line goes to `progress`, the last ones are kept, and on failure they are the error's text
/// (with the exit status), whichever stream the tool wrote its reason on.
pub fn run_with_progress(
    cmd: &mut Command,
    package: &'static str,
    progress: &mut crate::progress::Progress,
) -> Result<(), ToolError> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let shown = command_line(cmd);
    let spawn_err = |source| ToolError::Spawn {
        program: program.clone(),
        package,
        source,
    };
    let (r, w) = rustix::pipe::pipe().map_err(|e| spawn_err(e.into()))?;
    let w2 = w.try_clone().map_err(spawn_err)?;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::from(w))
        .stderr(Stdio::from(w2))
        .spawn()
        .map_err(spawn_err)?;
    // The parent's copies of the write end are gone with `cmd`'s Stdio: reading ends when
    // the tool (and anything it left running with the pipe) closes it.
    drop(std::mem::replace(cmd, Command::new(&program)));
    let mut tail: VecDeque<String> = VecDeque::with_capacity(TAIL_LINES + 1);
    let mut reader = BufReader::new(std::fs::File::from(r));
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let line = String::from_utf8_lossy(&buf).trim_end().to_string();
        progress.line(&line);
        if !line.trim().is_empty() {
            tail.push_back(line);
            if tail.len() > TAIL_LINES {
                tail.pop_front();
            }
        }
    }
    let status = child.wait().map_err(spawn_err)?;
    if status.success() {
        return Ok(());
    }
    let said: Vec<String> = tail.into_iter().collect();
    Err(ToolError::Failed {
        command: shown,
        stderr: if said.is_empty() {
            status.to_string()
        } else {
            format!("{status}; its last words:\n    {}", said.join("\n    "))
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stdout_stderr_and_missing_programs() {
        assert_eq!(
            output(Command::new("echo").arg("hi"), "coreutils").unwrap(),
            "hi\n"
        );
        let e = output(
            Command::new("sh").args(["-c", "echo oops >&2; exit 3"]),
            "dash",
        )
        .unwrap_err();
        assert_eq!(e.to_string(), "sh -c echo oops >&2; exit 3 failed: oops");
        let e = output(Command::new("sh").args(["-c", "exit 4"]), "dash").unwrap_err();
        assert_eq!(e.to_string(), "sh -c exit 4 failed: exit status: 4");
        let e = output(&mut Command::new("/nonexistent/tool"), "nothing").unwrap_err();
        assert!(e
            .to_string()
            .starts_with("cannot run /nonexistent/tool (install the nothing package)"));
    }

    /// Issue 13, item 5: a tool that says why on stdout (debootstrap) is quoted.
    #[test]
    fn a_long_tool_is_quoted_from_either_stream() {
        let mut p = crate::progress::Progress::start("banger-test", "a tool");
        let e = run_with_progress(
            Command::new("sh").args([
                "-c",
                "echo I: Retrieving; echo 'E: No such script: nosuchsuite'; echo warn >&2; exit 1",
            ]),
            "dash",
            &mut p,
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("sh -c echo I: Retrieving;"), "{e}");
        assert!(e.contains("failed: exit status: 1; its last words:"), "{e}");
        assert!(e.contains("E: No such script: nosuchsuite"), "{e}");
        assert!(e.contains("warn"), "{e}");
        p.finish(false);
        let mut p = crate::progress::Progress::start("banger-test", "a tool");
        assert!(run_with_progress(Command::new("true").arg("x"), "coreutils", &mut p).is_ok());
        p.finish(true);
        let e = run_with_progress(
            &mut Command::new("/nonexistent/tool"),
            "nothing",
            &mut crate::progress::Progress::start("b", "w"),
        )
        .unwrap_err();
        assert!(e
            .to_string()
            .starts_with("cannot run /nonexistent/tool (install the nothing package)"));
    }
}
