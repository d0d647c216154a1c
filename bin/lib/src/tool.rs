//! Running the host's tools (mkfs.ext4, debugfs, cp, ssh-keygen...): stdout on success; on
//! failure the command line and its stderr, so the user sees what the tool said.

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
    let mut command = program;
    for a in cmd.get_args() {
        command.push(' ');
        command.push_str(&a.to_string_lossy());
    }
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
}
