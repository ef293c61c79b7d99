use super::Id;
use std::fmt;

/// A port failed (I/O, database, disk full); the use case is aborted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortError {
    /// The port that failed, as named in the WIT (`chat-storage`, …).
    pub port: String,
    /// What went wrong.
    pub message: String,
}

/// Why a use case refused. [`StorageError::code`] gives the stable code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StorageError {
    /// The user has no workspace (carries the user id).
    WorkspaceNotFound(Id),
    /// The write would grow the workspace past its quota (carries the workspace id).
    WorkspaceQuotaExceeded(Id),
    /// No such chat in the caller's workspace.
    ChatNotFound(Id),
    /// The chat has an active sandbox session.
    ChatHasActiveSandbox(Id),
    /// No such file in the chat.
    ChatFileNotFound(Id),
    /// The attachment name breaks the name rules.
    InvalidAttachmentName(String),
    /// The attachment name is reserved.
    ReservedAttachmentName(String),
    /// A string that should be a UUID is not one.
    InvalidId(String),
    /// A port failed.
    StorageUnavailable(PortError),
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

impl From<PortError> for StorageError {
    fn from(e: PortError) -> Self {
        StorageError::StorageUnavailable(e)
    }
}

impl fmt::Display for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StorageError::WorkspaceNotFound(id)
            | StorageError::WorkspaceQuotaExceeded(id)
            | StorageError::ChatNotFound(id)
            | StorageError::ChatHasActiveSandbox(id)
            | StorageError::ChatFileNotFound(id) => write!(f, "{}: {id}", self.code()),
            StorageError::InvalidAttachmentName(s)
            | StorageError::ReservedAttachmentName(s)
            | StorageError::InvalidId(s) => write!(f, "{}: {s:?}", self.code()),
            StorageError::StorageUnavailable(e) => {
                write!(f, "{}: {}: {}", self.code(), e.port, e.message)
            }
        }
    }
}

impl std::error::Error for StorageError {}
