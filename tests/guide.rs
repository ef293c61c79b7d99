//! `docs/testing-your-own-policy.md`, followed as a new user would: its
//! `Cargo.toml` and `src/lib.rs`, taken from the page, in a new crate
//! outside this workspace beside a checkout named `chatstore`, built with
//! the page's own `cargo build` line; then the component it makes is run
//! against the conformance scenarios, as the page's section 2 does.

use chatstore_testkit::conformance::{self, Runner, Verdict};
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root")
        .to_path_buf()
}

/// The body of the first fenced block of `lang` after the line `after`.
fn block<'a>(page: &'a str, after: &str, lang: &str) -> &'a str {
    let start = page
        .find(after)
        .unwrap_or_else(|| panic!("the guide has no {after:?}"));
    let fence = format!("```{lang}\n");
    let open = start + page[start..].find(&fence).expect("a fenced block") + fence.len();
    let close = open + page[open..].find("\n```").expect("the block's end");
    &page[open..=close]
}

#[test]
fn the_guides_policy_builds_outside_the_workspace_and_differs_where_it_says() {
    let page =
        std::fs::read_to_string(repo().join("docs/testing-your-own-policy.md")).expect("the guide");
    let manifest = block(&page, "`Cargo.toml`:", "toml");
    let source = block(&page, "`src/lib.rs` (the whole file):", "rust");
    let build_line = block(&page, "Build it:", "sh")
        .lines()
        .find(|line| line.starts_with("cargo build"))
        .expect("the guide's cargo build line");

    // Outside the workspace (a crate under it would be taken for a member).
    let parent = tempfile::tempdir().expect("a directory outside the workspace");
    std::os::unix::fs::symlink(repo(), parent.path().join("chatstore")).expect("the checkout");
    let crate_dir = parent.path().join("file-limit-policy");
    std::fs::create_dir_all(crate_dir.join("src")).expect("the crate");
    std::fs::write(crate_dir.join("Cargo.toml"), manifest).expect("Cargo.toml");
    std::fs::write(crate_dir.join("src/lib.rs"), source).expect("lib.rs");
    // The workspace's versions, so the build needs nothing new.
    std::fs::copy(repo().join("Cargo.lock"), crate_dir.join("Cargo.lock")).expect("Cargo.lock");

    // Kept between runs, so that only the first one builds everything.
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("guide-policy");
    let mut words = build_line.split_whitespace();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    assert_eq!(words.next(), Some("cargo"));
    let mut build = Command::new(cargo);
    build
        .args(words)
        .current_dir(&crate_dir)
        .env("CARGO_TARGET_DIR", &target);
    for inherited in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_BUILD_TARGET",
        "CARGO_MANIFEST_DIR",
    ] {
        build.env_remove(inherited);
    }
    let out = build.output().expect("cargo runs");
    assert!(
        out.status.success(),
        "`{build_line}` failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let wasm = std::fs::read(target.join("wasm32-wasip2/release/file_limit_policy.wasm"))
        .expect("the component the guide names");

    // Section 2: the built-in scenarios pinpoint the one difference.
    let runner = Runner::new().component(wasm);
    let mut failed = Vec::new();
    for scenario in conformance::built_in().expect("the built-in scenarios") {
        if let Verdict::Failed(failure) = runner.run(&scenario).expect("the scenario runs") {
            failed.push((scenario.name().to_owned(), failure.step));
        }
    }
    assert_eq!(failed, [("many-attachments".to_owned(), 9)]);

    // Section 3: its own rule, which the built-in policy does not keep.
    let own = repo().join("tests/components/file-limit/scenarios");
    for scenario in conformance::load_dir(&own).expect("the policy's scenarios") {
        assert!(matches!(
            runner.run(&scenario).expect("the scenario runs"),
            Verdict::Passed { .. }
        ));
        assert!(matches!(
            Runner::new().run(&scenario).expect("the scenario runs"),
            Verdict::Failed(_)
        ));
    }
}
