//! Preparing an image's slots at import ([`prepare`]): the placeholders put in with debugfs,
//! where their blocks lie, and the map of them.

use super::*;

/// What [`prepare`] made, or why it made nothing (the image is used as it is).
pub enum Prepared {
    Map(SlotMap),
    Skipped(String),
}

/// ext4's superblock facts [`prepare`] needs: the block size, or why the filesystem is not
/// one to prepare (not ext4, not clean, a journal to replay).
fn superblock(f: &File, path: &Path) -> Result<Result<u64, String>, SnapError> {
    let mut sb = [0u8; 1024];
    f.read_exact_at(&mut sb, 1024)
        .map_err(io("read the superblock of", path))?;
    let u16_at = |o: usize| u16::from_le_bytes([sb[o], sb[o + 1]]);
    let u32_at = |o: usize| u32::from_le_bytes([sb[o], sb[o + 1], sb[o + 2], sb[o + 3]]);
    if u16_at(0x38) != 0xEF53 {
        return Ok(Err("not an ext2/3/4 filesystem".into()));
    }
    if u16_at(0x3A) & 1 == 0 {
        return Ok(Err("the filesystem was not cleanly unmounted".into()));
    }
    if u32_at(0x60) & 0x4 != 0 {
        return Ok(Err("the filesystem's journal needs recovery".into()));
    }
    let log = u32_at(0x18);
    if log > 6 {
        return Ok(Err(format!("block size 2^{} KiB", log)));
    }
    Ok(Ok(1024u64 << log))
}

fn nonce() -> String {
    use ssh_key::rand_core::{OsRng, RngCore};
    let mut b = [0u8; 12];
    OsRng.fill_bytes(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The blocks debugfs lists for each path of `paths` (`blocks PATH`), in one run.
fn blocks_of(
    disk: &File,
    paths: &[String],
    owner: Option<&Creds>,
) -> Result<Vec<Vec<u64>>, SnapError> {
    let first = customize::debugfs_each(disk, "blocks", paths, owner)?;
    Ok(first
        .into_iter()
        .map(|l| {
            l.filter(|l| l.trim_start().starts_with(|c: char| c.is_ascii_digit()))
                .and_then(|l| {
                    l.split_whitespace()
                        .map(str::parse)
                        .collect::<Result<Vec<u64>, _>>()
                        .ok()
                })
                .unwrap_or_default()
        })
        .collect())
}

/// Block numbers as byte extents of `block` bytes, neighbours merged.
pub fn extents(blocks: &[u64], block: u64) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for &b in blocks {
        let off = b.saturating_mul(block);
        match out.last_mut() {
            Some((o, l)) if *o + *l == off => *l += block,
            _ => out.push((off, block)),
        }
    }
    out
}

/// What the image has at `path`: nothing, a regular file (its content, when at most `cap`
/// bytes), or something else or larger.
#[derive(Debug, PartialEq)]
enum Found {
    Nothing,
    File(Vec<u8>),
    Other,
}

/// The `Type:` and `Size:` debugfs' `stat` shows.
fn stat_type_size(out: &str) -> Option<(&str, u64)> {
    let kind = out.split("Type: ").nth(1)?.split_whitespace().next()?;
    let size = out
        .split("Size: ")
        .nth(1)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some((kind, size))
}

/// The image's file `path`: looked at with `stat` first, so that only a regular file of at
/// most `cap` bytes is read (dumped into a memfd by debugfs).
fn image_file(
    disk: &File,
    path: &str,
    cap: u64,
    owner: Option<&Creds>,
) -> Result<Found, SnapError> {
    use std::io::Read;
    use std::os::fd::AsFd;
    let args = vec!["-f".to_string(), "-".into(), crate::snap::fd_arg(disk)];
    let out = crate::snap::tool(
        "debugfs",
        &args,
        &[disk.as_fd()],
        Some(format!("stat {path}\n").as_bytes()),
        owner,
        "e2fsprogs",
    )?;
    match stat_type_size(&out) {
        None => return Ok(Found::Nothing),
        Some(("regular", 0)) => return Ok(Found::Nothing),
        Some(("regular", n)) if n <= cap => {}
        Some(_) => return Ok(Found::Other),
    }
    let dump = customize::memfd("banger-probe", b"")?;
    let script = format!("dump {path} {}\n", crate::snap::fd_arg(&dump));
    let args = vec!["-f".to_string(), "-".into(), crate::snap::fd_arg(disk)];
    crate::snap::tool(
        "debugfs",
        &args,
        &[disk.as_fd(), dump.as_fd()],
        Some(script.as_bytes()),
        owner,
        "e2fsprogs",
    )?;
    let mut got = Vec::new();
    (&dump)
        .take(cap + 1)
        .read_to_end(&mut got)
        .map_err(io("read back", Path::new(path)))?;
    Ok(match got.len() as u64 {
        0 => Found::Nothing,
        n if n > cap => Found::Other,
        _ => Found::File(got),
    })
}

/// Prepares the ext4 image open read-write as `disk` (`path` for messages): the slots'
/// placeholders written in one debugfs pass (with `agent`, the guest agent installed as
/// `snap.create` installs it), their blocks looked up and checked. Run as `owner` when given
/// (debugfs parses the image).
pub fn prepare(
    disk: &File,
    path: &Path,
    owner: Option<&Creds>,
    agent: Option<&[u8]>,
) -> Result<Prepared, SnapError> {
    let block = match superblock(disk, path)? {
        Ok(b) => b,
        Err(why) => return Ok(Prepared::Skipped(why)),
    };
    // The image's own authorized_keys is kept in its slot (written back when a VM brings
    // no key); one too large for the slot, or not text, stays a file of the image.
    const KEYS: &str = "/root/.ssh/authorized_keys";
    let keep_keys = match image_file(disk, KEYS, slot_size(KEYS), owner)? {
        Found::Nothing => None,
        Found::File(k) => match String::from_utf8(k) {
            Ok(k) => Some(k),
            Err(_) => return prepare_plan(disk, path, owner, agent, block, full_plan(false), None),
        },
        Found::Other => {
            return prepare_plan(disk, path, owner, agent, block, full_plan(false), None)
        }
    };
    prepare_plan(disk, path, owner, agent, block, full_plan(true), keep_keys)
}

/// [`prepare`] with the plan of slots decided (and what the keys' slot keeps).
fn prepare_plan(
    disk: &File,
    path: &Path,
    owner: Option<&Creds>,
    agent: Option<&[u8]>,
    block: u64,
    mut plan: Plan,
    keep_keys: Option<String>,
) -> Result<Prepared, SnapError> {
    let nonce = nonce();
    for f in &mut plan.files {
        f.content = placeholder(&nonce, &f.path, slot_size(&f.path), block);
    }
    let slot_files = plan.files.clone();
    if let Some(bin) = agent {
        let a = customize::plan(&Custom {
            agent: Some(bin.to_vec()),
            ..Default::default()
        });
        for (d, m) in a.dirs {
            if !plan.dirs.iter().any(|(x, _)| *x == d) {
                plan.dirs.push((d, m));
            }
        }
        plan.files.extend(a.files);
        plan.links.extend(a.links);
    }
    customize::run_plan(disk, path, &plan, owner)?;
    let paths: Vec<String> = slot_files.iter().map(|f| f.path.clone()).collect();
    let found = blocks_of(disk, &paths, owner)?;
    let mut slots = Vec::new();
    for (f, b) in slot_files.iter().zip(found) {
        if b.is_empty() {
            return Ok(Prepared::Skipped(format!(
                "{} has no blocks of its own (inline data?)",
                f.path
            )));
        }
        slots.push(Slot {
            path: f.path.clone(),
            size: f.content.len() as u64,
            extents: extents(&b, block),
            keep: (f.path == "/root/.ssh/authorized_keys")
                .then(|| keep_keys.clone())
                .flatten(),
        });
    }
    let size = disk.metadata().map_err(io("stat", path))?.len();
    let map = SlotMap {
        v: VERSION,
        image_size: size,
        block,
        nonce: nonce.clone(),
        slots,
        agent: agent.map(|b| AgentInImage {
            sha256: sha256_hex(b),
            size: b.len() as u64,
        }),
    };
    if let Err(why) = map.check(size) {
        return Err(SnapError::Verify {
            path: path.to_path_buf(),
            what: format!("the identity slots: {why}"),
        });
    }
    for s in &map.slots {
        if !marked(disk, s, &nonce, block) {
            return Err(SnapError::Verify {
                path: path.to_path_buf(),
                what: format!("the identity slot {} is not where debugfs says", s.path),
            });
        }
    }
    Ok(Prepared::Map(map))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_says_type_and_size() {
        let out = "debugfs: stat /root/.ssh/authorized_keys\n\
Inode: 220   Type: regular    Mode:  0600   Flags: 0x80000\n\
Generation: 0    Version: 0x00000000:00000000\n\
User:     0   Group:     0   Project:     0   Size: 88\n";
        assert_eq!(stat_type_size(out), Some(("regular", 88)));
        assert_eq!(stat_type_size("debugfs: stat /x\n"), None);
        let link = "Inode: 9   Type: symlink    Mode:  0777\nUser: 0 Group: 0 Size: 12\n";
        assert_eq!(stat_type_size(link), Some(("symlink", 12)));
    }

    #[test]
    fn blocks_become_extents() {
        assert_eq!(
            extents(&[10, 11, 12, 20, 21, 5], 4096),
            vec![(40960, 12288), (81920, 8192), (20480, 4096)]
        );
        assert!(extents(&[], 1024).is_empty());
    }
}
