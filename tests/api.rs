//! The HTTP API against its own OpenAPI document, on a live server: the
//! document served at `/openapi.json` is valid OpenAPI 3.1
//! (openapi-spec-validator), and schemathesis, running every check but the
//! use-after-free heuristic, finds nothing — once for callers with no
//! workspace, once for a user who has one (so that every route's own logic
//! is reached through the document's links).
//!
//! The tools are pinned in `tests/api/requirements.txt` and installed into a
//! virtual environment on first use; the seed is fixed, so a run repeats.

use chatstore_host::ChatStore;
use chatstore_tests::venv::{self, run};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// How many cases schemathesis generates per operation and phase.
const EXAMPLES: &str = "60";

fn api_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("api")
}

/// The virtual environment's `bin`, made once for the tests of this file.
fn tools() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let dir = venv::scratch(env!("CARGO_TARGET_TMPDIR"), "api");
        venv::python_venv(&dir.join("venv"), &api_dir().join("requirements.txt"))
    })
}

/// A server on a free loopback port, on its own runtime and data directory.
struct Live {
    base: String,
    tmp: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
}

fn serve() -> Live {
    let tmp = tempfile::tempdir().unwrap();
    let store = ChatStore::builder()
        .data_dir(tmp.path().join("data"))
        .pooled_instances(8)
        .build()
        .unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (bound, addr) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            bound.send(listener.local_addr().unwrap()).unwrap();
            let config = chatstore_http::ServerConfig {
                max_concurrent: 8,
                ..chatstore_http::ServerConfig::default()
            };
            chatstore_http::serve(listener, store, config, async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        });
    });
    Live {
        base: format!("http://{}", addr.recv().unwrap()),
        tmp,
        _stop: stop,
    }
}

/// Runs schemathesis against the live server with `extra` arguments; fails
/// with its report if it finds anything.
fn schemathesis(live: &Live, extra: &[&str]) {
    let output = run(
        "schemathesis",
        Command::new(tools().join("schemathesis"))
            .arg("--no-color")
            .arg("--config-file")
            .arg(api_dir().join("schemathesis.toml"))
            .arg("run")
            .arg(format!("{}/openapi.json", live.base))
            .args(["--checks", "all", "--exclude-checks", "use_after_free"])
            .args(["--max-examples", EXAMPLES, "--seed", "20261128"])
            .args(["--workers", "1", "--generation-database", "none"])
            .args(extra)
            .current_dir(live.tmp.path()),
    );
    let report = String::from_utf8_lossy(&output.stdout);
    let summary = report
        .lines()
        .skip_while(|l| !l.contains("SUMMARY"))
        .collect::<Vec<_>>()
        .join("\n");
    println!("{summary}");
}

#[test]
fn the_served_document_is_valid_openapi_3_1() {
    let live = serve();
    let body = ureq_get(&format!("{}/openapi.json", live.base));
    let document: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(document["openapi"], "3.1.0");
    let file = live.tmp.path().join("openapi.json");
    std::fs::write(&file, &body).unwrap();
    run(
        "openapi-spec-validator",
        Command::new(tools().join("openapi-spec-validator")).arg(&file),
    );
    assert_eq!(
        document,
        serde_json::to_value(chatstore_http::openapi()).unwrap()
    );
}

#[test]
fn schemathesis_finds_nothing_for_callers_without_a_workspace() {
    schemathesis(&serve(), &[]);
}

#[test]
fn schemathesis_finds_nothing_for_a_user_with_a_workspace() {
    let live = serve();
    let user = "0190f0c1-7d3a-7c4e-8a5b-1f2e3d4c5b6a";
    let store = ChatStore::builder()
        .data_dir(live.tmp.path().join("data"))
        .build()
        .unwrap();
    store.ensure_workspace(user.parse().unwrap()).unwrap();
    schemathesis(&live, &["--header", &format!("X-User-Id: {user}")]);
}

/// The body of a GET, over a plain socket.
fn ureq_get(url: &str) -> String {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_once('/').unwrap();
    let mut stream = std::net::TcpStream::connect(host).unwrap();
    write!(
        stream,
        "GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    body.to_owned()
}
