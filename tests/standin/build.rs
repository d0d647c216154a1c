//! TEST STAND-IN, not Firecracker.
//!
//! Links the stand-in `firecracker` and `jailer` binaries statically, like the real (musl, static)
//! ones. The jailer copies the exec file alone into an empty chroot, so a dynamically linked
//! stand-in could not start there: it would find no dynamic loader and no libc.
//!
//! On `*-linux-gnu` without `crt-static`, rustc asks the linker for `-lgcc_s -lc ...` in dynamic
//! mode. We put a directory first in the search path holding only static archives under those
//! names (`libgcc_s.a` is `libgcc_eh.a`), and link as `-static-pie`. Only the binaries get this;
//! the library and the test executables stay ordinary dynamic executables.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    let features = std::env::var("CARGO_CFG_TARGET_FEATURE").unwrap_or_default();
    if os != "linux" || env != "gnu" || features.split(',').any(|f| f == "crt-static") {
        // musl or crt-static: already static.
        return;
    }
    match static_lib_dir() {
        Ok(dir) => {
            println!("cargo:rustc-link-arg-bins=-static-pie");
            println!("cargo:rustc-link-arg-bins=-L{}", dir.display());
        }
        Err(why) => println!(
            "cargo:warning=stand-in binaries stay dynamically linked ({why}); \
             they will not start inside a jailer chroot"
        ),
    }
}

/// Asks the C compiler driver where a file of the toolchain is.
fn find(cc: &str, name: &str) -> Result<PathBuf, String> {
    let out = Command::new(cc)
        .arg(format!("-print-file-name={name}"))
        .output()
        .map_err(|e| format!("cannot run {cc}: {e}"))?;
    let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    if path.is_absolute() && path.exists() {
        Ok(path)
    } else {
        Err(format!("{name} not found (install libc6-dev)"))
    }
}

fn link(src: &Path, dst: &Path) -> Result<(), String> {
    let _ = std::fs::remove_file(dst);
    std::os::unix::fs::symlink(src, dst).map_err(|e| format!("symlink {}: {e}", dst.display()))
}

fn static_lib_dir() -> Result<PathBuf, String> {
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_string());
    let out = PathBuf::from(std::env::var("OUT_DIR").map_err(|e| e.to_string())?);
    let dir = out.join("static-libs");
    std::fs::create_dir_all(&dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
    for lib in ["c", "m", "pthread", "rt", "dl", "util"] {
        let name = format!("lib{lib}.a");
        link(&find(&cc, &name)?, &dir.join(&name))?;
    }
    link(&find(&cc, "libgcc_eh.a")?, &dir.join("libgcc_s.a"))?;
    Ok(dir)
}
