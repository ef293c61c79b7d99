//! The HTTP API on a real loopback port, driven by a real HTTP client.

use chatstore_host::{ChatStore, ChatStoreBuilder};
use chatstore_http::{ServerConfig, serve};
use chatstore_testkit::faults::{Fault, FaultInjector};
use reqwest::{Client, Method, StatusCode};
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

struct Server {
    base: String,
    addr: SocketAddr,
    client: Client,
    data: std::path::PathBuf,
    _tmp: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
}

const MAX_UPLOAD: u64 = 1 << 20;

async fn start(
    configure: impl FnOnce(ChatStoreBuilder) -> ChatStoreBuilder,
    quota_bytes: u64,
) -> Server {
    start_with(|b| configure(b).build().unwrap(), quota_bytes).await
}

/// A server on a store that `build` makes from a configured builder.
async fn start_with(build: impl FnOnce(ChatStoreBuilder) -> ChatStore, quota_bytes: u64) -> Server {
    start_serving(build, quota_bytes, |_| {}).await
}

/// A server whose configuration `serving` changes.
async fn start_serving(
    build: impl FnOnce(ChatStoreBuilder) -> ChatStore,
    quota_bytes: u64,
    serving: impl FnOnce(&mut ServerConfig),
) -> Server {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let builder = ChatStore::builder()
        .data_dir(&data)
        .quota_bytes(quota_bytes)
        .pooled_instances(32);
    let store = build(builder);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let mut config = ServerConfig {
        max_upload_bytes: MAX_UPLOAD,
        max_concurrent: 32,
        ..ServerConfig::default()
    };
    serving(&mut config);
    tokio::spawn(serve(listener, store, config, async {
        let _ = stopped.await;
    }));
    Server {
        base: format!("http://{addr}"),
        addr,
        client: Client::new(),
        data,
        _tmp: tmp,
        _stop: stop,
    }
}

struct Reply {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|_| panic!("JSON body: {:?}", String::from_utf8_lossy(&self.body)))
    }

    fn code(&self) -> String {
        self.json()["error"].as_str().unwrap_or_default().to_owned()
    }
}

impl Server {
    async fn send(
        &self,
        method: Method,
        path: &str,
        user: Option<&str>,
        body: Option<(&str, Vec<u8>)>,
    ) -> Reply {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(user) = user {
            request = request.header("X-User-Id", user);
        }
        if let Some((content_type, bytes)) = body {
            request = request.header("Content-Type", content_type).body(bytes);
        }
        let response = request.send().await.unwrap();
        let (status, headers) = (response.status(), response.headers().clone());
        Reply {
            status,
            headers,
            body: response.bytes().await.unwrap().to_vec(),
        }
    }

    async fn call(&self, method: Method, path: &str, user: Uuid) -> Reply {
        self.send(method, path, Some(&user.to_string()), None).await
    }

    /// A user with a workspace and a chat.
    async fn user_with_chat(&self) -> (Uuid, String) {
        let user = Uuid::now_v7();
        assert_eq!(
            self.call(Method::PUT, "/v1/workspace", user).await.status,
            StatusCode::OK
        );
        let chat = self.call(Method::POST, "/v1/chats", user).await;
        assert_eq!(chat.status, StatusCode::CREATED);
        (user, chat.json()["chat_id"].as_str().unwrap().to_owned())
    }

    async fn upload(
        &self,
        user: Uuid,
        chat: &str,
        name: &str,
        content_type: &str,
        bytes: &[u8],
    ) -> Reply {
        let url = reqwest::Url::parse_with_params(
            &format!("{}/v1/chats/{chat}/files", self.base),
            &[("name", name)],
        )
        .unwrap();
        let path = &url.as_str()[self.base.len()..];
        self.send(
            Method::POST,
            path,
            Some(&user.to_string()),
            Some((content_type, bytes.to_vec())),
        )
        .await
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_route_works() {
    let s = start(|b| b, 1 << 30).await;
    assert_eq!(
        s.send(Method::GET, "/healthz", None, None).await.status,
        StatusCode::OK
    );

    let user = Uuid::now_v7();
    let ws = s.call(Method::PUT, "/v1/workspace", user).await;
    assert_eq!(ws.status, StatusCode::OK);
    assert_eq!(ws.json()["user_id"], user.to_string());
    assert_eq!(
        s.call(Method::GET, "/v1/workspace", user).await.json(),
        ws.json()
    );

    let chat = s.call(Method::POST, "/v1/chats", user).await;
    assert_eq!(chat.status, StatusCode::CREATED);
    let c = chat.json()["chat_id"].as_str().unwrap().to_owned();
    assert_eq!(
        s.call(Method::GET, "/v1/chats", user).await.json()["data"],
        Value::Array(vec![chat.json()])
    );
    assert_eq!(
        s.call(Method::GET, &format!("/v1/chats/{c}"), user)
            .await
            .json(),
        chat.json()
    );

    let history = format!("/v1/chats/{c}/history");
    let u = user.to_string();
    let put = s
        .send(
            Method::PUT,
            &history,
            Some(&u),
            Some(("text/markdown", b"# T\n".to_vec())),
        )
        .await;
    assert_eq!(put.status, StatusCode::NO_CONTENT);
    let post = s
        .send(
            Method::POST,
            &history,
            Some(&u),
            Some(("text/markdown", b"more\n".to_vec())),
        )
        .await;
    assert_eq!(post.status, StatusCode::NO_CONTENT);
    let read = s.call(Method::GET, &history, user).await;
    assert_eq!(read.status, StatusCode::OK);
    assert_eq!(read.headers["content-type"], "text/markdown; charset=utf-8");
    assert_eq!(read.body, b"# T\nmore\n");

    let bytes: Vec<u8> = (0..=255).cycle().take(70_000).collect();
    let file = s.upload(user, &c, "plot.png", "image/png", &bytes).await;
    assert_eq!(file.status, StatusCode::CREATED);
    let meta = file.json();
    assert_eq!(meta["name"], "plot.png");
    assert_eq!(meta["content_type"], "image/png");
    assert_eq!(meta["size_bytes"], 70_000);
    let f = meta["file_id"].as_str().unwrap().to_owned();
    assert_eq!(
        s.call(Method::GET, &format!("/v1/chats/{c}/files"), user)
            .await
            .json()["data"],
        Value::Array(vec![meta.clone()])
    );
    assert_eq!(
        s.call(Method::GET, &format!("/v1/chats/{c}/files/{f}"), user)
            .await
            .json(),
        meta
    );
    let content = s
        .call(
            Method::GET,
            &format!("/v1/chats/{c}/files/{f}/content"),
            user,
        )
        .await;
    assert_eq!(content.status, StatusCode::OK);
    assert_eq!(content.headers["content-type"], "image/png");
    assert_eq!(content.headers["content-length"], "70000");
    let sha256 = meta["sha256"].as_str().unwrap();
    assert_eq!(sha256.len(), 64);
    assert_eq!(content.headers["etag"], format!("\"{sha256}\"").as_str());
    assert_eq!(content.body, bytes);
    let usage = s
        .call(Method::GET, "/v1/workspace/usage", user)
        .await
        .json();
    assert_eq!(usage["used_bytes"], 70_000 + 9);

    let sandbox = s
        .call(Method::PUT, &format!("/v1/chats/{c}/sandbox"), user)
        .await;
    assert_eq!(sandbox.status, StatusCode::OK);
    let started = sandbox.json();
    assert_eq!(started["chat_id"], c.as_str());
    let working_dir = std::path::PathBuf::from(started["working_dir"].as_str().unwrap());
    assert!(working_dir.is_absolute(), "{started}");
    assert_eq!(
        std::fs::read(working_dir.join("plot.png")).unwrap(),
        bytes,
        "the chat's own directory"
    );
    assert_eq!(started["room_bytes"], (1u64 << 30) - (70_000 + 9));
    // The sandbox leaves a file: its session's end registers it.
    std::fs::write(working_dir.join("out.csv"), b"x,y\n").unwrap();
    let ended = s
        .call(Method::DELETE, &format!("/v1/chats/{c}/sandbox"), user)
        .await;
    assert_eq!(ended.status, StatusCode::OK);
    let ended = ended.json();
    assert_eq!(ended["session_id"], started["session_id"]);
    assert_eq!(ended["registered"][0]["name"], "out.csv");
    assert_eq!(ended["registered"][0]["content_type"], "text/csv");
    assert_eq!(ended["unregistered"], Value::Array(vec![]));
    let out = ended["registered"][0]["file_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        s.call(Method::DELETE, &format!("/v1/chats/{c}/files/{out}"), user)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        s.call(Method::DELETE, &format!("/v1/chats/{c}/sandbox"), user)
            .await
            .status,
        StatusCode::NO_CONTENT,
        "no session is active"
    );

    assert_eq!(
        s.call(Method::DELETE, &format!("/v1/chats/{c}/files/{f}"), user)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    s.upload(user, &c, "a", "text/plain", b"a").await;
    assert_eq!(
        s.call(Method::DELETE, &format!("/v1/chats/{c}/files"), user)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        s.call(Method::GET, &format!("/v1/chats/{c}/files"), user)
            .await
            .json()["data"],
        Value::Array(vec![])
    );
    assert_eq!(
        s.call(Method::DELETE, &format!("/v1/chats/{c}"), user)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        s.call(Method::GET, &format!("/v1/chats/{c}"), user)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn every_error_has_its_status_and_code() {
    let s = start(|b| b, 100_000).await;
    let (user, c) = s.user_with_chat().await;
    let u = user.to_string();

    // 400: who is asking is missing or malformed.
    let missing = s.send(Method::GET, "/v1/chats", None, None).await;
    assert_eq!(
        (missing.status, missing.code()),
        (StatusCode::BAD_REQUEST, "invalid_id".into())
    );
    let malformed = s
        .send(Method::GET, "/v1/chats", Some("../../etc"), None)
        .await;
    assert_eq!(
        (malformed.status, malformed.code()),
        (StatusCode::BAD_REQUEST, "invalid_id".into())
    );

    // 404s.
    let stranger = s.call(Method::GET, "/v1/workspace", Uuid::now_v7()).await;
    assert_eq!(
        (stranger.status, stranger.code()),
        (StatusCode::NOT_FOUND, "workspace_not_found".into())
    );
    let no_chat = s
        .call(Method::GET, &format!("/v1/chats/{}", Uuid::now_v7()), user)
        .await;
    assert_eq!(
        (no_chat.status, no_chat.code()),
        (StatusCode::NOT_FOUND, "chat_not_found".into())
    );
    let no_file = s
        .call(
            Method::GET,
            &format!("/v1/chats/{c}/files/{}", Uuid::now_v7()),
            user,
        )
        .await;
    assert_eq!(
        (no_file.status, no_file.code()),
        (StatusCode::NOT_FOUND, "chat_file_not_found".into())
    );
    let no_route = s.call(Method::GET, "/v2/anything", user).await;
    assert_eq!(no_route.status, StatusCode::NOT_FOUND);
    assert_eq!(no_route.code(), "not_found");

    // 409.
    s.call(Method::PUT, &format!("/v1/chats/{c}/sandbox"), user)
        .await;
    let busy = s
        .call(Method::DELETE, &format!("/v1/chats/{c}"), user)
        .await;
    assert_eq!(
        (busy.status, busy.code()),
        (StatusCode::CONFLICT, "chat_has_active_sandbox".into())
    );
    assert_eq!(busy.json()["id"], c.as_str());
    let busy = s
        .call(Method::DELETE, &format!("/v1/chats/{c}/files"), user)
        .await;
    assert_eq!(busy.status, StatusCode::CONFLICT);
    s.call(Method::DELETE, &format!("/v1/chats/{c}/sandbox"), user)
        .await;

    // 413 from the quota, with the body read.
    s.upload(
        user,
        &c,
        "big",
        "application/octet-stream",
        &vec![0; 90_000],
    )
    .await;
    let over = s
        .upload(
            user,
            &c,
            "more",
            "application/octet-stream",
            &vec![0; 20_000],
        )
        .await;
    assert_eq!(
        (over.status, over.code()),
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            "workspace_quota_exceeded".into()
        )
    );

    // 422s.
    for (name, code) in [
        ("a/b", "invalid_attachment_name"),
        ("a\\b", "invalid_attachment_name"),
        ("a\0b", "invalid_attachment_name"),
        ("..", "invalid_attachment_name"),
        ("", "invalid_attachment_name"),
        ("history.md", "reserved_attachment_name"),
    ] {
        let refused = s.upload(user, &c, name, "text/plain", b"x").await;
        assert_eq!(
            (refused.status, refused.code()),
            (StatusCode::UNPROCESSABLE_ENTITY, code.to_owned()),
            "{name}"
        );
    }
    let bad_chat = s.call(Method::GET, "/v1/chats/not-a-uuid", user).await;
    assert_eq!(
        (bad_chat.status, bad_chat.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_id".into())
    );
    let not_text = s
        .send(
            Method::PUT,
            &format!("/v1/chats/{c}/history"),
            Some(&u),
            Some(("text/markdown", vec![0xff])),
        )
        .await;
    assert_eq!(not_text.status, StatusCode::UNPROCESSABLE_ENTITY);

    // 405 for a known route with another method.
    let wrong = s.call(Method::PATCH, "/v1/workspace", user).await;
    assert_eq!(wrong.status, StatusCode::METHOD_NOT_ALLOWED);
}

/// Sends only the headers of an upload and reads the answer: a 413 that
/// comes back without the body proves the body was never waited for.
fn headers_only_upload(addr: SocketAddr, user: Uuid, chat: &str, length: u64) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "POST /v1/chats/{chat}/files?name=huge.bin HTTP/1.1\r\nHost: test\r\nX-User-Id: {user}\r\nContent-Type: application/octet-stream\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_uploads_are_refused_before_the_body_is_read() {
    let s = start(|b| b, 4 * MAX_UPLOAD).await;
    let (user, c) = s.user_with_chat().await;
    let addr = s.addr;
    let chat = c.clone();
    let past_limit =
        tokio::task::spawn_blocking(move || headers_only_upload(addr, user, &chat, MAX_UPLOAD + 1))
            .await
            .unwrap();
    assert!(past_limit.starts_with("HTTP/1.1 413"), "{past_limit}");
    assert!(past_limit.contains("upload_too_large"), "{past_limit}");

    let s = start(|b| b, 1000).await;
    let (user, c) = s.user_with_chat().await;
    let addr = s.addr;
    // Past the size read whole before the call (256 KiB), within the upload limit.
    let past_quota =
        tokio::task::spawn_blocking(move || headers_only_upload(addr, user, &c, 300_000))
            .await
            .unwrap();
    assert!(past_quota.starts_with("HTTP/1.1 413"), "{past_quota}");
    assert!(
        past_quota.contains("workspace_quota_exceeded"),
        "{past_quota}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn another_user_gets_404_and_learns_nothing() {
    let s = start(|b| b, 1 << 30).await;
    let (alice, c) = s.user_with_chat().await;
    let f = s
        .upload(alice, &c, "secret.txt", "text/plain", b"alice only")
        .await
        .json()["file_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let bob = Uuid::now_v7();
    s.call(Method::PUT, "/v1/workspace", bob).await;
    let b = bob.to_string();
    let missing_chat = Uuid::now_v7();
    for (method, path) in [
        (Method::GET, format!("/v1/chats/{c}")),
        (Method::GET, format!("/v1/chats/{c}/history")),
        (Method::GET, format!("/v1/chats/{c}/files")),
        (Method::GET, format!("/v1/chats/{c}/files/{f}")),
        (Method::GET, format!("/v1/chats/{c}/files/{f}/content")),
        (Method::DELETE, format!("/v1/chats/{c}/files/{f}")),
        (Method::DELETE, format!("/v1/chats/{c}/files")),
        (Method::DELETE, format!("/v1/chats/{c}")),
        (Method::PUT, format!("/v1/chats/{c}/sandbox")),
    ] {
        let theirs = s.send(method.clone(), &path, Some(&b), None).await;
        let absent = s
            .send(
                method.clone(),
                &path.replace(&c, &missing_chat.to_string()),
                Some(&b),
                None,
            )
            .await;
        assert_eq!(theirs.status, StatusCode::NOT_FOUND, "{method} {path}");
        assert_eq!(theirs.code(), "chat_not_found");
        // The same answer as for a chat that does not exist, but for the
        // id (and the request's own id).
        let answer = |reply: &Reply, id: &str| {
            let mut body = reply.json();
            body["request_id"] = Value::Null;
            body.to_string().replace(id, "ID")
        };
        assert_eq!(
            answer(&theirs, &c),
            answer(&absent, &missing_chat.to_string())
        );
    }
    let put = s.upload(bob, &c, "x", "text/plain", b"bob").await;
    assert_eq!(put.status, StatusCode::NOT_FOUND);
    assert!(
        s.call(Method::GET, "/v1/chats", bob).await.json()["data"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    let content = s
        .call(
            Method::GET,
            &format!("/v1/chats/{c}/files/{f}/content"),
            alice,
        )
        .await;
    assert_eq!(content.body, b"alice only");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_port_answers_503_without_its_details_and_the_next_request_works() {
    let mut injector = None;
    let s = start_with(
        |b| {
            let faults = Arc::new(FaultInjector::new(b.open_backend().unwrap()));
            injector = Some(faults.clone());
            b.build_with_backend(faults).unwrap()
        },
        1 << 30,
    )
    .await;
    let faults = injector.unwrap();
    let (user, c) = s.user_with_chat().await;
    faults.fail_nth(Some("chat-storage"), 1, Fault::DiskFull);
    let failed = s.upload(user, &c, "a.txt", "text/plain", b"x").await;
    assert_eq!(failed.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(failed.code(), "storage_unavailable");
    let body = String::from_utf8_lossy(&failed.body);
    assert!(body.contains("chat-storage"), "{body}");
    assert!(
        !body.contains("injected"),
        "what failed stays in the log: {body}"
    );
    let next = s.upload(user, &c, "a.txt", "text/plain", b"fine").await;
    assert_eq!(next.status, StatusCode::CREATED);
    let staged = std::fs::read_dir(s.data.join("staging")).unwrap().count();
    assert_eq!(staged, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn openapi_describes_every_route() {
    let s = start(|b| b, 1 << 30).await;
    let doc = s
        .send(Method::GET, "/openapi.json", None, None)
        .await
        .json();
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    for (path, methods) in [
        ("/healthz", &["get"][..]),
        ("/openapi.json", &["get"]),
        ("/v1/workspace", &["put", "get"]),
        ("/v1/workspace/usage", &["get"]),
        ("/v1/workspace/export", &["get"]),
        ("/v1/chats", &["post", "get"]),
        ("/v1/chats/{chat_id}", &["get", "delete"]),
        ("/v1/chats/{chat_id}/history", &["get", "put", "post"]),
        ("/v1/chats/{chat_id}/files", &["get", "post", "delete"]),
        ("/v1/chats/{chat_id}/files/{file_id}", &["get", "delete"]),
        ("/v1/chats/{chat_id}/files/{file_id}/content", &["get"]),
        ("/v1/chats/{chat_id}/sandbox", &["put", "delete"]),
    ] {
        for method in methods {
            assert!(paths[path][*method].is_object(), "{method} {path}");
        }
    }
    assert_eq!(paths.len(), 12);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_thousand_mixed_requests_from_many_tasks_leave_exactly_the_expected_state() {
    const USERS: usize = 20;
    const APPENDS: usize = 20;
    const FILES: usize = 25;
    let s = std::sync::Arc::new(start(|b| b, 1 << 30).await);
    let mut tasks = Vec::new();
    for _ in 0..USERS {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let (user, c) = s.user_with_chat().await;
            let u = user.to_string();
            let mut sent = 2;
            let mut inner = Vec::new();
            for i in 0..APPENDS {
                let (s, u, c) = (s.clone(), u.clone(), c.clone());
                inner.push(tokio::spawn(async move {
                    let path = format!("/v1/chats/{c}/history");
                    let r = s
                        .send(
                            Method::POST,
                            &path,
                            Some(&u),
                            Some(("text/markdown", format!("line {i}\n").into_bytes())),
                        )
                        .await;
                    assert_eq!(r.status, StatusCode::NO_CONTENT);
                }));
            }
            for i in 0..FILES {
                let (s, c) = (s.clone(), c.clone());
                inner.push(tokio::spawn(async move {
                    // Every other file is uploaded twice: the second replaces the first.
                    let name = format!("f{}", i % (FILES / 2 + 1));
                    let r = s
                        .upload(
                            user,
                            &c,
                            &name,
                            "text/plain",
                            format!("{name}:{i}").as_bytes(),
                        )
                        .await;
                    assert_eq!(r.status, StatusCode::CREATED);
                    let r = s
                        .call(Method::GET, &format!("/v1/chats/{c}/files"), user)
                        .await;
                    assert_eq!(r.status, StatusCode::OK);
                }));
            }
            sent += APPENDS + 2 * FILES;
            for t in inner {
                t.await.unwrap();
            }
            (user, c, sent)
        }));
    }
    let mut total = 0;
    let mut results = Vec::new();
    for t in tasks {
        let (user, c, sent) = t.await.unwrap();
        total += sent;
        results.push((user, c));
    }
    for (user, c) in &results {
        let history = String::from_utf8(
            s.call(Method::GET, &format!("/v1/chats/{c}/history"), *user)
                .await
                .body,
        )
        .unwrap();
        let mut lines: Vec<&str> = history.lines().collect();
        lines.sort_by_key(|l| l[5..].parse::<usize>().unwrap());
        let expected: Vec<String> = (0..APPENDS).map(|i| format!("line {i}")).collect();
        assert_eq!(lines, expected);
        let files = s
            .call(Method::GET, &format!("/v1/chats/{c}/files"), *user)
            .await
            .json();
        let files = files["data"].as_array().unwrap();
        assert_eq!(files.len(), FILES / 2 + 1);
        for file in files {
            let id = file["file_id"].as_str().unwrap();
            let body = s
                .call(
                    Method::GET,
                    &format!("/v1/chats/{c}/files/{id}/content"),
                    *user,
                )
                .await
                .body;
            let body = String::from_utf8(body).unwrap();
            assert!(
                body.starts_with(&format!("{}:", file["name"].as_str().unwrap())),
                "{body}"
            );
        }
        total += 2 + files.len();
    }
    assert!(total >= 1000, "{total} requests");
}

/// Writes a raw request on a new connection and reads the whole answer;
/// with `stop`, closes the sending side first, as a client that stops
/// sending does.
fn raw_exchange(addr: SocketAddr, request: &[u8], stop: bool) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    stream.write_all(request).unwrap();
    if stop {
        stream.shutdown(std::net::Shutdown::Write).unwrap();
    }
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

/// A chunked body of `chunks`, as HTTP/1.1 frames it.
fn chunked(chunks: &[Vec<u8>]) -> Vec<u8> {
    let mut body = Vec::new();
    for chunk in chunks {
        body.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        body.extend_from_slice(chunk);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"0\r\n\r\n");
    body
}

impl Server {
    /// Posts an upload as raw bytes on a new connection: the request line
    /// and the user's header, then `rest` (more headers, the blank line and
    /// the body) exactly as given; see [`raw_exchange`].
    async fn raw_upload(
        &self,
        user: Uuid,
        chat: &str,
        name: &str,
        rest: &[u8],
        stop: bool,
    ) -> String {
        let mut request = format!(
            "POST /v1/chats/{chat}/files?name={name} HTTP/1.1\r\nHost: t\r\nX-User-Id: {user}\r\n"
        )
        .into_bytes();
        request.extend_from_slice(rest);
        let addr = self.addr;
        tokio::task::spawn_blocking(move || raw_exchange(addr, &request, stop))
            .await
            .unwrap()
    }

    fn staged(&self) -> usize {
        staged(&self.data)
    }

    async fn files(&self, user: Uuid, chat: &str) -> Vec<Value> {
        self.call(Method::GET, &format!("/v1/chats/{chat}/files"), user)
            .await
            .json()["data"]
            .as_array()
            .unwrap()
            .clone()
    }

    async fn get_with(&self, path: &str, user: Uuid, headers: &[(&str, &str)]) -> Reply {
        let mut request = self
            .client
            .get(format!("{}{path}", self.base))
            .header("X-User-Id", user.to_string());
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.unwrap();
        let (status, headers) = (response.status(), response.headers().clone());
        Reply {
            status,
            headers,
            body: response.bytes().await.unwrap().to_vec(),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_body_that_ends_before_its_content_length_is_400_and_leaves_nothing() {
    let s = start(|b| b, 1 << 30).await;
    let (user, c) = s.user_with_chat().await;
    // Read whole before the call, and streamed to staging.
    for declared in [100, 300_000] {
        let rest = format!("Content-Length: {declared}\r\n\r\nonly ten b");
        let answer = s
            .raw_upload(user, &c, "short.bin", rest.as_bytes(), true)
            .await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{declared}: {answer}");
        assert!(answer.contains("invalid_request"), "{declared}: {answer}");
        assert!(s.files(user, &c).await.is_empty());
        assert_eq!(s.staged(), 0);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn chunked_bodies_stream_in_and_one_past_the_room_is_cut_off_with_413() {
    let s = start(|b| b, 1000).await;
    let (user, c) = s.user_with_chat().await;
    let upload = |name: &'static str, chunks: Vec<Vec<u8>>| {
        let mut rest = b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n".to_vec();
        rest.extend(chunked(&chunks));
        let (s, c) = (&s, &c);
        async move { s.raw_upload(user, c, name, &rest, false).await }
    };
    let fits = upload("fits.bin", vec![vec![1; 300], vec![2; 300]]).await;
    assert!(fits.starts_with("HTTP/1.1 201"), "{fits}");
    assert!(fits.contains(r#""size_bytes":600"#), "{fits}");
    // 400 bytes are left: 401 is one too many, whatever the chunks.
    let over = upload("over.bin", vec![vec![3; 200]; 5]).await;
    assert!(over.starts_with("HTTP/1.1 413"), "{over}");
    assert!(over.contains("workspace_quota_exceeded"), "{over}");
    // A small body with its length is read whole; the call refuses it.
    let mut declared = b"Content-Length: 401\r\nConnection: close\r\n\r\n".to_vec();
    declared.extend([5; 401]);
    let over = s.raw_upload(user, &c, "over.bin", &declared, false).await;
    assert!(over.starts_with("HTTP/1.1 413"), "{over}");
    assert!(over.contains("workspace_quota_exceeded"), "{over}");
    let exact = upload("exact.bin", vec![vec![4; 399], vec![4; 1]]).await;
    assert!(exact.starts_with("HTTP/1.1 201"), "{exact}");
    assert_eq!(s.staged(), 0);
    let names: Vec<Value> = s
        .files(user, &c)
        .await
        .iter()
        .map(|f| f["name"].clone())
        .collect();
    assert_eq!(names, ["fits.bin", "exact.bin"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn downloads_stream_ranges_etags_and_their_length() {
    let s = start(|b| b, 1 << 30).await;
    let (user, c) = s.user_with_chat().await;
    // Small content is sent in one piece, larger content streamed from its
    // file: both answer the same way.
    for n in [1000usize, 300_000] {
        let bytes: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
        let file = s
            .upload(
                user,
                &c,
                &format!("data-{n}.bin"),
                "application/octet-stream",
                &bytes,
            )
            .await
            .json();
        let path = format!(
            "/v1/chats/{c}/files/{}/content",
            file["file_id"].as_str().unwrap()
        );
        let etag = format!("\"{}\"", file["sha256"].as_str().unwrap());

        let whole = s.get_with(&path, user, &[]).await;
        assert_eq!(whole.status, StatusCode::OK);
        assert_eq!(whole.headers["content-length"], n.to_string().as_str());
        assert_eq!(whole.headers["accept-ranges"], "bytes");
        assert_eq!(whole.headers["etag"], etag.as_str());
        assert!(whole.body == bytes, "{n} bytes come back as they went");

        let head = s.get_with(&path, user, &[("Range", "bytes=0-9")]).await;
        assert_eq!(head.status, StatusCode::PARTIAL_CONTENT);
        assert_eq!(
            head.headers["content-range"],
            format!("bytes 0-9/{n}").as_str()
        );
        assert_eq!(head.headers["content-length"], "10");
        assert_eq!(head.body, bytes[..10]);
        let middle = s.get_with(&path, user, &[("Range", "bytes=7-")]).await;
        assert_eq!(
            middle.headers["content-range"],
            format!("bytes 7-{}/{n}", n - 1).as_str()
        );
        assert!(middle.body == bytes[7..], "bytes 7- of {n}");
        let tail = s.get_with(&path, user, &[("Range", "bytes=-5")]).await;
        assert_eq!(
            tail.headers["content-range"],
            format!("bytes {}-{}/{n}", n - 5, n - 1).as_str()
        );
        assert_eq!(tail.body, bytes[n - 5..]);
        let outside = s
            .get_with(&path, user, &[("Range", &format!("bytes={n}-"))])
            .await;
        assert_eq!(outside.status, StatusCode::RANGE_NOT_SATISFIABLE);
        assert_eq!(
            outside.headers["content-range"],
            format!("bytes */{n}").as_str()
        );
        let cached = s.get_with(&path, user, &[("If-None-Match", &etag)]).await;
        assert_eq!(cached.status, StatusCode::NOT_MODIFIED);
        assert!(cached.body.is_empty());
        let stale = s
            .get_with(&path, user, &[("If-None-Match", "\"other\"")])
            .await;
        assert_eq!(stale.status, StatusCode::OK);
    }

    // The history's tail, as an agent loading context asks for it.
    let history = format!("/v1/chats/{c}/history");
    let lines: String = (0..100).map(|i| format!("line {i:02}\n")).collect();
    s.send(
        Method::PUT,
        &history,
        Some(&user.to_string()),
        Some(("text/markdown", lines.clone().into_bytes())),
    )
    .await;
    let last = s.get_with(&history, user, &[("Range", "bytes=-16")]).await;
    assert_eq!(last.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(last.body, b"line 98\nline 99\n");
    assert_eq!(
        last.headers["content-range"],
        format!(
            "bytes {}-{}/{}",
            lines.len() - 16,
            lines.len() - 1,
            lines.len()
        )
        .as_str()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bytes_past_the_content_length_are_not_the_body_but_a_malformed_next_request() {
    let s = start(|b| b, 1 << 30).await;
    let (user, c) = s.user_with_chat().await;
    let answer = s
        .raw_upload(
            user,
            &c,
            "exact.txt",
            b"Content-Length: 5\r\n\r\nhelloTHIS IS NOT HTTP\r\n\r\n",
            false,
        )
        .await;
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
    assert!(answer.contains(r#""size_bytes":5"#), "{answer}");
    assert!(
        answer.contains("HTTP/1.1 400"),
        "the rest is a bad request: {answer}"
    );
    let files = s.files(user, &c).await;
    assert_eq!(files.len(), 1);
    let id = files[0]["file_id"].as_str().unwrap();
    let content = s
        .call(
            Method::GET,
            &format!("/v1/chats/{c}/files/{id}/content"),
            user,
        )
        .await;
    assert_eq!(content.body, b"hello");
    assert_eq!(s.staged(), 0);
}

/// How many files the data directory's staging area holds.
fn staged(data: &std::path::Path) -> usize {
    std::fs::read_dir(data.join("staging")).unwrap().count()
}

/// One response read off a raw connection: its head and exactly the
/// `Content-Length` bytes of body that follow; the rest is left.
fn next_response(raw: &[u8]) -> (String, Vec<u8>, &[u8]) {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head")
        + 4;
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let length: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length: ")
                .map(str::to_owned)
        })
        .expect("a Content-Length")
        .trim()
        .parse()
        .unwrap();
    (head, raw[end..end + length].to_vec(), &raw[end + length..])
}

#[tokio::test(flavor = "multi_thread")]
async fn a_file_a_sandbox_rewrote_into_a_fake_response_is_one_body_not_two_responses() {
    let s = start(|b| b, 1 << 30).await;
    let (user, c) = s.user_with_chat().await;
    let file = s
        .upload(user, &c, "a.txt", "text/plain", b"hello")
        .await
        .json();
    let id = file["file_id"].as_str().unwrap().to_owned();
    let planted = b"helloHTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nEVIL".to_vec();
    let chat_dir = s
        .data
        .join("workspaces")
        .join(file_workspace(&s, user).await)
        .join("chats")
        .join(&c);
    std::fs::write(chat_dir.join("a.txt"), &planted).unwrap();
    let request = format!(
        "GET /v1/chats/{c}/files/{id}/content HTTP/1.1\r\nHost: x\r\nX-User-Id: {user}\r\n\r\n\
         GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    );
    let addr = s.addr;
    let raw = tokio::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        stream.write_all(request.as_bytes()).unwrap();
        let mut raw = Vec::new();
        let _ = stream.read_to_end(&mut raw);
        raw
    })
    .await
    .unwrap();
    let (head, body, rest) = next_response(&raw);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    // The length and the bytes come from the one open file: the fake
    // response is part of this body, not an answer to the next request.
    assert_eq!(body, planted);
    assert!(!head.to_ascii_lowercase().contains("etag"), "{head}");
    let lower = head.to_ascii_lowercase();
    assert!(lower.contains("x-content-type-options: nosniff"), "{head}");
    assert!(
        lower.contains("content-disposition: attachment; filename*=utf-8''a.txt"),
        "{head}"
    );
    let (next, health, rest) = next_response(rest);
    assert!(next.starts_with("HTTP/1.1 200"), "{next}");
    assert_ne!(health, b"EVIL");
    assert!(rest.is_empty());
}

/// The workspace id of `user`, as the API shows it.
async fn file_workspace(s: &Server, user: Uuid) -> String {
    let workspace = s.call(Method::GET, "/v1/workspace", user).await.json();
    workspace["workspace_id"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_repeated_user_header_is_400() {
    let s = start(|b| b, 1 << 30).await;
    let (user, _) = s.user_with_chat().await;
    let answer = raw_exchange(
        s.addr,
        format!(
            "GET /v1/chats HTTP/1.1\r\nHost: x\r\nX-User-Id: {user}\r\nX-User-Id: {}\r\nConnection: close\r\n\r\n",
            Uuid::now_v7()
        )
        .as_bytes(),
        false,
    );
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains(r#""error":"invalid_id""#), "{answer}");
}

#[tokio::test(flavor = "multi_thread")]
async fn headers_that_never_end_close_the_connection_and_a_stalled_body_is_408() {
    let s = start_serving(
        |b| b.build().unwrap(),
        1 << 30,
        |config| {
            config.header_timeout = Duration::from_secs(1);
            config.body_timeout = Duration::from_secs(1);
        },
    )
    .await;
    let (user, c) = s.user_with_chat().await;
    let addr = s.addr;
    // Half a request head, then nothing: the server hangs up.
    let answer = tokio::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            .unwrap();
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).map(|_| answer)
    })
    .await
    .unwrap();
    let answer = answer.expect("closed by the server, not by the read timeout");
    assert!(!String::from_utf8_lossy(&answer).contains("200 OK"));
    // A body that stops half way: 408, and nothing is kept.
    let head = format!(
        "POST /v1/chats/{c}/files?name=stalled HTTP/1.1\r\nHost: x\r\nX-User-Id: {user}\r\n\
         Content-Length: 10\r\n\r\nabc"
    );
    let answer = tokio::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        stream.write_all(head.as_bytes()).unwrap();
        let mut answer = vec![0; 4096];
        let n = stream.read(&mut answer).unwrap();
        String::from_utf8_lossy(&answer[..n]).into_owned()
    })
    .await
    .unwrap();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains(r#""error":"request_timeout""#), "{answer}");
    assert!(s.files(user, &c).await.is_empty());
    assert_eq!(s.staged(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn past_the_connection_limit_a_client_waits_for_a_connection_to_close() {
    let s = start_serving(
        |b| b.build().unwrap(),
        1 << 30,
        |config| config.max_connections = 1,
    )
    .await;
    let addr = s.addr;
    let (first_open, second) = tokio::task::spawn_blocking(move || {
        let ask = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
        let mut first = TcpStream::connect(addr).unwrap();
        first
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        first.write_all(ask).unwrap();
        let mut answer = vec![0; 4096];
        assert!(first.read(&mut answer).unwrap() > 0);
        // The first connection stays open: the second is not served.
        let mut second = TcpStream::connect(addr).unwrap();
        second.write_all(ask).unwrap();
        second
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let waiting = second.read(&mut answer).is_err();
        drop(first);
        second
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        let n = second.read(&mut answer).unwrap();
        (waiting, String::from_utf8_lossy(&answer[..n]).into_owned())
    })
    .await
    .unwrap();
    assert!(
        first_open,
        "the second connection was served beside the first"
    );
    assert!(second.starts_with("HTTP/1.1 200"), "{second}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_body_is_read_in_a_request_slot_so_slow_bodies_cannot_queue_past_the_limit() {
    let s = start_serving(
        |b| b.build().unwrap(),
        1 << 30,
        |config| config.max_concurrent = 1,
    )
    .await;
    let (user, c) = s.user_with_chat().await;
    let (addr, data) = (s.addr, s.data.clone());
    let (waiting, uploaded, listed) = tokio::task::spawn_blocking(move || {
        // An upload that sends its headers and 3 of its bytes, then waits;
        // large enough to be streamed to staging as it arrives.
        let length = 300_000;
        let slow = stalled_upload(addr, user, &c, "slow", length);
        // The upload holds the one slot once its body is being staged.
        while staged(&data) == 0 {
            std::thread::sleep(Duration::from_millis(10));
        }
        let mut list = TcpStream::connect(addr).unwrap();
        list.write_all(
            format!("GET /v1/chats HTTP/1.1\r\nHost: x\r\nX-User-Id: {user}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .unwrap();
        list.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
        let mut answer = vec![0; 4096];
        let waiting = list.read(&mut answer).is_err();
        // The body ends: the upload finishes and the list gets its slot.
        let uploaded = finish_upload(slow, length);
        list.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let mut listed = String::new();
        list.read_to_string(&mut listed).unwrap();
        (waiting, uploaded, listed)
    })
    .await
    .unwrap();
    assert!(
        waiting,
        "the list ran while an upload's body held the only slot"
    );
    assert!(uploaded.starts_with("HTTP/1.1 201"), "{uploaded}");
    assert!(listed.starts_with("HTTP/1.1 200"), "{listed}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_large_upload_beside_another_users_open_request_arrives_whole() {
    let s = start_serving(
        |b| b.build().unwrap(),
        1 << 30,
        |config| config.max_upload_bytes = 16 << 20,
    )
    .await;
    let (alice, alices_chat) = s.user_with_chat().await;
    let (bob, bobs_chat) = s.user_with_chat().await;
    let (addr, data) = (s.addr, s.data.clone());
    // Bob's upload sends its headers and 3 bytes, then waits: his request
    // runs for as long as Alice's body streams in.
    let bobs = tokio::task::spawn_blocking(move || {
        let bobs = stalled_upload(addr, bob, &bobs_chat, "slow", 300_000);
        while staged(&data) == 0 {
            std::thread::sleep(Duration::from_millis(10));
        }
        bobs
    })
    .await
    .unwrap();
    let content: Vec<u8> = (0..9 << 20).map(|i: u32| (i % 251) as u8).collect();
    let uploaded = s
        .upload(
            alice,
            &alices_chat,
            "big.bin",
            "application/octet-stream",
            &content,
        )
        .await;
    assert_eq!(uploaded.status, StatusCode::CREATED);
    let path = format!(
        "/v1/chats/{alices_chat}/files/{}/content",
        uploaded.json()["file_id"].as_str().unwrap()
    );
    let downloaded = s.get_with(&path, alice, &[]).await;
    assert_eq!(downloaded.status, StatusCode::OK);
    assert!(
        downloaded.body == content,
        "the upload did not arrive whole"
    );
    let finished = tokio::task::spawn_blocking(move || finish_upload(bobs, 300_000))
        .await
        .unwrap();
    assert!(finished.starts_with("HTTP/1.1 201"), "{finished}");
}

/// Sends an upload's headers and its first 3 bytes on a new connection,
/// and leaves the rest of its `length` bytes to the caller.
fn stalled_upload(
    addr: SocketAddr,
    user: Uuid,
    chat: &str,
    name: &str,
    length: usize,
) -> TcpStream {
    let mut stream = TcpStream::connect(addr).unwrap();
    for timeout in [TcpStream::set_read_timeout, TcpStream::set_write_timeout] {
        timeout(&stream, Some(Duration::from_secs(60))).unwrap();
    }
    let head = format!(
        "POST /v1/chats/{chat}/files?name={name} HTTP/1.1\r\nHost: x\r\nX-User-Id: {user}\r\n\
         Content-Length: {length}\r\nConnection: close\r\n\r\nabc"
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream
}

/// Sends the rest of a stalled upload's body and reads its answer.
fn finish_upload(mut stream: TcpStream, length: usize) -> String {
    if let Err(e) = stream.write_all(&vec![b'd'; length - 3]) {
        return format!("the body was not read: {e}");
    }
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer
}

#[tokio::test(flavor = "multi_thread")]
async fn one_users_burst_holds_its_share_of_the_slots_and_other_users_get_the_rest() {
    let s = start_serving(
        |b| b.build().unwrap(),
        1 << 30,
        |config| {
            config.max_concurrent = 2;
            config.max_concurrent_per_user = 1;
        },
    )
    .await;
    let (alice, alices_chat) = s.user_with_chat().await;
    let (bob, bobs_chat) = s.user_with_chat().await;
    let (addr, data) = (s.addr, s.data.clone());
    let answers = tokio::task::spawn_blocking(move || {
        let length = 300_000;
        // Alice's first upload holds her one turn and a slot once its body
        // is being staged; her second comes next and must wait for her turn,
        // not take the other slot.
        let first = stalled_upload(addr, alice, &alices_chat, "first", length);
        while staged(&data) == 0 {
            std::thread::sleep(Duration::from_millis(10));
        }
        let second = stalled_upload(addr, alice, &alices_chat, "second", length);
        std::thread::sleep(Duration::from_millis(200));
        // Bob's upload gets the other slot and finishes while both of
        // Alice's are open (60 s to answer: past that, it waited for her).
        let bobs = stalled_upload(addr, bob, &bobs_chat, "bobs", length);
        let bobs = finish_upload(bobs, length);
        // Then Alice's, one after the other.
        let first = finish_upload(first, length);
        let second = finish_upload(second, length);
        [bobs, first, second]
    })
    .await
    .unwrap();
    for answer in answers {
        assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_exports_hold_their_users_turns_and_other_users_are_served() {
    let s = start_serving(
        |b| b.build().unwrap(),
        1 << 30,
        |config| {
            config.max_upload_bytes = 16 << 20;
            config.max_concurrent = 4;
            config.max_concurrent_per_user = 2;
        },
    )
    .await;
    let (alice, alices_chat) = s.user_with_chat().await;
    // More than the socket buffers hold, so an export that nobody reads
    // stays in the middle of its archive.
    let content: Vec<u8> = (0..16 << 20).map(|i: u32| (i % 251) as u8).collect();
    let uploaded = s
        .upload(
            alice,
            &alices_chat,
            "big.bin",
            "application/octet-stream",
            &content,
        )
        .await;
    assert_eq!(uploaded.status, StatusCode::CREATED);
    let addr = s.addr;
    // Eight exports that read their first bytes, then nothing more.
    let (exports, answered) = tokio::task::spawn_blocking(move || {
        let exports: Vec<TcpStream> = (0..8)
            .map(|_| {
                let mut stream = TcpStream::connect(addr).unwrap();
                let request = format!(
                    "GET /v1/workspace/export HTTP/1.1\r\nHost: x\r\nX-User-Id: {alice}\r\n\r\n"
                );
                stream.write_all(request.as_bytes()).unwrap();
                stream
            })
            .collect();
        let mut answered = 0;
        for mut stream in &exports {
            stream
                .set_read_timeout(Some(Duration::from_millis(500)))
                .unwrap();
            let mut first = [0; 64];
            if stream.read(&mut first).is_ok_and(|n| n > 0) {
                answered += 1;
            }
        }
        (exports, answered)
    })
    .await
    .unwrap();
    // Alice's two turns are her two exports; the rest wait for them, on no thread.
    assert!(
        (1..=2).contains(&answered),
        "{answered} exports answered at once"
    );

    // Bob is served throughout, in full.
    let (bob, bobs_chat) = s.user_with_chat().await;
    for i in 0..20 {
        let appended = s
            .send(
                Method::POST,
                &format!("/v1/chats/{bobs_chat}/history"),
                Some(&bob.to_string()),
                Some(("text/markdown", format!("line {i}\n").into_bytes())),
            )
            .await;
        assert_eq!(appended.status, StatusCode::NO_CONTENT, "append {i}");
        let created = s.call(Method::POST, "/v1/chats", bob).await;
        assert_eq!(created.status, StatusCode::CREATED, "chat {i}");
    }

    // The clients go away: their exports end and give Alice's turns back.
    drop(exports);
    let listed = s.call(Method::GET, "/v1/chats", alice).await;
    assert_eq!(listed.status, StatusCode::OK);
}

/// The public API and the administration routes on their own addresses,
/// over one store.
#[tokio::test]
async fn a_workspace_quota_is_set_on_the_admin_address_only() {
    let tmp = tempfile::tempdir().unwrap();
    let store = ChatStore::builder()
        .data_dir(tmp.path().join("data"))
        .quota_bytes(10_000)
        .build()
        .unwrap();
    let public = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (public_base, admin_base) = (
        format!("http://{}", public.local_addr().unwrap()),
        format!("http://{}", admin.local_addr().unwrap()),
    );
    let config = ServerConfig::default();
    tokio::spawn(serve(
        public,
        store.clone(),
        config.clone(),
        std::future::pending(),
    ));
    tokio::spawn(chatstore_http::serve_admin(
        admin,
        store,
        config,
        std::future::pending(),
    ));
    let client = Client::new();
    let user = Uuid::now_v7();
    let as_user = |method: Method, path: &str| {
        client
            .request(method, format!("{public_base}{path}"))
            .header("X-User-Id", user.to_string())
    };
    let set_quota = |user: String, body: &'static str| {
        client
            .put(format!("{admin_base}/admin/v1/workspaces/{user}/quota"))
            .header("Content-Type", "application/json")
            .body(body)
            .send()
    };
    let json = |r: reqwest::Response| async move {
        let status = r.status();
        (
            status,
            serde_json::from_slice::<Value>(&r.bytes().await.unwrap()).unwrap(),
        )
    };

    let (status, body) = json(
        set_quota(user.to_string(), r#"{"quota_bytes": 3000}"#)
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::NOT_FOUND, Some("workspace_not_found"))
    );
    as_user(Method::PUT, "/v1/workspace").send().await.unwrap();
    let (status, usage) = json(
        set_quota(user.to_string(), r#"{"quota_bytes": 3000}"#)
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{usage}");
    assert_eq!(usage["quota_bytes"], 3000);
    let (_, usage) = json(
        as_user(Method::GET, "/v1/workspace/usage")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(usage["quota_bytes"], 3000, "the public API sees it");

    // Not on the public address, whatever the method.
    let public_try = client
        .put(format!("{public_base}/admin/v1/workspaces/{user}/quota"))
        .body(r#"{"quota_bytes": 1}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(public_try.status(), StatusCode::NOT_FOUND);

    // Bad input is a clear 400 and changes nothing.
    for (who, body) in [
        (user.to_string(), r#"{"quota_bytes": -1}"#),
        (user.to_string(), r#"{"bytes": 5}"#),
        (user.to_string(), "not json"),
    ] {
        let (status, body) = json(set_quota(who, body).await.unwrap()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    }
    let (status, body) = json(
        set_quota("not-a-uuid".to_owned(), r#"{"quota_bytes": 5}"#)
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_id")),
        "as a bad id anywhere else"
    );
    let (_, usage) = json(
        as_user(Method::GET, "/v1/workspace/usage")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(usage["quota_bytes"], 3000);

    let described = json(
        client
            .get(format!("{admin_base}/openapi.json"))
            .send()
            .await
            .unwrap(),
    )
    .await
    .1;
    assert!(described["paths"]["/admin/v1/workspaces/{user_id}/quota"]["put"].is_object());
    assert!(
        described["paths"]["/v1/chats"].is_null(),
        "only its own routes"
    );

    let (status, usage) = json(
        set_quota(user.to_string(), r#"{"quota_bytes": null}"#)
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, &usage["quota_bytes"]),
        (StatusCode::OK, &Value::from(10_000))
    );
}

#[tokio::test]
async fn lists_come_in_pages_and_bad_pages_are_typed_errors() {
    let s = start(|b| b, 1 << 30).await;
    let (user, first) = s.user_with_chat().await;
    let mut ids = vec![first];
    for _ in 0..4 {
        let chat = s.call(Method::POST, "/v1/chats", user).await.json();
        ids.push(chat["chat_id"].as_str().unwrap().to_owned());
    }
    let page = s.call(Method::GET, "/v1/chats?limit=2", user).await.json();
    let got: Vec<&str> = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["chat_id"].as_str().unwrap())
        .collect();
    assert_eq!(got, ids[..2]);
    assert_eq!(
        (&page["has_more"], &page["last_id"]),
        (&Value::Bool(true), &Value::from(ids[1].clone()))
    );
    let rest = s
        .call(
            Method::GET,
            &format!("/v1/chats?limit=100&after={}", ids[1]),
            user,
        )
        .await
        .json();
    assert_eq!(rest["data"].as_array().unwrap().len(), 3);
    assert_eq!(rest["has_more"], false);

    let (_, bobs_chat) = s.user_with_chat().await;
    for (query, status, code) in [
        ("limit=0", StatusCode::UNPROCESSABLE_ENTITY, "invalid_limit"),
        (
            "limit=1001",
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_limit",
        ),
        ("limit=many", StatusCode::BAD_REQUEST, "invalid_request"),
        ("after=nope", StatusCode::UNPROCESSABLE_ENTITY, "invalid_id"),
        (
            &format!("after={bobs_chat}") as &str,
            StatusCode::NOT_FOUND,
            "after_not_found",
        ),
    ] {
        let r = s
            .call(Method::GET, &format!("/v1/chats?{query}"), user)
            .await;
        assert_eq!((r.status, r.code()), (status, code.to_owned()), "{query}");
    }
    let files = s
        .call(
            Method::GET,
            &format!("/v1/chats/{}/files?limit=1", ids[0]),
            user,
        )
        .await
        .json();
    assert_eq!(
        (files["data"].as_array().unwrap().len(), &files["has_more"]),
        (0, &Value::Bool(false))
    );
    assert_eq!(files["last_id"], Value::Null);
}

#[tokio::test]
async fn a_workspace_exports_as_a_tar_archive_that_imports_elsewhere() {
    let s = start(|b| b, 1 << 30).await;
    let (user, chat) = s.user_with_chat().await;
    let bytes: Vec<u8> = (0..600_000u32).map(|i| (i % 253) as u8).collect();
    assert_eq!(
        s.upload(user, &chat, "big.bin", "application/octet-stream", &bytes)
            .await
            .status,
        StatusCode::CREATED
    );
    let export = s.call(Method::GET, "/v1/workspace/export", user).await;
    assert_eq!(export.status, StatusCode::OK);
    assert_eq!(export.headers["content-type"], "application/x-tar");

    let elsewhere = tempfile::tempdir().unwrap();
    let store = ChatStore::builder()
        .data_dir(elsewhere.path())
        .build()
        .unwrap();
    let summary = store.import_workspace(user, &export.body[..]).unwrap();
    assert_eq!((summary.chats, summary.files), (1, 1));
    let chats = store.list_chats(user).unwrap();
    let file = &store.list_attachments(user, chats[0].chat_id).unwrap()[0];
    let (_, content) = store
        .read_attachment(user, chats[0].chat_id, file.file_id)
        .unwrap();
    assert_eq!(content.into_bytes().unwrap(), bytes);

    let nobody = s
        .call(Method::GET, "/v1/workspace/export", Uuid::now_v7())
        .await;
    assert_eq!(
        (nobody.status, nobody.code()),
        (StatusCode::NOT_FOUND, "workspace_not_found".to_owned())
    );
}
