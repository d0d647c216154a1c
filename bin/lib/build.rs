//! Stamps the git commit the binaries are built from into `BANGER_COMMIT` (read by
//! `banger::COMMIT`): `banger-system install` records it and the helper reports it in `ping`.
//! Outside a git checkout (a release tarball) it is `unknown`, unless the packager sets
//! `BANGER_BUILD_COMMIT`. The script reruns when HEAD moves, not on every build.

use std::path::PathBuf;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!s.is_empty()).then_some(s)
}

/// The files whose change means HEAD moved: HEAD itself, the branch's ref, packed-refs.
fn watched() -> Vec<PathBuf> {
    let mut paths = Vec::new();
    let mut push = |p: Option<String>| {
        if let Some(p) = p.map(PathBuf::from).filter(|p| p.exists()) {
            paths.push(p);
        }
    };
    push(git(&[
        "rev-parse",
        "--path-format=absolute",
        "--git-path",
        "HEAD",
    ]));
    if let Some(r) = git(&["symbolic-ref", "-q", "HEAD"]) {
        push(git(&[
            "rev-parse",
            "--path-format=absolute",
            "--git-path",
            &r,
        ]));
    }
    push(git(&[
        "rev-parse",
        "--path-format=absolute",
        "--git-path",
        "packed-refs",
    ]));
    paths
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=BANGER_BUILD_COMMIT");
    let commit = match std::env::var("BANGER_BUILD_COMMIT") {
        Ok(c) if !c.trim().is_empty() => c.trim().to_string(),
        _ => {
            for p in watched() {
                println!("cargo:rerun-if-changed={}", p.display());
            }
            git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into())
        }
    };
    println!("cargo:rustc-env=BANGER_COMMIT={commit}");
}
