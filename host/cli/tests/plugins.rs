//! One agent tool written three times (`plugins/csv-summary`: Rust with
//! wit-bindgen, Python with componentize-py, JavaScript with componentize-js),
//! each built here from its pinned tools, run through `chatstore run` against
//! one data directory, and its results checked on disk: the three
//! `summary.md` files are byte-identical.

use chatstore_tests::venv::{self, run};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("the workspace root")
        .to_path_buf()
}

fn scratch() -> PathBuf {
    venv::scratch(env!("CARGO_TARGET_TMPDIR"), "plugins")
}

fn tool() -> PathBuf {
    repo().join("plugins/csv-summary")
}

/// The binary `bin` of the Rust plugin `package`, built for
/// `wasm32-wasip2` in a target directory of its own.
fn rust_plugin_of(package: &str, bin: &str) -> PathBuf {
    let target = scratch().join(format!("{bin}-target"));
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = Command::new(cargo);
    build
        .args(["build", "--quiet", "--release", "--target", "wasm32-wasip2"])
        .args(["-p", package, "--target-dir"])
        .arg(&target)
        .current_dir(repo());
    for inherited in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "RUSTC_WRAPPER",
        "CARGO_TARGET_DIR",
    ] {
        build.env_remove(inherited);
    }
    run(&format!("cargo build -p {package}"), &mut build);
    target.join(format!("wasm32-wasip2/release/{bin}.wasm"))
}

/// The Rust version, built as its README says.
fn rust_plugin() -> PathBuf {
    rust_plugin_of("chatstore-csv-summary", "csv-summary")
}

/// The Python version: componentize-py from PyPI, pinned in its requirements.
fn python_plugin() -> PathBuf {
    let python = tool().join("python");
    let bin = venv::python_venv(&scratch().join("venv"), &python.join("requirements.txt"));
    let out = scratch().join("csv-summary-python.wasm");
    run(
        "componentize-py",
        Command::new(bin.join("componentize-py"))
            .arg("-d")
            .arg(repo().join("wit"))
            .args([
                "-w",
                "chatstore:storage/plugin",
                "componentize",
                "app",
                "-o",
            ])
            .arg(&out)
            .current_dir(&python),
    );
    out
}

/// The JavaScript version: componentize-js from npm, pinned in its lock file.
fn js_plugin() -> PathBuf {
    let js = tool().join("js");
    venv::npm_ci(&js);
    let out = scratch().join("csv-summary-js.wasm");
    run(
        "npm run build",
        Command::new("npm")
            .args(["run", "--silent", "build"])
            .env("OUT", &out)
            .current_dir(&js),
    );
    out
}

struct Cli {
    data: PathBuf,
}

impl Cli {
    fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_chatstore"))
            .arg("--data-dir")
            .arg(&self.data)
            .arg("--compile-cache")
            .arg(scratch().join("compile-cache"))
            .args(args)
            .output()
            .expect("chatstore runs")
    }

    fn json(&self, args: &[&str]) -> serde_json::Value {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("JSON")
    }
}

#[test]
fn the_csv_summary_in_three_languages_writes_the_same_summary() {
    let plugins = std::thread::scope(|s| {
        let rust = s.spawn(rust_plugin);
        let python = s.spawn(python_plugin);
        let js = s.spawn(js_plugin);
        [("rust", rust), ("python", python), ("javascript", js)]
            .map(|(name, built)| (name, built.join().expect("the build")))
    });

    let tmp = tempfile::tempdir().unwrap();
    let cli = Cli {
        data: tmp.path().join("data"),
    };
    let user = "0190f0c1-7d3a-7c4e-8a5b-1f2e3d4c5b6a";
    let workspace = cli.json(&["workspace", "ensure", "--user", user]);
    let chat = cli.json(&["chat", "create", "--user", user])["chat_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let files = [
        ("a.csv", "name,x,y\r\nab,1,-0.5\n\ncd,3,2.25\nef,2,1\n"),
        ("notes.txt", "not,a,csv\n1,2,3\n"),
        (
            "b.csv",
            "city,temp,note\nOslo,-3.25,cold\nRome,18.5,\nLima,1e1,x\n",
        ),
        ("names.csv", "first,last\nAda,Lovelace\n"),
    ];
    for (name, content) in files {
        let path = tmp.path().join(name);
        std::fs::write(&path, content).unwrap();
        let path = path.to_str().unwrap();
        cli.json(&[
            "file", "put", "--user", user, "--chat", &chat, "--name", name, "--file", path,
        ]);
    }
    let chat_dir = cli
        .data
        .join("workspaces")
        .join(workspace["workspace_id"].as_str().unwrap())
        .join("chats")
        .join(&chat);

    let expected = "# CSV summary\n\n\
        | file | rows | columns | numeric columns: min / max / mean |\n\
        |---|---|---|---|\n\
        | a.csv | 3 | 3 | x: 1.000 / 3.000 / 2.000; y: -0.500 / 2.250 / 0.917 |\n\
        | b.csv | 3 | 3 | temp: -3.250 / 18.500 / 8.417 |\n\
        | names.csv | 1 | 2 | - |\n";
    for (language, plugin) in &plugins {
        let _ = std::fs::remove_file(chat_dir.join("summary.md"));
        let ran = cli.run(&["run", plugin.to_str().unwrap(), "--user", user, "--", &chat]);
        assert!(
            ran.status.success(),
            "{language}: {}",
            String::from_utf8_lossy(&ran.stderr)
        );
        let summary = std::fs::read_to_string(chat_dir.join("summary.md")).expect(language);
        assert_eq!(summary, expected, "{language}");
        let listed = cli.json(&["file", "list", "--user", user, "--chat", &chat]);
        let record = listed["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == "summary.md")
            .expect("summary.md is an attachment")
            .clone();
        assert_eq!(record["size_bytes"], expected.len(), "{language}");
    }
    let history = std::fs::read_to_string(chat_dir.join("history.md")).unwrap();
    assert_eq!(
        history,
        "csv-summary: 3 CSV files summarised in summary.md\n".repeat(3)
    );

    // Another user's plugin finds no such chat, and writes nothing there.
    let other = "0190f0c1-7d3a-7c4e-8a5b-1f2e3d4c5b6b";
    cli.json(&["workspace", "ensure", "--user", other]);
    let before = std::fs::read_dir(&chat_dir).unwrap().count();
    let (_, rust) = &plugins[0];
    let ran = cli.run(&["run", rust.to_str().unwrap(), "--user", other, "--", &chat]);
    assert_eq!(ran.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&ran.stderr).contains("ChatNotFound"));
    assert_eq!(std::fs::read_dir(&chat_dir).unwrap().count(), before);
    assert_eq!(
        std::fs::read_to_string(chat_dir.join("history.md")).unwrap(),
        history
    );
}

#[test]
fn a_plugin_reads_a_1_gib_history_through_its_stream_in_bounded_host_memory() {
    let probe = rust_plugin_of("chatstore-plugin-probe", "plugin-probe");
    let tmp = tempfile::tempdir().unwrap();
    let cli = Cli {
        data: tmp.path().join("data"),
    };
    let user = "0190f0c1-7d3a-7c4e-8a5b-1f2e3d4c5b6c";
    let workspace = cli.json(&["workspace", "ensure", "--user", user]);
    let chat = cli.json(&["chat", "create", "--user", user])["chat_id"]
        .as_str()
        .unwrap()
        .to_owned();
    // A sparse gibibyte, as a sandbox might leave it: read, never stored.
    let history = cli
        .data
        .join("workspaces")
        .join(workspace["workspace_id"].as_str().unwrap())
        .join("chats")
        .join(&chat)
        .join("history.md");
    let gib = 1u64 << 30;
    std::fs::File::options()
        .write(true)
        .open(&history)
        .unwrap()
        .set_len(gib)
        .unwrap();
    #[expect(clippy::zombie_processes, reason = "wait4 reaps it, for its own usage")]
    let child = Command::new(env!("CARGO_BIN_EXE_chatstore"))
        .arg("--data-dir")
        .arg(&cli.data)
        .args(["--no-compile-cache", "run"])
        .arg(&probe)
        .args(["--user", user, "--", "read-history", &chat])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as libc::pid_t;
    let mut stdout = child.stdout.unwrap();
    let mut printed = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut printed).unwrap();
    // This child's own peak, whatever else the tests run beside it.
    let (mut status, mut usage) = (0, zeroed_rusage());
    // SAFETY: wait4 writes the status and the usage of the child it reaped.
    let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(reaped, pid);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "{status}"
    );
    assert_eq!(printed.trim(), format!("{gib} {gib}"));
    let peak_mib = usage.ru_maxrss / 1024;
    println!("peak resident memory reading 1 GiB: {peak_mib} MiB");
    assert!(
        peak_mib < 256,
        "{peak_mib} MiB: the stream was held, not streamed"
    );
}

fn zeroed_rusage() -> libc::rusage {
    // SAFETY: rusage is plain integers, all valid as zero.
    unsafe { std::mem::zeroed() }
}
