//! The values the host API speaks in.

use crate::names::AttachmentName;
use serde::Serialize;
use uuid::Uuid;

/// A point in time, UTC (the WIT `timestamp`), written as RFC 3339 in JSON
/// (`2026-01-01T00:00:00Z`, `2026-01-01T00:00:00.500Z`).
pub type Timestamp = chrono::DateTime<chrono::Utc>;

/// The timestamp `seconds` and `nanoseconds` after the Unix epoch, as the
/// WIT, the metadata and archives write one; `None` for nanoseconds past
/// a second or a time chrono cannot hold.
pub(crate) fn timestamp(seconds: i64, nanoseconds: u32) -> Option<Timestamp> {
    (nanoseconds < 1_000_000_000)
        .then(|| Timestamp::from_timestamp(seconds, nanoseconds))
        .flatten()
}

/// The one workspace a user owns.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Workspace {
    /// The workspace's own id.
    pub workspace_id: Uuid,
    /// The owner; one workspace per user.
    pub user_id: Uuid,
    /// When it was created.
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: Timestamp,
}

/// The bytes a workspace stores and the most it may store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WorkspaceUsage {
    /// The workspace this usage is of.
    pub workspace_id: Uuid,
    /// Every byte in the workspace's chat directories, sandbox files included.
    pub used_bytes: u64,
    /// The quota.
    pub quota_bytes: u64,
}

/// A conversation; it owns one working directory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Chat {
    /// The chat's own id.
    pub chat_id: Uuid,
    /// The workspace it belongs to.
    pub workspace_id: Uuid,
    /// When it was created.
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: Timestamp,
}

/// The metadata of one attachment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChatFile {
    /// The file's own id; replacing a name gives a new one.
    pub file_id: Uuid,
    /// The chat it belongs to.
    pub chat_id: Uuid,
    /// Its name, unique within the chat.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub name: AttachmentName,
    /// The media type the uploader gave.
    pub content_type: Option<String>,
    /// Its size in bytes.
    pub size_bytes: u64,
    /// The SHA-256 of its content, 64 lowercase hex digits (none for a file
    /// stored before digests were kept).
    pub sha256: Option<String>,
    /// When it was uploaded.
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: Timestamp,
}

/// A code sandbox running on a chat's directory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SandboxSession {
    /// The session's own id.
    pub session_id: Uuid,
    /// The chat whose directory it uses.
    pub chat_id: Uuid,
}

/// A regular file a sandbox session left in its chat's directory, as the
/// host found it, for the policy to register (`register-sandbox-outputs`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SandboxOutput {
    /// The file's name in the chat directory, not yet checked by any rule.
    pub name: String,
    /// The media type inferred from the name's extension, if any.
    pub content_type: Option<String>,
    /// Its size in bytes.
    pub size_bytes: u64,
    /// Its SHA-256, 64 lowercase hex digits.
    pub sha256: String,
}

/// A sandbox session just started, with what the sandbox subsystem needs
/// to run it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SandboxStart {
    /// The session's own id.
    pub session_id: Uuid,
    /// The chat whose directory it uses.
    pub chat_id: Uuid,
    /// The chat's working directory, an absolute path on this host to mount
    /// as the sandbox's working directory (`null` for a store whose chats
    /// have no directory, such as one built on fake ports).
    pub working_dir: Option<String>,
    /// How many bytes the workspace may still grow by: the sandbox's disk
    /// limit. What it writes is counted when its session ends.
    pub room_bytes: u64,
}

/// A sandbox session that ended, and what became of the files it left in
/// the chat's directory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SandboxEnd {
    /// The session's own id.
    pub session_id: Uuid,
    /// The chat whose directory it used.
    pub chat_id: Uuid,
    /// Files it created or changed, now recorded as the chat's attachments.
    pub registered: Vec<ChatFile>,
    /// What it left that is not recorded, and why; left where it is.
    pub unregistered: Vec<Unregistered>,
}

impl SandboxEnd {
    /// The session that ended.
    pub fn session(&self) -> SandboxSession {
        SandboxSession {
            session_id: self.session_id,
            chat_id: self.chat_id,
        }
    }
}

/// Something a sandbox left in a chat directory that is not an attachment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Unregistered {
    /// Its name in the chat directory (lossy if it is not UTF-8).
    pub name: String,
    /// Why: a storage error's code (`invalid_attachment_name`,
    /// `reserved_attachment_name`, `workspace_quota_exceeded`), or
    /// `not_a_regular_file`, `not_examined` (past the first 10,000 entries).
    pub reason: String,
    /// The same, for people.
    pub message: String,
}

impl SandboxStart {
    /// The session that started.
    pub fn session(&self) -> SandboxSession {
        SandboxSession {
            session_id: self.session_id,
            chat_id: self.chat_id,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc_in_json() {
        let at = |seconds, nanoseconds| {
            let t = Timestamp::from_timestamp(seconds, nanoseconds).unwrap();
            serde_json::to_value(t).unwrap()
        };
        assert_eq!(at(1_767_225_600, 0), "2026-01-01T00:00:00Z");
        assert_eq!(at(1_767_225_600, 500_000_000), "2026-01-01T00:00:00.500Z");
        assert_eq!(at(-1, 1), "1969-12-31T23:59:59.000000001Z");
    }
}
