//! chatstore's HTTP API: the storage use cases over JSON, as
//! `chatstore serve` runs them.
//!
//! The trusted caller names the user in the `X-User-Id` header. Each
//! request runs its use case on a blocking thread in a fresh, limited guest
//! instance; at most `max_concurrent` run at once, at most
//! `max_concurrent_per_user` of them one user's. Errors are
//! `{"error": "<code>", "message": …, "id": …, "request_id": …}` with a
//! status per code. Every response carries `x-request-id` (the caller's, or
//! a new one), and every request is logged in a `request` span that the
//! use case's and its port calls' spans nest in.
//!
//! The OpenAPI document (`GET /openapi.json`) is generated from the
//! handlers' own annotations and types.
//!
//! ```no_run
//! # async fn run() -> std::io::Result<()> {
//! use chatstore_http::{ServerConfig, serve, shutdown_signal};
//!
//! let store = chatstore_host::ChatStore::builder().build().expect("store");
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! serve(listener, store, ServerConfig::default(), shutdown_signal()).await
//! # }
//! ```

#![deny(missing_docs)]

mod body;
mod failure;
mod handlers;

pub use failure::{ErrorBody, Failure};

use axum::Router;
use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderName, StatusCode};
use axum::middleware;
use axum::response::Response;
use chatstore_host::{ChatStore, DEFAULT_QUOTA_BYTES, Error, Now, echo};
use handlers as h;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use utoipa::openapi::path::Operation;
use utoipa::openapi::{OpenApi, RefOr};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The header that names the user.
pub const USER_HEADER: &str = "x-user-id";

/// The header that names the request.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// How the server runs.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// The largest upload accepted, in bytes.
    pub max_upload_bytes: u64,
    /// The workspace quota the store enforces (for refusing oversized uploads early).
    pub quota_bytes: u64,
    /// The most use cases running at once; a request takes one of these
    /// slots before it reads its body.
    pub max_concurrent: usize,
    /// The most slots one user's requests hold at once. The user's further
    /// requests wait their turn without holding one, so a burst from one
    /// user (writes queued behind that user's own lock, slow bodies) leaves
    /// every other user the rest.
    pub max_concurrent_per_user: usize,
    /// The most connections open at once; more wait to be accepted.
    pub max_connections: usize,
    /// How long a client may take to send a request's headers, and how long
    /// an idle keep-alive connection stays open.
    pub header_timeout: Duration,
    /// How long a request body may go without sending a byte (408).
    pub body_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_upload_bytes: 256 << 20,
            quota_bytes: DEFAULT_QUOTA_BYTES,
            max_concurrent: 64,
            max_concurrent_per_user: 4,
            max_connections: 1024,
            header_timeout: Duration::from_secs(30),
            body_timeout: Duration::from_secs(60),
        }
    }
}

struct App {
    store: ChatStore,
    config: ServerConfig,
    running: Semaphore,
    users: UserTurns,
}

/// A request's place among those running: one of its user's turns, then
/// one of the server's slots.
pub(crate) struct Slot<'a> {
    _running: tokio::sync::SemaphorePermit<'a>,
    _turn: UserTurn<'a>,
}

impl App {
    /// Takes one of the user's turns, then one of the `max_concurrent`
    /// request slots. A request with a body takes them before reading the
    /// body and keeps them to the end.
    async fn slot(&self, user: uuid::Uuid) -> Result<Slot<'_>, Failure> {
        let shutting_down = |_| {
            Failure::plain(
                StatusCode::SERVICE_UNAVAILABLE,
                "storage_unavailable",
                "shutting down",
            )
        };
        let turn = self.users.take(user).await.map_err(shutting_down)?;
        let running = self.running.acquire().await.map_err(shutting_down)?;
        Ok(Slot {
            _running: running,
            _turn: turn,
        })
    }

    /// Runs a use case of `user` on a blocking thread, in the request's
    /// span, in a slot of its own.
    async fn run<T: Send + 'static>(
        self: &Arc<Self>,
        user: uuid::Uuid,
        f: impl FnOnce(&ChatStore) -> Result<T, Error> + Send + 'static,
    ) -> Result<T, Failure> {
        let slot = self.slot(user).await?;
        self.run_in(&slot, f).await
    }

    /// Runs a read of metadata in a slot of its own: on this worker when the
    /// store answers it at once (`now`, [`ChatStore::now`]), which saves
    /// handing it to a blocking thread and back; else (`later`) on a
    /// blocking thread.
    async fn read<T: Send + 'static>(
        self: &Arc<Self>,
        user: uuid::Uuid,
        now: impl FnOnce(Now<'_>) -> Option<Result<T, Error>>,
        later: impl FnOnce(&ChatStore) -> Result<T, Error> + Send + 'static,
    ) -> Result<T, Failure> {
        let slot = self.slot(user).await?;
        match now(self.store.now()) {
            Some(answer) => Ok(answer?),
            None => self.run_in(&slot, later).await,
        }
    }

    /// Runs a use case on a blocking thread, in the request's span, in the
    /// slot the request holds.
    async fn run_in<T: Send + 'static>(
        self: &Arc<Self>,
        _slot: &Slot<'_>,
        f: impl FnOnce(&ChatStore) -> Result<T, Error> + Send + 'static,
    ) -> Result<T, Failure> {
        let store = self.store.clone();
        let span = tracing::Span::current();
        match tokio::task::spawn_blocking(move || span.in_scope(|| f(&store))).await {
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

/// The turns each user's requests take before a slot: a semaphore per user
/// with requests running or waiting, dropped when the last one ends.
struct UserTurns {
    each: usize,
    users: std::sync::Mutex<HashMap<uuid::Uuid, Arc<Semaphore>>>,
}

/// One of a user's turns, or a wait for one; given back when dropped.
struct UserTurn<'a> {
    turns: &'a UserTurns,
    user: uuid::Uuid,
    semaphore: Arc<Semaphore>,
    held: bool,
}

impl UserTurns {
    fn new(each: usize) -> UserTurns {
        UserTurns {
            each: each.max(1),
            users: std::sync::Mutex::default(),
        }
    }

    fn users(&self) -> std::sync::MutexGuard<'_, HashMap<uuid::Uuid, Arc<Semaphore>>> {
        self.users.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn take(&self, user: uuid::Uuid) -> Result<UserTurn<'_>, tokio::sync::AcquireError> {
        let semaphore = self
            .users()
            .entry(user)
            .or_insert_with(|| Arc::new(Semaphore::new(self.each)))
            .clone();
        let mut turn = UserTurn {
            turns: self,
            user,
            semaphore,
            held: false,
        };
        // Borrowed, not owned: a wait given up holds no other reference,
        // so the turn's drop still sees whether the user's entry is idle.
        if turn
            .semaphore
            .try_acquire()
            .map(|permit| permit.forget())
            .is_err()
        {
            tracing::debug!(%user, turns = self.each, "waiting for one of the user's turns");
            turn.semaphore.acquire().await?.forget();
        }
        turn.held = true;
        Ok(turn)
    }

    /// How many users other than `user` have requests running or waiting.
    fn others_than(&self, user: uuid::Uuid) -> usize {
        let users = self.users();
        users.len() - usize::from(users.contains_key(&user))
    }

    /// How many users have requests running or waiting.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.users().len()
    }
}

impl Drop for UserTurn<'_> {
    fn drop(&mut self) {
        let mut users = self.turns.users();
        if self.held {
            self.semaphore.add_permits(1);
        }
        // The map's and this one: no other request of the user is here.
        if Arc::strong_count(&self.semaphore) == 2 {
            users.remove(&self.user);
        }
    }
}

/// The routes and their OpenAPI description, before state and layers.
fn routes() -> OpenApiRouter<Arc<App>> {
    OpenApiRouter::new()
        .routes(routes!(h::healthz))
        .routes(routes!(h::openapi_json))
        .routes(routes!(h::ensure_workspace, h::get_workspace))
        .routes(routes!(h::get_usage))
        .routes(routes!(h::export_workspace))
        .routes(routes!(h::create_chat, h::list_chats))
        .routes(routes!(h::get_chat, h::delete_chat))
        .routes(routes!(
            h::read_history,
            h::write_history,
            h::append_history
        ))
        .routes(routes!(h::list_files, h::upload_file, h::clear_files))
        .routes(routes!(h::get_file, h::delete_file))
        .routes(routes!(h::read_file))
        .routes(routes!(h::start_sandbox, h::stop_sandbox))
}

/// The OpenAPI 3.1 document of every route, as `GET /openapi.json` serves it.
pub fn openapi() -> OpenApi {
    let (_, api) = routes().split_for_parts();
    describe(api)
}

/// The routes, ready to serve.
pub fn router(store: ChatStore, config: ServerConfig) -> Router {
    let (router, _) = routes().split_for_parts();
    finish(router, store, config)
}

/// The administration routes, for a listen address of their own that only
/// operators reach (`chatstore serve --admin-addr`), never the public one:
///
/// - `PUT /admin/v1/workspaces/{user_id}/quota` with `{"quota_bytes": N}`
///   gives the user's workspace a quota of its own (`null`: the configured
///   one again) and answers its usage;
/// - `GET /healthz`, and `GET /openapi.json` ([`admin_openapi`]).
pub fn admin_router(store: ChatStore, config: ServerConfig) -> Router {
    let (router, _) = admin_routes().split_for_parts();
    finish(router, store, config)
}

/// The administration routes and their description.
fn admin_routes() -> OpenApiRouter<Arc<App>> {
    OpenApiRouter::new()
        .routes(routes!(h::healthz))
        .routes(routes!(h::admin_openapi_json))
        .routes(routes!(h::set_quota))
}

/// The OpenAPI 3.1 document of the administration routes, as `GET
/// /openapi.json` on the administration address serves it.
pub fn admin_openapi() -> OpenApi {
    let (_, api) = admin_routes().split_for_parts();
    let mut api = describe(api);
    api.info.title = "chatstore administration".into();
    api
}

/// Gives routes their state, their fallbacks, their errors' rendering,
/// their log and their request ids.
fn finish(router: Router<Arc<App>>, store: ChatStore, config: ServerConfig) -> Router {
    let app = Arc::new(App {
        running: Semaphore::new(config.max_concurrent.max(1)),
        users: UserTurns::new(config.max_concurrent_per_user),
        store,
        config,
    });
    let request_id = HeaderName::from_static(REQUEST_ID_HEADER);
    router
        .fallback(|| async { Failure::plain(StatusCode::NOT_FOUND, "not_found", "no such route") })
        .method_not_allowed_fallback(|| async {
            Failure::plain(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "the route does not take this method",
            )
        })
        .with_state(app)
        .layer(middleware::from_fn(failure::render))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(request_span)
                .on_request(())
                .on_response(log_response)
                .on_failure(()),
        )
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
}

/// The span of one request: method, route, request id and user.
fn request_span(request: &Request) -> tracing::Span {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| request.uri().path(), |p| p.as_str());
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(echo)
            .unwrap_or_default()
    };
    tracing::info_span!(
        "request",
        method = %request.method(),
        route = %echo(route),
        request_id = %header(REQUEST_ID_HEADER),
        user = %header(USER_HEADER),
    )
}

/// One log line per request, when its response is ready.
fn log_response(response: &Response, latency: Duration, _span: &tracing::Span) {
    tracing::info!(
        status = response.status().as_u16(),
        duration_ms = %format_args!("{:.3}", latency.as_secs_f64() * 1000.0),
        "request"
    );
}

/// Completes the generated document with what every route shares: the
/// error responses, the `x-request-id` header, and the links that lead
/// from a created resource to the routes that use it.
fn describe(mut api: OpenApi) -> OpenApi {
    use utoipa::openapi::{ContentBuilder, HeaderBuilder, ResponseBuilder, Type};
    api.info.title = "chatstore".into();
    api.info.version = env!("CARGO_PKG_VERSION").into();
    api.info.contact = None;
    api.info.license = Some(
        utoipa::openapi::LicenseBuilder::new()
            .name(env!("CARGO_PKG_LICENSE"))
            .identifier(Some(env!("CARGO_PKG_LICENSE")))
            .build(),
    );
    api.info.description = Some(
        "The storage use cases of chatstore: per-user workspaces of chats, each with a \
         history.md and attachments. The trusted caller names the user in X-User-Id."
            .into(),
    );
    let error_schema = utoipa::openapi::Ref::from_schema_name("ErrorBody");
    let components = api.components.get_or_insert_with(Default::default);
    components.schemas.insert(
        "ErrorBody".into(),
        <ErrorBody as utoipa::PartialSchema>::schema(),
    );
    let request_id = HeaderBuilder::new()
        .schema(Some(
            utoipa::openapi::ObjectBuilder::new().schema_type(Type::String),
        ))
        .description(Some(
            "The request's id: the one the caller sent, or a new one",
        ))
        .build();
    let error = |description: &str| {
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(error_schema.clone()))
                    .build(),
            )
            .header(REQUEST_ID_HEADER, request_id.clone())
            .build()
    };
    let errors = [
        (
            "400",
            "X-User-Id is missing, repeated or not a UUID (`invalid_id`), or the request is malformed (`invalid_request`)",
        ),
        (
            "404",
            "No such workspace, chat or file for this user (`workspace_not_found`, `chat_not_found`, `chat_file_not_found`)",
        ),
        (
            "409",
            "A sandbox session is active on the chat (`chat_has_active_sandbox`)",
        ),
        (
            "413",
            "The write would exceed the workspace's quota (`workspace_quota_exceeded`), or the body the upload limit (`upload_too_large`)",
        ),
        (
            "422",
            "An id in the path is not a UUID (`invalid_id`), the attachment name breaks the rules (`invalid_attachment_name`, `reserved_attachment_name`), or a history is not UTF-8 (`invalid_history`)",
        ),
        (
            "503",
            "Storage failed; nothing of the request was kept (`storage_unavailable`)",
        ),
    ];
    for (path, item) in api.paths.paths.iter_mut() {
        let storage_route = path.starts_with("/v1/");
        for operation in operations(item) {
            if let Some(RefOr::T(body)) = &mut operation.request_body {
                // Any text or bytes: a body is described by its media type
                // alone, and may be empty (an empty history, an empty file).
                body.required = Some(utoipa::openapi::Required::False);
                for content in body.content.values_mut() {
                    if let RefOr::T(content) = content {
                        content.schema = None;
                    }
                }
            }
            for response in operation.responses.responses.values_mut() {
                if let RefOr::T(response) = response {
                    response
                        .headers
                        .insert(REQUEST_ID_HEADER.into(), RefOr::T(request_id.clone()));
                    if let Some(RefOr::T(bytes)) =
                        response.content.get_mut("application/octet-stream")
                    {
                        bytes.schema = None;
                    }
                }
            }
            if storage_route {
                for (status, description) in errors {
                    operation
                        .responses
                        .responses
                        .insert(status.into(), RefOr::T(error(description)));
                }
            }
        }
    }
    link_created_resources(&mut api);
    api
}

/// The operations of a path item.
fn operations(item: &mut utoipa::openapi::PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        item.get.as_mut(),
        item.put.as_mut(),
        item.post.as_mut(),
        item.delete.as_mut(),
        item.head.as_mut(),
        item.patch.as_mut(),
    ]
    .into_iter()
    .flatten()
}

/// Links from an ensured workspace to chat creation, from a new chat to
/// every chat route, and from a new file to every file route, carrying the
/// user and the new ids: how a client (or a stateful API test) finds its way.
fn link_created_resources(api: &mut OpenApi) {
    use utoipa::openapi::link::LinkBuilder;
    let user = ("X-User-Id", "$request.header.X-User-Id");
    let chat_from_body = ("chat_id", "$response.body#/chat_id");
    let chat_from_path = ("chat_id", "$request.path.chat_id");
    let file_from_body = ("file_id", "$response.body#/file_id");
    /// From an operation's response, to these operations, with these parameters.
    type Links<'a> = (&'a str, &'a str, &'a [&'a str], &'a [(&'a str, &'a str)]);
    let links: [Links; 3] = [
        (
            "ensure_workspace",
            "200",
            &["create_chat", "get_usage"],
            &[user],
        ),
        (
            "create_chat",
            "201",
            &[
                "get_chat",
                "delete_chat",
                "read_history",
                "write_history",
                "append_history",
                "list_files",
                "upload_file",
                "clear_files",
                "start_sandbox",
                "stop_sandbox",
            ],
            &[user, chat_from_body],
        ),
        (
            "upload_file",
            "201",
            &["get_file", "read_file", "delete_file"],
            &[user, chat_from_path, file_from_body],
        ),
    ];
    for (from, status, targets, parameters) in links {
        for item in api.paths.paths.values_mut() {
            for operation in operations(item) {
                if operation.operation_id.as_deref() != Some(from) {
                    continue;
                }
                let Some(RefOr::T(response)) = operation.responses.responses.get_mut(status) else {
                    continue;
                };
                for target in targets {
                    let mut link = LinkBuilder::new().operation_id(*target);
                    for (name, value) in parameters {
                        link = link.parameter(*name, *value);
                    }
                    response
                        .links
                        .insert((*target).to_owned(), RefOr::T(link.build()));
                }
            }
        }
    }
}

/// Serves until `shutdown` resolves, then lets in-flight requests finish.
///
/// At most `max_connections` connections are open at once; a client has
/// `header_timeout` to send each request's headers (an idle keep-alive
/// connection is closed after as long), and a body that stalls for
/// `body_timeout` is answered 408.
pub async fn serve(
    listener: tokio::net::TcpListener,
    store: ChatStore,
    config: ServerConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (header_timeout, max_connections) = (config.header_timeout, config.max_connections);
    let routes = router(store, config);
    serve_router(listener, routes, header_timeout, max_connections, shutdown).await
}

/// Serves the administration routes ([`admin_router`]) on `listener` until
/// `shutdown` resolves, like [`serve`].
pub async fn serve_admin(
    listener: tokio::net::TcpListener,
    store: ChatStore,
    config: ServerConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (header_timeout, max_connections) = (config.header_timeout, config.max_connections);
    let routes = admin_router(store, config);
    serve_router(listener, routes, header_timeout, max_connections, shutdown).await
}

async fn serve_router(
    listener: tokio::net::TcpListener,
    routes: Router,
    header_timeout: Duration,
    max_connections: usize,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use hyper_util::server::conn::auto::Builder;
    use hyper_util::service::TowerToHyperService;

    let connections = Arc::new(Semaphore::new(max_connections.max(1)));
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    let builder = builder.http1_only();
    let service = TowerToHyperService::new(routes);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        // A connection slot first: past the limit, clients wait in the backlog.
        let slot = tokio::select! {
            slot = connections.clone().acquire_owned() => slot.map_err(std::io::Error::other)?,
            () = &mut shutdown => break,
        };
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors and the like: wait, do not spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Responses are written as they are ready (headers, then the body
        // as it is read): without TCP_NODELAY the body of a small response
        // would wait for the client's delayed acknowledgement of the headers.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::warn!(error = %e, "cannot set TCP_NODELAY");
        }
        let connection = builder.serve_connection_with_upgrades(TokioIo::new(tcp), service.clone());
        let connection = graceful.watch(connection.into_owned());
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(%peer, error = %e, "connection ended");
            }
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};

    /// Polls `future` once: its output if it is ready, `None` if it waits.
    fn now<F: Future>(future: F) -> Option<F::Output> {
        match pin!(future).poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(output) => Some(output),
            Poll::Pending => None,
        }
    }

    #[test]
    fn a_user_past_its_turns_waits_and_other_users_do_not() {
        let turns = UserTurns::new(2);
        let (alice, bob) = (uuid::Uuid::now_v7(), uuid::Uuid::now_v7());
        let first = now(turns.take(alice)).unwrap().unwrap();
        let second = now(turns.take(alice)).unwrap().unwrap();
        assert!(now(turns.take(alice)).is_none(), "alice took a third turn");
        let bobs = now(turns.take(bob)).unwrap().unwrap();
        drop(first);
        let third = now(turns.take(alice)).unwrap().unwrap();
        drop((second, third, bobs));
    }

    #[test]
    fn the_users_running_beside_one_are_all_the_others_however_many_turns_they_hold() {
        let turns = UserTurns::new(2);
        let (alice, bob, carol) = (
            uuid::Uuid::now_v7(),
            uuid::Uuid::now_v7(),
            uuid::Uuid::now_v7(),
        );
        assert_eq!(turns.others_than(alice), 0);
        let alices = now(turns.take(alice)).unwrap().unwrap();
        assert_eq!(turns.others_than(alice), 0);
        assert_eq!(turns.others_than(bob), 1);
        let bobs = [
            now(turns.take(bob)).unwrap().unwrap(),
            now(turns.take(bob)).unwrap().unwrap(),
        ];
        assert_eq!(turns.others_than(alice), 1);
        assert_eq!(turns.others_than(carol), 2);
        drop(bobs);
        assert_eq!(turns.others_than(alice), 0);
        drop(alices);
    }

    #[test]
    fn a_users_entry_goes_with_its_last_request_even_one_that_gave_up_waiting() {
        let turns = UserTurns::new(1);
        let alice = uuid::Uuid::now_v7();
        let held = now(turns.take(alice)).unwrap().unwrap();
        // A waiting request whose client went away.
        assert!(now(turns.take(alice)).is_none());
        assert_eq!(turns.len(), 1);
        drop(held);
        assert_eq!(turns.len(), 0);
        // And the user's next request finds its turns whole.
        let again = now(turns.take(alice)).unwrap().unwrap();
        assert!(now(turns.take(alice)).is_none());
        drop(again);
        assert_eq!(turns.len(), 0);
    }
}
