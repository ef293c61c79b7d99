//! Programs the tests run: a Python virtual environment with pinned
//! requirements, made once under cargo's scratch directory and remade when
//! the requirements change.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A scratch directory for `name`, under cargo's per-target temporary directory.
pub fn scratch(target_tmpdir: &str, name: &str) -> PathBuf {
    let dir = Path::new(target_tmpdir).join(name);
    std::fs::create_dir_all(&dir).expect("scratch directory");
    dir
}

/// Runs a command; fails the test with its output if it does not succeed.
pub fn run(what: &str, command: &mut Command) -> Output {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run {command:?}: {e}"));
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{}\n{}",
        output.status,
        text(&output.stdout),
        text(&output.stderr)
    );
    output
}

/// Whether `stamp` holds exactly `source`'s bytes (then the setup it marks is current).
pub fn current(stamp: &Path, source: &Path) -> bool {
    matches!((std::fs::read(stamp), std::fs::read(source)), (Ok(a), Ok(b)) if a == b)
}

/// `npm ci` in the package at `dir`, unless its `node_modules` was made
/// from the same lock file.
pub fn npm_ci(dir: &Path) {
    let lock = dir.join("package-lock.json");
    let stamp = dir.join("node_modules/.chatstore-package-lock.json");
    if !current(&stamp, &lock) {
        run(
            "npm ci",
            Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund"])
                .current_dir(dir),
        );
        std::fs::copy(&lock, &stamp).expect("stamp");
    }
}

/// A virtual environment at `dir` with `requirements` installed; returns
/// its `bin` directory.
pub fn python_venv(dir: &Path, requirements: &Path) -> PathBuf {
    let stamp = dir.join("chatstore-requirements.txt");
    if !current(&stamp, requirements) {
        let _ = std::fs::remove_dir_all(dir);
        run(
            "python3 -m venv",
            Command::new("python3").args(["-m", "venv"]).arg(dir),
        );
        run(
            "pip install",
            Command::new(dir.join("bin/python"))
                .args([
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                    "-r",
                ])
                .arg(requirements),
        );
        std::fs::copy(requirements, &stamp).expect("stamp");
    }
    dir.join("bin")
}
