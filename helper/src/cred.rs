//! Doing work with the owner's credentials.
//!
//! The owner's state dir (records, disks, images) is the owner's to write. The helper never
//! resolves a path there as root: file work in it runs on a fresh thread whose filesystem
//! identity is the owner's (`setfsuid`, `setfsgid` and the supplementary groups, all per
//! thread), so the kernel checks every open, create, link and unlink as it would for the
//! owner, and a symlink or a swapped directory can only lead to what the owner could reach
//! anyway. Changing the fsuid away from 0 also drops the filesystem capabilities
//! (`CAP_DAC_OVERRIDE`, `CAP_CHOWN`, `CAP_FOWNER`...) of that thread. The thread ends with the
//! work, so no credential change ever leaks into another request.

use banger::detach::Creds;
use banger::proto::{code, OpError};

#[derive(Debug, thiserror::Error)]
pub enum CredError {
    #[error("cannot take the owner's credentials (uid {uid}, gid {gid})")]
    Switch {
        uid: u32,
        gid: u32,
        #[source]
        source: std::io::Error,
    },
    #[error("the work done as the owner failed unexpectedly")]
    Panicked,
}

impl From<CredError> for OpError {
    fn from(e: CredError) -> OpError {
        OpError::new(code::FAILED, banger::cli::one_line(&e))
    }
}

/// Runs `f` with `creds` as the filesystem identity, on a thread of its own. With no creds,
/// or when this process is not root (it then has nothing to give away), runs `f` here.
pub fn as_owner<T: Send>(
    creds: Option<&Creds>,
    f: impl FnOnce() -> T + Send,
) -> Result<T, CredError> {
    let Some(c) = creds else {
        return Ok(f());
    };
    if !rustix::process::geteuid().is_root() {
        return Ok(f());
    }
    std::thread::scope(|s| {
        let h = s.spawn(|| -> Result<T, CredError> {
            switch(c)?;
            Ok(f())
        });
        h.join().map_err(|_| CredError::Panicked)?
    })
}

fn switch(c: &Creds) -> Result<(), CredError> {
    let fail = |source: std::io::Error| CredError::Switch {
        uid: c.uid,
        gid: c.gid,
        source,
    };
    let groups: Vec<rustix::fs::Gid> = c
        .groups
        .iter()
        .map(|g| rustix::fs::Gid::from_raw(*g))
        .collect();
    // A raw per-thread setgroups (glibc's would change every thread of the helper).
    rustix::thread::set_thread_groups(&groups).map_err(|e| fail(e.into()))?;
    // setfsgid/setfsuid are per thread too; they return the previous value, so the change
    // is checked by asking again with an invalid id (which changes nothing).
    nix::unistd::setfsgid(nix::unistd::Gid::from_raw(c.gid));
    nix::unistd::setfsuid(nix::unistd::Uid::from_raw(c.uid));
    let fsgid = nix::unistd::setfsgid(nix::unistd::Gid::from_raw(u32::MAX));
    let fsuid = nix::unistd::setfsuid(nix::unistd::Uid::from_raw(u32::MAX));
    if fsuid.as_raw() != c.uid || fsgid.as_raw() != c.gid {
        return Err(fail(std::io::Error::other(format!(
            "the thread's filesystem ids are {}:{}",
            fsuid.as_raw(),
            fsgid.as_raw()
        ))));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    #[test]
    fn work_as_the_owner_gets_the_owners_rights_only() {
        if !rustix::process::geteuid().is_root() {
            return;
        }
        let d = std::env::temp_dir().join(format!("banger-cred-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o777)).unwrap();
        let secret = d.join("secret");
        std::fs::write(&secret, b"root only").unwrap();
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
        let owner = Creds {
            uid: 4343,
            gid: 4343,
            groups: vec![4343],
        };
        let (read, made) = as_owner(Some(&owner), || {
            let read = std::fs::read(&secret).is_ok();
            let made = std::fs::write(d.join("mine"), b"x").is_ok();
            (read, made)
        })
        .unwrap();
        assert!(!read, "the owner cannot read root's 0600 file");
        assert!(made);
        let m = std::fs::metadata(d.join("mine")).unwrap();
        assert_eq!((m.uid(), m.gid()), (4343, 4343), "created as the owner");
        // This thread kept root's identity.
        assert!(std::fs::read(&secret).is_ok());
        let _ = std::fs::remove_dir_all(&d);
    }
}
