//! chatstore's HTTP API: the storage use cases over JSON, as
//! `chatstore serve` runs them.
//!
//! The trusted caller names the user in the `X-User-Id` header. Each
//! request runs its use case on a blocking thread, in the user's guest
//! instance; at most `max_concurrent` requests do work at once, at most
//! `max_concurrent_per_user` of them one user's (`app.rs`). Errors are
//! `{"error": "<code>", "message": …, "id": …, "request_id": …}` with a
//! status per code (`failure.rs`, one table for the responses and the
//! OpenAPI document). Every response carries `x-request-id` (the caller's,
//! or a new one), and every request is logged in a `request` span that the
//! use case's and its port calls' spans nest in.
//!
//! The OpenAPI document (`GET /openapi.json`) is generated from the
//! handlers' own annotations and types (`routes.rs`, `handlers.rs`).
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

mod app;
mod body;
mod failure;
mod handlers;
mod routes;
mod serve;

pub use app::ServerConfig;
pub use failure::{ErrorBody, Failure};
pub use routes::{admin_openapi, admin_router, openapi, router};
pub use serve::{serve, serve_admin, shutdown_signal};

/// The header that names the user.
pub const USER_HEADER: &str = "x-user-id";

/// The header that names the request.
pub const REQUEST_ID_HEADER: &str = "x-request-id";
