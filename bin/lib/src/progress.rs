//! Progress of long work (a debootstrap, a copy of a large image) on stderr, for people.
//!
//! On a terminal: one line, rewritten in place (what the tool is doing now, how long it has
//! run, or how much of a copy is done), cleared when the work ends. Otherwise (a log, a CI
//! job): a line when its phase changes (a tool's output line whose
//! first words differ from the last one shown), one at least every 30 s while it runs, and
//! one when it ends, so a log shows where the time went without the tool's every line.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// How often a terminal line is redrawn, at most.
const REDRAW: Duration = Duration::from_millis(100);
/// A log gets a line at least this often while the work runs.
const HEARTBEAT: Duration = Duration::from_secs(30);

pub struct Progress {
    bin: String,
    what: String,
    tty: bool,
    start: Instant,
    drawn: Option<Instant>,
    logged: Instant,
    phase: String,
    width: usize,
}

/// The first two words of a tool's line (`I: Retrieving`), its phase.
fn phase_of(line: &str) -> String {
    line.split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

fn mib(b: u64) -> u64 {
    b >> 20
}

impl Progress {
    /// Starts the progress of `what` (the caller has said what starts).
    pub fn start(bin: &str, what: &str) -> Progress {
        let tty = std::io::stderr().is_terminal();
        let width = rustix::termios::tcgetwinsize(std::io::stderr())
            .map(|w| usize::from(w.ws_col))
            .ok()
            .filter(|w| *w >= 20)
            .unwrap_or(80);
        Progress {
            bin: bin.into(),
            what: what.into(),
            tty,
            start: Instant::now(),
            drawn: None,
            logged: Instant::now(),
            phase: String::new(),
            width,
        }
    }

    fn draw(&mut self, text: &str, force: bool) {
        if self.drawn.is_some_and(|d| d.elapsed() < REDRAW) && !force {
            return;
        }
        self.drawn = Some(Instant::now());
        let mut line = format!(
            "{}: {} ({} s): {}",
            self.bin,
            self.what,
            self.start.elapsed().as_secs(),
            text.trim()
        );
        if line.chars().count() >= self.width {
            line = line.chars().take(self.width.saturating_sub(2)).collect();
        }
        let mut e = std::io::stderr().lock();
        let _ = write!(e, "\r\x1b[K{line}");
        let _ = e.flush();
    }

    /// A line of the tool's own output.
    pub fn line(&mut self, line: &str) {
        let line = line.trim();
        if line.is_empty() {
            return;
        }
        if self.tty {
            self.draw(line, false);
            return;
        }
        let phase = phase_of(line);
        if phase != self.phase || self.logged.elapsed() >= HEARTBEAT {
            eprintln!(
                "{}: {} ({} s): {line}",
                self.bin,
                self.what,
                self.start.elapsed().as_secs()
            );
            self.phase = phase;
            self.logged = Instant::now();
        }
    }

    /// `done` of `total` bytes.
    pub fn bytes(&mut self, done: u64, total: u64) {
        let pct = (done.saturating_mul(100)).checked_div(total).unwrap_or(100);
        let text = format!("{pct}% ({} of {} MiB)", mib(done), mib(total));
        if self.tty {
            self.draw(&text, done >= total);
        } else if self.phase.is_empty() || self.logged.elapsed() >= HEARTBEAT {
            self.phase = "bytes".into();
            eprintln!("{}: {}: {text}", self.bin, self.what);
            self.logged = Instant::now();
        }
    }

    /// Ends the progress: clears the terminal line, or logs how long it took.
    pub fn finish(self, ok: bool) {
        let secs = self.start.elapsed().as_secs_f64();
        if self.tty {
            if self.drawn.is_some() {
                eprint!("\r\x1b[K");
            }
            if ok && secs >= 1.0 {
                eprintln!("{}: {} took {secs:.0} s", self.bin, self.what);
            }
        } else {
            eprintln!(
                "{}: {} {} after {secs:.1} s",
                self.bin,
                self.what,
                if ok { "done" } else { "failed" }
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_are_the_first_words() {
        assert_eq!(phase_of("I: Retrieving libc6 2.36-9"), "I: Retrieving");
        assert_eq!(phase_of("I: Retrieving bash 5.2"), "I: Retrieving");
        assert_eq!(phase_of("  E: No such script"), "E: No");
        assert_eq!(phase_of(""), "");
    }
}
