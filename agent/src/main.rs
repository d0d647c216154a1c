//! banger-agent: the guest agent (see the library's documentation and banger-agent(8)).

use banger_agent::proto::PORT;
use banger_agent::server::RealSystem;
use std::process::ExitCode;
use std::sync::Arc;

const HELP: &str = "\
banger-agent: banger's guest agent on vsock (hello, exec, files, identity, shutdown)

Usage: banger-agent [OPTIONS]

Runs inside a banger guest as root and listens on vsock port 1023 for the host (CID 2)
only. Started by the guest's init (banger-init, a systemd unit), or as the kernel's init=
(it then forks itself off and execs the image's init, named by banger_init=PATH).

Options:
      --port N   listen on vsock port N instead of 1023
      --stdio    serve one connection on stdin (a connected socket), then exit (tests)
  -h, --help     print this help and exit
  -V, --version  print the version and exit

See banger-agent(8).
";

enum Mode {
    Listen(u32),
    Stdio,
}

fn parse_args() -> Result<Mode, lexopt::Error> {
    use lexopt::prelude::*;
    let mut p = lexopt::Parser::from_env();
    let mut mode = Mode::Listen(PORT);
    while let Some(arg) = p.next()? {
        match arg {
            Short('h') | Long("help") => {
                print!("{HELP}");
                std::process::exit(0);
            }
            Short('V') | Long("version") => {
                println!("banger-agent {}", banger_agent::server::VERSION);
                std::process::exit(0);
            }
            Long("port") => mode = Mode::Listen(p.value()?.parse()?),
            Long("stdio") => mode = Mode::Stdio,
            _ => return Err(arg.unexpected()),
        }
    }
    Ok(mode)
}

/// Serves until the process ends; returns only when the listener cannot be set up.
fn listen(port: u32) -> ExitCode {
    match banger_agent::listen::run(port, Arc::new(RealSystem)) {
        Ok(never) => match never {},
        Err(e) => {
            eprintln!("banger-agent: error: cannot listen on vsock port {port}: {e}");
            ExitCode::from(1)
        }
    }
}

fn main() -> ExitCode {
    // As the kernel's init: fork the agent off, exec the image's init.
    if rustix::process::getpid().is_init() {
        banger_agent::hook::run(|| {
            listen(PORT);
        });
    }
    let mode = match parse_args() {
        Ok(m) => m,
        Err(e) => {
            eprintln!("banger-agent: usage error: {e}\nTry 'banger-agent --help'.");
            return ExitCode::from(2);
        }
    };
    match mode {
        Mode::Listen(port) => listen(port),
        Mode::Stdio => {
            let conn = match rustix::io::fcntl_dupfd_cloexec(std::io::stdin(), 3) {
                Ok(fd) => banger_agent::conn::Conn::new(fd),
                Err(e) => {
                    eprintln!("banger-agent: error: stdin: {e}");
                    return ExitCode::from(1);
                }
            };
            banger_agent::server::serve(conn, &RealSystem);
            ExitCode::SUCCESS
        }
    }
}
