use super::Id;

/// A port failed (I/O, database, disk full); the use case is aborted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{port}: {message}")]
pub struct PortError {
    /// The port that failed, as named in the WIT (`chat-storage`, …).
    pub port: String,
    /// What went wrong.
    pub message: String,
}

/// Why a use case refused. [`StorageError::code`] gives the stable code,
/// which its message starts with.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StorageError {
    /// The user has no workspace (carries the user id).
    #[error("workspace_not_found: {0}")]
    WorkspaceNotFound(Id),
    /// The write would grow the workspace past its quota (carries the workspace id).
    #[error("workspace_quota_exceeded: {0}")]
    WorkspaceQuotaExceeded(Id),
    /// No such chat in the caller's workspace.
    #[error("chat_not_found: {0}")]
    ChatNotFound(Id),
    /// The chat has an active sandbox session.
    #[error("chat_has_active_sandbox: {0}")]
    ChatHasActiveSandbox(Id),
    /// No such file in the chat.
    #[error("chat_file_not_found: {0}")]
    ChatFileNotFound(Id),
    /// The attachment name breaks the name rules.
    #[error("invalid_attachment_name: {0:?}")]
    InvalidAttachmentName(String),
    /// The attachment name is reserved.
    #[error("reserved_attachment_name: {0:?}")]
    ReservedAttachmentName(String),
    /// A string that should be a UUID is not one.
    #[error("invalid_id: {0:?}")]
    InvalidId(String),
    /// A port failed.
    #[error("storage_unavailable: {0}")]
    StorageUnavailable(#[from] PortError),
}

impl StorageError {
    /// The stable, machine-readable code of this error.
    pub fn code(&self) -> &'static str {
        match self {
            StorageError::WorkspaceNotFound(_) => "workspace_not_found",
            StorageError::WorkspaceQuotaExceeded(_) => "workspace_quota_exceeded",
            StorageError::ChatNotFound(_) => "chat_not_found",
            StorageError::ChatHasActiveSandbox(_) => "chat_has_active_sandbox",
            StorageError::ChatFileNotFound(_) => "chat_file_not_found",
            StorageError::InvalidAttachmentName(_) => "invalid_attachment_name",
            StorageError::ReservedAttachmentName(_) => "reserved_attachment_name",
            StorageError::InvalidId(_) => "invalid_id",
            StorageError::StorageUnavailable(_) => "storage_unavailable",
        }
    }
}
