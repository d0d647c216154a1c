//! Validation of everything a request carries. Names match `^[a-z][a-z0-9-]{0,31}$`;
//! paths must lie under an allowed root and are walked component by component without
//! following any symlink; typed arguments reject unknown fields.

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

/// Checks that `path` lies under one of `roots` and that no component below the root is a
/// symlink (so nothing can be redirected out of the root). The last component may be
/// missing (a file about to be created). Returns the path unchanged.
pub fn path_within(path: &Path, roots: &[&Path]) -> Result<PathBuf, OpError> {
    let bad = |why: &str| {
        OpError::new(
            code::INVALID_PATH,
            format!("refused path {}: {why}", path.display()),
        )
    };
    if !path.is_absolute() {
        return Err(bad("not absolute"));
    }
    if path
        .components()
        .any(|c| matches!(c, Component::ParentDir | Component::CurDir))
    {
        return Err(bad("contains '.' or '..'"));
    }
    let root = roots
        .iter()
        .find(|r| path.starts_with(r) && path != **r)
        .ok_or_else(|| {
            let list: Vec<String> = roots.iter().map(|r| r.display().to_string()).collect();
            bad(&format!("outside the allowed roots ({})", list.join(", ")))
        })?;
    let rel = path
        .strip_prefix(root)
        .map_err(|_| bad("outside the allowed roots"))?;
    let mut cur = root.to_path_buf();
    let n = rel.components().count();
    for (i, c) in rel.components().enumerate() {
        cur.push(c);
        match std::fs::symlink_metadata(&cur) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(bad(&format!("{} is a symlink", cur.display())))
            }
            Ok(m) if i + 1 < n && !m.is_dir() => {
                return Err(bad(&format!("{} is not a directory", cur.display())))
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && i + 1 == n => {}
            Err(e) => return Err(bad(&format!("{}: {e}", cur.display()))),
        }
    }
    Ok(path.to_path_buf())
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
    fn paths() {
        let base = std::env::temp_dir().join(format!("banger-val-{}", std::process::id()));
        let root = base.join("root");
        let outside = base.join("outside");
        std::fs::create_dir_all(root.join("vms/a")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(root.join("vms/a/disk"), b"").unwrap();
        std::os::unix::fs::symlink(&outside, root.join("vms/evil")).unwrap();
        std::os::unix::fs::symlink("/etc/shadow", root.join("vms/a/link")).unwrap();
        let roots = [root.as_path()];
        assert!(path_within(&root.join("vms/a/disk"), &roots).is_ok());
        assert!(path_within(&root.join("vms/a/new-file"), &roots).is_ok());
        for p in [
            root.join("vms/evil/x"),
            root.join("vms/a/link"),
            root.join("vms/../../outside/x"),
            root.join("vms/a/disk/x"),
            root.join("vms/missing/x"),
            outside.join("x"),
            PathBuf::from("relative/x"),
            root.clone(),
        ] {
            assert_eq!(
                path_within(&p, &roots).unwrap_err().code,
                "invalid_path",
                "{p:?}"
            );
        }
        let _ = std::fs::remove_dir_all(&base);
    }
}
