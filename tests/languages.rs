//! The same component from JavaScript and Python: runs the Node suite
//! (`tests/js`, jco) and the Python suite (`tests/python`, wasmtime-py)
//! against the component this build embeds. Sets up what they need on
//! first use: `npm ci` in `tests/js`, a virtual environment with the pinned
//! requirements under cargo's scratch directory.

use chatstore_tests::venv::{self, run};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root")
        .to_path_buf()
}

fn scratch() -> PathBuf {
    venv::scratch(env!("CARGO_TARGET_TMPDIR"), "languages")
}

/// The built-in component, written once (the two tests run at the same
/// time) where both suites load it from.
fn component() -> PathBuf {
    static WRITTEN: OnceLock<PathBuf> = OnceLock::new();
    WRITTEN
        .get_or_init(|| {
            let path = scratch().join("chatstore_storage.wasm");
            std::fs::write(&path, chatstore_host::STORAGE_COMPONENT).expect("component written");
            path
        })
        .clone()
}

#[test]
fn the_javascript_host_passes_the_conformance_scenarios() {
    let js = repo().join("tests/js");
    venv::npm_ci(&js);
    let bindings = scratch().join("js-bindings");
    let env = [
        ("CHATSTORE_WASM", component()),
        ("CHATSTORE_JS_BINDINGS", bindings),
    ];
    run(
        "jco transpile",
        Command::new("node")
            .arg("prepare.mjs")
            .current_dir(&js)
            .envs(env.clone()),
    );
    let output = run(
        "node --test",
        Command::new("node")
            .args(["--test", "--test-reporter=spec"])
            .current_dir(&js)
            .envs(env),
    );
    println!("{}", String::from_utf8_lossy(&output.stdout));
}

#[test]
fn the_python_host_passes_the_conformance_scenarios() {
    let python = repo().join("tests/python");
    let requirements = python.join("requirements.txt");
    let bin = venv::python_venv(&scratch().join("python-venv"), &requirements);
    let output = run(
        "pytest",
        Command::new(bin.join("python"))
            .args(["-m", "pytest", "-v", "-p", "no:cacheprovider"])
            .arg(&python)
            .env("CHATSTORE_WASM", component())
            .env("PYTHONDONTWRITEBYTECODE", "1"),
    );
    println!("{}", String::from_utf8_lossy(&output.stdout));
}
