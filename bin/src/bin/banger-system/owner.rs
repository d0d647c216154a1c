//! The owner: the one non-root user banger is installed for.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum OwnerError {
    #[error("no --owner given and SUDO_USER is not set: name the user who will run banger: sudo banger system install --owner USER")]
    Unknown,
    #[error("no user named {0:?} on this host (create it first, or pass another --owner)")]
    NoSuchUser(String),
    #[error("cannot look up user {name:?}")]
    Lookup {
        name: String,
        #[source]
        source: nix::Error,
    },
    #[error("refusing {0:?} as the owner: banger's owner is the one unprivileged user it serves; pass --owner USER")]
    Root(String),
}

/// Who banger is installed for.
#[derive(Debug, Clone, PartialEq)]
pub struct Owner {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    /// The primary group's name, or the gid as a number when it has none.
    pub group: String,
    pub home: PathBuf,
}

impl Owner {
    /// `--owner` (a name or a uid), else `SUDO_USER`.
    pub fn resolve(given: Option<&str>) -> Result<Owner, OwnerError> {
        let sudo = std::env::var("SUDO_USER").ok().filter(|s| !s.is_empty());
        let name = given
            .map(String::from)
            .or(sudo)
            .ok_or(OwnerError::Unknown)?;
        let user = match name.parse::<u32>() {
            Ok(uid) => nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)),
            Err(_) => nix::unistd::User::from_name(&name),
        }
        .map_err(|source| OwnerError::Lookup {
            name: name.clone(),
            source,
        })?
        .ok_or_else(|| OwnerError::NoSuchUser(name.clone()))?;
        if user.uid.is_root() {
            return Err(OwnerError::Root(user.name));
        }
        let group = nix::unistd::Group::from_gid(user.gid)
            .ok()
            .flatten()
            .map_or_else(|| user.gid.to_string(), |g| g.name);
        Ok(Owner {
            name: user.name,
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
            group,
            home: user.dir,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_is_refused_by_name_and_by_uid() {
        assert!(matches!(
            Owner::resolve(Some("root")),
            Err(OwnerError::Root(_))
        ));
        assert!(matches!(
            Owner::resolve(Some("0")),
            Err(OwnerError::Root(_))
        ));
    }

    #[test]
    fn unknown_users_are_named() {
        let e = Owner::resolve(Some("no-such-user-banger")).unwrap_err();
        assert!(e.to_string().contains("no-such-user-banger"), "{e}");
    }

    #[test]
    fn a_real_user_resolves() {
        // Every Debian-like host has "nobody" (uid 65534).
        if let Ok(o) = Owner::resolve(Some("nobody")) {
            assert_eq!(o.uid, 65534);
            assert_eq!(o.name, "nobody");
        }
    }
}
