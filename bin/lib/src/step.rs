//! The loop every step binary runs over its records.
//!
//! Input is either VM names (each record loaded from the store) or records on stdin. For
//! each record: one that carries `error` is forwarded unchanged; one that is malformed gets
//! an `error`; otherwise the step's function runs under the VM's lock, the result is saved
//! to the store (atomically) and then emitted. A failure is printed for people on stderr,
//! attached to the record as `error`, emitted, and the run goes on; the exit code is 1 if
//! any record failed (or arrived failed), 0 otherwise.

use crate::cli;
use crate::record::{self, Reader, Record, Writer};
use crate::store::{Store, StoreError};
use std::error::Error;
use std::io::BufRead;
use std::process::ExitCode;

/// Where the records come from.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// VM names given on the command line: records come from the store.
    Names(Vec<String>),
    /// Records as JSON lines on stdin.
    Stdin,
}

impl Input {
    /// Names if any were given, else stdin.
    pub fn from_names(names: Vec<String>) -> Input {
        if names.is_empty() {
            Input::Stdin
        } else {
            Input::Names(names)
        }
    }
}

/// What to do with a record after the step's function succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Save to the store, then emit (a step that changed the record).
    Save,
    /// Emit without saving (a read-only step such as `status`).
    Emit,
    /// Neither (the record was consumed, e.g. by `rm`).
    Consume,
}

/// A step's failure on one record.
#[derive(Debug, Clone)]
pub struct StepError {
    pub code: String,
    /// The error chain, outermost first.
    pub chain: Vec<String>,
}

impl StepError {
    /// From any error: the code plus the full chain.
    pub fn new(code: &str, err: &dyn Error) -> StepError {
        StepError {
            code: code.into(),
            chain: cli::chain(err),
        }
    }
    /// From a message.
    pub fn msg(code: &str, message: impl Into<String>) -> StepError {
        StepError {
            code: code.into(),
            chain: vec![message.into()],
        }
    }
    /// The message for the record's `error.message`: the chain on one line.
    pub fn message(&self) -> String {
        self.chain.join(": ")
    }
    fn print(&self, bin: &str, name: &str) {
        let mut it = self.chain.iter();
        if let Some(first) = it.next() {
            eprintln!("{bin}: error: {name}: {first}");
        }
        for c in it {
            eprintln!("  caused by: {c}");
        }
    }
}

impl From<StoreError> for StepError {
    fn from(e: StoreError) -> StepError {
        let code = match e {
            StoreError::NotFound { .. } => "not_found",
            StoreError::Exists { .. } => "exists",
            StoreError::BadName { .. } => "invalid_name",
            _ => "store",
        };
        StepError::new(code, &e)
    }
}

/// One step binary's identity.
pub struct Step<'a> {
    /// The binary, for messages (`banger-net`).
    pub bin: &'a str,
    /// The step's name in `error.step` (`net`).
    pub step: &'a str,
    pub store: &'a Store,
}

impl Step<'_> {
    /// Runs `f` over every input record. See the module docs for the rules.
    pub fn run<F>(&self, input: Input, f: F) -> ExitCode
    where
        F: FnMut(&mut Record) -> Result<Action, StepError>,
    {
        let stdin = std::io::stdin();
        self.run_with(input, stdin.lock(), Writer::stdout(), f)
    }

    /// [`Step::run`] with explicit streams (for tests and benchmarks).
    pub fn run_with<R, W, F>(&self, input: Input, r: R, mut w: Writer<W>, mut f: F) -> ExitCode
    where
        R: BufRead,
        W: std::io::Write,
        F: FnMut(&mut Record) -> Result<Action, StepError>,
    {
        let mut failed = false;
        let emit = |w: &mut Writer<W>, rec: &Record| -> bool {
            match w.emit(rec) {
                Ok(()) => true,
                Err(e) => {
                    cli::report(self.bin, &e);
                    false
                }
            }
        };
        match input {
            Input::Names(names) => {
                for name in names {
                    let mut rec = match self.load(&name) {
                        Ok(r) => r,
                        Err(e) => {
                            failed = true;
                            e.print(self.bin, &name);
                            let mut rec = record::new("vm", &name);
                            record::set_error(&mut rec, self.step, &e.code, &e.message());
                            if !emit(&mut w, &rec) {
                                return ExitCode::from(cli::EXIT_FAILURE);
                            }
                            continue;
                        }
                    };
                    let ok = self.one(&mut rec, &mut f);
                    failed |= !ok.0;
                    if ok.1 && !emit(&mut w, &rec) {
                        return ExitCode::from(cli::EXIT_FAILURE);
                    }
                }
            }
            Input::Stdin => {
                for item in Reader::new(r) {
                    let mut rec = match item {
                        Ok((_, rec)) => rec,
                        Err(e) => {
                            failed = true;
                            cli::report(self.bin, &e);
                            if matches!(e, record::ReadError::Io(_)) {
                                break;
                            }
                            continue;
                        }
                    };
                    if record::has_error(&rec) {
                        failed = true;
                        if !emit(&mut w, &rec) {
                            return ExitCode::from(cli::EXIT_FAILURE);
                        }
                        continue;
                    }
                    let ok = self.one(&mut rec, &mut f);
                    failed |= !ok.0;
                    if ok.1 && !emit(&mut w, &rec) {
                        return ExitCode::from(cli::EXIT_FAILURE);
                    }
                }
            }
        }
        ExitCode::from(if failed {
            cli::EXIT_FAILURE
        } else {
            cli::EXIT_OK
        })
    }

    fn load(&self, name: &str) -> Result<Record, StepError> {
        let _g = self.store.lock_vm(name)?;
        Ok(self.store.load(name)?)
    }

    /// Runs the step on one record. Returns (succeeded, emit it).
    fn one<F>(&self, rec: &mut Record, f: &mut F) -> (bool, bool)
    where
        F: FnMut(&mut Record) -> Result<Action, StepError>,
    {
        let name = record::name(rec).unwrap_or("?").to_string();
        if let Err(why) = record::check_envelope(rec, "vm") {
            let e = StepError::msg("bad_record", why);
            e.print(self.bin, &name);
            record::set_error(rec, self.step, &e.code, &e.message());
            return (false, true);
        }
        let result = self
            .store
            .lock_vm(&name)
            .map_err(StepError::from)
            .and_then(|_g| {
                let action = f(rec)?;
                if action == Action::Save {
                    self.store.save(rec)?;
                }
                Ok(action)
            });
        match result {
            Ok(action) => (true, action != Action::Consume),
            Err(e) => {
                e.print(self.bin, &name);
                record::set_error(rec, self.step, &e.code, &e.message());
                (false, true)
            }
        }
    }
}

/// Loads the configuration and opens the store, or reports why not (exit 1).
pub fn setup(bin: &str) -> Result<(crate::config::Config, Store), ExitCode> {
    match crate::config::Config::load() {
        Ok(cfg) => {
            let store = Store::from_config(&cfg);
            Ok((cfg, store))
        }
        Err(e) => {
            cli::report(bin, &e);
            Err(ExitCode::from(cli::EXIT_FAILURE))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn store() -> Store {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let d = std::env::temp_dir().join(format!(
            "banger-step-{}-{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&d);
        Store::new(d)
    }

    fn run(
        s: &Store,
        input: &str,
        f: impl FnMut(&mut Record) -> Result<Action, StepError>,
    ) -> (ExitCode, Vec<serde_json::Value>) {
        let step = Step {
            bin: "banger-test",
            step: "test",
            store: s,
        };
        let mut out = Vec::new();
        // run_with consumes the writer; capture through a shared buffer.
        let buf = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
        struct Shared(std::rc::Rc<std::cell::RefCell<Vec<u8>>>);
        impl std::io::Write for Shared {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.borrow_mut().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let code = step.run_with(
            Input::Stdin,
            input.as_bytes(),
            Writer::new(Shared(buf.clone())),
            f,
        );
        for line in String::from_utf8(buf.borrow().clone()).unwrap().lines() {
            out.push(serde_json::from_str(line).unwrap());
        }
        (code, out)
    }

    #[test]
    fn saves_then_emits_and_keeps_unknown_fields() {
        let s = store();
        let input = r#"{"v":1,"type":"vm","name":"a","custom":{"k":[1]}}"#;
        let (code, out) = run(&s, input, |r| {
            r.insert("net".into(), json!({"ip": "10.0.0.2"}));
            Ok(Action::Save)
        });
        assert_eq!(code, ExitCode::from(0));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0]["custom"], json!({"k": [1]}));
        assert_eq!(s.load("a").unwrap()["net"]["ip"], "10.0.0.2");
        let _ = std::fs::remove_dir_all(s.root());
    }

    #[test]
    fn error_records_are_forwarded_untouched_and_fail_the_run() {
        let s = store();
        let input =
            r#"{"v":1,"type":"vm","name":"a","error":{"step":"snap","code":"x","message":"m"}}"#;
        let mut called = false;
        let (code, out) = run(&s, input, |_| {
            called = true;
            Ok(Action::Save)
        });
        assert!(!called);
        assert_eq!(code, ExitCode::from(1));
        assert_eq!(
            out[0],
            serde_json::from_str::<serde_json::Value>(input).unwrap()
        );
        assert!(!s.exists("a"));
    }

    #[test]
    fn a_failure_marks_the_record_and_goes_on() {
        let s = store();
        let input =
            "{\"v\":1,\"type\":\"vm\",\"name\":\"a\"}\n{\"v\":1,\"type\":\"vm\",\"name\":\"b\"}\n";
        let (code, out) = run(&s, input, |r| {
            if record::name(r) == Some("a") {
                Err(StepError::msg("boom", "it broke"))
            } else {
                Ok(Action::Save)
            }
        });
        assert_eq!(code, ExitCode::from(1));
        assert_eq!(out.len(), 2);
        assert_eq!(
            out[0]["error"],
            json!({"step":"test","code":"boom","message":"it broke"})
        );
        assert!(out[1].get("error").is_none());
        assert!(!s.exists("a"), "a failed step saves nothing");
        assert!(s.exists("b"));
        let _ = std::fs::remove_dir_all(s.root());
    }

    #[test]
    fn malformed_lines_and_envelopes() {
        let s = store();
        let input = "nope\n{\"v\":1,\"type\":\"image\",\"name\":\"a\"}\n{\"v\":1,\"type\":\"vm\",\"name\":\"../x\"}\n";
        let (code, out) = run(&s, input, |_| Ok(Action::Save));
        assert_eq!(code, ExitCode::from(1));
        assert_eq!(out.len(), 2, "the non-JSON line is reported, not emitted");
        assert_eq!(out[0]["error"]["code"], "bad_record");
        assert_eq!(out[1]["error"]["code"], "invalid_name");
        let _ = std::fs::remove_dir_all(s.root());
    }
}
