//! Where a step's time goes: with `BANGER_TIMING=1` in the environment (`banger up --timing`
//! sets it), every step prints one line per record on stderr:
//!
//! ```text
//! banger-net: timing: dev1: 3.1 ms at +41.7 ms: lock 0.0, helper net.up 2.6 (lock 0.1, ledger 0.4, netlink 0.9, nft-check 0.2), save 0.3
//! ```
//!
//! the record's total in this step, when it started (`at +N ms`, from `BANGER_TIMING_T0`, the
//! wall clock in microseconds since the epoch when the pipeline began, if set), and the
//! phases in the order they ran, nested ones in parentheses. The helper measures its own
//! phases when a request asks (`"timing": true`) and sends them back with its answer.
//!
//! Spans are kept per thread: work a step hands to another thread is measured around the
//! hand-off. When timing is off, a span costs one thread-local lookup.

use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// One measured phase: its name, its duration, how deep it is nested.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Span {
    pub name: String,
    pub ms: f64,
    #[serde(default)]
    pub depth: u32,
}

#[derive(Default)]
struct Collector {
    spans: Vec<Span>,
    depth: u32,
}

thread_local! {
    static COLLECTOR: RefCell<Option<Collector>> = const { RefCell::new(None) };
}

/// True when `BANGER_TIMING` asks for timing lines (set, and not empty or `0`).
pub fn enabled() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var("BANGER_TIMING").is_ok_and(|v| !v.is_empty() && v != "0"))
}

/// Starts collecting spans on this thread (dropping any collected before).
pub fn begin() {
    COLLECTOR.with(|c| *c.borrow_mut() = Some(Collector::default()));
}

/// Stops collecting on this thread and returns the spans, in the order they started.
pub fn take() -> Vec<Span> {
    COLLECTOR.with(|c| c.borrow_mut().take().map(|c| c.spans).unwrap_or_default())
}

/// True while this thread collects.
pub fn collecting() -> bool {
    COLLECTOR.with(|c| c.borrow().is_some())
}

/// Runs `f`, measured as the phase `name` when this thread collects.
pub fn span<T>(name: &str, f: impl FnOnce() -> T) -> T {
    let slot = COLLECTOR.with(|c| {
        c.borrow_mut().as_mut().map(|col| {
            col.spans.push(Span {
                name: name.to_string(),
                ms: 0.0,
                depth: col.depth,
            });
            col.depth += 1;
            col.spans.len() - 1
        })
    });
    let Some(slot) = slot else {
        return f();
    };
    let t = Instant::now();
    let out = f();
    let ms = t.elapsed().as_secs_f64() * 1e3;
    COLLECTOR.with(|c| {
        if let Some(col) = c.borrow_mut().as_mut() {
            col.depth = col.depth.saturating_sub(1);
            if let Some(s) = col.spans.get_mut(slot) {
                s.ms = ms;
            }
        }
    });
    out
}

/// Adds spans measured elsewhere (the helper's) as children of the span now running.
pub fn adopt(spans: &[Span]) {
    COLLECTOR.with(|c| {
        if let Some(col) = c.borrow_mut().as_mut() {
            for s in spans {
                col.spans.push(Span {
                    depth: s.depth + col.depth,
                    ..s.clone()
                });
            }
        }
    });
}

/// Milliseconds since `BANGER_TIMING_T0` (microseconds since the epoch), if it is set.
pub fn since_t0() -> Option<f64> {
    let t0: u128 = std::env::var("BANGER_TIMING_T0")
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .ok()?
        .as_micros();
    Some(now.checked_sub(t0)? as f64 / 1e3)
}

/// Runs of the same leaf phase one after another (`ledger`, `ledger`, `ledger`) as one
/// (`ledger 1.2 x3`).
fn merge(spans: &[Span]) -> Vec<(Span, usize)> {
    let leaf = |i: usize| spans.get(i + 1).is_none_or(|n| n.depth <= spans[i].depth);
    let mut out: Vec<(Span, usize)> = Vec::new();
    for (i, s) in spans.iter().enumerate() {
        if let Some((last, n)) = out.last_mut() {
            let prev_leaf = i > 0 && leaf(i - 1);
            if prev_leaf && leaf(i) && last.name == s.name && last.depth == s.depth {
                last.ms += s.ms;
                *n += 1;
                continue;
            }
        }
        out.push((s.clone(), 1));
    }
    out
}

/// The spans as text: `a 1.0, b 2.0 (c 0.5, d 1.2), e 0.1`.
pub fn render(spans: &[Span]) -> String {
    let mut out = String::new();
    let mut depth = 0u32;
    for (i, (s, n)) in merge(spans).iter().enumerate() {
        if i > 0 {
            if s.depth > depth {
                out.push_str(" (");
            } else {
                for _ in s.depth..depth {
                    out.push(')');
                }
                out.push_str(", ");
            }
        }
        depth = s.depth;
        out.push_str(&format!("{} {:.1}", s.name, s.ms));
        if *n > 1 {
            out.push_str(&format!(" x{n}"));
        }
    }
    for _ in 0..depth {
        out.push(')');
    }
    out
}

/// The timing line of one record in one step.
pub fn line(
    bin: &str,
    name: &str,
    total: Duration,
    started_at: Option<f64>,
    spans: &[Span],
) -> String {
    let at = started_at.map_or(String::new(), |ms| format!(" at +{ms:.1} ms"));
    format!(
        "{bin}: timing: {name}: {:.1} ms{at}: {}",
        total.as_secs_f64() * 1e3,
        render(spans)
    )
}

/// Measures one record's work in a step and prints its line when timing is on: call
/// [`Record::start`] before the work and [`Record::finish`] after.
pub struct Record {
    on: bool,
    t: Instant,
    at: Option<f64>,
}

impl Record {
    pub fn start() -> Record {
        let on = enabled();
        if on {
            begin();
        }
        Record {
            on,
            t: Instant::now(),
            at: if on { since_t0() } else { None },
        }
    }

    pub fn finish(self, bin: &str, name: &str) {
        if self.on {
            let spans = take();
            eprintln!("{}", line(bin, name, self.t.elapsed(), self.at, &spans));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_nest_in_the_order_they_started() {
        begin();
        span("a", || {});
        span("b", || {
            span("c", || {});
            adopt(&[
                Span {
                    name: "x".into(),
                    ms: 1.0,
                    depth: 0,
                },
                Span {
                    name: "y".into(),
                    ms: 0.5,
                    depth: 1,
                },
            ]);
        });
        span("d", || {});
        let s = take();
        let names: Vec<(&str, u32)> = s.iter().map(|s| (s.name.as_str(), s.depth)).collect();
        assert_eq!(
            names,
            vec![("a", 0), ("b", 0), ("c", 1), ("x", 1), ("y", 2), ("d", 0)]
        );
        let text = render(&s);
        assert!(text.starts_with("a 0.0, b "), "{text}");
        assert!(text.contains(" (c 0.0, x 1.0 (y 0.5)), d 0.0"), "{text}");
        assert!(!collecting());
    }

    #[test]
    fn runs_of_one_leaf_are_merged() {
        let s = |name: &str, ms: f64, depth: u32| Span {
            name: name.into(),
            ms,
            depth,
        };
        let spans = [
            s("ledger", 1.0, 0),
            s("ledger", 0.5, 0),
            s("op", 2.0, 0),
            s("ledger", 0.25, 1),
            s("ledger", 0.25, 1),
            s("ledger", 1.0, 0),
        ];
        assert_eq!(
            render(&spans),
            "ledger 1.5 x2, op 2.0 (ledger 0.5 x2), ledger 1.0"
        );
    }

    #[test]
    fn nothing_is_kept_when_not_collecting() {
        assert_eq!(span("a", || 7), 7);
        adopt(&[Span {
            name: "x".into(),
            ms: 1.0,
            depth: 0,
        }]);
        assert!(take().is_empty());
    }

    #[test]
    fn the_line() {
        let l = line(
            "banger-net",
            "dev1",
            Duration::from_micros(3100),
            Some(41.66),
            &[Span {
                name: "lock".into(),
                ms: 0.04,
                depth: 0,
            }],
        );
        assert_eq!(l, "banger-net: timing: dev1: 3.1 ms at +41.7 ms: lock 0.0");
    }
}
