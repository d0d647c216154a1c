//! The loop every step binary runs over its records.
//!
//! Input is either VM names or records on stdin; either way a record only *names* a VM: the
//! step works on the stored record, read under the VM's lock, and writes back only the
//! sections it owns ([`Step::owns`]). banger's sections on stdin never overwrite the store's;
//! fields banger does not know pass through to stdout (they are not stored). A VM that is not
//! in the store is refused (only `banger-vm new` makes VMs). For each record: one that
//! carries `error` is forwarded unchanged; one that is malformed gets an `error` naming its
//! line; otherwise the step's function runs under the VM's lock, the result is saved to the
//! store (atomically) and then emitted. A failure is printed for people on stderr, attached
//! to the record as `error`, emitted, and the run goes on; the exit code is 1 if any record
//! failed (or arrived failed, or stdin held no record at all), 0 otherwise.

use crate::cli;
use crate::record::{self, Reader, Record, Writer};
use crate::section::{self, BANGER_KEYS};
use crate::store::{Store, StoreError};
use std::error::Error;
use std::io::{BufRead, IsTerminal};
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
    /// Checks what a step was given before it does anything, for a usage error (exit 2): an
    /// invalid VM name, or no name with stdin a terminal (a step would wait there silently
    /// for records a person never types).
    pub fn check(&self, bin: &str) -> Result<(), ExitCode> {
        let problem = match self {
            Input::Names(names) => names.iter().find(|n| !crate::store::valid_name(n)).map(|n| {
                format!("invalid VM name {n:?}: use 1-32 characters a-z, 0-9 and '-', starting with a letter")
            }),
            Input::Stdin if std::io::stdin().is_terminal() => Some(
                "no VM NAME given, and stdin is a terminal: name the VMs, or pipe records in (banger-vm list | ...)".into(),
            ),
            Input::Stdin => None,
        };
        match problem {
            None => Ok(()),
            Some(p) => {
                eprintln!("{bin}: usage error: {p}");
                eprintln!("Try '{bin} --help'.");
                Err(ExitCode::from(cli::EXIT_USAGE))
            }
        }
    }

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
    /// Save the step's sections to the store, then emit (a step that changed the record).
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
    /// Prints the error for people: `BIN: error: WHAT: first` then `caused by:` lines.
    pub fn print(&self, bin: &str, what: &str) {
        let mut it = self.chain.iter();
        if let Some(first) = it.next() {
            eprintln!("{bin}: error: {what}: {first}");
        }
        for c in it {
            eprintln!("  caused by: {c}");
        }
    }
}

impl From<StoreError> for StepError {
    fn from(e: StoreError) -> StepError {
        StepError::from_store(&e)
    }
}

impl StepError {
    /// A store error with its code (`not_found`, `damaged`, ...).
    pub fn from_store(e: &StoreError) -> StepError {
        let code = match e {
            StoreError::NotFound { .. } => "not_found",
            StoreError::Exists { .. } => "exists",
            StoreError::BadName { .. } => "invalid_name",
            StoreError::Damaged { .. } => "damaged",
            StoreError::TooLarge { .. } => "too_large",
            _ => "store",
        };
        StepError::new(code, e)
    }
}

impl From<section::SectionError> for StepError {
    fn from(e: section::SectionError) -> StepError {
        StepError::new("bad_record", &e)
    }
}

/// The record a step works on: the stored one, plus the fields of the record on stdin that
/// are not banger's (they pass through; the store's sections always win).
pub fn merge(stored: &Record, incoming: Option<&Record>) -> Record {
    let mut out = stored.clone();
    for (k, v) in incoming.into_iter().flatten() {
        if !BANGER_KEYS.contains(&k.as_str()) {
            out.insert(k.clone(), v.clone());
        }
    }
    out
}

/// The stored record with the sections in `owns` taken from `work` (set, or removed when
/// `work` has none). A record left without a jail never says it runs: when the jail goes,
/// `vm.state` `running`/`paused` becomes `stopped`.
fn apply_owned(stored: &Record, work: &Record, owns: &[&str]) -> Record {
    let mut out = stored.clone();
    for k in owns {
        match work.get(*k) {
            Some(v) if !v.is_null() => {
                out.insert((*k).to_string(), v.clone());
            }
            _ => {
                out.shift_remove(*k);
            }
        }
    }
    if owns.contains(&"jail") && !out.contains_key("jail") {
        if let Ok(Some(mut vm)) = section::get::<section::Vm>(&out) {
            if matches!(vm.state.as_deref(), Some("running" | "paused")) {
                vm.state = Some("stopped".into());
                vm.stopped_at = Some(record::now_rfc3339());
                vm.stopped_by = Some("teardown".into());
                section::put(&mut out, &vm);
            }
        }
    }
    out
}

/// One step binary's identity.
pub struct Step<'a> {
    /// The binary, for messages (`banger-net`).
    pub bin: &'a str,
    /// The step's name in `error.step` (`net`).
    pub step: &'a str,
    pub store: &'a Store,
    /// The record sections this step writes (`["net"]`). Only these are saved.
    pub owns: &'a [&'a str],
}

/// What became of one record.
struct Outcome {
    ok: bool,
    emit: Option<Record>,
}

impl Step<'_> {
    /// Runs `f` over every input record. See the module docs for the rules. An invalid name,
    /// or no name with stdin a terminal, is a usage error (exit 2) before anything is done.
    pub fn run<F>(&self, input: Input, f: F) -> ExitCode
    where
        F: FnMut(&mut Record) -> Result<Action, StepError>,
    {
        if let Err(code) = input.check(self.bin) {
            return code;
        }
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
        let mut emit = |w: &mut Writer<W>, out: Outcome| -> bool {
            failed |= !out.ok;
            match out.emit.map(|rec| w.emit(&rec)) {
                Some(Err(e)) => {
                    cli::report(self.bin, &e);
                    false
                }
                _ => true,
            }
        };
        match input {
            Input::Names(names) => {
                for name in names {
                    let out = self.one(&name, None, &mut f);
                    if !emit(&mut w, out) {
                        return ExitCode::from(cli::EXIT_FAILURE);
                    }
                }
            }
            Input::Stdin => {
                let mut records = 0usize;
                for item in Reader::new(r) {
                    records += 1;
                    let (line, mut rec) = match item {
                        Ok(x) => x,
                        Err(e) => {
                            emit(
                                &mut w,
                                Outcome {
                                    ok: false,
                                    emit: None,
                                },
                            );
                            cli::report(self.bin, &e);
                            if matches!(e, record::ReadError::Io(_)) {
                                break;
                            }
                            continue;
                        }
                    };
                    if record::has_error(&rec) {
                        // Failed upstream: forwarded unchanged, so the pipeline names the step.
                        if !emit(
                            &mut w,
                            Outcome {
                                ok: false,
                                emit: Some(rec),
                            },
                        ) {
                            return ExitCode::from(cli::EXIT_FAILURE);
                        }
                        continue;
                    }
                    let out = match record::check_envelope(&rec, "vm") {
                        Ok(()) => {
                            let name = record::name(&rec).unwrap_or_default().to_string();
                            self.one(&name, Some(rec), &mut f)
                        }
                        Err(why) => {
                            let e = StepError::msg("bad_record", why);
                            e.print(self.bin, &format!("line {line}"));
                            record::set_error(
                                &mut rec,
                                self.step,
                                &e.code,
                                &format!("line {line}: {}", e.message()),
                            );
                            Outcome {
                                ok: false,
                                emit: Some(rec),
                            }
                        }
                    };
                    if !emit(&mut w, out) {
                        return ExitCode::from(cli::EXIT_FAILURE);
                    }
                }
                if records == 0 {
                    eprintln!(
                        "{}: error: no records on stdin (give VM names, or pipe records in)",
                        self.bin
                    );
                    failed = true;
                }
            }
        }
        ExitCode::from(if failed {
            cli::EXIT_FAILURE
        } else {
            cli::EXIT_OK
        })
    }

    fn fail(&self, name: &str, mut rec: Record, e: StepError) -> Outcome {
        e.print(self.bin, name);
        record::set_error(&mut rec, self.step, &e.code, &e.message());
        Outcome {
            ok: false,
            emit: Some(rec),
        }
    }

    /// Runs the step on the VM `name` (named by `incoming` when it came on stdin), with its
    /// timing line when `BANGER_TIMING` asks for one.
    fn one<F>(&self, name: &str, incoming: Option<Record>, f: &mut F) -> Outcome
    where
        F: FnMut(&mut Record) -> Result<Action, StepError>,
    {
        let timing = crate::timing::Record::start();
        let out = self.one_now(name, incoming, f);
        timing.finish(self.bin, name);
        out
    }

    fn one_now<F>(&self, name: &str, incoming: Option<Record>, f: &mut F) -> Outcome
    where
        F: FnMut(&mut Record) -> Result<Action, StepError>,
    {
        let fallback = || incoming.clone().unwrap_or_else(|| record::new("vm", name));
        let _guard = match crate::timing::span("lock", || self.store.lock_existing(name)) {
            Ok(g) => g,
            Err(e) => return self.fail(name, fallback(), e.into()),
        };
        let stored = match self.store.load(name) {
            Ok(r) => r,
            Err(e) => return self.fail(name, fallback(), e.into()),
        };
        let mut work = merge(&stored, incoming.as_ref());
        let action = match f(&mut work) {
            Ok(a) => a,
            Err(e) => return self.fail(name, merge(&stored, incoming.as_ref()), e),
        };
        match action {
            Action::Consume => Outcome {
                ok: true,
                emit: None,
            },
            Action::Emit => Outcome {
                ok: true,
                emit: Some(work),
            },
            Action::Save => {
                let new = apply_owned(&stored, &work, self.owns);
                let out = merge(&new, incoming.as_ref());
                // The store holds this very record already (a step run again that found
                // everything in place): nothing to write, nothing to sync.
                let save = || {
                    if new == stored {
                        Ok(())
                    } else {
                        crate::timing::span("save", || self.store.save(&new))
                    }
                };
                match save() {
                    Ok(()) => Outcome {
                        ok: true,
                        emit: Some(out),
                    },
                    Err(e) => {
                        let mut chain = vec![format!(
                            "the {} step's work is done, but the record could not be saved, so the store still shows {name} as it was before: run the step again once the state store is writable (it picks up what was done)",
                            self.step
                        )];
                        chain.extend(cli::chain(&e));
                        self.fail(
                            name,
                            out,
                            StepError {
                                code: "save_failed".into(),
                                chain,
                            },
                        )
                    }
                }
            }
        }
    }
}

/// Loads the configuration and opens the store, or reports why not (exit 1).
pub fn setup(bin: &str) -> Result<(crate::config::Config, Store), ExitCode> {
    // A VM lock handed down by banger-reconcile must not leak into anything this step starts.
    crate::atomic::seal_inherited_lock();
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

    struct Clean(Store);
    impl Drop for Clean {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(self.0.root());
        }
    }

    fn with(s: &Store, names: &[&str]) -> Clean {
        for n in names {
            let mut r = record::new("vm", n);
            r.insert("spec".into(), json!({"image": "img"}));
            s.create(&r).unwrap();
        }
        Clean(s.clone())
    }

    fn run_on(
        s: &Store,
        owns: &[&str],
        input: Input,
        text: &[u8],
        f: impl FnMut(&mut Record) -> Result<Action, StepError>,
    ) -> (ExitCode, Vec<serde_json::Value>) {
        let step = Step {
            bin: "banger-test",
            step: "test",
            store: s,
            owns,
        };
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
        let code = step.run_with(input, text, Writer::new(Shared(buf.clone())), f);
        let out = String::from_utf8(buf.borrow().clone())
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        (code, out)
    }

    fn run(
        s: &Store,
        input: &str,
        f: impl FnMut(&mut Record) -> Result<Action, StepError>,
    ) -> (ExitCode, Vec<serde_json::Value>) {
        run_on(s, &["net"], Input::Stdin, input.as_bytes(), f)
    }

    #[test]
    fn saves_its_section_then_emits_and_passes_unknown_fields() {
        let s = store();
        let _c = with(&s, &["a"]);
        let input = r#"{"v":1,"type":"vm","name":"a","custom":{"k":[1]}}"#;
        let (code, out) = run(&s, input, |r| {
            assert_eq!(r["spec"]["image"], "img", "the step sees the stored record");
            r.insert("net".into(), json!({"ip": "10.0.0.2"}));
            Ok(Action::Save)
        });
        assert_eq!(code, ExitCode::from(0));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0]["custom"], json!({"k": [1]}));
        assert_eq!(out[0]["spec"]["image"], "img");
        let stored = s.load("a").unwrap();
        assert_eq!(stored["net"]["ip"], "10.0.0.2");
        assert!(
            stored.get("custom").is_none(),
            "stdin's extra fields are not stored"
        );
    }

    /// A step that finds its section as the store has it writes nothing (issue 14): the
    /// record file is the same file, not a new one renamed over it.
    #[test]
    fn an_unchanged_record_is_not_written_again() {
        use std::os::unix::fs::MetadataExt;
        let s = store();
        let _c = with(&s, &["a"]);
        let path = s.record_path("a");
        let (code, _) = run(&s, r#"{"v":1,"type":"vm","name":"a"}"#, |r| {
            r.insert("net".into(), json!({"ip": "10.0.0.2"}));
            Ok(Action::Save)
        });
        assert_eq!(code, ExitCode::from(0));
        let ino = std::fs::metadata(&path).unwrap().ino();
        let (code, out) = run(&s, r#"{"v":1,"type":"vm","name":"a"}"#, |r| {
            r.insert("net".into(), json!({"ip": "10.0.0.2"}));
            Ok(Action::Save)
        });
        assert_eq!(code, ExitCode::from(0));
        assert_eq!(out[0]["net"]["ip"], "10.0.0.2");
        assert_eq!(std::fs::metadata(&path).unwrap().ino(), ino, "rewritten");
        let (_, _) = run(&s, r#"{"v":1,"type":"vm","name":"a"}"#, |r| {
            r.insert("net".into(), json!({"ip": "10.0.0.3"}));
            Ok(Action::Save)
        });
        assert_ne!(
            std::fs::metadata(&path).unwrap().ino(),
            ino,
            "a change is saved"
        );
        assert_eq!(s.load("a").unwrap()["net"]["ip"], "10.0.0.3");
    }

    /// Item 2 of issue 10: a record on stdin names a VM; its sections never replace the
    /// store's, and a step writes only its own section.
    #[test]
    fn sections_on_stdin_never_overwrite_the_store() {
        let s = store();
        let _c = with(&s, &["beta"]);
        let mut r = s.load("beta").unwrap();
        r.insert("jail".into(), json!({"pid": 42}));
        r.insert("vm".into(), json!({"state": "running"}));
        s.save(&r).unwrap();
        let input =
            r#"{"v":1,"type":"vm","name":"beta","spec":{"image":"evil"},"vm":{"state":"stopped"}}"#;
        let (code, out) = run(&s, input, |r| {
            // A buggy step that touches a section it does not own changes nothing stored.
            r.insert("spec".into(), json!({"image": "also-evil"}));
            r.insert("net".into(), json!({"tap": "t"}));
            Ok(Action::Save)
        });
        assert_eq!(code, ExitCode::from(0));
        let stored = s.load("beta").unwrap();
        assert_eq!(stored["spec"]["image"], "img");
        assert_eq!(stored["jail"]["pid"], 42);
        assert_eq!(stored["vm"]["state"], "running");
        assert_eq!(stored["net"]["tap"], "t");
        assert_eq!(out[0]["spec"]["image"], "img");
        assert_eq!(out[0]["vm"]["state"], "running");
    }

    /// Item 8: only `banger-vm new` makes VMs; a step refuses a name the store lacks and
    /// creates nothing for it (not even a lock file).
    #[test]
    fn a_vm_not_in_the_store_is_refused_and_nothing_is_made() {
        let s = store();
        let _c = with(&s, &["a"]);
        let mut called = 0;
        let input: String = (0..100)
            .map(|i| format!("{{\"v\":1,\"type\":\"vm\",\"name\":\"ghost{i}\"}}\n"))
            .collect();
        let (code, out) = run(&s, &input, |_| {
            called += 1;
            Ok(Action::Save)
        });
        assert_eq!(code, ExitCode::from(1));
        assert_eq!(called, 0);
        assert_eq!(out.len(), 100);
        assert_eq!(out[7]["error"]["code"], "not_found");
        assert_eq!(s.names().unwrap(), ["a"]);
        let locks: Vec<_> = std::fs::read_dir(s.root().join("locks"))
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.file_name().into_string().unwrap())
            .filter(|n| n.starts_with("ghost"))
            .collect();
        assert!(locks.is_empty(), "{locks:?}");
    }

    /// Item 1: a record whose name is not its directory's is refused, by name or on stdin.
    #[test]
    fn a_copied_record_is_refused() {
        let s = store();
        let _c = with(&s, &["alpha"]);
        std::fs::create_dir_all(s.vm_dir("copyofalpha")).unwrap();
        std::fs::copy(
            s.vm_dir("alpha").join("vm.json"),
            s.vm_dir("copyofalpha").join("vm.json"),
        )
        .unwrap();
        let mut called = false;
        let (code, out) = run_on(
            &s,
            &["net"],
            Input::Names(vec!["copyofalpha".into()]),
            b"",
            |_| {
                called = true;
                Ok(Action::Save)
            },
        );
        assert_eq!(code, ExitCode::from(1));
        assert!(!called);
        assert_eq!(out[0]["error"]["code"], "damaged");
        assert!(out[0]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("names the VM \"alpha\""));
    }

    #[test]
    fn error_records_are_forwarded_untouched_and_fail_the_run() {
        let s = store();
        let _c = with(&s, &["a"]);
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
    }

    #[test]
    fn a_failure_marks_the_record_and_goes_on() {
        let s = store();
        let _c = with(&s, &["a", "b"]);
        let input =
            "{\"v\":1,\"type\":\"vm\",\"name\":\"a\"}\n{\"v\":1,\"type\":\"vm\",\"name\":\"b\"}\n";
        let (code, out) = run(&s, input, |r| {
            r.insert("net".into(), json!({"tap": "t"}));
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
        assert!(
            out[0].get("net").is_none(),
            "a failed step's half-work is not emitted"
        );
        assert!(out[1].get("error").is_none());
        assert!(
            s.load("a").unwrap().get("net").is_none(),
            "a failed step saves nothing"
        );
        assert!(s.load("b").unwrap().get("net").is_some());
    }

    /// Item 7: every envelope error names its line.
    #[test]
    fn malformed_lines_and_envelopes_name_the_line() {
        let s = store();
        let _c = with(&s, &["a"]);
        let input = "nope\n{\"v\":1,\"type\":\"image\",\"name\":\"a\"}\n{\"v\":1,\"type\":\"vm\",\"name\":\"../x\"}\n{\"v\":1,\"type\":\"vm\",\"name\":5}\n{\"v\":9,\"type\":\"vm\",\"name\":\"a\"}\n";
        let (code, out) = run(&s, input, |_| Ok(Action::Save));
        assert_eq!(code, ExitCode::from(1));
        assert_eq!(out.len(), 4, "the non-JSON line is reported, not emitted");
        assert_eq!(out[0]["error"]["code"], "bad_record");
        assert!(out[0]["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("line 2: "));
        assert_eq!(out[1]["error"]["code"], "invalid_name");
        assert_eq!(
            out[2]["error"]["message"],
            "line 4: \"name\" is a number, expected a string"
        );
        assert!(out[3]["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("line 5: unsupported"));
    }

    #[test]
    fn empty_stdin_is_an_error() {
        let s = store();
        let _c = with(&s, &[]);
        let (code, out) = run(&s, "\n\n", |_| Ok(Action::Save));
        assert_eq!(code, ExitCode::from(1));
        assert!(out.is_empty());
    }

    /// Item 12: a save that fails after the work says so and what to do.
    #[test]
    fn a_failed_save_says_the_work_is_done_and_to_rerun() {
        let s = store();
        let _c = with(&s, &["a"]);
        let (code, out) = run_on(&s, &["net"], Input::Names(vec!["a".into()]), b"", |r| {
            r.insert(
                "net".into(),
                json!({"x": "y".repeat(crate::record::MAX_RECORD_BYTES)}),
            );
            Ok(Action::Save)
        });
        assert_eq!(code, ExitCode::from(1));
        assert_eq!(out[0]["error"]["code"], "save_failed");
        let m = out[0]["error"]["message"].as_str().unwrap();
        assert!(
            m.contains("work is done") && m.contains("run the step again"),
            "{m}"
        );
    }

    #[test]
    fn removing_the_jail_stops_a_running_record() {
        let s = store();
        let _c = with(&s, &["a"]);
        let mut r = s.load("a").unwrap();
        r.insert("jail".into(), json!({"pid": 1}));
        r.insert("vm".into(), json!({"state": "running", "boot_ms": 5}));
        s.save(&r).unwrap();
        let (code, _) = run_on(&s, &["jail"], Input::Names(vec!["a".into()]), b"", |r| {
            r.shift_remove("jail");
            Ok(Action::Save)
        });
        assert_eq!(code, ExitCode::from(0));
        let r = s.load("a").unwrap();
        assert_eq!(r["vm"]["state"], "stopped");
        assert_eq!(r["vm"]["stopped_by"], "teardown");
        assert_eq!(r["vm"]["boot_ms"], 5);
    }
}
