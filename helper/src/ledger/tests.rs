//! The ledger's tests: its files, its cache, crashes and kills.

use super::*;
use std::os::unix::fs::MetadataExt;

/// Removes what [`tmp`] made.
fn done(l: Ledger) {
    let _ = std::fs::remove_dir_all(l.path().parent().unwrap().parent().unwrap());
}

fn tmp() -> Ledger {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let d = std::env::temp_dir().join(format!(
        "banger-ledger-{}-{}",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&d);
    Ledger::new(d.join("root").join("ledger.json"))
}

#[test]
fn add_list_remove_and_modes() {
    let l = tmp();
    assert!(l.list().unwrap().is_empty());
    l.add(Entry::new("a", "tap", "bgr-a", Value::Null)).unwrap();
    l.add(Entry::new("a", "tap", "bgr-a", Value::Null)).unwrap();
    l.add(Entry::new("b", "tap", "bgr-b", Value::Null)).unwrap();
    assert_eq!(l.list().unwrap().len(), 2);
    assert_eq!(l.for_vm("a").unwrap().len(), 1);
    assert!(l.remove("a", "tap", "bgr-a").unwrap());
    assert!(!l.remove("a", "tap", "bgr-a").unwrap());
    let mode = std::fs::metadata(l.path()).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let dmode = std::fs::metadata(l.path().parent().unwrap())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(dmode, 0o700);
    // A new handle (a restarted helper) sees the same entries.
    let again = Ledger::new(l.path());
    assert_eq!(again.list().unwrap().len(), 1);
    done(l);
}

#[test]
fn concurrent_adds_lose_nothing() {
    let l = tmp();
    let ts: Vec<_> = (0..8)
        .map(|t| {
            let l = l.clone();
            std::thread::spawn(move || {
                for i in 0..20 {
                    l.add(Entry::new("v", "tap", &format!("t{t}-{i}"), Value::Null))
                        .unwrap();
                }
            })
        })
        .collect();
    for t in ts {
        t.join().unwrap();
    }
    assert_eq!(l.list().unwrap().len(), 160);
    done(l);
}

#[test]
fn only_a_new_disk_or_jail_is_written_durably() {
    let durability = |before: &[Entry], after: &[Entry]| {
        Change::between(before, after)
            .against(before)
            .durability(before)
    };
    let e = |kind: &str, id: &str| Entry::new("a", kind, id, Value::Null);
    let base = vec![e("disk", "/d"), e("tap", "t0")];
    let with = |x: Entry| {
        let mut v = base.clone();
        v.push(x);
        v
    };
    assert_eq!(
        durability(&base, &with(e("jail", "/j"))),
        Durability::Durable
    );
    assert_eq!(
        durability(&base, &with(e("disk", "/d2"))),
        Durability::Durable
    );
    assert_eq!(
        durability(&base, &with(e("tap", "t1"))),
        Durability::Consistent
    );
    assert_eq!(
        durability(&base, &with(e("addr", "10.0.0.2"))),
        Durability::Consistent
    );
    // Updating the disk entry (complete), or removing it: consistent.
    let mut updated = base.clone();
    updated[0].data = Arc::new(serde_json::json!({"complete": true}));
    assert_eq!(durability(&base, &updated), Durability::Consistent);
    assert_eq!(durability(&base, &base[1..]), Durability::Consistent);
}

#[test]
fn add_all_and_remove_all_are_one_write_each() {
    let l = tmp();
    l.add_all(vec![
        Entry::new("a", "addr", "10.0.0.2", Value::Null),
        Entry::new("a", "tap", "t", Value::Null),
    ])
    .unwrap();
    assert_eq!(l.for_vm("a").unwrap().len(), 2);
    assert_eq!(
        l.remove_all(&[
            ("a", "addr", "10.0.0.2"),
            ("a", "tap", "t"),
            ("a", "tap", "x")
        ])
        .unwrap(),
        2
    );
    assert!(l.list().unwrap().is_empty());
    done(l);
}

#[test]
fn a_change_by_another_handle_is_seen_through_the_cache() {
    let l = tmp();
    l.add(Entry::new("a", "tap", "x", Value::Null)).unwrap();
    assert_eq!(l.list().unwrap().len(), 1);
    // Another process (a fresh handle: its own cache) changes the file.
    let other = Ledger::new(l.path());
    other.add(Entry::new("b", "tap", "y", Value::Null)).unwrap();
    assert_eq!(l.list().unwrap().len(), 2);
    // A hand edit of the snapshot, of the same size and in place, is seen too (mtime
    // changes), with the journal's update still applied over it.
    std::thread::sleep(std::time::Duration::from_millis(10));
    let text = std::fs::read_to_string(l.path())
        .unwrap()
        .replace("\"x\"", "\"w\"");
    std::fs::write(l.path(), text).unwrap();
    let ids: Vec<String> = l.list().unwrap().into_iter().map(|e| e.id).collect();
    assert_eq!(ids, ["w", "y"]);
    done(l);
}

fn journal_lines(l: &Ledger) -> usize {
    std::fs::read_to_string(l.journal_path())
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

#[test]
fn an_update_appends_a_line_and_leaves_the_snapshot_alone() {
    let l = tmp();
    l.add(Entry::new("a", "tap", "x", Value::Null)).unwrap();
    // The first update writes a snapshot (there was none to name a journal).
    assert_eq!(journal_lines(&l), 0);
    let snap = std::fs::read(l.path()).unwrap();
    let ino = std::fs::metadata(l.path()).unwrap().ino();
    l.add(Entry::new("b", "disk", "/d", Value::Null)).unwrap();
    l.add(Entry::new("a", "tap", "x", serde_json::json!({"up": true})))
        .unwrap();
    l.remove("b", "disk", "/d").unwrap();
    assert_eq!(std::fs::read(l.path()).unwrap(), snap);
    assert_eq!(std::fs::metadata(l.path()).unwrap().ino(), ino);
    assert_eq!(journal_lines(&l), 4, "the header and one line per update");
    let mode = std::fs::metadata(l.journal_path())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    // A restarted helper sees the snapshot with the journal applied.
    let again = Ledger::new(l.path());
    let got = again.list().unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(*got[0].data, serde_json::json!({"up": true}));
    done(l);
}

#[test]
fn a_long_journal_is_compacted_into_a_new_snapshot() {
    let l = tmp();
    for i in 0..COMPACT_LINES + 1 {
        l.add(Entry::new("a", "tap", &format!("t{i}"), Value::Null))
            .unwrap();
    }
    assert_eq!(journal_lines(&l), COMPACT_LINES + 1);
    // The next update writes everything into the snapshot and removes the journal.
    l.add(Entry::new("a", "tap", "last", Value::Null)).unwrap();
    assert!(!l.journal_path().exists());
    let text = std::fs::read_to_string(l.path()).unwrap();
    let s: Snapshot = serde_json::from_str(&text).unwrap();
    assert_eq!(s.entries.len(), COMPACT_LINES + 2);
    assert!(s.gen.is_some());
    assert_eq!(
        Ledger::new(l.path()).list().unwrap().len(),
        COMPACT_LINES + 2
    );
    done(l);
}

#[test]
fn a_snapshot_written_by_hand_or_by_an_older_helper_is_the_whole_ledger() {
    let l = tmp();
    l.add(Entry::new("a", "tap", "x", Value::Null)).unwrap();
    l.add(Entry::new("b", "tap", "y", Value::Null)).unwrap();
    assert_eq!(journal_lines(&l), 2);
    // Written without a gen (as the helper did before the journal): the journal, which
    // belongs to the snapshot before, is not applied over it.
    std::fs::write(
        l.path(),
        r#"{"v":1,"entries":[{"vm":"c","kind":"loop","id":"/dev/loop9","created_at":"t"}]}"#,
    )
    .unwrap();
    let ids = |l: &Ledger| -> Vec<String> { l.list().unwrap().into_iter().map(|e| e.id).collect() };
    assert_eq!(ids(&l), ["/dev/loop9"]);
    assert_eq!(ids(&Ledger::new(l.path())), ["/dev/loop9"]);
    // The next update writes a snapshot with a gen, and the old journal is gone.
    l.add(Entry::new("d", "tap", "z", Value::Null)).unwrap();
    assert!(!l.journal_path().exists());
    assert_eq!(ids(&Ledger::new(l.path())), ["/dev/loop9", "z"]);
    done(l);
}

#[test]
fn a_torn_last_line_is_dropped_and_written_over() {
    let l = tmp();
    l.add(Entry::new("a", "tap", "x", Value::Null)).unwrap();
    l.add(Entry::new("b", "tap", "y", Value::Null)).unwrap();
    // A writer killed half way through its line.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(l.journal_path())
        .unwrap();
    std::io::Write::write_all(&mut f, br#"{"put":[{"vm":"c","kind":"t"#).unwrap();
    let fresh = Ledger::new(l.path());
    assert_eq!(fresh.list().unwrap().len(), 2);
    fresh.add(Entry::new("d", "tap", "z", Value::Null)).unwrap();
    let text = std::fs::read_to_string(l.journal_path()).unwrap();
    assert!(
        !text.contains(r#""vm":"c""#),
        "the torn line is written over: {text}"
    );
    assert_eq!(journal_lines(&l), 3);
    assert_eq!(Ledger::new(l.path()).list().unwrap().len(), 3);
    // The first handle sees the other's update too.
    assert_eq!(l.list().unwrap().len(), 3);
    done(l);
}

#[test]
fn an_append_removes_what_a_killed_compaction_left() {
    let l = tmp();
    l.add(Entry::new("a", "tap", "x", Value::Null)).unwrap();
    let mut c = std::process::Command::new("true").spawn().unwrap();
    let dead = c.id();
    c.wait().unwrap();
    let left = l
        .path()
        .with_file_name(format!(".ledger.json.tmp.{dead}.7"));
    std::fs::write(&left, vec![0u8; 85000]).unwrap();
    l.add(Entry::new("b", "tap", "y", Value::Null)).unwrap();
    assert_eq!(journal_lines(&l), 2, "written as a line, not a snapshot");
    assert!(!left.exists());
    done(l);
}

#[test]
fn every_update_changes_the_stamp() {
    let l = tmp();
    let mut seen = vec![l.stamp()];
    l.add(Entry::new("a", "tap", "x", Value::Null)).unwrap();
    seen.push(l.stamp());
    for i in 0..COMPACT_LINES + 2 {
        l.add(Entry::new("a", "mount", &format!("m{i}"), Value::Null))
            .unwrap();
        seen.push(l.stamp());
    }
    let n = seen.len();
    seen.sort_by_key(|s| format!("{s:?}"));
    seen.dedup();
    assert_eq!(seen.len(), n);
    // Reading changes nothing.
    let s = l.stamp();
    l.list().unwrap();
    assert_eq!(l.stamp(), s);
    done(l);
}

#[test]
fn compact_journal_leaves_the_whole_ledger_in_the_snapshot() {
    let l = tmp();
    assert!(!l.compact_journal().unwrap(), "nothing to fold");
    l.add(Entry::new("a", "tap", "x", Value::Null)).unwrap();
    l.add(Entry::new("b", "tap", "y", Value::Null)).unwrap();
    l.remove("a", "tap", "x").unwrap();
    assert!(l.compact_journal().unwrap());
    assert!(!l.journal_path().exists());
    let s: Snapshot = serde_json::from_slice(&std::fs::read(l.path()).unwrap()).unwrap();
    let ids: Vec<&str> = s.entries.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, ["y"]);
    assert!(!l.compact_journal().unwrap());
    // Updates go on in a journal of the new snapshot.
    l.add(Entry::new("c", "tap", "z", Value::Null)).unwrap();
    assert_eq!(Ledger::new(l.path()).list().unwrap().len(), 2);
    done(l);
}

/// Not a test of its own: the writer `a_writer_killed_at_any_point_leaves_a_prefix` runs
/// in a child process (this test binary again). It adds entries 0, 1, 2... and prints
/// each number once its add returned.
#[test]
fn ledger_writer_child() {
    let Some(path) = std::env::var_os("BANGER_LEDGER_WRITER") else {
        return;
    };
    let l = Ledger::new(PathBuf::from(path));
    let start = l.list().unwrap().len();
    for i in start.. {
        let data = serde_json::json!({"pad": "x".repeat(i % 700)});
        l.add(Entry::new("w", "mount", &format!("m{i}"), data))
            .unwrap();
        println!("{i}");
    }
}

#[test]
fn a_writer_killed_at_any_point_leaves_a_prefix() {
    use std::io::BufRead;
    let l = tmp();
    std::fs::create_dir_all(l.path().parent().unwrap()).unwrap();
    let mut acked: Option<usize> = None;
    // Kills at many points: mid-line, mid-compaction (every 256 lines), between.
    for round in 0..24u64 {
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "ledger::tests::ledger_writer_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("BANGER_LEDGER_WRITER", l.path())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let mut lines = std::io::BufReader::new(out).lines();
        // Let it write a varying number of entries, then kill it at once.
        let want = 5 + (round * 37) % 90;
        let mut seen = 0;
        for line in lines.by_ref() {
            if let Ok(i) = line.unwrap_or_default().trim().parse::<usize>() {
                acked = Some(i);
                seen += 1;
                if seen >= want {
                    break;
                }
            }
        }
        child.kill().unwrap();
        // Whatever it printed before the kill was acknowledged.
        for line in lines.map_while(Result::ok) {
            if let Ok(i) = line.trim().parse::<usize>() {
                acked = Some(i);
            }
        }
        child.wait().unwrap();
        let acked = acked.expect("the writer wrote");
        // A fresh reader: a ledger that parses and holds exactly 0..=acked, or one more
        // (an add that wrote but was killed before it said so).
        let got: Vec<String> = Ledger::new(l.path())
            .list()
            .unwrap_or_else(|e| panic!("round {round}: {e}"))
            .into_iter()
            .map(|e| e.id)
            .collect();
        let n = got.len();
        assert!(
            n == acked + 1 || n == acked + 2,
            "round {round}: {n} entries, {acked} acknowledged"
        );
        for (i, id) in got.iter().enumerate() {
            assert_eq!(id, &format!("m{i}"), "round {round}: a prefix, in order");
        }
    }
    assert!(
        acked.unwrap_or(0) > COMPACT_LINES,
        "the kills spanned a compaction"
    );
    done(l);
}

#[test]
fn a_damaged_journal_is_an_error_not_a_reset() {
    let l = tmp();
    l.add(Entry::new("a", "tap", "x", Value::Null)).unwrap();
    l.add(Entry::new("b", "tap", "y", Value::Null)).unwrap();
    l.add(Entry::new("c", "tap", "z", Value::Null)).unwrap();
    let text = std::fs::read_to_string(l.journal_path()).unwrap();
    let damaged = text.replacen(r#""vm":"b""#, r#""vm":b""#, 1);
    std::fs::write(l.journal_path(), &damaged).unwrap();
    let fresh = Ledger::new(l.path());
    assert!(matches!(fresh.list(), Err(LedgerError::Corrupt { .. })));
    assert!(fresh.add(Entry::new("d", "tap", "w", Value::Null)).is_err());
    assert_eq!(std::fs::read_to_string(l.journal_path()).unwrap(), damaged);
    done(l);
}

#[test]
fn corrupt_ledger_is_an_error_not_a_reset() {
    let l = tmp();
    l.add(Entry::new("a", "tap", "x", Value::Null)).unwrap();
    std::fs::write(l.path(), b"{garbage").unwrap();
    assert!(matches!(l.list(), Err(LedgerError::Corrupt { .. })));
    assert!(l.add(Entry::new("b", "tap", "y", Value::Null)).is_err());
    assert_eq!(std::fs::read(l.path()).unwrap(), b"{garbage");
    done(l);
}
