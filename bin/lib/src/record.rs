//! Records: one JSON object per line on stdin and stdout.
//!
//! A record is kept as a `serde_json::Map` with insertion order preserved, so every field a
//! step does not know (other steps' sections, user annotations) passes through untouched.
//! Reading is per line and strict: a line over [`MAX_RECORD_BYTES`], a line that is not
//! UTF-8, not JSON, not an object, or an object with a key twice is an error naming the
//! line, and the next line is read as if nothing happened. The sections banger writes have
//! typed structs in [`crate::section`].

use serde_json::{Map, Value};
use std::io::{BufRead, Write};

/// The record format version.
pub const RECORD_VERSION: u64 = 1;

/// The largest record, on a line or in the store (1 MiB; a VM record is a few KiB).
pub const MAX_RECORD_BYTES: usize = 1 << 20;

/// A record: a JSON object.
pub type Record = Map<String, Value>;

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("cannot read records from stdin")]
    Io(#[source] std::io::Error),
    #[error("line {line}: longer than {max} bytes (a record is at most {max} bytes)")]
    TooLong { line: usize, max: usize },
    #[error("line {line}: not UTF-8 (byte {at} of the line is invalid)")]
    NotUtf8 { line: usize, at: usize },
    #[error("line {line}: not valid JSON")]
    Json {
        line: usize,
        #[source]
        source: serde_json::Error,
    },
    #[error("line {line}: the key {path:?} appears twice (a record may hold each key once)")]
    Duplicate { line: usize, path: String },
    #[error("line {line}: expected a JSON object (a record), found {found}")]
    NotObject { line: usize, found: &'static str },
}

impl ReadError {
    /// The line the error is about (`None` for a read error).
    pub fn line(&self) -> Option<usize> {
        match self {
            ReadError::Io(_) => None,
            ReadError::TooLong { line, .. }
            | ReadError::NotUtf8 { line, .. }
            | ReadError::Json { line, .. }
            | ReadError::Duplicate { line, .. }
            | ReadError::NotObject { line, .. } => Some(*line),
        }
    }
}

/// "a number", "an array", ... for messages.
pub fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Parses one record's text (a line, or a stored file): strict JSON, an object.
pub fn parse(bytes: &[u8], line: usize) -> Result<Record, ReadError> {
    match crate::json::from_slice(bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(ReadError::NotObject {
            line,
            found: kind(&other),
        }),
        Err(crate::json::StrictError::Duplicate { path }) => {
            Err(ReadError::Duplicate { line, path })
        }
        Err(crate::json::StrictError::Json(source)) => Err(ReadError::Json { line, source }),
    }
}

/// Reads records from a buffered reader, one per line, skipping blank lines.
/// Yields `(line_number, record)`; line numbers start at 1. A line longer than the limit is
/// skipped without being held in memory. After a read error the reader ends.
pub struct Reader<R> {
    inner: R,
    line: usize,
    buf: Vec<u8>,
    max: usize,
    done: bool,
}

impl<R: BufRead> Reader<R> {
    pub fn new(inner: R) -> Self {
        Reader::with_limit(inner, MAX_RECORD_BYTES)
    }

    /// A reader with another line limit (for tests).
    pub fn with_limit(inner: R, max: usize) -> Self {
        Reader {
            inner,
            line: 0,
            buf: Vec::new(),
            max,
            done: false,
        }
    }

    /// Reads one line into `buf` (without its newline). `None` at the end; `Some(true)` when
    /// the line was over the limit (then `buf` is empty and the rest of the line was read
    /// and dropped in bounded pieces).
    fn read_line(&mut self) -> std::io::Result<Option<bool>> {
        use std::io::Read;
        self.buf.clear();
        let cap = self.max as u64 + 1;
        let n = (&mut self.inner)
            .take(cap)
            .read_until(b'\n', &mut self.buf)?;
        if n == 0 {
            return Ok(None);
        }
        if self.buf.last() == Some(&b'\n') {
            self.buf.pop();
            return Ok(Some(self.buf.len() > self.max));
        }
        if self.buf.len() <= self.max {
            return Ok(Some(false)); // the last line, without a newline
        }
        // Over the limit: drop the rest of the line without keeping it.
        self.buf = Vec::new();
        let mut scratch = Vec::with_capacity(64 * 1024);
        loop {
            scratch.clear();
            let n = (&mut self.inner)
                .take(64 * 1024)
                .read_until(b'\n', &mut scratch)?;
            if n == 0 || scratch.last() == Some(&b'\n') {
                return Ok(Some(true));
            }
        }
    }
}

impl<R: BufRead> Iterator for Reader<R> {
    type Item = Result<(usize, Record), ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.done {
                return None;
            }
            let too_long = match self.read_line() {
                Ok(None) => return None,
                Ok(Some(t)) => t,
                Err(e) => {
                    self.done = true;
                    return Some(Err(ReadError::Io(e)));
                }
            };
            self.line += 1;
            let line = self.line;
            if too_long {
                return Some(Err(ReadError::TooLong {
                    line,
                    max: self.max,
                }));
            }
            let text = match std::str::from_utf8(&self.buf) {
                Ok(t) => t.trim(),
                Err(e) => {
                    return Some(Err(ReadError::NotUtf8 {
                        line,
                        at: e.valid_up_to() + 1,
                    }))
                }
            };
            if text.is_empty() {
                continue;
            }
            return Some(parse(text.as_bytes(), line).map(|r| (line, r)));
        }
    }
}

/// Writes records to stdout, one per line, flushed per record. A closed stdout (EPIPE)
/// ends the process quietly with status 0, as the design asks.
pub struct Writer<W: Write> {
    out: W,
}

impl Writer<std::io::Stdout> {
    pub fn stdout() -> Self {
        Writer {
            out: std::io::stdout(),
        }
    }
}

impl<W: Write> Writer<W> {
    pub fn new(out: W) -> Self {
        Writer { out }
    }

    /// Writes one record and flushes. Exits 0 on EPIPE; other errors are returned.
    pub fn emit(&mut self, rec: &Record) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(rec).map_err(std::io::Error::other)?;
        line.push(b'\n');
        let res = self.out.write_all(&line).and_then(|_| self.out.flush());
        match res {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
            other => other,
        }
    }

    pub fn into_inner(self) -> W {
        self.out
    }
}

/// A record's `name`, if it is a string.
pub fn name(rec: &Record) -> Option<&str> {
    rec.get("name").and_then(Value::as_str)
}

/// True when the record carries an `error` section (a step upstream failed on it).
pub fn has_error(rec: &Record) -> bool {
    rec.get("error").is_some_and(|e| !e.is_null())
}

/// Sets the `error` section: the step, a stable code, and a human message.
pub fn set_error(rec: &mut Record, step: &str, code: &str, message: &str) {
    let mut e = Map::new();
    e.insert("step".into(), step.into());
    e.insert("code".into(), code.into());
    e.insert("message".into(), message.into());
    rec.insert("error".into(), Value::Object(e));
}

/// A new record with `v`, `type` and `name`.
pub fn new(kind: &str, name: &str) -> Record {
    let mut r = Map::new();
    r.insert("v".into(), RECORD_VERSION.into());
    r.insert("type".into(), kind.into());
    r.insert("name".into(), name.into());
    r
}

/// Checks the envelope: `v` is 1, `type` is `want_type`, `name` is a string. Returns a
/// reason if not (the caller adds the line or the file).
pub fn check_envelope(rec: &Record, want_type: &str) -> Result<(), String> {
    match rec.get("v") {
        Some(v) if v.as_u64() == Some(RECORD_VERSION) => {}
        Some(Value::Number(n)) => {
            return Err(format!(
                "unsupported record version \"v\": {n} (this banger reads \"v\": 1)"
            ))
        }
        Some(v) => return Err(format!("\"v\" is {}, expected the number 1", kind(v))),
        None => return Err("the record has no \"v\" field".into()),
    }
    match rec.get("type") {
        Some(Value::String(t)) if t == want_type => {}
        Some(Value::String(t)) => {
            return Err(format!(
                "a record of type {t:?} where a {want_type:?} record was expected"
            ))
        }
        Some(v) => return Err(format!("\"type\" is {}, expected a string", kind(v))),
        None => return Err("the record has no \"type\" field".into()),
    }
    match rec.get("name") {
        Some(Value::String(_)) => Ok(()),
        Some(v) => Err(format!("\"name\" is {}, expected a string", kind(v))),
        None => Err("the record has no \"name\" field".into()),
    }
}

/// The section `key` as an object, if present.
pub fn section<'a>(rec: &'a Record, key: &str) -> Option<&'a Map<String, Value>> {
    rec.get(key).and_then(Value::as_object)
}

/// Current time as RFC 3339 UTC (seconds precision), without a date crate.
pub fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    rfc3339(secs)
}

/// Formats seconds since the epoch as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(input: &str) -> Vec<Result<(usize, Record), ReadError>> {
        Reader::new(input.as_bytes()).collect()
    }

    #[test]
    fn blank_lines_are_skipped_and_lines_counted() {
        let got = read_all("\n{\"a\":1}\n\n   \n{\"b\":2}\n");
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].as_ref().unwrap().0, 2);
        assert_eq!(got[1].as_ref().unwrap().0, 5);
    }

    #[test]
    fn non_object_names_the_line() {
        let got = read_all("{\"a\":1}\n[1,2]\n");
        let err = got[1].as_ref().unwrap_err().to_string();
        assert_eq!(
            err,
            "line 2: expected a JSON object (a record), found an array"
        );
        let got = read_all("nope\n");
        assert!(got[0]
            .as_ref()
            .unwrap_err()
            .to_string()
            .starts_with("line 1: not valid JSON"));
    }

    #[test]
    fn non_utf8_names_the_line_and_the_stream_goes_on() {
        let got: Vec<_> = Reader::new(&b"{\"a\":1}\n{\"b\":\"\xff\"}\n{\"c\":3}\n"[..]).collect();
        assert_eq!(got.len(), 3);
        assert_eq!(
            got[1].as_ref().unwrap_err().to_string(),
            "line 2: not UTF-8 (byte 7 of the line is invalid)"
        );
        assert_eq!(got[2].as_ref().unwrap().0, 3);
    }

    #[test]
    fn an_overlong_line_is_skipped_without_being_kept() {
        let mut input = b"{\"a\":1}\n".to_vec();
        input.extend(std::iter::repeat_n(b'x', 5000));
        input.extend(b"\n{\"b\":2}\n");
        // A small buffer, so the long line arrives in many pieces.
        let r = std::io::BufReader::with_capacity(64, &input[..]);
        let got: Vec<_> = Reader::with_limit(r, 100).collect();
        assert_eq!(got.len(), 3);
        assert!(matches!(
            got[1],
            Err(ReadError::TooLong { line: 2, max: 100 })
        ));
        assert_eq!(got[2].as_ref().unwrap().0, 3);
    }

    #[test]
    fn duplicate_keys_name_the_line_and_the_key() {
        let got = read_all("{\"v\":1,\"name\":\"a\",\"name\":\"b\"}\n");
        assert_eq!(
            got[0].as_ref().unwrap_err().to_string(),
            "line 1: the key \"name\" appears twice (a record may hold each key once)"
        );
    }

    #[test]
    fn a_read_error_ends_the_stream() {
        struct Broken;
        impl std::io::Read for Broken {
            fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
                Err(std::io::Error::from_raw_os_error(21)) // EISDIR, as for `< /tmp`
            }
        }
        let got: Vec<_> = Reader::new(std::io::BufReader::new(Broken))
            .take(5)
            .collect();
        assert_eq!(got.len(), 1);
        assert!(matches!(got[0], Err(ReadError::Io(_))));
    }

    #[test]
    fn last_line_without_newline_is_read() {
        let got = read_all("{\"a\":1}");
        assert_eq!(got.len(), 1);
    }

    #[test]
    fn unknown_fields_pass_through_in_order() {
        let input = r#"{"v":1,"type":"vm","name":"a","zeta":{"x":[1,2,{"y":null}]},"alpha":"é\u0001","n":1.5e300}"#;
        let (_, mut rec) = read_all(input).pop().unwrap().unwrap();
        rec.insert("snap".into(), serde_json::json!({"method": "copy"}));
        let mut w = Writer::new(Vec::new());
        w.emit(&rec).unwrap();
        let out = String::from_utf8(w.into_inner()).unwrap();
        assert!(out.ends_with('\n'));
        let back: Value = serde_json::from_str(&out).unwrap();
        let orig: Value = serde_json::from_str(input).unwrap();
        for (k, v) in orig.as_object().unwrap() {
            assert_eq!(&back[k], v, "field {k} changed");
        }
        let keys: Vec<_> = back.as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys, ["v", "type", "name", "zeta", "alpha", "n", "snap"]);
    }

    #[test]
    fn error_section() {
        let mut r = new("vm", "a");
        assert!(!has_error(&r));
        r.insert("error".into(), Value::Null);
        assert!(!has_error(&r));
        set_error(&mut r, "net", "subnet_overlap", "boom");
        assert!(has_error(&r));
        assert_eq!(r["error"]["step"], "net");
    }

    #[test]
    fn envelope_checks() {
        let r = new("vm", "a");
        assert!(check_envelope(&r, "vm").is_ok());
        assert!(check_envelope(&r, "image").is_err());
        let with = |k: &str, v: Value| {
            let mut r = r.clone();
            r.insert(k.into(), v);
            check_envelope(&r, "vm").unwrap_err()
        };
        assert!(with("v", 2.into()).contains("unsupported record version"));
        assert_eq!(
            with("v", "1".into()),
            "\"v\" is a string, expected the number 1"
        );
        assert_eq!(
            with("name", 5.into()),
            "\"name\" is a number, expected a string"
        );
        assert_eq!(
            with("type", serde_json::json!(["vm"])),
            "\"type\" is an array, expected a string"
        );
        let mut r3 = r.clone();
        r3.remove("name");
        assert_eq!(
            check_envelope(&r3, "vm").unwrap_err(),
            "the record has no \"name\" field"
        );
    }

    #[test]
    fn rfc3339_known_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_795_315_200), "2026-11-22T02:40:00Z");
    }
}
