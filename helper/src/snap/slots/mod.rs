//! Identity slots: a guest image prepared when it is imported, so that a new VM's identity
//! goes into its disk by a few `pwrite`s instead of a debugfs run (5-8 ms of every first
//! `banger up`, issue 14).
//!
//! [`prepare`] (run by `banger-image` on the staged `rootfs.ext4`, before its checksum) puts
//! every file a first customization writes (the hostname and hosts files, the SSH host keys,
//! the network files, and `/root/.ssh/authorized_keys` when the image has none) into the
//! image as a *placeholder* of a fixed size: root-owned, the modes [`super::customize`]
//! gives them, each block starting with a marker line
//! (`#banger-slot NONCE PATH BLOCK`) and the rest newlines. It asks debugfs where each file's
//! blocks lie, checks that the bytes there are the placeholder, and returns the map
//! ([`SlotMap`], kept as `images/NAME/slots.json`): for each file, its size and its byte
//! extents in the image.
//!
//! [`write`] runs in `snap.create` on a disk cloned from the image a moment before (never on
//! a disk a guest has used: its files may have moved): it checks the map against the disk's
//! size, reads each extent's marker back, and writes each file's content padded with
//! newlines to the slot's size (systemd, OpenSSH, the resolver, JSON and the shell all read
//! past trailing newlines). A map that does not fit, a marker that is not there, or a request
//! that is not exactly the slots (the agent asked for, no network) falls back to debugfs,
//! which then also removes the slots this request does not fill.
//!
//! Only data blocks are written: no inode, bitmap or checksum changes (ext4 checksums
//! metadata, not data), so nothing of the filesystem's structure is touched.

use super::customize::{self, Custom, GuestFile, Plan};
use super::SnapError;
use banger::detach::Creds;
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

mod prepare;
pub use prepare::{extents, prepare, Prepared};

/// The map's file in the image's directory.
pub const FILE: &str = "slots.json";
/// The largest map `snap.create` reads.
pub const MAX_MAP_BYTES: u64 = 256 * 1024;
const VERSION: u32 = 1;
/// How many bytes of each extent's start are compared with the placeholder.
const MARK_CHECK: u64 = 96;

/// Where the slots of an image lie.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlotMap {
    pub v: u32,
    /// The size of the image the map was made for.
    pub image_size: u64,
    /// The filesystem's block size: every placeholder block starts with a marker.
    pub block: u64,
    /// Random per image; part of every placeholder block's marker.
    pub nonce: String,
    pub slots: Vec<Slot>,
    /// The guest agent put into the image with the slots (its files as `snap.create` installs
    /// them): a VM that asks for the same agent has it already.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<AgentInImage>,
}

/// The agent an image was prepared with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentInImage {
    pub sha256: String,
    pub size: u64,
}

pub use banger::digest::sha256_hex;

/// One file of the guest kept for the identity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Slot {
    /// The path in the guest.
    pub path: String,
    /// The file's size: what is written is padded with newlines to it.
    pub size: u64,
    /// Byte ranges of the image (offset, length) holding the file, in the file's order.
    pub extents: Vec<(u64, u64)>,
    /// What the image had there (its own `authorized_keys`): written when a request leaves
    /// the slot out, as a disk made without slots would keep it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep: Option<String>,
}

/// A slot's size: room for the largest content banger writes there.
fn slot_size(path: &str) -> u64 {
    match path {
        "/root/.ssh/authorized_keys" => 16 * 1024 + 64,
        "/etc/hostname" => 256,
        "/etc/hosts" | "/etc/banger/net.env" | "/etc/resolv.conf" => 512,
        p if p.ends_with(".pub") => 512,
        _ => 1024,
    }
}

/// The placeholder of `size` bytes for `path`: each block of `block` bytes starts with its
/// marker line; the rest is newlines.
pub fn placeholder(nonce: &str, path: &str, size: u64, block: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(size as usize);
    let mut i = 0u64;
    while (out.len() as u64) < size {
        let mut b = format!("#banger-slot {nonce} {path} {i}\n").into_bytes();
        b.resize(block as usize, b'\n');
        out.extend_from_slice(&b);
        i += 1;
    }
    out.truncate(size as usize);
    out
}

/// The mode a customization gives `path` (0644 for a path it does not write).
pub fn slot_mode(path: &str) -> u32 {
    full_plan(true)
        .files
        .iter()
        .find(|f| f.path == path)
        .map_or(0o644, |f| f.mode)
}

/// Whether `path` is one a slot may hold.
pub fn is_slot_path(path: &str) -> bool {
    slot_paths().iter().any(|p| p == path)
}

/// Every path [`customize::plan`] can put into a guest that a slot may hold.
fn slot_paths() -> &'static [String] {
    static PATHS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    PATHS.get_or_init(|| {
        let mut p: Vec<String> = full_plan(true).files.into_iter().map(|f| f.path).collect();
        p.sort();
        p
    })
}

/// The plan of the fullest first customization: hostname, the owner's key, host keys, a
/// network with the most DNS servers (the host key files with their paths and modes).
fn full_plan(with_ssh_key: bool) -> Plan {
    let long = "x".repeat(32);
    let net = customize::Net {
        ip: std::net::Ipv4Addr::new(10, 200, 0, 2),
        prefix: 24,
        gateway: Some(std::net::Ipv4Addr::new(10, 200, 0, 1)),
        // The longest text: eight full-length IPv6 servers.
        dns: (0..8u16)
            .map(|i| {
                std::net::IpAddr::from([
                    0xfd00,
                    0x1111,
                    0x2222,
                    0x3333,
                    0x4444,
                    0x5555,
                    0x6666,
                    0x7770 + i,
                ])
            })
            .collect(),
        mac: Some("06:00:0a:c8:00:02".into()),
    };
    let c = Custom {
        hostname: Some(long.clone()),
        ssh_pubkey: with_ssh_key.then(|| format!("ssh-ed25519 {}", "A".repeat(68))),
        host_keys: true,
        net: Some(net),
        agent: None,
        agent_sha256: None,
    };
    let mut p = customize::plan(&c);
    for t in customize::HOST_KEY_TYPES {
        p.files.push(GuestFile {
            path: format!("/etc/ssh/ssh_host_{t}_key"),
            content: Vec::new(),
            mode: 0o600,
        });
        p.files.push(GuestFile {
            path: format!("/etc/ssh/ssh_host_{t}_key.pub"),
            content: Vec::new(),
            mode: 0o644,
        });
    }
    p
}

impl SlotMap {
    /// Checks the map for an image of `image_size` bytes: the version, known and distinct
    /// paths, sizes within bounds, extents inside the image that cover each file and overlap
    /// nothing. `Err` says what is wrong.
    pub fn check(&self, image_size: u64) -> Result<(), String> {
        if self.v != VERSION {
            return Err(format!("version {} (this banger knows {VERSION})", self.v));
        }
        if self.image_size != image_size {
            return Err(format!(
                "made for an image of {} bytes, the image has {image_size}",
                self.image_size
            ));
        }
        if !self.block.is_power_of_two() || !(1024..=65536).contains(&self.block) {
            return Err(format!("block size {}", self.block));
        }
        if !(16..=64).contains(&self.nonce.len())
            || !self.nonce.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return Err("the nonce is not 16-64 hex digits".into());
        }
        let known = slot_paths();
        let mut seen: Vec<&str> = Vec::new();
        let mut ranges: Vec<(u64, u64)> = Vec::new();
        if self.slots.is_empty() || self.slots.len() > known.len() {
            return Err(format!("{} slots", self.slots.len()));
        }
        for s in &self.slots {
            if !known.contains(&s.path) || seen.contains(&s.path.as_str()) {
                return Err(format!("slot {:?} is unknown or twice", s.path));
            }
            seen.push(&s.path);
            if s.size == 0 || s.size != slot_size(&s.path) {
                return Err(format!("slot {} has size {}", s.path, s.size));
            }
            if s.extents.is_empty() || s.extents.len() > 64 {
                return Err(format!("slot {} has {} extents", s.path, s.extents.len()));
            }
            let mut covered = 0u64;
            for &(off, len) in &s.extents {
                let end = off.checked_add(len).filter(|e| len > 0 && *e <= image_size);
                let Some(end) = end else {
                    return Err(format!(
                        "slot {}: extent {off}+{len} is outside the image",
                        s.path
                    ));
                };
                ranges.push((off, end));
                covered = covered.saturating_add(len);
            }
            if s.keep.as_ref().is_some_and(|k| k.len() as u64 > s.size) {
                return Err(format!("slot {}: what it keeps does not fit", s.path));
            }
            if covered < s.size {
                return Err(format!(
                    "slot {}: extents cover {covered} of {} bytes",
                    s.path, s.size
                ));
            }
        }
        ranges.sort_unstable();
        if ranges.windows(2).any(|w| w[1].0 < w[0].1) {
            return Err("extents overlap".into());
        }
        Ok(())
    }
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> SnapError + 'a {
    move |source| SnapError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `bytes` (exactly the slot's size) over the slot's extents in `disk`.
fn put(disk: &File, path: &Path, s: &Slot, bytes: &[u8]) -> Result<(), SnapError> {
    let mut done = 0usize;
    for &(off, len) in &s.extents {
        if done >= bytes.len() {
            break;
        }
        let n = (len as usize).min(bytes.len() - done);
        disk.write_all_at(&bytes[done..done + n], off)
            .map_err(io("write the identity into", path))?;
        done += n;
    }
    Ok(())
}

/// Whether each extent of `s` in `disk` starts as the placeholder does.
fn marked(disk: &File, s: &Slot, nonce: &str, block: u64) -> bool {
    let want = placeholder(nonce, &s.path, s.size, block);
    let mut file_off = 0u64;
    for &(off, len) in &s.extents {
        if file_off >= s.size {
            break;
        }
        let n = MARK_CHECK.min(len).min(s.size - file_off) as usize;
        let mut got = vec![0u8; n];
        if disk.read_exact_at(&mut got, off).is_err()
            || got[..] != want[file_off as usize..file_off as usize + n]
        {
            return false;
        }
        file_off += len;
    }
    true
}

/// What [`write`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Written {
    /// Every slot filled.
    Done,
    /// Nothing written: why the slots do not serve this request (debugfs does it).
    No(String),
}

/// Fills the slots of `map` in the freshly cloned `disk` with `files` (each slot's content;
/// `files` must name exactly the map's slots), padded with newlines, then syncs the disk's
/// data. Writes nothing unless every slot fits, every marker is in place and the request is
/// exactly the slots.
pub fn write(
    disk: &File,
    path: &Path,
    map: &SlotMap,
    files: &[GuestFile],
) -> Result<Written, SnapError> {
    let size = disk.metadata().map_err(io("stat", path))?.len();
    if let Err(why) = map.check(size) {
        return Ok(Written::No(format!("the slot map does not fit: {why}")));
    }
    if let Some(f) = files
        .iter()
        .find(|f| !map.slots.iter().any(|s| s.path == f.path))
    {
        return Ok(Written::No(format!("{} has no slot", f.path)));
    }
    let block = map.block;
    let mut plan = Vec::new();
    for s in &map.slots {
        // The request's content, else what the image had there.
        let content = match (files.iter().find(|f| f.path == s.path), &s.keep) {
            (Some(f), _) => f.content.as_slice(),
            (None, Some(k)) => k.as_bytes(),
            (None, None) => return Ok(Written::No(format!("nothing for {}", s.path))),
        };
        if content.len() as u64 > s.size {
            return Ok(Written::No(format!("{} does not fit its slot", s.path)));
        }
        if !marked(disk, s, &map.nonce, block) {
            return Ok(Written::No(format!(
                "{} is not where the map says (the image changed since it was imported?)",
                s.path
            )));
        }
        let mut bytes = content.to_vec();
        bytes.resize(s.size as usize, b'\n');
        plan.push((s, bytes));
    }
    for (s, bytes) in &plan {
        put(disk, path, s, bytes)?;
    }
    // The ledger says the disk is whole next: what it holds is on disk first.
    banger::timing::span("sync", || disk.sync_data()).map_err(io("sync", path))?;
    Ok(Written::Done)
}

/// Reads and parses `images/IMAGE/slots.json` (at most [`MAX_MAP_BYTES`]); None when there
/// is none or it does not parse.
pub fn read(images: &banger::fsx::Dir, image: &str) -> Option<SlotMap> {
    let rel = PathBuf::from(image).join(FILE);
    let bytes = images.read_capped(&rel, MAX_MAP_BYTES).ok()?;
    serde_json::from_slice(&bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map() -> SlotMap {
        SlotMap {
            v: VERSION,
            image_size: 1 << 20,
            block: 4096,
            nonce: "00112233445566778899aabb".into(),
            slots: vec![
                Slot {
                    path: "/etc/hostname".into(),
                    size: 256,
                    extents: vec![(4096, 4096)],
                    keep: None,
                },
                Slot {
                    path: "/root/.ssh/authorized_keys".into(),
                    size: 16 * 1024 + 64,
                    extents: vec![(8192, 8192), (65536, 12288)],
                    keep: Some("ssh-ed25519 AAAA the-image's-own\n".into()),
                },
            ],
            agent: None,
        }
    }

    #[test]
    fn a_map_is_checked_against_the_image() {
        assert_eq!(map().check(1 << 20), Ok(()));
        assert!(map().check(1 << 21).unwrap_err().contains("made for"));
        let mut m = map();
        m.slots[0].path = "/etc/shadow".into();
        assert!(m.check(1 << 20).unwrap_err().contains("unknown"));
        let mut m = map();
        m.slots[1].path = "/etc/hostname".into();
        assert!(m.check(1 << 20).is_err(), "a path twice");
        let mut m = map();
        m.slots[0].extents = vec![(1 << 20, 4096)];
        assert!(m.check(1 << 20).unwrap_err().contains("outside"));
        let mut m = map();
        m.slots[0].extents = vec![(u64::MAX - 10, 4096)];
        assert!(m.check(1 << 20).unwrap_err().contains("outside"));
        let mut m = map();
        m.slots[0].extents = vec![(8192, 4096)];
        assert!(m.check(1 << 20).unwrap_err().contains("overlap"));
        let mut m = map();
        m.slots[1].extents = vec![(8192, 4096)];
        assert!(m.check(1 << 20).unwrap_err().contains("cover"));
        let mut m = map();
        m.slots[0].size = 100_000;
        assert!(m.check(1 << 20).is_err());
        let mut m = map();
        m.nonce = "../../x".into();
        assert!(m.check(1 << 20).is_err());
        let mut m = map();
        m.block = 3000;
        assert!(m.check(1 << 20).unwrap_err().contains("block"));
        let mut m = map();
        m.slots[1].keep = Some("k".repeat(20000));
        assert!(m.check(1 << 20).unwrap_err().contains("keeps"));
        let mut m = map();
        m.v = 2;
        assert!(m.check(1 << 20).is_err());
    }

    #[test]
    fn placeholders_mark_every_block() {
        let p = placeholder("abcd", "/etc/hosts", 2500, 1024);
        assert_eq!(p.len(), 2500);
        assert!(p.starts_with(b"#banger-slot abcd /etc/hosts 0\n\n"));
        assert!(p[1024..].starts_with(b"#banger-slot abcd /etc/hosts 1\n"));
        assert!(p[2048..].starts_with(b"#banger-slot abcd /etc/hosts 2\n"));
        assert_eq!(placeholder("abcd", "/etc/hosts", 2500, 1024), p);
    }

    #[test]
    fn the_slots_are_what_a_first_customization_writes() {
        let p = slot_paths();
        for want in [
            "/etc/hostname",
            "/etc/hosts",
            "/etc/resolv.conf",
            "/etc/banger/net.json",
            "/etc/banger/net.env",
            "/etc/systemd/network/10-banger.network",
            "/etc/ssh/ssh_host_ed25519_key",
            "/etc/ssh/ssh_host_ecdsa_key.pub",
            "/root/.ssh/authorized_keys",
        ] {
            assert!(p.iter().any(|x| x == want), "{want}");
        }
        // The fullest content fits each slot.
        let (_, keys) = customize::host_keys(&"x".repeat(32)).unwrap();
        let mut plan = full_plan(true);
        plan.files.retain(|f| !f.path.starts_with("/etc/ssh/"));
        let c = Custom {
            hostname: Some("x".repeat(32)),
            ssh_pubkey: Some(format!("ssh-ed25519 {}", "A".repeat(16 * 1024 - 20))),
            ..Default::default()
        };
        for f in customize::plan(&c)
            .files
            .iter()
            .chain(&plan.files)
            .chain(&keys)
        {
            assert!(
                f.content.len() as u64 <= slot_size(&f.path),
                "{} holds {} bytes",
                f.path,
                f.content.len()
            );
        }
    }

    #[test]
    fn write_fills_the_slots_or_nothing() {
        let dir = std::env::temp_dir().join(format!("banger-slots-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("disk");
        let m = map();
        let mut img = vec![0u8; 1 << 20];
        for s in &m.slots {
            let ph = placeholder(&m.nonce, &s.path, s.size, 4096);
            let mut done = 0usize;
            for &(off, len) in &s.extents {
                let n = (len as usize).min(ph.len() - done);
                img[off as usize..off as usize + n].copy_from_slice(&ph[done..done + n]);
                done += n;
            }
        }
        std::fs::write(&path, &img).unwrap();
        let disk = File::options().read(true).write(true).open(&path).unwrap();
        let files = |host: &str| {
            vec![
                GuestFile {
                    path: "/etc/hostname".into(),
                    content: format!("{host}\n").into_bytes(),
                    mode: 0o644,
                },
                GuestFile {
                    path: "/root/.ssh/authorized_keys".into(),
                    content: b"ssh-ed25519 AAAA me\n".to_vec(),
                    mode: 0o600,
                },
            ]
        };
        // A file without a slot: nothing written.
        let mut extra = files("dev1");
        extra.push(GuestFile {
            path: "/etc/banger/net.env".into(),
            content: b"BANGER_IP=10.0.0.2\n".to_vec(),
            mode: 0o644,
        });
        let no = write(&disk, &path, &m, &extra).unwrap();
        assert!(matches!(no, Written::No(w) if w.contains("no slot")));
        assert_eq!(std::fs::read(&path).unwrap(), img);
        // A slot the request leaves out that keeps nothing: nothing written either.
        let mut no_host = m.clone();
        no_host.slots[1].keep = None;
        let no = write(&disk, &path, &no_host, &files("dev1")[..1]).unwrap();
        assert!(matches!(no, Written::No(w) if w.contains("nothing for")));
        assert_eq!(std::fs::read(&path).unwrap(), img);
        // The keys' slot left out keeps what the image had.
        assert_eq!(
            write(&disk, &path, &m, &files("dev0")[..1]).unwrap(),
            Written::Done
        );
        let got = std::fs::read(&path).unwrap();
        assert!(got[8192..].starts_with(b"ssh-ed25519 AAAA the-image's-own\n\n"));
        std::fs::write(&path, &img).unwrap();
        assert_eq!(
            write(&disk, &path, &m, &files("dev1")).unwrap(),
            Written::Done
        );
        let got = std::fs::read(&path).unwrap();
        let mut want = b"dev1\n".to_vec();
        want.resize(256, b'\n');
        assert_eq!(&got[4096..4096 + 256], &want[..]);
        // The key file's second extent starts 8192 bytes into it: newlines there.
        assert!(got[8192..].starts_with(b"ssh-ed25519 AAAA me\n\n\n"));
        assert!(got[65536..65536 + 8192].iter().all(|b| *b == b'\n'));
        // Written once, the markers are gone: a second write refuses.
        assert!(matches!(
            write(&disk, &path, &m, &files("dev2")).unwrap(),
            Written::No(w) if w.contains("not where")
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
