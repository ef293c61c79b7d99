//! The HTTP API (`chatstore serve`): the sixteen use cases over JSON.
//!
//! The trusted caller names the user in the `X-User-Id` header. Each
//! request runs its use case on a blocking thread in a fresh, limited guest
//! instance; at most `max_concurrent` run at once. Errors are
//! `{"error": "<code>", "message": …, "id": …}` with a status per code.

use crate::{ChatStore, Error, parse_id};
use axum::body::{Body, Bytes};
use axum::extract::{MatchedPath, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use serde::Serialize;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::Semaphore;
use uuid::Uuid;

/// The header that names the user.
pub const USER_HEADER: &str = "x-user-id";

/// How the server runs.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// The largest upload accepted, in bytes.
    pub max_upload_bytes: u64,
    /// The workspace quota the store enforces (for refusing oversized uploads early).
    pub quota_bytes: u64,
    /// The most use cases running at once.
    pub max_concurrent: usize,
}

struct App {
    store: ChatStore,
    config: ServerConfig,
    running: Semaphore,
}

/// An error response.
struct Failure(StatusCode, serde_json::Value);

impl Failure {
    fn status_of(e: &Error) -> StatusCode {
        match e {
            Error::WorkspaceNotFound(_) | Error::ChatNotFound(_) | Error::ChatFileNotFound(_) => {
                StatusCode::NOT_FOUND
            }
            Error::ChatHasActiveSandbox(_) => StatusCode::CONFLICT,
            Error::WorkspaceQuotaExceeded(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Error::InvalidAttachmentName(_)
            | Error::ReservedAttachmentName(_)
            | Error::InvalidId(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Error::StorageUnavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn plain(status: StatusCode, code: &str, message: impl Into<String>) -> Failure {
        Failure(
            status,
            serde_json::json!({ "error": code, "message": message.into(), "id": null }),
        )
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        if let Error::StorageUnavailable { port, message } = &e {
            tracing::warn!(port, message, "storage unavailable");
        }
        Failure(Self::status_of(&e), e.to_json())
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        (self.0, Json(self.1)).into_response()
    }
}

type Reply = Result<Response, Failure>;

/// The user from `X-User-Id`; missing or malformed is 400 `invalid_id`.
fn user(headers: &HeaderMap) -> Result<Uuid, Failure> {
    let value = headers
        .get(USER_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    parse_id(value).map_err(|e| Failure(StatusCode::BAD_REQUEST, e.to_json()))
}

fn id(s: &str) -> Result<Uuid, Failure> {
    Ok(parse_id(s)?)
}

impl App {
    /// Runs a use case on a blocking thread, at most `max_concurrent` at once.
    async fn run<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&ChatStore) -> Result<T, Error> + Send + 'static,
    ) -> Result<T, Failure> {
        let _permit = self.running.acquire().await.map_err(|_| {
            Failure::plain(
                StatusCode::SERVICE_UNAVAILABLE,
                "storage_unavailable",
                "shutting down",
            )
        })?;
        let store = self.store.clone();
        match tokio::task::spawn_blocking(move || f(&store)).await {
            Ok(result) => Ok(result?),
            Err(e) => {
                tracing::error!(error = %e, "a request's worker failed");
                Err(Failure::plain(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "storage_unavailable",
                    "the request's worker failed",
                ))
            }
        }
    }
}

fn json(status: StatusCode, value: &impl Serialize) -> Response {
    (status, Json(value)).into_response()
}

fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

/// The routes, ready to serve.
pub fn router(store: ChatStore, config: ServerConfig) -> Router {
    let app = Arc::new(App {
        running: Semaphore::new(config.max_concurrent.max(1)),
        store,
        config,
    });
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/openapi.json", get(|| async { Json(openapi()) }))
        .route("/v1/workspace", put(ensure_workspace).get(get_workspace))
        .route("/v1/workspace/usage", get(get_usage))
        .route("/v1/chats", get(list_chats).post(create_chat))
        .route("/v1/chats/{chat_id}", get(get_chat).delete(delete_chat))
        .route(
            "/v1/chats/{chat_id}/history",
            get(read_history).put(write_history).post(append_history),
        )
        .route(
            "/v1/chats/{chat_id}/files",
            get(list_files).delete(clear_files),
        )
        .route(
            "/v1/chats/{chat_id}/files/{file}",
            put(upload_file).get(get_file).delete(delete_file),
        )
        .route("/v1/chats/{chat_id}/files/{file}/content", get(read_file))
        .route(
            "/v1/chats/{chat_id}/sandbox",
            put(start_sandbox).delete(stop_sandbox),
        )
        .fallback(|| async { Failure::plain(StatusCode::NOT_FOUND, "not_found", "no such route") })
        .method_not_allowed_fallback(|| async {
            Failure::plain(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "the route does not take this method",
            )
        })
        .route_layer(middleware::from_fn(stamp_route))
        .layer(middleware::from_fn(log_request))
        .with_state(app)
}

type AppState = State<Arc<App>>;

async fn ensure_workspace(State(app): AppState, headers: HeaderMap) -> Reply {
    let user = user(&headers)?;
    Ok(json(
        StatusCode::OK,
        &app.run(move |s| s.ensure_workspace(user)).await?,
    ))
}

async fn get_workspace(State(app): AppState, headers: HeaderMap) -> Reply {
    let user = user(&headers)?;
    Ok(json(
        StatusCode::OK,
        &app.run(move |s| s.get_workspace(user)).await?,
    ))
}

async fn get_usage(State(app): AppState, headers: HeaderMap) -> Reply {
    let user = user(&headers)?;
    Ok(json(
        StatusCode::OK,
        &app.run(move |s| s.get_usage(user)).await?,
    ))
}

async fn create_chat(State(app): AppState, headers: HeaderMap) -> Reply {
    let user = user(&headers)?;
    Ok(json(
        StatusCode::CREATED,
        &app.run(move |s| s.create_chat(user)).await?,
    ))
}

async fn list_chats(State(app): AppState, headers: HeaderMap) -> Reply {
    let user = user(&headers)?;
    Ok(json(
        StatusCode::OK,
        &app.run(move |s| s.list_chats(user)).await?,
    ))
}

async fn get_chat(State(app): AppState, headers: HeaderMap, Path(chat): Path<String>) -> Reply {
    let (user, chat) = (user(&headers)?, id(&chat)?);
    Ok(json(
        StatusCode::OK,
        &app.run(move |s| s.get_chat(user, chat)).await?,
    ))
}

async fn delete_chat(State(app): AppState, headers: HeaderMap, Path(chat): Path<String>) -> Reply {
    let (user, chat) = (user(&headers)?, id(&chat)?);
    app.run(move |s| s.delete_chat(user, chat)).await?;
    Ok(no_content())
}

async fn read_history(State(app): AppState, headers: HeaderMap, Path(chat): Path<String>) -> Reply {
    let (user, chat) = (user(&headers)?, id(&chat)?);
    let history = app.run(move |s| s.read_history(user, chat)).await?;
    Ok((
        [(header::CONTENT_TYPE, "text/markdown; charset=utf-8")],
        history,
    )
        .into_response())
}

/// The request body as UTF-8 text, within the upload limit.
async fn text_body(app: &App, body: Body) -> Result<String, Failure> {
    let bytes = bounded_body(app, body).await?;
    String::from_utf8(bytes.to_vec()).map_err(|_| {
        Failure::plain(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_history",
            "the history must be UTF-8 text",
        )
    })
}

/// The request body, refused with 413 once it passes `max_upload_bytes`.
async fn bounded_body(app: &App, body: Body) -> Result<Bytes, Failure> {
    let limit = usize::try_from(app.config.max_upload_bytes).unwrap_or(usize::MAX);
    axum::body::to_bytes(body, limit).await.map_err(|_| {
        Failure::plain(
            StatusCode::PAYLOAD_TOO_LARGE,
            "upload_too_large",
            format!(
                "the body is larger than {} bytes",
                app.config.max_upload_bytes
            ),
        )
    })
}

async fn write_history(
    State(app): AppState,
    headers: HeaderMap,
    Path(chat): Path<String>,
    body: Body,
) -> Reply {
    let (user, chat) = (user(&headers)?, id(&chat)?);
    let content = text_body(&app, body).await?;
    app.run(move |s| s.write_history(user, chat, &content))
        .await?;
    Ok(no_content())
}

async fn append_history(
    State(app): AppState,
    headers: HeaderMap,
    Path(chat): Path<String>,
    body: Body,
) -> Reply {
    let (user, chat) = (user(&headers)?, id(&chat)?);
    let content = text_body(&app, body).await?;
    app.run(move |s| s.append_history(user, chat, &content))
        .await?;
    Ok(no_content())
}

async fn upload_file(
    State(app): AppState,
    headers: HeaderMap,
    Path((chat, name)): Path<(String, String)>,
    body: Body,
) -> Reply {
    let (user, chat) = (user(&headers)?, id(&chat)?);
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    // Refused before a byte of the body is read.
    if let Some(length) = declared {
        if length > app.config.max_upload_bytes {
            return Err(Failure::plain(
                StatusCode::PAYLOAD_TOO_LARGE,
                "upload_too_large",
                format!(
                    "the body is larger than {} bytes",
                    app.config.max_upload_bytes
                ),
            ));
        }
        if length > app.config.quota_bytes {
            let workspace = app.run(move |s| s.get_workspace(user)).await?;
            return Err(Error::WorkspaceQuotaExceeded(workspace.workspace_id).into());
        }
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let content = bounded_body(&app, body).await?;
    let file = app
        .run(move |s| s.upload_attachment(user, chat, &name, content_type.as_deref(), &content))
        .await?;
    Ok(json(StatusCode::CREATED, &file))
}

async fn list_files(State(app): AppState, headers: HeaderMap, Path(chat): Path<String>) -> Reply {
    let (user, chat) = (user(&headers)?, id(&chat)?);
    Ok(json(
        StatusCode::OK,
        &app.run(move |s| s.list_attachments(user, chat)).await?,
    ))
}

async fn get_file(
    State(app): AppState,
    headers: HeaderMap,
    Path((chat, file)): Path<(String, String)>,
) -> Reply {
    let (user, chat, file) = (user(&headers)?, id(&chat)?, id(&file)?);
    Ok(json(
        StatusCode::OK,
        &app.run(move |s| s.get_attachment(user, chat, file)).await?,
    ))
}

async fn read_file(
    State(app): AppState,
    headers: HeaderMap,
    Path((chat, file)): Path<(String, String)>,
) -> Reply {
    let (user, chat, file) = (user(&headers)?, id(&chat)?, id(&file)?);
    // A file id names one version of the bytes: a replacement gets a new id.
    let etag = format!("\"{file}\"");
    let (meta, bytes) = app
        .run(move |s| {
            Ok((
                s.get_attachment(user, chat, file)?,
                s.read_attachment(user, chat, file)?,
            ))
        })
        .await?;
    let content_type = meta
        .content_type
        .as_deref()
        .unwrap_or("application/octet-stream");
    let mut response = Response::new(Body::from(bytes));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(content_type)
            .unwrap_or(HeaderValue::from_static("application/octet-stream")),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(meta.size_bytes));
    if let Ok(etag) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, etag);
    }
    Ok(response)
}

async fn delete_file(
    State(app): AppState,
    headers: HeaderMap,
    Path((chat, file)): Path<(String, String)>,
) -> Reply {
    let (user, chat, file) = (user(&headers)?, id(&chat)?, id(&file)?);
    app.run(move |s| s.delete_attachment(user, chat, file))
        .await?;
    Ok(no_content())
}

async fn clear_files(State(app): AppState, headers: HeaderMap, Path(chat): Path<String>) -> Reply {
    let (user, chat) = (user(&headers)?, id(&chat)?);
    app.run(move |s| s.clear_attachments(user, chat)).await?;
    Ok(no_content())
}

async fn start_sandbox(
    State(app): AppState,
    headers: HeaderMap,
    Path(chat): Path<String>,
) -> Reply {
    let (user, chat) = (user(&headers)?, id(&chat)?);
    // The chat must be the caller's: the same lookup any use case makes.
    let session = app
        .run(move |s| {
            s.get_chat(user, chat)?;
            s.start_sandbox(chat)
        })
        .await?;
    Ok(json(StatusCode::OK, &session))
}

async fn stop_sandbox(State(app): AppState, headers: HeaderMap, Path(chat): Path<String>) -> Reply {
    let (user, chat) = (user(&headers)?, id(&chat)?);
    app.run(move |s| {
        s.get_chat(user, chat)?;
        s.end_sandbox(chat)
    })
    .await?;
    Ok(no_content())
}

/// Hands the matched route to [`log_request`], which runs before routing.
async fn stamp_route(request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().cloned();
    let mut response = next.run(request).await;
    if let Some(route) = route {
        response.extensions_mut().insert(route);
    }
    response
}

/// One log line per request: method, route, status, duration, user.
async fn log_request(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let user = request
        .headers()
        .get(USER_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.chars().take(36).collect::<String>())
        .unwrap_or_default();
    let response = next.run(request).await;
    let route = response
        .extensions()
        .get::<MatchedPath>()
        .map_or(path, |p| p.as_str().to_owned());
    tracing::info!(
        %method,
        route,
        status = response.status().as_u16(),
        duration_ms = %format_args!("{:.3}", started.elapsed().as_secs_f64() * 1000.0),
        user,
        "request"
    );
    response
}

/// The OpenAPI 3.1 description of every route.
pub fn openapi() -> serde_json::Value {
    use serde_json::json;
    let user = json!({ "name": "X-User-Id", "in": "header", "required": true, "schema": { "type": "string", "format": "uuid" } });
    let chat = json!({ "name": "chat_id", "in": "path", "required": true, "schema": { "type": "string", "format": "uuid" } });
    let file = json!({ "name": "file_id", "in": "path", "required": true, "schema": { "type": "string", "format": "uuid" } });
    let name =
        json!({ "name": "name", "in": "path", "required": true, "schema": { "type": "string" } });
    let error = json!({ "description": "error", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } });
    let ok = |schema: &str| json!({ "description": "ok", "content": { "application/json": { "schema": { "$ref": format!("#/components/schemas/{schema}") } } } });
    let list = |schema: &str| json!({ "description": "ok", "content": { "application/json": { "schema": { "type": "array", "items": { "$ref": format!("#/components/schemas/{schema}") } } } } });
    let none = json!({ "description": "done" });
    let op = |summary: &str,
              params: Vec<&serde_json::Value>,
              status: &str,
              response: serde_json::Value| {
        json!({
            "summary": summary,
            "parameters": params,
            "responses": { status: response, "400": error, "404": error, "409": error, "413": error, "422": error, "503": error }
        })
    };
    let text_body = json!({ "required": true, "content": { "text/markdown": { "schema": { "type": "string" } } } });
    let mut write_history = op(
        "Replace the chat's history",
        vec![&user, &chat],
        "204",
        none.clone(),
    );
    write_history["requestBody"] = text_body.clone();
    let mut append_history = op(
        "Append to the chat's history",
        vec![&user, &chat],
        "204",
        none.clone(),
    );
    append_history["requestBody"] = text_body;
    let mut upload = op(
        "Upload an attachment (replacing one of the same name)",
        vec![&user, &chat, &name],
        "201",
        ok("ChatFile"),
    );
    upload["requestBody"] = json!({ "required": true, "content": { "*/*": { "schema": { "type": "string", "format": "binary" } } } });
    let uuid = json!({ "type": "string", "format": "uuid" });
    let time = json!({ "type": "string", "format": "date-time" });
    json!({
        "openapi": "3.1.0",
        "info": { "title": "chatstore", "version": env!("CARGO_PKG_VERSION") },
        "paths": {
            "/healthz": { "get": { "summary": "Liveness", "responses": { "200": { "description": "ok" } } } },
            "/openapi.json": { "get": { "summary": "This document", "responses": { "200": { "description": "ok" } } } },
            "/v1/workspace": {
                "put": op("Ensure the user's workspace", vec![&user], "200", ok("Workspace")),
                "get": op("The user's workspace", vec![&user], "200", ok("Workspace")),
            },
            "/v1/workspace/usage": { "get": op("The workspace's usage and quota", vec![&user], "200", ok("WorkspaceUsage")) },
            "/v1/chats": {
                "post": op("Create a chat", vec![&user], "201", ok("Chat")),
                "get": op("List the user's chats", vec![&user], "200", list("Chat")),
            },
            "/v1/chats/{chat_id}": {
                "get": op("One chat", vec![&user, &chat], "200", ok("Chat")),
                "delete": op("Delete a chat, its files and directory", vec![&user, &chat], "204", none.clone()),
            },
            "/v1/chats/{chat_id}/history": {
                "get": op("The chat's history", vec![&user, &chat], "200",
                    json!({ "description": "ok", "content": { "text/markdown": { "schema": { "type": "string" } } } })),
                "put": write_history,
                "post": append_history,
            },
            "/v1/chats/{chat_id}/files": {
                "get": op("List the chat's attachments", vec![&user, &chat], "200", list("ChatFile")),
                "delete": op("Delete every attachment", vec![&user, &chat], "204", none.clone()),
            },
            "/v1/chats/{chat_id}/files/{name}": { "put": upload },
            "/v1/chats/{chat_id}/files/{file_id}": {
                "get": op("One attachment's metadata", vec![&user, &chat, &file], "200", ok("ChatFile")),
                "delete": op("Delete one attachment", vec![&user, &chat, &file], "204", none.clone()),
            },
            "/v1/chats/{chat_id}/files/{file_id}/content": {
                "get": op("One attachment's bytes, with its Content-Type and an ETag", vec![&user, &chat, &file], "200",
                    json!({ "description": "ok", "content": { "*/*": { "schema": { "type": "string", "format": "binary" } } } })),
            },
            "/v1/chats/{chat_id}/sandbox": {
                "put": op("Mark a sandbox session active on the chat", vec![&user, &chat], "200", ok("SandboxSession")),
                "delete": op("End the chat's sandbox session", vec![&user, &chat], "204", none),
            },
        },
        "components": { "schemas": {
            "Workspace": { "type": "object", "properties": { "workspace_id": uuid, "user_id": uuid, "created_at": time } },
            "WorkspaceUsage": { "type": "object", "properties": { "workspace_id": uuid, "used_bytes": { "type": "integer" }, "quota_bytes": { "type": "integer" } } },
            "Chat": { "type": "object", "properties": { "chat_id": uuid, "workspace_id": uuid, "created_at": time } },
            "ChatFile": { "type": "object", "properties": {
                "file_id": uuid, "chat_id": uuid, "name": { "type": "string" },
                "content_type": { "type": ["string", "null"] }, "size_bytes": { "type": "integer" }, "created_at": time } },
            "SandboxSession": { "type": "object", "properties": { "session_id": uuid, "chat_id": uuid } },
            "Error": { "type": "object", "properties": {
                "error": { "type": "string" }, "message": { "type": "string" }, "id": { "type": ["string", "null"] } } },
        } },
    })
}

/// Serves until `shutdown` resolves, then lets in-flight requests finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    store: ChatStore,
    config: ServerConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(store, config))
        .with_graceful_shutdown(shutdown)
        .await
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = interrupt => tracing::info!("SIGINT: finishing in-flight requests"),
        _ = terminate => tracing::info!("SIGTERM: finishing in-flight requests"),
    }
}
