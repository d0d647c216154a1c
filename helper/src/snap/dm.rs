//! device-mapper snapshots: a read-only loop device over the image, a loop device over the
//! VM's sparse COW file, and `dmsetup create banger-VM` with a `snapshot` table. A disk
//! bigger than the image gets an origin `banger-VM-base` that appends a `zero` target to
//! the image, so the snapshot (and then the filesystem) can be grown.

use super::{run, SnapError};

/// Chunk size of the snapshot's exception store, in 512-byte sectors (4 KiB).
pub const CHUNK_SECTORS: u64 = 8;

/// The snapshot device's name: `banger-VM` (at most 39 bytes; dm allows 127).
pub fn dm_name(vm: &str) -> String {
    format!("banger-{vm}")
}

/// The grown origin's name: `banger-VM-base`.
pub fn base_name(vm: &str) -> String {
    format!("banger-{vm}-base")
}

/// `/dev/mapper/NAME`.
pub fn mapper_path(name: &str) -> String {
    format!("/dev/mapper/{name}")
}

/// Bytes to 512-byte sectors, rounding down (images are whole sectors).
pub fn sectors(bytes: u64) -> u64 {
    bytes / 512
}

/// The table of the grown origin: the image, then zeros up to the disk's size.
pub fn origin_table(base_dev: &str, image_bytes: u64, disk_bytes: u64) -> String {
    let img = sectors(image_bytes);
    let total = sectors(disk_bytes);
    if total <= img {
        return format!("0 {img} linear {base_dev} 0");
    }
    format!("0 {img} linear {base_dev} 0\n{img} {} zero", total - img)
}

/// The snapshot's table: persistent exceptions in the COW device, 4 KiB chunks.
pub fn snapshot_table(origin_dev: &str, cow_dev: &str, disk_bytes: u64) -> String {
    format!(
        "0 {} snapshot {origin_dev} {cow_dev} P {CHUNK_SECTORS}",
        sectors(disk_bytes)
    )
}

/// Whether device-mapper works here: `/dev/mapper/control` opens and `dmsetup version` talks
/// to the kernel. The reason when it does not.
pub fn available() -> Result<(), String> {
    if let Err(e) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/mapper/control")
    {
        return Err(format!("/dev/mapper/control: {e}"));
    }
    run("dmsetup", &["version"], "dmsetup")
        .map(|_| ())
        .map_err(|e| banger::cli::one_line(&e))
}

/// Creates a dm device with `table`.
pub fn dm_create(name: &str, table: &str) -> Result<(), SnapError> {
    run("dmsetup", &["create", name, "--table", table], "dmsetup").map(|_| ())
}

/// Removes a dm device; gone already is fine.
pub fn dm_remove(name: &str) -> Result<(), SnapError> {
    if run("dmsetup", &["info", name], "dmsetup").is_err() {
        return Ok(());
    }
    run("dmsetup", &["remove", "--retry", name], "dmsetup").map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_table_text() {
        assert_eq!(
            snapshot_table("/dev/loop3", "/dev/loop4", 1 << 30),
            "0 2097152 snapshot /dev/loop3 /dev/loop4 P 8"
        );
    }

    #[test]
    fn origin_table_appends_zeros_when_growing() {
        assert_eq!(
            origin_table("/dev/loop3", 1 << 30, 4 << 30),
            "0 2097152 linear /dev/loop3 0\n2097152 6291456 zero"
        );
        assert_eq!(
            origin_table("/dev/loop3", 1 << 30, 1 << 30),
            "0 2097152 linear /dev/loop3 0"
        );
        // A snapshot over the grown origin covers the whole disk.
        assert_eq!(
            snapshot_table("/dev/mapper/banger-a-base", "/dev/loop4", 4 << 30),
            "0 8388608 snapshot /dev/mapper/banger-a-base /dev/loop4 P 8"
        );
    }

    #[test]
    fn names_fit_device_mapper() {
        let vm = "a".repeat(32);
        assert!(base_name(&vm).len() <= 127);
        assert_eq!(dm_name("dev1"), "banger-dev1");
        assert_eq!(mapper_path("banger-dev1"), "/dev/mapper/banger-dev1");
        assert_eq!(sectors(1000), 1);
    }

    /// Runs only where device-mapper works; says so loudly otherwise.
    #[test]
    fn device_mapper_round_trip_when_available() {
        if let Err(why) = available() {
            eprintln!("SKIPPED: device-mapper test: device-mapper is not available here ({why})");
            return;
        }
        if !rustix::process::geteuid().is_root() {
            eprintln!("SKIPPED: device-mapper test needs root");
            return;
        }
        let d = std::env::temp_dir().join(format!("banger-dm-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let (img, cow) = (d.join("img"), d.join("cow"));
        std::fs::File::create(&img)
            .unwrap()
            .set_len(8 << 20)
            .unwrap();
        std::fs::File::create(&cow)
            .unwrap()
            .set_len(8 << 20)
            .unwrap();
        use super::super::loopdev;
        let imgf = std::fs::File::open(&img).unwrap();
        let cowf = std::fs::File::options()
            .read(true)
            .write(true)
            .open(&cow)
            .unwrap();
        let base = loopdev::attach(&imgf, true, "banger-unit").unwrap();
        let c = loopdev::attach(&cowf, false, "banger-unit").unwrap();
        let name = format!("banger-unit-{}", std::process::id());
        let r = dm_create(&name, &snapshot_table(&base.device, &c.device, 8 << 20));
        let _ = dm_remove(&name);
        loopdev::detach(&c).unwrap();
        loopdev::detach(&base).unwrap();
        let _ = std::fs::remove_dir_all(&d);
        r.unwrap();
    }
}
