//! Builds a component crate of this workspace for `wasm32-wasip2` from a
//! build script: the pattern wasmtime uses for its test programs, a child
//! `cargo build` with its own target directory and none of the parent's
//! compiler flags or wrappers.

use std::env;
use std::path::{Path, PathBuf};
use std::process::{Command, exit};

const TARGET: &str = "wasm32-wasip2";
const PROFILE: &str = "guest";

/// Builds `package` (whose sources are `watched`, relative to the
/// workspace root) and copies `<artifact>.wasm` to `OUT_DIR/<copy_as>`.
/// Stops the build with one line if the target cannot be had.
pub fn build_component(package: &str, artifact: &str, watched: &[&str], copy_as: &str) -> PathBuf {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let root = workspace_root(&manifest_dir);
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").unwrap_or_default());
    for path in watched.iter().chain(&["wit", "Cargo.toml", "Cargo.lock"]) {
        println!("cargo::rerun-if-changed={}", root.join(path).display());
    }
    ensure_target();

    let target_dir = guest_target_dir(&out_dir);
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = Command::new(cargo);
    build
        .current_dir(&root)
        .args([
            "build",
            "--quiet",
            "--package",
            package,
            "--target",
            TARGET,
            "--profile",
            PROFILE,
        ])
        .arg("--target-dir")
        .arg(&target_dir);
    for inherited in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
    ] {
        build.env_remove(inherited);
    }
    let status = build
        .status()
        .unwrap_or_else(|e| fail(&format!("cannot run cargo to build {package}: {e}")));
    if !status.success() {
        fail(&format!(
            "building the component {package} failed; see the errors above"
        ));
    }
    let built = target_dir
        .join(TARGET)
        .join(PROFILE)
        .join(format!("{artifact}.wasm"));
    let dest = out_dir.join(copy_as);
    std::fs::copy(&built, &dest)
        .unwrap_or_else(|e| fail(&format!("cannot copy {}: {e}", built.display())));
    dest
}

/// The directory holding the workspace's `Cargo.lock`.
fn workspace_root(manifest_dir: &Path) -> PathBuf {
    manifest_dir
        .ancestors()
        .find(|dir| dir.join("Cargo.lock").is_file() && dir.join("wit").is_dir())
        .unwrap_or(manifest_dir)
        .to_path_buf()
}

/// Installs the `wasm32-wasip2` standard library with rustup if it is
/// missing, or stops with one line that says what to run.
fn ensure_target() {
    if target_installed() {
        return;
    }
    println!("cargo::warning=installing the {TARGET} target with rustup");
    let added = Command::new("rustup")
        .args(["target", "add", TARGET])
        .status();
    if !matches!(added, Ok(s) if s.success()) || !target_installed() {
        fail(&format!(
            "the {TARGET} target is missing; run: rustup target add {TARGET}"
        ));
    }
}

fn target_installed() -> bool {
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let Ok(out) = Command::new(rustc).args(["--print", "sysroot"]).output() else {
        return false;
    };
    let sysroot = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    Path::new(&sysroot)
        .join("lib/rustlib")
        .join(TARGET)
        .join("lib")
        .is_dir()
}

/// `<target>/guest-wasm`, beside the parent's profiles, so that debug,
/// release and clippy builds share one guest build.
fn guest_target_dir(out_dir: &Path) -> PathBuf {
    // OUT_DIR is <target>/[<triple>/]<profile>/build/<pkg>-<hash>/out.
    out_dir
        .ancestors()
        .find(|p| p.file_name().is_some_and(|n| n == "build"))
        .and_then(|build| build.parent()?.parent())
        .map(|target| target.join("guest-wasm"))
        .unwrap_or_else(|| out_dir.join("guest-wasm"))
}

fn fail(message: &str) -> ! {
    // `cargo::error` fails the build with just this line; exiting 0 spares
    // the reader cargo's dump of the script's output.
    println!("cargo::error={message}");
    exit(0)
}
