//! The VM's serial console, bounded in size: Firecracker writes it to a FIFO in the jail
//! (`PUT /serial`, sent by the owner's `banger-jail`), and `banger-console-keeper`, started by
//! `banger-jail` as the owner, copies it into `console.log` and rotates that past the
//! configured size. The helper only makes the FIFO, in the staging dir while that is still
//! root's, so nothing can be swapped between making it and handing it to the owner.

use super::JailError;
use banger::fsx::Dir;

/// The FIFO's name in the jail's root.
pub const FIFO: &str = "console.fifo";

/// Makes the FIFO in `root` (a directory only root can write), owned by the owner, 0600.
pub fn make_fifo(root: &Dir, uid: u32, gid: u32) -> Result<(), JailError> {
    root.mkfifo(FIFO, 0o600)?;
    root.chown_at(FIFO, uid, gid)?;
    Ok(())
}
