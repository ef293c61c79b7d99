//! One handler per route; each handler's `#[utoipa::path]` is its entry in
//! the OpenAPI document, so the document describes what the code does.

use crate::USER_HEADER;
use crate::app::App;
use crate::body::{self, Limit, Served};
use crate::failure::{ErrorBody, Failure};
use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chatstore_host::{
    Chat, ChatFile, ChatStore, ContentKind, Error, Page, PageRequest, Replacing, SandboxEnd,
    SandboxStart, StagedContent, Workspace, WorkspaceUsage, parse_id,
};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use std::sync::Arc;
use utoipa::IntoParams;
use uuid::Uuid;

type AppState = State<Arc<App>>;
type Reply = Result<Response, Failure>;

/// The caller's user, from exactly one `X-User-Id` header; anything else is
/// 400 `invalid_id`.
pub(crate) struct User(Uuid);

impl<S: Send + Sync> FromRequestParts<S> for User {
    type Rejection = Failure;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Failure> {
        let mut values = parts.headers.get_all(USER_HEADER).iter();
        let value = match (values.next(), values.next()) {
            (Some(value), None) => value.to_str().unwrap_or_default(),
            (None, _) => "",
            (Some(_), Some(_)) => {
                return Err(Failure::plain(
                    StatusCode::BAD_REQUEST,
                    "invalid_id",
                    "give exactly one X-User-Id header",
                ));
            }
        };
        parse_id(value)
            .map(User)
            .map_err(|e| Failure::with_status(e, StatusCode::BAD_REQUEST))
    }
}

/// Path segments, refused with a JSON 400 rather than axum's text.
pub(crate) struct Segments<T>(T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Segments<T> {
    type Rejection = Failure;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Failure> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(value)| Segments(value))
            .map_err(|e| Failure::plain(StatusCode::BAD_REQUEST, "invalid_request", e.body_text()))
    }
}

/// A query string, refused with a JSON 400 rather than axum's text.
pub(crate) struct QueryOf<T>(T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for QueryOf<T> {
    type Rejection = Failure;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Failure> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(value)| QueryOf(value))
            .map_err(|e| Failure::plain(StatusCode::BAD_REQUEST, "invalid_request", e.body_text()))
    }
}

fn id(s: &str) -> Result<Uuid, Failure> {
    Ok(parse_id(s)?)
}

/// The caller and the chat its path names.
pub(crate) struct InChat {
    user: Uuid,
    chat: Uuid,
}

impl<S: Send + Sync> FromRequestParts<S> for InChat {
    type Rejection = Failure;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Failure> {
        let User(user) = User::from_request_parts(parts, state).await?;
        let Segments(chat) = Segments::<String>::from_request_parts(parts, state).await?;
        Ok(InChat {
            user,
            chat: id(&chat)?,
        })
    }
}

/// The caller, and the chat and file its path names.
pub(crate) struct InFile {
    user: Uuid,
    chat: Uuid,
    file: Uuid,
}

impl<S: Send + Sync> FromRequestParts<S> for InFile {
    type Rejection = Failure;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Failure> {
        let User(user) = User::from_request_parts(parts, state).await?;
        let Segments((chat, file)) =
            Segments::<(String, String)>::from_request_parts(parts, state).await?;
        Ok(InFile {
            user,
            chat: id(&chat)?,
            file: id(&file)?,
        })
    }
}

/// A JSON answer.
fn json(status: StatusCode, value: &impl serde::Serialize) -> Response {
    (status, Json(value)).into_response()
}

fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

/// The `X-User-Id` parameter every storage route takes.
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)] // Documents the header that `User` reads.
pub(crate) struct UserHeader {
    /// The user the request is for, named by the trusted caller.
    #[param(rename = "X-User-Id")]
    x_user_id: Uuid,
}

/// Liveness: answers while the server runs.
#[utoipa::path(get, path = "/healthz", tag = "server",
    responses((status = 200, description = "The server is up", body = String, content_type = "text/plain")))]
pub(crate) async fn healthz() -> &'static str {
    "ok"
}

/// This document: the OpenAPI 3.1 description of every route.
#[utoipa::path(get, path = "/openapi.json", tag = "server",
    responses((status = 200, description = "The OpenAPI document", body = Object, content_type = "application/json")))]
pub(crate) async fn openapi_json() -> Response {
    static DOCUMENT: std::sync::OnceLock<Bytes> = std::sync::OnceLock::new();
    let document = DOCUMENT
        .get_or_init(|| Bytes::from(serde_json::to_vec(&crate::openapi()).unwrap_or_default()));
    (
        [(header::CONTENT_TYPE, "application/json")],
        document.clone(),
    )
        .into_response()
}

/// The user's workspace, created on the first call.
#[utoipa::path(put, path = "/v1/workspace", tag = "workspace", params(UserHeader),
    responses((status = 200, description = "The workspace", body = Workspace)))]
pub(crate) async fn ensure_workspace(State(app): AppState, User(user): User) -> Reply {
    let workspace = app.run(user, move |s| s.ensure_workspace(user)).await?;
    Ok(json(StatusCode::OK, &workspace))
}

/// The user's workspace.
#[utoipa::path(get, path = "/v1/workspace", tag = "workspace", params(UserHeader),
    responses((status = 200, description = "The workspace", body = Workspace)))]
pub(crate) async fn get_workspace(State(app): AppState, User(user): User) -> Reply {
    let workspace = app.run(user, move |s| s.get_workspace(user)).await?;
    Ok(json(StatusCode::OK, &workspace))
}

/// The bytes the workspace stores and its quota.
#[utoipa::path(get, path = "/v1/workspace/usage", tag = "workspace", params(UserHeader),
    responses((status = 200, description = "Usage and quota", body = WorkspaceUsage)))]
pub(crate) async fn get_usage(State(app): AppState, User(user): User) -> Reply {
    let usage = app.run(user, move |s| s.get_usage(user)).await?;
    Ok(json(StatusCode::OK, &usage))
}

/// A new chat, with its directory and an empty `history.md`.
#[utoipa::path(post, path = "/v1/chats", tag = "chats", params(UserHeader),
    responses((status = 201, description = "The new chat", body = Chat)))]
pub(crate) async fn create_chat(State(app): AppState, User(user): User) -> Reply {
    let chat = app.run(user, move |s| s.create_chat(user)).await?;
    Ok(json(StatusCode::CREATED, &chat))
}

/// Which page of a list.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    /// How many items, 1 to 1000 (default 100); otherwise `invalid_limit`.
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u64>,
    /// The id of the item the page starts after (the previous page's
    /// `last_id`); one that is not in the list is `after_not_found`.
    #[param(format = Uuid)]
    after: Option<String>,
}

impl ListQuery {
    fn page(&self) -> Result<PageRequest, Failure> {
        let after = self.after.as_deref().map(id).transpose()?;
        Ok(PageRequest::new(self.limit, after)?)
    }
}

/// A page of the user's chats, oldest first.
#[utoipa::path(get, path = "/v1/chats", tag = "chats", params(UserHeader, ListQuery),
    responses((status = 200, description = "The chats, by (created_at, chat_id)", body = Page<Chat>)))]
pub(crate) async fn list_chats(
    State(app): AppState,
    User(user): User,
    QueryOf(query): QueryOf<ListQuery>,
) -> Reply {
    let page = query.page()?;
    let chats = app
        .run(user, move |s| s.list_chats_page(user, &page))
        .await?;
    Ok(json(StatusCode::OK, &chats))
}

/// One of the user's chats.
#[utoipa::path(get, path = "/v1/chats/{chat_id}", tag = "chats", params(UserHeader, ChatPath),
    responses((status = 200, description = "The chat", body = Chat)))]
pub(crate) async fn get_chat(State(app): AppState, InChat { user, chat }: InChat) -> Reply {
    let chat = app.run(user, move |s| s.get_chat(user, chat)).await?;
    Ok(json(StatusCode::OK, &chat))
}

/// Deletes a chat, its files and its directory; refused while a sandbox is active on it.
#[utoipa::path(delete, path = "/v1/chats/{chat_id}", tag = "chats", params(UserHeader, ChatPath),
    responses((status = 204, description = "Deleted")))]
pub(crate) async fn delete_chat(State(app): AppState, InChat { user, chat }: InChat) -> Reply {
    app.run(user, move |s| s.delete_chat(user, chat)).await?;
    Ok(no_content())
}

/// The chat's id in the path.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // Documents the segment that `Segments` reads.
pub(crate) struct ChatPath {
    /// The chat's id.
    chat_id: Uuid,
}

/// The chat's and the file's ids in the path.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // Documents the segments that `Segments` reads.
pub(crate) struct FilePath {
    /// The chat's id.
    chat_id: Uuid,
    /// The file's id.
    file_id: Uuid,
}

/// The chat's `history.md`, streamed; a `Range` (`bytes=-N` for its last N
/// bytes) gives part of it.
#[utoipa::path(get, path = "/v1/chats/{chat_id}/history", tag = "history", params(UserHeader, ChatPath, RangeHeader),
    responses(
        (status = 200, description = "The history", body = String, content_type = "text/markdown"),
        (status = 206, description = "The range asked for", body = String, content_type = "text/markdown",
            headers(("content-range" = String, description = "Which bytes of the history these are"))),
        (status = 416, description = "The range lies outside the history (`range_not_satisfiable`)", body = ErrorBody)))]
pub(crate) async fn read_history(
    State(app): AppState,
    InChat { user, chat }: InChat,
    headers: HeaderMap,
) -> Reply {
    app.run(user, move |s| {
        let served = Served {
            content: s.read_history(user, chat)?,
            content_type: HeaderValue::from_static("text/markdown; charset=utf-8"),
            etag: None,
            name: chatstore_host::HISTORY_FILE_NAME.to_owned(),
        };
        Ok(body::serve(served, &headers))
    })
    .await?
}

/// Replaces the chat's history with the body (UTF-8; empty clears it).
#[utoipa::path(put, path = "/v1/chats/{chat_id}/history", tag = "history", params(UserHeader, ChatPath),
    request_body(content = String, content_type = "text/markdown", description = "The new history (UTF-8; may be empty)"),
    responses((status = 204, description = "Replaced")))]
pub(crate) async fn write_history(
    State(app): AppState,
    InChat { user, chat }: InChat,
    headers: HeaderMap,
    request: Body,
) -> Reply {
    let room = move |s: &ChatStore| s.room(user, chat, Replacing::History);
    let write = move |s: &ChatStore, staged| s.write_staged_history(user, chat, staged);
    with_body(
        &app,
        user,
        ContentKind::Text,
        &headers,
        request,
        room,
        write,
    )
    .await?;
    Ok(no_content())
}

/// Appends the body (UTF-8) to the chat's history; costs the message, not
/// the history.
#[utoipa::path(post, path = "/v1/chats/{chat_id}/history", tag = "history", params(UserHeader, ChatPath),
    request_body(content = String, content_type = "text/markdown", description = "What to append (UTF-8)"),
    responses((status = 204, description = "Appended")))]
pub(crate) async fn append_history(
    State(app): AppState,
    InChat { user, chat }: InChat,
    headers: HeaderMap,
    request: Body,
) -> Reply {
    let room = move |s: &ChatStore| s.room(user, chat, Replacing::Nothing);
    let append = move |s: &ChatStore, staged| s.append_staged_history(user, chat, staged);
    with_body(
        &app,
        user,
        ContentKind::Text,
        &headers,
        request,
        room,
        append,
    )
    .await?;
    Ok(no_content())
}

/// A `Range` request header: one range of bytes.
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)] // Documents the header that `body::serve` reads.
pub(crate) struct RangeHeader {
    /// One range, `bytes=first-last`, `bytes=first-` or `bytes=-count`
    /// (the last `count` bytes); several ranges are served whole.
    #[param(rename = "Range")]
    range: Option<String>,
}

/// An `If-None-Match` request header.
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)] // Documents the header that `body::serve` reads.
pub(crate) struct IfNoneMatchHeader {
    /// `ETag`s the caller has: if the file's is among them, 304.
    #[param(rename = "If-None-Match")]
    if_none_match: Option<String>,
}

/// A page of the chat's attachments, oldest first.
#[utoipa::path(get, path = "/v1/chats/{chat_id}/files", tag = "files", params(UserHeader, ChatPath, ListQuery),
    responses((status = 200, description = "The attachments, by (created_at, file_id)", body = Page<ChatFile>)))]
pub(crate) async fn list_files(
    State(app): AppState,
    InChat { user, chat }: InChat,
    QueryOf(query): QueryOf<ListQuery>,
) -> Reply {
    let page = query.page()?;
    let files = app
        .run(user, move |s| s.list_attachments_page(user, chat, &page))
        .await?;
    Ok(json(StatusCode::OK, &files))
}

/// Where an upload goes.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct UploadQuery {
    /// The attachment's name: not empty, not `.` or `..`, no `/`, `\` or
    /// NUL, at most 255 bytes of UTF-8, not `history.md`. An existing
    /// attachment of that name is replaced.
    #[param(
        required = true,
        min_length = 1,
        max_length = 255,
        pattern = r"^(?!\.{1,2}$)(?!history\.md$)[^/\\\x00]+$"
    )]
    name: Option<String>,
}

/// Uploads an attachment, streamed to staging as it arrives; an existing one
/// of the same name is replaced by a new file id. The request's
/// `Content-Type` is stored as the file's. A body that would pass the quota
/// is cut off there with 413; one that ends early is 400; neither leaves anything.
#[utoipa::path(post, path = "/v1/chats/{chat_id}/files", tag = "files", params(UserHeader, ChatPath, UploadQuery),
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "The attachment's bytes, of any media type (may be empty)"),
    responses((status = 201, description = "The stored attachment", body = ChatFile,
        headers(("location" = String, description = "The attachment's URL")))))]
pub(crate) async fn upload_file(
    State(app): AppState,
    InChat { user, chat }: InChat,
    QueryOf(query): QueryOf<UploadQuery>,
    headers: HeaderMap,
    request: Body,
) -> Reply {
    // A missing name is the empty name, which the policy refuses.
    let name = query.name.unwrap_or_default();
    let for_room = name.clone();
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let room = move |s: &ChatStore| s.room(user, chat, Replacing::Attachment(&for_room));
    let upload = move |s: &ChatStore, staged| {
        s.upload_staged(user, chat, &name, content_type.as_deref(), staged)
    };
    let file = with_body(
        &app,
        user,
        ContentKind::Bytes,
        &headers,
        request,
        room,
        upload,
    )
    .await?;
    let mut response = json(StatusCode::CREATED, &file);
    let location = format!("/v1/chats/{}/files/{}", file.chat_id, file.file_id);
    if let Ok(location) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// Deletes every attachment of the chat, keeping its history; refused while
/// a sandbox is active on it.
#[utoipa::path(delete, path = "/v1/chats/{chat_id}/files", tag = "files", params(UserHeader, ChatPath),
    responses((status = 204, description = "Cleared")))]
pub(crate) async fn clear_files(State(app): AppState, InChat { user, chat }: InChat) -> Reply {
    app.run(user, move |s| s.clear_attachments(user, chat))
        .await?;
    Ok(no_content())
}

/// One attachment's metadata.
#[utoipa::path(get, path = "/v1/chats/{chat_id}/files/{file_id}", tag = "files", params(UserHeader, FilePath),
    responses((status = 200, description = "The attachment", body = ChatFile)))]
pub(crate) async fn get_file(State(app): AppState, InFile { user, chat, file }: InFile) -> Reply {
    let file = app
        .run(user, move |s| s.get_attachment(user, chat, file))
        .await?;
    Ok(json(StatusCode::OK, &file))
}

/// Deletes one attachment.
#[utoipa::path(delete, path = "/v1/chats/{chat_id}/files/{file_id}", tag = "files", params(UserHeader, FilePath),
    responses((status = 204, description = "Deleted")))]
pub(crate) async fn delete_file(
    State(app): AppState,
    InFile { user, chat, file }: InFile,
) -> Reply {
    app.run(user, move |s| s.delete_attachment(user, chat, file))
        .await?;
    Ok(no_content())
}

/// One attachment's bytes, streamed, with its `Content-Type` and a strong
/// `ETag` (its SHA-256); a `Range` gives part of it, a matching
/// `If-None-Match` a 304.
#[utoipa::path(get, path = "/v1/chats/{chat_id}/files/{file_id}/content", tag = "files", params(UserHeader, FilePath, RangeHeader, IfNoneMatchHeader),
    responses(
        (status = 200, description = "The bytes", body = Vec<u8>, content_type = "application/octet-stream",
            headers(("etag" = String, description = "The SHA-256 of the content, quoted"))),
        (status = 206, description = "The range asked for", body = Vec<u8>, content_type = "application/octet-stream",
            headers(("content-range" = String, description = "Which bytes of the file these are"))),
        (status = 304, description = "The caller has this content already"),
        (status = 416, description = "The range lies outside the file (`range_not_satisfiable`)", body = ErrorBody)))]
pub(crate) async fn read_file(
    State(app): AppState,
    InFile { user, chat, file }: InFile,
    headers: HeaderMap,
) -> Reply {
    app.run(user, move |s| {
        let (meta, content) = s.read_attachment(user, chat, file)?;
        let content_type = meta
            .content_type
            .as_deref()
            .and_then(|t| HeaderValue::from_str(t).ok())
            .unwrap_or(HeaderValue::from_static("application/octet-stream"));
        // A file a sandbox rewrote is served as it is on disk; its recorded
        // digest no longer names it when the size says so.
        let etag = meta.sha256.filter(|_| content.len() == meta.size_bytes);
        let served = Served {
            content,
            content_type,
            etag,
            name: meta.name.to_string(),
        };
        Ok(body::serve(served, &headers))
    })
    .await?
}

/// Marks a sandbox session active on the chat (for the sandbox subsystem);
/// deleting the chat or clearing its files is refused until it ends. The
/// answer says which directory of this host to mount as the sandbox's
/// working directory and how many bytes the workspace may still grow by.
#[utoipa::path(put, path = "/v1/chats/{chat_id}/sandbox", tag = "sandbox", params(UserHeader, ChatPath),
    responses((status = 200, description = "The session, the chat's working directory and the room left", body = SandboxStart)))]
pub(crate) async fn start_sandbox(State(app): AppState, InChat { user, chat }: InChat) -> Reply {
    // The chat must be the caller's: the same lookup any use case makes.
    let session = app
        .run(user, move |s| {
            s.get_chat(user, chat)?;
            s.start_sandbox(chat)
        })
        .await?;
    Ok(json(StatusCode::OK, &session))
}

/// Ends the chat's sandbox session, if one is active: the files it left in
/// the chat's directory become the chat's attachments by the policy's
/// rules, and what does not is reported and left where it is.
#[utoipa::path(delete, path = "/v1/chats/{chat_id}/sandbox", tag = "sandbox", params(UserHeader, ChatPath),
    responses(
        (status = 200, description = "The session ended: what it left, registered or not", body = SandboxEnd),
        (status = 204, description = "No session is active")))]
pub(crate) async fn stop_sandbox(State(app): AppState, InChat { user, chat }: InChat) -> Reply {
    let ended = app
        .run(user, move |s| {
            s.get_chat(user, chat)?;
            s.end_sandbox(chat)
        })
        .await?;
    Ok(match ended {
        Some(end) => json(StatusCode::OK, &end),
        None => no_content(),
    })
}

/// Runs a write whose content is the request body, in one request slot.
///
/// A body that declares at most [`body::SMALL_BODY`] bytes is read whole,
/// then staged on the blocking thread that runs the call: one hand-off to a
/// blocking thread instead of three, and the call checks the quota exactly
/// as always. A larger or undeclared body is first checked against the
/// room the write has (`room`), then streamed to staging as it arrives and
/// cut off past that room.
async fn with_body<T: Send + 'static>(
    app: &Arc<App>,
    user: Uuid,
    kind: ContentKind,
    headers: &HeaderMap,
    request: Body,
    room: impl FnOnce(&ChatStore) -> Result<u64, Error> + Send + 'static,
    call: impl FnOnce(&ChatStore, StagedContent) -> Result<T, Error> + Send + 'static,
) -> Result<T, Failure> {
    let slot = app.slot(user).await?;
    if body::declares_small(app, headers) {
        let whole = body::read_small(app, request).await?;
        return app
            .run_in(&slot, move |s| {
                let staged = (s.staging().stage(&whole[..], kind, u64::MAX))
                    .map_err(|e| s.staging_failed(user, e))?;
                call(s, staged)
            })
            .await;
    }
    let room = app.run_in(&slot, room).await?;
    let limit = Limit::of(app, room);
    limit.check_declared(app, &slot, user, headers).await?;
    let staged = body::stage(app, &slot, user, request, kind, limit).await?;
    app.run_in(&slot, move |s| call(s, staged)).await
}

/// The body of `PUT /admin/v1/workspaces/{user_id}/quota`.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct QuotaBody {
    /// The workspace's own quota in bytes, or `null` for the configured one.
    quota_bytes: Option<u64>,
}

/// The administration address's OpenAPI 3.1 document.
#[utoipa::path(get, path = "/openapi.json", tag = "server",
    responses((status = 200, description = "The OpenAPI document of the administration routes", body = Object, content_type = "application/json")))]
pub(crate) async fn admin_openapi_json() -> Response {
    static DOCUMENT: std::sync::OnceLock<Bytes> = std::sync::OnceLock::new();
    let document = DOCUMENT.get_or_init(|| {
        Bytes::from(serde_json::to_vec(&crate::admin_openapi()).unwrap_or_default())
    });
    (
        [(header::CONTENT_TYPE, "application/json")],
        document.clone(),
    )
        .into_response()
}

/// Gives a user's workspace a quota of its own, or with `null` the
/// configured one again; answers its usage against it. Only on the
/// administration address (`serve --admin-addr`).
#[utoipa::path(put, path = "/admin/v1/workspaces/{user_id}/quota", tag = "admin",
    params(("user_id" = String, Path, description = "The user whose workspace it is (a UUID)")),
    request_body = QuotaBody,
    responses((status = 200, description = "The workspace's usage and its quota now", body = WorkspaceUsage)))]
pub(crate) async fn set_quota(
    State(app): AppState,
    Segments(user_id): Segments<String>,
    body: axum::body::Bytes,
) -> Reply {
    let user = id(&user_id)?;
    let QuotaBody { quota_bytes } = serde_json::from_slice(&body).map_err(|e| {
        Failure::plain(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            format!("expected {{\"quota_bytes\": <bytes> or null}}: {e}"),
        )
    })?;
    let usage = app
        .run(user, move |s| s.set_quota(user, quota_bytes))
        .await?;
    tracing::info!(%user, ?quota_bytes, "quota set");
    Ok(json(StatusCode::OK, &usage))
}

/// The user's workspace as a tar archive, streamed as it is written.
#[utoipa::path(get, path = "/v1/workspace/export", tag = "workspace", params(UserHeader),
    responses((status = 200, description = "A tar archive: `manifest.json`, then each chat's `history.md` and attachments (`chatstore workspace import` restores it)", content_type = "application/x-tar")))]
pub(crate) async fn export_workspace(State(app): AppState, User(user): User) -> Reply {
    // The export holds one of its user's turns and a request slot for as
    // long as it streams: a client that reads slowly holds its own share
    // of the server, no one else's.
    let slot = app.slot(user).await?;
    // A user without a workspace is a 404 before the first byte.
    let workspace = app.run_in(&slot, move |s| s.get_workspace(user)).await?;
    let (chunks, body) = body::chunks();
    let store = app.store.clone();
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || {
        let _slot = slot;
        span.in_scope(|| {
            let mut out = chunks;
            match store.export_workspace(user, &mut out) {
                Ok(summary) => {
                    tracing::info!(
                        chats = summary.chats,
                        files = summary.files,
                        bytes = summary.bytes,
                        "exported"
                    );
                }
                // The response ends in an error, so the client sees a
                // broken transfer rather than a short archive.
                Err(e) => {
                    tracing::warn!(error = %e, "export failed");
                    out.fail(e.to_string());
                }
            }
        })
    });
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-tar"),
    );
    let disposition = format!(
        "attachment; filename=\"workspace-{}.tar\"",
        workspace.workspace_id
    );
    if let Ok(value) = HeaderValue::from_str(&disposition) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    Ok((StatusCode::OK, headers, body).into_response())
}
