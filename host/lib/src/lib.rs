//! The chatstore host: runs the storage component on wasmtime and
//! implements the ports it imports.
//!
//! The storage policy (ownership, attachment names, quota, sandbox rules)
//! lives in a WebAssembly component; this crate gives it metadata
//! repositories, a confined filesystem for the chat directories, usage
//! accounting and ids, and offers the sixteen use cases as a typed Rust API.
//! It is the library to embed; the HTTP server (`chatstore-http`), the
//! `chatstore` command and the test kit (`chatstore-testkit`) are built on it.
//!
//! ```
//! use chatstore_host::ChatStore;
//! use uuid::Uuid;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?;
//! let store = ChatStore::builder().data_dir(dir.path()).build()?;
//! let user = Uuid::now_v7();
//! store.ensure_workspace(user)?;
//! let chat = store.create_chat(user)?;
//! store.append_history(user, chat.chat_id, "# Hello\n".as_bytes())?;
//! // Content streams from any reader (a file, a socket) through staging, in
//! // bounded memory; the policy sees its size and SHA-256, never its bytes.
//! let file = store.upload_attachment(user, chat.chat_id, "notes.txt", Some("text/plain"), &b"hi"[..])?;
//! assert_eq!(file.sha256.as_deref(), Some("8f434346648f6b96df89dda901c5176b10a6d83961dd3c1ac88b59b2dc327aa4"));
//! // Reads give an open file to stream from.
//! let (_, content) = store.read_attachment(user, chat.chat_id, file.file_id)?;
//! assert_eq!(content.into_bytes()?, b"hi");
//! assert_eq!(store.read_history(user, chat.chat_id)?.into_string()?, "# Hello\n");
//! # Ok(()) }
//! ```
//!
//! Every use case runs in a `use_case` span and every port call in a `port`
//! span inside it (`tracing`, at debug level), so a subscriber with
//! `chatstore=debug` shows where a slow call spent its time.

#![deny(missing_docs)]

pub mod adapters;
mod archive;
mod bindings;
mod builder;
mod call;
pub mod calls;
mod compiled;
mod content;
mod engine;
mod error;
pub mod fsck;
mod group_sync;
mod ids;
mod imports;
mod kept;
pub mod model;
pub mod names;
pub mod page;
pub mod plugin;
pub mod ports;
mod sandbox;
pub mod staging;
mod state;
mod store;
pub mod unit;
mod use_cases;
mod values;

pub use archive::ArchiveSummary;
pub use builder::{
    ChatStoreBuilder, Clock, DEFAULT_CALL_TIMEOUT, DEFAULT_DATA_DIR, DEFAULT_MAX_GUEST_MEMORY,
    DEFAULT_QUOTA_BYTES, Metadata, STORAGE_COMPONENT,
};
pub use calls::{Call, Output};
pub use compiled::ComponentSource;
pub use content::Content;
pub use error::{Error, PortError, PortErrorKind, PortResult, SetupError};
pub use ids::{echo, parse_id};
pub use model::{
    Chat, ChatFile, SandboxEnd, SandboxOutput, SandboxSession, SandboxStart, Timestamp,
    Unregistered, Workspace, WorkspaceUsage,
};
pub use names::{AttachmentName, HISTORY_FILE_NAME};
pub use page::{Page, PageRequest};
pub use staging::{ContentKind, StageError, StagedContent};
pub use store::{ChatStore, Replacing};
pub use uuid::Uuid;
