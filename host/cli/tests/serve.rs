//! `chatstore serve` as a process: its log, its request ids, its shutdown.

use std::io::{BufRead, BufReader, Lines, Read, Write};
use std::net::TcpStream;
use std::process::{ChildStderr, Command, Stdio};

/// Kills the server if the test fails before stopping it.
struct Server {
    child: std::process::Child,
    log: Lines<BufReader<ChildStderr>>,
    addr: String,
    _tmp: tempfile::TempDir,
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
    let mut child = Command::new(env!("CARGO_BIN_EXE_chatstore"))
        .args([
            "--data-dir",
            tmp.path().join("data").to_str().unwrap(),
            "serve",
            "--addr",
            "127.0.0.1:0",
        ])
        .env("RUST_LOG", rust_log)
        .env("XDG_CACHE_HOME", tmp.path().join("cache"))
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
        _tmp: tmp,
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
