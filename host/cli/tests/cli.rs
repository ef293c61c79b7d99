//! The `chatstore` binary, driven as a user would: flags in, JSON out,
//! typed exit codes, and nothing changed by bad input.

use serde_json::Value;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

const CHATSTORE: &str = env!("CARGO_BIN_EXE_chatstore");
const DATABASE_URL: &str = "CHATSTORE_DATABASE_URL";

struct Cli {
    _tmp: tempfile::TempDir,
    data: PathBuf,
    /// The user's cache directory, as `XDG_CACHE_HOME` names it.
    cache: PathBuf,
}

impl Cli {
    fn new() -> Cli {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        let cache = tmp.path().join("cache");
        Cli {
            _tmp: tmp,
            data,
            cache,
        }
    }

    fn run_with(&self, args: &[&str], stdin: &[u8]) -> Output {
        self.run_in_env(args, stdin, None)
    }

    /// Runs with `CHATSTORE_DATABASE_URL` set to `database_url`, or unset.
    fn run_in_env(&self, args: &[&str], stdin: &[u8], database_url: Option<&str>) -> Output {
        let mut command = Command::new(CHATSTORE);
        match database_url {
            Some(url) => command.env(DATABASE_URL, url),
            None => command.env_remove(DATABASE_URL),
        };
        let mut child = command
            .arg("--data-dir")
            .arg(&self.data)
            .args(args)
            .env("XDG_CACHE_HOME", &self.cache)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin).unwrap();
        child.wait_with_output().unwrap()
    }

    fn run(&self, args: &[&str]) -> Output {
        self.run_with(args, b"")
    }

    /// Runs a command that must succeed and print JSON.
    fn json(&self, args: &[&str]) -> Value {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    fn tree(&self) -> Vec<(PathBuf, Vec<u8>)> {
        let mut out = Vec::new();
        let mut pending = vec![self.data.join("workspaces")];
        while let Some(dir) = pending.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    pending.push(path.clone());
                    out.push((path, Vec::new()));
                } else {
                    out.push((path.clone(), std::fs::read(&path).unwrap()));
                }
            }
        }
        out.sort();
        out
    }
}

const USER: &str = "0190f0c1-7d3a-7c4e-8a5b-1f2e3d4c5b6a";

fn text(v: &Value, key: &str) -> String {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} in {v}"))
        .to_owned()
}

fn exit_code(out: &Output) -> i32 {
    out.status.code().unwrap()
}

/// The error a refused command (exit 2) printed on standard error.
fn refusal(out: &Output) -> Value {
    assert_eq!(
        exit_code(out),
        2,
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stderr).unwrap()
}

fn stderr_lines(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// A user with a workspace and a chat; returns the chat id.
fn chat(cli: &Cli) -> String {
    cli.json(&["workspace", "ensure", "--user", USER]);
    text(&cli.json(&["chat", "create", "--user", USER]), "chat_id")
}

#[test]
fn the_flows_work_end_to_end_and_persist_between_commands() {
    let cli = Cli::new();
    let workspace = cli.json(&["workspace", "ensure", "--user", USER]);
    assert_eq!(text(&workspace, "user_id"), USER);
    assert!(
        text(&workspace, "created_at").ends_with('Z'),
        "RFC 3339 UTC: {workspace}"
    );
    assert_eq!(cli.json(&["workspace", "get", "--user", USER]), workspace);

    let chat = cli.json(&["chat", "create", "--user", USER]);
    let c = text(&chat, "chat_id");
    assert_eq!(
        text(&chat, "workspace_id"),
        text(&workspace, "workspace_id")
    );
    assert_eq!(
        cli.json(&["chat", "list", "--user", USER])["data"],
        Value::Array(vec![chat.clone()])
    );
    assert_eq!(
        cli.json(&["chat", "get", "--user", USER, "--chat", &c]),
        chat
    );

    let out = cli.run_with(
        &["history", "write", "--user", USER, "--chat", &c],
        b"# Title\n",
    );
    assert!(out.status.success());
    let note = cli._tmp.path().join("note.md");
    std::fs::write(&note, "more ✓\n").unwrap();
    cli.json(&[
        "history",
        "append",
        "--user",
        USER,
        "--chat",
        &c,
        "--file",
        note.to_str().unwrap(),
    ]);
    let history = cli.run(&["history", "read", "--user", USER, "--chat", &c]);
    assert_eq!(history.stdout, "# Title\nmore ✓\n".as_bytes());

    let bytes: Vec<u8> = (0..=255).collect();
    let out = cli.run_with(
        &[
            "file",
            "put",
            "--user",
            USER,
            "--chat",
            &c,
            "--name",
            "raw.bin",
            "--content-type",
            "application/octet-stream",
        ],
        &bytes,
    );
    let file: Value = serde_json::from_slice(&out.stdout).unwrap();
    for key in [
        "file_id",
        "chat_id",
        "name",
        "content_type",
        "size_bytes",
        "created_at",
    ] {
        assert!(file.get(key).is_some(), "{key} in {file}");
    }
    assert_eq!(file["size_bytes"], 256);
    let f = text(&file, "file_id");
    let got = cli.run(&["file", "get", "--user", USER, "--chat", &c, "--file-id", &f]);
    assert_eq!(got.stdout, bytes);
    let copy = cli._tmp.path().join("copy.bin");
    cli.json(&[
        "file",
        "get",
        "--user",
        USER,
        "--chat",
        &c,
        "--file-id",
        &f,
        "--output",
        copy.to_str().unwrap(),
    ]);
    assert_eq!(std::fs::read(&copy).unwrap(), bytes);
    // A device takes the content too (it is not synced as a file would be).
    cli.json(&[
        "file",
        "get",
        "--user",
        USER,
        "--chat",
        &c,
        "--file-id",
        &f,
        "--output",
        "/dev/null",
    ]);
    assert_eq!(
        cli.json(&[
            "file",
            "info",
            "--user",
            USER,
            "--chat",
            &c,
            "--file-id",
            &f
        ]),
        file
    );
    assert_eq!(
        cli.json(&["file", "list", "--user", USER, "--chat", &c])["data"],
        Value::Array(vec![file])
    );
    let usage = cli.json(&["workspace", "usage", "--user", USER]);
    let stored = 256 + "# Title\nmore ✓\n".len();
    assert_eq!(usage["used_bytes"], stored);
    // Bytes written behind the store count once recounted.
    let workspace = cli.json(&["workspace", "get", "--user", USER]);
    let chat_dir = cli.data.join(format!(
        "workspaces/{}/chats/{c}",
        text(&workspace, "workspace_id")
    ));
    std::fs::write(chat_dir.join("behind.bin"), [0u8; 1000]).unwrap();
    let usage = cli.json(&["workspace", "usage", "--user", USER]);
    assert_eq!(usage["used_bytes"], stored);
    let usage = cli.json(&["workspace", "usage", "--user", USER, "--recount"]);
    assert_eq!(usage["used_bytes"], stored + 1000);
    std::fs::remove_file(chat_dir.join("behind.bin")).unwrap();
    cli.json(&["workspace", "usage", "--user", USER, "--recount"]);

    let started = cli.json(&["sandbox", "start", "--chat", &c]);
    assert!(
        started["working_dir"].as_str().unwrap().ends_with(&c),
        "{started}"
    );
    assert!(started["room_bytes"].as_u64().is_some(), "{started}");
    let refused = cli.run(&["chat", "delete", "--user", USER, "--chat", &c]);
    let error = refusal(&refused);
    assert_eq!(error["error"], "chat_has_active_sandbox");
    assert_eq!(error["id"], c.as_str());
    assert_eq!(
        exit_code(&cli.run(&["file", "clear", "--user", USER, "--chat", &c])),
        2
    );
    cli.json(&["sandbox", "stop", "--chat", &c]);
    cli.json(&["file", "clear", "--user", USER, "--chat", &c]);
    assert_eq!(
        cli.json(&["file", "list", "--user", USER, "--chat", &c])["data"],
        Value::Array(vec![])
    );
    cli.json(&["chat", "delete", "--user", USER, "--chat", &c]);
    let gone = cli.run(&["chat", "get", "--user", USER, "--chat", &c]);
    let error = refusal(&gone);
    assert_eq!(error["error"], "chat_not_found");

    let report = cli.json(&["fsck"]);
    assert_eq!(report["missing_files"], Value::Array(vec![]));
    assert_eq!(report["chats_checked"], 0);
}

#[test]
fn a_bad_flag_is_one_line_and_exit_1() {
    let cli = Cli::new();
    let out = cli.run(&["chat", "list", "--user", USER, "--colour"]);
    assert_eq!(exit_code(&out), 1);
    let lines = stderr_lines(&out);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("--colour"), "{lines:?}");
    assert!(!cli.data.exists(), "nothing was created");
}

#[test]
fn a_malformed_uuid_is_invalid_id_and_changes_nothing() {
    let cli = Cli::new();
    let out = cli.run(&["workspace", "ensure", "--user", "not-a-uuid"]);
    assert_eq!(exit_code(&out), 2);
    let lines = stderr_lines(&out);
    assert_eq!(lines.len(), 1);
    let error: Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(error["error"], "invalid_id");
    assert_eq!(error["id"], "not-a-uuid");
    assert!(!cli.data.exists(), "nothing was created");
}

#[test]
fn a_missing_input_file_is_one_line_and_changes_nothing() {
    let cli = Cli::new();
    let c = chat(&cli);
    let before = cli.tree();
    let out = cli.run(&[
        "file",
        "put",
        "--user",
        USER,
        "--chat",
        &c,
        "--name",
        "a",
        "--file",
        "/no/such/file",
    ]);
    assert_eq!(exit_code(&out), 1);
    let lines = stderr_lines(&out);
    assert_eq!(lines.len(), 1);
    assert!(lines[0].contains("/no/such/file"), "{lines:?}");
    assert_eq!(cli.tree(), before);
}

#[test]
fn a_name_that_is_a_path_is_refused_and_changes_nothing() {
    let cli = Cli::new();
    let c = chat(&cli);
    let before = cli.tree();
    for name in ["../x", "/etc/passwd", "history.md", ""] {
        let out = cli.run_with(
            &["file", "put", "--user", USER, "--chat", &c, "--name", name],
            b"payload",
        );
        let error = refusal(&out);
        let expected = if name == "history.md" {
            "reserved_attachment_name"
        } else {
            "invalid_attachment_name"
        };
        assert_eq!(error["error"], expected);
    }
    assert_eq!(cli.tree(), before);
    assert!(!cli.data.parent().unwrap().join("x").exists());
}

#[test]
fn non_utf8_history_is_refused_and_changes_nothing() {
    let cli = Cli::new();
    let c = chat(&cli);
    let before = cli.tree();
    let out = cli.run_with(
        &["history", "write", "--user", USER, "--chat", &c],
        &[0xff, 0xfe],
    );
    let error = refusal(&out);
    assert_eq!(error["error"], "invalid_history");
    assert_eq!(cli.tree(), before);
    assert!(
        std::fs::read_dir(cli.data.join("staging"))
            .unwrap()
            .next()
            .is_none()
    );
}

#[test]
fn every_command_answers_help() {
    let commands: &[&[&str]] = &[
        &[],
        &["workspace"],
        &["workspace", "ensure"],
        &["workspace", "get"],
        &["workspace", "usage"],
        &["workspace", "set-quota"],
        &["workspace", "export"],
        &["workspace", "import"],
        &["chat"],
        &["chat", "create"],
        &["chat", "list"],
        &["chat", "get"],
        &["chat", "delete"],
        &["history"],
        &["history", "read"],
        &["history", "write"],
        &["history", "append"],
        &["file"],
        &["file", "put"],
        &["file", "list"],
        &["file", "get"],
        &["file", "info"],
        &["file", "delete"],
        &["file", "clear"],
        &["sandbox"],
        &["sandbox", "start"],
        &["sandbox", "stop"],
        &["fsck"],
        &["demo"],
        &["conformance"],
        &["component"],
    ];
    for command in commands {
        let out = Command::new(CHATSTORE)
            .args(*command)
            .arg("--help")
            .output()
            .unwrap();
        assert!(out.status.success(), "{command:?}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("Usage:"),
            "{command:?}"
        );
    }
}

#[test]
fn a_metadata_store_chatstore_does_not_know_is_one_line_and_changes_nothing() {
    let cli = Cli::new();
    let out = cli.run(&[
        "--metadata",
        "mysql://db/x",
        "workspace",
        "get",
        "--user",
        USER,
    ]);
    assert_eq!(exit_code(&out), 1);
    let lines = stderr_lines(&out);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("postgres://"), "{lines:?}");
    assert!(!cli.data.exists(), "nothing was created");
}

#[test]
fn an_unreachable_database_is_one_line_and_exit_1() {
    let cli = Cli::new();
    let url = "postgres://chatstore@127.0.0.1:1/chatstore";
    let out = cli.run(&["--metadata", url, "workspace", "get", "--user", USER]);
    assert_eq!(exit_code(&out), 1);
    let lines = stderr_lines(&out);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("metadata database"), "{lines:?}");
}

#[test]
fn postgres_metadata_is_chosen_by_flag_or_by_the_environment() {
    let Some(db) = chatstore_host::adapters::postgres::ScratchDatabase::from_env() else {
        return;
    };
    let cli = Cli::new();
    let ensure = cli.run_in_env(
        &["workspace", "ensure", "--user", USER],
        b"",
        Some(db.url()),
    );
    assert!(
        ensure.status.success(),
        "{}",
        String::from_utf8_lossy(&ensure.stderr)
    );
    let created: Value = serde_json::from_slice(&ensure.stdout).unwrap();
    assert_eq!(
        cli.json(&["--metadata", db.url(), "workspace", "get", "--user", USER]),
        created
    );
    assert!(
        !cli.data.join("chatstore.db").exists(),
        "no SQLite database"
    );
    let sqlite = cli.run(&["--metadata", "sqlite", "workspace", "get", "--user", USER]);
    assert!(String::from_utf8_lossy(&sqlite.stderr).contains("workspace_not_found"));
}

#[test]
fn memory_metadata_is_refused_for_fsck() {
    let cli = Cli::new();
    let out = cli.run(&["--metadata", "memory", "fsck"]);
    assert_eq!(exit_code(&out), 1);
    assert_eq!(stderr_lines(&out).len(), 1);
}

#[test]
fn another_component_can_be_loaded_from_a_path() {
    let cli = Cli::new();
    let path = cli._tmp.path().join("policy.wasm");
    std::fs::write(&path, chatstore_host::STORAGE_COMPONENT).unwrap();
    let workspace = cli.json(&[
        "--component",
        path.to_str().unwrap(),
        "workspace",
        "ensure",
        "--user",
        USER,
    ]);
    assert_eq!(text(&workspace, "user_id"), USER);
}

#[test]
fn a_component_that_is_not_a_storage_service_is_refused_with_one_line() {
    let cli = Cli::new();
    let empty = cli._tmp.path().join("empty.wasm");
    // The smallest valid component: it exports nothing.
    std::fs::write(&empty, b"\0asm\x0d\x00\x01\x00").unwrap();
    let out = cli.run(&[
        "--component",
        empty.to_str().unwrap(),
        "workspace",
        "get",
        "--user",
        USER,
    ]);
    assert_eq!(exit_code(&out), 1);
    let lines = stderr_lines(&out);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].contains("does not export `chatstore:storage/storage@0.5.0`"),
        "{lines:?}"
    );

    let not_wasm = cli._tmp.path().join("notes.txt");
    std::fs::write(&not_wasm, b"hello").unwrap();
    let out = cli.run(&[
        "--component",
        not_wasm.to_str().unwrap(),
        "workspace",
        "get",
        "--user",
        USER,
    ]);
    assert_eq!(exit_code(&out), 1);
    assert_eq!(stderr_lines(&out).len(), 1);
}

#[test]
fn conformance_passes_for_the_built_in_component() {
    let cli = Cli::new();
    let out = cli.run(&["conformance"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(exit_code(&out), 0, "{stdout}");
    let lines: Vec<&str> = stdout.lines().collect();
    let (summary, scenarios) = lines.split_last().unwrap();
    assert!(scenarios.len() >= 10, "{stdout}");
    assert!(scenarios.iter().all(|l| l.starts_with("ok ")), "{stdout}");
    let n = scenarios.len();
    assert_eq!(*summary, format!("{n} scenarios: {n} passed, 0 failed"));
    assert!(
        !cli.data.exists(),
        "conformance leaves the data directory alone"
    );
}

#[test]
fn conformance_reports_the_step_that_differs_and_exits_1() {
    let cli = Cli::new();
    let dir = cli._tmp.path().join("scenarios");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(
        dir.join("usage.json"),
        r#"{"rule": "An empty workspace uses nothing.", "ids": ["alice"], "steps": [
            {"call": "ensure-workspace", "user-id": "$alice", "as": "ws"},
            {"call": "get-usage", "user-id": "$alice", "expect": {"ok": {"used-bytes": 1}}}
        ]}"#,
    )
    .unwrap();
    let out = cli.run(&["conformance", "--scenarios", dir.to_str().unwrap()]);
    assert_eq!(exit_code(&out), 1);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(
        lines[0].starts_with(
            "FAIL  usage  step 2 (call get-usage): expected ok {\"used-bytes\":1}, got ok {"
        ),
        "{stdout}"
    );
    assert_eq!(lines[1].trim(), "rule: An empty workspace uses nothing.");
    assert_eq!(lines[2], "1 scenarios: 0 passed, 1 failed");
    assert_eq!(stderr_lines(&out), ["chatstore: 1 of 1 scenarios failed"]);

    let out = cli.run(&["conformance", "--only", "no-such-scenario"]);
    assert_eq!(exit_code(&out), 1);
    assert_eq!(stderr_lines(&out).len(), 1);

    std::fs::write(dir.join("broken.json"), "{").unwrap();
    let out = cli.run(&["conformance", "--scenarios", dir.to_str().unwrap()]);
    assert_eq!(exit_code(&out), 1);
    let lines = stderr_lines(&out);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].starts_with("chatstore: broken: "), "{lines:?}");
}

#[test]
fn component_writes_the_embedded_wasm() {
    let cli = Cli::new();
    let path = cli._tmp.path().join("chatstore_storage.wasm");
    let out = cli.run(&["component", "--output", path.to_str().unwrap()]);
    assert_eq!(
        exit_code(&out),
        0,
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read(&path).unwrap(),
        chatstore_host::STORAGE_COMPONENT
    );

    let out = cli.run(&["component", "--output", "/nonexistent-dir/x.wasm"]);
    assert_eq!(exit_code(&out), 1);
    assert_eq!(stderr_lines(&out).len(), 1);
}

#[test]
fn the_compiled_component_is_kept_in_the_users_cache_and_used_again() {
    let cli = Cli::new();
    let user = "0190f0c1-7d3a-7c4e-8a5b-1f2e3d4c5b6a";
    let first = cli.json(&["workspace", "ensure", "--user", user]);
    let entries = |dir: &std::path::Path| -> Vec<PathBuf> {
        std::fs::read_dir(dir)
            .map(|d| d.map(|e| e.unwrap().path()).collect())
            .unwrap_or_default()
    };
    let kept = entries(&cli.cache.join("chatstore"));
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert!(kept[0].to_string_lossy().ends_with(".cwasm"));
    let written = std::fs::metadata(&kept[0]).unwrap().modified().unwrap();
    // Loaded, not written again; the same answer either way.
    assert_eq!(cli.json(&["workspace", "get", "--user", user]), first);
    assert_eq!(
        std::fs::metadata(&kept[0]).unwrap().modified().unwrap(),
        written
    );
    let uncached = cli.json(&["--no-compile-cache", "workspace", "get", "--user", user]);
    assert_eq!(uncached, first);
    assert_eq!(entries(&cli.cache.join("chatstore")).len(), 1);
}

#[test]
fn a_workspace_gets_a_quota_of_its_own_and_the_configured_one_back() {
    let cli = Cli::new();
    cli.json(&["workspace", "ensure", "--user", USER]);
    let set = cli.json(&["workspace", "set-quota", "--user", USER, "--bytes", "5000"]);
    assert_eq!(set["quota_bytes"], 5000);
    let usage = cli.json(&["workspace", "usage", "--user", USER]);
    assert_eq!(usage["quota_bytes"], 5000, "kept between commands");
    let back = cli.json(&[
        "--quota-bytes",
        "7000",
        "workspace",
        "set-quota",
        "--user",
        USER,
        "--default",
    ]);
    assert_eq!(back["quota_bytes"], 7000);

    let neither = cli.run(&["workspace", "set-quota", "--user", USER]);
    assert_eq!(exit_code(&neither), 1);
    let both = cli.run(&[
        "workspace",
        "set-quota",
        "--user",
        USER,
        "--bytes",
        "1",
        "--default",
    ]);
    assert_eq!(exit_code(&both), 1);
    let nobody = cli.run(&[
        "workspace",
        "set-quota",
        "--user",
        "0190f0c1-0000-7000-8000-000000000000",
        "--bytes",
        "1",
    ]);
    let error = refusal(&nobody);
    assert_eq!(error["error"], "workspace_not_found");
}

#[test]
fn lists_come_in_pages() {
    let cli = Cli::new();
    cli.json(&["workspace", "ensure", "--user", USER]);
    let ids: Vec<String> = (0..3)
        .map(|_| text(&cli.json(&["chat", "create", "--user", USER]), "chat_id"))
        .collect();
    let first = cli.json(&["chat", "list", "--user", USER, "--limit", "2"]);
    assert_eq!(first["data"].as_array().unwrap().len(), 2);
    assert_eq!(
        (&first["has_more"], text(&first, "last_id")),
        (&Value::Bool(true), ids[1].clone())
    );
    let rest = cli.json(&["chat", "list", "--user", USER, "--after", &ids[1]]);
    assert_eq!(rest["data"][0]["chat_id"], ids[2].as_str());
    assert_eq!(rest["has_more"], false);

    let refused = cli.run(&["chat", "list", "--user", USER, "--limit", "0"]);
    let error = refusal(&refused);
    assert_eq!(error["error"], "invalid_limit");
}

#[test]
fn a_workspace_exports_to_a_file_and_imports_into_another_data_directory() {
    let cli = Cli::new();
    cli.json(&["workspace", "ensure", "--user", USER]);
    let c = chat(&cli);
    let put = cli.run_with(
        &[
            "file",
            "put",
            "--user",
            USER,
            "--chat",
            &c,
            "--name",
            "notes.txt",
        ],
        b"remember this\n",
    );
    assert!(put.status.success());
    let archive = cli._tmp.path().join("ws.tar");
    let summary = cli.json(&[
        "workspace",
        "export",
        "--user",
        USER,
        "--output",
        archive.to_str().unwrap(),
    ]);
    assert_eq!(
        (&summary["chats"], &summary["files"]),
        (&Value::from(1), &Value::from(1))
    );
    // The same archive to standard output.
    let streamed = cli.run(&["workspace", "export", "--user", USER]);
    assert!(streamed.status.success());
    assert_eq!(streamed.stdout, std::fs::read(&archive).unwrap());

    let other = Cli::new();
    let restored = other.json(&[
        "workspace",
        "import",
        "--user",
        USER,
        "--input",
        archive.to_str().unwrap(),
    ]);
    assert_eq!(restored["files"], 1);
    let chats = other.json(&["chat", "list", "--user", USER]);
    let chat_id = chats["data"][0]["chat_id"].as_str().unwrap().to_owned();
    let files = other.json(&["file", "list", "--user", USER, "--chat", &chat_id]);
    let file_id = files["data"][0]["file_id"].as_str().unwrap().to_owned();
    let got = other.run(&[
        "file",
        "get",
        "--user",
        USER,
        "--chat",
        &chat_id,
        "--file-id",
        &file_id,
    ]);
    assert_eq!(got.stdout, b"remember this\n");

    // Again into the now non-empty workspace: refused, from standard input.
    let again = other.run_with(&["workspace", "import", "--user", USER], &streamed.stdout);
    let error = refusal(&again);
    assert_eq!(error["error"], "workspace_not_empty");
}

#[test]
fn a_failed_export_leaves_no_file() {
    let cli = Cli::new();
    let archive = cli._tmp.path().join("ws.tar");
    let out = cli.run(&[
        "workspace",
        "export",
        "--user",
        USER,
        "--output",
        archive.to_str().unwrap(),
    ]);
    assert_eq!(exit_code(&out), 2);
    assert!(!archive.exists());
    assert!(!cli._tmp.path().join("ws.tar.partial").exists());
}
