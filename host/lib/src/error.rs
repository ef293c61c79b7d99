//! Errors of the host API.

use uuid::Uuid;

/// Why a storage call failed. [`Error::code`] is the stable code that the
/// CLI, the HTTP API and other languages use.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The user has no workspace (carries the user id).
    #[error("workspace_not_found: user {0} has no workspace")]
    WorkspaceNotFound(Uuid),
    /// The write would grow the workspace past its quota (carries the workspace id).
    #[error("workspace_quota_exceeded: the write would exceed the quota of workspace {0}")]
    WorkspaceQuotaExceeded(Uuid),
    /// No such chat in the caller's workspace.
    #[error("chat_not_found: no chat {0}")]
    ChatNotFound(Uuid),
    /// The chat has an active sandbox session.
    #[error("chat_has_active_sandbox: chat {0} has an active sandbox session")]
    ChatHasActiveSandbox(Uuid),
    /// No such file in the chat.
    #[error("chat_file_not_found: no file {0}")]
    ChatFileNotFound(Uuid),
    /// The attachment name breaks the name rules.
    #[error("invalid_attachment_name: {0:?} is not a valid attachment name")]
    InvalidAttachmentName(String),
    /// The attachment name is reserved.
    #[error("reserved_attachment_name: {0:?} is reserved")]
    ReservedAttachmentName(String),
    /// A file in the chat directory is not the one the store recorded: not
    /// a regular file, gone, or another size (a sandbox changed it there).
    /// Carries the file's name; `fsck --repair` records what is on disk.
    #[error("chat_file_changed: {0:?} in the chat directory is not the file the store recorded")]
    ChatFileChanged(String),
    /// A string that should be a UUID is not one.
    #[error("invalid_id: {0:?} is not a UUID")]
    InvalidId(String),
    /// A history (or a message for one) that is not UTF-8 text.
    #[error("invalid_history: a history must be UTF-8 text")]
    InvalidHistory,
    /// A page size outside 1 to 1000 (carries it).
    #[error("invalid_limit: a page holds 1 to 1000 items, not {0}")]
    InvalidLimit(u64),
    /// An archive to import that is truncated, corrupt or not what its
    /// manifest says (carries why).
    #[error("invalid_archive: {0}")]
    InvalidArchive(String),
    /// An import into a workspace that already holds chats (carries the user id).
    #[error("workspace_not_empty: the workspace of user {0} already holds chats")]
    WorkspaceNotEmpty(Uuid),
    /// A page's `after` that names no item of the caller's list (carries it).
    #[error("after_not_found: {0} is not an item of this list")]
    AfterNotFound(Uuid),
    /// A port failed, or the guest trapped; nothing of the call was kept.
    #[error("storage_unavailable: {port}: {message}")]
    StorageUnavailable {
        /// The port that failed (`chat-storage`, …), or `guest` for a trap.
        port: String,
        /// What went wrong.
        message: String,
    },
}

impl Error {
    /// The stable, machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Error::WorkspaceNotFound(_) => "workspace_not_found",
            Error::WorkspaceQuotaExceeded(_) => "workspace_quota_exceeded",
            Error::ChatNotFound(_) => "chat_not_found",
            Error::ChatHasActiveSandbox(_) => "chat_has_active_sandbox",
            Error::ChatFileNotFound(_) => "chat_file_not_found",
            Error::InvalidAttachmentName(_) => "invalid_attachment_name",
            Error::ReservedAttachmentName(_) => "reserved_attachment_name",
            Error::ChatFileChanged(_) => "chat_file_changed",
            Error::InvalidId(_) => "invalid_id",
            Error::InvalidHistory => "invalid_history",
            Error::InvalidLimit(_) => "invalid_limit",
            Error::InvalidArchive(_) => "invalid_archive",
            Error::WorkspaceNotEmpty(_) => "workspace_not_empty",
            Error::AfterNotFound(_) => "after_not_found",
            Error::StorageUnavailable { .. } => "storage_unavailable",
        }
    }

    /// The id or name the error is about, if it carries one.
    pub fn subject(&self) -> Option<String> {
        match self {
            Error::WorkspaceNotFound(id)
            | Error::WorkspaceQuotaExceeded(id)
            | Error::ChatNotFound(id)
            | Error::ChatHasActiveSandbox(id)
            | Error::ChatFileNotFound(id)
            | Error::AfterNotFound(id)
            | Error::WorkspaceNotEmpty(id) => Some(id.to_string()),
            Error::InvalidLimit(limit) => Some(limit.to_string()),
            Error::InvalidAttachmentName(s)
            | Error::ReservedAttachmentName(s)
            | Error::ChatFileChanged(s)
            | Error::InvalidId(s) => Some(s.clone()),
            Error::InvalidHistory | Error::InvalidArchive(_) | Error::StorageUnavailable { .. } => {
                None
            }
        }
    }

    /// The error as the CLI and HTTP API print it:
    /// `{"error": "<code>", "message": "…", "id": "…"}`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "error": self.code(),
            "message": self.to_string(),
            "id": self.subject(),
        })
    }

    /// A port's (or, with `guest`, the component's) failure.
    pub(crate) fn unavailable(port: &str, message: impl Into<String>) -> Error {
        Error::StorageUnavailable {
            port: port.to_owned(),
            message: message.into(),
        }
    }
}

/// A port adapter failed. The binding layer adds which port it was.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct PortError {
    /// What went wrong.
    pub message: String,
    /// Whether it is about a file a sandbox changed.
    pub kind: PortErrorKind,
}

/// What kind of failure a [`PortError`] is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum PortErrorKind {
    /// The adapter could not do what was asked.
    #[default]
    Failed,
    /// The named file in the chat directory is not a regular file (gone, a
    /// directory, a symlink, a FIFO…): the call answers `chat_file_changed`.
    ChatFileChanged(String),
}

impl PortError {
    /// A port error with this message.
    pub fn new(message: impl Into<String>) -> Self {
        PortError {
            message: message.into(),
            kind: PortErrorKind::Failed,
        }
    }

    /// The file `name` in the chat directory is not a regular file.
    pub fn chat_file_changed(name: &str, message: impl Into<String>) -> Self {
        PortError {
            message: message.into(),
            kind: PortErrorKind::ChatFileChanged(name.to_owned()),
        }
    }
}

impl From<std::io::Error> for PortError {
    fn from(e: std::io::Error) -> Self {
        PortError::new(e.to_string())
    }
}

/// What every port call returns.
pub type PortResult<T> = Result<T, PortError>;

/// Setting up a [`ChatStore`](crate::ChatStore) failed.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The data directory cannot be created or opened.
    #[error("data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The component cannot be compiled or does not fit the `storage-service` world.
    #[error("storage component: {0}")]
    Component(String),
    /// The metadata database cannot be reached or migrated.
    #[error("metadata database: {0}")]
    Database(String),
}
