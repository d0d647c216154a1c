//! A banger build to install from, and where each of its files goes.
//!
//! Two layouts are recognised:
//! - a prefix (what `make install DESTDIR=... PREFIX=` or an unpacked release tarball gives):
//!   `bin/`, `share/man/man{1,7,8}/`, `share/bash-completion/completions/`,
//!   `share/zsh/site-functions/`, `share/fish/vendor_completions.d/`;
//! - a checkout's cargo build directory (`target/release`): the binaries there, the man pages
//!   from the checkout (`man`), and the shell completions each binary generates from its
//!   flag table (`BANGER_GENERATE=bash|zsh|fish BIN --help`), written into a private scratch
//!   directory that lives as long as the build.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{dir} holds no banger build (no banger-helper in it or in its bin/): pass --from with a build directory (target/release) or an installed prefix")]
    NoBuild { dir: PathBuf },
    #[error("{dir} looks like a build directory, but no checkout with units/ and man/ is above it: install from a prefix (make install DESTDIR=...) instead")]
    NoCheckout { dir: PathBuf },
    #[error("the build in {dir} lacks {name}")]
    Missing { dir: PathBuf, name: &'static str },
    #[error("cannot read {dir}")]
    Read {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write the generated completions in {dir}")]
    Scratch {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A directory of generated files, removed when the last build holding it goes.
#[derive(Debug)]
pub struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One file to install: from `src` to `rel` under the prefix, with `mode`.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub src: PathBuf,
    pub rel: PathBuf,
    pub mode: u32,
}

/// A build: its files, and the directory its binaries are in.
#[derive(Debug, Clone)]
pub struct Build {
    pub bindir: PathBuf,
    pub items: Vec<Item>,
    /// Where generated files (completions) are, while the build is in use (held for its
    /// `Drop`, which removes them).
    #[allow(dead_code)]
    pub scratch: Option<Arc<Scratch>>,
}

/// The binaries a build must have.
pub const REQUIRED: &[&str] = &["banger", "banger-helper", "banger-system"];

impl Build {
    /// The source file of a binary, by name.
    pub fn binary(&self, name: &str) -> Option<&Path> {
        let rel = Path::new("bin").join(name);
        self.items
            .iter()
            .find(|i| i.rel == rel)
            .map(|i| i.src.as_path())
    }

    /// Finds the build in `dir` (see the module doc).
    pub fn find(dir: &Path) -> Result<Build, SourceError> {
        let is_bin = |d: &Path| d.join("banger-helper").is_file();
        let build = if is_bin(&dir.join("bin")) {
            from_prefix(dir)?
        } else if is_bin(dir) {
            if dir.join("../share/man").is_dir() {
                from_prefix(&dir.join(".."))?
            } else {
                let root = dir
                    .ancestors()
                    .skip(1)
                    .find(|a| {
                        a.join("units/banger-helper.service").is_file() && a.join("man").is_dir()
                    })
                    .ok_or_else(|| SourceError::NoCheckout {
                        dir: dir.to_path_buf(),
                    })?;
                from_checkout(dir, root)?
            }
        } else {
            return Err(SourceError::NoBuild {
                dir: dir.to_path_buf(),
            });
        };
        for name in REQUIRED {
            if build.binary(name).is_none() {
                return Err(SourceError::Missing {
                    dir: build.bindir.clone(),
                    name,
                });
            }
        }
        Ok(build)
    }
}

fn list(dir: &Path) -> Result<Vec<(String, PathBuf)>, SourceError> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(SourceError::Read {
                dir: dir.to_path_buf(),
                source,
            })
        }
    };
    let mut out: Vec<(String, PathBuf)> = rd
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let path = e.path();
            std::fs::metadata(&path)
                .ok()
                .filter(|m| m.is_file())
                .map(|_| (name, path))
        })
        .collect();
    out.sort();
    Ok(out)
}

/// `banger` and `banger-*` executables, not the test stand-ins nor cargo's `.d` files, and
/// not the guest agent (a guest program: see [`AGENT`]).
fn is_banger_binary(name: &str, path: &Path) -> bool {
    (name == "banger" || name.starts_with("banger-"))
        && name != "banger-agent"
        && !name.contains('.')
        && !name.contains("standin")
        && std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o111 != 0)
}

/// Where the static guest agent goes under the prefix: banger (the helper) takes it from
/// `<bin>/../lib/banger/banger-agent` to put into guests.
pub const AGENT: &str = "lib/banger/banger-agent";

/// The static agent a checkout built with `make agent`.
const CHECKOUT_AGENT: &str = "target/x86_64-unknown-linux-musl/agent/banger-agent";

/// The guest agent at `src`, when there is one.
fn agent(src: PathBuf, items: &mut Vec<Item>) {
    if src.is_file() {
        items.push(Item {
            src,
            rel: PathBuf::from(AGENT),
            mode: 0o755,
        });
    }
}

fn binaries(dir: &Path, items: &mut Vec<Item>) -> Result<(), SourceError> {
    for (name, path) in list(dir)? {
        if is_banger_binary(&name, &path) {
            items.push(Item {
                src: path,
                rel: Path::new("bin").join(&name),
                mode: 0o755,
            });
        }
    }
    Ok(())
}

/// Files of `dir` whose name passes `keep`, installed under `rel` with mode 0644.
fn docs(
    dir: &Path,
    rel: &Path,
    keep: impl Fn(&str) -> bool,
    items: &mut Vec<Item>,
) -> Result<(), SourceError> {
    for (name, path) in list(dir)? {
        if keep(&name) {
            items.push(Item {
                src: path,
                rel: rel.join(&name),
                mode: 0o644,
            });
        }
    }
    Ok(())
}

fn is_banger(name: &str) -> bool {
    name.starts_with("banger") || name.starts_with("_banger")
}

/// The man page's section, from its name (`banger-vm.1` -> `1`).
fn section(name: &str) -> Option<char> {
    let (_, ext) = name.rsplit_once('.')?;
    let mut c = ext.chars();
    let s = c.next()?;
    (c.next().is_none() && matches!(s, '1' | '7' | '8')).then_some(s)
}

const BASH: &str = "share/bash-completion/completions";
const ZSH: &str = "share/zsh/site-functions";
const FISH: &str = "share/fish/vendor_completions.d";

fn from_prefix(prefix: &Path) -> Result<Build, SourceError> {
    let mut items = Vec::new();
    binaries(&prefix.join("bin"), &mut items)?;
    agent(prefix.join(AGENT), &mut items);
    for s in ['1', '7', '8'] {
        let rel = PathBuf::from(format!("share/man/man{s}"));
        docs(
            &prefix.join(&rel),
            &rel,
            |n| is_banger(n) && section(n) == Some(s),
            &mut items,
        )?;
    }
    for rel in [BASH, ZSH, FISH] {
        docs(&prefix.join(rel), Path::new(rel), is_banger, &mut items)?;
    }
    Ok(Build {
        bindir: prefix.join("bin"),
        items,
        scratch: None,
    })
}

fn from_checkout(bindir: &Path, root: &Path) -> Result<Build, SourceError> {
    let mut items = Vec::new();
    binaries(bindir, &mut items)?;
    agent(root.join(CHECKOUT_AGENT), &mut items);
    for (name, path) in list(&root.join("man"))? {
        if let (true, Some(s)) = (is_banger(&name), section(&name)) {
            items.push(Item {
                src: path,
                rel: PathBuf::from(format!("share/man/man{s}")).join(&name),
                mode: 0o644,
            });
        }
    }
    let scratch = completions(&mut items)?;
    Ok(Build {
        bindir: bindir.to_path_buf(),
        items,
        scratch,
    })
}

/// Runs `bin` with `BANGER_GENERATE=kind` and returns what it printed, if it succeeded.
fn generated(bin: &Path, kind: &str) -> Option<Vec<u8>> {
    let out = std::process::Command::new(bin)
        .arg("--help")
        .env(banger::cli::GENERATE_VAR, kind)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    (out.status.success() && !out.stdout.is_empty()).then_some(out.stdout)
}

/// The bash, zsh and fish completions of every binary of the build that describes itself
/// (`BANGER_GENERATE=describe`), generated into a private scratch directory.
fn completions(items: &mut Vec<Item>) -> Result<Option<Arc<Scratch>>, SourceError> {
    let bins: Vec<(String, PathBuf)> = items
        .iter()
        .filter(|i| i.rel.starts_with("bin"))
        .filter_map(|i| {
            let name = i.rel.file_name()?.to_string_lossy().into_owned();
            let described = generated(&i.src, "describe")
                .and_then(|d| serde_json::from_slice::<serde_json::Value>(&d).ok())
                .is_some_and(|v| v["type"] == "command");
            described.then(|| (name, i.src.clone()))
        })
        .collect();
    if bins.is_empty() {
        return Ok(None);
    }
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "banger-completions.{}.{}",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let err = |source| SourceError::Scratch {
        dir: dir.clone(),
        source,
    };
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .map_err(err)?;
    let scratch = Arc::new(Scratch(dir.clone()));
    for (name, src) in bins {
        for (kind, rel, file) in [
            ("bash", BASH, name.clone()),
            ("zsh", ZSH, format!("_{name}")),
            ("fish", FISH, format!("{name}.fish")),
        ] {
            let Some(text) = generated(&src, kind) else {
                continue;
            };
            let path = dir.join(format!("{kind}-{file}"));
            std::fs::write(&path, text).map_err(err)?;
            items.push(Item {
                src: path,
                rel: Path::new(rel).join(file),
                mode: 0o644,
            });
        }
    }
    Ok(Some(scratch))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Tmp(PathBuf);
    impl Drop for Tmp {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    fn tmp(tag: &str) -> Tmp {
        let d = std::env::temp_dir().join(format!("banger-source-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        Tmp(d)
    }
    fn file(p: &Path, mode: u32) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, b"x").unwrap();
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn a_checkout_build_dir() {
        let t = tmp("checkout");
        let r = &t.0;
        for b in [
            "banger",
            "banger-helper",
            "banger-system",
            "banger-vm",
            "firecracker-standin",
            "banger-vm.d",
        ] {
            file(&r.join("target/debug").join(b), 0o755);
        }
        file(&r.join("target/debug/banger-notexec"), 0o644);
        // A binary that generates its completions (as every banger binary does).
        std::fs::write(
            r.join("target/debug/banger-vm"),
            "#!/bin/sh\ncase $BANGER_GENERATE in describe) echo '{\"type\":\"command\"}' ;; *) echo \"# $BANGER_GENERATE\" ;; esac\n",
        )
        .unwrap();
        file(&r.join("units/banger-helper.service"), 0o644);
        file(&r.join("man/banger-vm.1"), 0o644);
        file(&r.join("man/banger.7"), 0o644);
        file(&r.join("man/README"), 0o644);
        let b = Build::find(&r.join("target/debug")).unwrap();
        let rels: Vec<String> = b
            .items
            .iter()
            .map(|i| i.rel.display().to_string())
            .collect();
        assert_eq!(
            rels,
            [
                "bin/banger",
                "bin/banger-helper",
                "bin/banger-system",
                "bin/banger-vm",
                "share/man/man1/banger-vm.1",
                "share/man/man7/banger.7",
                "share/bash-completion/completions/banger-vm",
                "share/zsh/site-functions/_banger-vm",
                "share/fish/vendor_completions.d/banger-vm.fish",
            ]
        );
        assert_eq!(
            b.binary("banger-helper"),
            Some(r.join("target/debug/banger-helper").as_path())
        );
        let fish = b.items.last().unwrap().src.clone();
        assert_eq!(std::fs::read_to_string(&fish).unwrap(), "# fish\n");
        let scratch = fish.parent().unwrap().to_path_buf();
        assert!(b.scratch.is_some());
        drop(b);
        assert!(!scratch.exists(), "the scratch dir goes with the build");
    }

    #[test]
    fn the_guest_agent_goes_to_lib_never_to_bin() {
        let t = tmp("agent");
        let r = &t.0;
        for b in ["banger", "banger-helper", "banger-system", "banger-agent"] {
            file(&r.join("target/release").join(b), 0o755);
        }
        file(&r.join("units/banger-helper.service"), 0o644);
        std::fs::create_dir_all(r.join("man")).unwrap();
        std::fs::create_dir_all(r.join("completions")).unwrap();
        let rels = |b: &Build| -> Vec<String> {
            b.items
                .iter()
                .map(|i| i.rel.display().to_string())
                .collect()
        };
        // Without `make agent`: no agent, and the host build of it is not installed.
        let b = Build::find(&r.join("target/release")).unwrap();
        assert!(
            !rels(&b).iter().any(|r| r.contains("banger-agent")),
            "{:?}",
            rels(&b)
        );
        file(&r.join(CHECKOUT_AGENT), 0o755);
        let b = Build::find(&r.join("target/release")).unwrap();
        let agent: Vec<&Item> = b
            .items
            .iter()
            .filter(|i| i.rel == Path::new(AGENT))
            .collect();
        assert_eq!(agent.len(), 1);
        assert_eq!(agent[0].src, r.join(CHECKOUT_AGENT));
        assert!(!rels(&b).contains(&"bin/banger-agent".to_string()));
        // A prefix (make install) keeps it in lib/banger/.
        let p = r.join("prefix");
        for b in ["banger", "banger-helper", "banger-system"] {
            file(&p.join("bin").join(b), 0o755);
        }
        file(&p.join(AGENT), 0o755);
        let b = Build::find(&p).unwrap();
        assert!(rels(&b).contains(&AGENT.to_string()));
    }

    #[test]
    fn a_prefix_and_its_bin() {
        let t = tmp("prefix");
        let p = &t.0;
        for b in ["banger", "banger-helper", "banger-system", "banger-up"] {
            file(&p.join("bin").join(b), 0o755);
        }
        file(&p.join("share/man/man8/banger-helper.8"), 0o644);
        file(&p.join("share/man/man8/other.8"), 0o644);
        file(
            &p.join("share/fish/vendor_completions.d/banger.fish"),
            0o644,
        );
        for dir in [p.clone(), p.join("bin")] {
            let b = Build::find(&dir).unwrap();
            let rels: Vec<String> = b
                .items
                .iter()
                .map(|i| i.rel.display().to_string())
                .collect();
            assert_eq!(
                rels,
                [
                    "bin/banger",
                    "bin/banger-helper",
                    "bin/banger-system",
                    "bin/banger-up",
                    "share/man/man8/banger-helper.8",
                    "share/fish/vendor_completions.d/banger.fish",
                ]
            );
        }
    }

    #[test]
    fn what_is_not_a_build_says_so() {
        let t = tmp("none");
        assert!(matches!(
            Build::find(&t.0),
            Err(SourceError::NoBuild { .. })
        ));
        file(&t.0.join("bin/banger-helper"), 0o755);
        let e = Build::find(&t.0).unwrap_err();
        assert!(e.to_string().contains("lacks banger"), "{e}");
        let t2 = tmp("nocheckout");
        file(&t2.0.join("banger-helper"), 0o755);
        assert!(matches!(
            Build::find(&t2.0),
            Err(SourceError::NoCheckout { .. })
        ));
    }
}
