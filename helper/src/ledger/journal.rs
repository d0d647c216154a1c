//! The ledger's two files: `ledger.json`, a snapshot of every entry, and `ledger.journal`,
//! the changes made since, one line per update, so that an update writes one line (a few
//! hundred bytes) whatever the ledger's size, not the whole ledger.
//!
//! The journal's first line names the snapshot it belongs to (`{"journal":1,"gen":G}`, G the
//! snapshot's `gen`); every other line is one update: `{"del":[[vm,kind,id],...],"put":[entry,
//! ...]}`, applied in order. A journal whose `gen` is not the snapshot's belongs to an older
//! snapshot and is ignored (a compaction that stopped between writing the snapshot and removing
//! the journal; a snapshot written by hand). A line cut short at the end (a writer killed or a
//! power loss before it reached the disk) is an update that never completed: it is dropped and
//! the next update writes over it, and so is everything from a line holding zeros (pages a
//! power loss kept from the disk; nothing after them was synced). A bad line without zeros
//! followed by good ones is corruption, an error.
//!
//! Crash safety: the journal is only ever appended to under the ledger's lock, so what is on
//! disk after a crash is a prefix of the updates: an earlier, consistent ledger. An update that
//! adds a durable entry syncs the journal before it returns (which makes every line before it
//! durable too); the others are left to the filesystem, as a power loss takes away what they
//! name. Compaction writes a new snapshot durably, then removes the journal.

use super::Entry;
use banger::store::Durability;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::sync::Arc;

/// Updates in the journal after which the next one compacts instead (writes a snapshot).
pub(super) const COMPACT_LINES: usize = 256;
/// Or bytes: a few updates with large entries compact sooner.
pub(super) const COMPACT_BYTES: u64 = 1 << 20;

/// `ledger.json`.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(super) struct Snapshot {
    pub v: u32,
    /// Names this snapshot for its journal; a snapshot without one (older helpers wrote none,
    /// or written by hand) has no journal: the next update writes a new snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gen: Option<String>,
    pub entries: Vec<Entry>,
}

/// A snapshot's bytes (as [`Snapshot`], borrowed).
pub(super) fn snapshot_bytes(gen: &str, entries: &[Entry]) -> Result<Vec<u8>, serde_json::Error> {
    #[derive(Serialize)]
    struct Ref<'a> {
        v: u32,
        gen: &'a str,
        entries: &'a [Entry],
    }
    let mut b = serde_json::to_vec(&Ref { v: 1, gen, entries })?;
    b.push(b'\n');
    Ok(b)
}

/// The journal's first line.
#[derive(Debug, Serialize, Deserialize)]
struct Header {
    journal: u32,
    gen: String,
}

/// One update: the entries removed (by vm, kind, id), then the entries added or replaced.
#[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
pub(super) struct Change {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub del: Vec<(String, String, String)>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub put: Vec<Entry>,
}

fn key(e: &Entry) -> (&str, &str, &str) {
    (e.vm.as_str(), e.kind.as_str(), e.id.as_str())
}

impl Change {
    /// What turns `before` into `after` (entries are keyed by vm, kind and id).
    #[cfg(test)]
    pub fn between(before: &[Entry], after: &[Entry]) -> Change {
        use std::collections::HashMap;
        let old: HashMap<(&str, &str, &str), &Entry> = before.iter().map(|e| (key(e), e)).collect();
        let new: HashSet<(&str, &str, &str)> = after.iter().map(key).collect();
        Change {
            del: before
                .iter()
                .map(key)
                .filter(|k| !new.contains(k))
                .map(|(v, k, i)| (v.into(), k.into(), i.into()))
                .collect(),
            put: after
                .iter()
                .filter(|e| old.get(&key(e)) != Some(e))
                .cloned()
                .collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.del.is_empty() && self.put.is_empty()
    }

    /// Leaves only what changes `entries`: of several puts of one key the last; a put replaces
    /// a removal of its key; removals of what is not there and puts of what is there already
    /// go. Looks each key up in turn (a change holds a few entries, the ledger hundreds: no
    /// index, no copy).
    pub fn against(mut self, entries: &[Entry]) -> Change {
        let mut seen = HashSet::new();
        let mut put: Vec<Entry> = Vec::with_capacity(self.put.len());
        for e in self.put.into_iter().rev() {
            if seen.insert((e.vm.clone(), e.kind.clone(), e.id.clone())) {
                put.push(e);
            }
        }
        put.reverse();
        self.del.retain(|k| !seen.contains(k));
        let mut gone = HashSet::new();
        self.del.retain(|(v, k, i)| {
            gone.insert((v.clone(), k.clone(), i.clone()))
                && entries
                    .iter()
                    .any(|e| key(e) == (v.as_str(), k.as_str(), i.as_str()))
        });
        put.retain(|p| !entries.iter().any(|e| e == p));
        Change { del: self.del, put }
    }

    /// Durable when it adds an entry of a [`super::DURABLE_KINDS`] kind that `entries` lacks
    /// (the thing it names is made next and must never exist unrecorded), else consistent.
    pub fn durability(&self, entries: &[Entry]) -> Durability {
        let adds_durable = self.put.iter().any(|p| {
            super::DURABLE_KINDS.contains(&p.kind.as_str())
                && !entries.iter().any(|e| key(e) == key(p))
        });
        if adds_durable {
            Durability::Durable
        } else {
            Durability::Consistent
        }
    }

    /// Applies it: the removed and the replaced entries go, the added ones go at the end.
    pub fn apply(&self, entries: &mut Vec<Entry>) {
        let gone: HashSet<(&str, &str, &str)> = self
            .del
            .iter()
            .map(|(v, k, i)| (v.as_str(), k.as_str(), i.as_str()))
            .chain(self.put.iter().map(key))
            .collect();
        entries.retain(|e| !gone.contains(&key(e)));
        entries.extend(self.put.iter().cloned());
    }
}

/// A new snapshot generation: different from every earlier one of this ledger.
pub(super) fn new_gen() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!(
        "{t:x}-{:x}-{:x}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// The header line (with its newline) of a journal for the snapshot `gen`.
pub(super) fn header(gen: &str) -> Vec<u8> {
    let mut b = serde_json::to_vec(&Header {
        journal: 1,
        gen: gen.into(),
    })
    .unwrap_or_default();
    b.push(b'\n');
    b
}

/// A change as its line (with its newline).
pub(super) fn line(c: &Change) -> Result<Vec<u8>, serde_json::Error> {
    let mut b = serde_json::to_vec(c)?;
    b.push(b'\n');
    Ok(b)
}

/// What a journal's bytes hold for a snapshot.
#[derive(Debug, PartialEq)]
pub(super) struct Replayed {
    /// The snapshot's entries with every complete update applied.
    pub entries: Arc<Vec<Entry>>,
    /// Bytes at the start of the journal that belong to this state (0: none; the journal is
    /// absent, empty, or another snapshot's). Anything after it is a torn tail.
    pub valid: u64,
    /// Updates in those bytes.
    pub lines: usize,
}

/// Replays the journal `bytes` over `base`, the entries of the snapshot `gen`.
pub(super) fn replay(
    base: &Arc<Vec<Entry>>,
    gen: Option<&str>,
    bytes: &[u8],
) -> Result<Replayed, serde_json::Error> {
    let none = || Replayed {
        entries: base.clone(),
        valid: 0,
        lines: 0,
    };
    let mut lines = bytes.split_inclusive(|b| *b == b'\n');
    let Some(first) = lines.next() else {
        return Ok(none());
    };
    let mut at = first.len();
    let header: Option<Header> = first
        .strip_suffix(b"\n")
        .and_then(|l| serde_json::from_slice(l).ok());
    let Some(header) = header else {
        // Torn at its very first write (header and first line go in one write), unless
        // something good follows.
        return match rest_parses(&bytes[at..]) {
            Some(e) => Err(e),
            None => Ok(none()),
        };
    };
    if gen != Some(header.gen.as_str()) {
        return Ok(none());
    }
    let mut entries = (**base).clone();
    let mut n = 0;
    for l in lines {
        let change = l
            .strip_suffix(b"\n")
            .ok_or(None)
            .and_then(|l| serde_json::from_slice::<Change>(l).map_err(Some));
        match change {
            Ok(c) => {
                c.apply(&mut entries);
                at += l.len();
                n += 1;
            }
            Err(e) => {
                // Zeros in it: pages that never reached the disk before a power loss. Every
                // sync writes the whole file, so nothing after them was synced either: the
                // updates from here on were never durable and are dropped like a torn tail,
                // even if later pages made it.
                if !l.contains(&0) {
                    if let Some(e2) = rest_parses(&bytes[at + l.len()..]) {
                        return Err(e.unwrap_or(e2));
                    }
                }
                break;
            }
        }
    }
    Ok(Replayed {
        entries: Arc::new(entries),
        valid: at as u64,
        lines: n,
    })
}

/// `Some(error)` when a complete line in `rest` is an update: the bad line before it was not a
/// torn tail but corruption (the error says where the good line is, for the message).
fn rest_parses(rest: &[u8]) -> Option<serde_json::Error> {
    let good = rest
        .split_inclusive(|b| *b == b'\n')
        .filter_map(|l| l.strip_suffix(b"\n"))
        .any(|l| serde_json::from_slice::<Change>(l).is_ok_and(|c| c != Change::default()));
    good.then(|| {
        <serde_json::Error as serde::de::Error>::custom(
            "a damaged line is followed by complete ones (not a torn last write)",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn e(vm: &str, kind: &str, id: &str) -> Entry {
        Entry::new(vm, kind, id, Value::Null)
    }

    fn sorted(mut v: Vec<Entry>) -> Vec<(String, String, String, String)> {
        let mut k: Vec<_> = v
            .drain(..)
            .map(|e| (e.vm, e.kind, e.id, e.data.to_string()))
            .collect();
        k.sort();
        k
    }

    #[test]
    fn a_change_turns_before_into_after() {
        let before = vec![e("a", "tap", "t"), e("a", "disk", "/d"), e("b", "tap", "u")];
        let mut after = before.clone();
        after.retain(|x| x.id != "u");
        after[1].data = Arc::new(serde_json::json!({"complete": true}));
        after.push(e("c", "jail", "/j"));
        let c = Change::between(&before, &after);
        assert_eq!(c.del, vec![("b".into(), "tap".into(), "u".into())]);
        assert_eq!(
            c.put.len(),
            2,
            "the changed disk and the new jail, not the tap"
        );
        let mut replayed = before.clone();
        c.apply(&mut replayed);
        assert_eq!(sorted(replayed), sorted(after));
        assert_eq!(Change::between(&before, &before), Change::default());
    }

    #[test]
    fn a_change_against_the_entries_keeps_only_what_changes_them() {
        let have = vec![e("a", "tap", "t"), e("a", "disk", "/d")];
        let key = |v: &str, k: &str, i: &str| (v.to_string(), k.to_string(), i.to_string());
        // Removing what is not there, putting what is there already: nothing.
        let c = Change {
            del: vec![key("b", "tap", "u")],
            put: vec![have[0].clone()],
        };
        assert!(c.against(&have).is_empty());
        // Of two puts of one key the last; a put of a key also removed replaces it.
        let mut newer = e("a", "tap", "t");
        newer.data = Arc::new(serde_json::json!({"up": true}));
        let c = Change {
            del: vec![
                key("a", "tap", "t"),
                key("a", "disk", "/d"),
                key("a", "disk", "/d"),
            ],
            put: vec![
                e("c", "jail", "/j"),
                newer.clone(),
                have[0].clone(),
                newer.clone(),
            ],
        }
        .against(&have);
        assert_eq!(c.del, vec![key("a", "disk", "/d")]);
        assert_eq!(c.put.len(), 2);
        let mut after = have.clone();
        c.apply(&mut after);
        assert_eq!(sorted(after), sorted(vec![newer, e("c", "jail", "/j")]));
        // A removal and a put of the same entry as it is: nothing changes.
        let c = Change {
            del: vec![key("a", "tap", "t")],
            put: vec![have[0].clone()],
        };
        assert!(c.against(&have).is_empty());
    }

    fn journal(gen: &str, changes: &[Change]) -> Vec<u8> {
        let mut b = header(gen);
        for c in changes {
            b.extend(line(c).unwrap());
        }
        b
    }

    fn put(x: Entry) -> Change {
        Change {
            del: vec![],
            put: vec![x],
        }
    }

    #[test]
    fn replay_applies_the_lines_of_its_own_snapshot_only() {
        let base = Arc::new(vec![e("a", "tap", "t")]);
        let j = journal("g1", &[put(e("b", "tap", "u")), put(e("c", "tap", "v"))]);
        let r = replay(&base, Some("g1"), &j).unwrap();
        assert_eq!(r.entries.len(), 3);
        assert_eq!((r.valid, r.lines), (j.len() as u64, 2));
        // Another snapshot's journal, or none named: the snapshot alone.
        for gen in [Some("g2"), None] {
            let r = replay(&base, gen, &j).unwrap();
            assert_eq!((r.entries.len(), r.valid, r.lines), (1, 0, 0));
        }
        assert_eq!(replay(&base, Some("g1"), b"").unwrap().valid, 0);
    }

    #[test]
    fn a_torn_last_line_is_dropped_and_a_damaged_middle_is_an_error() {
        let base = Arc::new(vec![]);
        let whole = journal("g", &[put(e("a", "tap", "t")), put(e("b", "tap", "u"))]);
        let one = journal("g", &[put(e("a", "tap", "t"))]);
        // Cut anywhere in the last line (with or without its newline): the first line holds.
        for cut in one.len()..whole.len() {
            let r = replay(&base, Some("g"), &whole[..cut]).unwrap();
            assert_eq!(
                (r.entries.len(), r.valid),
                (1, one.len() as u64),
                "cut at {cut}"
            );
        }
        // Zeros where the tail was (a power loss before the data reached the disk): the same.
        let mut zeroed = one.clone();
        zeroed.extend(std::iter::repeat_n(0u8, 300));
        assert_eq!(replay(&base, Some("g"), &zeroed).unwrap().lines, 1);
        // Zeros in the middle, good lines after them (a power loss that kept a later page and
        // lost an earlier one, all of them written after the last sync): the lines before.
        let three = journal(
            "g",
            &[
                put(e("a", "tap", "t")),
                put(e("b", "tap", "u")),
                put(e("c", "tap", "v")),
            ],
        );
        let mut gap = three.clone();
        for b in &mut gap[one.len() + 5..one.len() + 20] {
            *b = 0;
        }
        let r = replay(&base, Some("g"), &gap).unwrap();
        assert_eq!((r.entries.len(), r.valid), (1, one.len() as u64));
        // A header cut short: nothing.
        assert_eq!(replay(&base, Some("g"), &whole[..5]).unwrap().valid, 0);
        // A damaged line with a good one after it: corruption, not a torn write.
        let mut bad = one.clone();
        bad.extend(b"{\"put\":[{\"vm\"\n");
        bad.extend(line(&put(e("c", "tap", "v"))).unwrap());
        assert!(replay(&base, Some("g"), &bad).is_err());
    }
}
