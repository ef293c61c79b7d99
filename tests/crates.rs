//! The crates by audience: what an embedder of `chatstore-host` compiles.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

/// The packages `chatstore-host` depends on when it is built as a library.
fn normal_dependencies(package: &str) -> BTreeSet<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace");
    let output = Command::new(cargo)
        .args([
            "tree",
            "--offline",
            "--locked",
            "-e",
            "normal",
            "--prefix",
            "none",
        ])
        .args(["-p", package])
        .current_dir(root)
        .output()
        .expect("cargo tree");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_embedding_library_pulls_in_no_server_cli_or_test_tooling() {
    let dependencies = normal_dependencies("chatstore-host");
    assert!(dependencies.contains("wasmtime"), "{dependencies:?}");
    for stack in [
        "axum",
        "hyper",
        "tower-http",
        "utoipa",
        "clap",
        "tracing-subscriber",
        "chatstore-http",
        "chatstore-testkit",
        "tempfile",
        "proptest",
    ] {
        assert!(
            !dependencies.contains(stack),
            "chatstore-host depends on {stack}"
        );
    }
}
