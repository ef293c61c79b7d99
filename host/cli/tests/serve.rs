//! `chatstore serve` as a process: its log, its request ids, its shutdown.

use chatstore_host::adapters::postgres::ScratchDatabase;
use std::io::{BufRead, BufReader, Lines, Read, Write};
use std::net::TcpStream;
use std::process::{ChildStderr, Command, Stdio};

/// Kills the server if the test fails before stopping it.
struct Server {
    child: std::process::Child,
    log: Lines<BufReader<ChildStderr>>,
    addr: String,
    _tmp: Option<tempfile::TempDir>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the binary on a free port with `RUST_LOG=rust_log`; returns once
/// it logs that it listens.
fn serve(rust_log: &str) -> Server {
    let tmp = tempfile::tempdir().unwrap();
    let mut server = serve_in(tmp.path(), &[], rust_log);
    server._tmp = Some(tmp);
    server
}

/// Starts the binary on `<root>/data` with `args` before `serve`.
fn serve_in(root: &std::path::Path, args: &[&str], rust_log: &str) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_chatstore"))
        .env_remove("CHATSTORE_DATABASE_URL")
        .args(["--data-dir", root.join("data").to_str().unwrap()])
        .args(args)
        .args(["serve", "--addr", "127.0.0.1:0"])
        .env("RUST_LOG", rust_log)
        .env("XDG_CACHE_HOME", root.join("cache"))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut log = BufReader::new(child.stderr.take().unwrap()).lines();
    let listening = log
        .by_ref()
        .map_while(Result::ok)
        .find(|l| l.contains("listening"))
        .expect("a listening line");
    let addr = listening
        .split("addr=")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    Server {
        child,
        log,
        addr,
        _tmp: None,
    }
}

impl Server {
    /// Sends one raw HTTP/1.1 request and returns the whole answer.
    fn request(&self, head: &str, body: &[u8]) -> String {
        let mut stream = TcpStream::connect(&self.addr).unwrap();
        write!(
            stream,
            "{head}\r\nHost: t\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .unwrap();
        stream.write_all(body).unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        answer
    }

    /// Log lines until one contains `needle` (inclusive).
    fn log_until(&mut self, needle: &str) -> Vec<String> {
        let mut lines = Vec::new();
        for line in self.log.by_ref().map_while(Result::ok) {
            let done = line.contains(needle);
            lines.push(line);
            if done {
                return lines;
            }
        }
        panic!("the log ended without {needle:?}: {lines:?}");
    }
}

fn header<'a>(answer: &'a str, name: &str) -> Option<&'a str> {
    answer.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

#[test]
fn the_binary_serves_logs_and_stops_on_sigterm() {
    let mut server = serve("info");
    let answer = server.request("GET /healthz HTTP/1.1", b"");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let line = server.log_until("status=200").pop().unwrap();
    for field in [
        "method=GET",
        "route=/healthz",
        "status=200",
        "duration_ms=",
        "user=",
        "request_id=",
    ] {
        assert!(line.contains(field), "{field} in {line}");
    }
    terminate(server.child.id());
    let status = server.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let rest: Vec<String> = server.log.by_ref().map_while(Result::ok).collect();
    assert!(rest.iter().any(|l| l.contains("SIGTERM")), "{rest:?}");
    assert!(rest.iter().any(|l| l.contains("stopped")), "{rest:?}");
}

#[test]
fn every_response_carries_a_request_id_the_callers_or_a_new_one() {
    let server = serve("info");
    let user = "X-User-Id: 0190f0c1-7d3a-7c4e-8a5b-1f2e3d4c5b6a";
    let given = server.request(
        &format!("GET /v1/workspace HTTP/1.1\r\n{user}\r\nx-request-id: trace-42"),
        b"",
    );
    assert!(given.starts_with("HTTP/1.1 404"), "{given}");
    assert_eq!(header(&given, "x-request-id"), Some("trace-42"));
    assert!(given.contains(r#""request_id":"trace-42""#), "{given}");

    let mut seen = Vec::new();
    for head in [
        "GET /healthz HTTP/1.1".to_owned(),
        "GET /openapi.json HTTP/1.1".to_owned(),
        format!("PUT /v1/workspace HTTP/1.1\r\n{user}"),
        "GET /v1/chats HTTP/1.1".to_owned(),
        "GET /no/such/route HTTP/1.1".to_owned(),
        "PATCH /v1/workspace HTTP/1.1".to_owned(),
    ] {
        let answer = server.request(&head, b"");
        let id = header(&answer, "x-request-id")
            .unwrap_or_else(|| panic!("no x-request-id for {head}: {answer}"))
            .to_owned();
        if !answer.starts_with("HTTP/1.1 2") {
            assert!(
                answer.contains(&format!(r#""request_id":"{id}""#)),
                "{answer}"
            );
        }
        seen.push(id);
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 6, "every request gets its own id: {seen:?}");
}

#[test]
fn a_debug_log_shows_an_uploads_use_case_and_port_spans() {
    let mut server = serve("chatstore=debug");
    let user = "X-User-Id: 0190f0c1-7d3a-7c4e-8a5b-1f2e3d4c5b6a";
    let ws = server.request(&format!("PUT /v1/workspace HTTP/1.1\r\n{user}"), b"");
    assert!(ws.starts_with("HTTP/1.1 200"), "{ws}");
    let chat = server.request(&format!("POST /v1/chats HTTP/1.1\r\n{user}"), b"");
    let chat_id = chat
        .split(r#""chat_id":""#)
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("{chat}"))
        .to_owned();
    server.log_until("status=201");
    let upload = server.request(
        &format!(
            "POST /v1/chats/{chat_id}/files?name=a.txt HTTP/1.1\r\n{user}\r\nx-request-id: up-1"
        ),
        b"hello",
    );
    assert!(upload.starts_with("HTTP/1.1 201"), "{upload}");
    let lines = server.log_until("status=201");
    let upload_lines: Vec<&String> = lines.iter().filter(|l| l.contains("up-1")).collect();
    let use_case = upload_lines
        .iter()
        .find(|l| l.contains("use_case{") && l.contains("code=\"ok\""))
        .unwrap_or_else(|| panic!("no use-case line in {lines:#?}"));
    for field in [
        "name=\"upload-attachment\"",
        "user=0190f0c1-7d3a-7c4e-8a5b-1f2e3d4c5b6a",
        &format!("chat={chat_id}"),
        "duration_us=",
    ] {
        assert!(use_case.contains(field), "{field} in {use_case}");
    }
    let ports: Vec<&&String> = upload_lines
        .iter()
        .filter(|l| l.contains(":port{"))
        .collect();
    for port in [
        "port=\"chat-repository\"",
        "port=\"chat-file-repository\"",
        "port=\"chat-storage\" op=\"write-attachment\"",
        "port=\"storage-usage\"",
    ] {
        assert!(
            ports
                .iter()
                .any(|l| l.contains(port) && l.contains("outcome=\"ok\"")),
            "no {port} span in {ports:#?}"
        );
    }
    assert!(
        ports.iter().all(|l| l.contains("duration_us=")),
        "{ports:#?}"
    );
}

fn terminate(pid: u32) {
    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// The server's exit status once it stops; a server that has not stopped
/// a minute after SIGTERM hangs in its shutdown, and fails the test rather
/// than holding it forever.
fn stopped(child: &mut std::process::Child) -> std::process::ExitStatus {
    for _ in 0..600 {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let _ = child.kill();
    panic!("the server did not stop within a minute of SIGTERM");
}

/// The JSON body of an answer.
fn body_json(answer: &str) -> serde_json::Value {
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    serde_json::from_str(body).unwrap_or(serde_json::Value::Null)
}

fn status(answer: &str) -> u16 {
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

#[test]
fn two_servers_on_one_data_directory_share_each_users_writes_quota_and_journal() {
    two_servers_share_each_users_writes_quota_and_journal(&[], || {});
}

/// Two hosts: two servers on one data directory and one PostgreSQL
/// database, whose locks alone keep them apart.
#[test]
fn two_servers_on_one_postgres_database_share_each_users_writes_quota_and_journal() {
    let Some(db) = ScratchDatabase::from_env() else {
        return;
    };
    two_servers_share_each_users_writes_quota_and_journal(&["--metadata", db.url()], || {
        // A killed server's sessions end when PostgreSQL notices.
        db.until_unused().unwrap()
    });
}

/// `metadata` selects the store for the servers and `fsck`; `settled`
/// returns once the servers are gone from it.
fn two_servers_share_each_users_writes_quota_and_journal(metadata: &[&str], settled: impl Fn()) {
    let tmp = tempfile::tempdir().unwrap();
    let quota = [metadata, &["--quota-bytes", "1000"]].concat();
    let a = serve_in(tmp.path(), &quota, "info");
    let mut b = serve_in(tmp.path(), &quota, "info");
    let servers = [&a, &b];
    let user = "0190f0c1-7d3a-7c4e-8a5b-1f2e3d4c5b6a";
    let as_user = |server: &Server, head: &str, body: &[u8]| {
        server.request(&format!("{head}\r\nX-User-Id: {user}"), body)
    };
    as_user(&a, "PUT /v1/workspace HTTP/1.1", b"");
    let chat = body_json(&as_user(&b, "POST /v1/chats HTTP/1.1", b""))["chat_id"]
        .as_str()
        .unwrap()
        .to_owned();

    // 40 appends of 10 bytes through both at once: each lands once, whole.
    std::thread::scope(|scope| {
        for t in 0..8 {
            let server = servers[t % 2];
            let (chat, as_user) = (&chat, &as_user);
            scope.spawn(move || {
                for i in 0..5 {
                    let line = format!("line {:04}\n", t * 5 + i);
                    let answer = as_user(
                        server,
                        &format!("POST /v1/chats/{chat}/history HTTP/1.1"),
                        line.as_bytes(),
                    );
                    assert_eq!(status(&answer), 204, "{answer}");
                }
            });
        }
    });
    let history = as_user(&a, &format!("GET /v1/chats/{chat}/history HTTP/1.1"), b"");
    let mut lines: Vec<&str> = history.split_once("\r\n\r\n").unwrap().1.lines().collect();
    lines.sort();
    let expected: Vec<String> = (0..40).map(|i| format!("line {i:04}")).collect();
    assert_eq!(lines, expected);

    // 16 uploads of 100 bytes through both, with room for 6: exactly 6 win.
    let won = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for t in 0..16 {
            let server = servers[t % 2];
            let (chat, as_user, won) = (&chat, &as_user, &won);
            scope.spawn(move || {
                let answer = as_user(
                    server,
                    &format!("POST /v1/chats/{chat}/files?name=f{t} HTTP/1.1"),
                    &[7; 100],
                );
                match status(&answer) {
                    201 => {
                        won.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                    413 => assert!(answer.contains("workspace_quota_exceeded"), "{answer}"),
                    _ => panic!("{answer}"),
                }
            });
        }
    });
    assert_eq!(won.into_inner(), 6);
    for server in servers {
        let usage = body_json(&as_user(server, "GET /v1/workspace/usage HTTP/1.1", b""));
        assert_eq!(usage["used_bytes"], 1000, "{usage}");
    }

    // One server is killed while it writes; the other serves on, and the
    // data directory is consistent afterwards.
    let mut a = a;
    let written = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let writer = std::thread::spawn({
        let (addr, chat, written) = (a.addr.clone(), chat.clone(), written.clone());
        move || {
            for i in 0.. {
                written.store(i, std::sync::atomic::Ordering::SeqCst);
                let Ok(mut stream) = TcpStream::connect(&addr) else {
                    return i;
                };
                let head = format!(
                    "PUT /v1/chats/{chat}/history HTTP/1.1\r\nX-User-Id: {user}\r\n\
                     Host: t\r\nContent-Length: 6\r\nConnection: close\r\n\r\nmine {}",
                    i % 10
                );
                let mut answer = String::new();
                if stream.write_all(head.as_bytes()).is_err()
                    || stream.read_to_string(&mut answer).is_err()
                    || answer.is_empty()
                {
                    return i;
                }
            }
            unreachable!()
        }
    });
    // Killed once it has answered a few rewrites, with the next under way.
    while written.load(std::sync::atomic::Ordering::SeqCst) < 3 && !writer.is_finished() {
        std::thread::yield_now();
    }
    a.child.kill().unwrap();
    a.child.wait().unwrap();
    writer.join().unwrap();
    let listed = as_user(&b, &format!("GET /v1/chats/{chat}/files HTTP/1.1"), b"");
    assert_eq!(status(&listed), 200, "{listed}");
    let rewritten = as_user(
        &b,
        &format!("PUT /v1/chats/{chat}/history HTTP/1.1"),
        b"# after\n",
    );
    assert_eq!(status(&rewritten), 204, "{rewritten}");
    let history = as_user(&b, &format!("GET /v1/chats/{chat}/history HTTP/1.1"), b"");
    assert!(history.ends_with("\r\n\r\n# after\n"), "{history}");
    // The other stops cleanly on SIGTERM, closing its database sessions.
    terminate(b.child.id());
    let stopped = stopped(&mut b.child);
    assert!(stopped.success(), "{stopped}");
    drop(b);
    settled();
    let fsck = Command::new(env!("CARGO_BIN_EXE_chatstore"))
        .args(["--data-dir", tmp.path().join("data").to_str().unwrap()])
        .args(metadata)
        .arg("fsck")
        .env("XDG_CACHE_HOME", tmp.path().join("cache"))
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&fsck.stdout).unwrap();
    for problem in [
        "missing_chat_dirs",
        "orphan_chat_dirs",
        "missing_files",
        "unregistered_files",
        "size_mismatches",
        "usage_drift",
    ] {
        assert_eq!(
            report[problem],
            serde_json::json!([]),
            "{problem}: {report}"
        );
    }
    let staged = std::fs::read_dir(tmp.path().join("data/staging"))
        .unwrap()
        .count();
    assert_eq!(staged, 0);
}
