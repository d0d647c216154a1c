//! Validation of everything a request carries. Names match `^[a-z][a-z0-9-]{0,31}$`;
//! paths must lie lexically below an allowed root (they are then opened below it without
//! following any symlink, see [`banger::fsx`]); typed arguments reject unknown fields.

use banger::proto::{code, OpError};
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::path::{Component, Path, PathBuf};

/// Checks a VM, image or resource name.
pub fn name(s: &str) -> Result<&str, OpError> {
    if banger::store::valid_name(s) {
        Ok(s)
    } else {
        Err(OpError::new(
            code::INVALID_NAME,
            format!(
                "invalid name {s:?}: use 1-32 characters a-z, 0-9 and '-', starting with a letter"
            ),
        ))
    }
}

/// Parses an op's arguments into its typed form (`deny_unknown_fields` on the type).
pub fn args<T: DeserializeOwned>(v: &Value) -> Result<T, OpError> {
    let v = if v.is_null() {
        Value::Object(Default::default())
    } else {
        v.clone()
    };
    serde_json::from_value(v)
        .map_err(|e| OpError::new(code::INVALID_ARGS, format!("invalid arguments: {e}")))
}

/// Checks that `path` lies strictly below `root`, lexically (absolute, no `.` or `..`), and
/// returns it relative to `root`. Nothing is looked up: the caller opens the relative path
/// below a directory fd of `root` ([`banger::fsx::Dir`]), with the owner's credentials where
/// the owner can write, never following a symlink.
pub fn below(path: &Path, root: &Path) -> Result<PathBuf, OpError> {
    let bad = |why: String| {
        OpError::new(
            code::INVALID_PATH,
            format!("refused path {}: {why}", path.display()),
        )
    };
    if !path.is_absolute() {
        return Err(bad("not absolute".into()));
    }
    if path
        .components()
        .any(|c| matches!(c, Component::ParentDir | Component::CurDir))
    {
        return Err(bad("contains '.' or '..'".into()));
    }
    match path.strip_prefix(root) {
        Ok(rel) if rel.components().next().is_some() => Ok(rel.to_path_buf()),
        _ => Err(bad(format!("not below {}", root.display()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(name("dev1").is_ok());
        for bad in ["", "A", "1a", "a/b", "../x", "a b", "a\0", &"x".repeat(33)] {
            assert_eq!(name(bad).unwrap_err().code, "invalid_name", "{bad:?}");
        }
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct A {
        name: String,
    }

    #[test]
    fn typed_args() {
        assert!(args::<A>(&serde_json::json!({"name": "a"})).is_ok());
        let e = args::<A>(&serde_json::json!({"name": "a", "cmd": "x"})).unwrap_err();
        assert_eq!(e.code, "invalid_args");
        assert!(args::<A>(&Value::Null).is_err());
    }

    #[test]
    fn paths_are_checked_lexically() {
        let root = Path::new("/var/lib/banger/vms");
        assert_eq!(
            below(Path::new("/var/lib/banger/vms/a/disk.ext4"), root).unwrap(),
            PathBuf::from("a/disk.ext4")
        );
        for p in [
            "/var/lib/banger/vms",
            "/var/lib/banger/vms/../x",
            "/var/lib/banger/vmsx/a",
            "/etc/shadow",
            "relative/x",
        ] {
            assert_eq!(
                below(Path::new(p), root).unwrap_err().code,
                "invalid_path",
                "{p}"
            );
        }
    }
}
